#!/usr/bin/env bash
# Run every test: unit, fuzz-corpus replay and integration, once in a normal
# build and once under AddressSanitizer + UndefinedBehaviorSanitizer.
# Usage: scripts/test.sh            (installs what it needs; run as root)
#        EST_TEST_QUICK=1 scripts/test.sh   (skip the sanitizer pass)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/deps.sh

jobs=$(nproc)
rc=0
scripts/build.sh build
ctest --test-dir build --output-on-failure -j "$jobs" || rc=1

if [ -z "${EST_TEST_QUICK:-}" ]; then
  scripts/build.sh build-asan -DEST_SANITIZE=ON
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" || rc=1
fi
exit $rc
