#!/usr/bin/python3
"""Hostile and careful HTTPS clients for est_https_limits.sh (stdlib only).

  hold PORT N MODE READY MAX [CAFILE]
      Open N connections to 127.0.0.1:PORT and keep them idle, then watch
      until the server closes each one or MAX seconds pass. MODE:
        tcp        a plain TCP connect, nothing sent (no ClientHello)
        slowloris  a TLS handshake (CAFILE) and half the request headers,
                   then nothing more
      When all N are open (or the server refused some at once), READY is
      written. Prints one line per connection, "closed T" (seconds from its
      last byte sent to the server's close) or "open" (still open at MAX),
      or "refused" (closed before it was set up). "closed" is followed by
      the status line the server sent (blanks as "_"), or "bytes=N" for
      other bytes (a TLS alert), or "-" for none.
      Exit 0.

  pop PORT CAFILE CERT KEY CSRKEY MODE OUTDIR
      RFC 7030 §3.5 PoP linking over one TLS 1.2 connection with the
      client certificate CERT/KEY: read tls-unique of this connection, put
      base64 of it (MODE same) or of another connection's tls-unique (MODE
      other) in the challengePassword of a CSR for CSRKEY (openssl req),
      POST it as simpleenroll on the same connection. Prints
      "status CODE", then the body. Exit 0 if an HTTP answer came.
"""
import base64
import os
import socket
import ssl
import subprocess
import sys
import time


def tls_context(cafile, cert=None, key=None, tls12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if cert:
        ctx.load_cert_chain(cert, key)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def hold(port, n, mode, ready, max_s, cafile=None):
    conns = []  # [sock, t_last_send, result, bytes received]
    deadline = time.monotonic() + max_s
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        res = None
        if mode == "slowloris":
            try:
                s = tls_context(cafile).wrap_socket(s, server_hostname="localhost")
                s.sendall(b"GET /.well-known/est/cacerts HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nUser-Agent: slow")
            except (OSError, ssl.SSLError):
                res = "refused"
        conns.append([s, time.monotonic(), res, b""])
    with open(ready, "w") as f:
        f.write("ready\n")
    for c in conns:
        c[0].settimeout(0.02)
    while time.monotonic() < deadline and any(c[2] is None for c in conns):
        for c in conns:
            if c[2] is not None:
                continue
            try:
                data = c[0].recv(4096)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                if c[3].startswith(b"HTTP/"):
                    what = c[3].split(b"\r\n", 1)[0][:40].decode("latin-1")
                    what = what.replace(" ", "_")
                elif c[3]:  # e.g. a TLS alert on a plain TCP connection
                    what = "bytes=%d" % len(c[3])
                else:
                    what = "-"
                c[2] = "closed %.2f %s" % (time.monotonic() - c[1], what)
            else:  # an answer to half a request? Keep it, read on.
                c[3] += data[:4096]
    for c in conns:
        print(c[2] or "open")
        try:
            c[0].close()
        except OSError:
            pass
    return 0


def csr_with_challenge(csrkey, challenge, outdir):
    cnf = os.path.join(outdir, "pop-req.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\nprompt = no\ndistinguished_name = dn\n"
                "attributes = req_attributes\n"
                "[dn]\nCN = pop-dev\n"
                "[req_attributes]\nchallengePassword = %s\n" % challenge)
    out = subprocess.run(["openssl", "req", "-new", "-key", csrkey, "-config", cnf,
                          "-outform", "DER"], capture_output=True, timeout=30, check=True)
    return out.stdout


def tls_unique(port, ctx):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = ctx.wrap_socket(s, server_hostname="localhost")
    if t.version() != "TLSv1.2":
        raise SystemExit("not TLS 1.2: %s" % t.version())
    cb = t.get_channel_binding("tls-unique")
    if not cb:
        raise SystemExit("no tls-unique")
    return t, cb


def pop(port, cafile, cert, key, csrkey, mode, outdir):
    ctx = tls_context(cafile, cert, key, tls12=True)
    t, cb = tls_unique(port, ctx)
    if mode == "other":
        t2, cb2 = tls_unique(port, ctx)
        t2.close()
        if cb2 == cb:
            raise SystemExit("two connections with the same tls-unique")
        cb = cb2
    der = csr_with_challenge(csrkey, base64.b64encode(cb).decode(), outdir)
    body = base64.b64encode(der)
    t.sendall(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\n"
              b"Host: 127.0.0.1\r\nContent-Type: application/pkcs10\r\n"
              b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    t.settimeout(10)
    while True:
        try:
            chunk = t.recv(65536)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        if not chunk:
            break
        data += chunk
        if len(data) > 1 << 20:
            break
    t.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        print("status none %r" % line)
        return 1
    print("status %s" % parts[1])
    sys.stdout.write(rest.decode("latin-1"))
    return 0


def main(argv):
    if len(argv) >= 7 and argv[1] == "hold":
        return hold(int(argv[2]), int(argv[3]), argv[4], argv[5], float(argv[6]),
                    argv[7] if len(argv) > 7 else None)
    if len(argv) == 9 and argv[1] == "pop":
        return pop(int(argv[2]), *argv[3:9])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
