#!/usr/bin/env bash
# clippy over the page's crates for the target they ship on (wasm32), warnings as errors.
# `make lint` also checks them natively with the rest of the workspace; this run sees the
# wasm32-only code paths (cfg(target_arch = "wasm32"), web-sys bindings) as the browser gets them.
# On machines without rustup's wasm32 target, the toolchain is Debian's rustc-web with its
# rust-web-clippy (scripts/setup.sh, section 1).
set -euo pipefail
# shellcheck source=scripts/wasm-env.sh
. "$(dirname "$0")/wasm-env.sh"
echo "==> lint: clippy for wasm32-unknown-unknown (the page's crates)"
cargo clippy -p hubbub-frontend -p hubbub-page-model -p hubbub-shared \
  --target wasm32-unknown-unknown --all-targets -- -D warnings
