#!/usr/bin/env bash
# Registry benchmark: push and pull of a 3-layer, 300 MiB image to and from a local registry
# (distribution 2.8 on 127.0.0.1, plain HTTP), berth vs skopeo vs docker (and podman on
# request), side by side in one run. A benchmark, not a test: it prints the figures and ratios
# and keeps the raw data.
#
# Design choices (the fairness of the comparison rests on them):
#
# - One image for everyone. Three layers of --layer-mib MiB each (default 100), each a
#   directory with three files of incompressible random bytes (AES-CTR of zeros with a fixed
#   key, so the same bytes on every host) and a small README, built once into
#   $BENCH_DIR/data/registry-<N>m/ as
#     image.tar  a docker-archive (`docker save` format: manifest.json, a config whose
#                rootfs.diff_ids are the sha256 of the uncompressed layer tars) that is also an
#                OCI layout (oci-layout, index.json, blobs/), like `docker save` since Docker 25;
#                its layer blobs are gzip-compressed (gzip -n -6, what a registry stores);
#     oci/       the same OCI layout, unpacked (the same blobs, hard links).
#   `berth load -i image.tar` keeps the gzip blobs as they are (their digests stay); `docker
#   load -i image.tar` (20.10) and `podman load` decompress them (their stores keep layers
#   uncompressed). skopeo reads oci:oci:latest: its blobs are the gzip blobs themselves. (skopeo
#   can read `docker-archive:image.tar` too, but that source addresses layers by diff ID and
#   hands them out decompressed, so a push from it would gzip every layer again.)
# - What a push sends therefore depends on the tool, as it would for a user: berth and skopeo
#   send the stored gzip blobs as they are; docker and podman compress every layer again on
#   each push (they keep no compressed copy). The bytes each push stored in the registry are
#   recorded (runs.jsonl, "bytes").
# - push: before each timed push, untimed, the registry is restarted on an EMPTY storage
#   directory: clients remember which blobs a registry has (docker's distribution metadata,
#   the containers blob-info cache that skopeo and podman share) and skip or cross-mount them
#   otherwise (shared/peers.md section 5). Every push goes to the same repository name, so
#   the only memory left to the clients is a HEAD request that answers 404.
# - pull: the registry is restarted once on an empty storage, the image is pushed into it by
#   skopeo from the OCI layout (untimed, as a Docker v2 schema 2 manifest with the gzip blobs
#   unchanged), and every tool pulls that same image, each time into a FRESH destination:
#     berth   a new --root directory per pull (created by berth);
#     skopeo  `copy docker://REF dir:NEWDIR` (blobs stored as they come, verified; nothing
#             unpacked: skopeo does the least work of all, it is the floor);
#     docker  `docker rmi REF` before each pull (untimed), so the daemon holds no layer of it;
#     podman  `podman rmi REF` before each pull (untimed), the same.
#   Nothing is deleted between timed runs except by docker's and podman's rmi, which remove a
#   dozen files and directories, far from the tens of thousands that make file creation slow
#   on this project's ext4 without a journal (shared/peers.md section 8); everything else is
#   deleted at the end, and a later run waits out BENCH_COOLDOWN after that deletion.
# - The registry's storage is on tmpfs (/dev/shm) by default, so that its disk writes and
#   reads cost nothing and the client is what is measured (--registry-disk puts it in the work
#   directory). The clients' stores (berth's roots, dockerd's data root, skopeo's directories,
#   podman's store) are in the work directory on disk, or on /dev/shm with --tmpfs.
# - Timing: bash's $EPOCHREALTIME right before and after each command, the command run in the
#   background and waited for (no intermediate shell). `sync` before each timed command
#   (untimed), so that nobody pays for the previous one's dirty pages. One tool at a time; in
#   each round every tool runs once, their order rotating from round to round; --warmup
#   untimed rounds first, --rounds timed ones; medians are reported. CPU time is recorded too:
#   the command's own and its children's, plus dockerd's (and the children it waited for) for
#   docker, since the daemon does the work; the registry's CPU during each command separately.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: benches/registry.sh [-h] [--rounds N] [--warmup N] [--measure LIST] [--only LIST]
                           [--layer-mib N] [--tmpfs] [--registry-disk] [--regen]
                           [--no-install] [--no-build] [--keep]

