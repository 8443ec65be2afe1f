#!/usr/bin/env bash
# Network benchmark through a published port: bulk TCP throughput and short-connection latency
# to a server in a container published on 127.0.0.1, berth and docker side by side. A
# benchmark, not a test: it prints the figures and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/network.sh [-h] [--size MIB] [--reps N] [--requests N] [--rounds N]
                          [--warmup N] [--body BYTES] [--only LIST] [--no-direct]
                          [--no-install] [--no-build] [--keep]

Starts one busybox container per engine that serves, on ports published on 127.0.0.1
(-p 127.0.0.1:HOSTPORT:PORT, host ports picked free at start):

  5001  a sink: nc -ll -e dd of=/dev/null bs=1M iflag=fullblock (answers "N+0 records in")
  5002  a source: nc -ll -e sh: reads a count N, then dd if=/dev/zero bs=1M count=N
  8080  busybox httpd serving a --body byte /index.html (a process forked per connection)

and measures from the host with benches/netclient.py (python3, standard library only):

  throughput  --size MiB per transfer, one TCP connection each: upload (host to container,
              until the server has counted every MiB and closed) and download (container to
              host, until EOF); MB/s = 10^6 bytes/s, median of --reps transfers
  latency     --requests sequential HTTP/1.0 GETs per engine, each on a new connection,
              timed from before connect() to the server's close; median and p99 in ms

Both engines relay a published port in user space: docker through docker-proxy (dockerd runs
with --iptables=false, so there is no DNAT and every connection goes through the proxy, one
docker-proxy process per published port), berth through the proxy threads of the container's
monitor (ARCHITECTURE.md, ports.rs: two threads per TCP connection, splicing through a pipe).
The same measurements also go to each container's own address and port on its bridge ("direct",
no proxy: the floor both proxies add to; --no-direct leaves them out). The proxies' CPU time
(user + system of the berth monitor and of the docker-proxy process, from /proc) is read before
and after each transfer and each batch of requests.

  berth   berth --root ROOT run -d -p ... busybox sh -c SERVER   (a fresh root in the work
          directory: its own bridge, which goes with its last container)
  docker  docker -H unix://SOCK run -d -p ... busybox sh -c SERVER   (a private dockerd that
          this script starts and stops, with its own data root, socket and bridge,
          --iptables=false, --ip-forward=false and --default-ulimit)

Both use the same busybox image (scripts/make-busybox-image.sh): imported into the berth root
and `docker import`ed. The engines alternate: in each latency round (--rounds) and each
transfer repetition, every path (and direction) is measured for berth and docker back to
back, the order swapped from one round or repetition to the next. Untimed warm-up first:
--warmup requests and one 64 MiB transfer each way per engine and path. Prints per engine
the medians, and the ratios docker/berth for latency and berth/docker for throughput (both:
above 1, berth is faster). Raw data (every transfer, every request's latency), a summary JSON
and text and machine notes go to $BENCH_DIR/results/network-<timestamp>/.

Proxy variables (http_proxy, HTTPS_PROXY, ...) are unset for every client; curl gets
--noproxy '*'. Missing tools are installed with scripts/install-deps.sh --peers. On a hybrid
cgroup host whose v2 hierarchy holds the hugetlb controller, it is moved to a v1 mount first
(shared/peers.md section 2); that mount is left in place. Everything else the script makes
(the containers, dockerd, its bridge, berth's root and bridge, mounts, the work directory) is
removed on exit, also on error or Ctrl-C.

Options:
  --size MIB      MiB per transfer (default 1024)
  --reps N        timed transfers per engine, path and direction (default 7)
  --requests N    timed requests per engine and path (default 2000)
  --rounds N      alternating rounds the requests are split into (default 4)
  --warmup N      untimed requests per engine and path before them (default 100)
  --body BYTES    size of the file httpd serves (default 1024)
  --only LIST     comma-separated subset of berth,docker (default: both)
  --no-direct     measure only through the published ports, not also to the containers'
                  own addresses
  --no-install    do not install missing tools or peers (fail instead)
  --no-build      do not run cargo build when the berth binary is missing
  --keep          keep the work directory (berth root, dockerd data and log)
  -h, --help      this help

Environment:
  BENCH_DIR   work directory (default /var/tmp/berth-bench): results/, scratch/
  BERTH       berth binary (default <repo>/target/release/berth; built with
              `cargo build --release -p berth` when missing)
  DOCKER      docker CLI (default: `docker` on PATH)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
DOCKER=${DOCKER:-docker}
CLIENT="$REPO_ROOT/benches/netclient.py"
ENGINES=(berth docker)
WARM_MIB=64

size=1024
reps=7
requests=2000
rounds=4
warmup=100
body=1024
only=berth,docker
direct=1
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --size) size=${2:?--size needs a number of MiB}; shift ;;
        --reps) reps=${2:?--reps needs a number}; shift ;;
        --requests) requests=${2:?--requests needs a number}; shift ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --body) body=${2:?--body needs a number of bytes}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --no-direct) direct=0 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "network.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$size$reps$requests$rounds$warmup$body" in
    *[!0-9]*|'') echo "network.sh: --size/--reps/--requests/--rounds/--warmup/--body take numbers" >&2; exit 2 ;;
