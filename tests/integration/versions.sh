#!/usr/bin/env bash
# Every tool answers -V and --version alike, with the project version
# (issue 12: the flags used to differ between tools).
. "$(dirname "$0")/lib.sh"
it_init versions
want=$(sed -nE 's/^project\(est-coaps VERSION ([0-9.]+).*/\1/p' "$(dirname "$0")/../../CMakeLists.txt")
[ -n "$want" ] || it_fail "no project version in CMakeLists.txt"
for b in "$COAPD" "$ESTCTL" "$EST_ENROLL" "$EST_BENCH"; do
  [ -x "$b" ] || it_fail "not built: $b"
  short=$("$b" -V 2>&1) || it_fail "$b -V: exit $?: $short"
  long=$("$b" --version 2>&1) || it_fail "$b --version: exit $?: $long"
  [ "$short" = "$long" ] || it_fail "$b: -V says '$short', --version says '$long'"
  case "$short" in *" $want"*) ;; *) it_fail "$b: '$short' lacks version $want" ;; esac
  echo "$(basename "$b"): $short"
done
it_pass