Times push and pull of one 3-layer image (3 x --layer-mib MiB of random bytes, gzip layer
blobs) to and from a local registry (docker-registry, distribution 2.8, on 127.0.0.1, plain
HTTP), side by side in one run, for:

  berth   push: berth --root SRC push -q 127.0.0.1:PORT/bench/image:latest
          pull: berth --root NEWROOT pull -q 127.0.0.1:PORT/bench/image:latest
          (SRC: a berth root into which image.tar was `berth load`ed and tagged)
  skopeo  push: skopeo copy -q --dest-tls-verify=false oci:DATA/oci:latest docker://REF
          pull: skopeo copy -q --src-tls-verify=false docker://REF dir:NEWDIR
  docker  push: docker -H unix://SOCK push REF      (image.tar `docker load`ed and tagged)
          pull: docker -H unix://SOCK pull REF      (after an untimed `docker rmi REF`)
          against a private dockerd 20.10 that this script starts and stops (its own data root,
          exec root and socket, no bridge, --iptables=false); `docker` is the first on PATH
  podman  (only with --only) the same as docker with a private store:
          podman push -q --tls-verify=false REF, podman pull -q --tls-verify=false REF

Every timed push goes to a registry restarted on an empty storage directory (clients remember
what a registry holds). Every pull pulls the same image, pushed once by skopeo, into a fresh
destination. In each round every tool runs once (the order rotates); --warmup untimed rounds
come first. The header of this script explains the design choices.

Prints per operation and tool the median, min and max wall time and the median CPU time, and
the ratio of medians TOOL/berth (above 1: berth is faster), and checks the goal: berth faster
than every peer at both push and pull. Every run (runs.jsonl, runs.csv), a summary JSON and
text, the registry's and dockerd's logs and machine notes go to
$BENCH_DIR/results/registry-<timestamp>[-tmpfs]/.

Missing peers and tools are installed with scripts/install-deps.sh --peers. Everything the
script starts or makes (the registry, dockerd, podman's store, the work directory, the
registry's storage) is removed on exit, also on error or Ctrl-C; the image stays in
$BENCH_DIR/data/ for the next run.

Options:
  --rounds N       timed rounds: runs per tool and operation (default 3)
  --warmup N       untimed rounds before the timed ones, per operation (default 1)
  --measure LIST   comma-separated subset of push,pull (default: both)
  --only LIST      comma-separated subset of berth,skopeo,docker,podman
                   (default: berth,skopeo,docker)
  --layer-mib N    MiB of random bytes per layer (default 100)
  --tmpfs          the clients' stores in /dev/shm instead of the work directory on disk
  --registry-disk  the registry's storage in the work directory instead of /dev/shm
  --regen          build the image again even if it exists
  --no-install     do not install missing peers or tools (fail instead)
  --no-build       do not run cargo build when the berth binary is missing
  --keep           keep the work directory (stores, pulled images, logs)
  -h, --help       this help

Environment:
  BENCH_DIR            work directory (default /var/tmp/berth-bench): data/, results/, scratch/
  BERTH                berth binary (default <repo>/target/release/berth; built with
                       `cargo build --release -p berth` when missing)
  DOCKER               docker CLI (default: `docker` on PATH)
  BENCH_REGISTRY_PORT  first port to try for the registry (default 5050; the first free one
                       from there is used)
  BENCH_COOLDOWN       seconds to wait after a large deletion on the filesystem (default 65)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=registry.sh
# shellcheck source=benches/lib.sh
. "$REPO_ROOT/benches/lib.sh"

BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BENCH_DIR=${BENCH_DIR:-/var/tmp/berth-bench}
DOCKER=${DOCKER:-docker}
TOOLS=(berth skopeo docker podman)
PEERS=(skopeo docker podman)
OPS=(push pull)
SRC_TAG=bench-registry:latest

rounds=3
warmup=1
measure=push,pull
only=berth,skopeo,docker
layer_mib=100
tmpfs=0
registry_disk=0
regen=0
install=1
build=1
keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --measure) measure=${2:?--measure needs a list}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --layer-mib) layer_mib=${2:?--layer-mib needs a number}; shift ;;
        --tmpfs) tmpfs=1 ;;
        --registry-disk) registry_disk=1 ;;
        --regen) regen=1 ;;
        --no-install) install=0 ;;
        --no-build) build=0 ;;
        --keep) keep=1 ;;
        *) echo "registry.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$rounds$warmup$layer_mib" in
    *[!0-9]*|'') echo "registry.sh: --rounds/--warmup/--layer-mib take numbers" >&2; exit 2 ;;
esac
[ "$rounds" -ge 1 ] || { echo "registry.sh: --rounds must be at least 1" >&2; exit 2; }
[ "$layer_mib" -ge 1 ] || { echo "registry.sh: --layer-mib must be at least 1" >&2; exit 2; }
only=${only// /}
for t in ${only//,/ }; do
    case " ${TOOLS[*]} " in
        *" $t "*) ;;
        *) echo "registry.sh: unknown tool in --only: $t (known: ${TOOLS[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${only//,/}" ] || { echo "registry.sh: --only selects nothing" >&2; exit 2; }
