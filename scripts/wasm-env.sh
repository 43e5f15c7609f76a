# Sourced by the page's scripts (build-page.sh, lint-page.sh): goes to the repository root and
# selects the wasm32-capable Rust toolchain that scripts/setup.sh found or made.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
[ -f target/toolchain.env ] || scripts/setup.sh run
# shellcheck source=/dev/null
. target/toolchain.env
if [ -n "${WASM_TOOLCHAIN:-}" ]; then export RUSTUP_TOOLCHAIN="$WASM_TOOLCHAIN"; fi
