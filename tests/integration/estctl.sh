#!/bin/bash
# estctl against a real database seeded through the store API (seed_store):
# usage errors, list/show (table and --json), approve/reject (bulk, wrong
# state, unknown id), preauth add/list/remove, certs, revoke, audit, raw
# control envelopes and events, a missing database (exit 3, nothing
# created) and a locked one (exit 3, "busy"). JSON output is validated
# against schemas/ and the audit rows are cross-checked with the sqlite3 CLI.
#
# Environment: ESTCTL, SEED_STORE (binaries), EST_SCHEMAS (schemas/).
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# lib.sh's it_init insists on COAPD; this test starts no server.
: "${COAPD:=$ESTCTL}"
export COAPD
it_init estctl

[ -n "$ESTCTL" ] && [ -x "$ESTCTL" ] || it_fail "ESTCTL is not set to an executable ('$ESTCTL')"
[ -n "$SEED_STORE" ] && [ -x "$SEED_STORE" ] || it_fail "SEED_STORE is not set to an executable"
SCHEMAS=${EST_SCHEMAS:-$IT_LIB_DIR/../../schemas}
PY=/usr/bin/python3
command -v sqlite3 >/dev/null || it_fail "no sqlite3 CLI"
$PY -c 'import jsonschema' 2>/dev/null || it_fail "$PY has no jsonschema module (python3-jsonschema)"
DB=$T/est.db
N=0

# ------------------------------------------------------------ helpers

# ec ARGS...: run estctl --db $DB --actor alice ARGS; RC, $OUT, $ERR.
# ec_raw ARGS...: the same without the --db/--actor defaults.
ec_raw() {
  N=$((N + 1))
  OUT=$T/out.$N
  ERR=$T/err.$N
  timeout -k 5 60 "$ESTCTL" "$@" >"$OUT" 2>"$ERR" </dev/null
  RC=$?
  [ "$RC" = 124 ] && it_fail "estctl $* did not finish"
  it_san_check "$ERR"
  return 0
}
ec() { ec_raw --db "$DB" --actor alice "$@"; }
# --actor is recorded with the login name that gave it (docs/decisions.md §14).
ME=$(logname 2>/dev/null || id -un)
ALICE="alice (unix $ME)"
BOB="bob (unix $ME)"

expect_rc() {
  [ "$RC" = "$1" ] ||
    it_fail "exit $RC, expected $1 (estctl run $N): $(head -c 600 "$ERR") $(head -c 600 "$OUT")"
}
expect_out() {
  grep -Eq -- "$1" "$OUT" || it_fail "stdout of run $N does not match '$1': $(head -c 800 "$OUT")"
}
expect_err() {
  grep -Eq -- "$1" "$ERR" || it_fail "stderr of run $N does not match '$1': $(head -c 800 "$ERR")"
}
expect_no_out() {
  [ ! -s "$OUT" ] || it_fail "unexpected stdout in run $N: $(head -c 400 "$OUT")"
}
sql() { sqlite3 -batch -noheader "$DB" "$1"; }
expect_sql() {
  local got
  got=$(sql "$1") || it_fail "sqlite3 failed on: $1"
  [ "$got" = "$2" ] || it_fail "SQL '$1' gave '$got', expected '$2'"
}

# Schema checks: validate MODE ARGS (see the script below).
cat >"$T/validate.py" <<'EOF'
import json, pathlib, sys
from jsonschema import Draft202012Validator, RefResolver

root = pathlib.Path(sys.argv[1]).resolve()
mode = sys.argv[2]

def validator(rel):
    path = root / rel
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(
        schema, resolver=RefResolver(base_uri=path.as_uri(), referrer=schema))

