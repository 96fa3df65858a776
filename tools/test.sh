#!/usr/bin/env bash
# Installs what Runnel needs (Debian 12 packages, when missing), then configures, builds and runs
# every test suite from scratch. This is README's test command and what CI runs.
#   BUILD_DIR=...          build directory (default: build)
#   RUNNEL_CMAKE_ARGS=...  extra CMake arguments, e.g. -DRUNNEL_SANITIZE=address,undefined
#   CTEST_ARGS=...         extra ctest arguments, e.g. -L unit
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ ninja-build ccache pkg-config librocksdb-dev liblz4-dev libboost-dev
          libcli11-dev libspdlog-dev doctest-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" ||
    { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

build="${BUILD_DIR:-build}"
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNNEL_WERROR=ON ${RUNNEL_CMAKE_ARGS:-}
cmake --build "$build" -j2
# shellcheck disable=SC2086
ctest --test-dir "$build" --output-on-failure -j2 ${CTEST_ARGS:-}
