#!/usr/bin/env bash
# Builds the page into dist/ with trunk (release profile), using the wasm32-capable toolchain
# that scripts/setup.sh found or made. Extra arguments go to trunk (e.g. `serve`).
set -euo pipefail
# shellcheck source=scripts/wasm-env.sh
. "$(dirname "$0")/wasm-env.sh"
# Trunk.toml sets offline = true, which makes cargo offline too: fetch the crates first
cargo fetch -q
if [ $# -eq 0 ]; then
  echo "==> page: trunk build --release (dist/)"
  trunk build --release
else
  trunk "$@"
fi
