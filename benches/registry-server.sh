#!/usr/bin/env bash
# Registry server benchmark: `berth registry serve` against Debian's docker-registry
# (distribution 2.8), side by side in one run: concurrent blob pushes and pulls (throughput,
# latency percentiles) and the server's memory, as ratios. A benchmark, not a test: it prints
# the figures and ratios and keeps the raw data; nothing fails when berth is slower.
#
# Design choices (the fairness of the comparison rests on them):
#
# - The load: crates/distribution/examples/registry_load.rs, one process per timed run, built
#   in release. N client threads, each with its own HTTP/1.1 connection (opened before the
#   clock starts), all starting together. push: each client uploads its own blobs (POST, then
#   PUT ?digest= with the whole blob), every blob distinct (pseudo-random bytes from a seed
#   that differs from run to run), generated and hashed before the clock starts. pull: each
#   client GETs its share of blobs the server holds, --pull-repeat times over, reading every
#   body whole. Latency is per blob: POST+PUT for a push, the GET for a pull.
# - Two shapes: "big" (CLIENTS clients x 1 blob of BIG_SIZE, default 16 x 50 MB) and "small"
#   (CLIENTS x SMALL_BLOBS blobs of SMALL_SIZE, default 16 x 64 x 1 MiB).
# - Both servers on 127.0.0.1, plain HTTP, no auth, storage in fresh directories on the same
#   filesystem (the work directory on disk by default, /dev/shm with --tmpfs).
#   distribution's config is shared/peers.md's (section 5): filesystem storage, in-memory blob
#   descriptor cache, access log off, log level warn. berth: `berth registry serve --addr
#   127.0.0.1:PORT --root DIR`.
# - push: before each timed push the server is started afresh on an empty storage directory
#   (untimed); after it, the server is stopped and its storage deleted (a few dozen to a few
#   thousand files: far from the tens of thousands of shared/peers.md section 8, though ext4's
#   scan of recently deleted inodes still costs the next push, whichever server runs it, some
#   CPU; the order of the servers rotates, so both pay it alike).
# - pull: per shape, both servers are started on empty storage and given the same blobs
#   (pushed untimed by the load generator with one seed), then the timed pulls run against
#   them in turn. The blobs are in the page cache (just written); for both alike.
# - Alternation: one thing at a time (2 cores). In each round every server runs each
#   (operation, shape) once, the order of the servers rotating from round to round; --warmup
#   untimed rounds first. `sync` before each timed run (untimed), so that nobody pays for the
#   previous run's dirty pages. Medians over the timed rounds are reported.
# - Memory, read from /proc/PID/status: "idle" is VmRSS one second after the server answers
#   its first request (before any load); "peak" is VmHWM over one timed run: the high-water
#   mark is reset before the run by writing 5 to /proc/PID/clear_refs (Linux 4.0 and later).
#   Both servers are single processes (docker-registry is a Go binary, berth one process
#   with tokio's threads), so their RSS is all of their memory (the page cache is not in it).
# - CPU: the server's user+system CPU time over each timed run (from /proc/PID/stat), as
#   seconds per GB moved: what each server spends for the same work.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/registry-server.sh [-h] [--rounds N] [--warmup N] [--measure LIST]
                                  [--shapes LIST] [--clients N] [--big-size SIZE]
                                  [--small-blobs N] [--small-size SIZE] [--pull-repeat N]
                                  [--tmpfs] [--no-install] [--no-build] [--keep]

