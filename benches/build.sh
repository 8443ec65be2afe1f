#!/usr/bin/env bash
# Image build benchmark: berth build vs docker build (BuildKit and the legacy builder) vs podman
# build, side by side in one run: a cold build and a fully cached rebuild of a 10-step
# Dockerfile, and a rebuild after one small file changed in a 1 GiB context. A benchmark, not a
# test: it prints the figures and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/build.sh [-h] [--runs N] [--context-runs N] [--warmup N] [--measure LIST]
                        [--only LIST] [--context-mib N] [--network none] [--regen]
                        [--no-install] [--no-build] [--keep]

Times `build` with hyperfine -N (wall time from the command's start to its exit), side by side
in one run, for:

  berth          berth --root ROOT build -t TAG DIR     (a fresh root in the work directory)
  docker         env DOCKER_BUILDKIT=1 /usr/bin/docker -H unix://SOCK build -t TAG DIR
                 (BuildKit: the 20.10 CLI drives dockerd's built-in BuildKit)
  docker-legacy  env DOCKER_BUILDKIT=0 docker -H unix://SOCK build -t TAG DIR
                 (the legacy builder; `docker` is the first on PATH)
  podman         podman --root/--runroot/--tmpdir ... build --ulimit nofile=20000:20000
                 --ulimit nproc=20000:20000 -t TAG DIR  (a private store in the work directory)

Both docker builders talk to one private dockerd 20.10 that this script starts and stops
(bridge br-bbench, 10.79.0.1/24, --iptables=false, state in the work directory). All four
build FROM the same busybox base image, busybox-bench:latest: the tarball of
scripts/make-busybox-image.sh --tar-only imported with CMD ["sh"] by `berth import`,
`docker import` and `podman import`. Nothing is pulled: no network beyond loopback is needed.

Three measurements (--measure), in this order:

  cold     the 10-step Dockerfile (FROM, ARG, ENV, WORKDIR, COPY of a few files, three RUN
           steps doing small real work, LABEL, CMD) with every build cache cleared before each
           run, outside the timing: the previous result removed (rmi) and
             berth          berth builder prune -f
             docker         docker builder prune -af
             docker-legacy  (rmi removes the intermediate images, which are its cache)
             podman         (rmi removes the intermediate images, which are its cache)
           then sync. Every engine holds only the base image when its build starts.
  cached   the same Dockerfile and context built once (untimed), then identical rebuilds
           timed: every step is a cache hit.
  context  a context of --context-mib files of 1 MiB each (default 1024: 1 GiB, random bytes,
           generated once, deterministically, into $BENCH_DIR/data/) plus a small app/ directory,
           and a Dockerfile `FROM busybox-bench:latest`, `COPY . /data`, `RUN ...`. Built once
           (untimed); then before each timed run, outside the timing, one small file
           (app/stamp.txt) gets new content, the previous result and the engine's layer cache
           are removed (berth: rmi + builder prune -f; docker: rmi + builder prune -af
           --filter type=regular, which keeps BuildKit's copy of the context for its
           incremental transfer; docker-legacy and podman: rmi) and the page cache is synced.
           The timed rebuild reads (or sends) the context, finds the COPY step changed, copies
           the 1 GiB into a new layer and runs the RUN step.

Each round is one hyperfine call with one run per engine, so the engines alternate (their
order rotates from round to round). --warmup untimed rounds come first in each measurement.
Prints per measurement each engine's median and the ratios of medians ENGINE/berth (above 1:
berth is faster), and checks the goals: a cached rebuild 5x faster than every peer, a cold
build faster than every peer. Raw hyperfine JSON of every round, a summary JSON and text, a CSV
of every run, the Dockerfiles and machine notes go to $BENCH_DIR/results/build-<timestamp>/.

Missing peers are installed with scripts/install-deps.sh --peers. On a hybrid cgroup host whose
v2 hierarchy holds the hugetlb controller, it is moved to a v1 mount first (podman's crun needs
it; shared/peers.md section 2); that mount is left in place. Everything else the script makes
(stores, dockerd, its bridge, mounts, the work directory) is removed on exit, also on error or
Ctrl-C; the generated context stays in $BENCH_DIR/data/ for the next run.

Options:
  --runs N          timed runs per engine of cold and cached (default 10)
  --context-runs N  timed runs per engine of context (default: --runs, at most 5)
  --warmup N        untimed rounds before each measurement's timed ones (default 1)
  --measure LIST    comma-separated subset of cold,cached,context (default: all)
  --only LIST       comma-separated subset of berth,docker,docker-legacy,podman (default: all)
  --context-mib N   size of the big context in MiB, one file per MiB (default 1024)
  --network none    pass --network none to every build (RUN steps without a network; default:
                    each engine's default network for RUN)
  --regen           generate the big context again even if it exists
  --no-install      do not install missing peers or tools (fail instead)
  --no-build        do not run cargo build when the berth binary is missing
  --keep            keep the work directory (stores, dockerd log) instead of removing it
  -h, --help        this help

Environment:
  BENCH_DIR       work directory (default /var/tmp/berth-bench): data/, results/, scratch/
  BERTH           berth binary (default <repo>/target/release/berth; built with
                  `cargo build --release -p berth` when missing)
  DOCKER          docker CLI for the legacy builder (default: `docker` on PATH)
  DOCKER_BK       docker CLI for BuildKit (default /usr/bin/docker, the 20.10 CLI of docker.io:
                  the newer CLI needs the buildx plugin for BuildKit, which Debian lacks)
  BENCH_BRIDGE    the private dockerd's bridge (default br-bbench)
  BENCH_SUBNET    its address and prefix (default 10.79.0.1/24)
  BENCH_COOLDOWN  seconds to wait after a large deletion on the filesystem (default 65)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=build.sh
# shellcheck source=benches/lib.sh
. "$REPO_ROOT/benches/lib.sh"

BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
DOCKER=${DOCKER:-docker}
DOCKER_BK=${DOCKER_BK:-/usr/bin/docker}
BRIDGE=${BENCH_BRIDGE:-br-bbench}
SUBNET=${BENCH_SUBNET:-10.79.0.1/24}
ENGINES=(berth docker docker-legacy podman)
PEERS=(docker docker-legacy podman)
MEASURES=(cold cached context)
ULIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=20000:20000)
BASE=busybox-bench:latest

runs=10
context_runs=
warmup=1
measure=cold,cached,context
only=berth,docker,docker-legacy,podman
context_mib=1024
network=
regen=0
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --context-runs) context_runs=${2:?--context-runs needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --measure) measure=${2:?--measure needs a list}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --context-mib) context_mib=${2:?--context-mib needs a number}; shift ;;
        --network) network=${2:?--network needs a mode}; shift ;;
        --network=*) network=${1#--network=} ;;
        --regen) regen=1 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "build.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[ -n "$context_runs" ] || context_runs=$((runs < 5 ? runs : 5))