def check(rel, doc, what):
    errors = sorted(validator(rel).iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        print(f"{what}: {rel}: {'/'.join(map(str, e.path))}: {e.message}",
              file=sys.stderr)
    if errors:
        sys.exit(1)

if mode == "schemas":       # every schema is a valid 2020-12 schema
    n = 0
    for p in sorted(root.rglob("*.json")):
        Draft202012Validator.check_schema(json.loads(p.read_text()))
        n += 1
    print(n)
elif mode == "one":         # SCHEMA FILE
    check(sys.argv[3], json.loads(pathlib.Path(sys.argv[4]).read_text()),
          sys.argv[4])
elif mode == "each":        # SCHEMA FILE: a JSON array, each item
    doc = json.loads(pathlib.Path(sys.argv[4]).read_text())
    if not isinstance(doc, list):
        sys.exit(f"{sys.argv[4]}: not a JSON array")
    for i, item in enumerate(doc):
        check(sys.argv[3], item, f"{sys.argv[4]}[{i}]")
    print(len(doc))
elif mode == "show":        # FILE: request object + "audit" array
    doc = json.loads(pathlib.Path(sys.argv[3]).read_text())
    trail = doc.pop("audit")
    check("objects/request.json", doc, sys.argv[3])
    for i, a in enumerate(trail):
        check("objects/audit.json", a, f"{sys.argv[3]} audit[{i}]")
    print(len(trail))
elif mode == "events":      # FILE: "topic payload" lines; prints the kinds
    kinds = []
    for line in pathlib.Path(sys.argv[3]).read_text().splitlines():
        topic, payload = line.split(" ", 1)
        prefix = "est-coaps/v1/events/"
        if not topic.startswith(prefix):
            sys.exit(f"bad topic {topic}")
        kind = topic[len(prefix):]
        check(f"events/{kind}.json", json.loads(payload), line[:60])
        kinds.append(kind)
    print(" ".join(sorted(set(kinds))))
elif mode == "get":         # FILE EXPR: print a value, e.g. "[0]['state']"
    doc = json.loads(pathlib.Path(sys.argv[3]).read_text())
    v = eval("doc" + sys.argv[4], {"doc": doc})
    print(json.dumps(v) if not isinstance(v, str) else v)
else:
    sys.exit(f"unknown mode {mode}")
EOF
validate() { $PY "$T/validate.py" "$SCHEMAS" "$@" 2>"$T/validate.err" || it_fail "schema check $* failed: $(head -c 1500 "$T/validate.err")"; }
jget() { $PY "$T/validate.py" "$SCHEMAS" get "$1" "$2" || it_fail "cannot read $2 from $1"; }

# ------------------------------------------------------------ schemas
nschemas=$(validate schemas)
[ "$nschemas" -ge 30 ] || it_fail "only $nschemas schemas in $SCHEMAS"

# ------------------------------------------------------------ usage
ec_raw
expect_rc 2
expect_err "no command given"
ec_raw --help
expect_rc 0
expect_out "^usage: estctl --db PATH"
expect_out "exit status: 0 ok, 1 a command failed, 2 usage error, 3 database"
ec_raw -h
expect_rc 0
ec_raw --version
expect_rc 0
expect_out "^estctl \(est-coaps\) [0-9][^,]*, store schema [1-9]"
for c in list show approve reject preauth certs revoke crl audit raw events; do
  ec_raw "$c" --help # no --db needed for help
  expect_rc 0
  expect_out "usage: estctl --db PATH $c"
done
ec_raw list
expect_rc 2
expect_err "--db PATH is required"
ec_raw --db "$DB" frobnicate
expect_rc 2
expect_err "unknown command 'frobnicate'"
ec_raw --db "$DB" --bogus list
expect_rc 2
ec_raw --db "$DB" --busy-timeout x list
expect_rc 2
expect_err "bad busy timeout"
ec_raw --db "$DB" --actor "" list
expect_rc 2
ec show
expect_rc 2
expect_err "exactly one request ID"
ec show 1x
expect_rc 2
expect_err "bad request ID '1x'"
ec show -- -3
expect_rc 2
ec approve
expect_rc 2
ec approve 1 two
expect_rc 2
expect_err "bad request ID 'two'"
ec reject 1
expect_rc 2
expect_err "reject needs --reason"
ec list --state "done"
expect_rc 2
expect_err "unknown state 'done'"
ec list --reason x
expect_rc 2
expect_err "does not apply to list"
ec list --state
expect_rc 2
expect_err "needs a value"
ec preauth
expect_rc 2
ec preauth add
expect_rc 2
expect_err "give --subject DN, --idevid SHA256HEX, or both"
ec preauth remove --subject a --idevid b
expect_rc 2
ec preauth frob
expect_rc 2
ec revoke 01
expect_rc 2
expect_err "revoke needs --reason"
ec audit --limit 0
expect_rc 2
ec audit --limit 10001
expect_rc 2
[ ! -e "$DB" ] || it_fail "usage errors created $DB"

# ------------------------------------------------------------ no database
for cmd in "list" "approve 1" "preauth list" "audit" "revoke 01 --reason x"; do
  # shellcheck disable=SC2086
  ec $cmd
  expect_rc 3
  expect_err "^estctl: no database at $DB\$"
  expect_no_out
  [ ! -e "$DB" ] || it_fail "estctl $cmd created $DB"
done
echo "not a database at all, just some text that is long enough......" >"$T/junk.db"
ec_raw --db "$T/junk.db" list
expect_rc 3

# ------------------------------------------------------------ seed
"$SEED_STORE" "$DB" pending 5 >"$T/seed.out" 2>&1 || it_fail "seed_store pending: $(cat "$T/seed.out")"
[ "$(tr '\n' ' ' <"$T/seed.out")" = "1 2 3 4 5 " ] || it_fail "seeded ids: $(cat "$T/seed.out")"
[ "$("$SEED_STORE" "$DB" issued 0A1B2C)" = 6 ] || it_fail "seed_store issued"

# ------------------------------------------------------------ list / show
ec list
expect_rc 0
expect_out "^ID +STATE +FUNCTION +SUBJECT +SANS +KEY +CLIENT +CLIENT-SERIAL +CLIENT-FP +CREATED$"
[ "$(wc -l <"$OUT")" = 7 ] || it_fail "list: $(cat "$OUT")"
# seed_store's CSRs are not DER: no SANs or key to show; no client serial.
expect_out "^1 +pending +sen +CN=dev-0001 +- +- +CN=idevid-0001,serialNumber=0001,O=Test Manuf\.\.\. +- +[0-9a-f]{16}\.\.\. +20[0-9-]{8}T[0-9:]{8}Z$"
expect_out "^6 +issued +sen +CN=auto-0A1B2C "
# Columns are aligned: each column starts where its header does, after a
# blank, on every row.
awk 'NR == 1 { n = split("STATE FUNCTION SUBJECT SANS KEY CLIENT CLIENT-SERIAL CLIENT-FP CREATED", h, " ")
               for (i = 1; i <= n; i++) pos[i] = index($0, h[i]); next }
     { for (i = 1; i <= n; i++)
         if (substr($0, pos[i] - 1, 1) != " " || substr($0, pos[i], 1) == " ") {
           print "row " NR ", column " h[i]; exit 1 } }' "$OUT" ||
  it_fail "list table not aligned: $(cat "$OUT")"