Measures two registry servers side by side in one run, on 127.0.0.1, plain HTTP:

  berth         berth registry serve --addr 127.0.0.1:PORT --root DIR
  distribution  docker-registry serve CONFIG   (Debian's distribution 2.8)

with the load generator crates/distribution/examples/registry_load.rs (built in release):

  push  CLIENTS threads, each uploading its blobs (POST, then PUT ?digest= with the body)
  pull  CLIENTS threads, each GETting its share of the stored blobs, --pull-repeat times over

for two shapes: big (CLIENTS x 1 blob of --big-size) and small (CLIENTS x --small-blobs blobs of
--small-size). For every run: throughput (MB/s, 10^6 bytes), latency per blob (p50, p99, max),
the server's peak RSS (VmHWM over the run) and CPU time; per server its idle RSS.

Prints per operation, shape and server the medians, then the ratios berth/distribution, and
checks the goal: higher throughput than distribution (throughput ratio above 1) at a quarter
of its memory (peak RSS ratio at most 0.25), for every operation and shape, and the same
with the anonymous memory alone (peak RssAnon, without the executable's pages). Everything
(runs.jsonl, runs.csv, summary.json, summary.txt, the servers' logs, machine notes) goes to
$BENCH_DIR/results/registry-server-<timestamp>[-tmpfs]/.

Options (each has an environment variable, in brackets, that sets its default):
  --rounds N        timed rounds (default 3) [BENCH_ROUNDS]
  --warmup N        untimed rounds first (default 1) [BENCH_WARMUP]
  --measure LIST    subset of push,pull (default both) [BENCH_MEASURE]
  --shapes LIST     subset of big,small (default both) [BENCH_SHAPES]
  --clients N       client threads (default 16) [BENCH_CLIENTS]
  --big-size SIZE   the big shape's blob size (default 50MB) [BENCH_BIG_SIZE]
  --small-blobs N   blobs per client in the small shape (default 64) [BENCH_SMALL_BLOBS]
  --small-size SIZE the small shape's blob size (default 1MiB) [BENCH_SMALL_SIZE]
  --pull-repeat N   times each client GETs each of its blobs in a pull run (default 3)
                    [BENCH_PULL_REPEAT]
  --tmpfs           both servers' storage in /dev/shm instead of the work directory on disk
  --no-install      do not install missing tools (fail instead)
  --no-build        do not run cargo build (use the binaries as they are)
  --keep            keep the work directory (storage, logs)
  -h, --help        this help
SIZE takes a suffix: k, M, G (10^3, 10^6, 10^9) or KiB, MiB, GiB (2^10, 2^20, 2^30).

A quick look: BENCH_ROUNDS=1 BENCH_WARMUP=0 BENCH_CLIENTS=4 BENCH_SMALL_BLOBS=8 benches/registry-server.sh

Environment:
  BENCH_DIR        work directory (default /var/tmp/berth-bench): results/, scratch/
  BERTH            berth binary (default <repo>/target/release/berth)
  REGISTRY_LOAD    load generator (default <repo>/target/release/examples/registry_load)
  BENCH_PORT       first port to try (default 5070; the first two free ones from there)
  BENCH_COOLDOWN   seconds to wait after a large deletion on the filesystem (default 65)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=registry-server.sh
# shellcheck source=benches/lib.sh
. "$REPO_ROOT/benches/lib.sh"

BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
LOAD_DEFAULT="$REPO_ROOT/target/release/examples/registry_load"
LOAD=${REGISTRY_LOAD:-$LOAD_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
SERVERS=(berth distribution)
OPS=(push pull)
SHAPES=(big small)

rounds=${BENCH_ROUNDS:-3}
warmup=${BENCH_WARMUP:-1}
measure=${BENCH_MEASURE:-push,pull}
shapes=${BENCH_SHAPES:-big,small}
clients=${BENCH_CLIENTS:-16}
big_size=${BENCH_BIG_SIZE:-50MB}
small_blobs=${BENCH_SMALL_BLOBS:-64}
small_size=${BENCH_SMALL_SIZE:-1MiB}
pull_repeat=${BENCH_PULL_REPEAT:-3}
tmpfs=0
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --measure) measure=${2:?--measure needs a list}; shift ;;
        --shapes) shapes=${2:?--shapes needs a list}; shift ;;
        --clients) clients=${2:?--clients needs a number}; shift ;;
        --big-size) big_size=${2:?--big-size needs a size}; shift ;;
        --small-blobs) small_blobs=${2:?--small-blobs needs a number}; shift ;;
        --small-size) small_size=${2:?--small-size needs a size}; shift ;;
        --pull-repeat) pull_repeat=${2:?--pull-repeat needs a number}; shift ;;
        --tmpfs) tmpfs=1 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "registry-server.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$rounds$warmup$clients$small_blobs$pull_repeat" in
    *[!0-9]*|'') echo "registry-server.sh: --rounds/--warmup/--clients/--small-blobs/--pull-repeat take numbers" >&2; exit 2 ;;
