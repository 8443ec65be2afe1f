# shellcheck shell=bash
# Functions shared by the benchmarks in benches/ that source this file (build.sh, registry.sh; the
# older scripts still carry their own copies). Source it after setting:
#
#   BENCH_NAME  the script's name, for messages (build.sh)
#   REPO_ROOT   the repository root
#
# It defines log, die, want (over $only), quote, and the bench_* functions below. Nothing here
# runs anything when sourced.

log() { echo "$BENCH_NAME: $*" >&2; }
die() { log "$*"; exit 1; }
# want NAME: NAME is in the comma-separated list $only.
want() { case ",${only:-}," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# quote WORD...: the words as one shell-quoted line (what hyperfine -N splits back).
quote() { local s; s=$(printf '%q ' "$@"); echo "${s% }"; }

# jq definitions of the statistics every benchmark reports.
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_JQ_STATS='
    def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                       else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def mean: if length == 0 then null else add / length end;'

# bench_need_tools [--peers] TOOL...: install what is missing with scripts/install-deps.sh
# (--peers: also the peer engines), unless $install is 0; then every TOOL must exist.
bench_need_tools() {
    local peers=() t missing=()
    if [ "${1:-}" = --peers ]; then peers=(--peers); shift; fi
    for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${install:-1}" = 1 ] || die "missing: ${missing[*]} (scripts/install-deps.sh ${peers[*]})"
    log "missing: ${missing[*]}; running scripts/install-deps.sh ${peers[*]}"
    "$REPO_ROOT/scripts/install-deps.sh" "${peers[@]}" >&2
    for t in "${missing[@]}"; do
        command -v "$t" >/dev/null || die "still missing after install: $t"
    done
}

# bench_berth_binary BERTH DEFAULT BUILD COMMAND...: make sure the berth binary exists (built
# with cargo when it is the default one, missing, and BUILD is 1) and has every COMMAND (as
# `berth COMMAND --help` answers; a command may be two words, e.g. "builder prune").
bench_berth_binary() {
    local berth=$1 default=$2 build=$3 c
    shift 3
    if [ ! -x "$berth" ] && [ "$build" = 1 ] && [ "$berth" = "$default" ]; then
        log "berth not built; cargo build --release -p berth"
        (cd "$REPO_ROOT" && cargo build --release -p berth >&2) || log "cargo build failed"
    fi
    [ -x "$berth" ] || die "berth binary not found: $berth (cargo build --release -p berth, or set BERTH; --only without berth leaves it out)"
    for c in "$@"; do
        # shellcheck disable=SC2086 # "builder prune" is two words
        "$berth" $c --help >/dev/null 2>&1 ||
            die "$berth has no working '$c' command (berth $c --help fails); build a berth that has it, or leave berth out with --only"
    done
}

# bench_hugetlb_fix: crun (podman's runtime) cannot set up v1 cgroups while the v2 hierarchy of
# a hybrid host holds hugetlb: move it to a v1 mount (shared/peers.md section 2). The controller
# can move only while no v2 cgroup uses it; the mount stays (other tools here rely on it too).
bench_hugetlb_fix() {
    local u=/sys/fs/cgroup/unified/cgroup.controllers
    if [ ! -r "$u" ] || ! grep -qw hugetlb "$u"; then return 0; fi
    log "hugetlb controller is on the cgroup2 mount; moving it to /sys/fs/cgroup/hugetlb (v1)"
    mkdir -p /sys/fs/cgroup/hugetlb
    if ! mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb; then
        log "WARNING: could not mount the hugetlb v1 hierarchy; podman may fail"
    fi
}

# bench_umount_under DIR: unmount anything left mounted under DIR, deepest first.
bench_umount_under() {
    local m
    findmnt -rn -o TARGET 2>/dev/null | awk -v p="$1/" 'index($0, p) == 1' | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# bench_bg_run OUT ERR COMMAND...: run COMMAND in the background (stdin /dev/null, stdout to
# OUT, stderr to ERR; the same file for both when OUT = ERR) and wait for it, so that a signal to
# the script cleans up at once rather than after the command. Its PID is in $bench_bg_pid while
# it runs (the clean-up kills it).
bench_bg_pid=
bench_bg_run() {
    local out=$1 err=$2 rc=0
    shift 2
    if [ "$out" = "$err" ]; then
        "$@" </dev/null >"$out" 2>&1 &
    else
        "$@" </dev/null >"$out" 2>"$err" &
    fi
    bench_bg_pid=$!
    wait "$bench_bg_pid" || rc=$?
    bench_bg_pid=
    return "$rc"
}
# bench_bg_stop: the clean-up's part for bench_bg_run.
bench_bg_stop() {
    [ -n "$bench_bg_pid" ] || return 0
    kill "$bench_bg_pid" 2>/dev/null
    wait "$bench_bg_pid" 2>/dev/null
    bench_bg_pid=
    sleep 1                         # the commands it had started finish on their own
}

# A private dockerd (shared/peers.md section 4): its own data root, exec root, socket, pid file
# and bridge, --iptables=false, --default-ulimit nofile/nproc.
#
# bench_start_dockerd DOCKER_CLI SOCK DATA_ROOT EXEC_ROOT LOG BRIDGE CIDR: CIDR is the
# bridge's address with its prefix (10.79.0.1/24), or "none" for a daemon without a default
# bridge network (then BRIDGE is not made). The bridge must not exist yet. Sets
# bench_dockerd_pid, bench_dockerd_sock, bench_bridge (while it is this script's to delete).
bench_dockerd_pid=
bench_dockerd_sock=
bench_bridge=
bench_start_dockerd() {
    local cli=$1 sock=$2 data=$3 exec_root=$4 logf=$5 bridge=$6 cidr=$7 i net_args=()
    mkdir -p "$data" "$exec_root"
    if [ "$cidr" = none ]; then
        net_args=(--bridge none)
    else
        if ip link show "$bridge" >/dev/null 2>&1; then
            log "bridge $bridge exists already (another run of this benchmark, or a leftover: ip link del $bridge)"
            return 1
        fi
        if ip -4 -o addr show | grep -q " ${cidr%.*}\."; then
            log "WARNING: an interface here already has an address in ${cidr%.*}.0/${cidr#*/}"
        fi
        ip link add "$bridge" type bridge || return 1
        bench_bridge=$bridge
        ip addr add "$cidr" dev "$bridge" || return 1
        ip link set "$bridge" up || return 1
        net_args=(--bridge "$bridge")
    fi
    log "docker: starting a private dockerd (socket $sock, data root $data)"
    dockerd --host "unix://$sock" --data-root "$data" --exec-root "$exec_root" \
        --pidfile "$exec_root/dockerd.pid" "${net_args[@]}" --iptables=false --ip-forward=false \
        --default-ulimit nofile=20000:20000 --default-ulimit nproc=65536:65536 \
        --log-level warn >"$logf" 2>&1 &
    bench_dockerd_pid=$!
    bench_dockerd_sock=$sock
    for ((i = 0; i < 300; i++)); do
        "$cli" -H "unix://$sock" version >/dev/null 2>&1 && return 0
        kill -0 "$bench_dockerd_pid" 2>/dev/null || break
        sleep 0.2
    done
    log "dockerd did not come up; the end of its log:"
    tail -n 20 "$logf" >&2
    return 1
}

# bench_stop_dockerd DOCKER_CLI: remove the daemon's running containers, stop it (SIGTERM, 30 s,
# then SIGKILL) and delete its bridge. Its data root is the caller's to remove.
bench_stop_dockerd() {
    local cli=$1 i
    if [ -n "$bench_dockerd_pid" ]; then
        "$cli" -H "unix://$bench_dockerd_sock" ps -q 2>/dev/null |
            xargs -r "$cli" -H "unix://$bench_dockerd_sock" rm -f >/dev/null 2>&1
        kill "$bench_dockerd_pid" 2>/dev/null
        for ((i = 0; i < 150; i++)); do kill -0 "$bench_dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$bench_dockerd_pid" 2>/dev/null; then
            log "dockerd did not stop in 30 s; killing it"
            kill -9 "$bench_dockerd_pid" 2>/dev/null
        fi
        wait "$bench_dockerd_pid" 2>/dev/null
        bench_dockerd_pid=
    fi
    if [ -n "$bench_bridge" ]; then
        ip link del "$bench_bridge" 2>/dev/null
        bench_bridge=
    fi
}

# Large deletions on ext4 without a journal make file creation slow for the next 60 s or more
# (shared/peers.md section 8): bench_big_rm records when the last one happened in
# $BENCH_DIR/.last-delete (the file unpack.sh uses too), and bench_cooldown waits out the rest
# of $BENCH_COOLDOWN seconds (default 65) before timed runs.
bench_big_rm() {
    [ -e "$1" ] || return 0
    rm -rf "$1"
    sync
    mkdir -p "$BENCH_DIR"
    date +%s >"$BENCH_DIR/.last-delete"
}
bench_cooldown() {
    local last now left
    last=$(cat "$BENCH_DIR/.last-delete" 2>/dev/null || echo 0)
    now=$(date +%s)
    left=$((last + ${BENCH_COOLDOWN:-65} - now))
    if [ "$left" -gt 0 ]; then
        log "waiting ${left}s: files were deleted on this filesystem recently (ext4 inode reuse)"
        sleep "$left"
    fi
}

# bench_machine_notes VENUE: the machine lines every benchmark's machine.txt starts with.
bench_machine_notes() {
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host:      $(uname -n)"
    echo "kernel:    $(uname -srvm)"
    echo "nproc:     $(nproc)"
    echo "cpu:       $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory:    $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "load:      $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cgroups:   $(stat -f -c %T /sys/fs/cgroup)$([ -d /sys/fs/cgroup/unified ] && echo ' (hybrid: v1 + cgroup2 at /sys/fs/cgroup/unified)')"
    echo "venue:     $1 ($(stat -f -c %T "$1"); $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$1" 2>/dev/null | head -n1 || true))"
    echo "jbd2:      $(find /proc/fs/jbd2 -mindepth 1 -maxdepth 1 -printf '%f ' 2>/dev/null)(empty = no ext4 journal)"
    echo "hyperfine: $(hyperfine --version)"
}

