#!/usr/bin/env bash
# The enrollment benchmark: build, make a PKI in a temp dir, start coapd +
# est_coaps.so on a free 127.0.0.1 port per server variant, drive it with
# est-bench (in-process DTLS clients) and print one table. Loopback only.
# Performance is reported, never asserted. What the columns mean:
# tools/bench/README.md.
#
# Usage: scripts/bench.sh [--quick | --smoke]
#   (none)    1000 operations per row and run, median of 3 interleaved runs
#             (about 90 s once built)
#   --quick   200 operations per row, one run (about 15 s once built)
#   --smoke   6 operations per row, 2 sessions, no pinning: only checks that
#             every row works (the ctest bench.smoke; exit 1 on any error)
# Environment:
#   BENCH_BUILD_DIR   build folder (default build/; scripts/build.sh builds it)
#   COAPD, EST_PLUGIN, EST_BENCH   use these binaries and do not build
#   BENCH_COUNT, BENCH_RUNS, BENCH_SESSIONS   override the sizes
#   BENCH_PIN=0       do not pin (default on 2+ CPUs: coapd on CPU 0,
#                     the client workers on CPU 1)
#   BENCH_VERBOSE=1   also print est-bench's line per run (wall time, server
#                     CPU with its kernel part, client CPU, other CPU, handshakes)
#   BENCH_KEEP=1      keep the temp dir (PKI, configs, logs, databases)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

mode=full
for a in "$@"; do
  case "$a" in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    -h | --help)
      # The comment block at the top of this file.
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0
      ;;
    *)
      echo "bench: unknown argument '$a' (try --help)" >&2
      exit 2
      ;;
  esac
done

sessions=${BENCH_SESSIONS:-8}
pin=${BENCH_PIN:-1}
# limit: seconds per run in which est-bench starts operations; budget: for
# all rows together (a row that would start later is skipped as an error).
case $mode in
  full) count=${BENCH_COUNT:-1000} runs=${BENCH_RUNS:-3} limit=30 budget=500 ;;
  quick) count=${BENCH_COUNT:-200} runs=${BENCH_RUNS:-1} limit=8 budget=50 ;;
  smoke) count=${BENCH_COUNT:-6} runs=1 limit=20 budget=200 sessions=2 pin=0 ;;
esac

if [ -n "${COAPD:-}" ] && [ -n "${EST_PLUGIN:-}" ] && [ -n "${EST_BENCH:-}" ]; then
  # Absolute: the coapd config names the plugin, relative to its own folder.
  coapd=$(realpath "$COAPD") plugin=$(realpath "$EST_PLUGIN") bench=$(realpath "$EST_BENCH")
