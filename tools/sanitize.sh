#!/usr/bin/env bash
# Builds with clang-14 under AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/ (-O1,
# line tables), the libFuzzer targets in the same build, and runs the tests there, then each
# fuzz target for RUNNEL_FUZZ_SECONDS (default 20) from its checked-in seed corpus.
#   tools/sanitize.sh        # CI (via tools/test.sh): the common, storage, broker, security and runnelctl
#                            # suites, every crash test, then the fuzz targets
#   tools/sanitize.sh all    # every suite (adds worker, scenario and bench: 10 more minutes)
#   tools/sanitize.sh fuzz   # only the fuzz targets; RUNNEL_FUZZ_SECONDS=600 for a long run
#   tools/sanitize.sh tsan   # ThreadSanitizer instead (gcc, build-tsan/): storage, broker, security
# New fuzz inputs go to build-asan/tests/fuzz/found/<target>/; a crash leaves crash-* files in
# the working directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
runnel_install_deps

if [[ "${1:-}" == tsan ]]; then
  # ThreadSanitizer (gcc, build-tsan/): the storage, broker and security suites against a TSan
  # runneld. The DataDirInspector case forks a child that opens a store, and TSan deadlocks in
  # such a child, so it is left out. Not part of CI (about 6 minutes more).
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNNEL_SANITIZE=thread
  cmake --build build-tsan -j2 --target storage_test broker_test security_test runneld
  export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 ${TSAN_OPTIONS:-}"
  build-tsan/tests/storage_test -tce='DataDirInspector*'
  build-tsan/tests/broker_test
  build-tsan/tests/security_test
  exit 0
fi

build="${ASAN_BUILD_DIR:-build-asan}"
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
  -DRUNNEL_SANITIZE=address,undefined -DRUNNEL_FUZZ=ON -DRUNNEL_WERROR=ON \
  -DRUNNEL_FUZZ_SECONDS="${RUNNEL_FUZZ_SECONDS:-20}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
ci_tests=(common_test storage_test storage_crash_test groups_crash_test storage_powercut_test
          broker_test broker_crash_test runnelctl_test security_test kafka_codec_test
          kafka_coordinator_test)
# The Kafka client and wire suites are Python scripts driving the ASan runneld (built for
# broker_test). The SASL/TLS suite runs in the gcc pass only: most of its two minutes are
# clients waiting out refusals.
ci_scripts=(kafka_clients_test kafka_wire_test)
case "${1:-ci}" in
  fuzz)
    cmake --build "$build" -j2 --target fuzz
    ;;
  all)
    cmake --build "$build" -j2
    # shellcheck disable=SC2086
    ctest --test-dir "$build" --output-on-failure -j2 -LE fuzz ${CTEST_ARGS:-}
    ;;
  ci)
    cmake --build "$build" -j2 --target "${ci_tests[@]}" fuzz
    pattern="^($(IFS='|'; echo "${ci_tests[*]} ${ci_scripts[*]}" | tr ' ' '|')|broker_test_embedded)\$"
    # The crash tests take 25 rounds each here (the gcc pass runs the broker loop's 50): under
    # ASan a round costs about four times as much, and the README command must stay short.
    # shellcheck disable=SC2086
    RUNNEL_CRASH_ROUNDS="${RUNNEL_CRASH_ROUNDS:-25}" \
      ctest --test-dir "$build" --output-on-failure -j2 -R "$pattern" ${CTEST_ARGS:-}
    ;;
  *)
    echo "usage: tools/sanitize.sh [ci|all|fuzz|tsan]" >&2
    exit 2
    ;;
esac
# One at a time: each fuzzer uses a core, and the machine has two.
ctest --test-dir "$build" -L fuzz --output-on-failure
