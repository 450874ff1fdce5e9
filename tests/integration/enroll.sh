#!/usr/bin/env bash
# est-enroll against the real coapd + est_coaps.so. One case per run:
#   bash enroll.sh CASE     (ctest: it.enroll_CASE)
# Exit 0 pass, 1 fail. Needs COAPD, EST_PLUGIN, EST_ENROLL and ESTCTL.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
CASE=${1:?usage: enroll.sh CASE}
it_init "enroll_$CASE"
[ -x "${EST_ENROLL:-}" ] || it_fail "EST_ENROLL is not set to an executable"
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set to an executable"

# ee NAME ARGS...: run est-enroll (bounded), output in $T/NAME.{out,err};
# sets RC. Fails on a sanitizer report.
ee() {
  local name=$1
  shift
  timeout -k 5 200 "$EST_ENROLL" "$@" >"$T/$name.out" 2>"$T/$name.err"
  RC=$?
  it_san_check "$T/$name.err"
  [ "$RC" != 124 ] || it_fail "$name: est-enroll did not finish"
  return 0
}
expect_rc() { # WANT NAME
  [ "$RC" = "$1" ] || it_fail "$2: exit $RC, want $1: $(tail -n 5 "$T/$2.err")"
}
# The global options for device ID (idevid, client, or a path prefix P for
# P.crt/P.key) against HOST (default 127.0.0.1).
g() {
  local id=$1 host=${2:-127.0.0.1} c k
  case "$id" in
    idevid | client | rogue) c=$PKI/$id.crt k=$PKI/$id.key ;;
    *) c=$id.crt k=$id.key ;;
  esac
  echo --server "coaps://$host:$PORT" --cert "$c" --key "$k" --trust "$PKI/ca.crt"
}
pub_cert() { est_cert_pubkey "$1"; }
pub_key() { est_key_pubkey "$1"; }
mode_of() { stat -c %a "$1"; }

