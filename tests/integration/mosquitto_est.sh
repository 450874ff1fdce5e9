#!/usr/bin/env bash
# mosquitto_est.so end to end: a real mosquitto 2.0.11 on loopback with the
# plugin, coapd (idevid_policy manual) on the same database, coap-client as
# the device, mosquitto_sub/_rr/_pub and mosquitto_client.py as MQTT users.
#
#  - a manual enrollment appears as a `pending` event (operator subscriber);
#  - an operator approves with mosquitto_rr; the device's retry gets its
#    certificate; `approved` and `issued` events follow, actor = username;
#  - a non-operator's approve gets an error reply and changes nothing;
#  - a non-operator cannot subscribe to events (SUBACK 128) and gets none
#    even through a wildcard acl_file grants him; his own topics work;
#  - malformed, oversized and wrongly typed input gets error replies, the
#    publisher stays connected and the broker keeps serving; a locked
#    database gets "database is busy, try again" without stalling;
#  - events survive a broker restart: changes made with estctl and coapd
#    while the broker is down are published once after it is back, and a
#    second restart repeats none;
#  - every reply, command and event is validated against schemas/.
#
# Environment: COAPD, EST_PLUGIN, ESTCTL, MOSQ_EST_PLUGIN (binaries),
# EST_TEST_DATA, EST_SCHEMAS; EST_SANITIZE=1 in an ASan build (the broker
# then runs with libasan preloaded, see below); MOSQUITTO (default
# /usr/sbin/mosquitto).
# shellcheck disable=SC2016 # '$CONTROL/...' is a literal MQTT topic
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=est_lib.sh
. "$(dirname "$0")/est_lib.sh"
it_init mosquitto_est

PY=/usr/bin/python3
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
SCHEMAS=${EST_SCHEMAS:-$IT_LIB_DIR/../../schemas}
CLIENT=("$PY" "$IT_LIB_DIR/mosquitto_client.py")
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set to an executable ('${ESTCTL:-}')"
[ -f "${MOSQ_EST_PLUGIN:-}" ] || it_fail "MOSQ_EST_PLUGIN is not set ('${MOSQ_EST_PLUGIN:-}')"
[ -x "$MOSQUITTO" ] || it_fail "no mosquitto broker at $MOSQUITTO"
for b in mosquitto_sub mosquitto_rr mosquitto_pub mosquitto_passwd sqlite3 nm; do
  command -v "$b" >/dev/null || it_fail "no $b"
done
"$PY" -c 'import jsonschema' 2>/dev/null || it_fail "$PY has no jsonschema (python3-jsonschema)"

DB=$T/est.db
ctl() { "$ESTCTL" --db "$DB" --actor tester "$@"; }
jget() { "$PY" -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1:]: d = d[int(k)] if isinstance(d, list) else d[k]
print(d)' "$@"; }

# Every undefined mosquitto_* symbol of the plugin is exported by the broker
# (the plugin does not link libmosquitto, docs/mosquitto-2.0.11.md §1.1).
nm -D --defined-only "$MOSQUITTO" | awk '{print $3}' | sort -u >"$T/broker.syms"
nm -D --undefined-only "$MOSQ_EST_PLUGIN" | awk '$2 ~ /^mosquitto_/ {print $2}' |
  sort -u >"$T/plugin.needs"
missing=$(comm -23 "$T/plugin.needs" "$T/broker.syms")
[ -z "$missing" ] || it_fail "the broker does not export: $missing"

# ------------------------------------------------------------ the broker

# An ASan plugin in an uninstrumented broker: the ASan runtime must come
# first in the process, or the broker exits at dlopen ("ASan runtime does
# not come first"), so it is preloaded. LeakSanitizer then checks the whole
# broker at exit, which takes a few seconds. One leak is the broker's own:
# 2.0.11 leaks in sub__add() when a client re-subscribes a filter restored
# from persistence (reproduced without this plugin: plain broker,
# persistence true, mosquitto_sub -c twice across a restart). It is
# suppressed by that frame alone; the slow unwinder is needed to see it,
# since the broker has no frame pointers.
MOSQ_ENV=()
MOSQ_STOP_S=10
if [ "${EST_SANITIZE:-0}" = 1 ]; then
  asan=$(${CC:-cc} -print-file-name=libasan.so)
  [ -f "$asan" ] || it_fail "EST_SANITIZE=1 but no libasan.so ('$asan')"
  { cat "$IT_DATA_DIR/lsan.supp"; echo "leak:sub__add"; } >"$T/lsan-mosquitto.supp"
  MOSQ_ENV=(env "LD_PRELOAD=$asan" "ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0"
    "LSAN_OPTIONS=suppressions=$T/lsan-mosquitto.supp:print_suppressions=0")
  MOSQ_STOP_S=60
