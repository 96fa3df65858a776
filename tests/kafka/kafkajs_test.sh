#!/usr/bin/env bash
# Installs KafkaJS 2.2.4 from npm (once, into $KAFKAJS_DIR) and runs kafkajs_test.js with it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${KAFKAJS_DIR:?set KAFKAJS_DIR}"
if [ ! -f "$dir/node_modules/kafkajs/package.json" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund kafkajs@2.2.4 >"$dir/npm.log" 2>&1 ||
    { cat "$dir/npm.log"; exit 1; }
fi
NODE_PATH="$dir/node_modules" exec node "$here/kafkajs_test.js"
