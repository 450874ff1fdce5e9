#!/usr/bin/env bash
# Enrollment over a lossy link (RFC 7252 §4.2/§4.5, RFC 7959 §2.3): a relay
# drops, duplicates, delays and reorders datagrams both ways between stock
# coap-client-gnutls / coap-client-openssl and coapd. sen with 64-byte
# Block1 and Block2, and skg. Every enrollment completes (a client that
# gives up runs again: retries are the client's job), the database holds
# exactly one certificate per request, no answer is 4.08, and no skg
# request produced two keys.
#
# EST_LOSS_N (default 200) enrollments, EST_LOSS_PAR (default 16) at a time,
# EST_LOSS_DROP / EST_LOSS_DUP, EST_LOSS_SEED, and EST_LOSS_OPT: one more
# plugin option line (e.g. "dedup_entries 0" shows what the cache prevents).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_loss
[ -x "${EST_ENROLL:-}" ] || it_fail "EST_ENROLL is not set"
N=${EST_LOSS_N:-200}
PAR=${EST_LOSS_PAR:-16}
DROP=${EST_LOSS_DROP:-0.2}
DUP=${EST_LOSS_DUP:-0.1}
SEED=${EST_LOSS_SEED:-9148}
ATTEMPTS=10
DB=$T/est.db
sql() { sqlite3 -cmd ".timeout 5000" "$DB" "$1"; }

est_start keygen\ on ${EST_LOSS_OPT:+"$EST_LOSS_OPT"}
/usr/bin/python3 "$(dirname "$0")/lossrelay.py" --target "$PORT" --port-file "$T/relay.port" \
  --seed "$SEED" --drop "$DROP" --dup "$DUP" --delay-ms 20 --reorder 0.05 \
  --stats "$T/relay.json" &
IT_PIDS[relay]=$!
for ((i = 0; i < 50; i++)); do
  [ -s "$T/relay.port" ] && break
  sleep 0.1
done
RELAY=$(cat "$T/relay.port") || it_fail "the relay did not start"

# One enrollment, as its own process: CSR k, function fn, client c
# (gnutls, openssl: coap-client; enroll: est-enroll). It retries the whole
# request when the client gives up, and records every answer code it saw,
# one per line, in $T/job-k.codes.
attempt() { # k fn c dir log
  local k=$1 fn=$2 c=$3 d=$4 log=$5
  if [ "$c" = enroll ]; then
    local cmd=(enroll --subject "CN=loss-$k" --key-file "$d/csr.key" --out "$d/out")
    [ "$fn" = skg ] && cmd=(serverkeygen --subject "CN=loss-$k" --key-out "$d/kg.key" --out "$d/out")
    timeout -k 5 200 "$EST_ENROLL" --server "coaps://127.0.0.1:$RELAY" --cert "$PKI/idevid.crt" \
      --key "$PKI/idevid.key" --trust "$PKI/ca.crt" --root /est --block-size 64 --timeout 90 \
      -v "${cmd[@]}" >"$log" 2>&1 || return 1
    grep -aoE '(: |answered |\()[2-5]\.[0-9][0-9]' "$log" | grep -oE '[2-5]\.[0-9][0-9]$' >>"$d.codes"
    [ -s "$d/out" ]
    return
  fi
  timeout -k 5 120 "coap-client-$c" -B 90 -v 6 -b 64 -c "$PKI/idevid.crt" -j "$PKI/idevid.key" \
    -C "$PKI/ca.crt" -m post -t 286 -f "$d/csr.der" -o "$d/out" \
    "coaps://127.0.0.1:$RELAY/est/$fn" >"$log" 2>&1
  local rc=$?
  grep -aoE '^v:1 t:(CON|NON|ACK) c:[2-5]\.[0-9][0-9] ' "$log" |
    sed -E 's/.* c:([0-9.]+) /\1/' >>"$d.codes"
  [ $rc = 0 ] && [ -s "$d/out" ] && grep -qaE '^v:1 t:(CON|ACK) c:2\.04 ' "$log"
}

