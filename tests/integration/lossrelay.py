#!/usr/bin/python3
"""A lossy UDP relay for the loopback tests: drops, duplicates, delays and
reorders datagrams with set, seeded probabilities, each way.

  lossrelay.py --target PORT --port-file F [--seed N] [--drop P] [--dup P]
               [--delay-ms MS] [--reorder P] [--stats F] [--max-clients N]
               [--drop-up P] [--drop-down P] [--dup-up P] [--dup-down P]
               [--drop-app-up K] [--drop-app-up-min-len N] [--hold-app-down MS]
               [--log F]

It listens on 127.0.0.1 (a free port, written to --port-file once bound)
and gives every client address its own upstream socket, so the server
sees one peer per client. On SIGTERM it writes its counts as JSON to
--stats. Bounded: at most --max-clients upstream sockets (oldest idle one
closed first) and at most 10000 datagrams waiting to be delayed.

--drop-hs-down N drops the Nth server datagram of handshake records and,
with --mute-up-ms MS, every client datagram for MS ms after it.

--delay-ms is a random delay of up to MS per datagram that keeps the order
of each client's datagrams in each direction; only --reorder (the given
fraction, held back 20-70 ms behind what follows) changes the order, so
the reordering rate is the one set.

Optional, for tests that need one direction or one exchange (all off by
default, and the seeded draws stay the same): --drop-up/--drop-down and
--dup-up/--dup-down set --drop/--dup for client->server (up) or
server->client (down) only. The relay cannot read CoAP inside DTLS, but the
DTLS record header is clear (RFC 6347 §4.1: content type, epoch, sequence
number), so --drop-app-up K drops the first K application_data (type 23)
datagrams sent up that are at least --drop-app-up-min-len N bytes long
(default 0: any), and --hold-app-down MS holds the first one sent down
back by MS ms (without delaying the ones after it; logged again when it
goes out). --log F writes one line per datagram: time since start,
direction, length, the first record's content type, epoch and sequence
number, and what the relay did.
"""
import argparse
import heapq
import json
import os
import random
import selectors
import signal
import socket
import sys
import time

