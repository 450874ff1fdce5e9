#!/usr/bin/python3
"""A tiny MQTT 3.1.1 client for tests/integration/mosquitto_est.sh.

mosquitto_pub/_rr open one session per request and report a refused
subscription or a dropped connection only as warnings, so this client runs
several steps in ONE session and prints what the broker answered:

  mosquitto_client.py PORT USER PASSWORD [--id ID] STEP...

  sub:FILTER        SUBSCRIBE at QoS 1  -> "suback FILTER CODE" (0/1 granted,
                    128 refused)
  req:TEXT          PUBLISH TEXT (QoS 1) on $CONTROL/est-coaps/v1, wait for the
                    PUBACK and the reply  -> "reply PAYLOAD"
  reqfile:PATH      the same with the bytes of PATH
  pub:TOPIC:TEXT    PUBLISH at QoS 1, wait for the PUBACK  -> "puback TOPIC"
  wait:SECONDS      take messages for SECONDS  -> "msg TOPIC PAYLOAD" each
  ping              PINGREQ/PINGRESP round trip  -> "alive"

Messages that arrive during any step are printed as "msg TOPIC PAYLOAD".
Exit 0 when every step finished; 1 with "closed" when the broker dropped the
connection or a step timed out (10 s); 2 with "connack CODE" when refused.
Standard library only (Debian 12 has no paho-mqtt by default).
"""
import os
import socket
import sys
import time

CONTROL = "$CONTROL/est-coaps/v1"
RESPONSE = CONTROL + "/response"
TIMEOUT = 10.0


class Closed(Exception):
    pass


def out(*parts):
    print(*parts, flush=True)


def varint(n):
    b = bytearray()
    while True:
        d, n = n % 128, n // 128
        b.append(d | (0x80 if n else 0))
        if not n:
            return bytes(b)


def utf8(s):
    data = s.encode() if isinstance(s, str) else s
    return len(data).to_bytes(2, "big") + data


class Client:
    def __init__(self, port, user, password, cid):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.mid = 0
        body = utf8("MQTT") + bytes([4, 0xC2]) + (60).to_bytes(2, "big")
        body += utf8(cid) + utf8(user) + utf8(password)
        self.send(0x10, body)
        kind, _, data = self.packet(time.monotonic() + TIMEOUT)
        if kind != 0x20 or data[1] != 0:
            out("connack", data[1] if len(data) > 1 else "?")
            sys.exit(2)

    def send(self, header, body):
        self.sock.sendall(bytes([header]) + varint(len(body)) + body)

    def read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError from None
            except OSError:
                raise Closed from None
            if not chunk:
                raise Closed
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def packet(self, deadline):
        """One packet: (type nibble << 4, flags, body)."""
        first = self.read(1, deadline)[0]
        length, mult = 0, 1
        while True:
            b = self.read(1, deadline)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return first & 0xF0, first & 0x0F, self.read(length, deadline)

    def next_mid(self):
        self.mid = self.mid % 65535 + 1
        return self.mid

    def until(self, want, deadline):
        """Handle packets until want(kind, body) returns something truthy."""
        while True:
            kind, flags, body = self.packet(deadline)
            if kind == 0x30:
                tlen = int.from_bytes(body[:2], "big")
                topic = body[2:2 + tlen].decode()
                rest = body[2 + tlen:]
                qos = (flags >> 1) & 3
                if qos:
                    self.send(0x40, rest[:2])  # PUBACK
                    rest = rest[2:]
                payload = rest.decode(errors="replace")
                got = want(kind, (topic, payload))
                if got:
                    return got
                out("msg", topic, payload)
                continue
            got = want(kind, body)
            if got:
                return got

    def subscribe(self, topic):
        mid = self.next_mid()
        self.send(0x82, mid.to_bytes(2, "big") + utf8(topic) + b"\x01")
        code = self.until(
            lambda k, b: k == 0x90 and int.from_bytes(b[:2], "big") == mid
            and str(b[2]),
            time.monotonic() + TIMEOUT)
        out("suback", topic, code)

    def publish(self, topic, payload):
        mid = self.next_mid()
        self.send(0x32, utf8(topic) + mid.to_bytes(2, "big") + payload)
        return mid

    def request(self, payload):
        mid = self.publish(CONTROL, payload)
        state = {"acked": False, "reply": None}

        def want(kind, body):
            if kind == 0x40 and int.from_bytes(body[:2], "big") == mid:
                state["acked"] = True
            elif kind == 0x30 and body[0] == RESPONSE:
                state["reply"] = body[1]
            else:
                return None
            return state["acked"] and state["reply"] is not None

        self.until(want, time.monotonic() + TIMEOUT)
        out("reply", state["reply"])

    def pub(self, topic, text):
        mid = self.publish(topic, text.encode())
        self.until(lambda k, b: k == 0x40 and int.from_bytes(b[:2], "big") == mid,
                   time.monotonic() + TIMEOUT)
        out("puback", topic)

    def wait(self, seconds):
        try:
            self.until(lambda k, b: False, time.monotonic() + seconds)
        except TimeoutError:
            pass

    def ping(self):
        self.send(0xC0, b"")
        self.until(lambda k, b: k == 0xD0, time.monotonic() + TIMEOUT)
        out("alive")


def main(argv):
    args = argv[1:]
    cid = "mqc-%d" % os.getpid()
    if "--id" in args:
        i = args.index("--id")
        cid = args[i + 1]
        del args[i:i + 2]
    if len(args) < 3:
        sys.stderr.write(__doc__)
        return 2
    port, user, password, steps = int(args[0]), args[1], args[2], args[3:]
    c = Client(port, user, password, cid)
    try:
        for step in steps:
            verb, _, arg = step.partition(":")
            if verb == "sub":
                c.subscribe(arg)
            elif verb == "req":
                c.request(arg.encode())
            elif verb == "reqfile":
                with open(arg, "rb") as f:
                    c.request(f.read())
            elif verb == "pub":
                topic, _, text = arg.partition(":")
                c.pub(topic, text)
            elif verb == "wait":
                c.wait(float(arg))
            elif verb == "ping":
                c.ping()
            else:
                sys.stderr.write("unknown step %r\n" % step)
                return 2
        c.send(0xE0, b"")
    except (Closed, TimeoutError):
        out("closed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