case_commands() {
  est_start keygen\ on csr_attrs\ "$EST_TEST_DATA/csrattrs.der"
  local host
  for host in 127.0.0.1 '[::1]'; do
    # discover: every function, with rt-derived names and ct values.
    ee disc $(g idevid "$host") discover
    expect_rc 0 disc
    for l in 'crts	/est/crts	ct=281,287' 'sen	/est/sen	ct=281,287' \
      'sren	/est/sren	ct=281,287' 'att	/est/att	ct=285' 'skg	/est/skg	ct=62' \
      'skc	/est/skc	ct=62'; do
      grep -qxF "$l" "$T/disc.out" || it_fail "discover ($host) lacks '$l': $(cat "$T/disc.out")"
    done
    # cacerts: PEM equal to what coap-client fetches; --der is the PKCS#7.
    ee ca $(g idevid "$host") cacerts --out "$T/ca-out.pem"
    expect_rc 0 ca
    EST_HOST=$host est_req gnutls idevid get /est/crts
    est_p7_to_pem "$IT_PAYLOAD_FILE" "$T/ca-ref.pem"
    cmp -s "$T/ca-out.pem" "$T/ca-ref.pem" || it_fail "cacerts PEM differs from crts"
    ee cader $(g idevid "$host") cacerts --der --out "$T/ca-out.p7"
    expect_rc 0 cader
    cmp -s "$T/ca-out.p7" "$IT_PAYLOAD_FILE" || it_fail "cacerts --der differs from the crts body"
    # csrattrs: the configured DER, byte for byte.
    ee att $(g idevid "$host") csrattrs --out "$T/attrs.der"
    expect_rc 0 att
    cmp -s "$T/attrs.der" "$EST_TEST_DATA/csrattrs.der" || it_fail "csrattrs differs"
  done

  # enroll: a new EC P-256 key (0600), a certificate with our subject, SANs
  # and key that chains to the CA; IPv6 this time.
  ee en1 $(g idevid '[::1]') -v enroll --subject "CN=dev-1,O=Example" \
    --san-dns dev-1.example --san-ip 192.0.2.1 --san-ip 2001:db8::1 \
    --key-file "$T/dev1.key" --out "$T/dev1.crt"
  expect_rc 0 en1
  [ "$(mode_of "$T/dev1.key")" = 600 ] || it_fail "key mode $(mode_of "$T/dev1.key")"
  est_verify "$T/dev1.crt" "$T/ca-ref.pem"
  [ "$(pub_cert "$T/dev1.crt")" = "$(pub_key "$T/dev1.key")" ] || it_fail "cert key != key file"
  info=$(certtool -i --infile "$T/dev1.crt" 2>/dev/null)
  echo "$info" | grep -q "Subject: CN=dev-1,O=Example" || it_fail "subject: $(echo "$info" | grep Subject:)"
  echo "$info" | grep -q "DNSname: dev-1.example" || it_fail "no SAN DNS"
  echo "$info" | grep -q "IPAddress: 2001:db8::1" || it_fail "no SAN IPv6"
  certtool -k --infile "$T/dev1.key" 2>/dev/null | grep -q SECP256R1 || it_fail "key is not P-256"
  grep -q "CSR with tls-unique" "$T/en1.err" || it_fail "no PoP binding sent"

  # enroll with an existing key, 64-byte blocks, DER output, --root (no
  # discovery), over /.well-known/est.
  certtool --generate-privkey --key-type=ecdsa --curve=secp384r1 --outfile "$T/dev2.key" 2>/dev/null
  cp "$T/dev2.key" "$T/dev2.key.orig"
  ee en2 $(g idevid) --root /.well-known/est --block-size 64 -vvv enroll --subject CN=dev-2 \
    --key-file "$T/dev2.key" --out "$T/dev2.der" --der
  expect_rc 0 en2
  cmp -s "$T/dev2.key" "$T/dev2.key.orig" || it_fail "an existing key file was rewritten"
  grep -q 'Uri-Path:.well-known, Uri-Path:core' "$T/en2.err" && it_fail "--root still discovered"
  grep -q 'Block1:1/M/64' "$T/en2.err" || it_fail "no 64-byte Block1 in the trace"
  grep -q 'Block2:1/M/64' "$T/en2.err" || it_fail "no 64-byte Block2 in the trace"
  est_der_to_pem "$T/dev2.der" "$T/dev2.pem"
  [ "$(pub_cert "$T/dev2.pem")" = "$(pub_key "$T/dev2.key")" ] || it_fail "dev2: key mismatch"

  # A CSR over 1 KiB (many SANs) with RSA: several Block1 blocks.
  sans=()
  for i in $(seq 1 8); do sans+=(--san-dns "host-$i.a-rather-long-domain-name.with-more-labels.example"); done
  ee en3 $(g idevid) --block-size 256 enroll --subject CN=dev-3 "${sans[@]}" \
    --key-file "$T/dev3.key" --key-type rsa-2048 --out "$T/dev3.crt"
  expect_rc 0 en3
  certtool -i --infile "$T/dev3.crt" 2>/dev/null | grep -q "host-8.a-rather" || it_fail "dev3 SANs"
  certtool -k --infile "$T/dev3.key" 2>/dev/null | grep -qi "RSA" || it_fail "dev3 key is not RSA"

  # reenroll with the certificate just issued: same key (renew)...
  ee re1 $(g "$T/dev1") reenroll --key-file "$T/dev1.key" --out "$T/dev1-renewed.crt"
  expect_rc 0 re1
  est_verify "$T/dev1-renewed.crt" "$T/ca-ref.pem"
  [ "$(pub_cert "$T/dev1-renewed.crt")" = "$(pub_key "$T/dev1.key")" ] || it_fail "renew changed the key"
  # ... and with a new key (rekey), same subject and SAN, over IPv6.
  ee re2 $(g "$T/dev1" '[::1]') reenroll --key-file "$T/dev1-next.key" --out "$T/dev1-next.crt"
  expect_rc 0 re2
  [ "$(mode_of "$T/dev1-next.key")" = 600 ] || it_fail "rekey key mode"
  [ "$(pub_cert "$T/dev1-next.crt")" = "$(pub_key "$T/dev1-next.key")" ] || it_fail "rekey: cert key"
  [ "$(pub_key "$T/dev1-next.key")" != "$(pub_key "$T/dev1.key")" ] || it_fail "rekey reused the key"
  a=$(certtool -i --infile "$T/dev1.crt" 2>/dev/null | grep -E "Subject:|DNSname|IPAddress")
  b=$(certtool -i --infile "$T/dev1-next.crt" 2>/dev/null | grep -E "Subject:|DNSname|IPAddress")
  [ "$a" = "$b" ] || it_fail "reenroll changed subject/SAN: '$a' vs '$b'"

  # serverkeygen: skg (281) and skc (287); the key is new, 0600, matches.
  for kind in skg skc; do
    extra=()
    [ $kind = skc ] && extra=(--single-cert)
    ee $kind $(g idevid) -v serverkeygen --subject "CN=kg-$kind" --san-dns kg.example \
      --key-out "$T/$kind.key" --out "$T/$kind.crt" "${extra[@]}"
    expect_rc 0 $kind
    grep -q "POST /est/$kind" "$T/$kind.err" || it_fail "$kind: not sent to /est/$kind"
    [ "$(mode_of "$T/$kind.key")" = 600 ] || it_fail "$kind key mode"
    est_verify "$T/$kind.crt" "$T/ca-ref.pem"
    [ "$(pub_cert "$T/$kind.crt")" = "$(pub_key "$T/$kind.key")" ] || it_fail "$kind: key mismatch"
    [ "$(pub_key "$T/$kind.key")" != "$(pub_key "$PKI/idevid.key")" ] || it_fail "$kind: our key came back"
    certtool -i --infile "$T/$kind.crt" 2>/dev/null | grep -q "Subject: CN=kg-$kind" || it_fail "$kind subject"
  done
  # The plugin answers keygen with an empty ACK and a separate CON 2.04
  # (RFC 9148 §4.7, Figure 3); here with Block1 and Block2 of 64 bytes.
  ee skg64 $(g idevid '[::1]') --block-size 64 -vvv serverkeygen --subject CN=kg-64 \
    --key-out "$T/kg64.key" --out "$T/kg64.crt"
  expect_rc 0 skg64
  grep -q 't:ACK c:0.00 i:[0-9a-f]* {} \[ \]' "$T/skg64.err" || it_fail "skg: no empty ACK"
  grep -Eq 't:CON c:2.04 .*Block2:0/M/64' "$T/skg64.err" || it_fail "skg: no separate CON 2.04"
  grep -Eq 't:ACK c:2.04 .*Block2:[1-9][0-9]*/_/64' "$T/skg64.err" || it_fail "skg: no last Block2"
  [ "$(pub_cert "$T/kg64.crt")" = "$(pub_key "$T/kg64.key")" ] || it_fail "kg64: key mismatch"
  est_stop
}

