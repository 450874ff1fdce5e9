#!/usr/bin/python3
"""A bounded DTLS ClientHello flood against 127.0.0.1:PORT, for
tests/integration/host_flood.sh. Python 3 stdlib only, loopback only.

  flood_hello.py --port PORT [--src 127.0.0.1,127.0.0.2] [--duration 20]
                 [--plain-rate N] [--stall-rate N] [--max-open N]

From each source address, for --duration seconds:
  plain  N ClientHellos a second, each with a fresh random, from a pool of
         sockets that is renewed all the time (many source ports); nothing
         is answered, as from a spoofing sender.
  stall  N new handshakes a second, each from a new port: the ClientHello
         is retransmitted after 1 s as a real client would (RFC 6347
         4.2.4), every HelloVerifyRequest is answered with the cookie
         (4.2.1), and once the server's flight (ServerHello...) comes the
         sender goes silent and leaves the half-open handshake behind.
  replay N new senders a second, each from a new port, that retransmit their
         ClientHello after 1 s and 2 s more like a real client but never
         answer the HelloVerifyRequest.
The ClientHello is a real DTLS 1.2 one (ECDHE-ECDSA, P-256) that GnuTLS
takes, the way spoof_hello.py builds its record. At the end one JSON line
with the figures goes to stdout.
"""
import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time

SUITES = [0xC02B, 0xC0AE, 0xC023, 0xC009]  # ECDHE-ECDSA AES-128 GCM/CCM8/CBC
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_HELLO_VERIFY = 1, 2, 3
CT_HANDSHAKE = 22


def ext(kind, data):
    return struct.pack("!HH", kind, len(data)) + data


EXTENSIONS = b"".join([
    ext(10, struct.pack("!HH", 2, 23)),          # supported_groups: secp256r1
    ext(11, b"\x01\x00"),                        # ec_point_formats: uncompressed
    ext(13, struct.pack("!HHH", 4, 0x0403, 0x0804)),  # signature_algorithms
    ext(23, b""),                                # extended_master_secret
    ext(0xFF01, b"\x00"),                        # renegotiation_info
])


def client_hello(random, cookie=b"", msg_seq=0, rec_seq=0):
    """One record holding one unfragmented ClientHello (RFC 6347 4.2.2)."""
    body = (b"\xfe\xfd" + random + b"\x00" + bytes([len(cookie)]) + cookie
            + struct.pack("!H", 2 * len(SUITES)) + b"".join(struct.pack("!H", s) for s in SUITES)
            + b"\x01\x00" + struct.pack("!H", len(EXTENSIONS)) + EXTENSIONS)
    n = len(body)
    hs = bytes([HS_CLIENT_HELLO]) + n.to_bytes(3, "big") + struct.pack("!H", msg_seq) \
        + (0).to_bytes(3, "big") + n.to_bytes(3, "big") + body
    return struct.pack("!BHH", CT_HANDSHAKE, 0xFEFF, 0) + rec_seq.to_bytes(6, "big") \
        + struct.pack("!H", len(hs)) + hs


def handshakes(datagram):
    """(type, body) of each epoch-0 handshake fragment in a datagram."""
    out, pos = [], 0
    while pos + 13 <= len(datagram):
        ctype, _, epoch = struct.unpack_from("!BHH", datagram, pos)
        (length,) = struct.unpack_from("!H", datagram, pos + 11)
        frag = datagram[pos + 13:pos + 13 + length]
        pos += 13 + length
        if ctype == CT_HANDSHAKE and epoch == 0 and len(frag) >= 12:
            out.append((frag[0], frag[12:]))
    return out


