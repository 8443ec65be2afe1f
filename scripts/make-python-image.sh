#!/usr/bin/env bash
# Build a Debian bookworm + python3 image (like the official python:3 image, without a registry)
# with debootstrap, cache its rootfs tarball, and `berth import` it.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/make-python-image.sh [-h] [--refresh] [--tar-only] [TAG]

Builds a Debian bookworm (minbase) root filesystem with python3, python3-pip, python3-venv and
ca-certificates using debootstrap, and imports it into berth as TAG (default: python:3-debian).
Prints the image ID.

The rootfs tarball is cached in ${BERTH_CACHE:-/var/cache/berth-images}/ (debootstrap takes
minutes; later runs reuse the tarball and take seconds).

The image:
  * has the host's CA bundle (/etc/ssl/certs/ca-certificates.crt) so pip and curl work through
    the TLS-intercepting proxy, and PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE pointing at it;
  * has no EXTERNALLY-MANAGED marker, so `pip install numpy` works as in the official image;
  * has apt sources pointing at the host's Debian mirror, with the host's apt Acquire settings;
  * CMD ["python3"], ENV PATH=..., ENV LANG=C.UTF-8.

Options:
  --refresh    rebuild the cached tarball even if it exists
  --tar-only   only build (or find) the cached tarball and print its path; no berth needed
  -h, --help   this help

Environment:
  BERTH          berth binary (default: <repo>/target/release/berth)
  BERTH_ROOT     passed through to berth (its --root)
  BERTH_CACHE    tarball cache directory (default: /var/cache/berth-images)
  DEBIAN_MIRROR  Debian mirror for debootstrap (default: the one apt uses on this host)
  SUITE          Debian suite (default: bookworm)
EOF
}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_DEFAULT="$REPO_ROOT/target/release/berth"
BERTH=${BERTH:-$BERTH_DEFAULT}
CACHE=${BERTH_CACHE:-/var/cache/berth-images}
SUITE=${SUITE:-bookworm}
INCLUDE=python3,python3-pip,python3-venv,ca-certificates

refresh=0
tar_only=0
TAG=
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --refresh) refresh=1 ;;
        --tar-only) tar_only=1 ;;
        -*) echo "make-python-image: unknown option: $1" >&2; usage >&2; exit 2 ;;
        *)
            if [ -n "$TAG" ]; then echo "make-python-image: too many arguments" >&2; exit 2; fi
            TAG=$1 ;;
    esac
    shift
done
TAG=${TAG:-python:3-debian}

log() { echo "make-python-image: $*" >&2; }

# The Debian mirror apt uses here (deb822 .sources or one-line .list), first non-security URI.
detect_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
            grep -E '/debian/?$' | grep -v security | head -n1 || true)
        if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f" |
            grep -E '/debian/?$' | grep -v security | head -n1 || true)
        if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
    done
    echo http://deb.debian.org/debian
}

# The Debian security mirror apt uses here, if any.
detect_security_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(grep -vE '^[[:space:]]*#' "$f" | grep -oE '[a-z]+://[^ ]*debian-security/?' | head -n1 || true)
        if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
    done
}

# apt's proxy settings, if any, exported for debootstrap's wget.
export_apt_proxy() {
    local p
    p=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n1)
    if [ -n "$p" ] && [ "$p" != DIRECT ] && [ -z "${http_proxy:-}" ]; then
        export http_proxy=$p
        log "using apt's http proxy $p"
    fi
    p=$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::https::Proxy "\(.*\)";$/\1/p' | head -n1)
    if [ -n "$p" ] && [ "$p" != DIRECT ] && [ -z "${https_proxy:-}" ]; then
        export https_proxy=$p
        log "using apt's https proxy $p"
    fi
}

# Certificates in the host bundle that are not in Debian's Mozilla set (e.g. the intercepting
# proxy's CA) go to usr/local/share/ca-certificates so update-ca-certificates inside the image
# (run by any later `apt-get install`) keeps them.
install_extra_cas() {
    local rootfs=$1 tmp known f n=0
    tmp=$(mktemp -d)
    known="$tmp/known"
    : >"$known"
    for f in /usr/share/ca-certificates/*/*.crt "$rootfs"/usr/share/ca-certificates/*/*.crt; do
        [ -r "$f" ] || continue
        openssl x509 -in "$f" -noout -fingerprint -sha256 2>/dev/null >>"$known" || true
    done
    awk -v dir="$tmp" '/-----BEGIN CERTIFICATE-----/ { n++; out = sprintf("%s/cert-%04d.pem", dir, n) }
        out != "" { print > out }
        /-----END CERTIFICATE-----/ { close(out); out = "" }' /etc/ssl/certs/ca-certificates.crt
    mkdir -p "$rootfs/usr/local/share/ca-certificates"
    for f in "$tmp"/cert-*.pem; do
        [ -e "$f" ] || continue
        fp=$(openssl x509 -in "$f" -noout -fingerprint -sha256 2>/dev/null) || continue
        if ! grep -qxF "$fp" "$known"; then
            n=$((n + 1))
            cp "$f" "$rootfs/usr/local/share/ca-certificates/host-extra-$n.crt"
        fi
    done
    rm -rf "$tmp"
    log "host CA certificates not in Debian's set, kept for update-ca-certificates: $n"
}

