#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent, so CI on a fresh machine gets every
# dependency), unit tests, the controller's tests on SQLite and PostgreSQL (a throwaway
# cluster that scripts/postgres.sh starts) and in network namespaces, then the
# privileged integration tests against this kernel, real cgroups and real QEMU guests
# (the VM lab, scripts/lab.sh), a bounded fuzzing run of every parser of untrusted
# input and a 10-minute soak of the agent (tests/tests/agent_soak.rs, beside the
# crash test).
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

phase "Debian packages (scripts/package.sh), for the install test below"
./scripts/package.sh || failed+=("packages")

phase "integration tests (root, eBPF, cgroups, QEMU, the packages: dpkg, systemd-analyze, promtool), the fuzz targets building beside them"
# The fuzz targets' quick build (unoptimised, AddressSanitizer on: about 4 minutes of
# both cores from nothing) runs at idle priority (SCHED_IDLE): it takes only the CPU
# time the tests leave, which is most of it while they wait on ticks, and a test's
# task that wakes up preempts it at once.
mkdir -p target
FUZZ_BUILD=quick FUZZ_STEP=build chrt --idle 0 ./scripts/fuzz.sh >target/fuzz-build.log 2>&1 &
fuzz_build=$!
# One at a time: they oversubscribe the CPUs on purpose and measure latency. The soak
# and the crash test run after them, side by side.
SOAK=an_agent_under_churn_stays_flat_and_bills_every_action_across_a_month_boundary
CRASH=killed_100_times_at_1s_ticks_and_2s_charge_segments_no_line_lost_or_doubled
cargo test --release --no-fail-fast -p interference-tests -- --include-ignored --test-threads=1 \
    --skip "$SOAK" --skip "$CRASH" || failed+=("integration tests")

phase "the soak (the agent for 10 minutes under VM churn) beside the crash test (100 SIGKILLs)"
# Neither measures speed: the soak asserts its agent's footprint flat and its books
# right on a busy host, the crash test that nothing is lost or doubled. The crash
# test's agent looks only at its own network namespace; the soak's lab VMs live in
# another. Side by side they take the soak's 10 minutes instead of 16.
test_binary() {
    cargo test --release -p interference-tests --test "$1" --no-run 2>&1 |
        sed -n "s|.*Executable tests/$1.rs (\(.*\))|\1|p"
}
soak_bin=$(test_binary agent_soak) || true
crash_bin=$(test_binary agent_crash) || true
(cd tests && "../$soak_bin" --include-ignored --exact "$SOAK") &
soak=$!
(cd tests && "../$crash_bin" --include-ignored --exact "$CRASH") || failed+=("crash test")
wait "$soak" || failed+=("soak")

phase "fuzzing every parser of untrusted input, 10 s a target, two at a time (scripts/fuzz.sh; longer runs: docs/hardening.md)"
# Every past crash in fuzz/regressions is replayed first.
if wait "$fuzz_build"; then
    FUZZ_BUILD=quick FUZZ_STEP=run FUZZ_JOBS=2 FUZZ_SECONDS=10 ./scripts/fuzz.sh || failed+=("fuzzing")
else
    tail -n 40 target/fuzz-build.log >&2
    failed+=("fuzz build")
fi
phase "done"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