esac
[ "$rounds" -ge 1 ] || { echo "registry-server.sh: --rounds must be at least 1" >&2; exit 2; }
if [ "$clients" -lt 1 ] || [ "$small_blobs" -lt 1 ] || [ "$pull_repeat" -lt 1 ]; then
    echo "registry-server.sh: --clients, --small-blobs and --pull-repeat must be at least 1" >&2
    exit 2
fi
# size_bytes SIZE: the byte count of a SIZE as registry_load reads it.
size_bytes() {
    local n unit
    [[ $1 =~ ^([0-9]+)([A-Za-z]*)$ ]] || return 1
    n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
    case "$unit" in
        ''|B) echo "$n" ;;
        k|K|kB|KB) echo $((n * 1000)) ;;
        M|MB) echo $((n * 1000000)) ;;
        G|GB) echo $((n * 1000000000)) ;;
        Ki|KiB) echo $((n << 10)) ;;
        Mi|MiB) echo $((n << 20)) ;;
        Gi|GiB) echo $((n << 30)) ;;
        *) return 1 ;;
    esac
}
big_bytes=$(size_bytes "$big_size") || { echo "registry-server.sh: bad --big-size: $big_size" >&2; exit 2; }
small_bytes=$(size_bytes "$small_size") || { echo "registry-server.sh: bad --small-size: $small_size" >&2; exit 2; }
if [ "$big_bytes" -lt 1 ] || [ "$small_bytes" -lt 1 ]; then
    echo "registry-server.sh: sizes must be at least 1 byte" >&2
    exit 2