case "$runs$context_runs$warmup$context_mib" in
    *[!0-9]*|'') echo "build.sh: --runs/--context-runs/--warmup/--context-mib take numbers" >&2; exit 2 ;;
esac
[ "$runs" -ge 1 ] || { echo "build.sh: --runs must be at least 1" >&2; exit 2; }
[ "$context_runs" -ge 1 ] || { echo "build.sh: --context-runs must be at least 1" >&2; exit 2; }
[ "$context_mib" -ge 1 ] || { echo "build.sh: --context-mib must be at least 1" >&2; exit 2; }
case "$network" in
    ''|none) ;;
    *) echo "build.sh: --network takes only 'none'" >&2; exit 2 ;;
esac
only=${only// /}
for e in ${only//,/ }; do
    case " ${ENGINES[*]} " in
        *" $e "*) ;;
        *) echo "build.sh: unknown engine in --only: $e (known: ${ENGINES[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${only//,/}" ] || { echo "build.sh: --only selects nothing" >&2; exit 2; }
measure=${measure// /}
for m in ${measure//,/ }; do
    case " ${MEASURES[*]} " in
        *" $m "*) ;;
        *) echo "build.sh: unknown measurement in --measure: $m (known: ${MEASURES[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${measure//,/}" ] || { echo "build.sh: --measure selects nothing" >&2; exit 2; }
measuring() { case ",$measure," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, mounts, dockerd)"

# ---------------------------------------------------------------------------------------------
# berth first: a missing command is the likeliest failure and costs nothing to find.
if want berth; then
    bench_berth_binary "$BERTH" "$BERTH_DEFAULT" "$build" build "builder prune" import rmi images
fi

