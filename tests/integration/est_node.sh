#!/usr/bin/env bash
# Interop with a CoAP-over-DTLS client stack that shares no code with
# libcoap: werift-dtls + coap-packet in Node.js (tests/interop/node). The
# client covers discovery, /crts, /sen with 64-byte Block1/Block2 (Request-
# Tag and same-token), /skg as a separate response, duplicate CONs (middle
# block, final block, skg) and a reboot from the same port without
# close_notify; the certificates, keys and the database are checked here.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_node
NODE_SRC=$(cd "$(dirname "$0")/../interop/node" && pwd)

command -v node >/dev/null || it_fail "node is not installed"
command -v npm >/dev/null || it_fail "npm is not installed"
# Install the pinned dependencies into a copy, so the tree stays clean.
mkdir -p "$T/node"
cp "$NODE_SRC/package.json" "$NODE_SRC/package-lock.json" "$NODE_SRC/client.mjs" "$T/node/" ||
  it_fail "cannot copy $NODE_SRC"
(cd "$T/node" && timeout -k 5 240 npm ci --no-audit --no-fund) >"$T/npm.log" 2>&1 ||
  it_fail "npm ci failed: $(tail -n 20 "$T/npm.log")"

est_start keygen\ on
W=$T/work
mkdir -p "$W"
est_csr "$W/sen-rtag.key" "$W/sen-rtag.csr" node-sen-rtag 'dns_name = "node-sen-rtag.example"'
est_csr "$W/sen-token.key" "$W/sen-token.csr" node-sen-token 'dns_name = "node-sen-token.example"'
est_csr "$W/dup-block.key" "$W/dup-block.csr" node-dup-block 'dns_name = "node-dup-block.example"'
est_csr "$W/dup-final.key" "$W/dup-final.csr" node-dup-final 'dns_name = "node-dup-final.example"'
est_csr "$W/skg.key" "$W/skg.csr" node-skg
for f in two-a two-b newmid late-b2; do
  est_csr "$W/$f.key" "$W/$f.csr" "node-$f" "dns_name = \"node-$f.example\""
done
LP=$(it_free_port)
# Step 8: an LDevID of this CA, revoked while its session is open.
est_csr "$W/ldev.key" "$W/ldev.csr" node-ldev
est_req gnutls idevid post /est/sen -t 286 -f "$W/ldev.csr"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$W/ldev.crt"
est_csr "$W/ldev.key" "$W/ldev-next.csr" node-ldev
LDEV_SERIAL=$(sqlite3 -cmd ".timeout 5000" "$T/est.db" "select serial from certificates where subject = 'CN=node-ldev'")
[ -n "$LDEV_SERIAL" ] || it_fail "no LDevID recorded for step 8"
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"

start=$(date +%s%N)
timeout -k 5 240 node "$T/node/client.mjs" --host 127.0.0.1 --port "$PORT" --pki "$PKI" \
  --out "$W" --local-port "$LP" --ldevid "$W/ldev" --estctl "$ESTCTL" --db "$T/est.db" \
  --serial "$LDEV_SERIAL" >"$T/node-client.log" 2>&1
rc=$?
echo "node client: exit $rc after $((($(date +%s%N) - start) / 1000000)) ms"
grep -E '^(STEP|SUMMARY)' "$T/node-client.log"
[ "$rc" = 124 ] && it_fail "the node client did not finish within 240 s"
step_ok() {
  grep -Eq "^STEP $1 [a-z0-9-]+ OK" "$T/node-client.log" ||
    it_fail "step $1 failed:"$'\n'"$(awk -v s="STEP $1 " 'index($0, s) == 1 { p = 1; print; next }
      /^(STEP|SUMMARY) / { p = 0 } p' "$T/node-client.log" | head -n 60)"
}

