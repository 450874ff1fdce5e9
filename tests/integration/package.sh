#!/usr/bin/env bash
# it.package: the Debian package (docs/packaging.md) from this build's
# options: build the .deb, lintian (no E:), install it, check the user,
# group and folders, run the INSTALLED coapd as est-coaps with the
# installed config (only its listen ports changed), enroll with the
# installed est-enroll, see it counted on /metrics, replace the CA and
# SIGHUP (the next certificate is the new CA's), back up with estctl while
# coapd runs, stop it, remove (the conffile stays) and purge. Needs root.
# Never skips.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
it_init package
[ "$(id -u)" = 0 ] || it_fail "needs root (dpkg -i)"
for tool in dpkg dpkg-deb dpkg-architecture lintian cpack certtool setpriv flock \
  sqlite3 systemd-analyze python3; do
  command -v "$tool" >/dev/null || it_fail "$tool is missing: run scripts/deps.sh"
done
[ -d "${EST_BUILD_DIR:-}" ] && [ -d "${EST_SOURCE_DIR:-}" ] ||
  it_fail "EST_BUILD_DIR / EST_SOURCE_DIR not set"
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
ETC=/etc/est-coaps VAR=/var/lib/est-coaps MARK=/etc/est-coaps/.it-package
PLUGDIR=/usr/lib/$MA/est-coaps

# One run at a time on this machine: the package is system-wide.
exec 9>/run/lock/est-coaps-it-package.lock
flock -w 600 9 || it_fail "another it.package holds the lock for 10 min"

CREATED_USER=0
pkg_cleanup() {
  set +e
  [ -n "${CPID:-}" ] && { kill -TERM "$CPID" 2>/dev/null; sleep 1; kill -KILL "$CPID" 2>/dev/null; }
  if [ -e "$MARK" ] || [ "${OURS:-0}" = 1 ]; then
    timeout 120 dpkg -P est-coaps >>"$T/dpkg.log" 2>&1
    rm -rf "$ETC" "$VAR"
  fi
  if [ "$CREATED_USER" = 1 ]; then
    userdel est-coaps 2>/dev/null
    groupdel est-coaps 2>/dev/null
  fi
  it_cleanup
}
trap pkg_cleanup EXIT

state() { dpkg-query -W -f='${db:Status-Status}' est-coaps 2>/dev/null || true; }
# Leftovers of a crashed run go; anything else is someone's install.
if [ -n "$(state)" ] && [ "$(state)" != not-installed ] || [ -e "$ETC" ] || [ -e "$VAR" ]; then
  [ -e "$MARK" ] || it_fail "est-coaps is installed or $ETC / $VAR exist, not from this test: remove them first"
  timeout 120 dpkg -P est-coaps >"$T/dpkg.log" 2>&1 || it_fail "purging a crashed run's package: $(tail -3 "$T/dpkg.log")"
  rm -rf "$ETC" "$VAR"
fi
getent passwd est-coaps >/dev/null || CREATED_USER=1

# The tree to package: this one if it has the package layout, else a
# sibling tree with this one's build type and sanitizer setting (kept in
# the build folder, so a second run only rebuilds what changed).
cache() { sed -n "s/^$1:[A-Z]*=//p" "$EST_BUILD_DIR/CMakeCache.txt"; }
if [ "$(cache CMAKE_INSTALL_PREFIX)" = /usr ] && [ "$(cache CMAKE_INSTALL_LIBDIR)" = "lib/$MA" ]; then
  PT=$EST_BUILD_DIR
else
  PT=$EST_BUILD_DIR/package-tree
  timeout 300 cmake -S "$EST_SOURCE_DIR" -B "$PT" -DCMAKE_INSTALL_PREFIX=/usr \
    -DCMAKE_INSTALL_LIBDIR="lib/$MA" -DEST_TESTS=OFF \
    -DCMAKE_BUILD_TYPE="$(cache CMAKE_BUILD_TYPE)" -DEST_SANITIZE="$(cache EST_SANITIZE)" \
    -DCMAKE_C_COMPILER="$(cache CMAKE_C_COMPILER)" >"$T/configure.log" 2>&1 ||
    it_fail "configuring the package tree: $(tail -5 "$T/configure.log")"
fi
timeout 900 cmake --build "$PT" -j "$(nproc)" >"$T/build.log" 2>&1 ||
  it_fail "building the package tree: $(grep -m5 -E 'error|Error' "$T/build.log")"
(cd "$T" && timeout 300 cpack -G DEB --config "$PT/CPackConfig.cmake" -B "$T/deb") >"$T/cpack.log" 2>&1 ||
  it_fail "cpack: $(tail -5 "$T/cpack.log")"
