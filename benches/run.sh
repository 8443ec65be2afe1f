#!/usr/bin/env bash
# Container start-to-exit benchmark: berth run vs crun run vs runc run vs podman run vs docker run,
# each starting `true` in the same busybox root filesystem. A benchmark, not a test: it prints
# the figures and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/run.sh [-h] [--runs N] [--warmup N] [--rounds N] [--only LIST] [--tmpfs]
                      [--network none] [--no-install] [--no-build] [--keep]

Times starting a container that runs `true` and exits, from the command's start to its exit,
with hyperfine (no intermediate shell: hyperfine -N), side by side in one run:

  berth        berth --root ROOT run --rm busybox true
  berth-nonet  berth --root ROOT run --rm --network none busybox true
               (with the default network only: the row compared with crun and runc, whose
               bundle gets a new, empty network namespace, as --network none does)
  crun         crun run --bundle BUNDLE ID          (run deletes its container on exit)
  crun-bare    crun run --bundle BUNDLE-BARE ID-bare  (runc spec's defaults: see below)
  runc         runc run --bundle BUNDLE ID
  podman       podman run --rm --ulimit nofile=20000:20000 --ulimit nproc=20000:20000 busybox true
               (a private store: podman --root/--runroot/--tmpdir in the work directory)
  docker       docker -H unix://SOCK run --rm busybox true
               (a private dockerd that this script starts and stops, with its own data root,
               socket and bridge, --iptables=false and --default-ulimit nofile/nproc)

With the default network, a detached berth container (`sleep`) runs in the berth root for the
whole measurement: the root's bridge then stays, as the default root's (/var/lib/berth,
bridge berth0) always does and as dockerd's does; without it a root other than the default
makes and removes its bridge and NAT rules with every container.

All use the same busybox root filesystem (scripts/make-busybox-image.sh): imported into a fresh
berth root (or $BERTH_ROOT), `podman import`ed, `docker import`ed, and unpacked as the rootfs of
an OCI bundle whose config.json is `runc spec` with process.args ["true"], terminal false, a
writable root (namespaces as runc spec makes them: pid, network, ipc, uts, mount), and what
berth gives a container by default: Docker's capability set and a seccomp profile
(containers-common's /usr/share/containers/seccomp.json, podman's default, derived from
Docker's, in the OCI form for those capabilities). crun-bare runs the same root with runc
spec's defaults (three capabilities, no seccomp), for a look at the runtime's own floor.

The timed runs are split into rounds (--rounds); each round is one hyperfine call over every
selected command, with its own warm-up runs, so the engines alternate and a slow phase of the
machine hits them all alike. Prints mean, median, stddev, min and max per engine and the ratios
of medians berth-nonet/crun (berth/crun with --network none), berth/runc, docker/berth and
podman/berth (goal: berth within 1.2x of crun, at least 10x faster than docker). Raw hyperfine JSON of every round, a merged
hyperfine-format JSON, a summary JSON, a CSV of every run and machine notes go to
$BENCH_DIR/results/run-<timestamp>[-tmpfs]/.

Missing peers are installed with scripts/install-deps.sh --peers. On a hybrid cgroup host whose
v2 hierarchy holds the hugetlb controller, it is moved to a v1 mount first (crun needs it;
shared/peers.md section 2); that mount is left in place. Everything else the script makes
(containers, dockerd, its bridge, mounts, the work directory) is removed on exit, also on error
or Ctrl-C.

Options:
  --runs N        timed runs per engine (default 20)
  --warmup N      untimed runs per engine in each round (default 2)
  --rounds N      alternating rounds the timed runs are split into (default 4)
  --only LIST     comma-separated subset of berth,crun,runc,podman,docker (default: all)
  --tmpfs         keep every engine's state, the bundle and the berth root in /dev/shm
                  (default: $BENCH_DIR/scratch, on disk)
  --network none  pass --network none to berth, podman and docker (default: each engine's
                  default network; crun and runc always get a new, empty network namespace)
  --no-install    do not install missing peers or tools (fail instead)
  --no-build      do not run cargo build when the berth binary is missing
  --keep          keep the work directory (bundle, stores, dockerd log) instead of removing it
  -h, --help      this help

Environment:
  BENCH_DIR   work directory (default /var/tmp/berth-bench): results/, scratch/
  BERTH       berth binary (default <repo>/target/release/berth; built with
              `cargo build --release -p berth` when missing)
  BERTH_ROOT  berth state root to use (busybox:latest is imported when it lacks it; the root
              is left in place); default: a fresh root in the work directory
  DOCKER      docker CLI (default: `docker` on PATH)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
DOCKER=${DOCKER:-docker}
ENGINES=(berth crun runc podman docker)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=20000:20000)
# Docker's default capability set (berth's too).
DOCKER_CAPS='["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]'

runs=20
warmup=2
rounds=4
only=berth,crun,runc,podman,docker
tmpfs=0
network=
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --tmpfs) tmpfs=1 ;;
        --network) network=${2:?--network needs a mode}; shift ;;
        --network=*) network=${1#--network=} ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$runs$warmup$rounds" in
    *[!0-9]*|'') echo "run.sh: --runs/--warmup/--rounds take numbers" >&2; exit 2 ;;
