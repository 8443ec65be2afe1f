//! `berth run` against the real kernel: each test checks one isolation or resource property
//! from inside a busybox container, then that nothing of the container is left behind
//! (mounts, cgroups, processes, its directory).

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{berth_bin, host::Host};

#[test]
fn pid_1_is_the_command_and_host_processes_are_invisible() {
    let host = Host::new();
    let out = host.run_ok(&[
        "busybox",
        "sh",
        "-c",
        "echo $$; ls /proc | grep -c '^[0-9]'",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    // sh, ls and grep at most: none of the host's processes.
    let visible: u32 = lines[1].parse().unwrap();
    assert!(visible <= 3, "{visible} processes visible: {out}");
}

/// As with Docker and crun, the command starts with every signal at its default action and
/// none blocked: nothing of berth's own handling (Rust ignores SIGPIPE, `run` forwards signals)
/// carries over, whether init ran in berth's process (the usual case) or was executed (with
/// `--init`, where it stays PID 1 and the command is its child).
#[test]
fn the_command_starts_with_default_signal_handling() {
    let host = Host::new();
    for extra in [&[][..], &["--init"][..]] {
        let mut args = extra.to_vec();
        args.extend([
            "busybox",
            "grep",
            "-E",
            "^Sig(Ign|Blk|Cgt)",
            "/proc/self/status",
        ]);
        let out = host.run_ok(&args);
        for field in ["SigIgn", "SigBlk", "SigCgt"] {
            assert!(
                out.lines()
                    .any(|l| l == format!("{field}:\t0000000000000000")),
                "{extra:?}: {field} is not empty:\n{out}"
            );
        }
    }
}

#[test]
fn hostname_is_set() {
    let host = Host::new();
    assert_eq!(
        host.run_ok(&["-h", "model-server", "busybox", "hostname"]),
        "model-server\n"
    );
    let ran = host.run(&["--rm", "busybox", "sh", "-c", "hostname; cat /etc/hostname"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // Docker's default: the short ID.
    assert_eq!(
        ran.stdout,
        format!("{}\n{}\n", &ran.id[..12], &ran.id[..12])
    );
    host.assert_gone(&ran.id);
}

#[test]
fn mounting_fails_and_proc_sys_is_read_only() {
    let host = Host::new();
    let out = host.run_ok(&[
        "busybox",
        "sh",
        "-c",
        "mount -t tmpfs none /tmp 2>&1; echo mount=$?; echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo sysctl=$?; touch /sys/x 2>/dev/null; echo sys=$?; echo b > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?",
    ]);
    assert!(
        out.contains("permission denied") || out.contains("Operation not permitted"),
        "{out}"
    );
    assert!(out.contains("mount=1"), "{out}");
    assert!(out.contains("sysctl=1"), "{out}");
    assert!(out.contains("sys=1"), "{out}");
    assert!(out.contains("sysrq=1"), "{out}");
}

#[test]
fn dockers_masked_paths_are_masked() {
    let host = Host::new();
    // Each masked file the host has reads empty in the container (/proc/kcore included where
    // the kernel has it); each masked directory is empty.
    let mut script = String::new();
    let mut checked = 0;
    for path in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/interrupts",
    ] {
        if Path::new(path).exists() {
            script.push_str(&format!("echo {path}=$(cat {path} | wc -c); "));
            checked += 1;
        }
    }
    for dir in ["/proc/acpi", "/sys/firmware", "/proc/scsi"] {
        if Path::new(dir).exists() {
            script.push_str(&format!("echo {dir}=$(ls -A {dir} | wc -l); "));
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "this host has too few of Docker's masked paths to test"
    );
    let out = host.run_ok(&["busybox", "sh", "-c", &script]);
    for line in out.lines() {
        assert!(line.ends_with("=0"), "not masked: {line}");
    }
    assert_eq!(out.lines().count(), checked);
}

/// CapEff of Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
/// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

fn caps(host: &Host, extra: &[&str]) -> [u64; 5] {
    let mut args = extra.to_vec();
    args.extend(["busybox", "grep", "^Cap", "/proc/self/status"]);
    let out = host.run_ok(&args);
    let mut sets = [0u64; 5];
    for (i, line) in out.lines().enumerate() {
        let hex = line.split_whitespace().nth(1).unwrap();
        sets[i] = u64::from_str_radix(hex, 16).unwrap();
    }
    sets
}

#[test]
fn capabilities_match_dockers_default_set() {
    let host = Host::new();
    let [inh, prm, eff, bnd, amb] = caps(&host, &[]);
    assert_eq!((inh, amb), (0, 0));
    assert_eq!(eff, DOCKER_DEFAULT_CAPS, "effective {eff:#x}");
    assert_eq!(prm, DOCKER_DEFAULT_CAPS);
    assert_eq!(bnd, DOCKER_DEFAULT_CAPS);

    let [_, _, eff, bnd, _] = caps(&host, &["--cap-add", "NET_ADMIN", "--cap-drop", "chown"]);
    assert_eq!(eff, (DOCKER_DEFAULT_CAPS | 1 << 12) & !1);
    assert_eq!(bnd, eff);
    let [_, _, eff, _, _] = caps(&host, &["--cap-drop", "ALL"]);
    assert_eq!(eff, 0);
    let [_, _, eff, _, _] = caps(&host, &["--privileged"]);
    let host_bnd = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = host_bnd.lines().find(|l| l.starts_with("CapBnd")).unwrap();
    let host_bnd = u64::from_str_radix(host_bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(eff, host_bnd, "--privileged has every capability");
}

#[test]
fn unknown_capability_is_refused_with_125() {
    let host = Host::new();
    let ran = host.run(&["--rm", "--cap-add", "NOPE", "busybox", "true"]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("unknown capability: \"NOPE\""),
        "{}",
        ran.stderr
    );
}

#[test]
fn memory_hog_is_oom_killed_with_137() {
    let host = Host::new();
    // `tail` keeps an endless line in memory.
    let ran = host.run(&[
        "--memory",
        "32m",
        "--name",
        "hog",
        "busybox",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(ran.code, 137, "{}", ran.stderr);
    let state = host.ok(&[
        "inspect",
        "--format",
        "{{.State.OOMKilled}} {{.State.ExitCode}} {{.State.Status}}",
        "hog",
    ]);
    assert_eq!(state.trim(), "true 137 exited");
    host.ok(&["rm", "hog"]);
    host.assert_gone(&ran.id);

    // A container within its limit is not reported as killed.
    let ran = host.run(&["--memory", "32m", "--name", "calm", "busybox", "true"]);
    assert_eq!(ran.code, 0);
    assert_eq!(
        host.ok(&["inspect", "--format", "{{.State.OOMKilled}}", "calm"])
            .trim(),
        "false"
    );
    host.ok(&["rm", "calm"]);
    host.assert_gone(&ran.id);
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let host = Host::new();
    // The bomb runs in a subshell until fork fails; then PID 1 reads the cgroup's count with
    // builtins only (no fork is left).
    let out = host.run_ok(&[
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "(while true; do sleep 30 & done) 2>/dev/null; \
         d=/sys/fs/cgroup/pids; [ -e $d/pids.current ] || d=/sys/fs/cgroup; \
         read cur < $d/pids.current; read max < $d/pids.max; echo $cur $max",
    ]);
    // The subshell has exited by now, so one pid of the ten may be free again.
    let counts: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[1], 10, "{out}");
    assert!(
        (9..=10).contains(&counts[0]),
        "the bomb filled the limit and stopped there: {out}"
    );
}

#[test]
fn cpu_and_memory_limits_reach_the_cgroup() {
    let host = Host::new();
    // The container's own read-only view of its cgroups (v1 here; v2 keeps them in one dir).
    let script = "if [ -d /sys/fs/cgroup/memory ]; then \
        cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
            /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus \
            /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; \
        else cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpuset.cpus \
            /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.swap.max; fi; \
        echo x > /sys/fs/cgroup/x 2>/dev/null || echo read-only";
    let out = host.run_ok(&[
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--memory",
        "64m",
        "--memory-swap",
        "96m",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    let v1 = "50000\n100000\n512\n0\n67108864\n100663296\nread-only\n";
    let v2 = "50000 100000\n20\n0\n67108864\n33554432\nread-only\n";
    assert!(out == v1 || out == v2, "{out}");
}

#[test]
fn seccomp_profile_from_a_file_and_unconfined() {
    let host = Host::new();
    let profile = host.berth.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = host.run_ok(&[
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        "mkdir /tmp/d 2>&1; echo rc=$?",
    ]);
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );
    // Docker's default profile is in force otherwise: the status file says so.
    assert_eq!(
        host.run_ok(&["busybox", "grep", "^Seccomp:", "/proc/self/status"])
            .split_whitespace()
            .nth(1),
        Some("2")
    );
    let out = host.run_ok(&[
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert_eq!(out.split_whitespace().nth(1), Some("0"), "{out}");
    let ran = host.run(&[
        "--rm",
        "--security-opt",
        "seccomp=/no/such/file",
        "busybox",
        "true",
    ]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr
            .contains("opening seccomp profile (/no/such/file) failed"),
        "{}",
        ran.stderr
    );
}

#[test]
fn user_flag_sets_uid_and_gid() {
    let host = Host::new();
    assert_eq!(
        host.run_ok(&["-u", "1000:1000", "busybox", "id"]),
        "uid=1000 gid=1000 groups=1000\n"
    );
    assert_eq!(
        host.run_ok(&["-u", "nobody", "busybox", "id", "-u"]),
        "65534\n"
    );
    // Files a user creates are that user's.
    assert_eq!(
        host.run_ok(&[
            "-u",
            "1000:1000",
            "-w",
            "/tmp",
            "busybox",
            "sh",
            "-c",
            "touch f; stat -c %u:%g f"
        ]),
        "1000:1000\n"
    );
    let ran = host.run(&["--rm", "-u", "nosuchuser", "busybox", "true"]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("unable to find user nosuchuser"),
        "{}",
        ran.stderr
    );
    host.assert_gone(&ran.id);
}

#[test]
fn env_and_workdir_as_asked() {
    let host = Host::new();
    let env_file = host.berth.dir.path().join("env.list");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n\nDATASET=/data/x\n").unwrap();
    let out = host.run_ok(&[
        "-e",
        "MODEL=resnet",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/work/dir",
        "busybox",
        "sh",
        "-c",
        "pwd; echo $MODEL $FROM_FILE $DATASET $HOME; echo $PATH",
    ]);
    assert_eq!(
        out,
        "/work/dir\nresnet yes /data/x /root\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[test]
fn exit_codes_pass_through() {
    let host = Host::new();
    let ran = host.run(&["--rm", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(ran.code, 3);
    host.assert_gone(&ran.id);

    let ran = host.run(&["--rm", "busybox", "no-such-command"]);
    assert_eq!(ran.code, 127, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("executable file not found in $PATH"),
        "{}",
        ran.stderr
    );
    host.assert_gone(&ran.id);

    let ran = host.run(&["--rm", "busybox", "/etc"]);
    assert_eq!(ran.code, 126, "{}", ran.stderr);
    host.assert_gone(&ran.id);

    // PID 1 of a namespace cannot be killed from inside it: with --init, sh is not PID 1.
    let ran = host.run(&["--rm", "--init", "busybox", "sh", "-c", "kill -9 $$"]);
    assert_eq!(ran.code, 137);
    host.assert_gone(&ran.id);

    let ran = host.run(&["--rm", "no-such-image", "true"]);
    assert_eq!(ran.code, 125, "{}", ran.stderr);
    let ran = host.run(&["--rm", "--memory", "lots", "busybox", "true"]);
    assert_eq!(ran.code, 125, "{}", ran.stderr);
}

#[test]
fn read_only_rootfs_with_tmpfs_and_shm_size() {
    let host = Host::new();
    let out = host.run_ok(&[
        "--read-only",
        "--tmpfs",
        "/scratch",
        "--shm-size",
        "128m",
        "busybox",
        "sh",
        "-c",
        "touch /x 2>/dev/null; echo root=$?; touch /scratch/x; echo tmpfs=$?; df -k /dev/shm | tail -1",
    ]);
    assert!(out.contains("root=1"), "{out}");
    assert!(out.contains("tmpfs=0"), "{out}");
    assert!(out.contains(" 131072 "), "{out}");
    // Default /dev/shm is 64m.
    let out = host.run_ok(&["busybox", "sh", "-c", "df -k /dev/shm | tail -1"]);
    assert!(out.contains(" 65536 "), "{out}");
}

#[test]
fn changes_do_not_outlive_a_removed_container() {
    let host = Host::new();
    host.run_ok(&["busybox", "sh", "-c", "echo data > /etc/new-file"]);
    let out = host.run_ok(&["busybox", "sh", "-c", "ls /etc/new-file 2>&1 || true"]);
    assert!(out.contains("No such file"), "{out}");
}

#[test]
fn tty_gives_a_pty() {
    let host = Host::new();
    let out = host.run_ok(&[
        "-t",
        "busybox",
        "sh",
        "-c",
        "tty; test -t 1 && echo terminal",
    ]);
    assert!(out.contains("/dev/pts/0"), "{out:?}");
    assert!(out.contains("terminal"), "{out:?}");
    let out = host.run_ok(&["-t", "busybox", "sh", "-c", "echo $TERM"]);
    assert_eq!(out.trim(), "xterm");
}

#[test]
fn stdin_is_attached_with_i() {
    let host = Host::new();
    let cid = host.berth.dir.path().join("cid-stdin");
    let mut child = host
        .berth
        .command()
        .args(["run", "--rm", "-i", "--cidfile"])
        .arg(&cid)
        .args(["busybox", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"twelve bytes")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12");
    host.assert_gone(&std::fs::read_to_string(&cid).unwrap());
}

#[test]
fn signals_reach_the_container_through_init() {
    let host = Host::new();
    let cid = host.berth.dir.path().join("cid-signal");
    let mut child = host
        .berth
        .command()
        .args(["run", "--rm", "--init", "--cidfile"])
        .arg(&cid)
        .args(["busybox", "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the container runs, then SIGTERM berth as Ctrl-C or `kill` would.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cid.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(status.code(), Some(143), "sleep ends by SIGTERM: 128 + 15");
    host.assert_gone(&std::fs::read_to_string(&cid).unwrap());
}

#[test]
fn init_reaps_and_is_pid_1() {
    let host = Host::new();
    let out = host.run_ok(&[
        "--init",
        "busybox",
        "sh",
        "-c",
        "echo $$; cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    let mut lines = out.lines();
    assert_ne!(
        lines.next(),
        Some("1"),
        "with --init the command is not PID 1"
    );
    assert_eq!(lines.next().map(str::trim), Some("berth init"));
}

#[test]
fn names_are_unique_and_rm_refuses_unknown() {
    let host = Host::new();
    let ran = host.run(&["--name", "web", "busybox", "true"]);
    assert_eq!(ran.code, 0);
    let again = host.run(&["--name", "web", "busybox", "true"]);
    assert_eq!(again.code, 125);
    assert!(
        again.stderr.contains("is already in use by container"),
        "{}",
        again.stderr
    );
    // The image is in use: rmi refuses.
    let err = host.berth.fails(&["rmi", "busybox"]);
    assert!(err.contains("is using its referenced image"), "{err}");
    host.ok(&["rm", "web"]);
    host.assert_gone(&ran.id);
    let err = host.berth.fails(&["rm", "web"]);
    assert!(err.contains("No such container: web"), "{err}");
    host.ok(&["rmi", "busybox"]);
}

#[test]
fn loopback_is_up_in_the_containers_network_namespace() {
    let host = Host::new();
    let out = host.run_ok(&[
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ip -o link | cut -d: -f2 | tr -d ' '; ip -o addr show lo | grep -c 127.0.0.1",
    ]);
    assert_eq!(out, "lo\n1\n", "only lo, and it is up with 127.0.0.1");
    // On the default bridge: lo and eth0 (the veth's peer).
    let out = host.run_ok(&[
        "busybox",
        "sh",
        "-c",
        "ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' '",
    ]);
    assert_eq!(out, "lo\neth0\n", "lo and eth0");
    let out = host.run_ok(&[
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ip -o link | wc -l",
    ]);
    assert!(
        out.trim().parse::<u32>().unwrap() > 1,
        "--network host sees the host's interfaces"
    );
}

#[test]
fn berth_binary_is_not_reachable_through_proc_exe() {
    // CVE-2019-5736: with --init PID 1 stays berth; its exe must not be writable even with
    // every capability.
    let host = Host::new();
    let out = host.run_ok(&[
        "--init",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "echo x >> /proc/1/exe 2>&1; echo rc=$?",
    ]);
    assert!(out.contains("rc=1"), "{out}");
    let bin = std::fs::metadata(berth_bin()).unwrap();
    assert!(bin.len() > 1000);
}

#[test]
fn exhausting_memory_pids_and_shm_leaves_a_neighbour_working() {
    let host = Host::new();
    let neighbour = host.ok(&[
        "run",
        "-d",
        "--name",
        "neighbour",
        "busybox",
        "sleep",
        "120",
    ]);
    let neighbour = neighbour.trim();

    // /dev/shm stops at --shm-size: the writer is told no space, nothing reaches the host's.
    let out = host.run_ok(&[
        "--shm-size",
        "8m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>&1; df -k /dev/shm | tail -1",
    ]);
    assert!(out.contains("No space left on device"), "{out}");
    let used: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(used[1], "8192", "the tmpfs is 8 MiB: {out}");
    assert!(!std::path::Path::new("/dev/shm/fill").exists());
    // Memory and pids, beside it.
    let hog = host.run(&["--rm", "--memory", "32m", "busybox", "tail", "/dev/zero"]);
    assert_eq!(hog.code, 137, "{}", hog.stderr);
    host.run_ok(&[
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "(while true; do sleep 30 & done) 2>/dev/null; true",
    ]);

    // The neighbour still runs, forks, allocates, and has its own empty 64 MiB /dev/shm.
    let out = host.ok(&[
        "exec",
        "neighbour",
        "sh",
        "-c",
        "ls /dev/shm; head -c 16m /dev/zero > /dev/shm/mine && df -k /dev/shm | tail -1",
    ]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[1], "65536", "{out}");
    assert_eq!(fields[2], "16384", "{out}");
    host.ok(&["rm", "-f", "neighbour"]);
    host.assert_gone(neighbour);
}