# Tools and peers
bench_need_tools hyperfine jq tar ip findmnt flock openssl split sha256sum
peer_tools=()
if want podman; then peer_tools+=(podman); fi
if want docker || want docker-legacy; then peer_tools+=(dockerd); fi
if want docker; then peer_tools+=("$DOCKER_BK"); fi
if want docker-legacy; then peer_tools+=("$DOCKER"); fi
[ ${#peer_tools[@]} -eq 0 ] || bench_need_tools --peers "${peer_tools[@]}"

# One run at a time: the bridge, the subnet and /run/bbench are fixed names.
mkdir -p /run/lock
exec 9>/run/lock/berth-bench-build.lock
flock -n 9 || die "another benches/build.sh is running (lock /run/lock/berth-bench-build.lock)"

if want podman || want berth; then bench_hugetlb_fix; fi

# ---------------------------------------------------------------------------------------------
# The big context: generated once, deterministically (AES-128-CTR of zeros with a fixed key),
# kept in $BENCH_DIR/data/ for later runs.
CTX="$BENCH_DIR/data/build-context-${context_mib}m"
gen_context() {
    local tmp="$CTX.tmp" f n i
    log "generating the context: $context_mib files of 1 MiB in $CTX"
    rm -rf "$tmp"
    mkdir -p "$tmp/blobs" "$tmp/app"
    # openssl dies of SIGPIPE when head has enough: its status does not count.
    { openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
        -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null || true; } |
        head -c $((context_mib << 20)) | split -b 1M -a 5 -d --additional-suffix=.bin - "$tmp/blobs/part-"
    # 64 files per directory.
    n=0
    for f in "$tmp"/blobs/part-*.bin; do
        i=$(printf %03d $((n / 64)))
        mkdir -p "$tmp/blobs/d$i"
        mv "$f" "$tmp/blobs/d$i/"
        n=$((n + 1))
    done
    [ "$n" -eq "$context_mib" ] || die "context generation made $n files, expected $context_mib"
    cat >"$tmp/app/README.txt" <<'EOF'
A build context for benches/build.sh: blobs/ holds the bulk (1 MiB files of random bytes),
app/stamp.txt is the small file that changes before each timed rebuild.
EOF
    echo initial >"$tmp/app/stamp.txt"
    cat >"$tmp/Dockerfile" <<'EOF'
FROM busybox-bench:latest
COPY . /data
RUN cat /data/app/stamp.txt && du -sk /data > /data-size.txt && find /data -type f | wc -l > /data-files.txt
EOF
    find "$tmp" -exec touch -h -d @1767225600 {} +
    rm -rf "$CTX"
    mv "$tmp" "$CTX"
    echo "files=$n mib=$context_mib first=$(sha256sum "$CTX/blobs/d000/part-00000.bin" | cut -c1-16)" >"$CTX.done"
}
if measuring context; then
    if [ "$regen" = 1 ] || [ ! -f "$CTX.done" ] || [ ! -f "$CTX/Dockerfile" ]; then
        gen_context
    fi
    echo initial >"$CTX/app/stamp.txt"
fi

# ---------------------------------------------------------------------------------------------
# Work directory, clean-up
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$BENCH_DIR/scratch"
WORK=$(mktemp -d "$BENCH_DIR/scratch/build-$STAMP.XXXXXX")
RES="$BENCH_DIR/results/build-$STAMP"
mkdir -p "$RES/raw" "$RES/dockerfiles" "$WORK/state"
DRUN=/run/bbench                    # dockerd's exec root and socket, podman's run root
DSOCK="$DRUN/docker.sock"
BERTH_ROOT="$WORK/berth"
# podman: store in the work directory; run root and tmp dir under $DRUN (tmpfs, like podman's
# defaults; podman refuses a run root longer than 50 characters).
PODMAN=(podman --root "$WORK/podman" --runroot "$DRUN/podman-run" --tmpdir "$DRUN/podman-tmp"
    --storage-driver overlay)
link_names() { ip -o link show | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort; }
LINKS_BEFORE=$(link_names)
rm -rf "$DRUN"
mkdir -p "$DRUN"

cleanup() {
    local rc=$? links l m ours
    trap - EXIT INT TERM
    set +e
    bench_bg_stop
    if want berth && [ -d "$BERTH_ROOT" ]; then
        "$BERTH" --root "$BERTH_ROOT" ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$BERTH_ROOT" rm -f >/dev/null 2>&1
    fi
    if want podman && [ -d "$WORK/podman" ]; then
        # `podman rm` returns each container's lock to the host-wide lock table; deleting the
        # store alone would leak them.
        "${PODMAN[@]}" rm -af -t 0 >/dev/null 2>&1
        "${PODMAN[@]}" system reset -f >/dev/null 2>&1
    fi
    if [ -n "$bench_dockerd_pid" ] && [ "$keep" = 1 ]; then cp "$WORK/dockerd.log" "$RES/" 2>/dev/null; fi
    bench_stop_dockerd "$DOCKER_BK"
    bench_umount_under "$DRUN"
    rm -rf "$DRUN"
    bench_umount_under "$WORK"
    if [ "$keep" = 1 ]; then
        log "kept the work directory: $WORK"
    else
        bench_big_rm "$WORK"
    fi
    if measuring context && [ -f "$CTX/app/stamp.txt" ]; then echo initial >"$CTX/app/stamp.txt"; fi
    # Interfaces of this run still there: the dockerd's bridge, the berth root's default bridge
    # (br + 10 hex digits of the sha256 of the root's path), podman's default bridge when the
    # run made it, and veths on any of them. (Other engines on the host come and go meanwhile:
    # their interfaces are not this run's.)
    ours=("$BRIDGE" "br$(printf %s "$BERTH_ROOT" | sha256sum | cut -c1-10)")
    for l in podman0 cni-podman0; do
        grep -qxF "$l" <<<"$LINKS_BEFORE" || ours+=("$l")
    done
    links=$(comm -13 <(echo "$LINKS_BEFORE") <(link_names) | while read -r l; do
        m=$(ip -o link show dev "$l" 2>/dev/null | sed -n 's/.* master \([^ ]*\) .*/\1/p')
        case " ${ours[*]} " in *" $l "*|*" ${m:-none} "*) echo "$l" ;; esac
    done)
    [ -z "$links" ] || log "WARNING: network interfaces this run made are still there: $(echo "$links" | tr '\n' ' ')"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# The base image, in each engine.
TARBALL="$WORK/busybox.tar"
"$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" --tar-only 2>/dev/null
if want berth; then
    log "berth: importing $BASE into a fresh root"
    "$BERTH" --root "$BERTH_ROOT" import --change 'CMD ["sh"]' "$TARBALL" "$BASE" >/dev/null
fi
if want podman; then
    mkdir -p "$WORK/podman"
    log "podman: importing $BASE into a private store"
    "${PODMAN[@]}" import -q --change 'CMD ["sh"]' "$TARBALL" "$BASE" >/dev/null
fi
if want docker || want docker-legacy; then
    # The BuildKit CLI (20.10) is used for the daemon's housekeeping too (builder prune).
    if want docker; then DCLI=$DOCKER_BK; else DCLI=$DOCKER; fi
    bench_start_dockerd "$DCLI" "$DSOCK" "$WORK/docker" "$DRUN/exec" "$WORK/dockerd.log" \
        "$BRIDGE" "$SUBNET" || die "cannot start dockerd"
    "$DCLI" -H "unix://$DSOCK" import --change 'CMD ["sh"]' "$TARBALL" "$BASE" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# The 10-step Dockerfile and its small context (cold and cached).
SMALL="$WORK/small"
mkdir -p "$SMALL/app"
cat >"$SMALL/app/greet.sh" <<'EOF'
#!/bin/sh
echo "hello from $(cat /app/VERSION) on $(hostname)"
EOF
cat >"$SMALL/app/config.json" <<'EOF'
{"name": "bench", "workers": 4, "paths": ["/app/data", "/app/bin"]}
EOF
seq 1 500 | sed 's/^/record /' >"$SMALL/app/records.txt"
cat >"$SMALL/Dockerfile" <<'EOF'
FROM busybox-bench:latest
ARG APP_VERSION=1.0.0
ENV APP_HOME=/app PATH=/app/bin:$PATH
WORKDIR /app
COPY app/ /app/
RUN mkdir -p /app/bin /app/data && cp /app/greet.sh /app/bin/greet && chmod 755 /app/bin/greet && echo "$APP_VERSION" > /app/VERSION
RUN seq 1 20000 | sed 's/^/line /' > /app/data/lines.txt && md5sum /app/data/lines.txt > /app/data/lines.md5 && wc -l < /app/records.txt > /app/data/count
RUN tar -cf /app/data/etc.tar /etc /app/bin && gzip -9 /app/data/etc.tar && ls -lR /app > /app/data/listing.txt
LABEL org.example.bench="berth build.sh" org.example.version="$APP_VERSION"
CMD ["greet"]
EOF
find "$SMALL" -exec touch -h -d @1767225600 {} +
cp "$SMALL/Dockerfile" "$RES/dockerfiles/small.Dockerfile"
if measuring context; then cp "$CTX/Dockerfile" "$RES/dockerfiles/context.Dockerfile"; fi

# ---------------------------------------------------------------------------------------------
# Each engine's command lines. hyperfine -N runs them without a shell (it splits the string
# like a shell would); `env` sets DOCKER_BUILDKIT for the docker CLI.
net=()
[ -z "$network" ] || net=(--network "$network")
# cli ENGINE: the engine's command line up to the subcommand, in CLI.
cli() {
    case "$1" in
        berth) CLI=("$BERTH" --root "$BERTH_ROOT") ;;
        docker) CLI=(env DOCKER_BUILDKIT=1 "$DOCKER_BK" -H "unix://$DSOCK") ;;
        docker-legacy) CLI=(env DOCKER_BUILDKIT=0 "$DOCKER" -H "unix://$DSOCK") ;;
        podman) CLI=("${PODMAN[@]}") ;;
    esac
}
# build_cmd ENGINE TAG DIR: the build command, quoted.
build_cmd() {
    local CLI extra=()
    cli "$1"
    [ "$1" != podman ] || extra=("${ULIMITS[@]}")
    quote "${CLI[@]}" build "${extra[@]}" "${net[@]}" -t "$2" "$3"
}
tag_of() { echo "bench-build:$1-$2"; }     # tag_of MEASURE ENGINE

