#!/usr/bin/python3
"""A lossy UDP relay for the loopback tests: drops, duplicates, delays and
reorders datagrams with set, seeded probabilities, each way.

  lossrelay.py --target PORT --port-file F [--seed N] [--drop P] [--dup P]
               [--delay-ms MS] [--reorder P] [--stats F] [--max-clients N]

It listens on 127.0.0.1 (a free port, written to --port-file once bound)
and gives every client address its own upstream socket, so the server
sees one peer per client. On SIGTERM it writes its counts as JSON to
--stats. Bounded: at most --max-clients upstream sockets (oldest idle one
closed first) and at most 10000 datagrams waiting to be delayed.

--delay-ms is a random delay of up to MS per datagram that keeps the order
of each client's datagrams in each direction; only --reorder (the given
fraction, held back 20-70 ms behind what follows) changes the order, so
the reordering rate is the one set.
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
    a = ap.parse_args()
    for p in (a.drop, a.dup, a.reorder):
        if not 0.0 <= p <= 1.0:
            sys.exit("lossrelay: probabilities are 0..1")

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

    def schedule(direction, sock, data, addr, flow, now):
        nonlocal seq
        st = stats[direction]
        st["in"] += 1
        if rnd.random() < a.drop:
            st["dropped"] += 1
            return
        copies = 2 if rnd.random() < a.dup else 1
        if copies == 2:
            st["duplicated"] += 1
        for _ in range(copies):
            delay = rnd.random() * a.delay_ms / 1000.0
            if rnd.random() < a.reorder:
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
                heapq.heappush(pending, (now + delay, seq, sock, data, addr, direction))
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
            _, _, sock, data, addr, direction = heapq.heappop(pending)
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
    if a.stats:
        stats["clients"] = len(last)
        with open(a.stats, "w") as f:
            json.dump(stats, f)


if __name__ == "__main__":
    main()