# 1. discovery; 2. crts: the PKCS#7 holds exactly ca.crt (compared as DER).
step_ok 1
step_ok 2
est_p7_to_pem "$W/crts.p7" "$W/crts.pem"
[ "$(grep -c 'BEGIN CERTIFICATE' "$W/crts.pem")" = 1 ] || it_fail "crts PKCS#7 holds not exactly 1 cert"
certtool -i --infile "$W/crts.pem" --outder --outfile "$W/crts-ca.der" 2>/dev/null
certtool -i --infile "$PKI/ca.crt" --outder --outfile "$W/ca.der" 2>/dev/null
cmp -s "$W/crts-ca.der" "$W/ca.der" || it_fail "the crts certificate is not ca.crt"

# 3. sen, both ways of tying the Block1 blocks together; 5a, 5b as well
# (5b's certificate is written before its duplicate check, whose verdict
# is taken last, so that every other check runs either way).
for n in 3a:sen-rtag 3b:sen-token 5a:dup-block 5b:dup-final 5d:two-a 5d:two-b 5e:newmid \
  5f:late-b2; do
  case $n in 5b:*) [ -s "$W/dup-final.p7" ] || step_ok 5b ;; *) step_ok "${n%%:*}" ;; esac
  f=${n#*:}
  est_p7_to_pem "$W/$f.p7" "$W/$f.pem"
  est_verify "$W/$f.pem" "$PKI/ca.crt"
  certtool -i --infile "$W/$f.pem" 2>/dev/null | grep -q "Subject: CN=node-$f\$" ||
    it_fail "$f: subject is not CN=node-$f"
  [ "$(est_cert_pubkey "$W/$f.pem")" = "$(est_key_pubkey "$W/$f.key")" ] ||
    it_fail "$f: issued key differs from the CSR key"
  count=$(sqlite3 "$T/est.db" "select count(*) from certificates where subject='CN=node-$f'")
  [ "$count" = 1 ] || it_fail "$f: the database holds $count certificates for CN=node-$f, want 1"
done

# 4. skg: multipart-core with a PKCS#8 key and a certificate that match.
step_ok 4
mkdir -p "$W/skg"
/usr/bin/python3 "$(dirname "$0")/mpsplit.py" "$W/skg.mp" "$W/skg" 281 || it_fail "skg multipart"
est_p7_to_pem "$W/skg/cert.der" "$W/skg/cert.pem"
est_verify "$W/skg/cert.pem" "$PKI/ca.crt"
certtool -k --inder --infile "$W/skg/key.der" --outfile "$W/skg/key.pem" 2>/dev/null ||
  it_fail "skg: the key part is not PKCS#8"
[ "$(est_cert_pubkey "$W/skg/cert.pem")" = "$(est_key_pubkey "$W/skg/key.pem")" ] ||
  it_fail "skg: the key does not match the certificate"
[ "$(est_cert_pubkey "$W/skg/cert.pem")" != "$(est_key_pubkey "$W/skg.key")" ] ||
  it_fail "skg: the certificate carries the CSR key"
# 5c. The duplicate skg CON made no second key.
step_ok 5c
count=$(sqlite3 "$T/est.db" "select count(*) from certificates where subject='CN=node-skg'")
[ "$count" = 1 ] || it_fail "skg: the database holds $count certificates for CN=node-skg, want 1"

# 6. reboot from the same port without close_notify.
step_ok 6
grep -q "did not answer after a new ClientHello" "$T/coapd.log" ||
  it_fail "coapd did not log the dropped old session"
# 7. A block out of sequence: 4.08 with the Block1 echo and a diagnostic,
# for a middle and a last block alike.
step_ok 7
step_ok 8
count=$(sqlite3 -cmd ".timeout 5000" "$T/est.db" "select count(*) from certificates where subject = 'CN=node-ldev'")
# One from the IDevID, one from the LDevID's sen before the revocation.
[ "$count" = 2 ] || it_fail "step 8: $count certificates for CN=node-ldev, want 2"
# 5b. The duplicate final block got the same answer, byte for byte.
step_ok 5b
cmp -s "$W/dup-final.p7" "$W/dup-final-again.p7" || it_fail "5b: the duplicate's certificate differs"
[ "$rc" = 0 ] || it_fail "the node client exited $rc: $(tail -n 30 "$T/node-client.log")"
est_stop
it_pass