PENDING_MAX = 10000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--stats")
    ap.add_argument("--max-clients", type=int, default=512)
    ap.add_argument("--drop-up", type=float)
    ap.add_argument("--drop-down", type=float)
    ap.add_argument("--dup-up", type=float)
    ap.add_argument("--dup-down", type=float)
    ap.add_argument("--drop-app-up", type=int, default=0)
    ap.add_argument("--drop-app-up-min-len", type=int, default=0)
    ap.add_argument("--hold-app-down", type=float, default=0.0)
    ap.add_argument("--drop-hs-down", type=int, default=0)
    ap.add_argument("--mute-up-ms", type=float, default=0.0)
    ap.add_argument("--log")
    a = ap.parse_args()
    drop = {"up": a.drop if a.drop_up is None else a.drop_up,
            "down": a.drop if a.drop_down is None else a.drop_down}
    dup = {"up": a.dup if a.dup_up is None else a.dup_up,
           "down": a.dup if a.dup_down is None else a.dup_down}
    for p in (a.reorder, *drop.values(), *dup.values()):
        if not 0.0 <= p <= 1.0:
            sys.exit("lossrelay: probabilities are 0..1")
    if min(a.drop_app_up, a.drop_app_up_min_len, a.hold_app_down) < 0:
        sys.exit("lossrelay: --drop-app-up, --drop-app-up-min-len, --hold-app-down are >= 0")
    if a.drop_hs_down < 0 or a.mute_up_ms < 0:
        sys.exit("lossrelay: --drop-hs-down and --mute-up-ms are >= 0")
    hs_seen = [0]        # server handshake datagrams so far
    mute_until = [0.0]   # up datagrams dropped until then
    app_drop = [a.drop_app_up]
    app_hold = [a.hold_app_down > 0]
    logf = open(a.log, "w", buffering=1) if a.log else None
    t0 = time.monotonic()

    rnd = random.Random(a.seed)
    sel = selectors.DefaultSelector()
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    front.setblocking(False)
    sel.register(front, selectors.EVENT_READ, None)
    target = ("127.0.0.1", a.target)
    ups = {}      # client address -> upstream socket
    last = {}     # client address -> last activity (monotonic)
    pending = []  # heap of (due, seq, sock, data, addr)
    last_due = {}  # (direction, client address) -> due time of the last one
    seq = 0
    stats = {d: {"in": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "sent": 0}
             for d in ("up", "down")}
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % front.getsockname()[1])
    os.rename(a.port_file + ".tmp", a.port_file)

    def log(direction, data, now, what):
        if not logf:
            return
        # The first DTLS record header (RFC 6347 §4.1), when there is one.
        ctype, epoch, rseq = -1, -1, -1
        if len(data) >= 13:
            ctype = data[0]
            epoch = int.from_bytes(data[3:5], "big")
            rseq = int.from_bytes(data[5:11], "big")
        logf.write("%.3f %s len=%d type=%d epoch=%d seq=%d %s\n"
                   % (now - t0, direction, len(data), ctype, epoch, rseq, what))

    def schedule(direction, sock, data, addr, flow, now):
        nonlocal seq
        st = stats[direction]
        st["in"] += 1
        app = len(data) >= 13 and data[0] == 23
        # --drop-hs-down N: the Nth server datagram of DTLS handshake records
        # (content type 22) is lost, and with --mute-up-ms every client
        # datagram after it for that long: only the server's own timer can
        # then resend its flight (RFC 6347 §4.2.4).
        if direction == "down" and len(data) >= 13 and data[0] == 22 and a.drop_hs_down:
            hs_seen[0] += 1
            if hs_seen[0] == a.drop_hs_down:
                st["dropped"] += 1
                mute_until[0] = now + a.mute_up_ms / 1000.0
                log(direction, data, now, "dropped-hs")
                return
        if direction == "up" and now < mute_until[0]:
            st["dropped"] += 1
            log(direction, data, now, "muted")
            return
        if (direction == "up" and app and app_drop[0] > 0
                and len(data) >= a.drop_app_up_min_len):
            app_drop[0] -= 1
            st["dropped"] += 1
            log(direction, data, now, "dropped-app")
            return
        hold = 0.0
        if direction == "down" and app and app_hold[0]:
            app_hold[0] = False
            hold = a.hold_app_down / 1000.0
        if rnd.random() < drop[direction]:
            st["dropped"] += 1
            log(direction, data, now, "dropped")
            return
        copies = 2 if rnd.random() < dup[direction] else 1
        if copies == 2:
            st["duplicated"] += 1
        log(direction, data, now, ("held %d ms" % a.hold_app_down if hold else "sent")
            + (" x2" if copies == 2 else ""))
        for _ in range(copies):
            delay = rnd.random() * a.delay_ms / 1000.0
            if hold:
                # Behind the ones after it, which keep their own timing.
                delay += hold
            elif rnd.random() < a.reorder:
                # Hold this one back behind what follows.
                delay += 0.02 + rnd.random() * 0.05
            else:
                # Jitter alone does not overtake the one before.
                key = (direction, flow)
                delay = max(delay, last_due.get(key, 0.0) - now)
                last_due[key] = now + delay
            if delay > 0 and len(pending) < PENDING_MAX:
                st["delayed"] += 1
                seq += 1
                heapq.heappush(pending, (now + delay, seq, sock, data, addr, direction,
                                         bool(hold)))
            else:
                send(sock, data, addr, direction)

    def send(sock, data, addr, direction):
        try:
            sock.sendto(data, addr)
            stats[direction]["sent"] += 1
        except OSError:
            pass

    def upstream_for(addr, now):
        s = ups.get(addr)
        if s is None:
            if len(ups) >= a.max_clients:
                oldest = min(last, key=last.get)
                sel.unregister(ups[oldest])
                ups.pop(oldest).close()
                last.pop(oldest)
                last_due.pop(("up", oldest), None)
                last_due.pop(("down", oldest), None)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, addr)
            ups[addr] = s
        last[addr] = now
        return s

    while running[0]:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, sock, data, addr, direction, held = heapq.heappop(pending)
            if held:
                log(direction, data, now, "delivered-held")
            send(sock, data, addr, direction)
        timeout = max(0.0, pending[0][0] - now) if pending else 0.2
        for key, _ in sel.select(min(timeout, 0.2)):
            sock = key.fileobj
            while True:
                try:
                    data, addr = sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                now = time.monotonic()
                if key.data is None:  # from a client
                    schedule("up", upstream_for(addr, now), data, target, addr, now)
                else:                 # from the server, back to key.data
                    last[key.data] = now
                    schedule("down", front, data, key.data, key.data, now)
    if logf:
        logf.close()
    if a.stats:
        stats["clients"] = len(last)
        with open(a.stats, "w") as f:
            json.dump(stats, f)


if __name__ == "__main__":
    main()