fi

# it_free_port checks UDP (coapd); the broker listens on TCP, so that is
# checked too.
for ((i = 0; i < 20; i++)); do
  MPORT=$(it_free_port)
  "$PY" -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$MPORT" 2>/dev/null && break
done
mosquitto_passwd -c -b "$T/passwd" alice alicepw 2>/dev/null || it_fail "mosquitto_passwd"
mosquitto_passwd -b "$T/passwd" bob bobpw 2>/dev/null || it_fail "mosquitto_passwd"
cat >"$T/acl" <<'EOF'
# Every user has their own topic tree. The plugin decides est-coaps/v1/events/#
# and $CONTROL/est-coaps/... itself and defers everything else to this file.
pattern readwrite users/%u/#
# A deliberately broad grant: bob may subscribe to est-coaps/#, yet the
# plugin's READ check still keeps every event from him.
user bob
topic read est-coaps/#
EOF
# "user": mosquitto drops privileges before it loads plugins, and $T is a
# root-owned temp dir, so as root the broker keeps root here (tests only;
# deploy/README.md explains the production set-up).
cat >"$T/mosquitto.conf" <<EOF
user $(id -un)
listener $MPORT 127.0.0.1
allow_anonymous false
password_file $T/passwd
acl_file $T/acl
# Sessions (alice's event subscriber) survive the broker's restarts.
persistence true
persistence_location $T/
log_dest file $T/mosquitto.log
log_type all
plugin $MOSQ_EST_PLUGIN
plugin_opt_db_path $DB
plugin_opt_operators alice, carol
plugin_opt_poll_ms 100
EOF

# count FILE TEXT: lines of FILE with TEXT (0 if there is no FILE yet).
count() { if [ -f "$1" ]; then grep -c -- "$2" "$1"; else echo 0; fi; }

MOSQ_N=0
mosq_start() {
  local i before
  MOSQ_N=$((MOSQ_N + 1))
  before=$(count "$T/mosquitto.log" "mosquitto version .* running")
  "${MOSQ_ENV[@]}" "$MOSQUITTO" -c "$T/mosquitto.conf" >"$T/mosquitto-$MOSQ_N.log" 2>&1 &
  IT_PIDS[mosquitto]=$!
  for ((i = 0; i < 100; i++)); do
    if [ "$(count "$T/mosquitto.log" "mosquitto version .* running")" -gt "$before" ]; then
      return 0
    fi
    kill -0 "${IT_PIDS[mosquitto]}" 2>/dev/null || {
      unset "IT_PIDS[mosquitto]"
      it_fail "mosquitto exited during start-up"
    }
    sleep 0.1
  done
  it_fail "mosquitto not running after 10 s"
}