# Preparation scripts (untimed, run by hyperfine before each run of their command).
# clean_lines MEASURE ENGINE [all]: the shell lines that remove ENGINE's result of MEASURE and
# the build cache it is made from (with "all", BuildKit's copies of contexts too). berth's
# cache holds its images: `rmi` is refused until `builder prune` has let go of them.
clean_lines() {
    local m=$1 e=$2 tag CLI
    tag=$(tag_of "$m" "$e")
    cli "$e"
    case "$e/$m" in
        berth/*) echo "$(quote "${CLI[@]}" builder prune -f) >/dev/null" ;;
    esac
    echo "$(quote "${CLI[@]}" rmi "$tag") >/dev/null 2>&1 || true"
    case "$e/$m/${3:-}" in
        docker/*/all|docker/cold/) echo "$(quote "${CLI[@]}" builder prune -af) >/dev/null" ;;
        # BuildKit's copy of the context (type source.local) stays, for its incremental transfer.
        docker/context/) echo "$(quote "${CLI[@]}" builder prune -af --filter type=regular) >/dev/null" ;;
    esac
}
# prep_script MEASURE ENGINE: writes $WORK/state/prep-MEASURE-ENGINE.sh and prints its path.
# cold: ENGINE's result and cache go. context: every engine's result and layer cache go (only
# one engine's 1 GiB result is on disk at a time), then app/stamp.txt gets a content no build
# has seen (the engine's name and a counter).
prep_script() {
    local m=$1 e=$2 f="$WORK/state/prep-$1-$2.sh" x
    {
        echo '#!/bin/bash'
        echo 'set -e'
        if [ "$m" = context ]; then
            for x in "${selected[@]}"; do clean_lines "$m" "$x"; done
            echo "n=\$((\$(cat $(quote "$WORK/state/counter-$e") 2>/dev/null || echo 0) + 1))"
            echo "echo \"\$n\" >$(quote "$WORK/state/counter-$e")"
            echo "echo \"$e \$n\" >$(quote "$CTX/app/stamp.txt")"
        else
            clean_lines "$m" "$e"
        fi
        echo 'sync'
    } >"$f"
    chmod +x "$f"
    echo "$f"
}