# A custom root and a label: discovery finds them, --label picks the CA.
case_labels() {
  est_start root\ /e labels\ ca2
  ee disc $(g idevid) discover
  expect_rc 0 disc
  grep -qxF 'crts	/e/ca2/crts	ct=281,287' "$T/disc.out" || it_fail "no labelled link: $(cat "$T/disc.out")"
  ee en $(g idevid) -v --label ca2 enroll --subject CN=lab-1 --key-file "$T/l.key" --out "$T/l.crt"
  expect_rc 0 en
  grep -q "POST /e/ca2/sen" "$T/en.err" || it_fail "label not used: $(cat "$T/en.err")"
  ee en2 $(g idevid) -v enroll --subject CN=lab-2 --key-file "$T/l2.key" --out "$T/l2.crt"
  expect_rc 0 en2
  grep -q "POST /e/sen" "$T/en2.err" || it_fail "unlabelled link not used: $(cat "$T/en2.err")"
  ee en3 $(g idevid) -v --root /e --label ca2 cacerts --out "$T/c.pem"
  expect_rc 0 en3
  grep -q "GET /e/ca2/crts" "$T/en3.err" || it_fail "--root/--label path: $(cat "$T/en3.err")"
  est_stop
}

# pop_linking require (RFC 7030 §3.5, docs/decisions.md §9): est-enroll's CSR
# carries this session's tls-unique; the server logs no PoP failure; a
# CSR without it is refused, from coap-client and from est-enroll --no-pop.
case_pop() {
  est_start pop_linking\ require keygen\ on
  ee en $(g idevid) enroll --subject CN=pop-1 --key-file "$T/p1.key" --out "$T/p1.crt"
  expect_rc 0 en
  ee re $(g "$T/p1") reenroll --key-file "$T/p1.key" --out "$T/p1b.crt"
  expect_rc 0 re
  ee kg $(g idevid) serverkeygen --subject CN=pop-kg --key-out "$T/pk.key" --out "$T/pk.crt"
  expect_rc 0 kg
  grep -qi "POP linking" "$T/coapd.log" && it_fail "PoP failure in the server log"
  # coap-client cannot bind its CSR to the session.
  est_csr "$T/c.key" "$T/c.csr" pop-cc
  est_req gnutls idevid post /est/sen -t 286 -f "$T/c.csr"
  it_expect_code 4.03
  grep -q "POP linking" "$IT_STDERR" || it_fail "4.03 without the PoP diagnostic"
  ee nopop $(g idevid) enroll --subject CN=pop-2 --key-file "$T/p2.key" --out "$T/p2.crt" --no-pop
  expect_rc 4 nopop
  grep -q "4.03: identity/POP linking required" "$T/nopop.err" || it_fail "no-pop message: $(cat "$T/nopop.err")"
  [ ! -e "$T/p2.crt" ] && [ ! -e "$T/p2.key" ] || it_fail "files written after a 4.03"
  est_stop
}

