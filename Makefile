# paygate: the verbs a newcomer needs. `make dev` and `make test` set up
# everything they need on a fresh machine (Rust, Python, Node and Java given).
.DEFAULT_GOAL := help
SHELL := /bin/bash
STACK := infra/local/stack.sh

.PHONY: help dev test api-test bench lint build-arm64 up down status env install clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

dev: ## the whole system locally: stack, sandbox, every function, the API on :3000 (Ctrl-C stops)
	@infra/local/dev.sh

test: ## every test: cargo's against the local stack, then make dev end to end (make api-test)
	@mkdir -p .local; set -o pipefail; \
	$(STACK) run cargo test --workspace --locked 2>&1 | tee .local/test.log; status=$$?; \
	awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' .local/test.log; \
	exit $$status
	@$(MAKE) --no-print-directory api-test

api-test: ## make dev end to end: every provider via the sandbox CLI, the payer pages and the console in Chromium, then schemathesis
	@infra/local/api-test.sh

bench: ## cold and warm timings per function, AWS calls per flow, the cost of a million deposits, the whole system under a storm (slow; not in make test)
	@infra/bench/bench.sh

lint: ## rustfmt and clippy, warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

build-arm64: ## release build of every function for Lambda arm64 (target/lambda/<function>/bootstrap; not in CI)
	@$(STACK) install
	rustup target add aarch64-unknown-linux-gnu
	PATH="$(CURDIR)/.local/venv/bin:$$PATH" cargo lambda build --release --arm64 --locked \
		  $(addprefix -p ,$(notdir $(patsubst %/Cargo.toml,%,$(wildcard functions/*/Cargo.toml))))
	@ls -l $${CARGO_TARGET_DIR:-target}/lambda/*/bootstrap

up: ## start the local stack
	@$(STACK) up

down: ## stop the local stack
	@$(STACK) down

status: ## what runs where
	@$(STACK) status

env: ## the environment variables that reach the local stack
	@$(STACK) env

install: ## install the local stack's pinned tools into .local/
	@$(STACK) install

clean: down ## stop the stack and remove build output and installed tools
	cargo clean
	rm -rf .local
