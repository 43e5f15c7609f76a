#!/usr/bin/env bash
# Builds the page into dist/ with trunk (release profile), using the wasm32-capable toolchain
# that scripts/setup.sh found or made. Extra arguments go to trunk (e.g. `serve`).
set -euo pipefail
# shellcheck source=scripts/wasm-env.sh
. "$(dirname "$0")/wasm-env.sh"
# The page's release build also compiles the standard library for it, with panics that abort
# at once (no panic messages, locations or formatting machinery in the page) and without the
# code of `{:?}` formatting (the page shows none). Measured with scripts/page-weight.sh on
# 2026-12-02: the two formatting flags alone took the page from 169.3 to 165.9 KB gzipped; with
# the std built for it as well, the page with the search view added is 161.8 KB. These are unstable flags of a stable
# compiler (RUSTC_BOOTSTRAP, as scripts/setup.sh uses to build the wasm32 std itself), so they
# are used only where the toolchain has the std sources (Debian's rust-web-src; on a laptop,
# `rustup component add rust-src`); elsewhere the page builds as before, a little heavier.
# A panic in the page then stops it with a WebAssembly `unreachable` in the console.
if [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ]; then
  export RUSTC_BOOTSTRAP=1 CARGO_UNSTABLE_BUILD_STD=std,panic_abort
  export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-Zfmt-debug=none -Zlocation-detail=none -Zunstable-options -Cpanic=immediate-abort"
else
  echo "==> page: no std sources in $(rustc --print sysroot): building with the prebuilt std (heavier)"
fi
# Trunk.toml sets offline = true, which makes cargo offline too: fetch the crates first
cargo fetch -q
if [ $# -eq 0 ]; then
  echo "==> page: trunk build --release (dist/)"
  trunk build --release
else
  trunk "$@"
fi