ec list --json
expect_rc 0
[ "$(validate each objects/request.json "$OUT")" = 6 ] || it_fail "list --json: not 6 requests"
[ "$(jget "$OUT" "[5]['certSerial']")" = 0a1b2c ] || it_fail "certSerial of the issued request"
[ "$(jget "$OUT" "[0]['certSerial']")" = null ] || it_fail "certSerial of a pending request"
[ "$(jget "$OUT" "[0]['clientClass']")" = idevid ] || it_fail "clientClass"
ec list --state pending --json
expect_rc 0
[ "$(validate each objects/request.json "$OUT")" = 5 ] || it_fail "list --state pending: not 5"
[ "$(jget "$OUT" "[4]['state']")" = pending ] || it_fail "list --state pending: state"
ec list --state expired
expect_rc 0
expect_out "^no requests in that state$"
ec list --state expired --json
expect_rc 0
[ "$(tr -d ' \n' <"$OUT")" = "[]" ] || it_fail "empty --json list: $(cat "$OUT")"

ec show 1
expect_rc 0
expect_out "^request 1$"
expect_out "^  state +pending$"
expect_out "^  subject +CN=dev-0001$"
expect_out "^  client +CN=idevid-0001,serialNumber=0001,O=Test Manufacturer$"
expect_out "^  certificate +-$"
expect_out "^audit trail:$"
expect_out "^ID +TIME +ACTOR +ACTION +SERIAL +DETAIL$"
expect_out "^1 +[0-9T:Z-]+ +coapd +pending "
ec show 6 --json
expect_rc 0
[ "$(validate show "$OUT")" = 1 ] || it_fail "show 6: audit trail length"
[ "$(jget "$OUT" "['certSerial']")" = 0a1b2c ] || it_fail "show 6 --json: certSerial"
[ "$(jget "$OUT" "['audit'][0]['detail']")" = direct ] || it_fail "show 6 --json: audit"
ec show 99
expect_rc 1
expect_err "^estctl: id 99: no such request$"
ec show 99 --json
expect_rc 1
expect_no_out

# ------------------------------------------------------------ approve / reject
ec approve 1 2 --reason "looks fine"
expect_rc 0
expect_out "^request 1 approved$"
expect_out "^request 2 approved$"
# Bulk with one failure: the others still run, exit 1.
ec approve 1 3 999
expect_rc 1
expect_out "^request 3 approved$"
expect_err "^estctl: request 1 is approved, not pending$"
expect_err "^estctl: id 999: no such request$"
ec reject 4 5 --reason "unknown device"
expect_rc 0
expect_out "^request 4 rejected$"
expect_out "^request 5 rejected$"
ec reject 4 --reason again
expect_rc 1
expect_err "request 4 is rejected, not pending"
ec approve 6
expect_rc 1
expect_err "request 6 is issued, not pending"
ec show 2 --json
expect_rc 0
validate show "$OUT" >/dev/null
[ "$(jget "$OUT" "['state']")" = approved ] || it_fail "request 2 not approved"
[ "$(jget "$OUT" "['reason']")" = "looks fine" ] || it_fail "request 2 reason"
[ "$(jget "$OUT" "['audit'][1]['actor']")" = "$ALICE" ] || it_fail "request 2 audit actor"
ec list --state rejected --json
[ "$(validate each objects/request.json "$OUT")" = 2 ] || it_fail "2 rejected"
[ "$(jget "$OUT" "[0]['reason']")" = "unknown device" ] || it_fail "reject reason"

# The audit trail in the database, by actor.
expect_sql "SELECT count(*) FROM audit WHERE action='approved' AND actor='$ALICE'" 3
expect_sql "SELECT group_concat(request_id) FROM (SELECT request_id FROM audit WHERE action='rejected' AND actor='$ALICE' AND detail='unknown device' ORDER BY id)" "4,5"
expect_sql "SELECT state FROM requests WHERE id=3" approved
expect_sql "SELECT count(*) FROM audit WHERE actor='coapd' AND action='pending'" 5

