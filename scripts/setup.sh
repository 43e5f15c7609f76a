#!/usr/bin/env bash
# Installs what `make run` and `make test` need, idempotently, one progress line per step.
#
#   scripts/setup.sh run    toolchain for building and serving the page
#   scripts/setup.sh test   the same, plus Chromium and chromedriver for the browser tests and
#                           PostgreSQL and Redis for the cluster tests (each test starts its own)
#   scripts/setup.sh bench  the peers for `make bench` (Go and gorilla's chat example), and
#                           PostgreSQL and Redis for its cluster scenario
#
# On a machine that already has everything this takes a few seconds. It writes
# target/toolchain.env, which the Makefile sources so that the frontend build uses whichever
# Rust toolchain has the wasm32 target (on machines where rustup cannot download the target,
# that is Debian's rustc-web with a wasm32 std built once, section 1 below).
set -euo pipefail

mode=${1:-run}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p target
envfile=target/toolchain.env

TRUNK_VERSION=0.21.14
WASM_TARGET=wasm32-unknown-unknown

step() { printf '==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# apt packages: installed only when one is missing, so a second run never touches apt.
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    step "apt: $* already installed"
    return
  fi
  step "apt: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# `make bench` needs no page: sections 1 and 2 are for run and test
if [ "$mode" != bench ]; then
# --- 1. a Rust toolchain that can build wasm32 -------------------------------------------
# Prefer the default toolchain when it already has the target (an ordinary laptop after
# `rustup target add`). rustup cannot download here, so otherwise use Debian's rustc-web
# (1.96) with a wasm32 std built once from its source, linked as the rustup toolchain `web`.
wasm_toolchain=""
if have rustup && timeout 20 rustup target list --installed 2>/dev/null | grep -qx "$WASM_TARGET"; then
  step "wasm32: default toolchain has $WASM_TARGET"
elif have rustc && [ -d "$(rustc --print sysroot)/lib/rustlib/$WASM_TARGET/lib" ] && ! have rustup; then
  step "wasm32: rustc has $WASM_TARGET"
else
  wasm_toolchain=web
  # rust-web-clippy: `make lint` runs clippy for wasm32 with this same toolchain
  apt_ensure rustc-web cargo-web rust-web-src lld-22 rust-web-clippy
  sysroot_lib=/usr/lib/rustlib/$WASM_TARGET/lib
  # libtest too: clippy --all-targets checks the page's test targets for wasm32
  if ls "$sysroot_lib"/libstd-*.rlib "$sysroot_lib"/libtest-*.rlib >/dev/null 2>&1; then
    step "wasm32: std for $WASM_TARGET present in /usr/lib/rustlib"
  else
    step "wasm32: building std for $WASM_TARGET from Debian's rust-web-src (about 2 minutes, once)"
    work=$(mktemp -d)
    mkdir -p "$work/src"
    cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "wasm-std-bootstrap"
version = "0.0.0"
edition = "2021"
[lib]
crate-type = ["cdylib"]
path = "src/lib.rs"
[profile.release]
panic = "abort"
TOML
    : > "$work/src/lib.rs"
    (cd "$work" && RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Cembed-bitcode=yes \
      RUSTC=/usr/bin/rustc /usr/bin/cargo build -q --release \
      -Zbuild-std=std,panic_abort,test --target "$WASM_TARGET")
    mkdir -p "$sysroot_lib"
    # -n: a machine set up before libtest was added keeps its std (same hashes) untouched
    cp -n "$work/target/$WASM_TARGET/release/deps/"*.rlib "$sysroot_lib/"
    rm -rf "$work"
  fi
  if rustup toolchain list | grep -q '^web'; then
    step "wasm32: rustup toolchain 'web' linked"
  else
    step "wasm32: linking /usr as rustup toolchain 'web'"
    rustup toolchain link web /usr
  fi
fi
echo "WASM_TOOLCHAIN=$wasm_toolchain" > "$envfile"

# --- 2. trunk and the wasm-bindgen CLI that matches Cargo.lock exactly ---------------------
# trunk downloads wasm-bindgen unless the one on PATH has exactly the locked version, and it
# cannot download here (Trunk.toml sets offline = true so it fails fast instead).
if have trunk && trunk --version | grep -q " $TRUNK_VERSION\$"; then
  step "trunk $TRUNK_VERSION present"
else
  step "trunk: cargo install trunk $TRUNK_VERSION (about 13 minutes, once)"
  cargo install -q trunk --version "$TRUNK_VERSION" --locked
fi

[ -f Cargo.lock ] || cargo generate-lockfile -q
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if have wasm-bindgen && [ "$(wasm-bindgen --version | awk '{print $2}')" = "$wb_version" ]; then
  step "wasm-bindgen-cli $wb_version present"
else
  # --locked fails for wasm-bindgen-cli here: its lock file wants a webpki-roots the registry
  # no longer serves (toolchain.md).
  step "wasm-bindgen-cli: cargo install wasm-bindgen-cli $wb_version (about 3 minutes, once)"
  cargo install -q wasm-bindgen-cli --version "$wb_version" --force
fi
fi

# --- 3. for tests only: the browser, PostgreSQL, and the Autobahn runner -------------------
KOSOKU_VERSION=0.1.0
AXE_VERSION=4.14.1
if [ "$mode" = test ]; then
  # the emoji font keeps screenshots of emoji readable
  apt_ensure chromium chromium-driver fonts-noto-color-emoji
  # the cluster tests run their own throwaway servers (server/tests/support/); the packages
  # start nothing here (no systemd)
  apt_ensure postgresql redis-server
  # the reverse-proxy test runs nginx with the configuration docs/operations.md prints
  apt_ensure nginx-light
  # the browser tests inject axe-core into every view and want zero accessibility violations
  axe=target/axe/node_modules/axe-core/axe.min.js
  if [ -f "$axe" ] && grep -q "axe v$AXE_VERSION" "$axe"; then
    step "axe-core $AXE_VERSION present ($axe)"
  else
    have npm || apt_ensure npm
    step "npm: installing axe-core@$AXE_VERSION into target/axe"
    mkdir -p target/axe
    npm install --silent --no-audit --no-fund --prefix target/axe "axe-core@$AXE_VERSION" >/dev/null
  fi
  venv=target/kosoku-venv
  # grep without -q below: -q stops reading early, pip dies of SIGPIPE, and pipefail would
  # then reinstall on every run
  if [ -x "$venv/bin/kosoku" ] && "$venv/bin/pip" show kosoku 2>/dev/null | grep -x "Version: $KOSOKU_VERSION" >/dev/null; then
    step "kosoku $KOSOKU_VERSION present (Autobahn test cases)"
  else
    step "kosoku: pip install kosoku==$KOSOKU_VERSION into $venv"
    python3 -m venv --help >/dev/null 2>&1 || apt_ensure python3-venv
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "kosoku==$KOSOKU_VERSION"
  fi
fi
# --- 4. for benchmarks only: the peers Hubbub is measured against ----------------------
# gorilla/websocket's examples/chat from Debian's source package (no module download).
if [ "$mode" = bench ]; then
  if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    step "apt: adding a bookworm deb-src entry (for gorilla's source)"
    cat > /etc/apt/sources.list.d/hubbub-bench-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
  fi
  apt_ensure golang-go golang-github-gorilla-websocket-dev dpkg-dev
  # the cluster scenario runs its own PostgreSQL and redis-server (as the tests do)
  apt_ensure postgresql redis-server
  peers=target/peers
  if [ -x "$peers/gorilla-chat" ]; then
    step "gorilla chat example present ($peers/gorilla-chat)"
  else
    step "gorilla: apt-get source golang-github-gorilla-websocket, go build examples/chat"
    rm -rf "$peers/src" && mkdir -p "$peers/src"
    (cd "$peers/src" && apt-get source -qq golang-github-gorilla-websocket >/dev/null)
    (cd "$peers"/src/golang-github-gorilla-websocket-*/examples/chat &&
      GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o "$root/$peers/gorilla-chat" .)
  fi
fi
step "setup done ($mode)"
