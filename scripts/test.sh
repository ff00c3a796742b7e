#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent, so CI on a fresh machine gets every
# dependency), unit tests, then the privileged integration tests against this kernel,
# real cgroups and real QEMU guests (the VM lab, scripts/lab.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

./scripts/setup.sh

echo "== unit tests"
# Release profile, like the integration tests, so the dependencies build once.
cargo test --release --workspace --exclude interference-tests

echo "== integration tests (root, eBPF, cgroups)"
# One at a time: they oversubscribe the CPUs on purpose and measure latency.
cargo test --release -p interference-tests -- --test-threads=1
