# shellcheck shell=bash
# Shared helpers for the integration tests (bash). Source it, then:
#
#   it_init NAME            temp dir $T (under ${TMPDIR:-/tmp}); on exit every
#                           server started here is stopped and $T removed
#                           (kept when IT_KEEP=1). Sets IT_NAME.
#   it_fail MSG             print FAIL + MSG + the tail of every $T/*.log, exit 1
#   it_pass                 print PASS, exit 0
#   it_pki DIR              test PKI (certtool, EC P-256), file names fixed:
#                             ca.crt/key        "CN=est-coaps Test CA" (our EST CA)
#                             server.crt/key    CN=localhost, SAN localhost,
#                                               127.0.0.1, ::1; signed by ca
#                             mfr-ca.crt/key    "CN=Test Manufacturer CA"
#                             idevid.crt/key    CN=idevid-0001 (+serialNumber),
#                                               signed by mfr-ca, clientAuth
#                             client.crt/key    LDevID CN=ldevid-0001, by ca
#                             rogue-ca.crt/key, rogue.crt/key (CN=rogue-0001)
#                             trust.pem         ca.crt + mfr-ca.crt
#   it_free_port            print a UDP port free on both 127.0.0.1 and ::1
#   it_coapd_start CONF [NAME]
#                           start $COAPD -c CONF (NAME defaults to "coapd"),
#                           log in $T/NAME.log; waits (10 s, 120 s under
#                           valgrind) for the ready line; fails if it exits.
#                           IT_VALGRIND=1 runs it under valgrind (exit 99 on
#                           errors or definite leaks). Sets IT_PID.
#   it_coapd_stop [NAME]    SIGTERM, wait (10 s); fails unless the exit status
#                           is 0 and the log has no sanitizer/valgrind report.
#   it_coapd_run NAME ARGS...
#                           run $COAPD ARGS in the foreground (bounded, 30 s),
#                           log in $T/NAME.log; sets IT_RC and IT_LOG. Fails
#                           on a sanitizer report. For configs that must fail
#                           and for -t.
#   it_coap CLIENT ARGS...  one request with coap-client-CLIENT (gnutls or
#                           openssl), see below.
#   it_expect_code CODE     IT_CODE must equal CODE ("2.05"); "none" = no
#                           response at all
#   it_expect_no_2xx        no 2.xx response
#   it_expect_opt TEXT      IT_OPTS contains TEXT (e.g. Content-Format:281)
#   it_expect_payload RE    the payload matches the grep -E regex RE
#   it_expect_log NAME RE   $T/NAME.log matches the grep -E regex RE
#
# it_coap CLIENT ARGS...
#   Runs coap-client-CLIENT with "-B 10" unless ARGS has -B, "-v 6" unless
#   ARGS has -v, and "-o $T/coap-N.out" unless ARGS has -o. ARGS are passed
#   on as they are (the URI last, as coap-client wants). coap-client exits 0
#   even on 4.xx/5.xx and on timeouts (docs/libcoap-4.3.1.md §6), so the result
#   is taken from its "-v 6" PDU dump lines, which look like
#       v:1 t:ACK c:2.05 i:3b21 {01} [ Content-Format:0, Block2:0/M/64 ]
#       v:1 t:CON c:2.04 i:a1b2 {...} [ ETag:..., Max-Age:5 ] :: 'payload'
#   Only response PDUs count (code class 2-5); requests (c:GET, c:POST...)
#   and empty ACK/RST (c:0.00) are skipped. The LAST response PDU wins, so a
#   Block2 transfer reports its final block and a separate response (empty
#   ACK, then CON) reports the CON. Sets:
#     IT_CODE          "2.05", "4.03", ... or "" if no response came
#     IT_OPTS          the option list of that PDU, e.g.
#                      "ETag:0x01, Max-Age:5, Block2:7/_/64, Size2:498";
#                      content formats always as numbers (Content-Format:40
#                      where libcoap prints application/link-format)
#     IT_OPTS_RAW      the same as libcoap printed it
#     IT_PAYLOAD_FILE  where the body went (-o; removed first, as -G appends
#                      to it), reassembled over Block2; an empty file if
#                      none. For 4.xx/5.xx coap-client prints the body on
#                      stderr instead. With "-o -" it is IT_STDOUT.
#     IT_STDERR        file with coap-client's stderr ("4.03 diagnostic")
#     IT_STDOUT        file with coap-client's stdout (the PDU dumps)
#     IT_CLIENT_RC     coap-client's exit status
#   Returns 0 whatever the code; assert with it_expect_*.
#
# Environment: COAPD (binary under test), TESTPLUG, TESTPLUG_BADABI,
# EST_TEST_DATA; IT_KEEP=1 keeps $T; IT_VALGRIND=1. ASan/UBSan/LSan options
# are set here, with tests/data/lsan.supp for leaks that are not ours.

