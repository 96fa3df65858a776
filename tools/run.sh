#!/usr/bin/env bash
# Installs what Runnel needs (Debian 12 packages, when missing), builds runneld and starts it in
# the foreground with its embedded defaults: data in ./runnel-data, native protocol on
# 127.0.0.1:7070, HTTP (/health, /metrics, /api/v1/stats) on 127.0.0.1:7071. Extra arguments go
# to runneld (try --help). Stop it with Ctrl-C: it finishes requests in flight and closes cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/deps.sh
runnel_install_deps
build="${BUILD_DIR:-build-run}"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRUNNEL_BUILD_TESTS=OFF \
  -DRUNNEL_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target runneld runnelctl runnel-worker example-producer example-consumer
exec "$build/broker/runneld" "$@"
