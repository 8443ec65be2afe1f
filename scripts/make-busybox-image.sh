#!/usr/bin/env bash
# Build a deterministic busybox root filesystem from the host's busybox-static and `berth import` it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/make-busybox-image.sh [-h] [-o TARBALL] [--tar-only] [TAG]

Builds a busybox root filesystem (bin/busybox from Debian's busybox-static, a symlink per
applet, /etc/passwd, /etc/group, /tmp, /root, /var, /proc, /sys, /dev) as a deterministic
tarball (same busybox, same bytes, same image ID) and imports it into berth as TAG
(default: busybox:latest) with CMD ["sh"]. Prints the image ID.

Options:
  -o TARBALL   also keep the rootfs tarball at TARBALL
  --tar-only   only write the tarball (needs -o); no berth needed
  -h, --help   this help

Environment:
  BERTH       berth binary (default: <repo>/target/release/berth)
  BERTH_ROOT  passed through to berth (its --root)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
BUSYBOX=/bin/busybox

out=
tar_only=0
TAG=
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -o) [ $# -ge 2 ] || { usage >&2; exit 2; }; out=$2; shift ;;
        --tar-only) tar_only=1 ;;
        -*) echo "make-busybox-image: unknown option: $1" >&2; usage >&2; exit 2 ;;
        *)
            if [ -n "$TAG" ]; then echo "make-busybox-image: too many arguments" >&2; exit 2; fi
            TAG=$1 ;;
    esac
    shift
done
TAG=${TAG:-busybox:latest}
if [ "$tar_only" = 1 ] && [ -z "$out" ]; then
    echo "make-busybox-image: --tar-only needs -o TARBALL" >&2
    exit 2
fi

log() { echo "make-busybox-image: $*" >&2; }

# busybox-static gives a /bin/busybox with no shared-library needs.
if [ "$(dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null || true)" != installed ]; then
    log "installing busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
R="$work/rootfs"
mkdir -p "$R/bin" "$R/etc" "$R/root" "$R/var" "$R/proc" "$R/sys" "$R/dev" "$R/tmp"
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"
done
cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
chmod 0755 "$R" "$R"/bin "$R"/etc "$R"/var "$R"/proc "$R"/sys "$R"/dev
chmod 0755 "$R/bin/busybox"
chmod 0700 "$R/root"
chmod 0644 "$R/etc/passwd" "$R/etc/group"
chmod 1777 "$R/tmp"

TARBALL="$work/busybox.tar"
tar --mtime=@0 --sort=name --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$R" -cf "$TARBALL" .
log "rootfs: $("$BUSYBOX" --list | wc -l) applets, sha256 $(sha256sum "$TARBALL" | cut -c1-16)..."
if [ -n "$out" ]; then
    cp "$TARBALL" "$out"
    log "tarball: $out"
fi
if [ "$tar_only" = 1 ]; then
    exit 0
fi

if [ ! -x "$BERTH" ]; then
    log "berth binary not found: $BERTH (build it: cargo build --release -p berth, or set BERTH)"
    exit 1
fi

args=()
if [ -n "${BERTH_ROOT:-}" ]; then args+=(--root "$BERTH_ROOT"); fi
"$BERTH" "${args[@]}" import --change 'CMD ["sh"]' -m "busybox-static $(dpkg-query -W -f='${Version}' busybox-static)" \
    "$TARBALL" "$TAG"
