#!/usr/bin/python3
"""Split an application/multipart-core body (RFC 8710) with an independent
CBOR decoder (python3-cbor2) and check the RFC 9148 §4.8 shape.

usage: mpsplit.py BODY OUTDIR WANT_CERT_CF
Writes OUTDIR/key.der (part 284) and OUTDIR/cert.der (part WANT_CERT_CF).
Exits 1 with a message on any deviation."""
import sys

import cbor2

body = open(sys.argv[1], "rb").read()
outdir, want = sys.argv[2], int(sys.argv[3])
try:
    arr = cbor2.loads(body)
except Exception as e:  # noqa: BLE001 - any decode error is a test failure
    sys.exit(f"not CBOR: {e}")
# loads() ignores trailing bytes only if the encoding is canonical; check.
if cbor2.dumps(arr) != body:
    sys.exit("CBOR re-encodes differently: not minimal, or trailing bytes")
if not isinstance(arr, list) or len(arr) != 4:
    sys.exit(f"want an array of 4, got {type(arr).__name__} len {len(arr) if isinstance(arr, list) else '-'}")
parts = {}
for cf, data in zip(arr[0::2], arr[1::2]):
    if not isinstance(cf, int) or not isinstance(data, bytes):
        sys.exit(f"part is not (uint, bstr): {type(cf).__name__}, {type(data).__name__}")
    parts[cf] = data
if set(parts) != {284, want}:
    sys.exit(f"part content formats {sorted(parts)}, want [284, {want}]")
open(f"{outdir}/key.der", "wb").write(parts[284])
open(f"{outdir}/cert.der", "wb").write(parts[want])