DEB=$(ls "$T"/deb/est-coaps_*_"$(dpkg --print-architecture)".deb 2>/dev/null | head -1)
[ -f "$DEB" ] || it_fail "no est-coaps_<version>_<arch>.deb: $(ls "$T/deb")"
echo "built $(basename "$DEB")"

# lintian: no error (docs/packaging.md lists what it still says).
timeout 300 lintian --tag-display-limit 0 "$DEB" >"$T/lintian.out" 2>&1 || true
if grep -q '^E: ' "$T/lintian.out"; then
  it_fail "lintian errors: $(grep '^E: ' "$T/lintian.out")"
fi
grep -Eq '^(E|W|I|N|P|X|O): |^$|root privileges|tag-display-limit' "$T/lintian.out" ||
  it_fail "lintian did not run: $(head -5 "$T/lintian.out")"
echo "lintian: $(grep -c '^E: ' "$T/lintian.out" || true) errors, $(grep -c '^W: ' "$T/lintian.out" || true) warnings"

OURS=1
timeout 120 dpkg -i "$DEB" >"$T/dpkg.log" 2>&1 || it_fail "dpkg -i: $(tail -5 "$T/dpkg.log")"
touch "$MARK"

# What postinst set up.
getent passwd est-coaps >/dev/null || it_fail "no user est-coaps"
getent group est-coaps >/dev/null || it_fail "no group est-coaps"
[ "$(stat -c '%a %U %G' "$VAR")" = "2770 est-coaps est-coaps" ] ||
  it_fail "$VAR is $(stat -c '%a %U %G' "$VAR"), want 2770 est-coaps est-coaps"
[ "$(stat -c '%a %G' "$ETC")" = "750 est-coaps" ] || it_fail "$ETC is $(stat -c '%a %G' "$ETC")"
[ "$(stat -c '%a %U %G' "$VAR/est.db")" = "660 est-coaps est-coaps" ] ||
  it_fail "$VAR/est.db is $(stat -c '%a %U %G' "$VAR/est.db" 2>&1), want 660 est-coaps est-coaps"
if getent passwd mosquitto >/dev/null; then
  id -nG mosquitto | tr ' ' '\n' | grep -qx est-coaps || it_fail "mosquitto is not in group est-coaps"
fi
dpkg-query -W -f='${Conffiles}' est-coaps | grep -q "$ETC/coapd.conf" ||
  it_fail "$ETC/coapd.conf is not a conffile"
for f in /usr/bin/coapd /usr/bin/estctl /usr/bin/est-enroll /usr/bin/est-bench \
  "$PLUGDIR/est_coaps.so" "$PLUGDIR/mosquitto_est.so" /usr/include/coapd/plugin.h \
  /lib/systemd/system/coapd.service /usr/lib/sysusers.d/est-coaps.conf \
  /usr/lib/tmpfiles.d/est-coaps.conf /usr/share/doc/est-coaps/copyright \
  /usr/share/doc/est-coaps/examples/mosquitto.conf /usr/share/man/man5/coapd.conf.5.gz \
  /usr/share/man/man8/coapd.8.gz /usr/share/man/man8/estctl.8.gz /usr/share/man/man1/est-enroll.1.gz; do
  [ -e "$f" ] || it_fail "the package has no $f"
done

# The installed unit: valid, and hardened (docs/packaging.md).
timeout 60 systemd-analyze verify --man=no /lib/systemd/system/coapd.service >"$T/verify.log" 2>&1 ||
  it_fail "systemd-analyze verify: $(cat "$T/verify.log")"
timeout 60 systemd-analyze security --offline=yes /lib/systemd/system/coapd.service >"$T/security.log" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for coapd.service: \([0-9.]*\).*/\1/p' "$T/security.log")
[ -n "$score" ] || it_fail "systemd-analyze security: $(tail -3 "$T/security.log")"
python3 -c "import sys; sys.exit(0 if float('$score') <= 2.5 else 1)" ||
  it_fail "coapd.service exposure $score, want 2.5 or lower"
echo "systemd-analyze security: $score"

# The PKI where the shipped config expects it (its comments say so).
"$EST_SCRIPTS/mkpki.sh" "$T/pki" >"$T/mkpki.out" 2>&1 || it_fail "mkpki.sh: $(tail -3 "$T/mkpki.out")"
P=$T/pki
install -m 644 "$P/server.crt" "$P/trust.pem" "$ETC/"
install -o est-coaps -g est-coaps -m 600 "$P/server.key" "$ETC/"
install -m 644 "$P/ca.crt" "$P/mfr-ca.crt" "$ETC/ca/"
install -o est-coaps -g est-coaps -m 600 "$P/ca.key" "$ETC/ca/"

