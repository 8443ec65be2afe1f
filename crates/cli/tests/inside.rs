//! Working inside containers: `exec`, and (with `cp`, `diff`, `export`, `commit`, `top`,
//! `stats`) what a container holds and runs.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{
    eventually,
    host::{Host, cgroup_dirs_named},
};

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

/// `tar -tf` of an archive: its entry names.
fn tar_names(archive: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .arg("-tf")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    let data = archive.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "tar -t failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn cp_copies_both_ways_and_never_leaves_the_container() {
    use std::os::unix::fs::MetadataExt;
    let host = Host::new();
    let id = sleeper(&host);
    let work = host.berth.dir.path().join("cp");
    std::fs::create_dir(&work).unwrap();
    // A host directory a symlink in the container names, holding a host-only file.
    let secret_dir = host.berth.dir.path().join("secret");
    std::fs::create_dir(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("file"), "HOST ONLY").unwrap();
    let climb = format!("../../../../../../..{}", secret_dir.display());
    host.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        &format!(
            "mkdir -p /data/sub /links && echo one > /data/one && echo two > /data/sub/two && \
             ln -s {climb} /links/up && ln -s {} /links/abs && ln -s sub/two /data/link",
            secret_dir.display()
        ),
    ]);

    // Out: a file into a directory, to a new name; a directory to a new name; its contents.
    host.ok(&["cp", &format!("{id}:/data/one"), work.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(work.join("one")).unwrap(), "one\n");
    host.ok(&[
        "cp",
        &format!("{id}:/data/one"),
        work.join("renamed").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(work.join("renamed")).unwrap(),
        "one\n"
    );
    host.ok(&[
        "cp",
        &format!("{id}:/data"),
        work.join("copy").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(work.join("copy/sub/two")).unwrap(),
        "two\n"
    );
    std::fs::create_dir(work.join("contents")).unwrap();
    host.ok(&[
        "cp",
        &format!("{id}:/data/."),
        work.join("contents").to_str().unwrap(),
    ]);
    assert!(work.join("contents/one").is_file());
    // Symlinks come out as symlinks; one whose target climbs out of the copy is refused,
    // as Docker refuses it.
    let link = std::fs::read_link(work.join("copy/link")).unwrap();
    assert_eq!(link.to_str().unwrap(), "sub/two");
    let out = host.berth.run(&[
        "cp",
        &format!("{id}:/links"),
        work.join("links").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // A tar stream on stdout, entries named after the source.
    let out = host.berth.run(&["cp", &format!("{id}:/data"), "-"]);
    assert!(out.status.success());
    let names = tar_names(&out.stdout);
    assert!(names.contains(&"data/sub/two".to_string()), "{names:?}");

    // Symlinks in the container resolve inside it: neither a relative climb nor an absolute
    // target reaches the host's file, in either direction.
    for via in ["/links/up/file", "/links/abs/file"] {
        let out = host.berth.run(&[
            "cp",
            &format!("{id}:{via}"),
            work.join("leak").to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{via}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Could not find the file"),
            "{via}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!work.join("leak").exists());
    }
    std::fs::write(work.join("payload"), "from the host").unwrap();
    let _ = host.berth.run(&[
        "cp",
        work.join("payload").to_str().unwrap(),
        &format!("{id}:/links/abs/"),
    ]);
    let _ = host.berth.run(&[
        "cp",
        work.join("payload").to_str().unwrap(),
        &format!("{id}:/links/up/file"),
    ]);
    assert!(
        !secret_dir.join("payload").exists(),
        "cp wrote outside the container"
    );
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("file")).unwrap(),
        "HOST ONLY"
    );

    // In: a file (owned by the container's root, not by its host owner), a directory to a
    // new name, a tar stream from stdin.
    rustix::fs::chown(
        work.join("payload"),
        Some(rustix::fs::Uid::from_raw(1234)),
        Some(rustix::fs::Gid::from_raw(1234)),
    )
    .unwrap();
    host.ok(&[
        "cp",
        work.join("payload").to_str().unwrap(),
        &format!("{id}:/tmp/"),
    ]);
    let got = host.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /tmp/payload; stat -c ' %u:%g' /tmp/payload",
    ]);
    assert_eq!(got, "from the host 0:0\n");
    host.ok(&[
        "cp",
        "-a",
        work.join("payload").to_str().unwrap(),
        &format!("{id}:/tmp/kept"),
    ]);
    let got = host.ok(&["exec", &id, "stat", "-c", "%u:%g", "/tmp/kept"]);
    assert_eq!(got.trim(), "1234:1234");
    host.ok(&[
        "cp",
        work.join("copy").to_str().unwrap(),
        &format!("{id}:/restored"),
    ]);
    let got = host.ok(&["exec", &id, "cat", "/restored/sub/two"]);
    assert_eq!(got, "two\n");
    let tar = host
        .berth
        .run(&["cp", &format!("{id}:/data/sub"), "-"])
        .stdout;
    let out = host
        .berth
        .run_stdin(&["cp", "-", &format!("{id}:/tmp")], &tar);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(host.ok(&["exec", &id, "cat", "/tmp/sub/two"]), "two\n");
    let out = host
        .berth
        .run_stdin(&["cp", "-", &format!("{id}:/data/one")], &tar);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a directory"));

    // A stopped container: both ways, through its overlay.
    host.ok(&["stop", "-t", "0", &id]);
    host.ok(&[
        "cp",
        work.join("payload").to_str().unwrap(),
        &format!("{id}:/data/while-stopped"),
    ]);
    host.ok(&[
        "cp",
        &format!("{id}:/data/while-stopped"),
        work.join("back").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(work.join("back")).unwrap(),
        "from the host"
    );
    assert_eq!(std::fs::metadata(work.join("back")).unwrap().uid(), 0);
    host.ok(&["start", &id]);
    assert_eq!(
        host.ok(&["exec", &id, "cat", "/data/while-stopped"]),
        "from the host"
    );

    // Errors: a missing source, two containers, no container.
    let out = host
        .berth
        .run(&["cp", &format!("{id}:/nope"), work.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let out = host
        .berth
        .run(&["cp", &format!("{id}:/a"), &format!("{id}:/b")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported"));
    host.ok(&["rm", "-f", &id]);
    host.assert_gone(&id);
}

#[test]
fn diff_commit_and_export() {
    let host = Host::new();
    let id = host
        .ok(&[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "echo hello > /greeting && mkdir -p /tmp/dir && echo x > /tmp/dir/new && \
             rm /bin/ls && sleep 300",
        ])
        .trim()
        .to_string();
    eventually(10, "the changes", || {
        host.ok(&["diff", &id]).contains("D /bin/ls")
    });
    let diff = host.ok(&["diff", &id]);
    let lines: Vec<&str> = diff.lines().collect();
    for want in [
        "C /bin",
        "D /bin/ls",
        "A /greeting",
        "C /tmp",
        "A /tmp/dir",
        "A /tmp/dir/new",
    ] {
        assert!(lines.contains(&want), "{want} missing from:\n{diff}");
    }
    // The runtime's mount targets are not changes.
    assert!(!diff.contains("/etc"), "{diff}");
    // `ps -s` counts the container's own layer: the greeting and the new file.
    let size = host.ok(&["ps", "-s", "--format", "{{.Size}}"]);
    assert!(size.starts_with("8B (virtual "), "{size}");

    // commit (of the running container, paused meanwhile), then a container of the image
    // sees the changes and runs the new default command.
    let image = host.ok(&[
        "commit",
        "-a",
        "Ada <ada@example.com>",
        "-m",
        "say hello",
        "-c",
        "CMD [\"cat\", \"/greeting\"]",
        "-c",
        "ENV GREETED=yes",
        &id,
        "greeter:v1",
    ]);
    assert!(image.trim().starts_with("sha256:"), "{image}");
    assert_eq!(
        host.ok(&["inspect", "-f", "{{.State.Status}}", &id]).trim(),
        "running"
    );
    let out = host.run_ok(&["greeter:v1"]);
    assert_eq!(out, "hello\n");
    let out = host.run_ok(&[
        "greeter:v1",
        "sh",
        "-c",
        "echo $GREETED; ls /bin/ls 2>&1; cat /tmp/dir/new",
    ]);
    assert!(out.starts_with("yes\n"), "{out}");
    assert!(
        out.contains("No such file"),
        "the deletion was not committed: {out}"
    );
    assert!(out.ends_with("x\n"), "{out}");
    let author = host.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Author}} {{.Comment}}",
        "greeter:v1",
    ]);
    assert_eq!(author.trim(), "Ada <ada@example.com> say hello");
    let history = host.ok(&["history", "--no-trunc", "greeter:v1"]);
    assert!(history.contains("say hello"), "{history}");
    host.berth.assert_blobs_verify();

    // inspect: Docker's Mounts and NetworkSettings, and the files it derives.
    let doc = common::json(&host.ok(&["inspect", &id]));
    let doc = &doc[0];
    assert_eq!(doc["Mounts"], serde_json::json!([]));
    assert!(
        doc["NetworkSettings"]["Networks"]["bridge"].is_object(),
        "{doc}"
    );
    assert!(
        doc["NetworkSettings"]["SandboxKey"]
            .as_str()
            .is_some_and(|k| k.ends_with("/ns/net")),
        "{doc}"
    );
    for (field, file) in [
        ("HostsPath", "hosts"),
        ("HostnamePath", "hostname"),
        ("ResolvConfPath", "resolv.conf"),
    ] {
        let path = doc[field].as_str().unwrap_or_default();
        assert!(
            path.ends_with(file) && std::path::Path::new(path).is_file(),
            "{field}: {path}"
        );
    }
    assert_eq!(doc["Driver"], "overlay2");

    // export: the whole filesystem, without /proc's contents.
    let file = host.berth.dir.path().join("export.tar");
    host.ok(&["export", "-o", file.to_str().unwrap(), &id]);
    let names = tar_names(&std::fs::read(&file).unwrap());
    for want in ["bin/busybox", "greeting", "tmp/dir/new", "etc/passwd"] {
        assert!(
            names.iter().any(|n| n.trim_start_matches("./") == want),
            "{want} not exported"
        );
    }
    assert!(
        !names.iter().any(|n| n.trim_start_matches("./") == "bin/ls"),
        "a deleted file was exported"
    );
    assert!(
        !names.iter().any(|n| n.contains("proc/1")),
        "/proc was exported"
    );
    let out = host
        .berth
        .command()
        .args(["export", &id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(tar_names(&out.stdout).len(), names.len());
    host.ok(&["rm", "-f", &id]);
    host.assert_gone(&id);
}
