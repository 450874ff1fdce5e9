#!/usr/bin/env bash
# Protected files (docs/decisions.md §14): coapd refuses a CA key or DTLS
# key other users can read and warns about a group-readable one; the
# database and its -wal/-shm are created 0600 under umask 022, or 0640 in
# db_group; estctl backup copies it whole while coapd runs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_files
umask 022

mode() { stat -c %a "$1"; }
# start_fails PATTERN: coapd -c $CONF must exit 1 and log PATTERN.
start_fails() {
  timeout -k 5 20 "$COAPD" -c "$CONF" >"$T/fail.log" 2>&1
  local rc=$?
  [ "$rc" = 1 ] || it_fail "coapd started (exit $rc), expected a refusal: $(tail -3 "$T/fail.log")"
  grep -qF -- "$1" "$T/fail.log" || it_fail "no '$1' in: $(cat "$T/fail.log")"
}

# coapd -t checks and writes nothing: no database, no CRL (issue 12).
est_start "crl_file $T/t.crl"
est_stop
rm -f "$T"/est.db* "$T/t.crl"
timeout -k 5 20 "$COAPD" -t -c "$CONF" >"$T/t.log" 2>&1 || it_fail "coapd -t: $(cat "$T/t.log")"
grep -q "configuration OK" "$T/t.log" || it_fail "coapd -t: $(cat "$T/t.log")"
for f in "$T/est.db" "$T/t.crl"; do
  [ ! -e "$f" ] || it_fail "coapd -t wrote $f"
done
sed -i "s#^plugin_opt_db_path .*#plugin_opt_db_path $T/no/such/dir/est.db#" "$CONF"
timeout -k 5 20 "$COAPD" -t -c "$CONF" >"$T/t2.log" 2>&1 && it_fail "coapd -t took a database it cannot create"
grep -q "folder not writable" "$T/t2.log" || it_fail "coapd -t: $(cat "$T/t2.log")"
rm -f "$CONF"

est_start
est_req gnutls idevid get /est/crts
it_expect_code 2.05
for f in "$T/est.db" "$T/est.db-wal" "$T/est.db-shm"; do
  [ -e "$f" ] || it_fail "$f does not exist"
  [ "$(mode "$f")" = 600 ] || it_fail "$f is mode $(mode "$f") under umask 022, want 600"
done
est_stop

# A group for a broker on another user: 0640 in that group.
grp=$(getent group nogroup >/dev/null && echo nogroup || id -gn)
rm -f "$T"/est.db*
est_start "db_group $grp"
for f in "$T/est.db" "$T/est.db-wal" "$T/est.db-shm"; do
  [ "$(mode "$f")" = 640 ] || it_fail "$f is mode $(mode "$f") with db_group, want 640"
  [ "$(stat -c %G "$f")" = "$grp" ] || it_fail "$f is in group $(stat -c %G "$f"), want $grp"
done
est_stop
sed -i "s/^plugin_opt_db_group .*/plugin_opt_db_group no-such-group-here/" "$CONF"
start_fails "db_group: no group 'no-such-group-here'"
sed -i "/^plugin_opt_db_group /d" "$CONF"

# The CA key: world-readable refused with the fix named, group-readable
# taken with a warning.
chmod 644 "$PKI/ca.key"
start_fails "ca_key: private key '$PKI/ca.key' has mode 0644: other users can read or change it; run chmod 600"
chmod 640 "$PKI/ca.key"
est_start
grep -q "ca_key '$PKI/ca.key' is readable by its group" "$T/coapd.log" || it_fail "no group-readable warning"
est_stop
chmod 600 "$PKI/ca.key"

# estctl backup while coapd keeps enrolling: a whole, consistent copy.
[ -x "${ESTCTL:-}" ] || it_fail "ESTCTL is not set"
est_start
(for i in $(seq 1 40); do
  est_csr "$T/b$i.key" "$T/b$i.csr" "backup-$i" >/dev/null
  est_req gnutls idevid post /est/sen -t 286 -f "$T/b$i.csr" >/dev/null 2>&1
done) &
loader=$!
sleep 0.3
"$ESTCTL" --db "$T/est.db" backup "$T/backup.db" >"$T/backup.out" 2>&1 || it_fail "backup: $(cat "$T/backup.out")"
wait "$loader"
[ "$(sqlite3 "$T/backup.db" 'PRAGMA integrity_check')" = ok ] || it_fail "the backup is not consistent"
[ "$(mode "$T/backup.db")" = 600 ] || it_fail "the backup is mode $(mode "$T/backup.db")"
# Every certificate in the copy has its request and its audit row.
orphans=$(sqlite3 "$T/backup.db" "SELECT count(*) FROM certificates c WHERE NOT EXISTS
  (SELECT 1 FROM audit a WHERE a.cert_serial = c.serial AND a.action = 'issued')")
[ "$orphans" = 0 ] || it_fail "$orphans certificates in the backup lack their audit row"
echo "backup while enrolling: $(cat "$T/backup.out"); $(sqlite3 "$T/backup.db" 'SELECT count(*) FROM certificates') certificates in the copy, $(sqlite3 "$T/est.db" 'SELECT count(*) FROM certificates') after"
est_stop

# The DTLS key, with the config line.
chmod 604 "$PKI/server.key"
line=$(grep -n '^dtls_key ' "$CONF" | cut -d: -f1)
start_fails "$CONF:$line: dtls_key: private key '$PKI/server.key' has mode 0604"
chmod 600 "$PKI/server.key"
est_start
est_req gnutls idevid get /est/crts
it_expect_code 2.05
est_stop
it_pass