AS_EST=(setpriv --reuid est-coaps --regid est-coaps --init-groups)
# The config as shipped passes -t (what ExecStartPre runs).
timeout 60 "${AS_EST[@]}" /usr/bin/coapd -t -c "$ETC/coapd.conf" >"$T/check.log" 2>&1 ||
  it_fail "coapd -t of the shipped config: $(tail -5 "$T/check.log")"
it_san_check "$T/check.log"
PORT=$(it_free_port)
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -i "s/^listen .*/listen 127.0.0.1 $PORT/; s/^metrics_listen .*/metrics_listen 127.0.0.1 $MPORT/" \
  "$ETC/coapd.conf"
grep -q "^metrics_listen 127.0.0.1 $MPORT$" "$ETC/coapd.conf" || it_fail "the shipped config has no metrics_listen"

"${AS_EST[@]}" /usr/bin/coapd -c "$ETC/coapd.conf" >"$T/coapd.log" 2>&1 &
CPID=$!
for ((i = 0; i < 300; i++)); do
  grep -q "$IT_READY_TEXT" "$T/coapd.log" && break
  kill -0 "$CPID" 2>/dev/null || it_fail "installed coapd exited before it was ready"
  sleep 0.1
done
grep -q "$IT_READY_TEXT" "$T/coapd.log" || it_fail "installed coapd not ready after 30 s"
[ "$(ps -o user= -p "$CPID")" = est-coaps ] || it_fail "coapd runs as $(ps -o user= -p "$CPID")"

# Enroll with the installed client: pending (idevid_policy manual), the
# operator (a member of est-coaps) approves, then issued.
ee() { # NAME ARGS: installed est-enroll, bounded; sets RC
  local name=$1
  shift
  RC=0
  timeout -k 5 120 /usr/bin/est-enroll --server "coaps://127.0.0.1:$PORT" --cert "$P/idevid.crt" \
    --key "$P/idevid.key" --trust "$P/ca.crt" "$@" >"$T/$name.out" 2>"$T/$name.log" || RC=$?
  it_san_check "$T/$name.log"
}
ENR=(enroll --subject CN=pkg-device-1 --san-dns pkg-device-1.example --key-file "$T/dev.key" --out "$T/dev.crt")
ee e1 "${ENR[@]}" --max-wait 0
[ "$RC" = 3 ] || it_fail "first enrollment: exit $RC, want 3 (pending): $(tail -3 "$T/e1.log")"
ctl() { timeout 60 "${AS_EST[@]}" /usr/bin/estctl --db "$VAR/est.db" "$@"; }
id=$(ctl list --state pending --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])') ||
  it_fail "estctl list: no pending request"
ctl approve "$id" >"$T/approve.log" 2>&1 || it_fail "estctl approve: $(cat "$T/approve.log")"
ee e2 "${ENR[@]}" --max-wait 30
[ "$RC" = 0 ] || it_fail "approved enrollment: exit $RC: $(tail -3 "$T/e2.log")"
certtool --verify --load-ca-certificate "$P/ca.crt" --infile "$T/dev.crt" >"$T/verify-cert.log" 2>&1 ||
  it_fail "the issued certificate does not verify: $(tail -3 "$T/verify-cert.log")"
grep -q "pkg-device-1" <(certtool -i --infile "$T/dev.crt" 2>/dev/null) || it_fail "wrong subject"

# A backup while coapd runs, by the operator, holds the certificate.
chmod 711 "$T"
install -d -o est-coaps -g est-coaps -m 700 "$T/bk"
ctl backup "$T/bk/est.db" >"$T/backup.log" 2>&1 || it_fail "estctl backup: $(cat "$T/backup.log")"
[ "$(sqlite3 "$T/bk/est.db" 'PRAGMA integrity_check')" = ok ] || it_fail "the backup is damaged"
timeout 60 "${AS_EST[@]}" /usr/bin/estctl --db "$T/bk/est.db" certs | grep -q pkg-device-1 ||
  it_fail "the backup has no certificate for pkg-device-1"

