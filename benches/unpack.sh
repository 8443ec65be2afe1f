#!/usr/bin/env bash
# Layer-unpack benchmark: tar -xzf vs umoci unpack vs berth load, ~500 MB / ~40k-file layer.
# A benchmark, not a test: it prints medians and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/unpack.sh [-h] [--runs N] [--warmup N] [--tmpfs] [--regen] [--no-build] [--gen-only]
                         [--only LIST] [--keep]

Times unpacking one ~500 MB, ~40,000-file gzip layer three ways, alternating the commands
(one round = tar, umoci, berth), each run into a FRESH directory (never delete-and-recreate:
see shared/peers.md section 8 on ext4 inode reuse):

  tar    tar -xzf layer.tar.gz -C DIR
  umoci  umoci unpack --image LAYOUT:bench DIR
  berth  berth --root DIR load -i layout.tar        (fresh store each run; load unpacks the layer)

Prints the median of each, and the ratios berth/tar and berth/umoci. Raw hyperfine JSON of
every round, a merged JSON, a CSV of every run and machine notes go to
$BENCH_DIR/results/<timestamp>[-tmpfs]/.

The input (layer.tar.gz, an OCI layout and layout.tar holding it) is generated once,
deterministically for a given host (host trees under /usr plus generated files), and cached
in $BENCH_DIR/data/.

Options:
  --runs N      timed rounds (default 10)
  --warmup N    untimed rounds first (default 1)
  --tmpfs       unpack into /dev/shm instead of $BENCH_DIR (CPU-bound figures; each round's
                output is removed after the round, which costs nothing on tmpfs)
  --regen       regenerate the cached input
  --gen-only    only generate (or check) the cached input, then exit
  --no-build    do not run cargo build when the berth binary is missing (berth is skipped)
  --only LIST   comma-separated subset of tar,umoci,berth (default: all)
  --keep        keep the unpacked directories (default: removed at the end)
  -h, --help    this help

Environment:
  BENCH_DIR  work directory (default /var/tmp/berth-bench): data/, results/, scratch/
  BENCH_COOLDOWN  seconds to wait after a large deletion on the venue's filesystem (default 65)
  BERTH      berth binary (default <repo>/target/release/berth; built with
             `cargo build --release -p berth` when missing)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}

runs=10
warmup=1
tmpfs=0
regen=0
gen_only=0
build=1
only=tar,umoci,berth
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --tmpfs) tmpfs=1 ;;
        --regen) regen=1 ;;
        --gen-only) gen_only=1 ;;
        --no-build) build=0 ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --keep) keep=1 ;;
        *) echo "unpack.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$runs$warmup" in *[!0-9]*) echo "unpack.sh: --runs/--warmup take numbers" >&2; exit 2 ;; esac
[ "$runs" -ge 1 ] || { echo "unpack.sh: --runs must be at least 1" >&2; exit 2; }

log() { echo "unpack.sh: $*" >&2; }

# Large deletions on ext4 without a journal make file creation slow for the next 60 s or more
# (peers.md section 8): remember when the last one happened, and let timed runs wait it out.
COOLDOWN=${BENCH_COOLDOWN:-65}
big_rm() {
    [ -e "$1" ] || return 0
    rm -rf "$1"
    sync
    mkdir -p "$BENCH_DIR"
    date +%s >"$BENCH_DIR/.last-delete"
}
cooldown() {
    local last now left
    last=$(cat "$BENCH_DIR/.last-delete" 2>/dev/null || echo 0)
    now=$(date +%s)
    left=$((last + COOLDOWN - now))
    if [ "$left" -gt 0 ]; then
        log "waiting ${left}s: files were deleted on this filesystem recently (ext4 inode reuse)"
        sleep "$left"
    fi
}

# ---------------------------------------------------------------------------------------------
# Tools
need=()
for t in tar gzip jq hyperfine umoci openssl sha256sum awk; do
    command -v "$t" >/dev/null || need+=("$t")