IT_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IT_DATA_DIR=$(cd "$IT_LIB_DIR/../data" && pwd)
IT_READY_TEXT="coapd: ready"
# A sanitizer or valgrind report in a log fails the test.
IT_SAN_RE='runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|ERROR: UndefinedBehaviorSanitizer|definitely lost: [1-9]|Invalid (read|write|free)'

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$IT_DATA_DIR/lsan.supp:print_suppressions=0}"

declare -gA IT_PIDS=()
IT_COAP_N=0

it_init() {
  IT_NAME=$1
  T=$(mktemp -d "${TMPDIR:-/tmp}/it-$IT_NAME.XXXXXX") || {
    echo "FAIL: $IT_NAME: mktemp" >&2
    exit 1
  }
  export T
  trap it_cleanup EXIT
  [ -n "$COAPD" ] && [ -x "$COAPD" ] || it_fail "COAPD is not set to an executable ('$COAPD')"
}

it_cleanup() {
  local name pid i
  for name in "${!IT_PIDS[@]}"; do
    pid=${IT_PIDS[$name]}
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  IT_PIDS=()
  if [ "${IT_KEEP:-0}" = 1 ]; then
    echo "kept $T" >&2
  else
    rm -rf "$T"
  fi
}

it_fail() {
  local f
  echo "FAIL: ${IT_NAME:-test}: $*" >&2
  for f in "$T"/*.log; do
    [ -f "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 40 "$f" >&2
  done
  exit 1
}

it_pass() {
  echo "PASS: ${IT_NAME:-test}"
  exit 0
}

# The test PKI is the demo one (scripts/mkpki.sh), so both stay in step.
it_pki() {
  "$IT_LIB_DIR/../../scripts/mkpki.sh" "$1" >"$T/mkpki.out" 2>&1 ||
    it_fail "scripts/mkpki.sh $1 failed: $(tail -3 "$T/mkpki.out")"
}

it_free_port() {
  python3 - <<'EOF' || it_fail "no free UDP port"
import socket, sys
for _ in range(100):
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s4.bind(("127.0.0.1", 0))
    port = s4.getsockname()[1]
    try:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.bind(("::1", port))
        s6.close()
    except OSError:
        s4.close()
        continue
    s4.close()
    print(port)
    sys.exit(0)
sys.exit(1)
EOF
}

# A TCP port free on both 127.0.0.1 and ::1 (HTTPS EST, metrics).
it_free_tcp_port() {
  python3 - <<'EOF' || it_fail "no free TCP port"
import socket, sys
for _ in range(100):
    s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s4.bind(("127.0.0.1", 0))
    port = s4.getsockname()[1]
    try:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s6.bind(("::1", port))
        s6.close()
    except OSError:
        s4.close()
        continue
    s4.close()
    print(port)
    sys.exit(0)
sys.exit(1)
EOF
}

# The command line to run coapd with (valgrind when IT_VALGRIND=1).
it_coapd_cmd() {
  if [ "${IT_VALGRIND:-0}" = 1 ]; then
    echo valgrind --error-exitcode=99 --leak-check=full \
      --errors-for-leak-kinds=definite --show-leak-kinds=definite -q
  fi
}

it_san_check() {
  if grep -Eq "$IT_SAN_RE" "$1"; then
    it_fail "sanitizer/valgrind report in $1: $(grep -Em3 "$IT_SAN_RE" "$1")"
  fi
}

it_coapd_start() {
  local conf=$1 name=${2:-coapd} i limit=100
  local log="$T/$name.log"
  [ "${IT_VALGRIND:-0}" = 1 ] && limit=1200
  [ -z "${IT_PIDS[$name]}" ] || it_fail "server '$name' is already running"
  : >"$log"
  # shellcheck disable=SC2046
  $(it_coapd_cmd) "$COAPD" -c "$conf" >"$log" 2>&1 &
  IT_PID=$!
  IT_PIDS[$name]=$IT_PID
  for ((i = 0; i < limit; i++)); do
    if grep -q "$IT_READY_TEXT" "$log"; then
      return 0
    fi
    if ! kill -0 "$IT_PID" 2>/dev/null; then
      wait "$IT_PID"
      local rc=$?
      unset "IT_PIDS[$name]"
      it_fail "$name exited with status $rc before it was ready"
    fi
    sleep 0.1
  done
  it_fail "$name not ready after $((limit / 10)) s"
}

it_coapd_stop() {
  local name=${1:-coapd} i rc
  local pid=${IT_PIDS[$name]}
  [ -n "$pid" ] || it_fail "no server '$name' to stop"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "IT_PIDS[$name]"
    it_fail "$name did not stop within 10 s of SIGTERM"
  fi
  wait "$pid"
  rc=$?
  unset "IT_PIDS[$name]"
  it_san_check "$T/$name.log"
  [ "$rc" = 0 ] || it_fail "$name exited with status $rc after SIGTERM$([ "$rc" = 99 ] && echo ' (valgrind errors)')"
}

it_coapd_run() {
  local name=$1
  shift
  IT_LOG="$T/$name.log"
  # shellcheck disable=SC2046
  timeout -k 5 "$([ "${IT_VALGRIND:-0}" = 1 ] && echo 120 || echo 30)" \
    $(it_coapd_cmd) "$COAPD" "$@" >"$IT_LOG" 2>&1
  IT_RC=$?
  [ "$IT_RC" = 124 ] && it_fail "$name: coapd $* did not exit"
  it_san_check "$IT_LOG"
  return 0
}

# libcoap 4.3.1's PDU dump names some content formats instead of numbering
# them; IT_OPTS uses numbers throughout (Content-Format:0, not text/plain).
IT_CF_NAMES=(
  0 'text/plain' 40 'application/link-format' 41 'application/xml'
  42 'application/octet-stream' 43 'application/rdf+xml' 47 'application/exi'
  50 'application/json' 60 'application/cbor' 61 'application/cwt'
  101 'application/cose-key' 102 'application/cose-key-set'
  110 'application/senml+json' 111 'application/sensml+json'
  112 'application/senml+cbor' 113 'application/sensml+cbor'
  114 'application/senml-exi' 115 'application/sensml-exi'
  310 'application/senml+xml' 311 'application/sensml+xml'
  256 'application/coap-group+json' 271 'application/dots+cbor'
  98 'application/cose; cose-type="cose-sign"'
  18 'application/cose; cose-type="cose-sign1"'
  96 'application/cose; cose-type="cose-encrypt"'
  16 'application/cose; cose-type="cose-encrypt0"'
  97 'application/cose; cose-type="cose-mac"'
  17 'application/cose; cose-type="cose-mac0"'
)

# Pull code and options out of the last response PDU dump in $1.
it_coap_parse() {
  local line rest o i num name
  line=$(grep -aE '^v:1 t:(CON|NON|ACK|RST) c:[2-5]\.[0-9][0-9] ' "$1" | tail -n 1)
  IT_CODE=""
  IT_OPTS=""
  IT_OPTS_RAW=""
  [ -n "$line" ] || return 0
  IT_CODE=${line#v:1 t:* c:}
  IT_CODE=${IT_CODE%% *}
  # Options sit between the first " [ " and " ]", which ends the line or is
  # followed by " :: payload".
  rest=${line#* \[ }
  case "$rest" in
    "]" | "] :: "*) o="" ;;
    *" ] :: "*) o=${rest%% \] :: *} ;;
    *) o=${rest% \]} ;;
  esac
  IT_OPTS_RAW=$o
  o="$o, "
  for ((i = 0; i < ${#IT_CF_NAMES[@]}; i += 2)); do
    num=${IT_CF_NAMES[i]}
    name=${IT_CF_NAMES[i + 1]}
    o=${o//"Content-Format:$name, "/"Content-Format:$num, "}
    o=${o//"Accept:$name, "/"Accept:$num, "}
  done
  IT_OPTS=${o%, }
}

it_coap() {
  local client=$1
  shift
  local bin="coap-client-$client" a have_B=0 have_v=0 have_o=0 prev=""
  command -v "$bin" >/dev/null || it_fail "no $bin"
  for a in "$@"; do
    case "$prev" in -o) IT_PAYLOAD_FILE=$a ;; esac
    case "$a" in -B) have_B=1 ;; -v) have_v=1 ;; -o) have_o=1 ;; esac
    prev=$a
  done
  IT_COAP_N=$((IT_COAP_N + 1))
  local base="$T/coap-$IT_COAP_N"
  local extra=()
  [ $have_B = 1 ] || extra+=(-B 10)
  [ $have_v = 1 ] || extra+=(-v 6)
  if [ $have_o = 0 ]; then
    IT_PAYLOAD_FILE="$base.payload"
    extra+=(-o "$IT_PAYLOAD_FILE")
  fi
  IT_STDOUT="$base.stdout"
  IT_STDERR="$base.stderr"
  # "-o -" writes the body to stdout, among the PDU dumps.
  if [ "$IT_PAYLOAD_FILE" = - ]; then
    IT_PAYLOAD_FILE=$IT_STDOUT
  else
    rm -f "$IT_PAYLOAD_FILE" # -G appends to -o
  fi
  timeout -k 5 60 "$bin" "${extra[@]}" "$@" >"$IT_STDOUT" 2>"$IT_STDERR" </dev/null
  IT_CLIENT_RC=$?
  [ -f "$IT_PAYLOAD_FILE" ] || : >"$IT_PAYLOAD_FILE"
  # The PDU dumps go to stdout or stderr depending on the log level.
  cat "$IT_STDOUT" "$IT_STDERR" >"$base.all"
  it_coap_parse "$base.all"
  return 0
}

it_expect_code() {
  if [ "$1" = none ]; then
    [ -z "$IT_CODE" ] || it_fail "expected no response, got $IT_CODE [$IT_OPTS]"
    return 0
  fi
  [ "$IT_CODE" = "$1" ] ||
    it_fail "expected $1, got '${IT_CODE:-no response}' [$IT_OPTS], client exit $IT_CLIENT_RC:" \
      "$(tail -n 8 "$T/coap-$IT_COAP_N.all")"
}

it_expect_no_2xx() {
  case "$IT_CODE" in 2.*) it_fail "expected no 2.xx response, got $IT_CODE" ;; esac
  return 0
}

it_expect_opt() {
  case "$IT_OPTS" in *"$1"*) return 0 ;; esac
  it_fail "option '$1' not in [$IT_OPTS]"
}

it_expect_payload() {
  grep -Eq -- "$1" "$IT_PAYLOAD_FILE" || it_fail "payload does not match '$1': $(head -c 400 "$IT_PAYLOAD_FILE")"
}

it_expect_log() {
  grep -Eq -- "$2" "$T/$1.log" || it_fail "$1.log does not match '$2'"
}
