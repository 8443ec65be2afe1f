#!/usr/bin/env bash
# Container lifecycle benchmark: `ps -a` over many stopped containers, and a run -d / stop / rm
# cycle, for berth, podman and docker side by side. A benchmark, not a test: it prints the
# figures and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/lifecycle.sh [-h] [--containers N] [--parallel N] [--runs N] [--warmup N]
                            [--rounds N] [--cycles N] [--cycle-warmup N] [--gap SECONDS]
                            [--measure LIST] [--only LIST] [--tmpfs] [--network none]
                            [--no-install] [--no-build] [--keep]

Two measurements, each for berth, podman and docker, in one run:

  cycle  a run -d / stop / rm cycle, each phase timed on its own:
           ENGINE run -d busybox sh -c 'trap "exit 0" TERM; sleep 300 & wait'
           ENGINE stop ID        (the container exits at once on SIGTERM: no stop timeout)
           ENGINE rm ID
         The engines alternate cycle by cycle; the times are taken in the script (bash's
         $EPOCHREALTIME right before and after each command, no intermediate shell), with an
         untimed pause of --gap seconds between the phases. After each stop the container's
         exit code is checked (untimed): 0 means it exited on SIGTERM, 137 that the engine
         had to SIGKILL it after its stop timeout, which would make the figure meaningless.
  ps     `ENGINE ps -a` and `ENGINE ps -a -q` with N stopped containers (`create busybox true`,
         made before the timing, --parallel at a time; not timed) and nothing else in the
         store, timed with hyperfine -N (output discarded). Each engine must list exactly N
         containers before the timing starts.

The cycle runs first, on stores that hold only the image; then the N containers are made.

  berth   berth --root ROOT ...        (a fresh root in the work directory)
  podman  podman --root/--runroot/--tmpdir ... (a private store in the work directory; run and
          create get --ulimit nofile=20000:20000 --ulimit nproc=20000:20000)
  docker  docker -H unix://SOCK ...    (a private dockerd that this script starts and stops,
          with its own data root, socket and bridge, --iptables=false and --default-ulimit)

All use the same busybox image (scripts/make-busybox-image.sh): imported into a fresh berth
root (or $BERTH_ROOT), `podman import`ed and `docker import`ed. Prints per engine the median
of each measurement and the ratios of medians podman/berth and docker/berth (above 1: berth is
faster). Raw data (hyperfine JSON of every round, every cycle's phase times), a summary JSON
and text, and machine notes go to $BENCH_DIR/results/lifecycle-<timestamp>[-tmpfs]/.

Missing peers are installed with scripts/install-deps.sh --peers. On a hybrid cgroup host whose
v2 hierarchy holds the hugetlb controller, it is moved to a v1 mount first (podman's crun needs
it; shared/peers.md section 2); that mount is left in place. Everything else the script makes
(containers in every engine, dockerd, its bridge, stores, mounts, the work directory) is
removed on exit, also on error or Ctrl-C.

Options:
  --containers N    stopped containers per engine for the ps measurement (default 1000)
  --parallel N      `create` commands run at once while making them (default 4)
  --runs N          timed runs of each ps command (default 10)
  --warmup N        untimed runs of each ps command in each round (default 1)
  --rounds N        alternating hyperfine rounds the ps runs are split into (default 2)
  --cycles N        timed run -d / stop / rm cycles per engine (default 20)
  --cycle-warmup N  untimed cycles per engine before them (default 2)
  --gap SECONDS     untimed pause after run -d and after stop (default 0.2)
  --measure LIST    comma-separated subset of cycle,ps (default: both)
  --only LIST       comma-separated subset of berth,podman,docker (default: all)
  --tmpfs           keep every engine's state and the berth root in /dev/shm
                    (default: $BENCH_DIR/scratch, on disk)
  --network none    pass --network none to run and create (default: each engine's default)
  --no-install      do not install missing peers or tools (fail instead)
  --no-build        do not run cargo build when the berth binary is missing
  --keep            keep the work directory (stores, dockerd log) instead of removing it
  -h, --help        this help

Environment:
  BENCH_DIR   work directory (default /var/tmp/berth-bench): results/, scratch/
  BERTH       berth binary (default <repo>/target/release/berth; built with
              `cargo build --release -p berth` when missing)
  BERTH_ROOT  berth state root to use (busybox:latest is imported when it lacks it; the root
              is left in place, and only this script's containers are removed from it);
              default: a fresh root in the work directory
  DOCKER      docker CLI (default: `docker` on PATH)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
DOCKER=${DOCKER:-docker}
ENGINES=(berth podman docker)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=20000:20000)
# The cycle's container: its shell exits 0 on SIGTERM, at once (the trap runs when `wait`
# returns), so that stop measures the engine and not a stop timeout.
WORKLOAD=(sh -c 'trap "exit 0" TERM; sleep 300 & wait')

containers=1000
parallel=4
runs=10
warmup=1
rounds=2
cycles=20
cycle_warmup=2
gap=0.2
measure=cycle,ps
only=berth,podman,docker
tmpfs=0
network=
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --containers) containers=${2:?--containers needs a number}; shift ;;
        --parallel) parallel=${2:?--parallel needs a number}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --cycles) cycles=${2:?--cycles needs a number}; shift ;;
        --cycle-warmup) cycle_warmup=${2:?--cycle-warmup needs a number}; shift ;;
        --gap) gap=${2:?--gap needs a number of seconds}; shift ;;
        --measure) measure=${2:?--measure needs a list}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --tmpfs) tmpfs=1 ;;
        --network) network=${2:?--network needs a mode}; shift ;;
        --network=*) network=${1#--network=} ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "lifecycle.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$containers$parallel$runs$warmup$rounds$cycles$cycle_warmup" in
    *[!0-9]*|'') echo "lifecycle.sh: --containers/--parallel/--runs/--warmup/--rounds/--cycles/--cycle-warmup take numbers" >&2; exit 2 ;;