done
if [ ${#need[@]} -ne 0 ]; then
    log "missing tools: ${need[*]}; running scripts/install-deps.sh"
    "$REPO_ROOT/scripts/install-deps.sh"
    for t in "${need[@]}"; do
        command -v "$t" >/dev/null || { log "still missing: $t"; exit 1; }
    done
fi

want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if want berth && [ "$gen_only" = 0 ] && [ ! -x "$BERTH" ] && [ "$build" = 1 ] && [ "$BERTH" = "$BERTH_DEFAULT" ]; then
    log "berth not built; cargo build --release -p berth"
    (cd "$REPO_ROOT" && cargo build --release -p berth >&2) || log "cargo build failed"
fi
berth_skip=
if want berth; then
    if [ ! -x "$BERTH" ]; then
        berth_skip="binary not found: $BERTH (cargo build --release -p berth, or set BERTH)"
    elif ! "$BERTH" load --help >/dev/null 2>&1; then
        berth_skip="$BERTH has no working 'load' command yet"
    fi
    if [ -n "$berth_skip" ]; then
        log "SKIPPING berth: $berth_skip"
        only=$(echo ",$only," | sed 's/,berth,/,/; s/^,//; s/,$//')
    fi
fi
[ -n "$only" ] || { log "nothing to run"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Input data, cached. Host trees (fixed list, those that exist) + generated files up to
# TARGET_FILES entries, with three large generated files, so the layer is ~500 MB, ~40k files.
DATA="$BENCH_DIR/data"
TARGET_FILES=40000
HOST_TREES=(usr/include usr/lib/python3 usr/share/doc usr/share/i18n usr/share/man
    usr/share/perl usr/share/zoneinfo)
PARAMS="v1 files=$TARGET_FILES trees=${HOST_TREES[*]}"

gen_data() {
    local gen="$DATA/gen" ndirs n have per t trees=()
    big_rm "$DATA"
    mkdir -p "$DATA" "$gen/opt/bench/big"
    log "generating input in $DATA (once; about a minute)"

    # Large files: incompressible, base64 (lightly compressible), log-like (very compressible).
    head -c $((48 << 20)) /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
            -iv 00000000000000000000000000000000 >"$gen/opt/bench/big/random.bin"
    head -c $((24 << 20)) /dev/zero |
        openssl enc -aes-128-ctr -nosalt -K 0f0e0d0c0b0a09080706050403020100 \
            -iv 00000000000000000000000000000000 | base64 -w 76 >"$gen/opt/bench/big/base64.txt"
    awk 'BEGIN { for (i = 0; i < 400000; i++)
        printf "2026-01-01T00:%02d:%02d.%06dZ INFO worker-%d request %d handled in %d us status=%d\n",
            (i / 60) % 60, i % 60, (i * 7919) % 1000000, i % 16, i, (i * 104729) % 100000,
            (i % 50 == 0) ? 500 : 200 }' >"$gen/opt/bench/big/app.log"

    # Count what the host trees give, then top up with small generated files.
    have=0
    for t in "${HOST_TREES[@]}"; do
        [ -d "/$t" ] || continue
        n=$(find "/$t" -xdev | wc -l)
        have=$((have + n))
    done
    n=$((TARGET_FILES - have - 5))
    [ "$n" -ge 1000 ] || n=1000
    per=500
    log "host trees: $have entries; generating $n small files"
    ndirs=$((n / per + 1))
    for ((i = 0; i < ndirs; i++)); do mkdir -p "$gen/opt/bench/small/d$(printf %03d "$i")"; done
    awk -v n="$n" -v per="$per" -v root="$gen/opt/bench/small" 'BEGIN {
        srand(42)
        for (i = 0; i < n; i++) {
            f = sprintf("%s/d%03d/f%05d.txt", root, int(i / per), i)
            size = 64 + (i * 7919) % 12000            # 64 B .. 12 KB
            line = sprintf("file %d: the quick brown fox jumps over the lazy dog %d\n", i, i * 31)
            s = ""
            while (length(s) < size) s = s line
            printf "%s", substr(s, 1, size) > f
            close(f)
        }
    }'

    # The layer: explicit parent directories, host trees, generated files; fixed order,
    # mtimes and owners.
    local parents=(usr usr/lib usr/share)
    for t in "${HOST_TREES[@]}"; do [ -d "/$t" ] && trees+=("$t"); done
    tar --sort=name --mtime=@1577836800 --owner=0 --group=0 --numeric-owner --format=gnu \
        -cf "$DATA/layer.tar" \
        -C / --no-recursion "${parents[@]}" --recursion \
        "${trees[@]}" -C "$gen" opt
    big_rm "$gen"

    local diff_id layer_digest layer_size cfg cfg_digest cfg_size man man_digest man_size
    diff_id=$(sha256sum "$DATA/layer.tar" | cut -d' ' -f1)
    echo "$(tar -tf "$DATA/layer.tar" | wc -l) $(stat -c %s "$DATA/layer.tar")" >"$DATA/info"
    log "compressing layer ($(du -h "$DATA/layer.tar" | cut -f1), $(cut -d' ' -f1 "$DATA/info") entries)"
    gzip -n -6 -c "$DATA/layer.tar" >"$DATA/layer.tar.gz"
    rm -f "$DATA/layer.tar"
    layer_digest=$(sha256sum "$DATA/layer.tar.gz" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$DATA/layer.tar.gz")

    # OCI layout (for umoci and berth), hand-written.
    local L="$DATA/oci"
    mkdir -p "$L/blobs/sha256"
    ln "$DATA/layer.tar.gz" "$L/blobs/sha256/$layer_digest"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
    cfg=$(jq -cn --arg d "sha256:$diff_id" '{
        created: "2020-01-01T00:00:00Z", architecture: "amd64", os: "linux",
        config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                 Cmd: ["/bin/sh"]},
        rootfs: {type: "layers", diff_ids: [$d]},
        history: [{created: "2020-01-01T00:00:00Z", created_by: "berth benches/unpack.sh"}]}')
    printf '%s' "$cfg" >"$DATA/config.json"
    cfg_digest=$(sha256sum "$DATA/config.json" | cut -d' ' -f1)
    cfg_size=$(stat -c %s "$DATA/config.json")
    mv "$DATA/config.json" "$L/blobs/sha256/$cfg_digest"
    man=$(jq -cn --arg c "sha256:$cfg_digest" --argjson cs "$cfg_size" \
        --arg l "sha256:$layer_digest" --argjson ls "$layer_size" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
        layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]}')
    printf '%s' "$man" >"$DATA/manifest.tmp"
    man_digest=$(sha256sum "$DATA/manifest.tmp" | cut -d' ' -f1)
    man_size=$(stat -c %s "$DATA/manifest.tmp")
    mv "$DATA/manifest.tmp" "$L/blobs/sha256/$man_digest"
    jq -n --arg m "sha256:$man_digest" --argjson ms "$man_size" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m,
                     size: $ms, annotations: {"org.opencontainers.image.ref.name": "bench",
                     "io.containerd.image.name": "docker.io/library/bench:latest"}}]}' \
        >"$L/index.json"

    # layout.tar: the OCI layout plus a docker-archive manifest.json (like `docker save` since
    # Docker 25), so docker, podman and berth can all `load` it.
    mkdir -p "$DATA/archive-extra"
    jq -n --arg c "blobs/sha256/$cfg_digest" --arg l "blobs/sha256/$layer_digest" \
        '[{Config: $c, RepoTags: ["bench:latest"], Layers: [$l]}]' >"$DATA/archive-extra/manifest.json"
    tar --sort=name --mtime=@1577836800 --owner=0 --group=0 --numeric-owner --hard-dereference \
        -cf "$DATA/layout.tar" -C "$L" blobs index.json oci-layout -C "$DATA/archive-extra" manifest.json

    umoci stat --image "$L:bench" >/dev/null || { log "umoci cannot read the generated layout"; exit 1; }
    echo "$PARAMS" >"$DATA/params"
    log "input ready: layer.tar.gz $(du -h "$DATA/layer.tar.gz" | cut -f1), layout.tar $(du -h "$DATA/layout.tar" | cut -f1)"
}