# ------------------------------------------------------------ preauth
ec preauth list
expect_rc 0
expect_out "^no pre-authorisations$"
# Default actor: the login name.
ec_raw --db "$DB" preauth add --subject "CN=dev-0100,O=Acme" --note "ticket 7"
expect_rc 0
expect_out "^pre-authorised subject 'CN=dev-0100,O=Acme' \(id 1\)$"
actor=$(sql "SELECT actor FROM audit WHERE action='preauth_add'")
me=$(id -un)
login=$(logname 2>/dev/null || true)
[ -n "$actor" ] && { [ "$actor" = "$me" ] || [ "$actor" = "$login" ]; } ||
  it_fail "default actor '$actor' is neither '$me' nor '$login'"
expect_sql "SELECT actor FROM preauth WHERE value='CN=dev-0100,O=Acme'" "$actor"
FP=00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF
ec preauth add --idevid "$FP"
expect_rc 0
expect_out "^pre-authorised idevid ${FP,,} \(id 2\)$"
ec preauth add --idevid "${FP,,}"
expect_rc 1
expect_err "already pre-authorised"
ec preauth add --idevid abc
expect_rc 1
expect_err "64 hex digits"
ec preauth list
expect_rc 0
expect_out "^ID +KIND +VALUE +IDEVID +NOTE +CREATED +ACTOR$"
expect_out "^1 +subject +CN=dev-0100,O=Acme +- +ticket 7 "
expect_out "^2 +idevid +${FP,,} +- +- .* alice \\(unix $ME\\)$"
ec preauth list --json
[ "$(validate each objects/preauth.json "$OUT")" = 2 ] || it_fail "preauth list --json"
ec preauth remove --subject "CN=dev-0100,O=Acme"
expect_rc 0
expect_out "^removed the pre-authorisation of subject 'CN=dev-0100,O=Acme'$"
ec preauth remove --subject "CN=dev-0100,O=Acme"
expect_rc 1
expect_err "subject 'CN=dev-0100,O=Acme' is not pre-authorised"
expect_sql "SELECT count(*) FROM preauth" 1
expect_sql "SELECT actor || ' ' || detail FROM audit WHERE action='preauth_remove'" "$ALICE subject CN=dev-0100,O=Acme"

# ------------------------------------------------------------ certs / revoke
"$SEED_STORE" "$DB" issue 1 BEEF01 >/dev/null || it_fail "seed_store issue"
ec certs
expect_rc 0
expect_out "^SERIAL +SUBJECT +NOT AFTER +REQUEST +REVOKED +CREATED$"
expect_out "^0a1b2c +CN=auto-0A1B2C +[0-9T:Z-]+ +6 +no "
expect_out "^beef01 +CN=dev-0001 +[0-9T:Z-]+ +1 +no "
ec certs --json
[ "$(validate each objects/certificate.json "$OUT")" = 2 ] || it_fail "certs --json"
# RFC 5280 reason names only (docs/decisions.md §14).
ec revoke BEEF01 --reason "key compromise"
expect_rc 1
expect_err "reason 'key compromise' is not an RFC 5280 revocation reason; use one of: unspecified, keyCompromise"
ec revoke BEEF01 --reason keyCompromise
expect_rc 0
expect_out "^certificate beef01 revoked$"
ec revoke beef01 --reason superseded
expect_rc 1
expect_err "certificate beef01 is already revoked"
ec revoke 123456 --reason superseded
expect_rc 1
expect_err "serial 123456: no such certificate"
ec revoke zz --reason superseded
expect_rc 1
expect_err "serial must be hex digits"
ec certs --json
validate each objects/certificate.json "$OUT" >/dev/null
[ "$(jget "$OUT" "[1]['revoked']")" = true ] || it_fail "beef01 not revoked"
[ "$(jget "$OUT" "[1]['revokeReason']")" = "keyCompromise" ] || it_fail "revoke reason"
ec certs
expect_out "^beef01 +CN=dev-0001 +[0-9T:Z-]+ +1 +20[0-9-]+T"
expect_sql "SELECT actor || ' ' || cert_serial || ' ' || detail FROM audit WHERE action='revoked'" "$ALICE beef01 keyCompromise"

# No coapd has published a CRL into this database (it.est_crl does).
ec crl --out "$T/none.crl"
expect_rc 1
expect_err "no CRL has been published yet"
[ ! -e "$T/none.crl" ] || it_fail "crl wrote a file without a CRL"
ec crl
expect_rc 2
expect_err "crl needs --out FILE"

