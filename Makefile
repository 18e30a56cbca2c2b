# The one entry point for building, running, testing and benchmarking ark-lattice.
# `make run` starts a node on ./ark-lattice-data; `make test` runs the whole suite.

CARGO ?= cargo
DATA_DIR ?= ark-lattice-data
SHARED_DATA ?= ../shared/data

.PHONY: build run test check fmt clippy bench

build:
	$(CARGO) build --release

run: build
	./target/release/ark-lattice --data-dir $(DATA_DIR) import $(SHARED_DATA)/ark-lattice-nodes.json
	./target/release/ark-lattice --data-dir $(DATA_DIR) stats

test:
	$(CARGO) test --all-targets

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

bench:
	$(CARGO) bench