# check_clean WHAT: every engine must hold the base image alone now (and BuildKit no cache
# records but its copies of contexts).
check_clean() {
    local e k CLI
    for e in berth podman; do
        want "$e" || continue
        cli "$e"
        k=$("${CLI[@]}" images -a -q | wc -l)
        [ "$k" -eq 1 ] || log "WARNING: $e: $k images after $1, expected 1 (the base)"
    done
    if want docker || want docker-legacy; then
        k=$("$DCLI" -H "unix://$DSOCK" images -a -q | wc -l)
        [ "$k" -eq 1 ] || log "WARNING: dockerd: $k images after $1, expected 1 (the base)"
    fi
    if want docker; then
        # The build cache table of `system df -v`: ID, type, size, ...
        k=$("$DOCKER_BK" -H "unix://$DSOCK" system df -v |
            awk '/^CACHE ID/ { t = 1; next } t && NF && $2 != "source.local" { n++ } END { print n + 0 }')
        [ "$k" -eq 0 ] || log "WARNING: BuildKit keeps $k cache records other than contexts after $1"
    fi
}

selected=()
for e in "${ENGINES[@]}"; do
    if want "$e"; then selected+=("$e"); fi
done

# ---------------------------------------------------------------------------------------------
# Machine notes
version_of() { "$@" 2>&1 | head -n1 || true; }
{
    bench_machine_notes "$WORK"
    echo "measure:   $measure; engines: ${selected[*]}"
    echo "runs:      cold and cached $runs, context $context_runs, per engine; $warmup warm-up rounds each; one run per engine per round"
    echo "network:   ${network:-default} (RUN steps)"
    if measuring context; then
        echo "context:   $CTX: $context_mib files of 1 MiB ($(du -sb "$CTX" | cut -f1) bytes in all; $(cat "$CTX.done"))"
    fi
    for e in "${selected[@]}"; do
        case "$e" in
            berth) echo "berth:     $BERTH ($(version_of "$BERTH" --version); sha256 $(sha256sum "$BERTH" | cut -c1-16), $(date -u -r "$BERTH" +%Y-%m-%dT%H:%M:%SZ)); root $BERTH_ROOT" ;;
            podman) echo "podman:    $(version_of podman --version) ($(version_of "${PODMAN[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Version}}'))" ;;
            docker) echo "docker:    BuildKit; client $(version_of "$DOCKER_BK" -H "unix://$DSOCK" version --format '{{.Client.Version}}') ($DOCKER_BK), dockerd $(version_of "$DOCKER_BK" -H "unix://$DSOCK" version --format '{{.Server.Version}}')" ;;
            docker-legacy) echo "docker-legacy: legacy builder; client $(version_of "$DOCKER" -H "unix://$DSOCK" version --format '{{.Client.Version}}') ($(command -v "$DOCKER")), same dockerd" ;;
        esac
        for m in cold cached context; do
            measuring "$m" || continue
            if [ "$m" = context ]; then dir=$CTX; else dir=$SMALL; fi
            echo "  $m: $(build_cmd "$e" "$(tag_of "$m" "$e")" "$dir")"
        done
    done
    echo "git:       $(bench_git_rev)"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# run_by_hand ENGINE COMMAND: run a build once, untimed, so that a failure shows the engine's own