mosq_stop() {
  local pid=${IT_PIDS[mosquitto]} i rc
  kill -TERM "$pid"
  for ((i = 0; i < MOSQ_STOP_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && it_fail "mosquitto did not stop within $MOSQ_STOP_S s"
  wait "$pid"
  rc=$?
  unset "IT_PIDS[mosquitto]"
  it_san_check "$T/mosquitto-$MOSQ_N.log"
  [ "$rc" = 0 ] || it_fail "mosquitto exited with $rc"
}

# ------------------------------------------------------------ MQTT helpers

# Everything received, for the schema check at the end.
: >"$T/replies.jsonl"
: >"$T/commands.jsonl"
: >"$T/events.all"

# rr USER PASS JSON: one command envelope with mosquitto_rr; the reply in
# $REPLY (and replies.jsonl).
rr() {
  REPLY=$(timeout -k 2 15 mosquitto_rr -h 127.0.0.1 -p "$MPORT" -u "$1" -P "$2" \
    -t '$CONTROL/est-coaps/v1' -e '$CONTROL/est-coaps/v1/response' -W 10 -m "$3") ||
    it_fail "mosquitto_rr as $1 got no reply to $3"
  printf '%s\n' "$REPLY" >>"$T/replies.jsonl"
  printf '%s\n' "$3" >>"$T/commands.jsonl"
}

# Alice's event subscriber: a persistent session (-c, fixed id, QoS 1), so
# events published while it reconnects after a broker restart are queued.
EV_N=0
# mosquitto_sub flushes each message but not its -d lines, so the SUBACK
# is seen in the broker's log.
ev_start() {
  local i before
  EV_N=$((EV_N + 1))
  EV=$T/events.$EV_N
  : >"$EV"
  before=$(count "$T/mosquitto.log" "Sending SUBACK to alice-events")
  mosquitto_sub -h 127.0.0.1 -p "$MPORT" -u alice -P alicepw -i alice-events -c -q 1 \
    -t 'est-coaps/v1/events/#' -v >"$EV" 2>&1 &
  IT_PIDS[sub]=$!
  for ((i = 0; i < 100; i++)); do
    [ "$(count "$T/mosquitto.log" "Sending SUBACK to alice-events")" -gt "$before" ] && return 0
    sleep 0.1
  done
  it_fail "alice's subscriber got no SUBACK: $(cat "$EV")"
}
ev_stop() {
  kill -TERM "${IT_PIDS[sub]}" 2>/dev/null
  wait "${IT_PIDS[sub]}" 2>/dev/null
  unset "IT_PIDS[sub]"
  grep '^est-coaps/v1/events/' "$EV" >>"$T/events.all"
}
# The event lines of the current subscriber ("TOPIC JSON").
ev_lines() { grep '^est-coaps/v1/events/' "$EV"; }
# ev_wait KIND N: at least N KIND events within 15 s.
ev_wait() {
  local i
  for ((i = 0; i < 150; i++)); do
    [ "$(ev_lines | grep -c "^est-coaps/v1/events/$1 ")" -ge "$2" ] && return 0
    sleep 0.1
  done
  it_fail "no $2 '$1' event(s) within 15 s; got: $(ev_lines)"
}
# ev_last KIND FIELD: FIELD of the newest KIND event.
ev_last() { ev_lines | grep "^est-coaps/v1/events/$1 " | tail -n 1 | cut -d' ' -f2- | jget "$2"; }

audit_count() { sqlite3 "$DB" 'SELECT count(*) FROM audit'; }

# ------------------------------------------------------------ start

est_start idevid_policy\ manual retry_after\ 1
est_req gnutls idevid get /est/crts
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca.pem"
mosq_start
grep -q "est-coaps: ready: database $DB, 2 operator(s), poll every 100 ms" "$T/mosquitto.log" ||
  it_fail "no ready line from the plugin"
ev_start

# ------------------------------------------------------------ enrollment

# A manual enrollment: 5.03 for the device, a pending event for alice.
est_csr "$T/d1.key" "$T/d1.csr" dev-1
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 5.03
ev_wait pending 1
id1=$(ev_last pending id)
[ "$(ctl list --state pending --json | jget 0 id)" = "$id1" ] || it_fail "pending event id $id1 is not estctl's"
[ "$(ev_last pending subject)" = "CN=dev-1" ] || it_fail "pending event subject"
[ "$(ev_last pending actor)" != "" ] || it_fail "pending event actor"

# bob is no operator: error reply, nothing changes (state, audit trail).
n_audit=$(audit_count)
rr bob bobpw "{\"commands\":[{\"command\":\"approveRequest\",\"id\":$id1,\"correlationData\":\"b1\"}]}"
case "$REPLY" in *'"error":"not authorised'*) ;; *) it_fail "bob's approve: $REPLY" ;; esac
case "$REPLY" in *'"data"'*) it_fail "bob's approve has data: $REPLY" ;; esac
rr bob bobpw '{"commands":[{"command":"listRequests"}]}'
case "$REPLY" in *'"error":"not authorised'*) ;; *) it_fail "bob's listRequests: $REPLY" ;; esac
[ "$(ctl show "$id1" --json | jget state)" = pending ] || it_fail "bob's approve changed the request"
[ "$(audit_count)" = "$n_audit" ] || it_fail "bob's approve wrote to the audit trail"