# Exit codes 4/5/6/2, and nothing written on failure.
case_errors() {
  est_start
  # 4: an IDevID may not re-enroll (docs/decisions.md §5); a new key is not kept,
  # an existing --out is untouched.
  echo "old certificate" >"$T/keep.crt"
  cp "$T/keep.crt" "$T/keep.orig"
  ee r4 $(g idevid) reenroll --key-file "$T/never.key" --out "$T/keep.crt"
  expect_rc 4 r4
  grep -q "re-enrollment needs a certificate issued by this CA" "$T/r4.err" || it_fail "4.03 diag: $(cat "$T/r4.err")"
  cmp -s "$T/keep.crt" "$T/keep.orig" || it_fail "--out was changed by a failed run"
  [ ! -e "$T/never.key" ] || it_fail "a generated key was written on failure"
  ls -a "$T" | grep -q '\.tmp-' && it_fail "a temporary file was left"
  # 5: functions the server does not have (4.04), nothing written.
  ee att $(g idevid) -v csrattrs --out "$T/none.der"
  expect_rc 5 att
  grep -q "4.04" "$T/att.err" || it_fail "att: $(cat "$T/att.err")"
  grep -q "^est-enroll: error NOT_FOUND, exit status 5$" "$T/att.err" ||
    it_fail "att -v: no error name: $(cat "$T/att.err")"
  ee kg $(g idevid) serverkeygen --subject CN=x --key-out "$T/none.key" --out "$T/none.crt"
  expect_rc 5 kg
  [ ! -e "$T/none.der" ] && [ ! -e "$T/none.key" ] && [ ! -e "$T/none.crt" ] || it_fail "files after 4.04"
  # 6: untrusted server, wrong server name, nobody listening, our
  # certificate refused by the server.
  ee t1 --server "coaps://127.0.0.1:$PORT" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
    --trust "$PKI/rogue-ca.crt" enroll --subject CN=x --key-file "$T/t1.key" --out "$T/t1.crt"
  expect_rc 6 t1
  [ ! -e "$T/t1.key" ] && [ ! -e "$T/t1.crt" ] || it_fail "files after a DTLS failure"
  ee t2 $(g idevid) --server-name other.example cacerts --out "$T/t2.pem"
  expect_rc 6 t2
  grep -q "not for 'other.example'" "$T/t2.err" || it_fail "t2: $(cat "$T/t2.err")"
  ee t3 --server "coaps://localhost:$PORT" --cert "$PKI/rogue.crt" --key "$PKI/rogue.key" \
    --trust "$PKI/ca.crt" cacerts --out "$T/t3.pem"
  expect_rc 6 t3
  free=$(it_free_port)
  ee t4 --server "coaps://127.0.0.1:$free" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
    --trust "$PKI/ca.crt" --timeout 3 discover
  expect_rc 6 t4
  # 2: usage.
  ee u1 $(g idevid) enroll --key-file "$T/u.key" --out "$T/u.crt"
  expect_rc 2 u1
  ee u2 $(g idevid) cacerts --out "$T/u.pem" --subject CN=x
  expect_rc 2 u2
  ee u3 --server "http://127.0.0.1:$PORT" --cert a --key b --trust c discover
  expect_rc 2 u3
  ee u4 $(g idevid) enroll --subject "not a dn" --key-file "$T/u.key" --out "$T/u.crt"
  expect_rc 2 u4
  ee u5 $(g idevid) frobnicate
  expect_rc 2 u5
  ee u6 $(g idevid) --block-size 100 discover
  expect_rc 2 u6
  [ ! -e "$T/u.key" ] && [ ! -e "$T/u.crt" ] || it_fail "files after a usage error"
  # 1: local files: not a key, a key that is not the certificate's, no
  # trust anchors.
  echo "not a key" >"$T/bad.key"
  ee l1 $(g idevid) enroll --subject CN=x --key-file "$T/bad.key" --out "$T/l1.crt"
  expect_rc 1 l1
  ee l2 --server "coaps://127.0.0.1:$PORT" --cert "$PKI/idevid.crt" --key "$PKI/client.key" \
    --trust "$PKI/ca.crt" discover
  expect_rc 1 l2
  grep -q "does not belong to --cert" "$T/l2.err" || it_fail "l2: $(cat "$T/l2.err")"
  ee l3 --server "coaps://127.0.0.1:$PORT" --cert "$PKI/idevid.crt" --key "$PKI/idevid.key" \
    --trust "$T/bad.key" discover
  expect_rc 1 l3
  ee h --help
  expect_rc 0 h
  grep -q "Exit status:" "$T/h.out" || it_fail "--help lacks the exit codes"
  est_stop
}