# message (hyperfine hides the output and only says that a command failed).
run_by_hand() {
    local e=$1 cmd=$2 t0 t1
    t0=${EPOCHREALTIME/[.,]/}
    if ! eval "$cmd" </dev/null >"$WORK/hand.log" 2>&1; then
        log "$e: the build fails: $cmd"
        tail -n 25 "$WORK/hand.log" >&2
        die "$e cannot build here (see above; --only leaves it out)"
    fi
    t1=${EPOCHREALTIME/[.,]/}
    log "  $e: $(((t1 - t0) / 1000)) ms"
}

# run_measure MEASURE N: the warm-up and N timed rounds of one measurement.
run_measure() {
    local m=$1 n=$2 dir e i r k total label out hf_args order preps=1 cmd
    declare -A CMD=() PREP=()
    if [ "$m" = context ]; then dir=$CTX; else dir=$SMALL; fi
    [ "$m" = cached ] && preps=0
    for e in "${selected[@]}"; do
        CMD[$e]=$(build_cmd "$e" "$(tag_of "$m" "$e")" "$dir")
        if [ "$preps" = 1 ]; then PREP[$e]=$(prep_script "$m" "$e"); fi
    done
    case "$m" in
        cold)
            # Once by hand (a failure shows its message), then the preparation once, after
            # which every engine must hold the base image alone (and BuildKit no cache).
            log "cold: one untimed build per engine"
            for e in "${selected[@]}"; do run_by_hand "$e" "${CMD[$e]}"; done
            for e in "${selected[@]}"; do
                bash "${PREP[$e]}" || die "$e: the preparation fails: ${PREP[$e]}"
            done
            check_clean "clearing the caches"
            ;;
        cached)
            log "cached: the first build per engine (untimed)"
            for e in "${selected[@]}"; do run_by_hand "$e" "${CMD[$e]}"; done
            ;;
        context)
            log "context: the first build per engine (untimed; $context_mib MiB)"
            # The context into the page cache first, so that the first engine does not pay for it.
            find "$CTX" -type f -exec cat {} + >/dev/null
            for e in "${selected[@]}"; do
                run_by_hand "$e" "${CMD[$e]}"
                bash "${PREP[$e]}" || die "$e: the preparation fails: ${PREP[$e]}"
            done
            check_clean "removing the results"
            ;;
    esac

    total=$((warmup + n))
    for ((r = 1; r <= total; r++)); do
        if [ "$r" -le "$warmup" ]; then
            label="warm-up $r/$warmup"
            out="$RES/raw/$m-warmup-$r.json"
        else
            label="round $((r - warmup))/$n"
            out="$RES/raw/$m-round-$(printf %03d $((r - warmup))).json"
        fi
        # The engines' order rotates from round to round.
        order=()
        for ((i = 0; i < ${#selected[@]}; i++)); do
            order+=("${selected[$(((i + r - 1) % ${#selected[@]}))]}")
        done
        hf_args=()
        for e in "${order[@]}"; do
            if [ "$preps" = 1 ]; then hf_args+=(--prepare "$(quote bash "${PREP[$e]}")"); fi
            hf_args+=(--command-name "$e" "${CMD[$e]}")
        done
        if ! bench_bg_run "${out%.json}.log" "${out%.json}.log" hyperfine -N --runs 1 --style none \
            --export-json "$out" "${hf_args[@]}"; then
            tail -n 5 "${out%.json}.log" >&2
            for e in "${order[@]}"; do
                if ! eval "${CMD[$e]}" </dev/null >"$WORK/hand.log" 2>&1; then
                    log "$e fails now: ${CMD[$e]}"
                    tail -n 25 "$WORK/hand.log" >&2
                fi
            done
            die "hyperfine failed in $m $label (a command exited non-zero; the commands are in $RES/machine.txt)"
        fi
        printf 'build.sh: %-7s %-14s %s\n' "$m" "$label" \
            "$(jq -r '[.results[] | "\(.command) \(.times[0] * 1000 | round / 1000)s"] | join("  ")' "$out")" >&2
    done

    # The measurement's results and caches go, so that the next one starts from the base alone.
    for e in "${selected[@]}"; do clean_lines "$m" "$e" all; done >"$WORK/state/clean-$m.sh"
    bash "$WORK/state/clean-$m.sh" || log "WARNING: removing the results of $m failed ($WORK/state/clean-$m.sh)"
}

[ "$(stat -f -c %T "$WORK")" = tmpfs ] || bench_cooldown
for m in "${MEASURES[@]}"; do
    measuring "$m" || continue
    if [ "$m" = context ]; then
        # Room: one engine's result at a time (the preparation removes every engine's), and
        # BuildKit's copy of the context. While it builds, podman needs up to 3 times the
        # context (the container's copy, a temporary blob of the layer, the layer), berth 2
        # (the layer and its blob), BuildKit 1, docker-legacy 2 (a copy of the context, the
        # layer).
        need_kb=$((context_mib * 1024 * 5))
        free_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
        if [ "$need_kb" -gt "$free_kb" ]; then
            die "not enough space in $WORK for the context measurement: need ~$((need_kb >> 20)) GiB, have $((free_kb >> 20)) GiB (--context-mib, or --measure cold,cached)"
        fi
        run_measure context "$context_runs"
    else
        run_measure "$m" "$runs"
    fi
done

# ---------------------------------------------------------------------------------------------
# Statistics, ratios, goals.
jq -s --arg engines "${selected[*]}" --arg peers "${PEERS[*]}" --argjson warmup "$warmup" \
    --arg network "${network:-default}" "$BENCH_JQ_STATS"'
    ($engines | split(" ")) as $eng | ($peers | split(" ")) as $peers
    | [.[] | .measure as $m | .results[] | {measure: $m, engine: .command, time: .times[0],
        user: .user, system: .system}] as $runs
    | {network: $network, warmup_rounds: $warmup,
       results: [("cold", "cached", "context") as $m | $eng[] as $e
         | [$runs[] | select(.measure == $m and .engine == $e)] | select(length > 0)
         | {measure: $m, engine: $e, n: length, times: map(.time),
            median: (map(.time) | median), mean: (map(.time) | mean),
            min: (map(.time) | min), max: (map(.time) | max),
            user_median: (map(.user) | median), system_median: (map(.system) | median)}]}
    | .results as $res
    | .ratios_of_medians = ([("cold", "cached", "context") as $m
        | ($res | map(select(.measure == $m)) | map({(.engine): .median}) | add // {}) as $r
        | select($r.berth)
        | {($m): ([$peers[] as $p | select($r[$p]) | {("\($p)/berth"): ($r[$p] / $r.berth)}] | add // {})}]
        | add // {})
    | .goals = {"cached: every peer/berth at least": 5, "cold: every peer/berth above": 1}
    | .goals_met = {
        cached: (.ratios_of_medians.cached // {} | if length == 0 then null else (map_values(. >= 5)) end),
        cold: (.ratios_of_medians.cold // {} | if length == 0 then null else (map_values(. > 1)) end)}
' < <(for f in "$RES"/raw/*-round-*.json; do
        b=$(basename "$f")
        jq --arg m "${b%%-round-*}" '{measure: $m, results: .results}' "$f"
    done) >"$RES/summary.json"

{
    echo "measure,engine,run,seconds,user,system"
    for f in "$RES"/raw/*-round-*.json; do
        b=$(basename "$f" .json)
        jq -r --arg m "${b%%-round-*}" --arg r "${b##*-round-}" \
            '.results[] | [$m, .command, ($r | tonumber), .times[0], .user, .system] | @csv' "$f"
    done
} >"$RES/runs.csv"

{
    echo
    echo "build wall time, medians; ratios above 1: berth is faster (network: ${network:-default})"
    printf '%-8s' measure
    for e in "${selected[@]}"; do printf ' %13s' "$e"; done
    if want berth; then for e in "${PEERS[@]}"; do if want "$e"; then printf ' %19s' "$e/berth"; fi; done; fi
    echo
    for m in "${MEASURES[@]}"; do
        jq -e --arg m "$m" '.results | any(.measure == $m)' "$RES/summary.json" >/dev/null || continue
        printf '%-8s' "$m"
        for e in "${selected[@]}"; do
            printf ' %12.3fs' "$(jq -r --arg m "$m" --arg e "$e" \
                '.results | map(select(.measure == $m and .engine == $e))[0].median' "$RES/summary.json")"
        done
        if want berth; then
            for e in "${PEERS[@]}"; do
                want "$e" || continue
                printf ' %18.2fx' "$(jq -r --arg m "$m" --arg k "$e/berth" '.ratios_of_medians[$m][$k]' "$RES/summary.json")"
            done
        fi
        echo
    done
    echo
    printf '%-8s %-14s %4s %9s %9s %9s %9s %9s %9s\n' measure engine n median mean min max user sys
    jq -r '.results[] | [.measure, .engine, .n, .median, .mean, .min, .max, .user_median, .system_median]
        | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r m e cnt med mean mn mx u s; do
            printf '%-8s %-14s %4d %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs %8.3fs\n' "$m" "$e" "$cnt" \
                "$med" "$mean" "$mn" "$mx" "$u" "$s"
        done
    echo "(user and sys: the command's own CPU time and its children's; for docker, the CLI's only)"
    echo
    echo "goals: cached rebuild at least 5x faster than every peer, cold build faster than every peer"
    jq -r '
        def show(m; ok): (.ratios_of_medians[m] // {}) as $r
            | if ($r | length) == 0 then "  \(m): not checked (needs berth and a peer)"
              else "  \(m): " + ([$r | to_entries[] | "\(.key) = \(.value * 100 | round / 100)"] | join(", "))
                   + ": " + (if (.goals_met[m] | all) then "met" else "NOT met" end) end;
        show("cached"; 5), show("cold"; 1)' "$RES/summary.json"
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