# alice approves; the reply carries the updated request and correlationData.
rr alice alicepw "{\"commands\":[{\"command\":\"approveRequest\",\"id\":$id1,\"reason\":\"known device\",\"correlationData\":\"a1\"}]}"
[ "$(jget responses 0 data request state <<<"$REPLY")" = approved ] || it_fail "approve reply: $REPLY"
[ "$(jget responses 0 correlationData <<<"$REPLY")" = a1 ] || it_fail "correlationData: $REPLY"
ev_wait approved 1
[ "$(ev_last approved actor)" = alice ] || it_fail "approved event actor: $(ev_lines)"
[ "$(ev_last approved reason)" = "known device" ] || it_fail "approved event reason"
[ "$(sqlite3 "$DB" "SELECT actor FROM audit WHERE action = 'approved' AND request_id = $id1")" = alice ] ||
  it_fail "audit actor of the approval is not the MQTT username"

# The device's retry gets its certificate; an issued event follows.
est_req gnutls idevid post /est/sen -t 286 -f "$T/d1.csr"
it_expect_code 2.04
est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/d1.crt"
est_verify "$T/d1.crt" "$T/ca.pem"
ev_wait issued 1
serial1=$(ctl certs --json | jget 0 serial)
[ "$(ev_last issued serial)" = "$serial1" ] || it_fail "issued event serial: $(ev_lines)"
[ "$(ev_last issued id)" = "$id1" ] || it_fail "issued event id"

# ------------------------------------------------------------ ACL

# bob: no subscription to events (SUBACK 128), his own topics work, and the
# acl_file's est-coaps/# grant delivers no event either (READ check).
"${CLIENT[@]}" "$MPORT" bob bobpw --id bob-1 sub:est-coaps/v1/events/# sub:est-coaps/v1/events/pending \
  sub:est-coaps/# sub:users/bob/# pub:users/bob/hello:hi wait:4 ping >"$T/bob.out" 2>&1 &
bob_pid=$!
for ((i = 0; i < 100; i++)); do grep -q '^puback' "$T/bob.out" && break; sleep 0.1; done
est_csr "$T/d2.key" "$T/d2.csr" dev-2
est_req gnutls idevid post /est/sen -t 286 -f "$T/d2.csr"
it_expect_code 5.03
ev_wait pending 2
wait "$bob_pid" || it_fail "bob's session failed: $(cat "$T/bob.out")"
grep -qx 'suback est-coaps/v1/events/# 128' "$T/bob.out" || it_fail "bob subscribed to events: $(cat "$T/bob.out")"
grep -qx 'suback est-coaps/v1/events/pending 128' "$T/bob.out" || it_fail "bob subscribed to pending: $(cat "$T/bob.out")"
grep -qx 'suback est-coaps/# 1' "$T/bob.out" || it_fail "acl_file grant est-coaps/# not honoured: $(cat "$T/bob.out")"
grep -qx 'suback users/bob/# 1' "$T/bob.out" || it_fail "bob's own topic: $(cat "$T/bob.out")"
grep -qx 'msg users/bob/hello hi' "$T/bob.out" || it_fail "bob's own message: $(cat "$T/bob.out")"
grep -q 'est-coaps/v1/events' <(grep '^msg' "$T/bob.out") && it_fail "bob got an event: $(cat "$T/bob.out")"
grep -qx alive "$T/bob.out" || it_fail "bob's session: $(cat "$T/bob.out")"
id2=$(ev_last pending id)

# ------------------------------------------------------------ bad input

# One session, several bad messages, then a good one: every message gets
# its reply and the publisher is still connected at the end.
head -c 70000 /dev/zero | tr '\0' ' ' >"$T/big.json"
"${CLIENT[@]}" "$MPORT" alice alicepw --id alice-bad \
  'req:not json' "reqfile:$T/big.json" \
  'req:{"commands":[{"command":"nope","correlationData":"m3"}]}' \
  'req:{"commands":[{"command":"getRequest","id":"1"}]}' \
  'req:{"commands":[{"command":"rejectRequest","id":1}]}' \
  'req:{"commands":[{"command":"listRequests","state":"pending"}]}' \
  ping >"$T/bad.out" 2>&1 || it_fail "alice's session with bad input: $(cat "$T/bad.out")"
