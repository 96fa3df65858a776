#!/usr/bin/env bash
# Installs the Debian 12 packages Runnel builds with, when missing. Sourced by tools/test.sh and
# tools/run.sh; runs apt-get as root (or through sudo).
runnel_install_deps() {
  local packages=(cmake g++ ninja-build ccache pkg-config librocksdb-dev liblz4-dev libboost-dev
                  libcli11-dev libspdlog-dev doctest-dev libsqlite3-dev
                  libssl-dev libhiredis-dev librdkafka-dev redis-server clang-14 libclang-rt-14-dev
                  zlib1g-dev libsnappy-dev libzstd-dev python3
                  kcat python3-confluent-kafka python3-kafka)
  local missing=() p sudo=""
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # Node.js and npm run the KafkaJS test; machines of this kind usually have them already.
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" ||
    { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
}