# ------------------------------------------------------------ audit
ec audit
expect_rc 0
expect_out "^ID +TIME +ACTOR +ACTION +SERIAL +REQUEST +DETAIL$"
expect_out " alice \\(unix $ME\\) +revoked +beef01 +1 +keyCompromise$"
ec audit --json
total=$(validate each objects/audit.json "$OUT")
[ "$total" = "$(sql 'SELECT count(*) FROM audit')" ] || it_fail "audit --json: $total rows"
[ "$(jget "$OUT" "[0]['action']")" = revoked ] || it_fail "audit: newest first"
ec audit --request 1 --json
[ "$(validate each objects/audit.json "$OUT")" = 4 ] || it_fail "audit --request 1: pending approved issued revoked"
[ "$(jget "$OUT" "[3]['action']")" = pending ] || it_fail "audit --request 1 order"
ec audit --limit 2 --json
[ "$(validate each objects/audit.json "$OUT")" = 2 ] || it_fail "audit --limit 2"
ec audit --request 999
expect_rc 1
expect_err "id 999: no such request"

# ------------------------------------------------------------ raw envelopes
cat >"$T/env.json" <<'EOF'
{"commands":[
 {"command":"listRequests","state":"approved","correlationData":"c1"},
 {"command":"getRequest","id":3,"correlationData":"c2"},
 {"command":"approveRequest","id":3,"correlationData":"c3"},
 {"command":"addPreauth","kind":"subject","value":"CN=raw","note":"n","correlationData":"c4"},
 {"command":"removePreauth","kind":"subject","value":"CN=raw"},
 {"command":"listPreauth"},
 {"command":"listCertificates"},
 {"command":"revokeCertificate","serial":"0a1b2c","reason":"affiliationChanged"},
 {"command":"listAudit","requestId":1,"limit":2},
 {"command":"rejectRequest","id":42,"reason":"x","correlationData":"c10"}
]}
EOF
validate one control/envelope.json "$T/env.json"
ec_raw --db "$DB" --actor bob raw "$(cat "$T/env.json")"
expect_rc 1 # approveRequest 3 and rejectRequest 42 fail
validate one control/reply.json "$OUT"
[ "$(jget "$OUT" "['responses'][0]['correlationData']")" = c1 ] || it_fail "raw: correlationData"
[ "$(jget "$OUT" "['responses'][2]['error']")" = "request 3 is approved, not pending" ] || it_fail "raw: approve 3"
[ "$(jget "$OUT" "['responses'][9]['error']")" = "id 42: no such request" ] || it_fail "raw: reject 42"
[ "$(jget "$OUT" "['responses'][7]['data']['certificate']['revoked']")" = true ] || it_fail "raw: revoke"
expect_sql "SELECT count(*) FROM audit WHERE actor='$BOB'" 3 # add, remove, revoke
ec raw '{"commands":[{"command":"listRequests"}'
expect_rc 1
validate one control/reply.json "$OUT"
[ "$(jget "$OUT" "['responses'][0]['error']")" = "message is not valid JSON" ] || it_fail "raw: bad JSON"
ec raw '{"commands":[{"command":"nope","correlationData":"z"}]}'
expect_rc 1
validate one control/reply.json "$OUT"
[ "$(jget "$OUT" "['responses'][0]['error']")" = "unknown command 'nope'" ] || it_fail "raw: unknown command"
# Through stdin (ec's stdin is /dev/null, so run it directly).
echo '{"commands":[{"command":"listPreauth","correlationData":"s"}]}' |
  timeout 60 "$ESTCTL" --db "$DB" raw >"$T/stdin.out" 2>"$T/stdin.err" ||
  it_fail "raw from stdin: $(cat "$T/stdin.err")"
it_san_check "$T/stdin.err"
validate one control/reply.json "$T/stdin.out"
[ "$(jget "$T/stdin.out" "['responses'][0]['correlationData']")" = s ] || it_fail "raw stdin"
# Too large: one byte over CTL_MSG_MAX (65536).
{ printf '{"commands":[]}'; head -c 65522 /dev/zero | tr '\0' ' '; } >"$T/big.json"
[ "$(wc -c <"$T/big.json")" = 65537 ] || it_fail "big.json size"
timeout 60 "$ESTCTL" --db "$DB" raw - <"$T/big.json" >"$T/big.out" 2>"$T/big.err"
[ $? = 1 ] || it_fail "raw too large: exit status"
it_san_check "$T/big.err"
validate one control/reply.json "$T/big.out"
grep -q "message too large (65537 bytes, at most 65536)" "$T/big.out" || it_fail "raw too large: $(head -c 300 "$T/big.out")"
# At the cap it runs.
head -c 65536 "$T/big.json" | timeout 60 "$ESTCTL" --db "$DB" raw - >"$T/cap.out" 2>&1 ||
  it_fail "raw at the cap: $(head -c 300 "$T/cap.out")"
grep -qx '{"responses":\[\]}' "$T/cap.out" || it_fail "raw at the cap: $(head -c 300 "$T/cap.out")"

# ------------------------------------------------------------ events
"$SEED_STORE" "$DB" pending 1 1 >/dev/null || it_fail "seed_store pending with ttl"
[ "$("$SEED_STORE" "$DB" expire 10)" = 1 ] || it_fail "seed_store expire"
ec events
expect_rc 0
kinds=$(validate events "$OUT")
[ "$kinds" = "approved expired issued pending rejected revoked" ] || it_fail "event kinds: '$kinds'"
nev=$(wc -l <"$OUT")
nrows=$(sql "SELECT count(*) FROM audit WHERE action IN ('pending','approved','rejected','issued','expired','revoked')")
[ "$nev" = "$nrows" ] || it_fail "$nev events for $nrows audit rows"
ec events --after 5 --limit 3
expect_rc 0
expect_out '"auditId":6,'
[ "$(grep -c . "$OUT")" -le 3 ] || it_fail "events --limit 3"

