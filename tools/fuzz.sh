#!/usr/bin/env bash
# The libFuzzer targets alone (clang-14, ASan + UBSan, build-asan/), each for RUNNEL_FUZZ_SECONDS
# (default 20):
#   tools/fuzz.sh                          # the short run CI does (as part of tools/sanitize.sh)
#   RUNNEL_FUZZ_SECONDS=600 tools/fuzz.sh  # a long run
exec "$(dirname "$0")/sanitize.sh" fuzz
