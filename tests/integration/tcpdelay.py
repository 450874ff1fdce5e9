#!/usr/bin/python3
"""A slow TCP relay for the loopback tests: every chunk read from either
side is written to the other side --delay seconds after it arrived, in
order, so each round trip through it costs twice the delay.

  tcpdelay.py --target PORT --port-file F [--delay S] [--delay-file F]
              [--max-conns N] [--max-buffer BYTES] [--lifetime S] [--stats F]

It listens on 127.0.0.1 (a free port, written to --port-file once bound)
and connects each client to 127.0.0.1:--target. An end-of-file is passed
on after the same delay as the data before it. With --delay-file, the
delay is the number in that file (0..60) when a chunk arrives, --delay
while the file is missing or not a number, so a test can make the path
slow after its client has started. Bounded: at most
--max-conns connections at once (more are closed at once), at most
--max-buffer bytes held per direction of a connection (the reader waits
when it is full), and it exits by itself after --lifetime seconds. On
SIGTERM (or at the end of its lifetime) it writes its counts as JSON to
--stats: connections, bytes and chunks each way.
"""
import argparse
import asyncio
import json
import os
import signal
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--delay-file")
    ap.add_argument("--max-conns", type=int, default=32)
    ap.add_argument("--max-buffer", type=int, default=1 << 20)
    ap.add_argument("--lifetime", type=float, default=900.0)
    ap.add_argument("--stats")
    a = ap.parse_args()
    if not 0.0 <= a.delay <= 60.0:
        raise SystemExit("tcpdelay: --delay is 0..60 s")
    asyncio.run(run(a))


def delay_now(a):
    if a.delay_file:
        try:
            with open(a.delay_file) as f:
                d = float(f.read().strip())
            if 0.0 <= d <= 60.0:
                return d
        except (OSError, ValueError):
            pass
    return a.delay


async def run(a):
    stats = {"connections": 0, "refused": 0, "open": 0,
             "up": {"bytes": 0, "chunks": 0}, "down": {"bytes": 0, "chunks": 0}}
    tasks = set()

    async def pump(reader, writer, direction):
        """Read chunks, hand them to the writer task with their due time."""
        q = asyncio.Queue()
        held = [0]
        room = asyncio.Event()
        room.set()

        async def send():
            while True:
                due, data = await q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                held[0] -= len(data)
                if held[0] < a.max_buffer:
                    room.set()

        sender = asyncio.ensure_future(send())
        try:
            while not sender.done():
                await room.wait()
                data = await reader.read(65536)
                due = time.monotonic() + delay_now(a)
                if not data:
                    q.put_nowait((due, None))
                    break
                stats[direction]["bytes"] += len(data)
                stats[direction]["chunks"] += 1
                held[0] += len(data)
                if held[0] >= a.max_buffer:
                    room.clear()
                q.put_nowait((due, data))
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            if not sender.done():
                sender.cancel()

    async def handle(creader, cwriter):
        if stats["open"] >= a.max_conns:
            stats["refused"] += 1
            cwriter.close()
            return
        stats["connections"] += 1
        stats["open"] += 1
        swriter = None
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", a.target)
            await asyncio.gather(pump(creader, swriter, "up"), pump(sreader, cwriter, "down"))
        except (ConnectionError, OSError):
            pass
        finally:
            stats["open"] -= 1
            for w in (cwriter, swriter):
                if w is not None:
                    w.close()

    def track(creader, cwriter):
        t = asyncio.ensure_future(handle(creader, cwriter))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(a.port_file + ".tmp", "w") as f:
        f.write("%d\n" % port)
    os.rename(a.port_file + ".tmp", a.port_file)

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, done.set)
    try:
        await asyncio.wait_for(done.wait(), a.lifetime)
    except asyncio.TimeoutError:
        pass
    server.close()
    for t in list(tasks):
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if a.stats:
        with open(a.stats + ".tmp", "w") as f:
            json.dump(stats, f)
        os.rename(a.stats + ".tmp", a.stats)


if __name__ == "__main__":
    main()
