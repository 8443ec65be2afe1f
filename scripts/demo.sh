#!/usr/bin/env bash
# berth's main job, as far as it goes today: build berth, make an offline busybox base image,
# and move it between two stores through a docker-format archive, as a user would share one.
# Usage: scripts/demo.sh   (root; uses /var/lib/berth-demo as its state root)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh
cargo build --release --locked -p berth
export BERTH=$PWD/target/release/berth
export BERTH_ROOT=${BERTH_ROOT:-/var/lib/berth-demo}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step scripts/make-busybox-image.sh busybox:latest
scripts/make-busybox-image.sh busybox:latest
step berth tag busybox:latest demo/busybox:v1
$BERTH tag busybox:latest demo/busybox:v1
step berth images
$BERTH images
step berth history busybox
$BERTH history busybox
step berth save -o /tmp/busybox.tar busybox demo/busybox:v1
$BERTH save -o /tmp/busybox.tar busybox demo/busybox:v1
step berth --root /tmp/berth-demo-2 load -i /tmp/busybox.tar
rm -rf /tmp/berth-demo-2
$BERTH --root /tmp/berth-demo-2 load -i /tmp/busybox.tar
step berth --root /tmp/berth-demo-2 images --no-trunc
$BERTH --root /tmp/berth-demo-2 images --no-trunc
step berth system df
$BERTH system df