# reenroll --renew-within DAYS (unattended renewal): nothing to do while
# the certificate lasts longer; renews once within the window.
case_renew() {
  est_start cert_days\ 20
  ee en $(g idevid) enroll --subject CN=ren-1 --key-file "$T/r.key" --out "$T/r.crt"
  expect_rc 0 en
  cp "$T/r.crt" "$T/r.orig"
  ee n1 $(g "$T/r") reenroll --renew-within 10 --key-file "$T/r.key" --out "$T/r.crt"
  expect_rc 0 n1
  grep -q "not renewing" "$T/n1.out" || it_fail "renew-within 10: $(cat "$T/n1.out" "$T/n1.err")"
  cmp -s "$T/r.crt" "$T/r.orig" || it_fail "the certificate changed though nothing was due"
  # Nothing to do needs no server at all.
  est_stop
  ee n2 $(g "$T/r") --timeout 2 reenroll --renew-within 5 --key-file "$T/r.key" --out "$T/r.crt"
  expect_rc 0 n2
  est_start cert_days\ 20
  # Within 30 days: renewed in place (as the systemd timer does).
  ee n3 $(g "$T/r") -v reenroll --renew-within 30 --key-file "$T/r.key" --out "$T/r.crt"
  expect_rc 0 n3
  cmp -s "$T/r.crt" "$T/r.orig" && it_fail "not renewed within the window"
  est_verify "$T/r.crt" "$PKI/ca.crt"
  [ "$(pub_cert "$T/r.crt")" = "$(pub_key "$T/r.key")" ] || it_fail "renewed cert key"
  est_stop
}