# ------------------------------------------------------------ locked database
"$SEED_STORE" "$DB" pending 1 >"$T/seed2.out" || it_fail "seed_store pending"
busy_id=$(cat "$T/seed2.out")
# Hold the write lock in another process for a few seconds.
mkfifo "$T/lock.fifo"
sqlite3 "$DB" <"$T/lock.fifo" >"$T/sqlite-lock.log" 2>&1 &
IT_PIDS[sqlitelock]=$!
exec 9>"$T/lock.fifo"
# .timeout: the probe below may hold the lock for an instant; the holder
# waits it out instead of failing with "database is locked".
echo ".timeout 5000" >&9
echo "BEGIN EXCLUSIVE; INSERT INTO meta VALUES('estctl-test','locked');" >&9
# Wait until the lock is really held.
for ((i = 0; i < 50; i++)); do
  sqlite3 -cmd ".timeout 0" "$DB" "BEGIN IMMEDIATE; ROLLBACK;" >/dev/null 2>&1 || break
  sleep 0.1
done
((i < 50)) || it_fail "the sqlite3 CLI did not take the lock"
start=$(date +%s%N)
ec --busy-timeout 200 approve "$busy_id"
elapsed=$((($(date +%s%N) - start) / 1000000))
expect_rc 3
expect_err "database is busy"
((elapsed < 3000)) || it_fail "busy approve took $elapsed ms with --busy-timeout 200"
# Bulk: each one reports busy, exit 3.
ec --busy-timeout 100 reject "$busy_id" 1 --reason x
expect_rc 3
[ "$(grep -cE "^estctl: request ($busy_id|1): database is busy" "$ERR")" = 2 ] || it_fail "bulk busy: $(cat "$ERR")"
# Readers are not blocked (WAL).
ec --busy-timeout 200 list --state pending
expect_rc 0
expect_out "^$busy_id +pending "
echo "ROLLBACK;" >&9
exec 9>&-
wait "${IT_PIDS[sqlitelock]}" 2>/dev/null
unset "IT_PIDS[sqlitelock]"
ec --busy-timeout 200 approve "$busy_id"
expect_rc 0
expect_out "^request $busy_id approved$"
expect_sql "SELECT count(*) FROM meta WHERE key='estctl-test'" 0

# Nothing was ever written by a refused command: every audit row of alice
# matches a successful action above.
expect_sql "SELECT count(*) FROM audit WHERE actor='$ALICE'" 9

# ------------------------------------------------------------ what the approver sees
# docs/decisions.md §15. Two requests get real CSRs (certtool) in place of
# seed_store's filler, one a client serial and an age of three hours.
command -v certtool >/dev/null || it_fail "no certtool"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$T/a.key" 2>/dev/null
certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$T/b.key" 2>/dev/null
printf 'cn = "device-44"\norganization = "acme"\ndns_name = "dev-44.example"\nip_address = "10.0.0.44"\n' >"$T/a.tmpl"
printf 'cn = "device-45"\ndns_name = "dev-45.other"\n' >"$T/b.tmpl"
for x in a b; do
  certtool --generate-request --load-privkey "$T/$x.key" --template "$T/$x.tmpl" --outder \
    --outfile "$T/$x.csr" 2>/dev/null || it_fail "certtool request $x"
done
"$SEED_STORE" "$DB" pending 2 >"$T/seed3.out" || it_fail "seed_store pending 2"
a_id=$(sed -n 1p "$T/seed3.out")
b_id=$(sed -n 2p "$T/seed3.out")
sql "UPDATE requests SET csr = readfile('$T/a.csr'), subject = 'CN=device-44,O=acme',
     client_serial = '0a1b2c3d', created = created - 10800 WHERE id = $a_id"