if [ "$regen" = 1 ] || [ ! -s "$DATA/layout.tar" ] || [ ! -s "$DATA/info" ] || [ "$(cat "$DATA/params" 2>/dev/null)" != "$PARAMS" ]; then
    gen_data
fi
LAYER="$DATA/layer.tar.gz"
LAYOUT="$DATA/oci"
LAYOUT_TAR="$DATA/layout.tar"
read -r ENTRIES UNPACKED <"$DATA/info"
if [ "$gen_only" = 1 ]; then
    log "input: $LAYER, $LAYOUT, $LAYOUT_TAR ($ENTRIES entries, $UNPACKED bytes unpacked)"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Venue and bookkeeping
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$tmpfs" = 1 ]; then
    SCRATCH=/dev/shm/berth-bench-$STAMP
    RES="$BENCH_DIR/results/$STAMP-tmpfs"
else
    SCRATCH="$BENCH_DIR/scratch/$STAMP"
    RES="$BENCH_DIR/results/$STAMP"
fi
mkdir -p "$SCRATCH" "$RES/raw"
STATE="$SCRATCH/.state"
mkdir -p "$STATE"

cleanup() {
    if [ "$keep" = 1 ]; then
        log "kept unpacked directories in $SCRATCH"
    elif [ "$tmpfs" = 1 ]; then
        rm -rf "$SCRATCH"
    else
        log "removing $SCRATCH (a new run on this filesystem waits ${COOLDOWN}s after this)"
        big_rm "$SCRATCH"
    fi
}
trap cleanup EXIT