# The approval queue (docs/decisions.md §7): exit 3 when still pending at
# --max-wait; the same key continues the same request on the next run.
case_pending() {
  est_start idevid_policy\ manual retry_after\ 2
  ctl() { "$ESTCTL" --db "$T/est.db" "$@"; }
  ee p1 $(g idevid) enroll --subject CN=pend-1 --key-file "$T/d.key" --out "$T/d.crt" --max-wait 0
  expect_rc 3 p1
  grep -q "still pending" "$T/p1.err" || it_fail "p1: $(cat "$T/p1.err")"
  [ ! -e "$T/d.crt" ] || it_fail "a certificate was written while pending"
  [ -e "$T/d.key" ] && [ "$(mode_of "$T/d.key")" = 600 ] || it_fail "the key of a pending request was not kept"
  # 5.03 twice within --max-wait 3 (Max-Age 2): waits, retries, then 3.
  ee p2 $(g idevid) enroll --subject CN=pend-1 --key-file "$T/d.key" --out "$T/d.crt" --max-wait 3
  expect_rc 3 p2
  grep -q "retrying in 2 s" "$T/p2.err" || it_fail "p2 did not wait: $(cat "$T/p2.err")"
  n=$(ctl list --json | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$n" = 1 ] || it_fail "$n requests; the retries were not matched to one"
  id=$(ctl list --state pending --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  ctl approve "$id" >/dev/null || it_fail "estctl approve"
  ee p3 $(g idevid) enroll --subject CN=pend-1 --key-file "$T/d.key" --out "$T/d.crt" --max-wait 0
  expect_rc 0 p3
  [ "$(pub_cert "$T/d.crt")" = "$(pub_key "$T/d.key")" ] || it_fail "pending: key mismatch"
  est_stop
}

# An operator approves (or rejects) while est-enroll waits: it retries
# after Max-Age on new DTLS sessions with fresh PoP bindings.
case_approve() {
  est_start idevid_policy\ manual retry_after\ 2 pop_linking\ require keygen\ on
  ctl() { "$ESTCTL" --db "$T/est.db" "$@"; }
  pending_id() { # wait for a pending request; print its id
    local i id
    for i in $(seq 100); do
      id=$(ctl list --state pending --json 2>/dev/null |
        /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[-1]["id"] if r else "")')
      [ -n "$id" ] && { echo "$id"; return 0; }
      sleep 0.1
    done
    return 1
  }
  "$EST_ENROLL" $(g idevid) enroll --subject CN=wait-1 --key-file "$T/w.key" --out "$T/w.crt" \
    --max-wait 60 >"$T/w.out" 2>"$T/w.err" &
  pid=$!
  id=$(pending_id) || it_fail "no pending request appeared"
  sleep 3 # at least one retry while pending
  ctl approve "$id" >/dev/null || it_fail "estctl approve"
  wait $pid
  RC=$?
  it_san_check "$T/w.err"
  expect_rc 0 w
  grep -q "retrying in 2 s" "$T/w.err" || it_fail "no wait: $(cat "$T/w.err")"
  est_verify "$T/w.crt" "$PKI/ca.crt"
  [ "$(pub_cert "$T/w.crt")" = "$(pub_key "$T/w.key")" ] || it_fail "approve: key mismatch"
  grep -qi "POP linking" "$T/coapd.log" && it_fail "a retry failed PoP (stale binding?)"

  # Server keygen waits the same way.
  "$EST_ENROLL" $(g idevid) serverkeygen --subject CN=wait-kg --key-out "$T/wk.key" \
    --out "$T/wk.crt" --max-wait 60 >"$T/wk.out" 2>"$T/wk.err" &
  pid=$!
  id=$(pending_id) || it_fail "no pending skg request"
  ctl approve "$id" >/dev/null || it_fail "estctl approve skg"
  wait $pid
  RC=$?
  it_san_check "$T/wk.err"
  expect_rc 0 wk
  [ "$(pub_cert "$T/wk.crt")" = "$(pub_key "$T/wk.key")" ] || it_fail "skg approve: key mismatch"

  # Rejected while waiting: 4.03 with the reason, exit 4, nothing written.
  "$EST_ENROLL" $(g idevid) enroll --subject CN=wait-2 --key-file "$T/w2.key" --out "$T/w2.crt" \
    --max-wait 60 >"$T/w2.out" 2>"$T/w2.err" &
  pid=$!
  id=$(pending_id) || it_fail "no second pending request"
  ctl reject "$id" --reason "unknown device" >/dev/null || it_fail "estctl reject"
  wait $pid
  RC=$?
  it_san_check "$T/w2.err"
  expect_rc 4 w2
  grep -q "unknown device" "$T/w2.err" || it_fail "reject reason: $(cat "$T/w2.err")"
  [ ! -e "$T/w2.crt" ] || it_fail "certificate after rejection"
  est_stop
}

# Response bodies are capped at 64 KiB: a crts bag over that is refused
# (exit 5) and nothing is written.
case_limits() {
  PKI=$T/pki
  it_pki "$PKI"
  cp "$PKI/ca.crt" "$T/bag.pem"
  certtool --generate-privkey --key-type=ecdsa --outfile "$T/filler.key" 2>/dev/null
  for i in $(seq 1 220); do
    printf 'cn = "filler CA %s"\nca\ncert_signing_key\nexpiration_days = 30\n' "$i" >"$T/f.tmpl"
    certtool --generate-self-signed --load-privkey "$T/filler.key" --template "$T/f.tmpl" \
      2>/dev/null | sed -n '/BEGIN CERT/,/END CERT/p' >>"$T/bag.pem"
  done
  est_start ca_cert\ "$T/bag.pem"
  ee big $(g idevid) cacerts --der --out "$T/big.p7"
  expect_rc 5 big
  grep -q "over the size limit" "$T/big.err" || it_fail "big: $(cat "$T/big.err")"
  ee big2 $(g idevid) --block-size 128 enroll --subject CN=x --key-file "$T/x.key" --out "$T/x.crt"
  expect_rc 5 big2
  [ ! -e "$T/big.p7" ] && [ ! -e "$T/x.crt" ] && [ ! -e "$T/x.key" ] || it_fail "files after the cap"
  est_stop
}

case "$CASE" in
  commands | labels | pop | errors | renew | pending | approve | limits) "case_$CASE" ;;
  *) it_fail "unknown case '$CASE'" ;;
esac
it_pass
