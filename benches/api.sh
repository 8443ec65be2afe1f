#!/usr/bin/env bash
# Engine API benchmark: the same docker CLI (28.x) against `berth serve` and against a private
# dockerd, side by side in one run, as ratios. A benchmark, not a test: it prints the medians
# and ratios and keeps the raw data.
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: benches/api.sh [-h] [--runs N] [--warmup N] [--containers N] [--no-install] [--no-build]
                      [--keep]

Two measurements, each through berth serve and through dockerd, timed with hyperfine -N (no
intermediate shell):

  ps    docker -H unix://SOCK ps -a           (N stopped containers in each engine, made first)
  run   docker -H unix://SOCK run --rm busybox true

Both engines hold the same busybox image (scripts/make-busybox-image.sh, imported). dockerd is
a private one (its own data root, exec root, socket; no bridge, --iptables=false), berth serve
runs on a fresh root; both are started and stopped by this script. Prints each median and the
ratio dockerd/berth (above 1: berth is faster). Raw hyperfine JSON, a summary JSON and machine
notes go to $BENCH_DIR/results/api-<timestamp>/ (BENCH_DIR defaults to /var/tmp/berth-bench).

Options:
  --runs N        timed runs of each command (default 20)
  --warmup N      untimed runs first (default 3)
  --containers N  stopped containers per engine for `ps -a` (default 20)
  --no-install    do not install missing tools (scripts/install-deps.sh --peers)
  --no-build      do not build berth when the release binary is missing
  --keep          keep the work directory
EOF2
}

BENCH_NAME=api.sh
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=benches/lib.sh
. "$REPO_ROOT/benches/lib.sh"

runs=20 warmup=3 containers=20 install=1 build=1 keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --runs) runs=$2; shift ;;
        --warmup) warmup=$2; shift ;;
        --containers) containers=$2; shift ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done

[ "$(id -u)" -eq 0 ] || die "must run as root (containers, dockerd)"
bench_need_tools --peers hyperfine jq docker dockerd
DEFAULT_BERTH="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$DEFAULT_BERTH}
bench_berth_binary "$BERTH" "$DEFAULT_BERTH" "$build" serve import
DOCKER=$(command -v docker)

BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES="$BENCH_DIR/results/api-$STAMP"
WORK=$(mktemp -d "$BENCH_DIR/api-work.XXXXXX" 2>/dev/null || { mkdir -p "$BENCH_DIR"; mktemp -d "$BENCH_DIR/api-work.XXXXXX"; })
DRUN=$(mktemp -d /run/berth-api-bench.XXXXXX)   # short: socket paths
mkdir -p "$RES/raw"
BSOCK="$DRUN/berth.sock"
DSOCK="$DRUN/docker.sock"
serve_pid=

cleanup() {
    set +e
    if [ -n "$serve_pid" ]; then
        "$DOCKER" -H "unix://$BSOCK" ps -aq 2>/dev/null | xargs -r "$DOCKER" -H "unix://$BSOCK" rm -f >/dev/null 2>&1
        kill "$serve_pid" 2>/dev/null
        wait "$serve_pid" 2>/dev/null
    fi
    "$DOCKER" -H "unix://$DSOCK" ps -aq 2>/dev/null | xargs -r "$DOCKER" -H "unix://$DSOCK" rm -f >/dev/null 2>&1
    bench_stop_dockerd "$DOCKER"
    bench_umount_under "$WORK"
    bench_umount_under "$DRUN"
    rm -rf "$DRUN"
    bench_work_remove "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TARBALL="$WORK/busybox.tar"
"$REPO_ROOT/scripts/make-busybox-image.sh" -o "$TARBALL" --tar-only >/dev/null

log "berth: serve on a fresh root"
"$BERTH" --root "$WORK/berth" import "$TARBALL" busybox >/dev/null
"$BERTH" --root "$WORK/berth" serve -H "unix://$BSOCK" >"$WORK/serve.log" 2>&1 &
serve_pid=$!
for ((i = 0; ; i++)); do
    "$DOCKER" -H "unix://$BSOCK" version >/dev/null 2>&1 && break
    if [ "$i" -ge 100 ] || ! kill -0 "$serve_pid" 2>/dev/null; then
        tail -n 20 "$WORK/serve.log" >&2
        die "berth serve did not answer on $BSOCK"
    fi
    sleep 0.1
done
bench_start_dockerd "$DOCKER" "$DSOCK" "$WORK/docker" "$DRUN/exec" "$WORK/dockerd.log" - none ||
    die "dockerd did not start"
"$DOCKER" -H "unix://$DSOCK" import "$TARBALL" busybox >/dev/null

declare -A SOCK=([berth]=$BSOCK [docker]=$DSOCK)
for engine in berth docker; do
    d=("$DOCKER" -H "unix://${SOCK[$engine]}")
    # Every command once by hand, so that a failure shows its own message.
    "${d[@]}" run --rm --network none busybox true || die "$engine: docker run --rm failed"
    for ((i = 0; i < containers; i++)); do
        "${d[@]}" create --network none busybox true >/dev/null || die "$engine: create failed"
    done
    n=$("${d[@]}" ps -aq | wc -l)
    [ "$n" = "$containers" ] || die "$engine: ps -a lists $n containers, not $containers"
done

{
    bench_machine_notes "$WORK"
    echo "berth:     $("$BERTH" --version) ($(bench_git_rev))"
    echo "docker:    $("$DOCKER" -H "unix://$DSOCK" version --format '{{.Client.Version}} / dockerd {{.Server.Version}}')"
} >"$RES/machine.txt"

cmds=()
names=()
for engine in berth docker; do
    base=$(quote "$DOCKER" -H "unix://${SOCK[$engine]}")
    names+=("ps:$engine" "run:$engine")
    cmds+=("$base ps -a" "$base run --rm --network none busybox true")
done
args=()
for i in "${!cmds[@]}"; do args+=(--command-name "${names[$i]}" "${cmds[$i]}"); done
log "timing ${#cmds[@]} commands, $runs runs each (warmup $warmup)"
hyperfine -N --warmup "$warmup" --runs "$runs" --style none --export-json "$RES/raw/hyperfine.json" \
    "${args[@]}" >"$RES/raw/hyperfine.log" 2>&1 || die "hyperfine failed: $(tail -n 5 "$RES/raw/hyperfine.log")"

jq "$BENCH_JQ_STATS"'
    [.results[] | {name: .command, median: (.times | median), mean: (.times | mean)}]
    | (map({key: .name, value: .median}) | from_entries) as $m
    | {medians_s: $m,
       ratios_docker_over_berth: {ps: ($m["ps:docker"] / $m["ps:berth"]),
                                  run: ($m["run:docker"] / $m["run:berth"])}}
' "$RES/raw/hyperfine.json" >"$RES/summary.json"
jq -r '
    "command                      berth        dockerd      dockerd/berth",
    ( ["ps", "run"][] as $k
      | "\(if $k == "ps" then "docker ps -a" else "docker run --rm busybox true" end | .[0:28] | . + " " * (29 - length))"
        + "\(.medians_s["\($k):berth"] * 1000 | . * 10 | round / 10 | tostring) ms" + "   "
        + "\(.medians_s["\($k):docker"] * 1000 | . * 10 | round / 10 | tostring) ms" + "   "
        + "\(.ratios_docker_over_berth[$k] * 100 | round / 100 | tostring)x" )
' "$RES/summary.json" | tee "$RES/summary.txt"
log "results: $RES"
