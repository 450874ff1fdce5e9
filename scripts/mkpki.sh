#!/usr/bin/env bash
# Make a demo/test PKI with certtool (EC P-256 everywhere) in DIR:
#   ca.crt/key          the EST CA (issues LDevIDs)            "CN=est-coaps Test CA"
#   server.crt/key      the coapd DTLS server cert (localhost, 127.0.0.1, ::1)
#   mfr-ca.crt/key      a manufacturer CA (issues IDevIDs)
#   idevid.crt/key      a device's manufacturer certificate   "CN=idevid-0001,serialNumber=0001"
#   client.crt/key      an LDevID issued by the EST CA        "CN=ldevid-0001"
#   ra.crt/key          a registration authority of the EST CA (id-kp-cmcRA,
#                       RFC 7030 §3.7) "CN=registrar-0001": a registrar's
#                       upstream_cert
#   rogue-ca.crt/key, rogue.crt/key   a CA and client nobody trusts
#   trust.pem           ca.crt + mfr-ca.crt: what coapd's dtls_ca accepts
# Usage: scripts/mkpki.sh DIR [CA_NAME]
#        scripts/mkpki.sh --hsm DIR   move DIR/ca.key into a SoftHSM2 token
#   (docs/decisions.md §20): DIR/hsm/softhsm2.conf and its tokens, token
#   "est-ca", object "ca"; the PIN in DIR/ca.pin (0600); ca.key is removed.
#   coapd then needs SOFTHSM2_CONF=DIR/hsm/softhsm2.conf and the two lines
#   it prints.
set -euo pipefail
if [ "${1:-}" = --hsm ]; then
  dir=$(cd "${2:?usage: mkpki.sh --hsm DIR}" && pwd)
  [ -f "$dir/ca.key" ] || { echo "mkpki: no $dir/ca.key to move into a token" >&2; exit 1; }
  [ ! -e "$dir/hsm" ] || { echo "mkpki: $dir/hsm exists already" >&2; exit 1; }
  command -v softhsm2-util >/dev/null || { echo "mkpki: needs softhsm2 (apt-get install softhsm2)" >&2; exit 1; }
  mkdir -p "$dir/hsm/tokens"
  chmod 700 "$dir/hsm" "$dir/hsm/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
    "$dir/hsm/tokens" >"$dir/hsm/softhsm2.conf"
  export SOFTHSM2_CONF=$dir/hsm/softhsm2.conf
  umask 077
  pin=$(od -An -N6 -tu1 /dev/urandom | tr -d ' \n' | cut -c1-12)
  so=$(od -An -N6 -tu1 /dev/urandom | tr -d ' \n' | cut -c1-12)
  printf '%s\n' "$pin" >"$dir/ca.pin"
  softhsm2-util --init-token --free --label est-ca --pin "$pin" --so-pin "$so" >/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$dir/ca.key" -out "$dir/hsm/ca.p8"
  softhsm2-util --import "$dir/hsm/ca.p8" --token est-ca --label ca --id 01 --pin "$pin" >/dev/null
  shred -u "$dir/hsm/ca.p8" "$dir/ca.key" 2>/dev/null || rm -f "$dir/hsm/ca.p8" "$dir/ca.key"
  echo "mkpki: the CA key is now only on token est-ca ($SOFTHSM2_CONF); for coapd.conf:"
  echo "plugin_opt_ca_key pkcs11:token=est-ca;object=ca;type=private"
  echo "plugin_opt_ca_key_pin_file $dir/ca.pin"
  exit 0
fi
dir=${1:?usage: mkpki.sh DIR [CA_NAME]}
ca_name=${2:-est-coaps Test CA}
mkdir -p "$dir"
cd "$dir"

key() { certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$1" 2>/dev/null; }

ca() { # name file cn
  key "$1.key"
  cat >"$1.tmpl" <<T
cn = "$2"
organization = "est-coaps"
serial = $(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | sed 's/^./1/; s/^/0x/')
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
T
  certtool --generate-self-signed --load-privkey "$1.key" --template "$1.tmpl" \
    --outfile "$1.crt" 2>/dev/null
}

leaf() { # file issuer cn extra-template-lines
  key "$1.key"
  printf 'cn = "%s"\norganization = "est-coaps"\nexpiration_days = 730\nsigning_key\n%b' \
    "$3" "$4" >"$1.tmpl"
  certtool --generate-certificate --load-privkey "$1.key" --load-ca-certificate "$2.crt" \
    --load-ca-privkey "$2.key" --template "$1.tmpl" --outfile "$1.crt" 2>/dev/null
}

ca ca "$ca_name"
ca mfr-ca "Test Manufacturer CA"
ca rogue-ca "Rogue CA"
leaf server ca localhost 'dns_name = "localhost"\nip_address = "127.0.0.1"\nip_address = "::1"\ntls_www_server\n'
leaf idevid mfr-ca idevid-0001 'dn_oid = "2.5.4.5 0001"\ntls_www_client\n'
leaf client ca ldevid-0001 'tls_www_client\n'
leaf rogue rogue-ca rogue-0001 'tls_www_client\n'
leaf ra ca registrar-0001 'tls_www_client\nkey_purpose_oid = 1.3.6.1.5.5.7.3.28\n'
cat ca.crt mfr-ca.crt >trust.pem
rm -f ./*.tmpl
chmod 600 ./*.key