class Stall:
    """One handshake that answers cookies, then goes silent; with
    replay=True one that only retransmits its first ClientHello."""

    def __init__(self, src, dst, now, replay=False):
        self.replay = replay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((src, 0))
        self.dst = dst
        self.random = os.urandom(32)
        self.msg_seq = self.rec_seq = 0
        self.cookie = b""
        self.tries = 0
        self.silent = False
        self.send(now)

    def send(self, now):
        try:
            self.sock.sendto(client_hello(self.random, self.cookie, self.msg_seq, self.rec_seq),
                             self.dst)
        except OSError:
            pass
        self.rec_seq += 1
        self.tries += 1
        self.due = now + 1.0 * self.tries  # 1 s, then 2 s more (4.2.4.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", default="127.0.0.1")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--plain-rate", type=int, default=2000)
    ap.add_argument("--stall-rate", type=int, default=20)
    ap.add_argument("--replay-rate", type=int, default=0)
    ap.add_argument("--pool", type=int, default=256)
    ap.add_argument("--max-open", type=int, default=800)
    a = ap.parse_args()
    if not 0 < a.duration <= 120 or a.plain_rate > 100000 or a.stall_rate > 1000 \
            or a.replay_rate > 1000:
        sys.exit("flood_hello.py: limits: duration 0..120 s, plain 100000/s, "
                 "stall and replay 1000/s")
    dst = ("127.0.0.1", a.port)
    srcs = a.src.split(",")
    for s in srcs:
        if not s.startswith("127."):
            sys.exit("flood_hello.py: loopback sources only")

    def fresh(src):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.bind((src, 0))
        return s

    pools = {s: [fresh(s) for _ in range(a.pool)] for s in srcs}
    sel = selectors.DefaultSelector()
    stalls = []  # oldest first
    fig = {"plain_sent": 0, "plain_ports": 0, "stall_started": 0, "stall_hvr": 0,
           "stall_silent": 0, "replay_started": 0, "send_errors": 0}
    ports = set()
    start = time.monotonic()
    end = start + a.duration
    plain_due = stall_due = 0.0
    k = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        t = now - start
        # Plain ClientHellos due by now, in bursts of at most 500.
        want = min(int(t * a.plain_rate * len(srcs)) - fig["plain_sent"], 500)
        for _ in range(max(want, 0)):
            src = srcs[k % len(srcs)]
            pool = pools[src]
            i = (k // len(srcs)) % len(pool)
            k += 1
            try:
                pool[i].sendto(client_hello(os.urandom(32)), dst)
                ports.add((src, pool[i].getsockname()[1]))
            except OSError:
                fig["send_errors"] += 1
            fig["plain_sent"] += 1
            if k % 8 == 0:  # a new source port every 8 datagrams
                pool[i].close()
                pool[i] = fresh(src)
        # New stalling handshakes due by now.
        want = int(t * a.stall_rate * len(srcs)) - fig["stall_started"]
        for _ in range(max(min(want, 50), 0)):
            src = srcs[fig["stall_started"] % len(srcs)]
            st = Stall(src, dst, now)
            sel.register(st.sock, selectors.EVENT_READ, st)
            stalls.append(st)
            fig["stall_started"] += 1
        want = int(t * a.replay_rate * len(srcs)) - fig["replay_started"]
        for _ in range(max(min(want, 50), 0)):
            src = srcs[fig["replay_started"] % len(srcs)]
            stalls.append(Stall(src, dst, now, replay=True))
            fig["replay_started"] += 1
        while len(stalls) > a.max_open:
            old = stalls.pop(0)
            if not old.silent and not old.replay:
                sel.unregister(old.sock)
            old.sock.close()
        for key, _ in sel.select(timeout=0.002):
            st = key.data
            try:
                data = st.sock.recv(4096)
            except OSError:
                continue
            for htype, body in handshakes(data):
                if htype == HS_HELLO_VERIFY and len(body) >= 3 and not st.silent:
                    st.cookie = body[3:3 + body[2]]
                    st.msg_seq += 1
                    st.tries = 0
                    fig["stall_hvr"] += 1
                    st.send(now)
                elif htype == HS_SERVER_HELLO and not st.silent:
                    st.silent = True
                    fig["stall_silent"] += 1
                    sel.unregister(st.sock)
        for st in stalls:
            if not st.silent and st.tries < 3 and now >= st.due:
                st.send(now)
    fig["duration"] = round(time.monotonic() - start, 2)
    fig["plain_ports"] = len(ports)
    fig["plain_rate"] = round(fig["plain_sent"] / fig["duration"])
    fig["stall_rate"] = round(fig["stall_started"] / fig["duration"], 1)
    fig["replay_rate"] = round(fig["replay_started"] / fig["duration"], 1)
    print(json.dumps(fig), flush=True)


if __name__ == "__main__":
    main()