# Room: every timed run keeps its output until the end on disk; on tmpfs, one round at a time.
ncmd=$(echo "$only" | tr ',' '\n' | grep -c .)
if [ "$tmpfs" = 1 ]; then rounds_kept=1; else rounds_kept=$((runs + warmup)); fi
need_kb=$(((UNPACKED + $(stat -c %s "$LAYOUT_TAR")) * 12 * ncmd * rounds_kept / 10240))
free_kb=$(df -Pk "$SCRATCH" | awk 'NR == 2 { print $4 }')
if [ "$need_kb" -gt "$free_kb" ]; then
    log "not enough space in $SCRATCH: need ~$((need_kb >> 20)) GiB, have $((free_kb >> 20)) GiB"
    exit 1
fi

# --prepare: a new, never-used path per run from a counter file. tar wants the directory to
# exist; umoci wants it absent; berth creates its root.
cat >"$STATE/prepare.sh" <<'EOF'
#!/bin/sh
set -eu
state=$1 kind=$2 mk=$3
n=$(( $(cat "$state/counter.$kind" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$state/counter.$kind"
dir="$state/../$kind-$n"
[ "$mk" = mkdir ] && mkdir "$dir"
echo "$dir" >"$state/current.$kind"
EOF
chmod +x "$STATE/prepare.sh"

# The command reads the path that --prepare chose: $(cat ...) runs in hyperfine's shell.
cur="\"\$(cat '$STATE/current.KIND')\""
hf_args=()
for k in tar umoci berth; do
    want "$k" || continue
    case "$k" in
        tar) cmd="tar -xzf '$LAYER' -C ${cur//KIND/tar}"; mk="mkdir" ;;
        umoci) cmd="umoci unpack --image '$LAYOUT:bench' ${cur//KIND/umoci}"; mk=no ;;
        berth) cmd="'$BERTH' --root ${cur//KIND/berth} load -i '$LAYOUT_TAR'"; mk=no ;;
    esac
    hf_args+=(--prepare "'$STATE/prepare.sh' '$STATE' $k $mk" --command-name "$k" "$cmd")
done