esac
case "$gap" in
    ''|*[!0-9.]*|*.*.*|.) echo "lifecycle.sh: --gap takes a number of seconds (e.g. 0.2)" >&2; exit 2 ;;
esac
[ "$containers" -ge 1 ] || { echo "lifecycle.sh: --containers must be at least 1" >&2; exit 2; }
[ "$parallel" -ge 1 ] || parallel=1
[ "$runs" -ge 1 ] || { echo "lifecycle.sh: --runs must be at least 1" >&2; exit 2; }
[ "$cycles" -ge 1 ] || { echo "lifecycle.sh: --cycles must be at least 1" >&2; exit 2; }
[ "$rounds" -ge 1 ] || rounds=1
[ "$rounds" -le "$runs" ] || rounds=$runs
case "$network" in
    ''|none) ;;
    *) echo "lifecycle.sh: --network takes only 'none'" >&2; exit 2 ;;
esac
only=${only// /}
for e in ${only//,/ }; do
    case " ${ENGINES[*]} " in
        *" $e "*) ;;
        *) echo "lifecycle.sh: unknown engine in --only: $e (known: ${ENGINES[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${only//,/}" ] || { echo "lifecycle.sh: --only selects nothing" >&2; exit 2; }
measure=${measure// /}
for m in ${measure//,/ }; do
    case "$m" in
        cycle|ps) ;;
        *) echo "lifecycle.sh: unknown measurement in --measure: $m (known: cycle, ps)" >&2; exit 2 ;;
    esac
done
[ -n "${measure//,/}" ] || { echo "lifecycle.sh: --measure selects nothing" >&2; exit 2; }

