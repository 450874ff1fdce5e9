#!/usr/bin/env bash
# The approval queue (RFC 9148 §4.7, docs/decisions.md §7): under the manual
# policy a request gets 5.03 + Max-Age until an operator decides with
# estctl; the retry then gets its certificate, a later retry the same
# bytes, a rejected one 4.03 with the reason. Nothing is lost to kill -9.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_approval
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }
# The id of the newest request in STATE, from estctl's JSON.
newest() { ctl list --state "$1" --json | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[-1]["id"] if r else "")'; }

est_start idevid_policy\ manual retry_after\ 7 keygen\ on max_pending_per_client\ 2
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"

# First request: 5.03 with Max-Age = retry_after and a diagnostic.
est_csr "$T/d1.key" "$T/d1.csr" dev-1 'dns_name = "dev-1.example"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 5.03; it_expect_diag
it_expect_opt 'Max-Age:7'
grep -q "waiting for an operator" "$IT_STDERR" || it_fail "5.03 diag: $(cat "$IT_STDERR")"
id=$(newest pending)
[ -n "$id" ] || it_fail "no pending request in estctl list"
ctl list --json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
assert len(r) == 1, r
x = r[0]
assert x["state"] == "pending" and x["function"] == "sen", x
assert x["subject"] == "CN=dev-1", x
assert "idevid-0001" in x["client"], x
for k in ("id", "created", "updated"): assert k in x, k
' || it_fail "estctl list --json: $(ctl list --json)"
# A retry while pending (a new DTLS session, the other client): 5.03 again,
# and still one request.
est_req openssl idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 5.03; it_expect_opt 'Max-Age:7'
[ "$(ctl list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 1 ] ||
  it_fail "a retry created a second request"

# The operator approves; the retry gets 2.04 and a certificate.
ctl approve "$id" >"$T/approve.out" || it_fail "estctl approve: $(cat "$T/approve.out")"
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 2.04
cp "$IT_PAYLOAD_FILE" "$T/d1-first.p7"
est_p7_to_pem "$T/d1-first.p7" "$T/d1.crt"
est_verify "$T/d1.crt" "$T/ca.pem"
# A repeated retry gets the identical certificate, not a new one.
est_req openssl idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 2.04
cmp -s "$IT_PAYLOAD_FILE" "$T/d1-first.p7" || it_fail "the repeated retry got other bytes"
[ "$(ctl show "$id" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = issued ] ||
  it_fail "request $id is not issued"
[ "$(sqlite3 "$DB" 'SELECT count(*) FROM certificates')" = 1 ] || it_fail "not exactly one certificate recorded"

# Reject: 4.03 with the operator's reason.
est_csr "$T/d2.key" "$T/d2.csr" dev-2
est_req gnutls idevid post /est/sen -t 286 -f "$T/d2.csr"
it_expect_code 5.03
id2=$(newest pending)
ctl reject "$id2" --reason "unknown device" >/dev/null || it_fail "estctl reject"
est_req gnutls idevid post /est/sen -t 286 -f "$T/d2.csr"
it_expect_code 4.03
grep -q "unknown device" "$IT_STDERR" || it_fail "4.03 without the reason: $(cat "$IT_STDERR")"

# Pre-authorised by subject: issued at once.
ctl preauth add --subject "CN=pre-1" >/dev/null || it_fail "estctl preauth add"
est_csr "$T/p1.key" "$T/p1.csr" pre-1
est_req openssl idevid post /est/sen -t 286 -f "$T/p1.csr"
it_expect_code 2.04

# skg under manual approval: 5.03 first, the key is made only after the
# approval, and no private key ever reaches the database.
est_csr "$T/k1.key" "$T/k1.csr" kg-1
est_req gnutls idevid post /est/skg -t 286 -f "$T/k1.csr"
it_expect_code 5.03
ctl approve "$(newest pending)" >/dev/null || it_fail "estctl approve skg"
mkdir -p "$T/k1"
est_req gnutls idevid post /est/skg -t 286 -f "$T/k1.csr"
it_expect_code 2.04
/usr/bin/python3 "$(dirname "$0")/mpsplit.py" "$IT_PAYLOAD_FILE" "$T/k1" 281 || it_fail "skg multipart"
keyhex=$(od -An -tx1 "$T/k1/key.der" | tr -d ' \n' | cut -c 60-140)
sqlite3 "$DB" .dump | tr -d '\n' | tr 'A-F' 'a-f' | grep -q "$keyhex" &&
  it_fail "the generated private key is in the database"

# The per-client cap: dev-3 is the second live request, dev-4 the third.
est_csr "$T/d3.key" "$T/d3.csr" dev-3
est_req gnutls idevid post /est/sen -t 286 -f "$T/d3.csr"
it_expect_code 5.03
est_csr "$T/d4.key" "$T/d4.csr" dev-4
est_csr "$T/d5.key" "$T/d5.csr" dev-5
est_req gnutls idevid post /est/sen -t 286 -f "$T/d4.csr"
it_expect_code 5.03
est_req gnutls idevid post /est/sen -t 286 -f "$T/d5.csr"
it_expect_code 5.03
grep -q "too many requests" "$IT_STDERR" || it_fail "cap not applied: $(cat "$IT_STDERR")"

# kill -9 with pending requests and fresh decisions: nothing is lost.
id3=$(ctl list --state pending --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
ctl approve "$id3" >/dev/null || it_fail "estctl approve before kill"
kill -9 "${IT_PIDS[coapd]}"
wait "${IT_PIDS[coapd]}" 2>/dev/null
unset "IT_PIDS[coapd]"
[ "$(sqlite3 "$DB" 'PRAGMA integrity_check')" = ok ] || it_fail "integrity_check after kill -9"
it_coapd_start "$CONF" coapd
est_req gnutls idevid post /est/sen -t 286 -f "$T/d3.csr"
it_expect_code 2.04
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 2.04
cmp -s "$IT_PAYLOAD_FILE" "$T/d1-first.p7" || it_fail "after the restart the retry got other bytes"
est_req gnutls idevid post /est/sen -t 286 -f "$T/d4.csr"
it_expect_code 5.03
est_stop
[ "$(sqlite3 "$DB" 'PRAGMA integrity_check')" = ok ] || it_fail "integrity_check"
# Every change has its audit row, with the operator as actor (and the
# login that named it, docs/decisions.md §14).
[ "$(sqlite3 "$DB" "SELECT count(*) FROM audit WHERE actor LIKE 'tester (unix %)' AND action IN ('approved','rejected')")" = 4 ] ||
  it_fail "audit rows: $(sqlite3 "$DB" 'SELECT action, actor FROM audit')"

# What the approver sees (docs/decisions.md §15): a manual-policy request
# shows the SANs and key its CSR asks for and the serial and SHA-256
# fingerprint of the IDevID it came with; a dry run decides nothing; a
# pre-authorisation written with a blank after the comma matches.
it_coapd_start "$CONF" coapd
ifp=$(openssl x509 -in "$PKI/idevid.crt" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
iser=$(openssl x509 -in "$PKI/idevid.crt" -noout -serial | sed 's/.*=//' | tr 'A-F' 'a-f')
[ ${#ifp} = 64 ] && [ -n "$iser" ] || it_fail "cannot read the IDevID's fingerprint and serial"
est_csr "$T/s1.key" "$T/s1.csr" dev-44 'organization = "acme"' 'dns_name = "dev-44.example"' \
  'ip_address = "10.0.0.44"'
est_req gnutls idevid post /est/sen -t 286 -f "$T/s1.csr"
it_expect_code 5.03
sid=$(newest pending)
ctl show "$sid" --json >"$T/s1.json" || it_fail "estctl show $sid --json"
/usr/bin/python3 - "$T/s1.json" "$iser" "$ifp" <<'EOF' || it_fail "estctl show --json: $(cat "$T/s1.json")"
import json, sys
x = json.load(open(sys.argv[1]))
assert x["state"] == "pending" and x["subject"] == "CN=dev-44,O=acme", x
assert {"type": "dns", "value": "dev-44.example"} in x["sans"], x["sans"]
assert {"type": "ip", "value": "10.0.0.44"} in x["sans"], x["sans"]
assert (x["keyType"], x["keyBits"], x["keyCurve"]) == ("ec", 256, "secp256r1"), x
assert x["clientClass"] == "idevid" and "idevid-0001" in x["client"], x
assert x["clientSerial"] == sys.argv[2].lstrip("0") or x["clientSerial"] == sys.argv[2], (x, sys.argv[2])
assert x["clientFingerprint"] == sys.argv[3], (x, sys.argv[3])
EOF
ctl list --san dev-44.example --client "${ifp:0:12}" --json | /usr/bin/python3 -c '
import json, sys
r = json.load(sys.stdin)
assert [x["id"] for x in r] == ['"$sid"'], r' || it_fail "estctl list --san --client"
naudit=$(sqlite3 "$DB" 'SELECT count(*) FROM audit')
ctl approve --subject dev-44 --dry-run >"$T/dry.out" || it_fail "estctl approve --dry-run: $(cat "$T/dry.out")"
grep -q "^would approve request $sid: subject CN=dev-44,O=acme, sans dns:dev-44.example, ip:10.0.0.44, key ec secp256r1" "$T/dry.out" ||
  it_fail "dry run: $(cat "$T/dry.out")"
[ "$(sqlite3 "$DB" "SELECT state FROM requests WHERE id = $sid")" = pending ] || it_fail "the dry run decided"
[ "$(sqlite3 "$DB" 'SELECT count(*) FROM audit')" = "$naudit" ] || it_fail "the dry run wrote audit rows"
est_req gnutls idevid post /est/sen -t 286 -f "$T/s1.csr"
it_expect_code 5.03
# The operator writes a blank after the comma; the CSR's subject is
# CN=device-44,O=acme: one DN (RFC 4514), so it matches.
ctl preauth add --subject "CN=device-44, O=acme" >"$T/pa.out" || it_fail "preauth add: $(cat "$T/pa.out")"
grep -q "^pre-authorised subject 'CN=device-44,O=acme'" "$T/pa.out" || it_fail "preauth add: $(cat "$T/pa.out")"
est_csr "$T/s2.key" "$T/s2.csr" device-44 'organization = "acme"'
est_req openssl idevid post /est/sen -t 286 -f "$T/s2.csr"
it_expect_code 2.04
[ "$(sqlite3 "$DB" "SELECT state || ' ' || client_serial FROM requests WHERE subject = 'CN=device-44,O=acme'")" = "issued $(ctl show "$sid" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["clientSerial"])')" ] ||
  it_fail "the pre-authorised request: $(sqlite3 "$DB" "SELECT * FROM requests WHERE subject LIKE 'CN=device-44%'")"
# Bound to another IDevID it does not match; bound to this one it does.
ctl preauth add --subject "cn=device-45,o=acme" --idevid "$(printf '%064d' 0)" >/dev/null || it_fail "preauth add bound"
est_csr "$T/s3.key" "$T/s3.csr" device-45 'organization = "acme"'
est_req openssl idevid post /est/sen -t 286 -f "$T/s3.csr"
it_expect_code 5.03
ctl preauth remove --subject "CN=device-45,O=acme" >/dev/null || it_fail "preauth remove bound"
ctl preauth add --subject "CN=device-45, O=acme" --idevid "$ifp" >/dev/null || it_fail "preauth add bound to the IDevID"
est_req openssl idevid post /est/sen -t 286 -f "$T/s3.csr"
it_expect_code 2.04
est_stop
# max_pending_total: a bound on the whole queue, across clients. Two wait;
# a third from another key gets 5.03 "queue is full" and no row; once an
# operator takes one, it gets in.
rm -f "$T"/est.db*
est_start "idevid_policy manual" "max_pending_total 2" "retry_after 7"
for k in 1 2 3; do est_csr "$T/q$k.key" "$T/q$k.csr" "queue-$k" >/dev/null; done
for k in 1 2; do
  est_req gnutls idevid post /est/sen -t 286 -f "$T/q$k.csr"
  it_expect_code 5.03
done
est_req gnutls idevid post /est/sen -t 286 -f "$T/q3.csr"
it_expect_code 5.03
grep -q "the approval queue is full (2 requests waiting), retry later" "$IT_STDERR" ||
  it_fail "third request: diag $(cat "$IT_STDERR")"
[ "$(sqlite3 "$DB" "SELECT count(*) FROM requests")" = 2 ] || it_fail "a full queue still took a request"
grep -q "approval queue full: 2 pending requests" "$T/coapd.log" || it_fail "no warning for the full queue"
ctl reject "$(sqlite3 "$DB" "SELECT id FROM requests ORDER BY id LIMIT 1")" --reason "not ours" >/dev/null ||
  it_fail "reject"
est_req gnutls idevid post /est/sen -t 286 -f "$T/q3.csr"
it_expect_code 5.03
grep -q "waiting for an operator" "$IT_STDERR" || it_fail "after a rejection: $(cat "$IT_STDERR")"
[ "$(sqlite3 "$DB" "SELECT count(*) FROM requests WHERE state = 'pending'")" = 2 ] || it_fail "queue count"
est_stop
it_pass