esac
[ "$runs" -ge 1 ] || { echo "run.sh: --runs must be at least 1" >&2; exit 2; }
[ "$rounds" -ge 1 ] || rounds=1
[ "$rounds" -le "$runs" ] || rounds=$runs
case "$network" in
    ''|none) ;;
    *) echo "run.sh: --network takes only 'none'" >&2; exit 2 ;;
esac
only=${only// /}
for e in ${only//,/ }; do
    case " ${ENGINES[*]} " in
        *" $e "*) ;;
        *) echo "run.sh: unknown engine in --only: $e (known: ${ENGINES[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${only//,/}" ] || { echo "run.sh: --only selects nothing" >&2; exit 2; }

log() { echo "run.sh: $*" >&2; }
die() { log "$*"; exit 1; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, mounts, dockerd)"

# ---------------------------------------------------------------------------------------------
# berth first: a missing `run` command is the likeliest failure and costs nothing to find.
if want berth; then
    if [ ! -x "$BERTH" ] && [ "$build" = 1 ] && [ "$BERTH" = "$BERTH_DEFAULT" ]; then
        log "berth not built; cargo build --release -p berth"
        (cd "$REPO_ROOT" && cargo build --release -p berth >&2) || log "cargo build failed"
    fi
    [ -x "$BERTH" ] || die "berth binary not found: $BERTH (cargo build --release -p berth, or set BERTH; --only crun,runc,podman,docker leaves berth out)"
    "$BERTH" run --help >/dev/null 2>&1 ||
        die "$BERTH has no working 'run' command (berth run --help fails); build a berth that has it, or leave berth out: --only crun,runc,podman,docker"
fi

# ---------------------------------------------------------------------------------------------
# Tools and peers
need=()
for t in hyperfine jq tar ip findmnt; do
    command -v "$t" >/dev/null || need+=("$t")
done
peers_missing=()
for t in crun runc podman; do
    if want "$t" && ! command -v "$t" >/dev/null; then peers_missing+=("$t"); fi
done
# The bundle's config.json comes from `runc spec`.
if want crun && ! want runc && ! command -v runc >/dev/null; then peers_missing+=(runc); fi
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

# crun (and podman, which runs crun) cannot set up v1 cgroups while the v2 hierarchy of a hybrid
# host holds hugetlb: move it to a v1 mount (shared/peers.md section 2). The controller can
# move only while no v2 cgroup uses it; the mount stays (other tools here rely on it too).
hugetlb_fix() {
    local u=/sys/fs/cgroup/unified/cgroup.controllers
    if [ ! -r "$u" ] || ! grep -qw hugetlb "$u"; then return 0; fi
    log "hugetlb controller is on the cgroup2 mount; moving it to /sys/fs/cgroup/hugetlb (v1)"
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
        log "WARNING: could not mount the hugetlb v1 hierarchy; crun and podman may fail"
    fi
}
if want crun || want podman || want berth; then hugetlb_fix; fi