esac
[ "$size" -ge 1 ] || { echo "network.sh: --size must be at least 1" >&2; exit 2; }
[ "$reps" -ge 1 ] || { echo "network.sh: --reps must be at least 1" >&2; exit 2; }
[ "$requests" -ge 1 ] || { echo "network.sh: --requests must be at least 1" >&2; exit 2; }
[ "$rounds" -ge 1 ] || rounds=1
[ "$rounds" -le "$requests" ] || rounds=$requests
[ "$WARM_MIB" -le "$size" ] || WARM_MIB=$size
only=${only// /}
for e in ${only//,/ }; do
    case " ${ENGINES[*]} " in
        *" $e "*) ;;
        *) echo "network.sh: unknown engine in --only: $e (known: ${ENGINES[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${only//,/}" ] || { echo "network.sh: --only selects nothing" >&2; exit 2; }

log() { echo "network.sh: $*" >&2; }
die() { log "$*"; exit 1; }
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, bridges, dockerd)"
[ -r "$CLIENT" ] || die "the client is missing: $CLIENT"

# The clients talk to 127.0.0.1 and to the bridges: no proxy of any kind.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ftp_proxy FTP_PROXY all_proxy ALL_PROXY \
    no_proxy NO_PROXY

# ---------------------------------------------------------------------------------------------
# berth first: a missing command is the likeliest failure and costs nothing to find.
if want berth; then
    if [ ! -x "$BERTH" ] && [ "$build" = 1 ] && [ "$BERTH" = "$BERTH_DEFAULT" ]; then
        log "berth not built; cargo build --release -p berth"
        (cd "$REPO_ROOT" && cargo build --release -p berth >&2) || log "cargo build failed"
    fi
    [ -x "$BERTH" ] || die "berth binary not found: $BERTH (cargo build --release -p berth, or set BERTH; --only docker leaves berth out)"
    for c in run rm inspect; do
        "$BERTH" "$c" --help >/dev/null 2>&1 ||
            die "$BERTH has no working '$c' command (berth $c --help fails); build a berth that has it, or leave berth out: --only docker"
    done
    "$BERTH" run --help 2>&1 | grep -q -- '--publish' ||
        die "$BERTH run has no --publish; build a berth that has it, or leave berth out: --only docker"
fi

# ---------------------------------------------------------------------------------------------
# Tools and peers
need=()
for t in python3 curl jq tar ip ss findmnt; do
    command -v "$t" >/dev/null || need+=("$t")
done
peers_missing=()
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