# /metrics counts the enrollment; parsed by prometheus_client's own parser.
# issued SERIES: the value of est_certificates_issued_total{function="sen"}.
issued() {
  curl -sS --max-time 10 "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt" ||
    it_fail "curl /metrics failed"
  /usr/bin/python3 - "$T/metrics.txt" <<'EOF' || it_fail "/metrics does not parse: $(head -5 "$T/metrics.txt")"
import sys
from prometheus_client.parser import text_string_to_metric_families
v = 0
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        if s.name == "est_certificates_issued_total" and s.labels.get("function") == "sen":
            v = s.value
print(int(v))
EOF
}
[ "$(issued)" = 1 ] || it_fail "/metrics: est_certificates_issued_total{function=\"sen\"} is $(issued), want 1"
[ "$(curl -sS --max-time 10 "http://127.0.0.1:$MPORT/healthz")" = ok ] || it_fail "/healthz is not ok"

# The CA is replaced while coapd runs; SIGHUP; the next enrollment is signed
# by the new one, without a restart.
"$EST_SCRIPTS/mkpki.sh" "$T/pki2" >"$T/mkpki2.out" 2>&1 || it_fail "mkpki.sh pki2: $(tail -3 "$T/mkpki2.out")"
install -m 644 "$T/pki2/ca.crt" "$ETC/ca/ca.crt.new" && mv "$ETC/ca/ca.crt.new" "$ETC/ca/ca.crt"
install -o est-coaps -g est-coaps -m 600 "$T/pki2/ca.key" "$ETC/ca/ca.key.new" &&
  mv "$ETC/ca/ca.key.new" "$ETC/ca/ca.key"
kill -HUP "$CPID"
for ((i = 0; i < 100; i++)); do grep -q "\[est-coaps\] reloaded: " "$T/coapd.log" && break; sleep 0.1; done
grep -q "\[est-coaps\] reloaded: " "$T/coapd.log" || it_fail "no reload after SIGHUP: $(tail -3 "$T/coapd.log")"
ENR2=(enroll --subject CN=pkg-device-2 --key-file "$T/dev2.key" --out "$T/dev2.crt")
ee e3 "${ENR2[@]}" --max-wait 0
[ "$RC" = 3 ] || it_fail "enrollment after SIGHUP: exit $RC, want 3 (pending): $(tail -3 "$T/e3.log")"
id=$(ctl list --state pending --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])') ||
  it_fail "estctl list: no pending request after SIGHUP"
ctl approve "$id" >"$T/approve2.log" 2>&1 || it_fail "estctl approve: $(cat "$T/approve2.log")"
ee e4 "${ENR2[@]}" --max-wait 30
[ "$RC" = 0 ] || it_fail "enrollment after SIGHUP: exit $RC: $(tail -3 "$T/e4.log")"
certtool --verify --load-ca-certificate "$T/pki2/ca.crt" --infile "$T/dev2.crt" >/dev/null 2>&1 ||
  it_fail "after SIGHUP the certificate is not signed by the new CA"
certtool --verify --load-ca-certificate "$P/ca.crt" --infile "$T/dev2.crt" >/dev/null 2>&1 &&
  it_fail "after SIGHUP the certificate is still signed by the old CA"
[ "$(issued)" = 2 ] || it_fail "/metrics after the second enrollment: $(issued), want 2"

kill -TERM "$CPID"
for ((i = 0; i < 100; i++)); do kill -0 "$CPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CPID" 2>/dev/null && it_fail "coapd did not stop within 10 s of SIGTERM"
rc=0
wait "$CPID" || rc=$?
CPID=
[ "$rc" = 0 ] || it_fail "coapd exited with $rc after SIGTERM"
it_san_check "$T/coapd.log"

# Remove: the programs go, the (changed) conffile stays until purge.
timeout 120 dpkg -r est-coaps >>"$T/dpkg.log" 2>&1 || it_fail "dpkg -r: $(tail -5 "$T/dpkg.log")"
for f in /usr/bin/coapd /usr/bin/estctl /usr/bin/est-enroll "$PLUGDIR/est_coaps.so" /lib/systemd/system/coapd.service; do
  [ ! -e "$f" ] || it_fail "$f is still there after dpkg -r"
done
[ -f "$ETC/coapd.conf" ] || it_fail "dpkg -r removed the conffile"
[ "$(state)" = config-files ] || it_fail "after dpkg -r the state is '$(state)', want config-files"
timeout 120 dpkg -P est-coaps >>"$T/dpkg.log" 2>&1 || it_fail "dpkg -P: $(tail -5 "$T/dpkg.log")"
[ ! -e "$ETC/coapd.conf" ] || it_fail "dpkg -P kept the conffile"
[ "$(state)" = not-installed ] || [ -z "$(state)" ] || it_fail "after dpkg -P the state is '$(state)'"
[ -f "$VAR/est.db" ] || it_fail "purge removed the database (it must stay, docs/packaging.md)"
echo "installed, enrolled, scraped, reloaded a new CA, backed up, removed and purged $(basename "$DEB")"
it_pass
