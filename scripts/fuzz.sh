#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (fuzz/, cargo-fuzz with libFuzzer and
# AddressSanitizer, built by the pinned nightly of interference-ebpf):
#
#   ./scripts/fuzz.sh                      # each target FUZZ_SECONDS (default 20) seconds
#   FUZZ_SECONDS=3600 ./scripts/fuzz.sh qmp  # one target for an hour
#   FUZZ_BUILD=quick FUZZ_SECONDS=10 ./scripts/fuzz.sh   # what ./scripts/test.sh runs
#
# FUZZ_BUILD=full (the default) builds optimised with AddressSanitizer, for long runs;
# FUZZ_BUILD=quick builds unoptimised (AddressSanitizer still on) into a target directory of
# its own, in about 3 minutes instead of 13 on 2 cores, for the bounded run of the
# test suite (a panic, an overflow or a hang is still a crash: debug assertions are on).
#
# Each target starts from its committed seeds (fuzz/seeds/<target>), the project's
# fixtures (configs, samples, model sidecars) and the corpus earlier runs grew
# (target/fuzz/corpus/<target>), and first replays every past crash kept in
# fuzz/regressions/<target> (each also has a named regression test). A crash fails
# the script and leaves its input in target/fuzz/artifacts/<target>.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"
TOOLCHAIN=$(sed -n 's/^channel = "\(.*\)"/\1/p' interference-ebpf/rust-toolchain.toml)
SECONDS_EACH=${FUZZ_SECONDS:-20}
ALL=(config host_files qemu_cmdline qmp journal ledger samples sidecar ingest)
targets=("${@:-${ALL[@]}}")
case ${FUZZ_BUILD:-full} in
full) TARGET_DIR="$ROOT/target/fuzz" BUILD_FLAGS=(-O) ;;
quick) TARGET_DIR="$ROOT/target/fuzz-quick" BUILD_FLAGS=(--dev) ;;
*)
    echo "fuzz: FUZZ_BUILD=${FUZZ_BUILD}: want full or quick" >&2
    exit 2
    ;;
esac

log() { printf '\033[1mfuzz:\033[0m %s\n' "$*"; }

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION (under a minute)"
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

seed_fixtures() {
    local t=$1 dir=$2
    case $t in
    config)
        cp deploy/config/agent.toml "$dir/agent.toml"
        sed 's/^# example: //; s/^# \([a-z_]* = \)/\1/; s/^# \(\[\)/\1/' deploy/config/agent.toml >"$dir/agent-uncommented.toml"
        ;;
    samples) head -c 60000 data/contention-small/e003/samples.jsonl >"$dir/samples.jsonl" ;;
    sidecar) cp models/contention-lstm.json models/demand-forecast.json "$dir/" ;;
    esac
}

# FUZZ_STEP=build only builds, FUZZ_STEP=run only runs (after a build), so that
# ./scripts/test.sh can build beside other work; FUZZ_JOBS targets run at a time.
STEP=${FUZZ_STEP:-all}
JOBS=${FUZZ_JOBS:-1}
case $STEP in
all | build | run) ;;
*)
    echo "fuzz: FUZZ_STEP=$STEP: want all, build or run" >&2
    exit 2
    ;;
esac
if [ "$STEP" != run ]; then
    log "building every target with $TOOLCHAIN, ${FUZZ_BUILD:-full} (a first full build takes about 13 minutes on 2 cores, a quick one about 3)"
    (cd fuzz && cargo "+$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR")
fi
[ "$STEP" = build ] && exit 0

# One target: its past crashes replayed, then fuzzed; its output in logs/<target>.log.
fuzz_target() {
    local t=$1
    local corpus="$TARGET_DIR/corpus/$t" artifacts="$TARGET_DIR/artifacts/$t/"
    local out="$TARGET_DIR/logs/$t.log"
    mkdir -p "$corpus" "$artifacts" "$TARGET_DIR/logs"
    seed_fixtures "$t" "$corpus"
    local dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("$ROOT/fuzz/seeds/$t")
    : >"$out"
    if [ -d "fuzz/regressions/$t" ] && compgen -G "fuzz/regressions/$t/*" >/dev/null; then
        echo "replaying fuzz/regressions/$t" >>"$out"
        if ! (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR" "$t" \
            "$ROOT"/fuzz/regressions/"$t"/* -- -runs=1 -artifact_prefix="$artifacts") >>"$out" 2>&1; then
            echo "a past crash is back" >>"$out"
            return 1
        fi
    fi
    (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR" "$t" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1) >>"$out" 2>&1
}

log "fuzzing ${targets[*]}: ${SECONDS_EACH}s each, $JOBS at a time"
failed=()
declare -A running=()
finish_one() {
    local pid t
    wait -n -p pid "${!running[@]}" && status=0 || status=$?
    t=${running[$pid]}
    unset "running[$pid]"
    log "$t: $(grep -E '^(stat::number_of_executed_units|Done [0-9]+ runs)' "$TARGET_DIR/logs/$t.log" | tail -n 1)"
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$TARGET_DIR/logs/$t.log" >&2
        failed+=("$t")
    fi
}
for t in "${targets[@]}"; do
    while [ "${#running[@]}" -ge "$JOBS" ]; do finish_one; done
    fuzz_target "$t" &
    running[$!]=$t
done
while [ "${#running[@]}" -gt 0 ]; do finish_one; done
if ((${#failed[@]})); then
    echo "fuzz: crashes in ${failed[*]}: inputs in $TARGET_DIR/artifacts/; reproduce with" \
        "(cd fuzz && cargo +$TOOLCHAIN fuzz run TARGET ARTIFACT)" >&2
    exit 1
fi
log "no crash in ${targets[*]}"
