#!/usr/bin/env bash
# Runs berth's fuzz targets (fuzz/fuzz_targets, cargo-fuzz on the stable toolchain: libFuzzer
# with coverage, no sanitizer) and stops at the first crash, which libFuzzer saves under
# fuzz/artifacts/TARGET/ with the command that reproduces it.
#
#   scripts/fuzz.sh                 every target for 60 s (random seeds: the long run)
#   scripts/fuzz.sh --time 600 compose registry
#   scripts/fuzz.sh --quick         every target for a fixed 100,000 inputs from seed 1 (CI:
#                                   the same inputs every time, so a red run is a real find)
#
# The corpus each run grows (fuzz/corpus/TARGET) is kept between runs and not committed; the
# seeds in fuzz/seeds/TARGET are read too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=60
quick=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --time) seconds=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(awk -F'"' '/^name = / && NR > 1 && $2 != "berth-fuzz" {print $2}' fuzz/Cargo.toml)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (crates.io)"
    cargo install --locked cargo-fuzz
fi
for target in "${targets[@]}"; do
    if [ "$quick" -eq 1 ]; then
        args=(-runs=100000 -seed=1)
    else
        args=(-max_total_time="$seconds")
    fi
    echo "fuzz.sh: $target (${args[*]})"
    # New inputs go to the first directory: the kept corpus, or for --quick a fresh one, so
    # that --quick runs the same inputs wherever it runs. fuzz/seeds/TARGET (committed,
    # hand-made) starts targets whose inputs random bytes rarely become (a tar header needs
    # its checksum).
    if [ "$quick" -eq 1 ]; then
        corpus=$(mktemp -d)
    else
        corpus="$PWD/fuzz/corpus/$target"
        mkdir -p "$corpus"
    fi
    corpora=("$corpus")
    if [ -d "fuzz/seeds/$target" ]; then
        corpora+=("$PWD/fuzz/seeds/$target")
    fi
    if ! cargo fuzz run --sanitizer none "$target" "${corpora[@]}" -- "${args[@]}" >"fuzz/$target.log" 2>&1; then
        tail -40 "fuzz/$target.log" >&2
        echo "fuzz.sh: $target found a crash; see fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "fuzz/$target.log" || true
    if [ "$quick" -eq 1 ]; then
        rm -rf "$corpus"
    fi
done
echo "fuzz.sh: no crash in ${#targets[@]} targets"
