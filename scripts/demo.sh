#!/usr/bin/env bash
# berth's main job, as far as it goes today: build berth, make offline busybox and python base
# images, run containers from them (limits, a pty-less foreground run, exit codes, a server on
# a published port with its data on a volume), build the data-science example (examples/ml:
# NumPy, Pandas and scikit-learn pip-installed in a RUN step) and run it with a port and a
# volume, and move an image between two stores through a docker-format archive, as a user
# would share one.
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
step scripts/make-python-image.sh
scripts/make-python-image.sh
step berth run --rm --memory 256m --cpus 1 python:3-debian python3 -c '...'
$BERTH run --rm --memory 256m --cpus 1 python:3-debian python3 -c \
    'import os, platform; print("python", platform.python_version(), "as pid", os.getpid(), "on", os.uname().nodename)'
step berth run --rm -e MODEL=resnet -w /work -u 1000:1000 busybox sh -c '...'
$BERTH run --rm -e MODEL=resnet -w /work -u 1000:1000 busybox sh -c 'echo "$(id -u):$(id -g) in $(pwd) training $MODEL"'
DATA=$(mktemp -d)
echo "rows,of,a,dataset" >"$DATA/train.csv"
step berth run -d -p 127.0.0.1:18888:8000 -v "$DATA:/data:ro" -w /data python:3-debian python3 -m http.server 8000
web=$($BERTH run -d -p 127.0.0.1:18888:8000 -v "$DATA:/data:ro" -w /data python:3-debian python3 -m http.server 8000)
step curl http://127.0.0.1:18888/train.csv
served=0
for _ in $(seq 100); do
    if curl -sf --noproxy '*' http://127.0.0.1:18888/train.csv; then served=1; break; fi
    sleep 0.1
done
$BERTH rm -f "$web" >/dev/null
[ "$served" = 1 ] || { echo "demo: the server on the published port never answered" >&2; exit 1; }
rm -rf "$DATA"
step berth build -t ml-example examples/ml
$BERTH build -t ml-example examples/ml
step berth run -d -p 127.0.0.1:18889:8888 -v ml-data:/data ml-example
ml=$($BERTH run -d -p 127.0.0.1:18889:8888 -v ml-data:/data ml-example)
step curl http://127.0.0.1:18889/report.json
trained=0
for _ in $(seq 300); do
    if curl -sf --noproxy '*' http://127.0.0.1:18889/report.json; then trained=1; break; fi
    sleep 0.2
done
echo
$BERTH logs "$ml"
$BERTH rm -f "$ml" >/dev/null
$BERTH volume rm ml-data >/dev/null
[ "$trained" = 1 ] || { echo "demo: the trained model's report never came through the published port" >&2; exit 1; }
step berth run --rm busybox sh -c 'exit 3'
status=0
$BERTH run --rm busybox sh -c 'exit 3' || status=$?
echo "exit status $status"
[ "$status" = 3 ]
