#!/usr/bin/env bash
# Installs what Runnel needs (Debian 12 packages, when missing), then configures, builds and runs
# every test suite from scratch. This is README's test command and what CI runs.
#   BUILD_DIR=...          build directory (default: build)
#   RUNNEL_CMAKE_ARGS=...  extra CMake arguments, e.g. -DRUNNEL_SANITIZE=address,undefined
#   CTEST_ARGS=...         extra ctest arguments, e.g. -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
runnel_install_deps

build="${BUILD_DIR:-build}"
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNNEL_WERROR=ON ${RUNNEL_CMAKE_ARGS:-}
cmake --build "$build" -j2
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j2 ${CTEST_ARGS:-}
# Then everything again under ASan + UBSan (clang-14), with the fuzz targets for 20 s each
# (RUNNEL_SKIP_SANITIZE=1 skips this part).
if [ -z "${RUNNEL_SKIP_SANITIZE:-}" ]; then
  tools/sanitize.sh
fi