# Containers cannot set up v1 cgroups while the v2 hierarchy of a hybrid host holds hugetlb:
# move it to a v1 mount (shared/peers.md section 2). The controller can move only while no v2
# cgroup uses it; the mount stays (other tools here rely on it too).
hugetlb_fix() {
    local u=/sys/fs/cgroup/unified/cgroup.controllers
    if [ ! -r "$u" ] || ! grep -qw hugetlb "$u"; then return 0; fi
    log "hugetlb controller is on the cgroup2 mount; moving it to /sys/fs/cgroup/hugetlb (v1)"
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
        log "WARNING: could not mount the hugetlb v1 hierarchy; containers may fail to start"
    fi
}
hugetlb_fix

# ---------------------------------------------------------------------------------------------
# Work directory, clean-up
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$BENCH_DIR/scratch"
WORK=$(mktemp -d "$BENCH_DIR/scratch/network-$STAMP.XXXXXX")
RES="$BENCH_DIR/results/network-$STAMP"
mkdir -p "$RES/raw"
TAG=$$                              # names of this run's bridge, runtime dir
DRUN="/run/berth-net-$TAG"          # dockerd's exec root, socket, pid file (short: socket paths)
DSOCK="$DRUN/docker.sock"
BRIDGE="brnet$TAG"                  # at most 15 characters
BRIDGE=${BRIDGE:0:15}
BERTH_ROOT="$WORK/berth"
dockerd_pid=
bg_pid=
bridge_made=0
berth_bridge=
declare -A CID=()                   # each engine's container, while it exists

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
    fi
    if [ -d "$BERTH_ROOT" ]; then
        {
            "$BERTH" --root "$BERTH_ROOT" ps -aq
            [ -z "${CID[berth]:-}" ] || echo "${CID[berth]}"
        } 2>/dev/null | sort -u | xargs -r "$BERTH" --root "$BERTH_ROOT" rm -f >/dev/null 2>&1
        # A root's bridge and NAT chains go with its last container; check that they did.
        if [ -n "$berth_bridge" ] && ip link show "$berth_bridge" >/dev/null 2>&1; then
            log "WARNING: berth's bridge $berth_bridge is still there after its last container was removed; deleting it"
            ip link del "$berth_bridge" 2>/dev/null
        fi
        if [ -n "$berth_bridge" ] && command -v nft >/dev/null &&
            nft list chain ip berth "nat-$berth_bridge" >/dev/null 2>&1; then
            log "WARNING: berth's NAT chains for $berth_bridge are still there; deleting them"
            nft delete chain ip berth "nat-$berth_bridge" 2>/dev/null
            nft delete chain ip berth "fwd-$berth_bridge" 2>/dev/null
        fi
    fi
    if [ -n "$dockerd_pid" ]; then
        {
            "$DOCKER" -H "unix://$DSOCK" ps -aq
            [ -z "${CID[docker]:-}" ] || echo "${CID[docker]}"
        } 2>/dev/null | sort -u | xargs -r "$DOCKER" -H "unix://$DSOCK" rm -f >/dev/null 2>&1
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
    umount_under "$BERTH_ROOT"
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
# after the command.
bg_run() {
    local out=$1 err=$2 rc=0
    shift 2
    "$@" </dev/null >"$out" 2>"$err" &
    bg_pid=$!
    wait "$bg_pid" || rc=$?
    bg_pid=
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# The busybox image, in each engine.
TARBALL="$WORK/busybox.tar"
if want berth; then
    log "berth: importing busybox:latest into $BERTH_ROOT"
    BERTH="$BERTH" BERTH_ROOT="$BERTH_ROOT" "$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" >/dev/null
else
    "$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" --tar-only
fi

# A private dockerd: its own data root, exec root, socket, pid file and bridge.
start_dockerd() {
    local a b i
    mkdir -p "$WORK/docker" "$DRUN/exec"
    # A /24 no interface here uses, picked from this run's PID.
    for ((i = 0; i < 200; i++)); do
        a=$((100 + (TAG + i) % 100)); b=$(((TAG / 100 + i) % 250 + 1))
        ip -4 -o addr show | grep -q " 10\.$a\.$b\." || break
    done
    ip link add "$BRIDGE" type bridge
    bridge_made=1
    ip addr add "10.$a.$b.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    log "docker: starting a private dockerd (socket $DSOCK, data root $WORK/docker)"
    dockerd --host "unix://$DSOCK" --data-root "$WORK/docker" --exec-root "$DRUN/exec" \
        --pidfile "$DRUN/dockerd.pid" --bridge "$BRIDGE" --iptables=false --ip-forward=false \
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
# The servers: one container per engine.
# The container's shell: httpd (forks per connection), a sink and a source on nc -ll (a
# process per connection, with the socket as its stdin and stdout), then waits; exits 0 on
# SIGTERM.
SERVER="mkdir -p /www && printf '%${body}s' '' >/www/index.html
httpd -f -p 8080 -h /www &
nc -ll -p 5001 -e sh -c 'exec dd of=/dev/null bs=1M iflag=fullblock 2>&1' &
nc -ll -p 5002 -e sh -c 'read n; exec dd if=/dev/zero bs=1M count=\"\$n\" 2>/dev/null' &
trap 'exit 0' TERM
wait"
declare -A CPORT=([up]=5001 [down]=5002 [http]=8080)

selected=()
for e in "${ENGINES[@]}"; do
    if want "$e"; then selected+=("$e"); fi
done

# Free host ports, three per engine, picked by binding port 0 (held until all are picked).
read -r -a FREE <<<"$(python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
' $((3 * ${#selected[@]})))"
declare -A HPORT=() IP=() PIDS=()
i=0
for e in "${selected[@]}"; do
    for k in up down http; do HPORT[$e,$k]=${FREE[$i]}; i=$((i + 1)); done
done

cli() {
    case "$1" in
        berth) CLI=("$BERTH" --root "$BERTH_ROOT") ;;
        docker) CLI=("$DOCKER" -H "unix://$DSOCK") ;;
    esac
}
quote() { local s; s=$(printf '%q ' "$@"); echo "${s% }"; }
run_args() {
    local k
    RUN_ARGS=(run -d)
    for k in up down http; do RUN_ARGS+=(-p "127.0.0.1:${HPORT[$1,$k]}:${CPORT[$k]}"); done
    RUN_ARGS+=(busybox sh -c "$SERVER")
}