# bench_git_rev: the repository's short revision, " (dirty)" when it has changes.
bench_git_rev() {
    echo "$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (dirty)')"
}

# bench_free_port FIRST: the first TCP port from FIRST up (at most 100 tried) on which nothing
# listens, on any address.
bench_free_port() {
    local p
    for ((p = $1; p < $1 + 100; p++)); do
        if ! ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

# A local registry, distribution 2.8 (`docker-registry`), plain HTTP on 127.0.0.1
# (shared/peers.md section 5): its own config, storage and log, no auth, access log off.
#
# bench_registry_config DIR PORT: writes DIR/config.yml for docker-registry (distribution):
# filesystem storage in DIR/data, in-memory blob descriptor cache, access log off, log level
# warn, deletes enabled (shared/peers.md section 5), on 127.0.0.1:PORT.
bench_registry_config() {
    mkdir -p "$1/data"
    cat >"$1/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$2
CONF
}
# bench_wait_http URL PID LOG: waits (10 s at most) until URL answers 2xx while PID lives;
# when it does not, prints the end of LOG and fails.
bench_wait_http() {
    local url=$1 pid=$2 logfile=$3 i
    for ((i = 0; i < 400; i++)); do
        curl -fs -o /dev/null "$url" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.025
    done
    curl -fs -o /dev/null "$url" && return 0
    log "nothing answered $url; the end of $logfile:"
    tail -n 20 "$logfile" >&2
    return 1
}
# bench_registry_start DIR PORT: writes DIR/config.yml, serves DIR/data on 127.0.0.1:PORT
# (log in DIR/registry.log) and waits until /v2/ answers. Sets bench_registry_pid.
bench_registry_pid=
bench_registry_start() {
    local dir=$1 port=$2
    bench_registry_config "$dir" "$port"
    docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
    bench_registry_pid=$!
    bench_wait_http "http://127.0.0.1:$port/v2/" "$bench_registry_pid" "$dir/registry.log" \
        && return 0
    bench_registry_stop
    return 1
}
# bench_registry_stop: stops the registry of bench_registry_start (its storage stays).
bench_registry_stop() {
    [ -n "$bench_registry_pid" ] || return 0
    kill "$bench_registry_pid" 2>/dev/null || true
    wait "$bench_registry_pid" 2>/dev/null || true     # 143: it ended on SIGTERM
    bench_registry_pid=
}

# bench_proc_cpu PID: the CPU time of process PID and of its children that it has waited for
# (utime + stime + cutime + cstime of /proc/PID/stat), in clock ticks (getconf CLK_TCK per
# second), in $bench_cpu_user and $bench_cpu_sys; both 0 when the process is gone. No subshell:
# for the script itself ($$), what it runs between two calls is what the difference counts.
# shellcheck disable=SC2034 # used by the scripts that source this file
bench_cpu_user=0 bench_cpu_sys=0
bench_proc_cpu() {
    local line rest f
    bench_cpu_user=0
    bench_cpu_sys=0
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
    read -r line <"/proc/$1/stat" || return 0
    rest=${line##*) }                   # after the command name, which may hold spaces
    read -r -a f <<<"$rest"
    # rest starts at field 3 (state): utime is field 14, i.e. f[11]; stime f[12]; cutime f[13];
    # cstime f[14].
    # shellcheck disable=SC2034
    bench_cpu_user=$((f[11] + f[13])) bench_cpu_sys=$((f[12] + f[14]))
}

# bench_work_remove DIR: removes a bench's work directory at the end, unless --keep (keep=1)
# asked to keep it; on disk through bench_big_rm, on tmpfs (tmpfs=1) at once.
bench_work_remove() {
    if [ "${keep:-0}" = 1 ]; then
        log "kept the work directory: $1"
    elif [ "${tmpfs:-0}" = 1 ]; then
        rm -rf "$1"
    else
        bench_big_rm "$1"
    fi
}