job() {
  local k=$1 fn=$2 c=$3 d=$T/job-$1 a
  mkdir -p "$d"
  est_csr "$d/csr.key" "$d/csr.der" "loss-$k" >/dev/null
  : >"$d.codes"
  for ((a = 1; a <= ATTEMPTS; a++)); do
    rm -f "$d/out"
    if attempt "$k" "$fn" "$c" "$d" "$d/attempt-$a.log"; then
      echo "$a" >"$d.done"
      return 0
    fi
  done
  return 1
}

clients=(gnutls openssl enroll)
for ((k = 0; k < N; k++)); do
  fn=sen
  ((k % 4 == 3)) && fn=skg
  job "$k" "$fn" "${clients[k % 3]}" &
  IT_PIDS[job$k]=$!
  # A pool of PAR jobs (coapd and the relay are jobs too): a job that waits out a
  # client's give-up time holds one slot, not the whole batch.
  while (($(jobs -rp | wc -l) >= PAR + 2)); do sleep 0.2; done
done
for ((k = 0; k < N; k++)); do wait "${IT_PIDS[job$k]}" 2>/dev/null || true; done

failed=0 again=0
for ((k = 0; k < N; k++)); do
  if [ ! -f "$T/job-$k.done" ]; then
    failed=$((failed + 1))
    echo "job $k never completed: $(tr '\n' ' ' <"$T/job-$k.codes")" >&2
  elif [ "$(cat "$T/job-$k.done")" != 1 ]; then
    again=$((again + 1))
  fi
done
kill -TERM "${IT_PIDS[relay]}" 2>/dev/null
wait "${IT_PIDS[relay]}" 2>/dev/null
unset 'IT_PIDS[relay]'
bad=$(cat "$T"/job-*.codes | grep -c '^4\.08$' || true)
certs=$(sql "SELECT count(*) FROM certificates")
# sen: a client run again gets the stored certificate (docs/decisions.md
# §7), so exactly one per request. skg: the key is never stored, so a new
# client run is a new request; one client run must not make two.
sen_bad=$(sql "SELECT count(*) FROM (SELECT r.subject FROM requests r JOIN certificates c
  ON c.request_id = r.id WHERE r.function = 'sen' GROUP BY r.subject HAVING count(*) != 1)")
skg_over=0
for ((k = 3; k < N; k += 4)); do
  [ -f "$T/job-$k.done" ] || continue
  n=$(sql "SELECT count(*) FROM certificates WHERE subject = 'CN=loss-$k'")
  ((n >= 1 && n <= $(cat "$T/job-$k.done"))) || skg_over=$((skg_over + 1))
done
nsen=$(sql "SELECT count(DISTINCT subject) FROM requests WHERE function = 'sen'")
# Repeats of a CON the server answered from its cache (docs/decisions.md §12).
repeats=$(grep -c 'answered again' "$T/coapd.log" || true)
echo "loss run: $N enrollments, $again needed a second client run, $failed failed;" \
  "$certs certificates, $repeats repeats answered again, $bad answers 4.08; relay $(cat "$T/relay.json" 2>/dev/null)"
((failed == 0)) || it_fail "$failed of $N enrollments never completed"
((bad == 0)) || it_fail "$bad answers were 4.08"
((sen_bad == 0)) || it_fail "$sen_bad sen requests do not have exactly one certificate"
[ "$nsen" = $((N - N / 4)) ] || it_fail "$nsen sen requests recorded, expected $((N - N / 4))"
((skg_over == 0)) || it_fail "$skg_over skg requests made more keys than client runs"
# With loss some ACK is always lost; no repeat at all means the path did not run.
case "${EST_LOSS_OPT:-}" in
  "dedup_entries 0") ;;
  *) ((repeats > 0)) || it_fail "no repeated request was answered from the cache" ;;
esac
est_stop
it_pass
