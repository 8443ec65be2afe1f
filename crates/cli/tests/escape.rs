//! Escape attempts from a default container (Docker's capabilities, seccomp profile, masked
//! and read-only paths, namespaces): each must fail inside, and the host must be unchanged
//! after. The layer, `cp` and registry path tricks are in `bad_input.rs`, `inside.rs` and
//! `registry_server_protocol.rs`; `/proc/self/exe` (CVE-2019-5736) in `run.rs`.

mod common;

use common::host::Host;

/// `(what it tries, shell command, what the failure says)`.
const ATTEMPTS: &[(&str, &str, &str)] = &[
    (
        "load a kernel module",
        "insmod /bin/busybox",
        "Operation not permitted",
    ),
    (
        "set the clock",
        "date -s 2001-01-01 >/dev/null; test \"$(date +%Y)\" = 2001",
        "Operation not permitted",
    ),
    (
        "new user namespace",
        "unshare -U -r true",
        "Operation not permitted",
    ),
    (
        "new mount namespace",
        "unshare -m true",
        "Operation not permitted",
    ),
    (
        "enter the host's namespaces",
        "nsenter -t 1 -m -n true",
        "Operation not permitted",
    ),
    (
        "write /sys",
        "echo 1 > /sys/kernel/mm/ksm/run",
        "Read-only file system",
    ),
    (
        "write /proc/sys",
        "echo 1 > /proc/sys/kernel/panic",
        "Read-only file system",
    ),
    (
        "sysrq",
        "echo c > /proc/sysrq-trigger",
        "can't create /proc/sysrq-trigger",
    ),
    (
        "read a disk by a device node of its own",
        "mknod /tmp/sda b 8 0 && head -c 1 /tmp/sda",
        "Operation not permitted",
    ),
    (
        "set the host name",
        "hostname evil",
        "Operation not permitted",
    ),
    ("read the kernel log", "dmesg", "Operation not permitted"),
    ("reboot", "reboot -f", "Operation not permitted"),
    ("swap on", "swapon /dev/null", "Operation not permitted"),
    ("mount", "mount -t tmpfs none /mnt", "permission denied"),
];

#[test]
fn privileged_operations_fail_inside_a_default_container() {
    let host = Host::new();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let ksm = std::fs::read_to_string("/sys/kernel/mm/ksm/run").ok();
    let mut escaped = Vec::new();
    for (what, command, failure) in ATTEMPTS {
        let ran = host.run(&[
            "--rm",
            "busybox",
            "sh",
            "-c",
            &format!("{{ {command}; }} 2>&1"),
        ]);
        let said = ran.stdout.trim();
        if ran.code == 0 || !said.contains(failure) {
            escaped.push(format!("{what}: `{command}` exited {} saying {said:?} (expected a failure saying {failure:?})", ran.code));
        }
    }
    assert!(escaped.is_empty(), "escapes:\n{}", escaped.join("\n"));
    // The host is as it was.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        hostname
    );
    assert_eq!(std::fs::read_to_string("/sys/kernel/mm/ksm/run").ok(), ksm);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(
        now.as_secs() > 1_700_000_000,
        "the host's clock was set back"
    );
}

/// `tests/fixtures/escape_probe.c`, built static (the busybox image has no libc) once.
fn escape_probe() -> &'static std::path::Path {
    static PROBE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PROBE.get_or_init(|| {
        let source =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/escape_probe.c");
        let out = common::test_tmp().join(format!("escape_probe-{}", std::process::id()));
        common::require_tool("cc");
        let status = std::process::Command::new("cc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(&source)
            .status()
            .expect("run cc (build-essential)");
        assert!(status.success(), "building {}", source.display());
        out
    })
}

#[test]
fn keyrings_ptrace_shocker_bpf_perf_and_chroot_climbs_fail() {
    let host = Host::new();
    let probe = escape_probe().display().to_string();
    // A host process (this test) and a host path, neither of which the container can see.
    let host_pid = std::process::id().to_string();
    let host_only = env!("CARGO_MANIFEST_DIR");
    let ran = host.run(&[
        "--rm",
        "-v",
        &format!("{probe}:/probe:ro"),
        "busybox",
        "/probe",
        &host_pid,
        host_only,
    ]);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}{}", ran.stdout, ran.stderr);
    for line in &lines {
        assert!(
            line.contains(": blocked ("),
            "escaped: {line}\n{}",
            ran.stdout
        );
    }
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    // Refused for the reasons expected: seccomp or capabilities (EPERM), invisibility (ESRCH),
    // absence (ENOENT).
    // (On the host, as root, the same probe escapes six times: keyrings, ptrace, the signal,
    // the handle and the chroot climb; bpf and perf fail there only on their bad arguments.)
    for i in [0, 1, 4, 5, 6] {
        assert!(lines[i].contains("Operation not permitted"), "{}", lines[i]);
    }
    assert!(lines[2].contains("No such process"), "{}", lines[2]);
    assert!(lines[3].contains("No such process"), "{}", lines[3]);
    assert!(
        lines[7].contains("No such file or directory"),
        "{}",
        lines[7]
    );
}