[ "$(grep -c '^reply ' "$T/bad.out")" = 6 ] || it_fail "not 6 replies: $(cat "$T/bad.out")"
grep '^reply ' "$T/bad.out" | cut -d' ' -f2- >"$T/bad.replies"
cat "$T/bad.replies" >>"$T/replies.jsonl"
"$PY" - "$T/bad.replies" <<'EOF' || it_fail "bad-input replies: $(cat "$T/bad.out")"
import json, sys
r = [json.loads(l)["responses"] for l in open(sys.argv[1])]
want = ["not valid JSON", "too large", "unknown command", "id", "reason"]
for i, w in enumerate(want):
    assert len(r[i]) == 1 and w in r[i][0]["error"] and "data" not in r[i][0], (i, r[i])
assert r[2][0]["correlationData"] == "m3", r[2]
assert r[2][0]["command"] == "nope", r[2]
assert r[5][0]["data"]["requests"][0]["state"] == "pending", r[5]
EOF
grep -qx alive "$T/bad.out" || it_fail "alice was disconnected: $(cat "$T/bad.out")"
# The same with mosquitto_pub -l: two messages in one session, no disconnect.
printf 'not json\n{"commands":[]}\n' |
  timeout 15 mosquitto_pub -h 127.0.0.1 -p "$MPORT" -u alice -P alicepw -i alice-pub -q 1 \
    -t '$CONTROL/est-coaps/v1' -l -d >"$T/pub.out" 2>&1 || it_fail "mosquitto_pub -l: $(cat "$T/pub.out")"
[ "$(grep -c 'received PUBACK' "$T/pub.out")" = 2 ] || it_fail "mosquitto_pub -l: $(cat "$T/pub.out")"
grep -Eq 'alice-pub.*(protocol error|disconnecting)|Socket error on client alice-pub' "$T/mosquitto.log" &&
  it_fail "the broker dropped alice-pub: $(grep alice-pub "$T/mosquitto.log")"
# bob's garbage gets the refusal, and he stays connected too.
"${CLIENT[@]}" "$MPORT" bob bobpw --id bob-2 'req:{{{' ping >"$T/bob2.out" 2>&1 ||
  it_fail "bob's session: $(cat "$T/bob2.out")"
grep -q '^reply .*not authorised' "$T/bob2.out" || it_fail "bob's garbage: $(cat "$T/bob2.out")"
grep '^reply ' "$T/bob2.out" | cut -d' ' -f2- >>"$T/replies.jsonl"
# And the broker still serves.
rr alice alicepw '{"commands":[{"command":"listPreauth"},{"command":"listCertificates"}]}'
[ "$(jget responses 1 data certificates 0 serial <<<"$REPLY")" = "$serial1" ] || it_fail "listCertificates: $REPLY"

# A writer holds the database lock: the command fails fast with "busy"
# (20 ms busy timeout, the broker's single thread never waits long).
(echo 'BEGIN IMMEDIATE;'; sleep 4; echo 'ROLLBACK;') | sqlite3 "$DB" &
lock_pid=$!
sleep 0.5
t0=$(date +%s%N)
rr alice alicepw "{\"commands\":[{\"command\":\"rejectRequest\",\"id\":$id2,\"reason\":\"busy?\"}]}"
t1=$(date +%s%N)
[ "$(jget responses 0 error <<<"$REPLY")" = "database is busy, try again" ] || it_fail "locked DB: $REPLY"
[ $(((t1 - t0) / 1000000)) -lt 3000 ] || it_fail "the busy reply took $(((t1 - t0) / 1000000)) ms"
wait "$lock_pid"
[ "$(ctl show "$id2" --json | jget state)" = pending ] || it_fail "request $id2 changed under the lock"

# ------------------------------------------------------------ restart

# Two more waiting requests; then the broker goes down.
est_csr "$T/d3.key" "$T/d3.csr" dev-3
est_req gnutls idevid post /est/sen -t 286 -f "$T/d3.csr"
it_expect_code 5.03
ev_wait pending 3
id3=$(ev_last pending id)
sleep 0.5 # let the cursor of the last poll be saved
ev_stop
mosq_stop
cursor=$(sqlite3 "$DB" "SELECT value FROM meta WHERE key = 'broker.cursor'")
[ "$cursor" = "$(sqlite3 "$DB" 'SELECT max(id) FROM audit')" ] || it_fail "cursor $cursor is not the newest audit id"

