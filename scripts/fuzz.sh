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
# its own, in about 4 minutes instead of 13 on 2 cores, for the bounded run of the
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

log "building every target with $TOOLCHAIN, ${FUZZ_BUILD:-full} (a first full build takes about 13 minutes on 2 cores, a quick one about 4)"
(cd fuzz && cargo "+$TOOLCHAIN" fuzz build "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR")

failed=()
for t in "${targets[@]}"; do
    corpus="$TARGET_DIR/corpus/$t"
    artifacts="$TARGET_DIR/artifacts/$t/"
    mkdir -p "$corpus" "$artifacts"
    seed_fixtures "$t" "$corpus"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$t" ] && dirs+=("$ROOT/fuzz/seeds/$t")
    if [ -d "fuzz/regressions/$t" ] && compgen -G "fuzz/regressions/$t/*" >/dev/null; then
        log "$t: replaying fuzz/regressions/$t"
        (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR" "$t" \
            "$ROOT"/fuzz/regressions/"$t"/* -- -runs=1 -artifact_prefix="$artifacts") \
            || failed+=("$t (a past crash is back)")
    fi
    log "$t: ${SECONDS_EACH}s"
    if ! (cd fuzz && cargo "+$TOOLCHAIN" fuzz run "${BUILD_FLAGS[@]}" --target-dir "$TARGET_DIR" "$t" "${dirs[@]}" -- \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 | tail -n 12); then
        failed+=("$t")
    fi
done
if ((${#failed[@]})); then
    echo "fuzz: crashes in ${failed[*]}: inputs in $TARGET_DIR/artifacts/; reproduce with" \
        "(cd fuzz && cargo +$TOOLCHAIN fuzz run TARGET ARTIFACT)" >&2
    exit 1
fi
log "no crash in ${targets[*]}"