else
  build=${BENCH_BUILD_DIR:-$top/build}
  case "$build" in /*) ;; *) build=$top/$build ;; esac
  echo "bench: building in $build" >&2
  blog=$(mktemp "${TMPDIR:-/tmp}/bench-build.XXXXXX")
  if ! "$top/scripts/build.sh" "$build" >"$blog" 2>&1; then
    tail -n 30 "$blog" >&2
    rm -f "$blog"
    echo "bench: build failed" >&2
    exit 1
  fi
  rm -f "$blog"
  coapd=$build/host/coapd
  plugin=$build/plugin/est/est_coaps.so
  bench=$build/tools/bench/est-bench
fi
for f in "$coapd" "$plugin" "$bench"; do
  [ -e "$f" ] || { echo "bench: $f was not built" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/est-bench.XXXXXX")
declare -A srv_pid=() srv_port=()

stop_servers() {
  local name i
  for name in "${!srv_pid[@]}"; do kill -TERM "${srv_pid[$name]}" 2>/dev/null || true; done
  for name in "${!srv_pid[@]}"; do
    for ((i = 0; i < 100; i++)); do
      kill -0 "${srv_pid[$name]}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${srv_pid[$name]}" 2>/dev/null || true
    wait "${srv_pid[$name]}" 2>/dev/null || true
  done
  srv_pid=()
}

cleanup() {
  stop_servers
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "bench: kept $T" >&2
  else
    rm -rf "$T"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Pin deliberately on a 2-core machine (docs/performance.md): the server gets
# CPU 0, the client workers CPU 1, so neither steals the other's core.
ncpu=$(nproc)
srv_cmd=()
cli_pin=()
pin_text="not pinned (server and clients share all $ncpu CPUs)"
if [ "$pin" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  srv_cmd=(taskset -c 0)
  cli_pin=(--client-cpus 1)
  pin_text="coapd pinned to CPU 0, est-bench workers to CPU 1"
fi

echo "bench: PKI in $T/pki" >&2
"$top/scripts/mkpki.sh" "$T/pki" >"$T/mkpki.log" 2>&1 || {
  cat "$T/mkpki.log" >&2
  exit 1
}
# An RSA-2048 EST CA for the RSA row (the DTLS server certificate stays P-256).
certtool --generate-privkey --key-type=rsa --bits=2048 --outfile "$T/pki/rsa-ca.key" 2>/dev/null
printf 'cn = "est-coaps bench RSA CA"\nca\ncert_signing_key\nexpiration_days = 3650\n' \
  >"$T/pki/rsa-ca.tmpl"
certtool --generate-self-signed --load-privkey "$T/pki/rsa-ca.key" \
  --template "$T/pki/rsa-ca.tmpl" --outfile "$T/pki/rsa-ca.crt" 2>/dev/null

# The same P-256 CA key on a SoftHSM2 token for the token rows
# (docs/decisions.md §20): every signature goes through PKCS#11.
mkdir -p "$T/hsmca"
cp "$T/pki/ca.crt" "$T/pki/ca.key" "$T/hsmca/"
"$top/scripts/mkpki.sh" --hsm "$T/hsmca" >"$T/mkpki-hsm.log" 2>&1 || {
  cat "$T/mkpki-hsm.log" >&2
  exit 1
}

free_port() {
  python3 - <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# start_server NAME [plugin_opt lines...]: coapd on a free port with the EST
# plugin (idevid_policy auto, PoP required, keygen ec-p256) plus the given
# options. Sets srv_port[NAME] and srv_pid[NAME]. Idle servers cost no CPU.
start_server() {
  local name=$1 i port pid
  shift
  port=$(free_port)
  local conf=$T/$name.conf log=$T/$name.log
  {
    echo "listen 127.0.0.1 $port"
    echo "dtls_cert $T/pki/server.crt"
    echo "dtls_key $T/pki/server.key"
    echo "dtls_ca $T/pki/trust.pem"
    echo "log_level notice"
    echo "plugin $plugin"
    echo "plugin_opt_idevid_trust $T/pki/mfr-ca.crt"
    echo "plugin_opt_idevid_policy auto"
    echo "plugin_opt_pop_linking require"
    echo "plugin_opt_keygen on"
    echo "plugin_opt_keygen_type ec-p256"
    for o in "$@"; do echo "plugin_opt_$o"; done
  } >"$conf"
  "${srv_cmd[@]}" "$coapd" -c "$conf" >"$log" 2>&1 &
  pid=$!
  srv_pid[$name]=$pid
  srv_port[$name]=$port
  for ((i = 0; i < 100; i++)); do
    grep -q "coapd: ready" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: coapd ($name) did not start:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

raw=$T/raw     # one line per run (est-bench --raw), the table comes from it
notes=$T/notes # rows that failed or were skipped
: >"$raw"
: >"$notes"
errors=0
start=$(date +%s)
deadline=$((start + budget))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# How fast the server's CPU signs right now, before and after the rows: the
# yardstick for scaling docs/performance.md's ceilings (a shared VM drifts).
cal_before=$("${srv_cmd[@]}" "$bench" --calibrate)

# row SERVER LABEL est-bench-args...: one run of one row against that
# server, within what is left of the time budget. The run goes into $raw.
row() {
  local server=$1 label=$2
  shift 2
  local left=$((deadline - $(date +%s)))
  if [ "$left" -lt 5 ]; then
    echo "bench: $label (run $run) skipped: the ${budget} s budget is used up" >&2
    echo "$label, run $run: skipped, the $budget s time budget was used up" >>"$notes"
    errors=1
    return 0
  fi
  local tl=$((left - 5))
  [ "$tl" -le "$limit" ] || tl=$limit
  [ "$tl" -ge 1 ] || tl=1
  local args=(--port "${srv_port[$server]}" --cert "$T/pki/idevid.crt" --key "$T/pki/idevid.key"
    --trust "$T/pki/ca.crt" --count "$count" --runs 1 --sessions "$sessions"
    --time-limit "$tl" --timeout 10 --server-pid "${srv_pid[$server]}" "${cli_pin[@]}"
    --label "$label" --raw "$raw" -v "$@")
  echo "bench: $label (run $run)" >&2
  # est-bench stops starting operations after tl seconds; the outer timeout
  # keeps the whole row inside the budget.
  local rc=0
  timeout -k 5 "$left" "$bench" "${args[@]}" >/dev/null 2>>"$T/est-bench.err" || rc=$?
  if [ "$rc" != 0 ]; then
    errors=1
    echo "$label, run $run: est-bench exit status $rc$([ "$rc" = 124 ] &&
      echo ", killed at the end of the time budget")" >>"$notes"
    echo "bench: $label had errors:" >&2
    grep -v -e '^--- run' -e ': [0-9]*/[0-9]* ok in ' -e ' client keys in ' "$T/est-bench.err" |
      tail -n 5 >&2
  fi
}