# ---------------------------------------------------------------------------------------------
# Work directory, clean-up
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$tmpfs" = 1 ]; then
    mkdir -p /dev/shm
    WORK=$(mktemp -d "/dev/shm/berth-run-bench-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/run-$STAMP-tmpfs"
else
    mkdir -p "$BENCH_DIR/scratch"
    WORK=$(mktemp -d "$BENCH_DIR/scratch/run-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/run-$STAMP"
fi
mkdir -p "$RES/raw"
TAG=$$                              # names of this run's containers, bridge, runtime dir
CID_CRUN="berth-bench-$TAG-crun"
CID_RUNC="berth-bench-$TAG-runc"
DRUN="/run/berth-bench-$TAG"        # dockerd's exec root, socket, pid file (short: socket paths)
DSOCK="$DRUN/docker.sock"
BRIDGE="brbench$TAG"                # at most 15 characters
BRIDGE=${BRIDGE:0:15}
# podman: store in the work directory; run root and tmp dir under $DRUN (tmpfs, like podman's
# defaults; podman refuses a run root longer than 50 characters).
PODMAN=(podman --root "$WORK/podman" --runroot "$DRUN/podman-run" --tmpdir "$DRUN/podman-tmp"
    --storage-driver overlay)
dockerd_pid=
hf_pid=
bridge_made=0
berth_root_tmp=0

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
    if [ -n "$hf_pid" ]; then
        kill "$hf_pid" 2>/dev/null
        wait "$hf_pid" 2>/dev/null
        sleep 1                     # the command hyperfine was running finishes on its own
    fi
    if want crun; then
        crun delete -f "$CID_CRUN" >/dev/null 2>&1
        crun delete -f "$CID_CRUN-bare" >/dev/null 2>&1
    fi
    if want runc; then runc delete -f "$CID_RUNC" >/dev/null 2>&1; fi
    if want podman && [ -d "$WORK/podman" ]; then
        "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1
        "${PODMAN[@]}" system reset -f >/dev/null 2>&1
    fi
    if [ -n "$dockerd_pid" ]; then
        "$DOCKER" -H "unix://$DSOCK" ps -aq 2>/dev/null | xargs -r "$DOCKER" -H "unix://$DSOCK" rm -f >/dev/null 2>&1
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
    if [ -n "${KEEPER:-}" ]; then "$BERTH" --root "$BERTH_ROOT" rm -f "$KEEPER" >/dev/null 2>&1; fi
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

# ---------------------------------------------------------------------------------------------
# The busybox root filesystem, and each engine's copy of it.
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

# With the default network, a container that runs meanwhile keeps the root's bridge (see -h).
KEEPER=
if want berth && [ -z "$network" ]; then
    KEEPER="berth-bench-keeper-$TAG"
    "$BERTH" --root "$BERTH_ROOT" run -d --name "$KEEPER" busybox sleep 2147483647 >/dev/null ||
        die "berth: cannot start the container that keeps the bridge ($KEEPER)"
fi

BUNDLE="$WORK/bundle"
BUNDLE_BARE="$WORK/bundle-bare"
if want crun || want runc; then
    mkdir -p "$BUNDLE/rootfs"
    tar -C "$BUNDLE/rootfs" -xf "$TARBALL"
    runc spec --bundle "$BUNDLE"
    # What berth (and Docker) give a container by default: Docker's capability set and a
    # seccomp profile. `runc spec` has three capabilities and no profile; loading one costs
    # the runtime about a millisecond. The profile is containers-common's (podman's default,
    # derived from Docker's), put in the OCI form for these capabilities on x86-64.
    SECCOMP_PROFILE=/usr/share/containers/seccomp.json
    if [ -r "$SECCOMP_PROFILE" ]; then
        seccomp=$(jq --argjson caps "$DOCKER_CAPS" '
            def listed($set): . as $c | $set | index($c);
            {defaultAction, defaultErrnoRet,
             architectures: [.archMap[] | select(.architecture == "SCMP_ARCH_X86_64")
                             | .architecture, .subArchitectures[]],
             syscalls: [.syscalls[]
                | select((.includes.arches // null) == null or (.includes.arches | index("amd64")))
                | select((.includes.caps // null) == null or (.includes.caps | all(listed($caps))))
                | select((.excludes.arches // null) == null or (.excludes.arches | index("amd64") | not))
                | select((.excludes.caps // null) == null or (.excludes.caps | any(listed($caps)) | not))
                | {names, action} + (if .args then {args} else {} end)
                  + (if .errnoRet then {errnoRet} else {} end)]}' "$SECCOMP_PROFILE")
    else
        log "WARNING: no $SECCOMP_PROFILE (package golang-github-containers-common): the crun and runc bundle gets no seccomp profile"
        seccomp=null
    fi
    jq --argjson caps "$DOCKER_CAPS" --argjson seccomp "$seccomp" '
        .process.args = ["true"] | .process.terminal = false | .root.path = "rootfs"
        | .root.readonly = false
        | .process.capabilities = {bounding: $caps, effective: $caps, permitted: $caps}
        | if $seccomp then .linux.seccomp = $seccomp else . end' \
        "$BUNDLE/config.json" >"$BUNDLE/config.json.new"
    # The same without them (runc spec's three capabilities, no seccomp), for crun-bare.
    mkdir -p "$BUNDLE_BARE"
    jq --arg root "$BUNDLE/rootfs" '.process.args = ["true"] | .process.terminal = false
        | .root.path = $root | .root.readonly = false' "$BUNDLE/config.json" \
        >"$BUNDLE_BARE/config.json"
    mv "$BUNDLE/config.json.new" "$BUNDLE/config.json"
    # Leftovers of an earlier run of this script with the same PID would make `run` fail.
    if want crun; then crun delete -f "$CID_CRUN" >/dev/null 2>&1 || true; crun delete -f "$CID_CRUN-bare" >/dev/null 2>&1 || true; fi
    if want runc; then runc delete -f "$CID_RUNC" >/dev/null 2>&1 || true; fi
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
# Commands. hyperfine -N runs them without a shell (it splits the string like a shell would).
net=()
[ -z "$network" ] || net=(--network "$network")
declare -A CMD
quote() { local s; s=$(printf '%q ' "$@"); echo "${s% }"; }
CMD[berth]=$(quote "$BERTH" --root "${BERTH_ROOT:-}" run --rm "${net[@]}" busybox true)
CMD[berth-nonet]=$(quote "$BERTH" --root "${BERTH_ROOT:-}" run --rm --network none busybox true)
CMD[crun]=$(quote crun run --bundle "$BUNDLE" "$CID_CRUN")
CMD[crun-bare]=$(quote crun run --bundle "$BUNDLE_BARE" "$CID_CRUN-bare")
CMD[runc]=$(quote runc run --bundle "$BUNDLE" "$CID_RUNC")
CMD[podman]=$(quote "${PODMAN[@]}" run --rm "${ULIMITS[@]}" "${net[@]}" busybox true)
CMD[docker]=$(quote "$DOCKER" -H "unix://$DSOCK" run --rm "${net[@]}" busybox true)

# Each command once, by hand, so that a failure shows the engine's own message (hyperfine hides
# the output and only says that a command failed).
selected=()
for e in berth berth-nonet crun crun-bare runc podman docker; do
    case "$e" in
        berth-nonet) want berth && [ -z "$network" ] || continue ;;
        crun-bare) want crun || continue ;;
        *) want "$e" || continue ;;
    esac
    selected+=("$e")
    if ! out=$(eval "${CMD[$e]}" </dev/null 2>&1); then
        log "$e: the command fails: ${CMD[$e]}"
        printf '%s\n' "$out" | tail -n 20 >&2
        die "$e does not work here (see above; --only leaves it out)"
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
    echo "runs:      $runs timed per engine in $rounds rounds, $warmup warm-up per round, engines: ${selected[*]}"
    echo "network:   ${network:-default}"
    echo "hyperfine: $(hyperfine --version)"
    for e in "${selected[@]}"; do
        case "$e" in
            berth) echo "berth:     $BERTH ($(version_of "$BERTH" --version)); root $BERTH_ROOT${KEEPER:+; $KEEPER runs meanwhile, keeping the bridge of the root}" ;;
            berth-nonet) echo "berth-nonet: the same, with --network none" ;;
            crun) echo "crun:      $(version_of crun --version)" ;;
            crun-bare) echo "crun-bare: crun on runc spec's defaults (3 capabilities, no seccomp)" ;;
            runc) echo "runc:      $(version_of runc --version)" ;;
            podman) echo "podman:    $(version_of podman --version) ($(version_of "${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}'))" ;;
            docker) echo "docker:    client $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Client.Version}}'), dockerd $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Server.Version}} (runtime {{range .Server.Components}}{{if eq .Name "runc"}}runc {{.Version}}{{end}}{{end}})')" ;;
        esac
        echo "  command: ${CMD[$e]}"
    done
    echo "git:       $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# Timed rounds
hf_args=()
for e in "${selected[@]}"; do hf_args+=(--command-name "$e" "${CMD[$e]}"); done
per=$((runs / rounds))
extra=$((runs % rounds))
for ((r = 1; r <= rounds; r++)); do
    n=$per
    [ "$r" -gt "$extra" ] || n=$((n + 1))
    out="$RES/raw/round-$(printf %03d "$r").json"
    # hyperfine's own messages (outlier warnings) go to a log next to the round's JSON.
    # In the background, so that a signal to this script cleans up at once (not after the round).
    hyperfine -N --warmup "$warmup" --runs "$n" --style none --export-json "$out" \
        "${hf_args[@]}" >"${out%.json}.log" 2>&1 &
    hf_pid=$!
    hf_rc=0
    wait "$hf_pid" || hf_rc=$?
    hf_pid=
    if [ "$hf_rc" -ne 0 ]; then
        tail -n 5 "${out%.json}.log" >&2
        die "hyperfine failed in round $r (a command exited non-zero; the commands are in $RES/machine.txt)"
    fi
    printf 'run.sh: round %d/%d (%d runs each): %s\n' "$r" "$rounds" "$n" \
        "$(jq -r '[.results[] | "\(.command) \(.median * 1000 | . * 10 | round / 10)ms"] | join("  ")' "$out")" >&2
done

# Leftovers: `run` deletes its container, `--rm` removes it; check that nothing stayed.
left=()
if want crun && crun state "$CID_CRUN" >/dev/null 2>&1; then left+=("crun:$CID_CRUN"); fi
if want crun && crun state "$CID_CRUN-bare" >/dev/null 2>&1; then left+=("crun:$CID_CRUN-bare"); fi
if want runc && runc state "$CID_RUNC" >/dev/null 2>&1; then left+=("runc:$CID_RUNC"); fi
if want podman && [ -n "$("${PODMAN[@]}" ps -aq 2>/dev/null)" ]; then left+=(podman); fi
if want docker && [ -n "$("$DOCKER" -H "unix://$DSOCK" ps -aq 2>/dev/null)" ]; then left+=(docker); fi
if want berth && [ -n "$("$BERTH" --root "$BERTH_ROOT" ps -a --format '{{.Names}}' 2>/dev/null | grep -vx "${KEEPER:-}" || true)" ]; then left+=(berth); fi
[ ${#left[@]} -eq 0 ] || log "WARNING: containers left behind after the runs (removed now): ${left[*]}"

# ---------------------------------------------------------------------------------------------
# Merge rounds (hyperfine's format), statistics, ratios.
jq -s '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def mean: add / length;
    def stddev: if length < 2 then null
                else (mean as $m | map((. - $m) * (. - $m)) | add / (length - 1) | sqrt) end;
    [.[].results[]] | group_by(.command)
    | sort_by(.[0].command | {"berth": 0, "berth-nonet": 1, "crun": 2, "crun-bare": 3, "runc": 4, "podman": 5, "docker": 6}[.] // 9)
    | map((map(.times) | add) as $t
        | {command: .[0].command, mean: ($t | mean), stddev: ($t | stddev), median: ($t | median),
           user: (map(.user * (.times | length)) | add / ($t | length)),
           system: (map(.system * (.times | length)) | add / ($t | length)),
           min: ($t | min), max: ($t | max), times: $t,
           exit_codes: (map(.exit_codes) | add)})
    | {results: .}
' "$RES"/raw/round-*.json >"$RES/hyperfine.json"

jq --argjson runs "$runs" --argjson rounds "$rounds" --argjson warmup "$warmup" \
    --arg network "${network:-default}" '
    (.results | map({(.command): .}) | add) as $r
    | def ratio(a; b; k): if $r[a] and $r[b] then {(a + "/" + b): ($r[a][k] / $r[b][k])} else {} end;
    # crun and runc get an empty network namespace: the berth row to compare them with is the
    # one without a network (berth-nonet, or berth itself under --network none).
    (if $r["berth-nonet"] then "berth-nonet" else "berth" end) as $bare
    | def ratios(k): {} + ratio($bare; "crun"; k) + ratio($bare; "crun-bare"; k) + ratio($bare; "runc"; k)
        + ratio("docker"; "berth"; k) + ratio("podman"; "berth"; k)
        + (if $bare != "berth" then ratio("berth"; $bare; k) else {} end)
        + ratio("runc"; "crun"; k) + ratio("podman"; "crun"; k) + ratio("docker"; "crun"; k);
    {runs: $runs, rounds: $rounds, warmup_per_round: $warmup, network: $network,
     results: (.results | map(del(.times, .exit_codes))),
     ratios_of_medians: ratios("median"), ratios_of_means: ratios("mean"),
     goal_ratios: {crun: ($bare + "/crun"), docker: "docker/berth"},
     goals: {"berth/crun at most": 1.2, "docker/berth at least": 10}}
    | .goals_met = (if $r.berth and $r.crun and $r.docker then
        {"berth/crun": (.ratios_of_medians[$bare + "/crun"] <= 1.2),
         "docker/berth": (.ratios_of_medians["docker/berth"] >= 10)} else null end)
' "$RES/hyperfine.json" >"$RES/summary.json"

{
    echo "engine,run,seconds"
    jq -r '.results[] | .command as $c | range(0; .times | length) as $i
        | [$c, $i + 1, .times[$i]] | @csv' "$RES/hyperfine.json"
} >"$RES/runs.csv"

{
    echo
    echo "container start to exit (\`true\` in busybox), $runs runs per engine, network: ${network:-default}"
    printf '%-12s %10s %10s %10s %10s %10s %9s %9s\n' engine mean median stddev min max user sys
    jq -r '.results[] | [.command] + ([.mean, .median, (.stddev // 0), .min, .max, .user, .system]
        | map(. * 1000)) | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r c mean med sd mn mx u s; do
            printf '%-12s %8.1fms %8.1fms %8.1fms %8.1fms %8.1fms %7.1fms %7.1fms\n' "$c" \
                "$mean" "$med" "$sd" "$mn" "$mx" "$u" "$s"
        done
    echo
    echo "ratios of medians:"
    jq -r '.ratios_of_medians | if length == 0 then "  (none: needs two engines that are compared)"
        else to_entries[] | "  \(.key) = \(.value * 100 | round / 100)" end' "$RES/summary.json"
    echo
    echo "goal: berth within 1.2x of crun (berth/crun <= 1.2) and at least 10x faster than docker (docker/berth >= 10)"
    jq -r '
        def verdict(k; ok): "  \(k) = \(.ratios_of_medians[k] * 100 | round / 100): \(if ok then "met" else "NOT met" end)";
        if .goals_met == null then "  not checked: needs berth, crun and docker in the same run"
        else verdict(.goal_ratios.crun; .goals_met["berth/crun"]), verdict("docker/berth"; .goals_met["docker/berth"])
        end' "$RES/summary.json"
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
