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
set -euo pipefail
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
