# The one entry point for building, running, testing, benchmarking and packaging
# ark-lattice. `make run` starts a node on ./ark-lattice-data; `make test` runs the whole
# suite; `make dist` writes the static release binaries and their SHA-256 sums to dist/.

CARGO ?= cargo
DATA_DIR ?= ark-lattice-data
SHARED_DATA ?= ../shared/data

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

# Release targets built natively, without Docker; their linkers are set in
# .cargo/config.toml. Add others (already set up for cargo) on the command line.
DIST_TARGETS ?= x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf
DIST_DIR ?= dist

# Cross-rs version documented in cross/Cross.toml.
CROSS_VERSION := 0.2.5

# Installation layout. The unit is rewritten to point at $(BINDIR); systemd also reads
# units from /usr/local/lib/systemd/system, so the default PREFIX needs nothing else.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
BIN ?= target/release/ark-lattice

# The target whose size `make size` reports, and its budgets (bytes): 3.3 MB as built
# by default (with TLS), 2.5 MB without the `tls` feature.
SIZE_TARGET ?= aarch64-unknown-linux-musl
SIZE_BUDGET ?= 3300000
SIZE_BUDGET_NO_TLS ?= 2500000

.PHONY: build run test check fmt clippy bench soak size dist cross install uninstall fuzz

build:
	$(CARGO) build --release

# A node on the default state dir, with ARK's demo data imported on first run
# (re-importing changes nothing). Ctrl-C stops it gracefully.
run: build
	@if [ -f $(SHARED_DATA)/ark-lattice-nodes.json ]; then \
		./target/release/ark-lattice --data-dir $(DATA_DIR) import $(SHARED_DATA)/ark-lattice-nodes.json; \
	else echo "demo data not found at $(SHARED_DATA); starting with the lattice as it is"; fi
	./target/release/ark-lattice --data-dir $(DATA_DIR) serve

# Benches are not run here (they take minutes and measure release builds); clippy
# --all-targets still builds them. The randomized convergence test runs its short
# version (300 operations) here; `make soak` runs it at length.
test:
	$(CARGO) test --lib --bins --tests

# The randomized convergence test at length: five nodes, SOAK_OPS random operations
# with kills and partitions, one clock SOAK_CLOCK_AHEAD_MS ahead; prints its seed and
# table. Replay a run with ARK_SOAK_SEED=<seed> make soak (and the same SOAK_* values).
SOAK_OPS ?= 3000
SOAK_EPOCH_OPS ?= 150
SOAK_CLOCK_AHEAD_MS ?= 180000
soak:
	ARK_SOAK_OPS=$(SOAK_OPS) ARK_SOAK_EPOCH_OPS=$(SOAK_EPOCH_OPS) \
		ARK_SOAK_CLOCK_AHEAD_MS=$(SOAK_CLOCK_AHEAD_MS) \
		$(CARGO) test --test it soak:: -- --nocapture

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(MAKE) --no-print-directory test

# Each bench prints a table and the command that reproduces it: import throughput,
# a 10k-node sync between two nodes (time, wire bytes, memory), disk wear per sync
# (with 30 s of idle auto-sync), delta sync on the wire, and a node under attack
# (hostile: legit latency, RSS and threads per attack), and issue 13's figures (perf:
# /federation/info against /health, ARK's routes, import of 100k records, first copy,
# the steady state after it), and a hub with 1,000 spokes and a three-hub mesh (hub:
# propagation, RSS, capacity; Scenario 2 at the defaults). Cargo builds
# the release binary the benches start.
bench:
	$(CARGO) bench --bench '*'
	$(MAKE) --no-print-directory size

