#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan + UBSan, in build-fuzz/) and runs each one for
# RUNNEL_FUZZ_SECONDS (default 20) from its checked-in seed corpus. New inputs go to
# build-fuzz/tests/fuzz/found/<target>/; a crash leaves crash-* files in the working directory.
#   tools/fuzz.sh                          # the short run CI does
#   RUNNEL_FUZZ_SECONDS=600 tools/fuzz.sh  # a long run
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
runnel_install_deps

build="${FUZZ_BUILD_DIR:-build-fuzz}"
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DRUNNEL_FUZZ=ON -DRUNNEL_SANITIZE=address,undefined -DRUNNEL_WERROR=ON \
  -DRUNNEL_BUILD_TESTS=OFF -DRUNNEL_BUILD_BENCH=OFF -DRUNNEL_BUILD_EXAMPLES=OFF \
  -DRUNNEL_FUZZ_SECONDS="${RUNNEL_FUZZ_SECONDS:-20}"
cmake --build "$build" -j2 --target fuzz
# One at a time: each fuzzer uses a core, and the machine has two.
ctest --test-dir "$build" -L fuzz --output-on-failure
