# The two commands a newcomer needs (README): `make run` and `make test`.
# Both install what is missing first (scripts/setup.sh), idempotently.
SHELL := bash
.DEFAULT_GOAL := run
.PHONY: run test lint bench setup page dev-server dev-page dist

## Build the page and start Hubbub on http://127.0.0.1:3000
run:
	@scripts/setup.sh run
	@scripts/build-page.sh
	cargo run --release -p hubbub-server --bin hubbub

## One binary with the page inside, and a systemd unit, in target/dist/ (README: Deploy)
dist:
	@scripts/setup.sh run
	@scripts/build-page.sh
	cargo build --release -p hubbub-server
	mkdir -p target/dist
	cp target/release/hubbub deploy/hubbub.service target/dist/
	@echo "target/dist/hubbub carries the page: copy it and hubbub.service to the server"

## Every test: lints, protocol, page model and hub (cargo test), the behaviour suites again
## against two hubs on real PostgreSQL and Redis, then the real-process ones: browser, Autobahn
test:
	@scripts/setup.sh test
	@$(MAKE) --no-print-directory lint
	@scripts/build-page.sh
	@scripts/page-weight.sh
	cargo test --workspace --exclude hubbub-frontend
	HUBBUB_TEST_HUBS=2 cargo test -p hubbub-server --test api -- chat:: history:: presence:: auth:: edits:: rooms:: search:: conversations::
	cargo test -p hubbub-server --test autobahn --test browser -- --ignored --nocapture

## Formatting and clippy over every crate, warnings as errors; the page's crates also on wasm32
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	@scripts/lint-page.sh

## Hubbub against gorilla's chat example and an axum+broadcast hub; table + bench/results/latest.json
bench:
	@scripts/setup.sh bench
	cargo build --release -p hubbub-server -p hubbub-bench
	target/release/hubbub-bench --out bench/results/latest.json all

## Development loop, two terminals: `make dev-server`, then `make dev-page` (http://127.0.0.1:8080)
dev-server:
	cargo run -p hubbub-server --bin hubbub -- --static-dir dist --allowed-origins http://127.0.0.1:8080

dev-page:
	@scripts/build-page.sh serve

setup:
	@scripts/setup.sh test

page:
	@scripts/build-page.sh