# Every cargo-fuzz target (fuzz/, a workspace of its own built with nightly) for
# FUZZ_SECONDS each, one after another, on corpora seeded from SHARED_DATA; prints runs,
# coverage and crashes per target and fails if any crashed (inputs in fuzz/artifacts/).
# FUZZ_TARGETS picks some, e.g. FUZZ_TARGETS="timestamp routes".
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
fuzz:
	SHARED_DATA=$(SHARED_DATA) fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The size budgets: the static binary for the smallest machines as released (with
# TLS) and without TLS, and how many crates each is built from. The second build
# replaces the first's binary in target/; `make dist` builds it again.
size:
	@rows=""; \
	for variant in tls no-tls; do \
		if [ $$variant = tls ]; then flags=""; budget=$(SIZE_BUDGET); \
		else flags="--no-default-features"; budget=$(SIZE_BUDGET_NO_TLS); fi; \
		$(CARGO) build --release --locked --target $(SIZE_TARGET) $$flags || exit 1; \
		size=$$(stat -c %s target/$(SIZE_TARGET)/release/ark-lattice); \
		crates=$$($(CARGO) tree --locked --target $(SIZE_TARGET) $$flags --edges normal,build --prefix none \
			| sed 's/ (\*)$$//; s/ (proc-macro)$$//' | sort -u | wc -l); \
		verdict=within; if [ $$size -gt $$budget ]; then verdict=OVER; fi; \
		rows="$$rows$$(printf '%-28s %-8s %-14s %-16s %s' $(SIZE_TARGET) $$variant $$size "$$verdict $$budget" $$crates)\n"; \
	done; \
	printf '%-28s %-8s %-14s %-16s %s\n' target build "binary bytes" budget "dependency crates (incl. ark-lattice)"; \
	printf "$$rows"; \
	echo "reproduce: make size SIZE_TARGET=$(SIZE_TARGET)"

# One cargo invocation for all targets, so build scripts and proc macros are built for
# the host once. A binary with a program interpreter (PT_INTERP) is dynamic and fails.
dist:
	$(CARGO) build --release --locked $(foreach t,$(DIST_TARGETS),--target $(t))
	rm -rf $(DIST_DIR)
	mkdir -p $(DIST_DIR)
	@for t in $(DIST_TARGETS); do \
		out=$(DIST_DIR)/ark-lattice-$(VERSION)-$$t; \
		cp target/$$t/release/ark-lattice $$out || exit 1; \
		if readelf --program-headers $$out | grep -q INTERP; then \
			echo "$$out is dynamically linked" >&2; exit 1; \
		fi; \
		echo "$$out: $$(stat -c %s $$out) bytes"; \
	done
	cd $(DIST_DIR) && sha256sum ark-lattice-* > SHA256SUMS
	@cat $(DIST_DIR)/SHA256SUMS

# A container build with cross-rs (needs Docker or Podman), added to dist/.
cross:
	@if [ -z "$(TARGET)" ]; then \
		echo "usage: make cross TARGET=<triple>, e.g. TARGET=arm-unknown-linux-musleabihf (see cross/Cross.toml)" >&2; \
		exit 2; \
	fi
	@if ! command -v cross >/dev/null 2>&1; then \
		echo "cross is not installed; it needs Docker or Podman, and is installed with" >&2; \
		echo "    cargo install cross --version $(CROSS_VERSION) --locked" >&2; \
		echo "(without Docker, 'make dist' builds the x86_64, aarch64 and armv7 binaries natively)" >&2; \
		exit 1; \
	fi
	CROSS_CONFIG=cross/Cross.toml cross build --release --locked --target $(TARGET)
	mkdir -p $(DIST_DIR)
	cp target/$(TARGET)/release/ark-lattice $(DIST_DIR)/ark-lattice-$(VERSION)-$(TARGET)
	cd $(DIST_DIR) && sha256sum ark-lattice-* > SHA256SUMS

# Installs a built binary (BIN, the host's release build unless told, e.g.
# BIN=dist/ark-lattice-$(VERSION)-aarch64-unknown-linux-musl DESTDIR=/mnt/pi-root), the
# systemd unit and, unless one exists already, /etc/default/ark-lattice.
ifeq ($(BIN),target/release/ark-lattice)
install: build
endif
install:
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/default
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/ark-lattice
	sed 's|/usr/local/bin/ark-lattice|$(BINDIR)/ark-lattice|' systemd/ark-lattice.service \
		> $(DESTDIR)$(UNITDIR)/ark-lattice.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/ark-lattice.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice ]; then \
		echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice (example: systemd/ark-lattice.default)"; \
	else \
		install -m 0644 systemd/ark-lattice.default $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice; \
	fi
	@echo "installed; then: systemctl daemon-reload && systemctl enable --now ark-lattice"

# Leaves /etc/default/ark-lattice when it was edited, and the store in
# /var/lib/private/ark-lattice always.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/ark-lattice $(DESTDIR)$(UNITDIR)/ark-lattice.service
	@if cmp -s systemd/ark-lattice.default $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice; then \
		rm -f $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice; \
	elif [ -e $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice ]; then \
		echo "kept the edited $(DESTDIR)$(SYSCONFDIR)/default/ark-lattice"; \
	fi
