#!/usr/bin/env bash
# Builds everything with clang-14 under AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan/, with the libFuzzer targets in the same build, and runs the whole test suite there,
# then each fuzz target for RUNNEL_FUZZ_SECONDS (default 20) from its checked-in seed corpus.
#   tools/sanitize.sh                          # what tools/test.sh (README's test command) runs
#   tools/sanitize.sh fuzz                     # only the fuzz targets
#   RUNNEL_FUZZ_SECONDS=600 tools/sanitize.sh fuzz   # a long fuzz run
# New fuzz inputs go to build-asan/tests/fuzz/found/<target>/; a crash leaves crash-* files in
# the working directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
runnel_install_deps

build="${ASAN_BUILD_DIR:-build-asan}"
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRUNNEL_SANITIZE=address,undefined -DRUNNEL_FUZZ=ON -DRUNNEL_WERROR=ON \
  -DRUNNEL_FUZZ_SECONDS="${RUNNEL_FUZZ_SECONDS:-20}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
if [ "${1:-}" = "fuzz" ]; then
  cmake --build "$build" -j2 --target fuzz
else
  cmake --build "$build" -j2
  # shellcheck disable=SC2086
  ctest --test-dir "$build" --output-on-failure -j2 -LE fuzz ${CTEST_ARGS:-}
fi
# One at a time: each fuzzer uses a core, and the machine has two.
ctest --test-dir "$build" -L fuzz --output-on-failure