# The PID of the process listening on 127.0.0.1:PORT (the proxy), or nothing.
listener_pid() {
    ss -Htlnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2
}

for e in "${selected[@]}"; do
    cli "$e"
    run_args "$e"
    log "$e: starting the server container (ports 127.0.0.1:${HPORT[$e,up]}, ${HPORT[$e,down]}, ${HPORT[$e,http]})"
    if ! "${CLI[@]}" "${RUN_ARGS[@]}" </dev/null >"$WORK/run-$e.out" 2>"$WORK/run-$e.err"; then
        cat "$WORK/run-$e.err" >&2
        die "$e: run -d failed: $(quote "${CLI[@]}" "${RUN_ARGS[@]}")"
    fi
    CID[$e]=$(tail -n 1 "$WORK/run-$e.out")
    [ -n "${CID[$e]}" ] || die "$e: run -d printed no container ID"
    IP[$e]=$("${CLI[@]}" inspect --format '{{.NetworkSettings.IPAddress}}' "${CID[$e]}" </dev/null)
    [ -n "${IP[$e]}" ] || die "$e: the container has no address (inspect .NetworkSettings.IPAddress is empty)"
    if [ "$e" = berth ]; then
        berth_bridge=$(ip -o route get "${IP[$e]}" 2>/dev/null | grep -o 'dev [^ ]*' | cut -d' ' -f2 || true)
    fi
done

