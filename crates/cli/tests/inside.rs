//! Working inside containers: `exec`, and (with `cp`, `diff`, `export`, `commit`, `top`,
//! `stats`) what a container holds and runs.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::host::{Host, cgroup_dirs_named};

/// Polls `f` until it is true or `secs` pass.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn sleeper(host: &Host) -> String {
    host.ok(&["run", "-d", "busybox", "sleep", "300"])
        .trim()
        .to_string()
}

#[test]
fn exec_joins_the_namespaces_cgroup_and_identity_of_the_container() {
    let host = Host::new();
    let id = sleeper(&host);
    // Every namespace, the cgroup and the capability bounding set are the container's.
    let out = host.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "for ns in pid mnt net uts ipc cgroup; do \
           [ $(readlink /proc/1/ns/$ns) = $(readlink /proc/self/ns/$ns) ] && echo same-$ns; \
         done; \
         [ \"$(cat /proc/1/cgroup)\" = \"$(cat /proc/self/cgroup)\" ] && echo same-cgroup; \
         [ \"$(grep CapBnd /proc/1/status)\" = \"$(grep CapBnd /proc/self/status)\" ] && echo same-caps; \
         grep Seccomp: /proc/self/status; hostname",
    ]);
    for what in ["pid", "mnt", "net", "uts", "ipc", "cgroup"] {
        assert!(out.contains(&format!("same-{what}\n")), "{what}: {out}");
    }
    assert!(out.contains("same-cgroup"), "{out}");
    assert!(out.contains("same-caps"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "no seccomp filter: {out}");
    assert!(out.contains(&id[..12]), "{out}");
    // The process is in the container's pid namespace, and the host sees it in the
    // container's cgroup.
    let pids = host.ok(&["exec", &id, "sh", "-c", "echo $$; ps -o pid | wc -l"]);
    assert!(pids.starts_with(|c: char| c.is_ascii_digit()), "{pids}");
    assert_ne!(pids.lines().next(), Some("1"), "{pids}");

    // -e, -u, -w, and the container's own environment.
    let out = host.ok(&[
        "exec",
        "-e",
        "FOO=bar",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $(id -u) $(pwd) $FOO $HOME; echo $PATH",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("65534 /tmp bar /nonexistent"), "{out}");
    assert!(lines.next().unwrap_or("").contains("/bin"), "{out}");
    // Without -u, the container's user; its caps drop for a non-root user.
    let caps = host.ok(&[
        "exec",
        "-u",
        "1000",
        &id,
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert!(caps.contains("0000000000000000"), "{caps}");

    // Exit statuses: the command's own, 127 not found, 126 not executable.
    let out = host
        .berth
        .run(&["exec", &id, "sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = host.berth.run(&["exec", &id, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    let out = host.berth.run(&["exec", &id, "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126));
    let out = host.berth.run(&["exec", "-w", "/nowhere", &id, "true"]);
    assert_eq!(out.status.code(), Some(126));

    // -i passes stdin; without it the command reads end of file.
    let out = host
        .berth
        .run_stdin(&["exec", "-i", &id, "wc", "-c"], b"twelve bytes");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "12");
    let out = host
        .berth
        .run_stdin(&["exec", &id, "wc", "-c"], b"twelve bytes");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    // -d returns at once and the command runs on.
    let start = Instant::now();
    host.ok(&[
        "exec",
        "-d",
        &id,
        "sh",
        "-c",
        "sleep 3; echo done > /tmp/detached",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "-d waited for the command"
    );
    eventually(10, "the detached command", || {
        host.berth
            .run(&["exec", &id, "cat", "/tmp/detached"])
            .stdout
            .starts_with(b"done")
    });

    // A paused or stopped container refuses, with Docker's words and status 1.
    host.ok(&["pause", &id]);
    let out = host.berth.run(&["exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is paused"));
    host.ok(&["unpause", &id]);
    // A detached exec'd process dies with the container and leaves nothing behind.
    host.ok(&["exec", "-d", &id, "sleep", "300"]);
    host.ok(&["stop", "-t", "0", &id]);
    let out = host.berth.run(&["exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not running"));
    host.ok(&["rm", &id]);
    host.assert_gone(&id);
    assert!(cgroup_dirs_named(&id).is_empty());
}

#[test]
fn exec_it_gives_a_pty() {
    let host = Host::new();
    let id = sleeper(&host);
    // `script` gives berth a terminal; the shell in the container gets its own pty.
    let command = format!(
        "stty rows 30 cols 100; {} --root {} exec -it {id} sh",
        common::berth_bin(),
        host.berth.root().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"tty; stty size; echo $((6*7)) $TERM; exit 5\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("30 100"), "{text}");
    assert!(text.contains("42 xterm"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");
    host.ok(&["rm", "-f", &id]);
}
