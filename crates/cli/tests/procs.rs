//! `top`, `stats` and `port` on real containers: what they print, and how they fail.

mod common;

use std::{
    io::Read,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use common::host::{Host, cgroup_dirs_named};

/// The pids in the container's cgroup, read straight from the host's hierarchy.
fn cgroup_pids(id: &str) -> Vec<String> {
    let dir = cgroup_dirs_named(id)
        .into_iter()
        .find(|d| d.join("cgroup.procs").exists())
        .expect("the container has a cgroup");
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn run_d(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["run", "-d"];
    all.extend_from_slice(args);
    host.ok(&all).trim().to_string()
}

#[test]
fn top_lists_the_containers_processes_and_nothing_of_the_host() {
    let host = Host::new();
    let id = run_d(
        &host,
        &["--name", "topper", "busybox", "sh", "-c", "sleep 300"],
    );
    let out = host.ok(&["top", &id]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    // ps -ef's columns, each padded to at least 20 as docker top pads them.
    assert!(
        header.starts_with(&format!("UID{}PID", " ".repeat(17))),
        "{out}"
    );
    assert!(header.trim_end().ends_with("CMD"), "{out}");
    let rows: Vec<&str> = lines.collect();
    assert!(!rows.is_empty(), "{out}");
    assert!(rows.iter().any(|r| r.ends_with("sleep 300")), "{out}");
    let pids = cgroup_pids(&id);
    for row in &rows {
        let pid = row.split_whitespace().nth(1).unwrap();
        assert!(
            pids.iter().any(|p| p == pid),
            "{pid} is not the container's: {out}"
        );
    }

    // ps options pass through; `container top` is the same command.
    let out = host.ok(&["container", "top", "topper", "-o", "pid,comm"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("PID{}COMMAND", " ".repeat(17)),
        "{out}"
    );
    assert!(lines.all(|l| l.ends_with("sleep")), "{out}");

    let out = host.berth.run(&["top", &id, "-o", "user=PID"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: specifying \"user=PID\" is not allowed\n"
    );
    let out = host.berth.run(&["top", &id, "-o", "comm"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: Couldn't find PID field in ps output\n"
    );

    host.ok(&["kill", &id]);
    host.ok(&["wait", &id]);
    let out = host.berth.run(&["top", "topper"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("Error: container {id} is not running\n")
    );
    let out = host.berth.run(&["top", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: No such container: nosuch\n"
    );
    host.ok(&["rm", "-f", &id]);
}

#[test]
fn stats_no_stream_shows_usage_limits_and_formats() {
    let host = Host::new();
    let id = run_d(
        &host,
        &[
            "--name",
            "counted",
            "--memory",
            "64m",
            "busybox",
            "sh",
            "-c",
            "sleep 300",
        ],
    );
    let free = run_d(&host, &["--name", "free", "busybox", "sleep", "300"]);

    let out = host.ok(&["stats", "--no-stream", &id]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT"),
        "{out}"
    );
    for column in ["MEM %", "NET I/O", "BLOCK I/O", "PIDS"] {
        assert!(header.contains(column), "{out}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]), "{out}");
    assert!(row.contains(" counted "), "{out}");
    assert!(row.contains(" / 64MiB "), "{out}");
    assert!(row.contains("0B / 0B"), "no network of its own yet: {out}");
    assert!(lines.next().is_none(), "{out}");

    let out = host.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "counted",
    ]);
    assert_eq!(out, "counted 1\n");
    let out = host.ok(&[
        "container",
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Container}} {{.MemUsage}}",
        "free",
    ]);
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[..2], [free.as_str(), "free"], "{out}");
    // Without a limit, the host's memory is the limit.
    assert!(fields.last().unwrap().ends_with("iB"), "{out}");
    assert_ne!(fields.last().unwrap(), &"64MiB", "{out}");

    let out = host.ok(&["stats", "--no-stream", "--format", "json", "free"]);
    let row: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for key in [
        "BlockIO",
        "CPUPerc",
        "Container",
        "ID",
        "MemPerc",
        "MemUsage",
        "Name",
        "NetIO",
        "PIDs",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {out}");
    }

    // Without names: the running containers; with -a the stopped ones too, at zero.
    host.ok(&["kill", "free"]);
    host.ok(&["wait", "free"]);
    let out = host.ok(&["stats", "--no-stream", "--format", "{{.Name}}"]);
    assert_eq!(out, "counted\n");
    let out = host.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "table {{.Name}}\t{{.MemUsage}}\t{{.PIDs}}",
    ]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        "NAME      MEM USAGE / LIMIT   PIDS",
        "{out}"
    );
    let stopped = lines.find(|l| l.starts_with("free ")).expect(&out);
    assert!(stopped.ends_with("0B / 0B             0"), "{out}");

    let out = host
        .berth
        .run(&["stats", "--no-stream", "counted", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: No such container: nosuch\n"
    );
    host.ok(&["rm", "-f", &id, &free]);
}

#[test]
fn stats_shows_a_busy_container_using_cpu() {
    let host = Host::new();
    let id = run_d(&host, &["busybox", "sh", "-c", "while :; do :; done"]);
    // The sample window is at least 500 ms and a busy loop keeps one CPU busy all along.
    let out = host.ok(&["stats", "--no-stream", "--format", "{{.CPUPerc}}", &id]);
    let percent: f64 = out.trim().trim_end_matches('%').parse().expect(&out);
    assert!(percent > 10.0, "CPU {out}");
    host.ok(&["rm", "-f", &id]);
}

#[test]
fn stats_streams_until_interrupted() {
    let host = Host::new();
    let id = run_d(&host, &["busybox", "sleep", "300"]);
    let mut child = host
        .berth
        .command()
        .args(["stats", "--format", "{{.Name}}", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Frames come every second after the first half second; wait for a few.
    thread::sleep(Duration::from_millis(3500));
    assert!(child.try_wait().unwrap().is_none(), "stats exited early");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let text = reader.join().unwrap();
    let name = host.ok(&["inspect", "-f", "{{.Name}}", &id]);
    let name = name.trim().trim_start_matches('/');
    let frames = text.lines().filter(|l| *l == name).count();
    assert!(frames >= 2, "one line per frame expected: {text:?}");
    assert!(
        !text.contains('\x1b'),
        "no terminal codes into a pipe: {text:?}"
    );
    host.ok(&["rm", "-f", &id]);
}

#[test]
fn port_without_published_ports() {
    let host = Host::new();
    let id = run_d(&host, &["--name", "portless", "busybox", "sleep", "300"]);
    assert_eq!(host.ok(&["port", &id]), "");
    assert_eq!(host.ok(&["container", "port", "portless"]), "");
    for (port, asked) in [("80", "80"), ("53/udp", "53/udp")] {
        let out = host.berth.run(&["port", "portless", port]);
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("Error: No public port '{asked}' published for portless\n")
        );
    }
    let out = host.berth.run(&["port", &id[..12], "http"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: invalid port (http): strconv.ParseUint: parsing \"http\": invalid syntax\n"
    );
    let out = host.berth.run(&["port", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: No such container: nosuch\n"
    );
    host.ok(&["rm", "-f", &id]);
}
