#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent, so CI on a fresh machine gets every
# dependency), unit tests, the controller's tests on SQLite and PostgreSQL (a throwaway
# cluster that scripts/postgres.sh starts) and in network namespaces, then the
# privileged integration tests against this kernel, real cgroups and real QEMU guests
# (the VM lab, scripts/lab.sh), a bounded fuzzing run of every parser of untrusted
# input and a 10-minute soak of the agent (tests/tests/agent_soak.rs).
#
# Tests that need root, PostgreSQL or QEMU are #[ignore = "needs ..."]: plain
# `cargo test` skips them visibly; here they run (--ignored / --include-ignored), and a
# missing prerequisite fails them, it never passes them.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Each phase says how long it took, so a slow CI run shows where its time went.
phase_start=$SECONDS
phase() {
    echo "== ($((SECONDS - phase_start)) s since the last phase, $((SECONDS / 60)) min in all) $*"
    phase_start=$SECONDS
}

phase "set-up"
./scripts/setup.sh

phase "static checks: format, lints, docs"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# A failing phase does not stop the next: one run shows every failure. The script
# fails at the end if any phase did.
failed=()

phase "unit tests, the controller's (PostgreSQL, crashes, replicas, network namespaces) and every #[ignore]d one (root, QEMU, promtool)"
# Release profile, like the integration tests, so the dependencies build once.
cargo test --release --no-fail-fast --workspace --exclude interference-tests -- --include-ignored \
    || failed+=("unit and controller tests")

phase "fuzzing every parser of untrusted input, 10 s a target (scripts/fuzz.sh; longer runs: docs/hardening.md)"
# The quick build (unoptimised, AddressSanitizer on) takes about 4 minutes from
# nothing; every past crash in fuzz/regressions is replayed first.
FUZZ_BUILD=quick FUZZ_SECONDS=10 ./scripts/fuzz.sh || failed+=("fuzzing")

phase "Debian packages (scripts/package.sh), for the install test below"
./scripts/package.sh || failed+=("packages")

phase "integration tests (root, eBPF, cgroups, QEMU, the packages: dpkg, systemd-analyze, promtool)"
# One at a time: they oversubscribe the CPUs on purpose and measure latency.
cargo test --release --no-fail-fast -p interference-tests -- --include-ignored --test-threads=1 \
    || failed+=("integration tests")
phase "done"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
