#!/usr/bin/env bash
# DISC-1..5 (RFC 9148 §4.1, docs/decisions.md §2): discovery lists the short
# paths with exact rt and ct, and att/skg/skc only when enabled.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/est_lib.sh"
it_init est_discovery

# Keygen off, no csr_attrs: only crts, sen, sren.
est_start
for client in gnutls openssl; do
  est_req $client idevid get '/.well-known/core?rt=ace.est*'
  it_expect_code 2.05
  body=$(cat "$IT_PAYLOAD_FILE")
  want='</est/crts>;rt="ace.est.crts";ct="281 287",</est/sen>;rt="ace.est.sen";ct="281 287",</est/sren>;rt="ace.est.sren";ct="281 287"'
  [ "$body" = "$want" ] || it_fail "$client discovery: got '$body', want '$want'"
  echo "$IT_OPTS" | grep -Eq 'Content-Format:(40|application\/link-format)' || it_fail "discovery CF is not 40: $IT_OPTS"
done
# A single rt filter.
est_req gnutls idevid get '/.well-known/core?rt=ace.est.sen'
[ "$(cat "$IT_PAYLOAD_FILE")" = '</est/sen>;rt="ace.est.sen";ct="281 287"' ] ||
  it_fail "rt=ace.est.sen: $(cat "$IT_PAYLOAD_FILE")"
# Disabled functions are not served at all.
for fn in skg skc att; do
  est_req gnutls idevid get "/est/$fn"
  it_expect_code 4.04
  it_expect_diag
done
est_stop

# Everything on, a custom root and a label.
est_start keygen\ on csr_attrs\ "$EST_TEST_DATA/csrattrs.der" root\ /e labels\ ca2
est_req openssl idevid get '/.well-known/core?rt=ace.est*'
it_expect_code 2.05
body=$(cat "$IT_PAYLOAD_FILE")
for l in '</e/crts>;rt="ace.est.crts";ct="281 287"' '</e/sen>;rt="ace.est.sen";ct="281 287"' \
  '</e/sren>;rt="ace.est.sren";ct="281 287"' '</e/att>;rt="ace.est.att";ct=285' \
  '</e/skg>;rt="ace.est.skg";ct=62' '</e/skc>;rt="ace.est.skc";ct=62' \
  '</e/ca2/crts>;rt="ace.est.crts";ct="281 287"'; do
  case ",$body," in *",$l,"*) ;; *) it_fail "discovery lacks $l: $body" ;; esac
done
# The first link of each rt is the unlabelled one.
first=$(echo "$body" | tr ',' '\n' | grep 'ace.est.crts' | head -1)
[ "$first" = '</e/crts>;rt="ace.est.crts";ct="281 287"' ] || it_fail "first crts link is $first"
# /.well-known/est is not advertised under the rt filter (docs/decisions.md §2).
case "$body" in *well-known/est*) it_fail "discovery lists /.well-known/est: $body" ;; esac
est_stop
it_pass