measure=${measure// /}
for m in ${measure//,/ }; do
    case " ${OPS[*]} " in
        *" $m "*) ;;
        *) echo "registry.sh: unknown operation in --measure: $m (known: ${OPS[*]})" >&2; exit 2 ;;
    esac
done
[ -n "${measure//,/}" ] || { echo "registry.sh: --measure selects nothing" >&2; exit 2; }
measuring() { case ",$measure," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
selected=()
for t in "${TOOLS[@]}"; do
    if want "$t"; then selected+=("$t"); fi
done

[ "$(id -u)" -eq 0 ] || die "must run as root (dockerd, podman's store)"
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 or later (\$EPOCHREALTIME)"

# ---------------------------------------------------------------------------------------------
# berth first: a missing command is the likeliest failure and costs nothing to find.
if want berth; then
    bench_berth_binary "$BERTH" "$BERTH_DEFAULT" "$build" pull push load tag images
fi

bench_need_tools jq tar gzip openssl sha256sum curl ss flock docker-registry skopeo
peer_tools=()
if want docker; then peer_tools+=(dockerd "$DOCKER"); fi
if want podman; then peer_tools+=(podman); fi
[ ${#peer_tools[@]} -eq 0 ] || bench_need_tools --peers "${peer_tools[@]}"

# One run at a time: /run/bregbench is a fixed name.
mkdir -p /run/lock
exec 9>/run/lock/berth-bench-registry.lock
flock -n 9 || die "another benches/registry.sh is running (lock /run/lock/berth-bench-registry.lock)"

# ---------------------------------------------------------------------------------------------
# The image: built once, deterministically, kept in $BENCH_DIR/data/ for later runs.
DATA="$BENCH_DIR/data/registry-${layer_mib}m"
PARAMS="layers=3 layer_mib=$layer_mib files=3+README gzip=-n6 v1"
gen_image() {
    local tmp="$DATA.tmp" i j f size sizes gen diff_ids=() layers=() ldigest cfg cfg_digest
    local cfg_size man man_digest man_size L
    log "building the image: 3 layers of $layer_mib MiB of random bytes, in $DATA"
    rm -rf "$tmp"
    mkdir -p "$tmp/gen"
    L="$tmp/oci"
    mkdir -p "$L/blobs/sha256"
    # Three files per layer: half, three tenths and the rest of the layer's bytes.
    sizes=("$((layer_mib * 5 / 10))" "$((layer_mib * 3 / 10))")
    sizes+=("$((layer_mib - sizes[0] - sizes[1]))")
    for i in 1 2 3; do
        gen="$tmp/gen/$i"
        mkdir -p "$gen/bench/layer$i"
        for j in 0 1 2; do
            size=${sizes[$j]}
            [ "$size" -gt 0 ] || continue
            f="$gen/bench/layer$i/data-$j.bin"
            # openssl dies of SIGPIPE when head has enough: its status does not count.
            { openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
                -iv "$(printf '%032x' $((i * 16 + j)))" -in /dev/zero 2>/dev/null || true; } |
                head -c $((size << 20)) >"$f"
            [ "$(stat -c %s "$f")" -eq $((size << 20)) ] || die "could not generate $f"
        done
        printf 'Layer %d of the image of benches/registry.sh: %d MiB of random bytes.\n' \
            "$i" "$layer_mib" >"$gen/bench/layer$i/README"
        tar --sort=name --mtime=@1577836800 --owner=0 --group=0 --numeric-owner \
            -cf "$tmp/layer$i.tar" -C "$gen" bench
        diff_ids+=("sha256:$(sha256sum "$tmp/layer$i.tar" | cut -d' ' -f1)")
        gzip -n -6 "$tmp/layer$i.tar"
        ldigest=$(sha256sum "$tmp/layer$i.tar.gz" | cut -d' ' -f1)
        mv "$tmp/layer$i.tar.gz" "$L/blobs/sha256/$ldigest"
        layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$ldigest\",\"size\":$(stat -c %s "$L/blobs/sha256/$ldigest")}")
        rm -rf "$gen"
    done
    echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
    cfg=$(jq -cn --arg d "${diff_ids[*]}" '{
        created: "2020-01-01T00:00:00Z", architecture: "amd64", os: "linux",
        config: {Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                 Cmd: ["/bin/sh"]},
        rootfs: {type: "layers", diff_ids: ($d | split(" "))},
        history: [range(3) | {created: "2020-01-01T00:00:00Z",
                              created_by: "berth benches/registry.sh layer \(. + 1)"}]}')
    printf '%s' "$cfg" >"$tmp/config.json"
    cfg_digest=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
    cfg_size=$(stat -c %s "$tmp/config.json")
    mv "$tmp/config.json" "$L/blobs/sha256/$cfg_digest"
    man=$(jq -cn --arg c "sha256:$cfg_digest" --argjson cs "$cfg_size" \
        --argjson l "[$(IFS=,; echo "${layers[*]}")]" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
        layers: $l}')
    printf '%s' "$man" >"$tmp/manifest.tmp"
    man_digest=$(sha256sum "$tmp/manifest.tmp" | cut -d' ' -f1)
    man_size=$(stat -c %s "$tmp/manifest.tmp")
    mv "$tmp/manifest.tmp" "$L/blobs/sha256/$man_digest"
    # ref.name "latest" is what `skopeo ... oci:DIR:latest` looks up.
    jq -n --arg m "sha256:$man_digest" --argjson ms "$man_size" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m,
                     size: $ms, annotations: {"org.opencontainers.image.ref.name": "latest",
                     "io.containerd.image.name": "docker.io/library/bench-registry:latest"}}]}' \
        >"$L/index.json"
    # image.tar: the layout plus a docker-archive manifest.json (docker 20.10's `load` reads
    # manifest.json and ignores the rest; berth's reads manifest.json when there is one).
    mkdir -p "$tmp/archive-extra"
    jq -n --arg c "blobs/sha256/$cfg_digest" --argjson l "$man" --arg t "$SRC_TAG" \
        '[{Config: $c, RepoTags: [$t], Layers: [$l.layers[] | "blobs/sha256/" + (.digest | ltrimstr("sha256:"))]}]' \
        >"$tmp/archive-extra/manifest.json"
    tar --sort=name --mtime=@1577836800 --owner=0 --group=0 --numeric-owner --hard-dereference \
        -cf "$tmp/image.tar" -C "$L" blobs index.json oci-layout -C "$tmp/archive-extra" manifest.json
    rm -rf "$tmp/archive-extra" "$tmp/gen"
    skopeo inspect --raw "oci:$L:latest" >/dev/null || die "skopeo cannot read the generated layout"
    echo "$PARAMS" >"$tmp/params"
    rm -rf "$DATA"
    mv "$tmp" "$DATA"
    log "image ready: $(du -sh --apparent-size "$DATA/image.tar" | cut -f1) ($DATA/image.tar, $DATA/oci)"
}
if [ "$regen" = 1 ] || [ ! -s "$DATA/image.tar" ] || [ "$(cat "$DATA/params" 2>/dev/null)" != "$PARAMS" ]; then
    gen_image
