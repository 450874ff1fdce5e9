#!/usr/bin/env bash
# An installed tree finds its plugins by the bare name (issue 12): after
# `cmake --install build --prefix P` and after moving P elsewhere, and a
# config's plugin_dir points anywhere else.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_install
[ -d "${EST_BUILD_DIR:-}" ] || it_fail "EST_BUILD_DIR is not set"
PKI=$T/pki
it_pki "$PKI"
cmake --install "$EST_BUILD_DIR" --prefix "$T/inst" >"$T/install.log" 2>&1 ||
  it_fail "cmake --install: $(tail -5 "$T/install.log")"
conf() { # conf FILE [extra line]
  {
    echo "listen 127.0.0.1 $(it_free_port)"
    echo "dtls_cert $PKI/server.crt"
    echo "dtls_key $PKI/server.key"
    echo "dtls_ca $PKI/trust.pem"
    [ -z "${2:-}" ] || echo "$2"
    echo "plugin est_coaps.so"
    echo "plugin_opt_ca_cert $PKI/ca.crt"
    echo "plugin_opt_ca_key $PKI/ca.key"
    echo "plugin_opt_db_path $T/est.db"
  } >"$1"
}
conf "$T/c.conf"
bin=$(find "$T/inst" -name coapd -type f | head -1)
[ -x "$bin" ] || it_fail "no installed coapd: $(find "$T/inst" -maxdepth 3)"
"$bin" -t -c "$T/c.conf" >"$T/t1.log" 2>&1 || it_fail "installed coapd: $(cat "$T/t1.log")"
grep -q "configuration OK" "$T/t1.log" || it_fail "installed coapd: $(cat "$T/t1.log")"
# Moved: still found next to the binary.
mv "$T/inst" "$T/moved"
bin=${bin/$T\/inst/$T\/moved}
"$bin" -t -c "$T/c.conf" >"$T/t2.log" 2>&1 || it_fail "moved coapd: $(cat "$T/t2.log")"
# plugin_dir in the config wins over the install's folder.
mkdir -p "$T/empty"
conf "$T/d.conf" "plugin_dir $T/empty"
"$bin" -t -c "$T/d.conf" >"$T/t3.log" 2>&1 && it_fail "plugin_dir was ignored: $(cat "$T/t3.log")"
grep -q "$T/empty/est_coaps.so" "$T/t3.log" || it_fail "no clear error for plugin_dir: $(cat "$T/t3.log")"
plugdir=$(dirname "$(find "$T/moved" -name est_coaps.so | head -1)")
conf "$T/e.conf" "plugin_dir $plugdir"
"$bin" -t -c "$T/e.conf" >"$T/t4.log" 2>&1 || it_fail "plugin_dir $plugdir: $(cat "$T/t4.log")"
echo "installed, moved and plugin_dir lookups of 'plugin est_coaps.so' all work"
it_pass