sql "UPDATE requests SET csr = readfile('$T/b.csr'), subject = 'CN=device-45' WHERE id = $b_id"
afp=$(sql "SELECT lower(hex(client_fp)) FROM requests WHERE id = $a_id")
audit_before=$(sql "SELECT count(*) FROM audit")
ec show "$a_id"
expect_rc 0
expect_out "^  sans +dns:dev-44\.example, ip:10\.0\.0\.44$"
expect_out "^  key +ec secp256r1$"
expect_out "^  client serial +0a1b2c3d$"
expect_out "^  client sha256 +$afp$"
ec show "$a_id" --json
validate show "$OUT" >/dev/null
[ "$(jget "$OUT" "['sans'][1]['type']")" = ip ] || it_fail "show --json: sans"
[ "$(jget "$OUT" "['keyBits']")" = 256 ] || it_fail "show --json: keyBits"
[ "$(jget "$OUT" "['clientSerial']")" = 0a1b2c3d ] || it_fail "show --json: clientSerial"
ec show "$b_id"
expect_out "^  key +rsa 2048$"
expect_out "^  client serial +-$"
# seed_store's filler CSR does not parse: null, "-" in the table.
ec show 1 --json
[ "$(jget "$OUT" "['sans']")" = null ] || it_fail "an unparsable CSR: sans $(cat "$OUT")"
# Filters.
ec list --san dev-44
expect_rc 0
[ "$(grep -c . "$OUT")" = 2 ] || it_fail "list --san dev-44: $(cat "$OUT")"
expect_out "^$a_id +pending +sen +CN=device-44,O=acme +dns:dev-44\.example, ip:10\.0\.0\.44 +ec secp256r1 "
ec list --san DEV-4 --json
[ "$(validate each objects/request.json "$OUT")" = 2 ] || it_fail "list --san DEV-4: not 2"
ec list --subject device-45 --json
[ "$(jget "$OUT" "[0]['id']")" = "$b_id" ] || it_fail "list --subject"
ec list --client "${afp:0:10}" --json
[ "$(validate each objects/request.json "$OUT")" = 1 ] || it_fail "list --client FP prefix"
ec list --client "${afp:0:2}:${afp:2:2}:${afp:4:2}" --json
[ "$(jget "$OUT" "[0]['id']")" = "$a_id" ] || it_fail "list --client FP with colons"
ec list --older-than 2h --state pending --json
[ "$(validate each objects/request.json "$OUT")" = 1 ] || it_fail "list --older-than 2h: $(cat "$OUT")"
ec list --newer-than 1h --san dev-4 --json
[ "$(jget "$OUT" "[0]['id']")" = "$b_id" ] || it_fail "list --newer-than"
ec list --older-than 2x
expect_rc 2
expect_err "bad age '2x'"
ec list --san no-such-name
expect_rc 0
expect_out "^no requests match the filter$"
# Bulk decisions: a dry run changes nothing.
ec approve --subject device-4 --dry-run
expect_rc 0
expect_out "^would approve request $a_id: subject CN=device-44,O=acme, sans dns:dev-44\.example, ip:10\.0\.0\.44, key ec secp256r1, client "
expect_out "^would approve request $b_id: subject CN=device-45, sans dns:dev-45\.other, key rsa 2048, "
expect_out "^dry run: nothing approved$"
expect_sql "SELECT count(*) FROM requests WHERE id IN ($a_id, $b_id) AND state = 'pending'" 2
expect_sql "SELECT count(*) FROM audit" "$audit_before"
ec approve --san no-such-name
expect_rc 1
expect_err "no pending request matches the filter; nothing approved"
ec approve 1 --subject x
expect_rc 2
expect_err "not both"
ec reject --older-than 2h --reason "too old"
expect_rc 0
expect_out "^rejected request $a_id: subject CN=device-44,O=acme"
[ "$(grep -c . "$OUT")" = 1 ] || it_fail "reject --older-than: $(cat "$OUT")"
expect_sql "SELECT state || ' ' || reason FROM requests WHERE id = $a_id" "rejected too old"
expect_sql "SELECT count(*) FROM audit WHERE request_id = $a_id AND action = 'rejected' AND detail = 'too old'" 1
ec approve --subject device-45 --san dev-45
expect_rc 0
expect_out "^approved request $b_id: "
# Pre-authorisation compares DNs canonically (RFC 4514).
ec preauth add --subject "cn=device-46, O=acme"
expect_rc 0
expect_out "^pre-authorised subject 'CN=device-46,O=acme' \(id [0-9]+\)$"
expect_sql "SELECT count(*) FROM preauth WHERE value = 'CN=device-46,O=acme'" 1
ec preauth add --subject "CN=device-46,O=acme"
expect_rc 1
expect_err "already pre-authorised"
ec preauth add --subject "not a DN"
expect_rc 1
expect_err "not an RFC 4514 distinguished name"
ec preauth add --subject "CN=device-47" --idevid "$afp" --note bound
expect_rc 0
expect_out "^pre-authorised subject 'CN=device-47' bound to idevid $afp "
ec preauth list --json
validate each objects/preauth.json "$OUT" >/dev/null
expect_sql "SELECT idevid FROM preauth WHERE value = 'CN=device-47'" "$afp"
ec preauth remove --subject "CN = device-46 , o=acme"
expect_rc 0
expect_sql "SELECT count(*) FROM preauth WHERE value = 'CN=device-46,O=acme'" 0
# The same over the control envelope.
cat >"$T/env2.json" <<EOF
{"commands":[
 {"command":"listRequests","san":"dev-4","olderThan":3600},
 {"command":"listRequests","client":"${afp:0:8}","newerThan":86400},
 {"command":"addPreauth","kind":"subject","value":"CN=x, O=y","idevid":"$afp"}
]}
EOF
validate one control/envelope.json "$T/env2.json"
ec raw "$(cat "$T/env2.json")"
expect_rc 0
validate one control/reply.json "$OUT"
[ "$(jget "$OUT" "['responses'][0]['data']['requests'][0]['id']")" = "$a_id" ] || it_fail "raw: san + olderThan"
[ "$(jget "$OUT" "['responses'][1]['data']['requests'][0]['id']")" = "$a_id" ] || it_fail "raw: client + newerThan"
[ "$(jget "$OUT" "['responses'][2]['data']['preauth']['value']")" = "CN=x,O=y" ] || it_fail "raw: canonical preauth"
ec raw '{"commands":[{"command":"listRequests","olderThan":-1}]}'
expect_rc 1
validate one control/reply.json "$OUT"
[ "$(jget "$OUT" "['responses'][0]['error']")" = "olderThan must be a whole number of seconds (0 to 3155760000)" ] ||
  it_fail "raw: olderThan -1"