# While it is down: estctl decides and revokes, coapd issues.
ctl approve "$id3" >/dev/null || it_fail "estctl approve $id3"
ctl reject "$id2" --reason "not ours" >/dev/null || it_fail "estctl reject $id2"
ctl preauth add --subject "CN=pre-1" >/dev/null || it_fail "estctl preauth add" # not an event
est_req gnutls idevid post /est/sen -t 286 -f "$T/d3.csr"
it_expect_code 2.04
ctl revoke "$serial1" --reason keyCompromise >/dev/null || it_fail "estctl revoke"
ctl events --after "$cursor" >"$T/missed.expected" || it_fail "estctl events"
[ "$(wc -l <"$T/missed.expected")" = 4 ] || it_fail "expected 4 missed events: $(cat "$T/missed.expected")"

mosq_start
grep -q "events after audit id $cursor" "$T/mosquitto.log" || it_fail "the plugin did not resume at $cursor"
ev_start
for k in approved rejected issued revoked; do ev_wait "$k" 1; done
sleep 1.5 # room for duplicates to show up
ev_lines >"$T/missed.got"
"$PY" - "$T/missed.expected" "$T/missed.got" <<'EOF' || it_fail "missed events differ: $(cat "$T/missed.got")"
import json, sys
def load(p):
    return [(l.split(" ", 1)[0], json.loads(l.split(" ", 1)[1])) for l in open(p) if l.strip()]
exp, got = load(sys.argv[1]), load(sys.argv[2])
assert got == exp, (exp, got)  # the same events, each once, in audit order
EOF
ev_stop
mosq_stop

# Restart again: nothing is repeated.
mosq_start
ev_start
sleep 2
[ -z "$(ev_lines)" ] || it_fail "events repeated after the second restart: $(ev_lines)"
cursor2=$(sqlite3 "$DB" "SELECT value FROM meta WHERE key = 'broker.cursor'")
[ "$cursor2" = "$(sqlite3 "$DB" 'SELECT max(id) FROM audit')" ] || it_fail "cursor $cursor2 after the restart"
# Live events still flow after all that.
rr alice alicepw "{\"commands\":[{\"command\":\"revokeCertificate\",\"serial\":\"$(ctl certs --json | jget 1 serial)\",\"reason\":\"superseded\",\"correlationData\":\"r1\"}]}"
[ "$(jget responses 0 data certificate revoked <<<"$REPLY")" = True ] || it_fail "revoke reply: $REPLY"
ev_wait revoked 1
ev_stop

# ------------------------------------------------------------ schemas

"$PY" - "$SCHEMAS" "$T/replies.jsonl" "$T/commands.jsonl" "$T/events.all" <<'EOF' ||
import json, pathlib, sys
from jsonschema import Draft202012Validator, RefResolver
root = pathlib.Path(sys.argv[1]).resolve()
def validator(rel):
    path = root / rel
    schema = json.loads(path.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, resolver=RefResolver(base_uri=path.as_uri(), referrer=schema))
def check(v, doc, what):
    errs = list(v.iter_errors(doc))
    if errs:
        sys.exit("%s: %s\n%s" % (what, errs[0].message, json.dumps(doc)[:600]))
n = {"replies": 0, "commands": 0, "events": 0}
reply = validator("control/reply.json")
for line in open(sys.argv[2]):
    check(reply, json.loads(line), "reply"); n["replies"] += 1
env = validator("control/envelope.json")
for line in open(sys.argv[3]):
    check(env, json.loads(line), "command"); n["commands"] += 1
kinds = {}
for line in open(sys.argv[4]):
    topic, text = line.rstrip("\n").split(" ", 1)
    kind = topic.rsplit("/", 1)[1]
    kinds.setdefault(kind, validator("events/%s.json" % kind))
    check(kinds[kind], json.loads(text), "event " + topic); n["events"] += 1
assert n["replies"] >= 13 and n["events"] >= 10, n
assert set(kinds) == {"pending", "approved", "rejected", "issued", "revoked"}, kinds
print("schemas: %(replies)d replies, %(commands)d commands, %(events)d events valid" % n)
EOF
  it_fail "schema validation failed"

mosq_stop
grep -q "est-coaps: refused a control message from 'bob'" "$T/mosquitto.log" || it_fail "no refusal logged"
est_stop
[ "$(sqlite3 "$DB" 'PRAGMA integrity_check')" = ok ] || it_fail "integrity_check"
it_pass
