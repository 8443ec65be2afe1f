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
# The peers too: tests drive dockerd, podman, crun and runc.
scripts/install-deps.sh --peers

# What berth's networking leaves on the host (links by the names berth and its tests give
# them, chains of its nftables table), so that the suite can prove it left nothing behind.
network_leftovers() {
    ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 |
        grep -E '^(veth[0-9a-f]{7}[0-9]+|br[0-9a-f]{10}|br-[0-9a-f]{12}|bnt[0-9]+.*)$' || true
    nft list table ip berth 2>/dev/null | awk '$1 == "chain" {print "chain " $2}' || true
}
before=$(network_leftovers | sort)
cargo test --workspace --locked "$@"
after=$(network_leftovers | sort)
left=$(comm -13 <(echo "$before") <(echo "$after"))
if [ -n "$left" ]; then
    echo "test.sh: the tests left networking behind:" >&2
    echo "$left" >&2
    exit 1
fi
echo "test.sh: no veth, bridge or NAT chain left behind"