fi
IMAGE_TAR="$DATA/image.tar"
LAYOUT="$DATA/oci"
# The config's and the layers' bytes.
IMAGE_BYTES=$(jq -r '.manifests[0].digest | ltrimstr("sha256:")' "$LAYOUT/index.json" |
    xargs -I{} jq '.config.size + ([.layers[].size] | add)' "$LAYOUT/blobs/sha256/{}")

# ---------------------------------------------------------------------------------------------
# Work directory, registry, clean-up
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [ "$tmpfs" = 1 ]; then
    WORK=$(mktemp -d "/dev/shm/berth-bench-registry-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/registry-$STAMP-tmpfs"
else
    mkdir -p "$BENCH_DIR/scratch"
    WORK=$(mktemp -d "$BENCH_DIR/scratch/registry-$STAMP.XXXXXX")
    RES="$BENCH_DIR/results/registry-$STAMP"
fi
if [ "$registry_disk" = 1 ]; then
    REGBASE="$WORK/registry"
    mkdir -p "$REGBASE"
else
    REGBASE=$(mktemp -d "/dev/shm/berth-bench-registry-storage-$STAMP.XXXXXX")
fi
mkdir -p "$RES/logs" "$WORK/pull"
DRUN=/run/bregbench                 # dockerd's exec root and socket, podman's run root
DSOCK="$DRUN/docker.sock"
BERTH_SRC="$WORK/berth-src"
PODMAN=(podman --root "$WORK/podman" --runroot "$DRUN/podman-run" --tmpdir "$DRUN/podman-tmp"
    --storage-driver overlay)
DCLI=("$DOCKER" -H "unix://$DSOCK")
rm -rf "$DRUN"
mkdir -p "$DRUN"
bench_registry_dir=                 # the running registry's directory (registry_fresh)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    bench_bg_stop
    bench_registry_stop
    if [ -n "$bench_registry_dir" ]; then cat "$bench_registry_dir/registry.log" >>"$RES/logs/registry.log" 2>/dev/null; fi
    if want podman && [ -d "$WORK/podman" ]; then
        "${PODMAN[@]}" system reset -f >/dev/null 2>&1
    fi
    if [ -n "$bench_dockerd_pid" ]; then cp "$WORK/dockerd.log" "$RES/logs/" 2>/dev/null; fi
    bench_stop_dockerd "$DOCKER"
    bench_umount_under "$DRUN"
    rm -rf "$DRUN"
    bench_umount_under "$WORK"
    [ "$registry_disk" = 1 ] || rm -rf "$REGBASE"
    bench_work_remove "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The registry: one port for the whole run (the image's name includes it), a fresh storage
# directory at every restart.
PORT=$(bench_free_port "${BENCH_REGISTRY_PORT:-5050}") || die "no free port from ${BENCH_REGISTRY_PORT:-5050}"
REF="127.0.0.1:$PORT/bench/image:latest"
reg_n=0
# registry_fresh NAME: the registry restarted on an empty storage directory REGBASE/NNN-NAME.
registry_fresh() {
    local old=$bench_registry_dir
    bench_registry_stop
    if [ -n "$old" ]; then
        cat "$old/registry.log" >>"$RES/logs/registry.log" 2>/dev/null
        rm -rf "$old"
    fi
    reg_n=$((reg_n + 1))
    bench_registry_dir="$REGBASE/$(printf %03d "$reg_n")-$1"
    bench_registry_start "$bench_registry_dir" "$PORT" || die "cannot start the registry on 127.0.0.1:$PORT"
}
ACCEPT='application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.oci.image.index.v1+json'
# registry_check: the registry holds REF with all its blobs; prints the manifest's media type
# and the size of its config and layers in bytes.
registry_check() {
    local base="http://127.0.0.1:$PORT/v2/bench/image" man d
    man=$(curl -fsS -H "Accept: $ACCEPT" "$base/manifests/latest") || { log "the registry has no $REF"; return 1; }
    for d in $(jq -r '.config.digest, .layers[].digest' <<<"$man"); do
        curl -fsS -I -o /dev/null "$base/blobs/$d" || { log "the registry lacks blob $d of $REF"; return 1; }
    done
    jq -r '"\(.mediaType // "?") \(.config.size + ([.layers[].size] | add))"' <<<"$man"
}

# ---------------------------------------------------------------------------------------------
# Space: the sources (berth's root holds blobs and unpacked layers), and every pull's result
# (berth and skopeo keep one per run, docker and podman one at a time).
total_mib=$((layer_mib * 3))
per_round=0
want berth && per_round=$((per_round + 2))
want skopeo && per_round=$((per_round + 1))
need_mib=$((total_mib * (4 + per_round * (rounds + warmup)) * 12 / 10))
free_mib=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') / 1024))
[ "$need_mib" -le "$free_mib" ] || die "not enough space in $WORK: need about $need_mib MiB, have $free_mib MiB (--rounds, --layer-mib)"

# ---------------------------------------------------------------------------------------------
# The sources: the image in each tool's store, tagged REF.
t0=${EPOCHREALTIME/[.,]/}
if want berth; then
    log "berth: loading image.tar into a fresh root"
    "$BERTH" --root "$BERTH_SRC" load -i "$IMAGE_TAR" >"$RES/logs/berth-load.log" 2>&1 ||
        { tail -n 20 "$RES/logs/berth-load.log" >&2; die "berth load failed"; }
    "$BERTH" --root "$BERTH_SRC" tag "$SRC_TAG" "$REF"
fi
if want docker; then
    bench_start_dockerd "$DOCKER" "$DSOCK" "$WORK/docker" "$DRUN/exec" "$WORK/dockerd.log" \
        none none || die "cannot start dockerd"
    log "docker: loading image.tar"
    "${DCLI[@]}" load -q -i "$IMAGE_TAR" >"$RES/logs/docker-load.log" 2>&1 ||
        { tail -n 20 "$RES/logs/docker-load.log" >&2; die "docker load failed"; }
    "${DCLI[@]}" tag "$SRC_TAG" "$REF"
fi
if want podman; then
    mkdir -p "$WORK/podman"
    log "podman: loading image.tar into a private store"
    "${PODMAN[@]}" load -q -i "$IMAGE_TAR" >"$RES/logs/podman-load.log" 2>&1 ||
        { tail -n 20 "$RES/logs/podman-load.log" >&2; die "podman load failed"; }
    "${PODMAN[@]}" tag "$SRC_TAG" "$REF"
fi
t1=${EPOCHREALTIME/[.,]/}
log "sources ready in $(((t1 - t0) / 1000)) ms"

# ---------------------------------------------------------------------------------------------
# The commands. pull_dest TOOL K: the fresh destination of TOOL's K-th pull.
pull_dest() { echo "$WORK/pull/$1-$(printf %03d "$2")"; }
# cmd_of OP TOOL K: the command, in CMD.
cmd_of() {
    case "$1/$2" in
        push/berth) CMD=("$BERTH" --root "$BERTH_SRC" push -q "$REF") ;;
        push/skopeo) CMD=(skopeo copy -q --dest-tls-verify=false "oci:$LAYOUT:latest" "docker://$REF") ;;
        push/docker) CMD=("${DCLI[@]}" push "$REF") ;;
        push/podman) CMD=("${PODMAN[@]}" push -q --tls-verify=false "$REF") ;;
        pull/berth) CMD=("$BERTH" --root "$(pull_dest berth "$3")" pull -q "$REF") ;;
        pull/skopeo) CMD=(skopeo copy -q --src-tls-verify=false "docker://$REF" "dir:$(pull_dest skopeo "$3")") ;;
        pull/docker) CMD=("${DCLI[@]}" pull "$REF") ;;
        pull/podman) CMD=("${PODMAN[@]}" pull -q --tls-verify=false "$REF") ;;
    esac
}
# prepare OP TOOL K: the untimed step before a timed command.
prepare() {
    case "$1/$2" in
        push/*) registry_fresh "push-$2" ;;
        pull/docker) "${DCLI[@]}" rmi "$REF" >/dev/null 2>&1 || true ;;
        pull/podman) "${PODMAN[@]}" rmi "$REF" >/dev/null 2>&1 || true ;;
    esac
    sync
}
# check OP TOOL K: the untimed check after a command; prints the bytes it moved.
check() {
    local d n
    case "$1/$2" in
        push/*) registry_check | cut -d' ' -f2 ;;
        pull/berth)
            "$BERTH" --root "$(pull_dest berth "$3")" images -q | grep -q . ||
                { log "berth pull left no image in its root"; return 1; }
            echo "$PULL_BYTES" ;;
        pull/skopeo)
            d=$(pull_dest skopeo "$3")
            n=$(find "$d" -type f ! -name manifest.json ! -name version | wc -l)
            if [ ! -s "$d/manifest.json" ] || [ "$n" -ne 4 ]; then
                log "skopeo pull left $n blobs in $d, expected 4 and a manifest"
                return 1
            fi
            echo "$PULL_BYTES" ;;
        pull/docker)
            "${DCLI[@]}" image inspect "$REF" >/dev/null || { log "docker has no $REF after its pull"; return 1; }
            echo "$PULL_BYTES" ;;
        pull/podman)
            "${PODMAN[@]}" image exists "$REF" || { log "podman has no $REF after its pull"; return 1; }
            echo "$PULL_BYTES" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Machine notes
version_of() { "$@" 2>&1 | head -n1 || true; }
{
    bench_machine_notes "$WORK"
    echo "registry:  $(version_of docker-registry --version) on 127.0.0.1:$PORT; storage in $REGBASE ($(stat -f -c %T "$REGBASE"))"
    echo "image:     $IMAGE_TAR ($(stat -c %s "$IMAGE_TAR") bytes; 3 layers of $layer_mib MiB; blobs $IMAGE_BYTES bytes; $PARAMS)"
    echo "operations: $measure; tools: ${selected[*]}; $rounds timed rounds after $warmup warm-up rounds; one run per tool per round"
    for t in "${selected[@]}"; do
        case "$t" in
            berth) echo "berth:     $BERTH ($(version_of "$BERTH" --version); sha256 $(sha256sum "$BERTH" | cut -c1-16), $(date -u -r "$BERTH" +%Y-%m-%dT%H:%M:%SZ))" ;;
            skopeo) echo "skopeo:    $(version_of skopeo --version)" ;;
            docker) echo "docker:    client $(version_of "${DCLI[@]}" version --format '{{.Client.Version}}') ($(command -v "$DOCKER")), dockerd $(version_of "${DCLI[@]}" version --format '{{.Server.Version}}'), storage driver $(version_of "${DCLI[@]}" info --format '{{.Driver}}')" ;;
            podman) echo "podman:    $(version_of podman --version)" ;;
        esac
        for m in "${OPS[@]}"; do
            measuring "$m" || continue
            cmd_of "$m" "$t" 1
            echo "  $m: $(quote "${CMD[@]}")"
        done
    done
    echo "git:       $(bench_git_rev)"
} >"$RES/machine.txt"
cat "$RES/machine.txt" >&2

# ---------------------------------------------------------------------------------------------
# run_one OP TOOL K ROUND: prepare, time and check one command; appends a line to runs.jsonl.
# ROUND is 0 for a warm-up.
TCK=$(getconf CLK_TCK)
run_one() {
    local op=$1 tool=$2 k=$3 round=$4 CMD logf t0 t1 u0 s0 u1 s1 du0=0 ds0=0 du1=0 ds1=0 ru0 rs0 ru1 rs1 bytes
    cmd_of "$op" "$tool" "$k"
    prepare "$op" "$tool" "$k"
    logf="$WORK/cmd.log"
    bench_proc_cpu "$bench_registry_pid"; ru0=$bench_cpu_user; rs0=$bench_cpu_sys
    if [ "$tool" = docker ]; then bench_proc_cpu "$bench_dockerd_pid"; du0=$bench_cpu_user; ds0=$bench_cpu_sys; fi
    bench_proc_cpu $$; u0=$bench_cpu_user; s0=$bench_cpu_sys
    t0=${EPOCHREALTIME/[.,]/}
    if ! bench_bg_run "$logf" "$logf" "${CMD[@]}"; then
        log "$tool $op failed: $(quote "${CMD[@]}")"
        tail -n 25 "$logf" >&2
        cp "$logf" "$RES/logs/$op-$tool-failed.log"
        die "$tool cannot $op here (see above; --only leaves it out)"
    fi
    t1=${EPOCHREALTIME/[.,]/}
    bench_proc_cpu $$; u1=$bench_cpu_user; s1=$bench_cpu_sys
    if [ "$tool" = docker ]; then bench_proc_cpu "$bench_dockerd_pid"; du1=$bench_cpu_user; ds1=$bench_cpu_sys; fi
    bench_proc_cpu "$bench_registry_pid"; ru1=$bench_cpu_user; rs1=$bench_cpu_sys
    cp "$logf" "$RES/logs/$op-$tool-last.log"
    bytes=$(check "$op" "$tool" "$k") || die "$tool $op: the check after it failed ($(quote "${CMD[@]}"))"
    jq -cn --arg op "$op" --arg tool "$tool" --argjson round "$round" --argjson k "$k" \
        --argjson us "$((t1 - t0))" --argjson tck "$TCK" \
        --argjson u "$((u1 - u0))" --argjson s "$((s1 - s0))" \
        --argjson du "$((du1 - du0))" --argjson ds "$((ds1 - ds0))" \
        --argjson ru "$((ru1 - ru0))" --argjson rs "$((rs1 - rs0))" --argjson bytes "${bytes:-0}" '
        {op: $op, tool: $tool, round: $round, run: $k, seconds: ($us / 1e6),
         user: ($u / $tck), system: ($s / $tck), daemon_user: ($du / $tck), daemon_system: ($ds / $tck),
         cpu: (($u + $s + $du + $ds) / $tck), registry_cpu: (($ru + $rs) / $tck), bytes: $bytes}' \
        >>"$RES/runs.jsonl"
    LAST_SECONDS=$(awk -v us="$((t1 - t0))" 'BEGIN { printf "%.3f", us / 1e6 }')
}

# run_op OP: the warm-up and timed rounds of one operation.
run_op() {
    local op=$1 r i t order label line total=$((warmup + rounds)) k=0
    for ((r = 1; r <= total; r++)); do
        if [ "$r" -le "$warmup" ]; then label="warm-up $r/$warmup"; else label="round $((r - warmup))/$rounds"; fi
        order=()
        for ((i = 0; i < ${#selected[@]}; i++)); do
            order+=("${selected[$(((i + r - 1) % ${#selected[@]}))]}")
        done
        k=$((k + 1))
        line=
        for t in "${order[@]}"; do
            run_one "$op" "$t" "$k" "$((r > warmup ? r - warmup : 0))"
            line+="  $t ${LAST_SECONDS}s"
        done
        printf 'registry.sh: %-4s %-13s%s\n' "$op" "$label" "$line" >&2
    done
}

[ "$tmpfs" = 1 ] || bench_cooldown
# The sources into the page cache, so that the first push does not pay for reading them.
cat "$IMAGE_TAR" "$LAYOUT"/blobs/sha256/* >/dev/null
if want berth; then find "$BERTH_SRC" -type f -exec cat {} + >/dev/null 2>&1 || true; fi
if measuring push; then
    log "push: $rounds rounds after $warmup warm-up rounds, a fresh registry before each push"
    run_op push
fi
if measuring pull; then
    # The sources go from docker's and podman's stores (a pull must find no layer of the
    # image there); the registry gets the image once, pushed by skopeo from the layout.
    if want docker; then
        "${DCLI[@]}" rmi "$REF" "$SRC_TAG" >/dev/null 2>&1 || true
        [ -z "$("${DCLI[@]}" images -aq)" ] || die "dockerd still holds images after removing the source"
    fi
    if want podman; then "${PODMAN[@]}" rmi -af >/dev/null 2>&1 || true; fi
    registry_fresh pull
    skopeo copy -q --dest-tls-verify=false --format v2s2 "oci:$LAYOUT:latest" "docker://$REF" ||
        die "could not push the image for the pulls"
    read -r PULL_TYPE PULL_BYTES < <(registry_check) || die "the registry does not hold the image for the pulls"
    echo "pull:      from $REF, $PULL_TYPE, $PULL_BYTES bytes (config and layers), pushed by skopeo from $LAYOUT" >>"$RES/machine.txt"
    log "pull: $rounds rounds after $warmup warm-up rounds, from one registry holding the image ($PULL_TYPE)"
    run_op pull
fi

LOAD_START=$(awk '/^load:/ { print $2, $3, $4; exit }' "$RES/machine.txt")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load end:  $LOAD_END" >>"$RES/machine.txt"

# ---------------------------------------------------------------------------------------------
# Statistics, ratios, goal.
jq -s --arg tools "${selected[*]}" --arg peers "${PEERS[*]}" "$BENCH_JQ_STATS"'
    ($tools | split(" ")) as $tools | ($peers | split(" ")) as $peers
    | [.[] | select(.round > 0)] as $runs
    | {results: [("push", "pull") as $op | $tools[] as $t
         | [$runs[] | select(.op == $op and .tool == $t)] | select(length > 0)
         | {op: $op, tool: $t, n: length, times: map(.seconds),
            median: (map(.seconds) | median), mean: (map(.seconds) | mean),
            min: (map(.seconds) | min), max: (map(.seconds) | max),
            cpu_median: (map(.cpu) | median), registry_cpu_median: (map(.registry_cpu) | median),
            bytes_median: (map(.bytes) | median)}]}
    | .results as $res
    | .ratios_of_medians = ([("push", "pull") as $op
        | ($res | map(select(.op == $op)) | map({(.tool): .median}) | add // {}) as $r
        | select($r.berth)
        | {($op): ([$peers[] as $p | select($r[$p]) | {("\($p)/berth"): ($r[$p] / $r.berth)}] | add // {})}]
        | add // {})
    | .goal = "berth faster than every peer at push and at pull: every peer/berth above 1"
    | .goal_met = (.ratios_of_medians | if length == 0 then null
                   else (map_values(map_values(. > 1)) | [.[][]] | all) end)
' "$RES/runs.jsonl" >"$RES/summary.json"

{
    echo "op,tool,round,run,seconds,user,system,daemon_user,daemon_system,cpu,registry_cpu,bytes"
    jq -r '[.op, .tool, .round, .run, .seconds, .user, .system, .daemon_user, .daemon_system,
            .cpu, .registry_cpu, .bytes] | @csv' "$RES/runs.jsonl"
} >"$RES/runs.csv"

{
    echo
    echo "registry push and pull, 3 layers, $((IMAGE_BYTES / 1000000)) MB of gzip blobs; medians of $rounds rounds; TOOL/berth above 1: berth is faster"
    echo "(load average at the start $LOAD_START, at the end $LOAD_END; $(nproc) CPUs)"
    printf '%-5s %-7s %3s %9s %9s %9s %9s %9s %11s\n' op tool n median min max cpu "MB sent" "TOOL/berth"
    jq -r '.ratios_of_medians as $r | .results[]
        | [.op, .tool, .n, .median, .min, .max, .cpu_median, (.bytes_median / 1e6),
           (if .tool == "berth" then (if $r[.op] then "1" else "-" end)
            else ($r[.op]["\(.tool)/berth"] // "-") end)] | @tsv' "$RES/summary.json" |
        while IFS=$'\t' read -r op t n med mn mx cpu mb ratio; do
            case "$ratio" in -|1) ;; *) ratio=$(printf '%.2f' "$ratio") ;; esac
            printf '%-5s %-7s %3d %8.3fs %8.3fs %8.3fs %8.3fs %9.1f %11s\n' "$op" "$t" "$n" \
                "$med" "$mn" "$mx" "$cpu" "$mb" "$ratio"
        done
    echo "(cpu: the command's own user+sys CPU and its children's; for docker plus dockerd's; MB sent:"
    echo " what the push stored in the registry, config and layers; for a pull the image's size)"
    echo
    jq -r '
        if .goal_met == null then "goal: berth faster than every peer at push and pull: not checked (needs berth and a peer)"
        else "goal: berth faster than every peer at push and pull: "
            + ([.ratios_of_medians | to_entries[] | .key as $op | .value | to_entries[]
                | "\($op) \(.key) = \(.value * 100 | round / 100)"] | join(", "))
            + ": " + (if .goal_met then "met" else "NOT met" end) end' "$RES/summary.json"
    echo
    echo "raw data: $RES"
} | tee "$RES/summary.txt"