# Paths: through the published port (the proxy), and to the container directly.
PATHS=(published)
[ "$direct" = 0 ] || PATHS+=(direct)
# target ENGINE PATH KIND: sets HOST, PORT and PPIDS (the proxy's PID, "-" for none).
target() {
    if [ "$2" = published ]; then
        HOST=127.0.0.1 PORT=${HPORT[$1,$3]} PPIDS=${PIDS[$1,$3]:--}
    else
        HOST=${IP[$1]} PORT=${CPORT[$3]} PPIDS=-
    fi
}

# Wait until every server answers on every path: the container's processes start after run -d
# returns, and until they listen a proxy takes the connection and drops it.
ready() {
    local e=$1 p k
    for p in "${PATHS[@]}"; do
        target "$e" "$p" http
        curl --noproxy '*' -fsS -o /dev/null --max-time 5 "http://$HOST:$PORT/index.html" 2>/dev/null || return 1
        target "$e" "$p" up
        python3 "$CLIENT" up "$HOST" "$PORT" 1 - >/dev/null 2>&1 || return 1
        target "$e" "$p" down
        python3 "$CLIENT" down "$HOST" "$PORT" 1 - >/dev/null 2>&1 || return 1
    done
    for k in up down http; do
        PIDS[$e,$k]=$(listener_pid "${HPORT[$e,$k]}")
        [ -n "${PIDS[$e,$k]}" ] || log "WARNING: $e: no process found listening on 127.0.0.1:${HPORT[$e,$k]}; its proxy CPU time is not recorded"
    done
}
for e in "${selected[@]}"; do
    t0=$SECONDS
    until ready "$e"; do
        [ $((SECONDS - t0)) -lt 30 ] || {
            cli "$e"
            "${CLI[@]}" logs "${CID[$e]}" 2>&1 | tail -n 10 >&2
            die "$e: the servers did not answer on every path within 30 s"
        }
        sleep 0.2
    done
    log "$e: servers answer (container ${CID[$e]:0:12}, address ${IP[$e]}, proxy pids: ${PIDS[$e,up]:-?} ${PIDS[$e,down]:-?} ${PIDS[$e,http]:-?})"
done

# ---------------------------------------------------------------------------------------------
# Machine notes
version_of() { "$@" 2>&1 | head -n1 || true; }
proc_name() { if [ -n "$1" ]; then cat "/proc/$1/comm" 2>/dev/null || echo "?"; else echo "?"; fi; }
{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(uname -n)"
    echo "kernel:    $(uname -srvm)"
    echo "nproc:     $(nproc)"
    echo "cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load:      $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "throughput: $size MiB per transfer, $reps transfers per engine, path and direction (after a $WARM_MIB MiB warm-up)"
    echo "latency:   $requests requests per engine and path in $rounds rounds, $warmup warm-up; body $body bytes"
    echo "paths:     ${PATHS[*]}; engines: ${selected[*]}"
    echo "client:    $(python3 --version 2>&1) ($(command -v python3)), $CLIENT"
    echo "tcp:       rmem $(tr '\t' ' ' 2>/dev/null </proc/sys/net/ipv4/tcp_rmem), wmem $(tr '\t' ' ' 2>/dev/null </proc/sys/net/ipv4/tcp_wmem)"
    for e in "${selected[@]}"; do
        case "$e" in
            berth) echo "berth:     $BERTH ($(version_of "$BERTH" --version); sha256 $(sha256sum "$BERTH" | cut -c1-16), $(date -u -r "$BERTH" +%Y-%m-%dT%H:%M:%SZ)); root $BERTH_ROOT, bridge ${berth_bridge:-?}" ;;
            docker) echo "docker:    client $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Client.Version}}'), dockerd $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Server.Version}} (runtime {{range .Server.Components}}{{if eq .Name "runc"}}runc {{.Version}}{{end}}{{end}})'), bridge $BRIDGE" ;;
        esac
        cli "$e"
        run_args "$e"
        echo "  run:     $(quote "${CLI[@]}" "${RUN_ARGS[@]}")"
        echo "  address: ${IP[$e]}; proxies: $(for k in up down http; do printf '%s=%s(%s) ' "${HPORT[$e,$k]}" "${PIDS[$e,$k]:-?}" "$(proc_name "${PIDS[$e,$k]:-}")"; done)"
    done
    echo "git:       $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