build_tarball() {
    local out=$1 mirror security work rootfs start end
    mirror=${DEBIAN_MIRROR:-$(detect_mirror)}
    export_apt_proxy
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
    }
    mkdir -p "$CACHE"
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    rootfs="$work/rootfs"
    # Unmount anything debootstrap left mounted if it failed, then remove the work dir.
    # shellcheck disable=SC2064
    trap "umount -R '$rootfs/proc' '$rootfs/sys' 2>/dev/null || true; rm -rf '$work'" EXIT
    log "debootstrap --variant=minbase --include=$INCLUDE $SUITE from $mirror (takes minutes)"
    start=$(date +%s)
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        cp "$work/debootstrap.log" "$CACHE/debootstrap-failed.log" 2>/dev/null || true
        log "debootstrap failed (log: $CACHE/debootstrap-failed.log)"
        exit 1
    }
    end=$(date +%s)
    log "debootstrap took $((end - start)) s"

    # CA bundle of the host (includes the intercepting proxy's CA) + the extra CAs, durable.
    install_extra_cas "$rootfs"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 ||
        log "warning: update-ca-certificates failed in the rootfs; using the host bundle only"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"

    # pip installs into the system like the official image (PEP 668 marker removed).
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED

    # apt inside the image: same mirror, same Acquire settings (validity checks, proxy).
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
EOF
    security=${DEBIAN_SECURITY_MIRROR:-$(detect_security_mirror)}
    if [ -n "$security" ]; then
        echo "deb $security $SUITE-security main" >>"$rootfs/etc/apt/sources.list"
    fi
    apt-config dump 2>/dev/null |
        grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
            >"$rootfs/etc/apt/apt.conf.d/99host-acquire" || rm -f "$rootfs/etc/apt/apt.conf.d/99host-acquire"

    # Nothing may stay mounted inside the rootfs before files are removed or tarred.
    if grep -qF " $rootfs/" /proc/self/mounts; then
        umount -R "$rootfs/proc" "$rootfs/sys" 2>/dev/null || true
        if grep -qF " $rootfs/" /proc/self/mounts; then
            log "something is still mounted under $rootfs; not continuing"
            exit 1
        fi
    fi

    # Small and clean, like a registry image: no apt lists/caches, logs, host files, device nodes.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/var/tmp/* \
        "$rootfs"/root/.cache "${rootfs:?}"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* \
        "$rootfs"/debootstrap
    mkdir -p "$rootfs/var/lib/apt/lists/partial" "$rootfs/var/cache/apt/archives/partial"
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"

    tar --numeric-owner --sort=name -C "$rootfs" -cf "$work/rootfs.tar" .
    mv "$work/rootfs.tar" "$out"
    rm -rf "$work"
    trap - EXIT
    log "cached $out ($(du -h "$out" | cut -f1))"
}

TARBALL="$CACHE/python3-$SUITE-minbase.tar"
if [ "$refresh" = 1 ] || [ ! -s "$TARBALL" ]; then
    build_tarball "$TARBALL"
else
    log "using cached $TARBALL"
fi

if [ "$tar_only" = 1 ]; then
    echo "$TARBALL"
    exit 0
fi

if [ ! -x "$BERTH" ]; then
    log "berth binary not found: $BERTH (build it: cargo build --release -p berth, or set BERTH)"
    exit 1
fi

args=()
if [ -n "${BERTH_ROOT:-}" ]; then args+=(--root "$BERTH_ROOT"); fi
CERT=/etc/ssl/certs/ca-certificates.crt
"$BERTH" "${args[@]}" import \
    --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PIP_CERT=$CERT" \
    --change "ENV REQUESTS_CA_BUNDLE=$CERT" \
    --change "ENV SSL_CERT_FILE=$CERT" \
    -m "debootstrap $SUITE minbase + $INCLUDE" \
    "$TARBALL" "$TAG"
