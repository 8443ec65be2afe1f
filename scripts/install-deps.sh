#!/usr/bin/env bash
# Install the Debian packages berth's build, tests and benchmarks need. Idempotent and fast when
# everything is already there (no apt at all then).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install-deps.sh [-h] [--peers] [--dry-run] [EXTRA_PACKAGE...]

Installs (apt-get, noninteractive) what berth's build and tests need:
  build-essential pkg-config libseccomp-dev busybox-static debootstrap skopeo umoci jq
  hyperfine ca-certificates curl iproute2 nftables docker-registry apache2-utils openssl
With --peers, also the engines and clients berth is compared with and driven by:
  crun runc podman docker.io docker-compose python3-venv, and docker-py from PyPI in a
  virtual environment of its own (/var/lib/berth-tests/docker-py)
EXTRA_PACKAGE names are installed too.

If every requested package is already installed (dpkg-query), apt is not run at all.

Options:
  --peers      also install the peer engines (benchmarks, compatibility tests)
  --dry-run    only print what is missing
  -h, --help   this help
EOF
}

# nftables: berth-net's NAT runs `nft` (and its tests list tables with it); iproute2: tests
# check links and routes with `ip`. docker-registry (distribution), apache2-utils (htpasswd's
# bcrypt) and openssl (the token server's key): the registry client's tests.
BASE_PKGS=(build-essential pkg-config libseccomp-dev busybox-static debootstrap skopeo umoci jq
    hyperfine ca-certificates curl iproute2 nftables docker-registry apache2-utils openssl)
# docker-compose (v1, Debian's) and docker-py (PyPI) drive `berth serve` in the Engine API tests.
PEER_PKGS=(crun runc podman docker.io docker-compose python3-venv)
DOCKER_PY_VENV=/var/lib/berth-tests/docker-py
DOCKER_PY_VERSION=7.1.0
peers=0

pkgs=("${BASE_PKGS[@]}")
dry_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --peers) pkgs+=("${PEER_PKGS[@]}"); peers=1 ;;
        --dry-run) dry_run=1 ;;
        -*) echo "install-deps: unknown option: $1" >&2; usage >&2; exit 2 ;;
        *) pkgs+=("$1") ;;
    esac
    shift
done

log() { echo "install-deps: $*"; }

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# docker-py from PyPI, in its own venv (through the proxy, whose CA is in the host bundle).
docker_py() {
    [ "$peers" = 1 ] || return 0
    if "$DOCKER_PY_VENV/bin/python" -c "import docker, sys; sys.exit(docker.__version__ != '$DOCKER_PY_VERSION')" 2>/dev/null; then
        log "docker-py $DOCKER_PY_VERSION already in $DOCKER_PY_VENV"
        return 0
    fi
    if [ "$dry_run" = 1 ]; then
        log "missing: docker-py $DOCKER_PY_VERSION in $DOCKER_PY_VENV"
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root to install docker-py into $DOCKER_PY_VENV"
        return 1
    fi
    log "pip install docker==$DOCKER_PY_VERSION into $DOCKER_PY_VENV"
    /usr/bin/python3 -m venv "$DOCKER_PY_VENV"
    PIP_CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt} PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$DOCKER_PY_VENV/bin/pip" install -q "docker==$DOCKER_PY_VERSION"
}

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    log "all ${#pkgs[@]} packages already installed: ${pkgs[*]}"
    docker_py
    exit 0
fi

log "missing: ${missing[*]}"
if [ "$dry_run" = 1 ]; then
    docker_py || true
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root to install packages"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q
log "apt-get install ${missing[*]}"
apt-get install -y -q -o Dpkg::Use-Pty=0 "${missing[@]}"

still=()
for p in "${missing[@]}"; do
    installed "$p" || still+=("$p")
done
if [ ${#still[@]} -ne 0 ]; then
    log "still not installed: ${still[*]}"
    exit 1
fi
log "installed: ${missing[*]}"
docker_py