# order N: the selected engines, reversed on odd N.
order() {
    if [ $(($1 % 2)) -eq 1 ]; then
        local i
        for ((i = ${#selected[@]} - 1; i >= 0; i--)); do echo "${selected[$i]}"; done
    else
        printf '%s\n' "${selected[@]}"
    fi
}

# ---------------------------------------------------------------------------------------------
# Latency: short HTTP requests, each on a new connection.
# requests_batch ENGINE PATH ROUND COUNT: appends a JSON line to raw/latency.jsonl (round 0:
# warm-up).
requests_batch() {
    local e=$1 p=$2 r=$3 n=$4
    target "$e" "$p" http
    bg_run "$WORK/batch.json" "$WORK/batch.err" python3 "$CLIENT" http "$HOST" "$PORT" "$n" "$body" "$PPIDS" ||
        { cat "$WORK/batch.err" >&2; die "$e: the HTTP client failed ($p, round $r)"; }
    jq -c --arg e "$e" --arg p "$p" --argjson r "$r" '{engine: $e, path: $p, round: $r} + .' \
        "$WORK/batch.json" >>"$RES/raw/latency.jsonl"
    jq -r --arg e "$e" --arg p "$p" '
        if .errors > 0 then "network.sh: WARNING: \($e) \($p): \(.errors) of \(.errors + .n) requests failed; the first: \(.first_error)" else empty end' \
        "$WORK/batch.json" >&2
}
: >"$RES/raw/latency.jsonl"
log "latency: $warmup warm-up and $requests timed requests per engine and path, in $rounds rounds"
t_start=$SECONDS
for p in "${PATHS[@]}"; do
    for e in "${selected[@]}"; do requests_batch "$e" "$p" 0 "$warmup"; done
done
per=$((requests / rounds))
extra=$((requests % rounds))
for ((r = 1; r <= rounds; r++)); do
    n=$per
    [ "$r" -gt "$extra" ] || n=$((n + 1))
    for p in "${PATHS[@]}"; do
        while read -r e; do requests_batch "$e" "$p" "$r" "$n"; done < <(order "$r")
    done
    printf 'network.sh: latency round %d/%d (%d requests each), medians: %s\n' "$r" "$rounds" "$n" \
        "$(jq -rs --argjson r "$r" '[.[] | select(.round == $r)
            | "\(.engine) \(.path) \(.us | sort | .[length / 2 | floor] / 1000)ms"] | join("  ")' \
            "$RES/raw/latency.jsonl")" >&2
done
log "latency: took $((SECONDS - t_start)) s"

# ---------------------------------------------------------------------------------------------
# Throughput: bulk transfers, one connection each.
# transfer ENGINE PATH DIRECTION REP MIB: appends a JSON line to raw/throughput.jsonl (rep 0:
# warm-up).
transfer() {
    local e=$1 p=$2 d=$3 r=$4 mib=$5
    target "$e" "$p" "$d"
    bg_run "$WORK/transfer.json" "$WORK/transfer.err" python3 "$CLIENT" "$d" "$HOST" "$PORT" "$mib" "$PPIDS" ||
        { cat "$WORK/transfer.err" >&2; die "$e: the $d transfer failed ($p, repetition $r)"; }
    jq -c --arg e "$e" --arg p "$p" --arg d "$d" --argjson r "$r" \
        '{engine: $e, path: $p, direction: $d, rep: $r} + . + {mb_s: (.bytes / .seconds / 1e6)}' \
        "$WORK/transfer.json" >>"$RES/raw/throughput.jsonl"
}
: >"$RES/raw/throughput.jsonl"
log "throughput: a $WARM_MIB MiB warm-up and $reps timed transfers of $size MiB per engine, path and direction"
t_start=$SECONDS
for p in "${PATHS[@]}"; do
    for e in "${selected[@]}"; do
        for d in up down; do transfer "$e" "$p" "$d" 0 "$WARM_MIB"; done
    done
done
for ((r = 1; r <= reps; r++)); do
    for p in "${PATHS[@]}"; do
        for d in up down; do
            while read -r e; do transfer "$e" "$p" "$d" "$r" "$size"; done < <(order "$r")
        done
    done
    printf 'network.sh: transfer %d/%d: %s\n' "$r" "$reps" \
        "$(jq -rs --argjson r "$r" '[.[] | select(.rep == $r)
            | "\(.engine) \(.path) \(.direction) \(.mb_s | round)MB/s"] | join("  ")' \
            "$RES/raw/throughput.jsonl")" >&2
done
log "throughput: took $((SECONDS - t_start)) s"

# ---------------------------------------------------------------------------------------------
# Statistics, ratios.
jq -n --slurpfile lat "$RES/raw/latency.jsonl" --slurpfile thr "$RES/raw/throughput.jsonl" \
    --argjson size "$size" --argjson reps "$reps" --argjson requests "$requests" \
    --argjson rounds "$rounds" --argjson warmup "$warmup" --argjson body "$body" '
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def pct(p): sort | if length == 0 then null
                       else .[((length * p / 100) | ceil) - 1 | if . < 0 then 0 else . end] end;
    def sum_or_null: if any(. == null) then null else add end;
    ($lat | map(select(.round > 0))) as $l
    | ($thr | map(select(.rep > 0))) as $t
    | {latency: {requests: $requests, rounds: $rounds, warmup: $warmup, body_bytes: $body,
        results: [$l | group_by([.engine, .path])[] | (map(.us) | add | map(. / 1000)) as $ms
          | {engine: .[0].engine, path: .[0].path, n: ($ms | length),
             errors: (map(.errors) | add),
             median_ms: ($ms | median), p90_ms: ($ms | pct(90)), p99_ms: ($ms | pct(99)),
             mean_ms: ($ms | add / length), min_ms: ($ms | min), max_ms: ($ms | max),
             proxy_cpu_us_per_request: ((map(.proxy_cpu_s) | sum_or_null) as $c
               | if $c == null then null else $c / ($ms | length) * 1e6 end)}]},
       throughput: {mib_per_transfer: $size, reps: $reps,
        results: [$t | group_by([.engine, .path, .direction])[] | (map(.mb_s)) as $v
          | {engine: .[0].engine, path: .[0].path, direction: .[0].direction, n: ($v | length),
             median_mb_s: ($v | median), min_mb_s: ($v | min), max_mb_s: ($v | max),
             proxy_cpu_s_per_gib: ((map(.proxy_cpu_s) | sum_or_null) as $c
               | if $c == null then null else $c / (map(.bytes) | add) * 1073741824 end)}]}}
    | (.latency.results | map({("\(.engine) \(.path)"): .}) | add // {}) as $L
    | (.throughput.results | map({("\(.engine) \(.path) \(.direction)"): .}) | add // {}) as $T
    | .ratios = ([(.latency.results | map(.path) | unique)[] as $p
        | select($L["berth \($p)"] and $L["docker \($p)"])
        | {("latency \($p) median docker/berth"): ($L["docker \($p)"].median_ms / $L["berth \($p)"].median_ms),
           ("latency \($p) p99 docker/berth"): ($L["docker \($p)"].p99_ms / $L["berth \($p)"].p99_ms)}]
      + [(.throughput.results | map([.path, .direction]) | unique)[] as [$p, $d]
        | select($T["berth \($p) \($d)"] and $T["docker \($p) \($d)"])
        | {("throughput \($p) \($d) berth/docker"):
            ($T["berth \($p) \($d)"].median_mb_s / $T["docker \($p) \($d)"].median_mb_s)}]
      | add // {})
' >"$RES/summary.json"

{
    echo "engine,path,direction,rep,bytes,seconds,mb_s,proxy_cpu_s"
    jq -r 'select(.rep > 0) | [.engine, .path, .direction, .rep, .bytes, .seconds, .mb_s, .proxy_cpu_s] | @csv' \
        "$RES/raw/throughput.jsonl"
} >"$RES/throughput.csv"
{
    echo "engine,path,round,ms"
    jq -r 'select(.round > 0) | .engine as $e | .path as $p | .round as $r | .us[] | [$e, $p, $r, . / 1000] | @csv' \
        "$RES/raw/latency.jsonl"
} >"$RES/latency.csv"

both=0
if want berth && want docker; then both=1; fi
# fmt WIDTH DECIMALS VALUE: VALUE right-aligned, or "-" for none.
fmt() { if [ "$3" = null ] || [ -z "$3" ]; then printf "%$1s" -; else printf "%$1.$2f" "$3"; fi; }
{
    echo
    echo "throughput: $size MiB per transfer, one TCP connection; MB/s (10^6 bytes/s), median of $reps"
    printf '%-10s %-9s' path direction
    for e in "${selected[@]}"; do printf ' %11s' "$e"; done
    [ "$both" = 0 ] || printf ' %13s' berth/docker
    echo
    for p in "${PATHS[@]}"; do
        for d in up down; do
            if [ "$d" = up ]; then dname=upload; else dname=download; fi
            printf '%-10s %-9s' "$p" "$dname"
            for e in "${selected[@]}"; do
                printf ' '
                fmt 11 0 "$(jq -r --arg e "$e" --arg p "$p" --arg d "$d" '.throughput.results[]
                    | select(.engine == $e and .path == $p and .direction == $d) | .median_mb_s' \
                    "$RES/summary.json")"
            done
            if [ "$both" = 1 ]; then
                printf ' %13.2f' "$(jq -r --arg k "throughput $p $d berth/docker" '.ratios[$k]' "$RES/summary.json")"
            fi
            echo
        done
    done
    echo
    echo "latency: new connection + HTTP/1.0 GET of a $body-byte file, until the server closes; $requests requests per engine and path"
    printf '%-10s %-9s' path statistic
    for e in "${selected[@]}"; do printf ' %11s' "$e"; done
    [ "$both" = 0 ] || printf ' %13s' docker/berth
    echo
    for p in "${PATHS[@]}"; do
        for s in median p99; do
            printf '%-10s %-9s' "$p" "$s"
            for e in "${selected[@]}"; do
                printf ' '
                fmt 9 3 "$(jq -r --arg e "$e" --arg p "$p" --arg s "${s}_ms" '.latency.results[]
                    | select(.engine == $e and .path == $p) | .[$s]' "$RES/summary.json")"
                printf 'ms'
            done
            if [ "$both" = 1 ]; then
                printf ' %13.2f' "$(jq -r --arg k "latency $p $s docker/berth" '.ratios[$k]' "$RES/summary.json")"
            fi
            echo
        done
    done
    echo
    echo "ratios above 1: berth is faster"
    echo
    echo "proxy CPU time (user + system of berth's monitor, of docker-proxy), published ports:"
    jq -r '
        (.throughput.results[] | select(.path == "published")
            | "  \(.engine) \(if .direction == "up" then "upload" else "download" end): \(if .proxy_cpu_s_per_gib == null then "?" else (.proxy_cpu_s_per_gib * 1000 | round / 1000 | tostring) + " s per GiB" end)"),
        (.latency.results[] | select(.path == "published")
            | "  \(.engine) requests: \(if .proxy_cpu_us_per_request == null then "?" else (.proxy_cpu_us_per_request | round | tostring) + " us per request" end)")' \
        "$RES/summary.json"
    echo
    jq -r '.latency.results[] | select(.errors > 0) | "WARNING: \(.engine) \(.path): \(.errors) failed requests"' \
        "$RES/summary.json"
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