# Three servers, all started now and idle until their rows: the P-256 CA
# with the store at its default synchronous=FULL, the same without a store,
# and an RSA-2048 CA (docs/performance.md: ~1.3 ms per signature).
start_server full "ca_cert $T/pki/ca.crt" "ca_key $T/pki/ca.key" "db_path $T/full.db"
start_server nodb "ca_cert $T/pki/ca.crt" "ca_key $T/pki/ca.key"
start_server rsa "ca_cert $T/pki/rsa-ca.crt" "ca_key $T/pki/rsa-ca.key" "db_path $T/rsa.db"
SOFTHSM2_CONF=$T/hsmca/hsm/softhsm2.conf start_server hsm "ca_cert $T/pki/ca.crt" \
  "ca_key pkcs11:token=est-ca;object=ca;type=private" "ca_key_pin_file $T/hsmca/ca.pin" \
  "db_path $T/hsm.db"

# Run 1 of every row, then run 2 of every row, ...: a shared machine drifts
# by tens of per cent within a minute, and this spreads each row's runs over
# the whole time, so the medians of different rows stay comparable.
for ((run = 1; run <= runs; run++)); do
  echo "--- run $run" >>"$T/est-bench.err"
  row full "sen, new session" --scenario sen
  row nodb "sen, new session, no db" --scenario sen
  row full "sen, reused session" --scenario sen --reuse
  row nodb "sen, reused session, no db" --scenario sen --reuse
  # One session at a time: latency without queueing (a fifth of the count,
  # since it is the slow row).
  row full "sen, new session, 1 at a time" --scenario sen --sessions 1 --count $(((count + 4) / 5))
  row full "crts, new session" --scenario crts
  # Cheap requests: ten times as many, so coapd's CPU time (10 ms ticks in
  # /proc/PID/stat) is still read to a few per cent.
  row full "crts, reused session" --scenario crts --reuse --count $((count * 10))
  row full "skg ec-p256, new session" --scenario skg
  row rsa "sen, new session, RSA CA" --scenario sen --issuer "$T/pki/rsa-ca.crt"
  # Beside "sen, new/reused session": the same CA key on a SoftHSM2 token.
  row hsm "sen, new session, SoftHSM2 CA key" --scenario sen
  row hsm "sen, reused session, SoftHSM2 CA key" --scenario sen --reuse
done
stop_servers

echo
echo "est-coaps enrollment benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(cd "$top" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$top" && git diff --quiet HEAD -- 2>/dev/null || echo '+changes'))"
"$bench" --info
echo "speed:    before: $cal_before"
echo "          after:  $("${srv_cmd[@]}" "$bench" --calibrate)"
echo "setup:    $count operations per run, $sessions concurrent DTLS sessions (worker processes), median of $runs interleaved run(s); $pin_text"
echo "          coapd log_level notice, idevid_policy auto, pop_linking require; client keys pre-generated"
echo "load:     $load_before before the first row (1/5/15-min averages); the 'other' column is what else ran"
echo "store:    synchronous=FULL (db_synchronous full, the default; normal is not measured here); the 'no db' rows run without db_path"
echo
"$bench" --table-header
"$bench" --report "$raw" || echo "(no run finished)"
if [ -s "$notes" ]; then
  echo
  cat "$notes"
fi
echo
echo "ops/s: successful operations per wall-clock second; pNN: whole operation (handshake + CSR + request);"
echo "hs/rq-p50: handshake / request alone; srv-us: coapd CPU (utime+stime) per operation, sys: its kernel part;"
echo "busy: coapd CPU / wall time;"
echo "srv-max: 1e6 / srv-us, what one server core could do; cli-us: est-bench CPU per operation;"
echo "other: CPU time of everything else on the machine during the row, in % of one CPU (noise)."
if [ "${BENCH_VERBOSE:-0}" = 1 ]; then
  echo
  grep -e '^--- run' -e ': [0-9]*/[0-9]* ok in ' "$T/est-bench.err" | sed 's/^est-bench: /  /' || true
fi
echo "bench: $(($(date +%s) - start)) s (budget $budget s)" >&2
if [ $errors != 0 ]; then
  echo "bench: some rows had errors (err column); details:" >&2
  grep -v -e '^--- run' -e ': [0-9]*/[0-9]* ok in ' -e ' client keys in ' "$T/est-bench.err" |
    tail -n 20 >&2
  exit 1
fi
