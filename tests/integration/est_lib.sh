# EST-coaps helpers for the integration tests; source after lib.sh.
# Needs COAPD and EST_PLUGIN in the environment (set by ctest).

# est_start [plugin_opt lines...]: make a PKI (once per test), write a config
# with the given extra plugin options and start coapd on a free port
# (127.0.0.1 and ::1). Defaults: idevid_policy auto, db_path $T/est.db.
# EST_HOST_EXTRA, if set, holds extra coapd lines (newline-separated) for
# the host part of the config. Sets PORT, PKI, CONF.
est_start() {
  PKI=$T/pki
  [ -f "$PKI/ca.crt" ] || it_pki "$PKI"
  PORT=$(it_free_port)
  CONF=$T/coapd.conf
  local given="" o
  for o in "$@"; do given="$given ${o%% *} "; done
  {
    echo "listen 127.0.0.1 $PORT"
    echo "listen ::1 $PORT"
    echo "dtls_cert $PKI/server.crt"
    echo "dtls_key $PKI/server.key"
    echo "dtls_ca $PKI/trust.pem"
    echo "log_level ${EST_LOG_LEVEL:-info}"
    [ -z "${EST_HOST_EXTRA:-}" ] || printf '%s\n' "$EST_HOST_EXTRA"
    echo "plugin $EST_PLUGIN"
    # Defaults, unless the caller gives the option itself.
    case "$given" in *" ca_cert "*) ;; *) echo "plugin_opt_ca_cert $PKI/ca.crt" ;; esac
    case "$given" in *" ca_key "*) ;; *) echo "plugin_opt_ca_key $PKI/ca.key" ;; esac
    case "$given" in *" idevid_trust "*) ;; *) echo "plugin_opt_idevid_trust $PKI/mfr-ca.crt" ;; esac
    # Issue at once unless a test asks for the approval queue; record it all.
    case "$given" in *" idevid_policy "*) ;; *) echo "plugin_opt_idevid_policy auto" ;; esac
    case "$given" in *" db_path "*) ;; *) echo "plugin_opt_db_path $T/est.db" ;; esac
    for o in "$@"; do echo "plugin_opt_$o"; done
  } >"$CONF"
  it_coapd_start "$CONF" coapd
}

est_stop() { it_coapd_stop coapd; }

# est_req CLIENT ID METHOD PATH [coap-client args...]: one request as the
# device ID (idevid, client, rogue, none, or a path prefix P for P.crt/P.key).
# Host defaults to 127.0.0.1; set EST_HOST=[::1] for IPv6.
est_req() {
  local client=$1 id=$2 method=$3 path=$4
  shift 4
  local creds=()
  case "$id" in
    none) ;;
    idevid | client | rogue) creds=(-c "$PKI/$id.crt" -j "$PKI/$id.key") ;;
    *) creds=(-c "$id.crt" -j "$id.key") ;;
  esac
  it_coap "$client" "${creds[@]}" -C "$PKI/ca.crt" -m "$method" "$@" \
    "coaps://${EST_HOST:-127.0.0.1}:$PORT$path"
}

# est_csr KEY OUT CN [template lines...]: a DER PKCS#10 CSR for KEY (made
# if missing, EC P-256) with subject CN and extra certtool template lines.
est_csr() {
  local key=$1 out=$2 cn=$3
  shift 3
  [ -f "$key" ] || certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
    --outfile "$key" 2>/dev/null
  {
    echo "cn = \"$cn\""
    for l in "$@"; do echo "$l"; done
  } >"$out.tmpl"
  certtool --generate-request --load-privkey "$key" --template "$out.tmpl" \
    --outder --outfile "$out" 2>/dev/null || it_fail "certtool could not make $out"
}

# est_p7_to_pem P7 OUT: the certificates in a DER PKCS#7 as PEM (certtool).
est_p7_to_pem() {
  certtool --p7-info --inder --infile "$1" 2>/dev/null |
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$2"
  grep -q "BEGIN CERTIFICATE" "$2" || it_fail "no certificate in PKCS#7 $1"
}

# est_der_to_pem DER OUT: one DER certificate as PEM.
est_der_to_pem() {
  certtool -i --inder --infile "$1" 2>/dev/null |
    sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"$2"
  grep -q "BEGIN CERTIFICATE" "$2" || it_fail "$1 is not a DER certificate"
}

# est_verify CERT_PEM CA_PEM: the certificate chains to CA, checked by certtool.
est_verify() {
  certtool --verify --load-ca-certificate "$2" --infile "$1" >"$T/verify.out" 2>&1 ||
    it_fail "certtool --verify failed for $1: $(tail -3 "$T/verify.out")"
}

# est_pubkey FILE [--inder]: the SubjectPublicKeyInfo (PEM) of a cert, key or CSR.
est_cert_pubkey() { certtool --pubkey-info --load-certificate "$1" 2>/dev/null | sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p'; }
est_key_pubkey() { certtool --pubkey-info --load-privkey "$1" 2>/dev/null | sed -n '/BEGIN PUBLIC KEY/,/END PUBLIC KEY/p'; }

# it_expect_diag: the last error response carried a UTF-8 diagnostic
# payload (docs/decisions.md §4); coap-client prints it after the code on stderr.
it_expect_diag() {
  grep -Eq "^${IT_CODE//./\\.} .+" "$IT_STDERR" ||
    it_fail "$IT_CODE without a diagnostic payload: $(cat "$IT_STDERR")"
}

# est_expect_separate WHAT: the last est_req (run with -v 7) was a separate
# response (RFC 7252 §5.2.2): the POST, an empty ACK, the 2.04 as a CON,
# and the client's ACK of it.
est_expect_separate() {
  local trace want
  trace=$(grep -E '^v:1 ' "$T/coap-$IT_COAP_N.all" | sed -E 's/ \{[^}]*\}.*//; s/ i:[0-9a-f]+//')
  want=$(printf '%s\n' 'v:1 t:CON c:POST' 'v:1 t:ACK c:0.00' 'v:1 t:CON c:2.04' 'v:1 t:ACK c:0.00')
  [ "$trace" = "$want" ] || it_fail "$1 is not POST, empty ACK, CON 2.04, ACK: $trace"
}