{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(uname -n)"
    echo "kernel:    $(uname -srvm)"
    echo "nproc:     $(nproc)"
    echo "cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "venue:     $SCRATCH ($(stat -f -c %T "$SCRATCH"); $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$SCRATCH" 2>/dev/null | head -n1 || true))"
    echo "jbd2:      $(find /proc/fs/jbd2 -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)(empty = no ext4 journal)"
    echo "input:     $LAYER ($(stat -c %s "$LAYER") bytes gzip, $UNPACKED bytes tar, $ENTRIES entries)"
    echo "runs:      $runs timed rounds, $warmup warm-up, alternating: ${only//,/ }"
    echo "tar:       $(tar --version | head -n1)"
    echo "gzip:      $(gzip --version | head -n1)"
    echo "umoci:     $(umoci --version 2>&1 | head -n1)"
    echo "hyperfine: $(hyperfine --version)"
    if want berth; then
        echo "berth:     $BERTH ($("$BERTH" --version 2>&1 | head -n1))"
    else
        echo "berth:     skipped${berth_skip:+: $berth_skip}"
    fi
    echo "git:       $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

[ "$tmpfs" = 1 ] || cooldown
# Inputs into the page cache once, so the first round does not pay for reading them.
cat "$LAYER" "$LAYOUT_TAR" >/dev/null

total=$((warmup + runs))
for ((r = 1; r <= total; r++)); do
    if [ "$r" -le "$warmup" ]; then
        label="warm-up $r/$warmup"
        out="$RES/raw/warmup-$r.json"
    else
        label="round $((r - warmup))/$runs"
        out="$RES/raw/round-$(printf %03d $((r - warmup))).json"
    fi
    hyperfine --runs 1 --style none --export-json "$out" "${hf_args[@]}" >/dev/null
    printf 'unpack.sh: %-14s %s\n' "$label" \
        "$(jq -r '[.results[] | "\(.command) \(.times[0] * 1000 | round / 1000)s"] | join("  ")' "$out")" >&2
    if [ "$tmpfs" = 1 ]; then
        # tmpfs has no inode-reuse penalty: free the memory after each round. On disk every
        # run's output stays until the end.
        find "$SCRATCH" -mindepth 1 -maxdepth 1 ! -name .state -exec rm -rf {} +
    fi
done

# ---------------------------------------------------------------------------------------------
# Merge rounds, medians, ratios.
jq -s '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    [.[].results[]] | group_by(.command)
    | sort_by(.[0].command | {"tar": 0, "umoci": 1, "berth": 2}[.] // 3) | map({
        command: .[0].command,
        times: map(.times[0]),
        user: map(.user), system: map(.system),
        median: (map(.times[0]) | median),
        mean: (map(.times[0]) | add / length),
        min: (map(.times[0]) | min), max: (map(.times[0]) | max),
        user_median: (map(.user) | median), system_median: (map(.system) | median)})
    | {results: ., medians: (map({(.command): .median}) | add)}
    | .ratios = (.medians as $m | {}
        + (if $m.berth and $m.tar then {"berth/tar": ($m.berth / $m.tar)} else {} end)
        + (if $m.berth and $m.umoci then {"berth/umoci": ($m.berth / $m.umoci)} else {} end)
        + (if $m.umoci and $m.tar then {"umoci/tar": ($m.umoci / $m.tar)} else {} end))
' "$RES"/raw/round-*.json >"$RES/summary.json"

{
    echo "command,round,seconds,user,system"
    jq -r '.results[] | .command as $c | range(0; .times | length) as $i
        | [$c, $i + 1, .times[$i], .user[$i], .system[$i]] | @csv' "$RES/summary.json"
} >"$RES/runs.csv"

{
    echo
    printf '%-8s %10s %10s %10s %10s %10s\n' command median min max user sys
    jq -r '.results[] | [.command, .median, .min, .max, .user_median, .system_median]
        | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r c med mn mx u s; do
            printf '%-8s %9.3fs %9.3fs %9.3fs %9.3fs %9.3fs\n' "$c" "$med" "$mn" "$mx" "$u" "$s"
        done
    echo
    jq -r '.ratios | to_entries[] | "\(.key) = \(.value * 100 | round / 100)"' "$RES/summary.json"
    if [ -n "$berth_skip" ]; then echo "berth skipped: $berth_skip"; fi
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