ec approve --help
expect_out "--dry-run"
ec list --help
expect_out "--older-than AGE"

# ------------------------------------------------------------ init / backup
umask 022
ec_raw --db "$T/new.db" init
expect_rc 0
expect_out "^created $T/new.db \\(schema [0-9]+, mode 0600\\)$"
[ "$(stat -c %a "$T/new.db")" = 600 ] || it_fail "init: mode $(stat -c %a "$T/new.db") under umask 022"
[ "$(sqlite3 "$T/new.db" 'PRAGMA user_version')" -ge 3 ] || it_fail "init: schema not applied"
ec_raw --db "$T/new.db" init
expect_rc 1
expect_err "exists; nothing done"
grp=$(getent group nogroup >/dev/null && echo nogroup || id -gn)
ec_raw --db "$T/grp.db" init --group "$grp"
expect_rc 0
[ "$(stat -c %a "$T/grp.db")" = 640 ] && [ "$(stat -c %G "$T/grp.db")" = "$grp" ] ||
  it_fail "init --group: $(stat -c '%a %G' "$T/grp.db")"
ec_raw --db "$T/x.db" init --group no-such-group-here
expect_rc 2
ec backup "$T/copy.db"
expect_rc 0
expect_out "^backup of $DB written to $T/copy.db \\([0-9]+ pages\\)$"
[ "$(stat -c %a "$T/copy.db")" = 600 ] || it_fail "backup: mode $(stat -c %a "$T/copy.db")"
[ "$(sqlite3 "$T/copy.db" 'PRAGMA integrity_check')" = ok ] || it_fail "backup: integrity"
[ "$(sqlite3 "$T/copy.db" 'SELECT count(*) FROM audit')" = "$(sql 'SELECT count(*) FROM audit')" ] ||
  it_fail "backup: audit rows differ"
[ ! -e "$T/copy.db-wal" ] || it_fail "backup left a -wal beside it"
ec backup "$T/copy.db"
expect_rc 1
expect_err "exists; give a new file"
ec backup
expect_rc 2

# ------------------------------------------------------------ prune
audits=$(sql 'SELECT count(*) FROM audit')
ec prune --before 2000-01-01 --dry-run
expect_rc 0
expect_out "^would remove 0 decided requests and 0 audit rows from before 946684800$"
ec prune --before 2099-01-01T00:00:00Z --dry-run
expect_rc 0
expect_out "^would remove [1-9][0-9]* decided requests and $audits audit rows from before 4070908800$"
[ "$(sql 'SELECT count(*) FROM audit')" = "$audits" ] || it_fail "a dry run changed the audit trail"
ec prune
expect_rc 2
expect_err "prune needs --before DATE or --older-than AGE"
ec prune --before yesterday
expect_rc 2
ec prune --before 2099-01-01 --older-than 1d
expect_rc 2
# For real, on the backup: decided requests and the trail go; certificates,
# issued requests and pre-authorisations stay; the prune is audited.
certs=$(sqlite3 "$T/copy.db" 'SELECT count(*) FROM certificates')
issued=$(sqlite3 "$T/copy.db" "SELECT count(*) FROM requests WHERE state = 'issued'")
ec_raw --db "$T/copy.db" --actor alice prune --before 2099-01-01
expect_rc 0
expect_out "^removed [1-9][0-9]* decided requests and [1-9][0-9]* audit rows"
[ "$(sqlite3 "$T/copy.db" "SELECT count(*) FROM requests WHERE state IN ('rejected','expired')")" = 0 ] ||
  it_fail "prune left decided requests"
[ "$(sqlite3 "$T/copy.db" 'SELECT count(*) FROM certificates')" = "$certs" ] || it_fail "prune removed certificates"
[ "$(sqlite3 "$T/copy.db" "SELECT count(*) FROM requests WHERE state = 'issued'")" = "$issued" ] ||
  it_fail "prune removed issued requests"
[ "$(sqlite3 "$T/copy.db" "SELECT actor || ' ' || action FROM audit")" = "alice (unix $ME) pruned" ] ||
  it_fail "prune audit: $(sqlite3 "$T/copy.db" 'SELECT * FROM audit')"

it_pass