fi
check_list() {
    local what=$1 list=$2 x
    shift 2
    for x in ${list//,/ }; do
        case " $* " in
            *" $x "*) ;;
            *) echo "registry-server.sh: unknown $what: $x (known: $*)" >&2; exit 2 ;;
        esac
    done
    [ -n "${list//,/}" ] || { echo "registry-server.sh: --$what selects nothing" >&2; exit 2; }
}
measure=${measure// /}
shapes=${shapes// /}
check_list measure "$measure" "${OPS[@]}"
check_list shapes "$shapes" "${SHAPES[@]}"
in_list() { case ",$2," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
sel_ops=() sel_shapes=()
for o in "${OPS[@]}"; do if in_list "$o" "$measure"; then sel_ops+=("$o"); fi; done
for s in "${SHAPES[@]}"; do if in_list "$s" "$shapes"; then sel_shapes+=("$s"); fi; done
# shape_blobs SHAPE / shape_size SHAPE: blobs per client and bytes per blob.
shape_blobs() { if [ "$1" = big ]; then echo 1; else echo "$small_blobs"; fi; }
shape_size() { if [ "$1" = big ]; then echo "$big_bytes"; else echo "$small_bytes"; fi; }
shape_label() { echo "${clients}x$(shape_blobs "$1")x$(if [ "$1" = big ]; then echo "$big_size"; else echo "$small_size"; fi)"; }

[ "$(id -u)" -eq 0 ] || die "must run as root (/proc/PID/clear_refs of the servers, like the other benches)"
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later"

# ---------------------------------------------------------------------------------------------
# Tools and binaries.
bench_need_tools jq curl ss flock docker-registry
if [ "$build" = 1 ]; then
    log "building berth and the load generator (release)"
    (cd "$REPO_ROOT" && cargo build --release -p berth --bin berth --bin berth-registry >&2 &&
        cargo build --release -p berth-distribution --example registry_load >&2) ||
        die "cargo build failed"
fi
bench_berth_binary "$BERTH" "$BERTH_DEFAULT" 0 "registry serve"
[ -x "$LOAD" ] || die "load generator not found: $LOAD (cargo build --release -p berth-distribution --example registry_load)"

mkdir -p /run/lock
exec 9>/run/lock/berth-bench-registry-server.lock
flock -n 9 || die "another benches/registry-server.sh is running (lock /run/lock/berth-bench-registry-server.lock)"

# ---------------------------------------------------------------------------------------------
# Work directory, results, clean-up.
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$tmpfs" = 1 ]; then
    WORK=$(mktemp -d "/dev/shm/berth-bench-registry-server-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/registry-server-$STAMP-tmpfs"
else
    mkdir -p "$BENCH_DIR/scratch"
    WORK=$(mktemp -d "$BENCH_DIR/scratch/registry-server-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/registry-server-$STAMP"
fi
mkdir -p "$RES/logs"

# The servers: one port each for the whole run.
declare -A PORT PID DIR
PORT[berth]=$(bench_free_port "${BENCH_PORT:-5070}") || die "no free port from ${BENCH_PORT:-5070}"
PORT[distribution]=$(bench_free_port "$((PORT[berth] + 1))") || die "no second free port"
PID[berth]='' PID[distribution]='' DIR[berth]='' DIR[distribution]=''
url_of() { echo "http://127.0.0.1:${PORT[$1]}"; }

# srv_stop SERVER: stops it (SIGTERM, then SIGKILL after 15 s), keeps its log. Its storage
# stays (srv_drop removes it).
srv_stop() {
    local s=$1 p=${PID[$1]} i
    [ -n "$p" ] || return 0
    kill "$p" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    PID[$s]=
    cat "${DIR[$s]}/server.log" >>"$RES/logs/$s.log" 2>/dev/null || true
}
# srv_drop SERVER: stops it and removes its storage directory.
srv_drop() {
    srv_stop "$1"
    if [ -n "${DIR[$1]}" ]; then rm -rf "${DIR[$1]}"; DIR[$1]=; fi
}
# srv_start SERVER NAME: starts it on a fresh storage directory WORK/store/NNN-SERVER-NAME and
# waits until /v2/ answers; then waits a second and records its idle RSS in IDLE_KB (and the
# anonymous part of it in IDLE_ANON_KB).
srv_n=0
srv_start() {
    local s=$1 d
    srv_n=$((srv_n + 1))
    d="$WORK/store/$(printf %03d "$srv_n")-$s-$2"
    mkdir -p "$d"
    DIR[$s]=$d
    case "$s" in
        berth)
            "$BERTH" registry serve --addr "127.0.0.1:${PORT[berth]}" --root "$d/root" \
                </dev/null >"$d/server.log" 2>&1 &
            ;;
        distribution)
            bench_registry_config "$d" "${PORT[distribution]}"
            docker-registry serve "$d/config.yml" </dev/null >"$d/server.log" 2>&1 &
            ;;
    esac
    PID[$s]=$!
    bench_wait_http "$(url_of "$s")/v2/" "${PID[$s]}" "$d/server.log" || return 1
    # The figures are berth-registry's: a berth serving in itself (no berth-registry beside
    # it) would be measured as the larger process without a word.
    if [ "$s" = berth ] && [ "$(basename "$(readlink "/proc/${PID[$s]}/exe")")" != berth-registry ]; then
        log "berth serves in itself, not through berth-registry: build both (cargo build --release --bin berth --bin berth-registry)"
        return 1
    fi
    sleep 1
    IDLE_KB=$(proc_kb "${PID[$s]}" VmRSS)
    IDLE_ANON_KB=$(proc_kb "${PID[$s]}" RssAnon)
}
# proc_kb PID FIELD: a kB field of /proc/PID/status (VmRSS, VmHWM).
proc_kb() { awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    bench_bg_stop
    sampler_stop
    srv_drop berth
    srv_drop distribution
    bench_work_remove "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Space: a push run holds one shape's blobs, a pull phase two copies of one shape.
max_shape=0
for s in "${sel_shapes[@]}"; do
    b=$((clients * $(shape_blobs "$s") * $(shape_size "$s")))
    [ "$b" -le "$max_shape" ] || max_shape=$b
done
need_mib=$((max_shape * 3 / 1048576 + 256))
free_mib=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1024))
[ "$need_mib" -le "$free_mib" ] || die "not enough space in $WORK: need about $need_mib MiB, have $free_mib MiB"

# ---------------------------------------------------------------------------------------------
# Machine notes
version_of() { "$@" 2>&1 | head -n1 || true; }
{
    bench_machine_notes "$WORK"
    echo "berth:     $BERTH ($(version_of "$BERTH" --version); sha256 $(sha256sum "$BERTH" | cut -c1-16), $(date -u -r "$BERTH" +%Y-%m-%dT%H:%M:%SZ)) on $(url_of berth)"
    echo "distribution: $(version_of docker-registry --version) on $(url_of distribution)"
    echo "generator: $LOAD ($(date -u -r "$LOAD" +%Y-%m-%dT%H:%M:%SZ))"
    echo "storage:   $WORK/store ($(stat -f -c %T "$WORK"))"
    echo "shapes:    $(for s in "${sel_shapes[@]}"; do printf '%s=%s ' "$s" "$(shape_label "$s")"; done)(clients x blobs per client x blob size)"
    echo "runs:      $measure; $rounds timed rounds after $warmup warm-up rounds; pull: each client GETs its blobs $pull_repeat times"
    echo "git:       $(bench_git_rev)"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# anon_sampler PID FILE: samples RssAnon of PID every 0.1 s until killed, writing the largest
# value seen (kB) to FILE. VmHWM covers all of the RSS, file-backed pages (the binary's text)
# included; this is the anonymous part alone (heap, stacks), which no HWM field tracks.
anon_sampler() {
    local p=$1 maxfile=$2 max=0 k v rest
    while [ -r "/proc/$p/status" ]; do
        while read -r k v rest; do
            if [ "$k" = RssAnon: ]; then
                if [ "$v" -gt "$max" ]; then max=$v; echo "$max" >"$maxfile"; fi
                break
            fi
        done <"/proc/$p/status" || break
        sleep 0.1
    done
}
sampler_pid=
sampler_stop() {
    [ -n "$sampler_pid" ] || return 0
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
}

# run_one OP SHAPE SERVER ROUND: one timed (ROUND 0: warm-up) run of the load generator against
# the running SERVER; appends a line to runs.jsonl and sets LAST (a short summary).
TCK=$(getconf CLK_TCK)
seed=100
run_one() {
    local op=$1 shape=$2 s=$3 round=$4 p=${PID[$3]} out="$WORK/load.json" cmd u0 s0 u1 s1 hwm rss
    local anon anon_peak load1
    case "$op" in
        push)
            seed=$((seed + 1))
            cmd=("$LOAD" push --url "$(url_of "$s")" --clients "$clients"
                --blobs "$(shape_blobs "$shape")" --size "$(shape_size "$shape")" --seed "$seed") ;;
        pull)
            cmd=("$LOAD" pull --url "$(url_of "$s")" --clients "$clients"
                --digests "$WORK/digests-$shape.txt" --repeat "$pull_repeat") ;;
    esac
    sync
    load1=$(cut -d' ' -f1 /proc/loadavg)
    echo 5 >"/proc/$p/clear_refs" || die "cannot reset the peak RSS of $s (/proc/$p/clear_refs)"
    proc_kb "$p" RssAnon >"$WORK/anon.max"
    anon_sampler "$p" "$WORK/anon.max" &
    sampler_pid=$!
    bench_proc_cpu "$p"; u0=$bench_cpu_user; s0=$bench_cpu_sys
    if ! bench_bg_run "$out" "$WORK/load.err" "${cmd[@]}"; then
        cat "$WORK/load.err" >&2
        die "$op $shape against $s failed: $(quote "${cmd[@]}")"
    fi
    bench_proc_cpu "$p"; u1=$bench_cpu_user; s1=$bench_cpu_sys
    hwm=$(proc_kb "$p" VmHWM)
    rss=$(proc_kb "$p" VmRSS)
    anon=$(proc_kb "$p" RssAnon)
    sampler_stop
    anon_peak=$(cat "$WORK/anon.max")
    [ "$anon" -le "$anon_peak" ] || anon_peak=$anon
    kill -0 "$p" 2>/dev/null || die "$s died during $op $shape"
    jq -c --arg op "$op" --arg shape "$shape" --arg desc "$(shape_label "$shape")" --arg server "$s" \
        --argjson round "$round" --argjson hwm "$hwm" --argjson rss "$rss" --argjson idle "$IDLE_OF" \
        --argjson idle_anon "$IDLE_ANON_OF" --argjson anon_peak "$anon_peak" --argjson anon "$anon" \
        --argjson cpu "$((u1 - u0 + s1 - s0))" --argjson tck "$TCK" --argjson load1 "$load1" '
        {op: $op, shape: $shape, desc: $desc, server: $server, round: $round,
         mb_per_s, seconds, bytes, ops, p50: .latency_s.p50, p99: .latency_s.p99,
         max: .latency_s.max, peak_rss_mib: ($hwm / 1024), rss_after_mib: ($rss / 1024),
         idle_rss_mib: ($idle / 1024), peak_anon_mib: ($anon_peak / 1024),
         anon_after_mib: ($anon / 1024), idle_anon_mib: ($idle_anon / 1024),
         server_cpu_s: ($cpu / $tck), cpu_s_per_gb: (($cpu / $tck) / (.bytes / 1e9)),
         load1: $load1}' "$out" >>"$RES/runs.jsonl"
    LAST=$(jq -r '"\(.mb_per_s | round) MB/s p99 \(.latency_s.p99 * 1000 | round) ms"' "$out")
    LAST="$LAST, peak $((hwm / 1024)) MiB"
}

# order R: the servers in round R's order (rotating).
order() {
    local i
    for ((i = 0; i < ${#SERVERS[@]}; i++)); do echo "${SERVERS[$(((i + $1 - 1) % ${#SERVERS[@]}))]}"; done
}

[ "$tmpfs" = 1 ] || bench_cooldown
total=$((warmup + rounds))
label_of() { if [ "$1" -le "$warmup" ]; then echo "warm-up $1/$warmup"; else echo "round $(($1 - warmup))/$rounds"; fi; }
declare -A IDLE IDLE_ANON
if in_list push "$measure"; then
    log "push: a fresh server on empty storage before every run, $rounds rounds after $warmup warm-up rounds"
    for ((r = 1; r <= total; r++)); do
        for shape in "${sel_shapes[@]}"; do
            line=
            for s in $(order "$r"); do
                srv_start "$s" "push-$shape" || die "cannot start $s"
                IDLE_OF=$IDLE_KB IDLE_ANON_OF=$IDLE_ANON_KB
                run_one push "$shape" "$s" "$((r > warmup ? r - warmup : 0))"
                srv_drop "$s"
                line+="  $s: $LAST;"
            done
            printf 'registry-server.sh: push %-15s %-12s%s\n' "$(shape_label "$shape")" "$(label_of "$r")" "$line" >&2
        done
    done
fi
if in_list pull "$measure"; then
    for shape in "${sel_shapes[@]}"; do
        log "pull $(shape_label "$shape"): both servers get the same blobs (untimed), then $rounds rounds after $warmup warm-up rounds"
        for s in "${SERVERS[@]}"; do
            srv_start "$s" "pull-$shape" || die "cannot start $s"
            IDLE[$s]=$IDLE_KB IDLE_ANON[$s]=$IDLE_ANON_KB
            "$LOAD" push --url "$(url_of "$s")" --clients "$clients" --blobs "$(shape_blobs "$shape")" \
                --size "$(shape_size "$shape")" --seed 7 --digests-out "$WORK/digests-$shape.txt" \
                >"$WORK/seed.json" 2>"$WORK/load.err" ||
                { cat "$WORK/load.err" >&2; die "could not store the blobs for the pulls in $s"; }
        done
        for ((r = 1; r <= total; r++)); do
            line=
            for s in $(order "$r"); do
                IDLE_OF=${IDLE[$s]} IDLE_ANON_OF=${IDLE_ANON[$s]}
                run_one pull "$shape" "$s" "$((r > warmup ? r - warmup : 0))"
                line+="  $s: $LAST;"
            done
            printf 'registry-server.sh: pull %-15s %-12s%s\n' "$(shape_label "$shape")" "$(label_of "$r")" "$line" >&2
        done
        srv_drop berth
        srv_drop distribution
    done
fi
echo "load end:  $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/machine.txt"

# ---------------------------------------------------------------------------------------------
# Statistics, ratios, goal.
jq -s "$BENCH_JQ_STATS"'
    [.[] | select(.round > 0)] as $runs
    | {results: [("push", "pull") as $op | ("big", "small") as $shape | ("berth", "distribution") as $s
         | [$runs[] | select(.op == $op and .shape == $shape and .server == $s)] | select(length > 0)
         | {op: $op, shape: $shape, desc: .[0].desc, server: $s, n: length,
            mb_per_s: (map(.mb_per_s) | median), mb_per_s_min: (map(.mb_per_s) | min),
            mb_per_s_max: (map(.mb_per_s) | max),
            p50: (map(.p50) | median), p99: (map(.p99) | median), max: (map(.max) | median),
            peak_rss_mib: (map(.peak_rss_mib) | median), peak_rss_mib_max: (map(.peak_rss_mib) | max),
            idle_rss_mib: (map(.idle_rss_mib) | median),
            peak_anon_mib: (map(.peak_anon_mib) | median), idle_anon_mib: (map(.idle_anon_mib) | median),
            cpu_s_per_gb: (map(.cpu_s_per_gb) | median), load1: (map(.load1) | median)}]}
    | .results as $res
    | .ratios = [("push", "pull") as $op | ("big", "small") as $shape
        | ($res | map(select(.op == $op and .shape == $shape))) as $p
        | ($p | map(select(.server == "berth")) | .[0]) as $b
        | ($p | map(select(.server == "distribution")) | .[0]) as $d
        | select($b and $d)
        | {op: $op, shape: $shape, desc: $b.desc,
           throughput: ($b.mb_per_s / $d.mb_per_s), p99: ($b.p99 / $d.p99),
           peak_rss: ($b.peak_rss_mib / $d.peak_rss_mib), idle_rss: ($b.idle_rss_mib / $d.idle_rss_mib),
           peak_anon: ($b.peak_anon_mib / $d.peak_anon_mib), idle_anon: ($b.idle_anon_mib / $d.idle_anon_mib),
           cpu_per_gb: ($b.cpu_s_per_gb / $d.cpu_s_per_gb)}]
    | .goal = "berth/distribution: throughput above 1 and peak RSS at most 0.25, for every operation and shape"
    | .goal_met = (if (.ratios | length) == 0 then null
                   else (.ratios | map(.throughput > 1 and .peak_rss <= 0.25) | all) end)
    | .goal_anon = "the same with the anonymous memory alone (peak RssAnon at most 0.25): what the server allocates, without the pages of its executable"
    | .goal_anon_met = (if (.ratios | length) == 0 then null
                        else (.ratios | map(.throughput > 1 and .peak_anon <= 0.25) | all) end)
' "$RES/runs.jsonl" >"$RES/summary.json"

{
    echo "op,shape,desc,server,round,mb_per_s,seconds,bytes,ops,p50,p99,max,peak_rss_mib,rss_after_mib,idle_rss_mib,peak_anon_mib,anon_after_mib,idle_anon_mib,server_cpu_s,cpu_s_per_gb,load1"
    jq -r '[.op, .shape, .desc, .server, .round, .mb_per_s, .seconds, .bytes, .ops, .p50, .p99, .max,
            .peak_rss_mib, .rss_after_mib, .idle_rss_mib, .peak_anon_mib, .anon_after_mib, .idle_anon_mib,
            .server_cpu_s, .cpu_s_per_gb, .load1] | @csv' "$RES/runs.jsonl"
} >"$RES/runs.csv"

{
    echo
    echo "registry server: berth vs distribution 2.8, medians of $rounds rounds (load average at the start"
    echo "$(awk '/^load:/ { print $2, $3, $4; exit }' "$RES/machine.txt"), at the end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; storage on $(stat -f -c %T "$WORK"))"
    printf '%-4s %-16s %-12s %2s %7s %7s %7s %7s %8s %8s %8s %8s %7s\n' op shape server n "MB/s" "p50 s" "p99 s" \
        "max s" "peak MiB" "idle MiB" "peak an" "idle an" "CPU s/GB"
    jq -r '.results[] | [.op, .desc, .server, .n, .mb_per_s, .p50, .p99, .max, .peak_rss_mib,
            .idle_rss_mib, .peak_anon_mib, .idle_anon_mib, .cpu_s_per_gb] | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r op label s n mbps p50 p99 mx peak idle pa ia cpu; do
            printf '%-4s %-16s %-12s %2d %7.0f %7.3f %7.3f %7.3f %8.1f %8.1f %8.1f %8.1f %7.2f\n' \
                "$op" "$label" "$s" "$n" "$mbps" "$p50" "$p99" "$mx" "$peak" "$idle" "$pa" "$ia" "$cpu"
        done
    echo "(peak MiB: VmHWM over the run; idle MiB: VmRSS before any load; \"an\": the anonymous part"
    echo " of the RSS alone, RssAnon, sampled every 0.1 s; CPU s/GB: the server's user+sys CPU per GB moved)"
    echo
    echo "ratios berth/distribution (throughput above 1: berth is faster; p99, memory, CPU below 1: berth is better)"
    printf '%-4s %-16s %10s %6s %9s %9s %9s %9s %7s\n' op shape throughput "p99" "peak RSS" "idle RSS" \
        "peak an" "idle an" "CPU/GB"
    jq -r '.ratios[] | [.op, .desc, .throughput, .p99, .peak_rss, .idle_rss, .peak_anon, .idle_anon,
            .cpu_per_gb] | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r op label t p99 peak idle pa ia cpu; do
            printf '%-4s %-16s %10.2f %6.2f %9.2f %9.2f %9.2f %9.2f %7.2f\n' "$op" "$label" "$t" "$p99" \
                "$peak" "$idle" "$pa" "$ia" "$cpu"
        done
    echo
    jq -r 'if .goal_met == null then "goal: not checked (needs both servers)"
           else "goal (\(.goal)): " + (if .goal_met then "met" else "NOT met" end),
                "\(.goal_anon): " + (if .goal_anon_met then "met" else "NOT met" end) end' "$RES/summary.json"
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