log() { echo "lifecycle.sh: $*" >&2; }
die() { log "$*"; exit 1; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
measuring() { case ",$measure," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, mounts, dockerd)"
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later (\$EPOCHREALTIME)"

# ---------------------------------------------------------------------------------------------
# berth first: a missing command is the likeliest failure and costs nothing to find.
if want berth; then
    if [ ! -x "$BERTH" ] && [ "$build" = 1 ] && [ "$BERTH" = "$BERTH_DEFAULT" ]; then
        log "berth not built; cargo build --release -p berth"
        (cd "$REPO_ROOT" && cargo build --release -p berth >&2) || log "cargo build failed"
    fi
    [ -x "$BERTH" ] || die "berth binary not found: $BERTH (cargo build --release -p berth, or set BERTH; --only podman,docker leaves berth out)"
    for c in run create stop rm ps inspect; do
        "$BERTH" "$c" --help >/dev/null 2>&1 ||
            die "$BERTH has no working '$c' command (berth $c --help fails); build a berth that has it, or leave berth out: --only podman,docker"
    done
fi

# ---------------------------------------------------------------------------------------------
# Tools and peers
need=()
for t in hyperfine jq tar ip findmnt xargs; do
    command -v "$t" >/dev/null || need+=("$t")
done
peers_missing=()
if want podman && ! command -v podman >/dev/null; then peers_missing+=(podman); fi
if want docker; then
    command -v dockerd >/dev/null || peers_missing+=(dockerd)
    command -v "$DOCKER" >/dev/null || peers_missing+=("$DOCKER")
fi
if [ ${#need[@]} -ne 0 ] || [ ${#peers_missing[@]} -ne 0 ]; then
    [ "$install" = 1 ] || die "missing: ${need[*]} ${peers_missing[*]} (scripts/install-deps.sh --peers)"
    log "missing: ${need[*]} ${peers_missing[*]}; running scripts/install-deps.sh --peers"
    "$REPO_ROOT/scripts/install-deps.sh" --peers >&2
    for t in "${need[@]}" "${peers_missing[@]}"; do
        command -v "$t" >/dev/null || die "still missing after install: $t"
    done
fi

# podman's crun cannot set up v1 cgroups while the v2 hierarchy of a hybrid host holds hugetlb:
# move it to a v1 mount (shared/peers.md section 2). The controller can move only while no v2
# cgroup uses it; the mount stays (other tools here rely on it too).
hugetlb_fix() {
    local u=/sys/fs/cgroup/unified/cgroup.controllers
    if [ ! -r "$u" ] || ! grep -qw hugetlb "$u"; then return 0; fi
    log "hugetlb controller is on the cgroup2 mount; moving it to /sys/fs/cgroup/hugetlb (v1)"
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
        log "WARNING: could not mount the hugetlb v1 hierarchy; podman may fail"
    fi
}
if want podman || want berth; then hugetlb_fix; fi

# ---------------------------------------------------------------------------------------------
# Work directory, clean-up
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$tmpfs" = 1 ]; then
    mkdir -p /dev/shm
    WORK=$(mktemp -d "/dev/shm/berth-lifecycle-bench-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/lifecycle-$STAMP-tmpfs"
else
    mkdir -p "$BENCH_DIR/scratch"
    WORK=$(mktemp -d "$BENCH_DIR/scratch/lifecycle-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/lifecycle-$STAMP"
fi
mkdir -p "$RES/raw"
TAG=$$                              # names of this run's containers, bridge, runtime dir
PREFIX="berth-lc-$TAG-"             # names of the ps measurement's containers
DRUN="/run/berth-lc-$TAG"           # dockerd's exec root, socket, pid file (short: socket paths)
DSOCK="$DRUN/docker.sock"
BRIDGE="brlc$TAG"                   # at most 15 characters
BRIDGE=${BRIDGE:0:15}
# podman: store in the work directory; run root and tmp dir under $DRUN (tmpfs, like podman's
# defaults; podman refuses a run root longer than 50 characters).
PODMAN=(podman --root "$WORK/podman" --runroot "$DRUN/podman-run" --tmpdir "$DRUN/podman-tmp"
    --storage-driver overlay)
dockerd_pid=
bg_pid=
bridge_made=0
berth_root_tmp=0
declare -A CUR_ID=()                # the cycle's container, per engine, while it exists

# Unmount anything left mounted under a directory, deepest first.
umount_under() {
    local m
    findmnt -rn -o TARGET 2>/dev/null | awk -v p="$1/" 'index($0, p) == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    if [ -n "$bg_pid" ]; then
        kill "$bg_pid" 2>/dev/null
        wait "$bg_pid" 2>/dev/null
        sleep 1                     # the commands it had started finish on their own
    fi
    if want berth && [ -n "${BERTH_ROOT:-}" ] && [ -d "$BERTH_ROOT" ]; then
        {
            if [ "$berth_root_tmp" = 1 ]; then
                "$BERTH" --root "$BERTH_ROOT" ps -aq
            else
                "$BERTH" --root "$BERTH_ROOT" ps -aq --filter "name=$PREFIX"
            fi
            [ -z "${CUR_ID[berth]:-}" ] || echo "${CUR_ID[berth]}"
        } 2>/dev/null | xargs -r -n 200 "$BERTH" --root "$BERTH_ROOT" rm -f >/dev/null 2>&1
    fi
    if want podman && [ -d "$WORK/podman" ]; then
        # `podman rm` returns each container's lock to the host-wide lock table (num_locks);
        # deleting the store alone would leak them.
        log "podman: removing its containers and store"
        "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1
        "${PODMAN[@]}" system reset -f >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        # Running containers only: the stopped ones go with the data root.
        {
            "$DOCKER" -H "unix://$DSOCK" ps -q
            [ -z "${CUR_ID[docker]:-}" ] || echo "${CUR_ID[docker]}"
        } 2>/dev/null | xargs -r "$DOCKER" -H "unix://$DSOCK" rm -f >/dev/null 2>&1
        kill "$dockerd_pid" 2>/dev/null
        for ((i = 0; i < 150; i++)); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            log "dockerd did not stop in 30 s; killing it"
            kill -9 "$dockerd_pid" 2>/dev/null
            wait "$dockerd_pid" 2>/dev/null
        fi
        if [ "$keep" = 1 ] && [ -f "$WORK/dockerd.log" ]; then cp "$WORK/dockerd.log" "$RES/" 2>/dev/null; fi
    fi
    umount_under "$DRUN"
    rm -rf "$DRUN"
    if [ "$bridge_made" = 1 ]; then ip link del "$BRIDGE" 2>/dev/null; fi
    if [ "$berth_root_tmp" = 1 ]; then umount_under "$BERTH_ROOT"; fi
    umount_under "$WORK"
    if [ "$keep" = 1 ]; then
        log "kept the work directory: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bg_run OUT ERR COMMAND...: run COMMAND in the background (stdin /dev/null, stdout to OUT,
# stderr to ERR) and wait for it, so that a signal to this script cleans up at once rather than
# after the command. (Redirections on the bg_run call itself would also catch the messages of
# the clean-up, which runs inside the `wait`.)
bg_run() {
    local out=$1 err=$2 rc=0
    shift 2
    if [ "$out" = "$err" ]; then
        "$@" </dev/null >"$out" 2>&1 &
    else
        "$@" </dev/null >"$out" 2>"$err" &
    fi
    bg_pid=$!
    wait "$bg_pid" || rc=$?
    bg_pid=
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# The busybox image, in each engine.
TARBALL="$WORK/busybox.tar"
if want berth; then
    if [ -z "${BERTH_ROOT:-}" ]; then
        BERTH_ROOT="$WORK/berth"
        berth_root_tmp=1
    fi
    if "$BERTH" --root "$BERTH_ROOT" image inspect busybox:latest >/dev/null 2>&1; then
        log "berth: busybox:latest already in $BERTH_ROOT"
        "$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" --tar-only
    else
        log "berth: importing busybox:latest into $BERTH_ROOT"
        BERTH="$BERTH" BERTH_ROOT="$BERTH_ROOT" "$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" >/dev/null
    fi
else
    "$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" --tar-only
fi

if want podman; then
    mkdir -p "$WORK/podman" "$DRUN"
    log "podman: importing busybox:latest into a private store"
    "${PODMAN[@]}" import -q "$TARBALL" busybox:latest >/dev/null
fi

# A private dockerd: its own data root, exec root, socket, pid file and bridge.
start_dockerd() {
    local a b i net_args=()
    mkdir -p "$WORK/docker" "$DRUN/exec"
    if [ "$network" = none ]; then
        net_args=(--bridge none)
    else
        # A /24 no interface here uses, picked from this run's PID.
        for ((i = 0; i < 200; i++)); do
            a=$((100 + (TAG + i) % 100)); b=$(((TAG / 100 + i) % 250 + 1))
            ip -4 -o addr show | grep -q " 10\.$a\.$b\." || break
        done
        ip link add "$BRIDGE" type bridge
        bridge_made=1
        ip addr add "10.$a.$b.1/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
        net_args=(--bridge "$BRIDGE")
    fi
    log "docker: starting a private dockerd (socket $DSOCK, data root $WORK/docker)"
    dockerd --host "unix://$DSOCK" --data-root "$WORK/docker" --exec-root "$DRUN/exec" \
        --pidfile "$DRUN/dockerd.pid" "${net_args[@]}" --iptables=false --ip-forward=false \
        --default-ulimit nofile=20000:20000 --default-ulimit nproc=65536:65536 \
        --log-level warn >"$WORK/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for ((i = 0; i < 300; i++)); do
        "$DOCKER" -H "unix://$DSOCK" version >/dev/null 2>&1 && return 0
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.2
    done
    log "dockerd did not come up; the end of its log:"
    tail -n 20 "$WORK/dockerd.log" >&2
    return 1
}
if want docker; then
    start_dockerd || die "cannot start dockerd"
    "$DOCKER" -H "unix://$DSOCK" import "$TARBALL" busybox:latest >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# Each engine's command line, and the options its run and create get.
net=()
[ -z "$network" ] || net=(--network "$network")
# cli ENGINE: sets CLI to the engine's command line up to the subcommand, and XOPTS to the
# options of run and create.
cli() {
    case "$1" in
        berth) CLI=("$BERTH" --root "$BERTH_ROOT"); XOPTS=("${net[@]}") ;;
        podman) CLI=("${PODMAN[@]}"); XOPTS=("${ULIMITS[@]}" "${net[@]}") ;;
        docker) CLI=("$DOCKER" -H "unix://$DSOCK"); XOPTS=("${net[@]}") ;;
    esac
}
quote() { local s; s=$(printf '%q ' "$@"); echo "${s% }"; }
count_all() { local CLI XOPTS; cli "$1"; "${CLI[@]}" ps -a -q </dev/null | wc -l; }

selected=()
for e in "${ENGINES[@]}"; do
    if want "$e"; then selected+=("$e"); fi
done

# Each engine's store must start empty of containers (a given BERTH_ROOT may hold some: they
# are counted, left alone and not part of the figures' N, but they do weigh on ps).
declare -A BASE=()
for e in "${selected[@]}"; do
    BASE[$e]=$(count_all "$e")
    if [ "${BASE[$e]}" -ne 0 ]; then
        log "WARNING: $e already lists ${BASE[$e]} containers before the benchmark (they are left alone)"
    fi
done

# ---------------------------------------------------------------------------------------------
# Machine notes
version_of() { "$@" 2>&1 | head -n1 || true; }
{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(uname -n)"
    echo "kernel:    $(uname -srvm)"
    echo "nproc:     $(nproc)"
    echo "cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load:      $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cgroups:   $(stat -f -c %T /sys/fs/cgroup)$([ -d /sys/fs/cgroup/unified ] && echo ' (hybrid: v1 + cgroup2 at /sys/fs/cgroup/unified)')"
    echo "venue:     $WORK ($(stat -f -c %T "$WORK"))"
    echo "measure:   $measure; engines: ${selected[*]}"
    echo "cycle:     $cycles timed cycles per engine, $cycle_warmup warm-up, gap ${gap}s"
    echo "ps:        $containers containers per engine (created $parallel at a time), $runs timed runs per command in $rounds rounds, $warmup warm-up per round"
    echo "network:   ${network:-default}"
    echo "hyperfine: $(hyperfine --version)"
    for e in "${selected[@]}"; do
        case "$e" in
            berth) echo "berth:     $BERTH ($(version_of "$BERTH" --version); sha256 $(sha256sum "$BERTH" | cut -c1-16), $(date -u -r "$BERTH" +%Y-%m-%dT%H:%M:%SZ)); root $BERTH_ROOT" ;;
            podman) echo "podman:    $(version_of podman --version) ($(version_of "${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}'))" ;;
            docker) echo "docker:    client $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Client.Version}}'), dockerd $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Server.Version}} (runtime {{range .Server.Components}}{{if eq .Name "runc"}}runc {{.Version}}{{end}}{{end}})')" ;;
        esac
        cli "$e"
        echo "  cycle:   $(quote "${CLI[@]}" run -d "${XOPTS[@]}" busybox "${WORKLOAD[@]}"); ... stop ID; ... rm ID"
        echo "  ps:      $(quote "${CLI[@]}" ps -a) [-q]   (containers: $(quote "${CLI[@]}" create "${XOPTS[@]}" --name "${PREFIX}I" busybox true))"
    done
    echo "git:       $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }

# ---------------------------------------------------------------------------------------------
# Measurement 1: run -d / stop / rm cycles.
# cycle ENGINE N: one cycle; N = 0 for a warm-up. Appends a JSON line to raw/cycles.jsonl.
cycle() {
    local e=$1 n=$2 CLI XOPTS t0 t1 t2 t3 t4 t5 id code
    cli "$e"
    t0=${EPOCHREALTIME/[.,]/}
    "${CLI[@]}" run -d "${XOPTS[@]}" busybox "${WORKLOAD[@]}" </dev/null >"$WORK/cycle.id" 2>"$WORK/cycle.err" ||
        { cat "$WORK/cycle.err" >&2; die "$e: run -d failed (cycle $n)"; }
    t1=${EPOCHREALTIME/[.,]/}
    id=$(tail -n 1 "$WORK/cycle.id")
    [ -n "$id" ] || die "$e: run -d printed no container ID (cycle $n)"
    CUR_ID[$e]=$id
    [ "$gap" = 0 ] || sleep "$gap"
    t2=${EPOCHREALTIME/[.,]/}
    "${CLI[@]}" stop "$id" </dev/null >/dev/null 2>"$WORK/cycle.err" ||
        { cat "$WORK/cycle.err" >&2; die "$e: stop failed (cycle $n)"; }
    t3=${EPOCHREALTIME/[.,]/}
    code=$("${CLI[@]}" inspect --format '{{.State.ExitCode}}' "$id" </dev/null 2>&1) || code="inspect failed: $code"
    if [ "$code" != 0 ]; then
        log "WARNING: $e: cycle $n: exit code after stop is '$code', not 0 (stop took $(((t3 - t2) / 1000)) ms): not the SIGTERM exit"
    fi
    [ "$gap" = 0 ] || sleep "$gap"
    t4=${EPOCHREALTIME/[.,]/}
    "${CLI[@]}" rm "$id" </dev/null >/dev/null 2>"$WORK/cycle.err" ||
        { cat "$WORK/cycle.err" >&2; die "$e: rm failed (cycle $n)"; }
    t5=${EPOCHREALTIME/[.,]/}
    CUR_ID[$e]=
    printf '{"engine":"%s","cycle":%d,"run_d_us":%d,"stop_us":%d,"rm_us":%d,"exit_code":"%s"}\n' \
        "$e" "$n" $((t1 - t0)) $((t3 - t2)) $((t5 - t4)) "$code" >>"$RES/raw/cycles.jsonl"
}

if measuring cycle; then
    : >"$RES/raw/cycles.jsonl"
    log "cycle: $cycle_warmup warm-up and $cycles timed run -d / stop / rm cycles per engine"
    t_start=$(now_us)
    for ((c = 1 - cycle_warmup; c <= cycles; c++)); do
        n=$((c < 1 ? 0 : c))
        for e in "${selected[@]}"; do cycle "$e" "$n"; done
        if [ "$n" -gt 0 ] && { [ $((n % 5)) -eq 0 ] || [ "$n" -eq "$cycles" ]; }; then
            log "cycle: $n/$cycles done"
        fi
    done
    log "cycle: took $((($(now_us) - t_start) / 1000000)) s"
    for e in "${selected[@]}"; do
        left=$(count_all "$e")
        [ "$left" -eq "${BASE[$e]}" ] || log "WARNING: $e lists $left containers after the cycles, expected ${BASE[$e]}"
    done
fi

# ---------------------------------------------------------------------------------------------
# Measurement 2: ps -a over N stopped containers.
declare -A SETUP_S=() SETUP_FAILED=()
if measuring ps; then
    for e in "${selected[@]}"; do
        cli "$e"
        log "ps: $e: creating $containers containers, $parallel at a time"
        t_start=$(now_us)
        # Failures are counted (and made up for) below; their messages go to the log.
        seq 1 "$containers" >"$WORK/numbers"
        bg_run /dev/null "$RES/raw/create-$e.log" xargs -a "$WORK/numbers" -P "$parallel" -I{} \
            "${CLI[@]}" create "${XOPTS[@]}" --name "${PREFIX}{}" busybox true || true
        t_end=$(now_us)
        have=$(($(count_all "$e") - BASE[$e]))
        SETUP_FAILED[$e]=$((containers - have))
        if [ "$have" -lt "$containers" ]; then
            log "WARNING: $e: only $have of $containers creates succeeded (messages in $RES/raw/create-$e.log):"
            sort "$RES/raw/create-$e.log" | uniq -c | sort -rn | head -n 5 >&2
            log "$e: creating the rest one at a time"
            for ((i = have + 1; i <= containers; i++)); do
                "${CLI[@]}" create "${XOPTS[@]}" --name "${PREFIX}x$i" busybox true </dev/null >/dev/null ||
                    die "$e: create fails one at a time too"
            done
        fi
        SETUP_S[$e]=$(((t_end - t_start) / 1000))
        log "ps: $e: $have containers in $((SETUP_S[$e] / 1000)).$(printf %03d $((SETUP_S[$e] % 1000))) s ($(((t_end - t_start) / (have > 0 ? have : 1) / 1000)) ms per container, $parallel at a time)"
    done

    # Each engine must list exactly what it holds, header line included.
    for e in "${selected[@]}"; do
        cli "$e"
        want_n=$((containers + BASE[$e]))
        got_q=$("${CLI[@]}" ps -a -q </dev/null | wc -l)
        got=$("${CLI[@]}" ps -a </dev/null | wc -l)
        [ "$got_q" -eq "$want_n" ] || die "$e: ps -a -q lists $got_q containers, expected $want_n"
        [ "$got" -eq $((want_n + 1)) ] || die "$e: ps -a prints $got lines, expected $((want_n + 1)) (a header and $want_n containers)"
        log "ps: $e lists $want_n containers"
    done

    hf_args=()
    for e in "${selected[@]}"; do
        cli "$e"
        hf_args+=(--command-name "$e ps -a" "$(quote "${CLI[@]}" ps -a)")
        hf_args+=(--command-name "$e ps -a -q" "$(quote "${CLI[@]}" ps -a -q)")
    done
    per=$((runs / rounds))
    extra=$((runs % rounds))
    for ((r = 1; r <= rounds; r++)); do
        n=$per
        [ "$r" -gt "$extra" ] || n=$((n + 1))
        out="$RES/raw/ps-round-$(printf %03d "$r").json"
        hf_rc=0
        bg_run "${out%.json}.log" "${out%.json}.log" hyperfine -N --warmup "$warmup" --runs "$n" \
            --style none --export-json "$out" "${hf_args[@]}" || hf_rc=$?
        if [ "$hf_rc" -ne 0 ]; then
            tail -n 5 "${out%.json}.log" >&2
            die "hyperfine failed in ps round $r (a command exited non-zero; the commands are in $RES/machine.txt)"
        fi
        printf 'lifecycle.sh: ps round %d/%d (%d runs each): %s\n' "$r" "$rounds" "$n" \
            "$(jq -r '[.results[] | "\(.command) \(.median * 1000 | . * 10 | round / 10)ms"] | join("  ")' "$out")" >&2
    done
fi

# ---------------------------------------------------------------------------------------------
# Statistics, ratios.
setup_json=$(for e in "${selected[@]}"; do
    [ -n "${SETUP_S[$e]:-}" ] || continue
    printf '{"engine":"%s","seconds":%s,"failed_creates":%d}\n' "$e" \
        "$((SETUP_S[$e] / 1000)).$(printf %03d $((SETUP_S[$e] % 1000)))" "${SETUP_FAILED[$e]}"
done | jq -s 'map({(.engine): del(.engine)}) | add // {}')

ps_json='{}'
if measuring ps; then
    ps_json=$(jq -s '[.[].results[]] | group_by(.command) | map({(.[0].command): (map(.times) | add)}) | add' \
        "$RES"/raw/ps-round-*.json)
fi
cycles_json='[]'
if measuring cycle; then cycles_json=$(jq -s 'map(select(.cycle > 0))' "$RES/raw/cycles.jsonl"); fi

jq -n --argjson ps "$ps_json" --argjson cycles "$cycles_json" --argjson setup "$setup_json" \
    --argjson containers "$containers" --argjson runs "$runs" --argjson rounds "$rounds" \
    --argjson warmup "$warmup" --argjson ncycles "$cycles" --argjson cycle_warmup "$cycle_warmup" \
    --arg gap "$gap" --arg network "${network:-default}" --arg engines "${selected[*]}" '
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def stats: {median: median, mean: (add / length), min: min, max: max, n: length};
    ($engines | split(" ")) as $eng
    | ["ps -a", "ps -a -q"] as $psm
    | ["run -d", "stop", "rm", "run -d + stop + rm"] as $cym
    | ($cycles | map(. + {total_us: (.run_d_us + .stop_us + .rm_us)})) as $cy
    | def phase(e; k): [$cy[] | select(.engine == e) | .[k] / 1e6];
    {containers: $containers, network: $network,
     ps: {runs: $runs, rounds: $rounds, warmup_per_round: $warmup, setup: $setup,
          results: [$psm[] as $m | $eng[] as $e | ($ps["\($e) \($m)"] // empty)
                    | {measure: $m, engine: $e} + stats]},
     cycle: {cycles: $ncycles, warmup: $cycle_warmup, gap_seconds: ($gap | tonumber),
             not_clean_stops: [$cy[] | select(.exit_code != "0") | {engine, cycle, exit_code}],
             results: [[["run -d", "run_d_us"], ["stop", "stop_us"], ["rm", "rm_us"],
                        ["run -d + stop + rm", "total_us"]][] as [$m, $k] | $eng[] as $e
                       | phase($e; $k) | select(length > 0)
                       | {measure: $m, engine: $e} + stats]}}
    | ([.ps.results[], .cycle.results[]]) as $all
    | .ratios_of_medians = ([($psm + $cym)[] as $m
        | ($all | map(select(.measure == $m)) | map({(.engine): .median}) | add // {}) as $r
        | select($r.berth)
        | {($m): ({} + (if $r.podman then {"podman/berth": ($r.podman / $r.berth)} else {} end)
                     + (if $r.docker then {"docker/berth": ($r.docker / $r.berth)} else {} end))}]
        | add // {})
' >"$RES/summary.json"

if measuring cycle; then
    {
        echo "engine,cycle,run_d_seconds,stop_seconds,rm_seconds,exit_code_after_stop"
        jq -r '.[] | [.engine, .cycle, .run_d_us / 1e6, .stop_us / 1e6, .rm_us / 1e6, .exit_code] | @csv' \
            <<<"$cycles_json"
    } >"$RES/cycles.csv"
fi

{
    echo
    hdr=$(printf '%-20s' measurement; for e in "${selected[@]}"; do printf ' %11s' "$e"; done
        for e in podman docker; do if want "$e" && want berth; then printf ' %13s' "$e/berth"; fi; done)
    echo "medians (wall time); ratios above 1: berth is faster"
    echo "$hdr"
    for m in "run -d" stop rm "run -d + stop + rm" "ps -a" "ps -a -q"; do
        jq -e --arg m "$m" '[.ps.results[], .cycle.results[]] | any(.measure == $m)' \
            "$RES/summary.json" >/dev/null || continue
        printf '%-20s' "$m"
        for e in "${selected[@]}"; do
            printf ' %9.1fms' "$(jq -r --arg m "$m" --arg e "$e" '[.ps.results[], .cycle.results[]]
                | map(select(.measure == $m and .engine == $e))[0].median * 1000' "$RES/summary.json")"
        done
        for e in podman docker; do
            if want "$e" && want berth; then
                printf ' %13.2f' "$(jq -r --arg m "$m" --arg k "$e/berth" '.ratios_of_medians[$m][$k]' "$RES/summary.json")"
            fi
        done
        echo
    done
    if measuring cycle; then
        echo
        echo "run -d / stop / rm: $cycles cycles per engine (after $cycle_warmup warm-up), gap ${gap}s, network: ${network:-default}"
        jq -r '.cycle.not_clean_stops | if length == 0 then "  every stop ended in the SIGTERM exit (exit code 0)"
            else "  WARNING: \(length) stops did not end in the SIGTERM exit: \(map("\(.engine) cycle \(.cycle): \(.exit_code)") | join(", "))" end' \
            "$RES/summary.json"
    fi
    if measuring ps; then
        echo
        echo "ps: $containers stopped containers per engine, $runs runs per command"
        jq -r '.ps.setup | to_entries[] | "  \(.key): created in \(.value.seconds) s, \(.value.failed_creates) creates failed"' \
            "$RES/summary.json"
    fi
    echo
    printf '%-20s %-7s %10s %10s %10s %10s %4s\n' measurement engine median mean min max n
    jq -r '[.cycle.results[], .ps.results[]][] | [.measure, .engine,
        (.median, .mean, .min, .max | . * 1000), .n] | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r m e med mean mn mx cnt; do
            printf '%-20s %-7s %8.1fms %8.1fms %8.1fms %8.1fms %4d\n' "$m" "$e" "$med" "$mean" "$mn" "$mx" "$cnt"
        done
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
