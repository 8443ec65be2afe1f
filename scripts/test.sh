#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs every test of the
# workspace (unit, property, and integration tests that drive the real berth binary as root
# against skopeo and umoci). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the tests need root (real mounts, ownership, device nodes)" >&2
    exit 1
fi
scripts/install-deps.sh
cargo test --workspace --locked "$@"
