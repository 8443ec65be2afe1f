//! Containers after `run`: detached runs under a monitor, `ps`, `stop`, `kill`, `wait`,
//! `logs`, `attach`, restart policies, and state that converges when a monitor, a CLI or
//! the container is killed from outside.

mod common;

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use common::{eventually, host::Host, json};

fn inspect(host: &Host, name: &str, tmpl: &str) -> String {
    host.ok(&["inspect", "-f", tmpl, name]).trim().to_string()
}

fn monitor_pids(id: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("container-monitor") && text.contains(id) {
            pids.push(pid);
        }
    }
    pids
}

fn kill9(pid: i32) {
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn run_d_ps_stop_and_rm() {
    let host = Host::new();
    let id = host
        .ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "300"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id}");
    let ps = host.ok(&["ps"]);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    for column in [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id[..12]), "{ps}");
    assert!(row.contains("\"sleep 300\""), "{ps}");
    assert!(row.contains("Up "), "{ps}");
    assert!(row.ends_with("sleeper"), "{ps}");
    assert_eq!(host.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(host.ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    assert_eq!(
        inspect(&host, "sleeper", "{{.State.Status}} {{.State.Running}}"),
        "running true"
    );
    let pid: i32 = inspect(&host, "sleeper", "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);

    // rm without -f refuses a running container.
    let err = host.berth.fails(&["rm", "sleeper"]);
    assert!(err.contains("container is running"), "{err}");

    // sleep is PID 1 without a TERM handler: stop falls back to SIGKILL after -t.
    let started = Instant::now();
    assert_eq!(host.ok(&["stop", "-t", "1", "sleeper"]).trim(), "sleeper");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(
        inspect(
            &host,
            "sleeper",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}"
        ),
        "exited 137 false"
    );
    assert!(host.ok(&["ps"]).lines().count() == 1, "only the header");
    let all = host.ok(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.State}}"]);
    assert!(all.starts_with("sleeper|Exited (137) "), "{all}");
    assert!(all.trim().ends_with("ago|exited"), "{all}");
    assert_eq!(host.ok(&["wait", "sleeper"]).trim(), "137");
    assert!(monitor_pids(&id).is_empty(), "the monitor exited");
    host.ok(&["rm", "sleeper"]);
    host.assert_gone(&id);
}

#[test]
fn stop_honours_a_trapping_process_and_its_stop_signal() {
    let host = Host::new();
    host.ok(&[
        "run",
        "-d",
        "--name",
        "trap",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got TERM; exit 3' TERM; while true; do sleep 0.1; done",
    ]);
    eventually(10, "the trap to be set", || {
        host.ok(&["ps", "-q", "--filter", "name=trap"]).trim().len() == 12
    });
    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    host.ok(&["stop", "-t", "30", "trap"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the trap ended it, not the timeout"
    );
    assert_eq!(host.ok(&["wait", "trap"]).trim(), "3");
    assert_eq!(host.ok(&["logs", "trap"]), "got TERM\n");

    // --stop-signal replaces SIGTERM.
    host.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got USR1; exit 4' USR1; while true; do sleep 0.1; done",
    ]);
    thread::sleep(Duration::from_millis(500));
    host.ok(&["stop", "usr1"]);
    assert_eq!(inspect(&host, "usr1", "{{.State.ExitCode}}"), "4");
    host.ok(&["rm", "trap", "usr1"]);
}

#[test]
fn kill_sends_signals_and_refuses_a_stopped_container() {
    let host = Host::new();
    host.ok(&[
        "run",
        "-d",
        "--name",
        "kt",
        "busybox",
        "sh",
        "-c",
        "trap 'echo hup' HUP; while true; do sleep 0.1; done",
    ]);
    thread::sleep(Duration::from_millis(500));
    host.ok(&["kill", "-s", "HUP", "kt"]);
    eventually(10, "the HUP to be logged", || {
        host.ok(&["logs", "kt"]) == "hup\n"
    });
    assert_eq!(inspect(&host, "kt", "{{.State.Running}}"), "true");
    host.ok(&["kill", "kt"]);
    assert_eq!(host.ok(&["wait", "kt"]).trim(), "137");
    let err = host.berth.fails(&["kill", "kt"]);
    assert!(err.contains("is not running"), "{err}");
    let err = host.berth.fails(&["kill", "-s", "SIGNOPE", "kt"]);
    assert!(err.contains("Invalid signal: SIGNOPE"), "{err}");
    host.ok(&["rm", "kt"]);
}

#[test]
fn logs_follow_a_live_container_with_tail_and_timestamps() {
    let host = Host::new();
    host.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo one; echo oops >&2; sleep 1; echo two; sleep 1; echo three",
    ]);
    // Started while the container still runs; ends when it exits.
    let out = host
        .berth
        .command()
        .args(["logs", "-f", "talker"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nthree\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(host.ok(&["logs", "--tail", "1", "talker"]), "three\n");
    let stamped = host.ok(&["logs", "-t", "--tail", "2", "talker"]);
    for line in stamped.lines() {
        let (time, text) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{line}");
        assert!(text == "two" || text == "three", "{line}");
    }
    // The file is Docker's json-file format.
    let path = inspect(&host, "talker", "{{.LogPath}}");
    let first = std::fs::read_to_string(&path).unwrap();
    // stdout and stderr are read by two threads: "oops" may come first.
    let entries: Vec<_> = first.lines().map(json).collect();
    let entry = entries.iter().find(|e| e["stream"] == "stdout").unwrap();
    assert_eq!(entry["log"], "one\n");
    assert!(
        entries
            .iter()
            .any(|e| e["stream"] == "stderr" && e["log"] == "oops\n")
    );
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        host.ok(&["logs", "--since", "1h", "talker"])
            .lines()
            .count(),
        3
    );
    assert_eq!(host.ok(&["logs", "--until", "1h", "talker"]), "");
    host.ok(&["rm", "talker"]);
}

#[test]
fn restart_policies() {
    let host = Host::new();
    host.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo ran; exit 1",
    ]);
    eventually(20, "two restarts", || {
        inspect(&host, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
    });
    assert_eq!(host.ok(&["logs", "flaky"]), "ran\nran\nran\n");
    assert_eq!(
        inspect(&host, "flaky", "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );

    // `always` restarts until the user stops it, and a stopped container stays stopped.
    host.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    eventually(20, "a restart", || {
        inspect(&host, "always", "{{.RestartCount}}") != "0"
    });
    host.ok(&["stop", "always"]);
    let count = inspect(&host, "always", "{{.RestartCount}}");
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(inspect(&host, "always", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&host, "always", "{{.RestartCount}}"), count);

    // `restart` starts it again.
    host.ok(&["restart", "-t", "1", "always"]);
    assert_eq!(inspect(&host, "always", "{{.State.Running}}"), "true");
    host.ok(&["rm", "-f", "always", "flaky"]);

    let err = host
        .berth
        .fails(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(
        err.contains("Conflicting options: --restart and --rm"),
        "{err}"
    );
    let err = host
        .berth
        .fails(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert!(err.contains("invalid restart policy"), "{err}");
}

#[test]
fn create_start_attach_and_wait() {
    let host = Host::new();
    let id = host
        .ok(&[
            "create",
            "--name",
            "later",
            "busybox",
            "sh",
            "-c",
            "echo hi; exit 7",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = host.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert_eq!(ps.trim(), "later Created");
    // start -a attaches and exits with the container's code.
    let out = host.berth.run(&["start", "-a", "later"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // A second start runs it again.
    assert_eq!(host.ok(&["start", "later"]).trim(), "later");
    assert_eq!(host.ok(&["wait", "later"]).trim(), "7");
    assert_eq!(host.ok(&["logs", "later"]), "hi\nhi\n");

    // attach to a running container: its output from then on, and its exit code.
    host.ok(&[
        "run",
        "-d",
        "--name",
        "att",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo late; echo err >&2; exit 5",
    ]);
    let out = host.berth.run(&["attach", "att"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // stdin through attach, for a container run with -i.
    host.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "cat",
        "busybox",
        "sh",
        "-c",
        "read line; echo got $line",
    ]);
    let out = host.berth.run_stdin(&["attach", "cat"], b"hello\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    let err = host.berth.fails(&["attach", "later"]);
    assert!(
        err.contains("cannot attach to a stopped container"),
        "{err}"
    );
    host.ok(&["rm", "later", "att", "cat"]);
}

#[test]
fn run_d_rm_removes_the_container_when_it_exits() {
    let host = Host::new();
    let id = host
        .ok(&["run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.3"])
        .trim()
        .to_string();
    eventually(20, "the container to be removed", || {
        host.ok(&["ps", "-aq", "--no-trunc"]).trim().is_empty()
    });
    host.assert_gone(&id);
    // A command that cannot run: docker's 127, and --rm still removes it.
    let out = host
        .berth
        .run(&["run", "-d", "--rm", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(host.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn killed_monitor_cli_or_container_converge() {
    let host = Host::new();
    // The monitor killed: the container dies with it and is recorded as exited (255).
    let id = host
        .ok(&["run", "-d", "--name", "mon", "busybox", "sleep", "300"])
        .trim()
        .to_string();
    let monitors = monitor_pids(&id);
    assert_eq!(monitors.len(), 1, "one monitor: {monitors:?}");
    kill9(monitors[0]);
    eventually(10, "the record to converge", || {
        inspect(&host, "mon", "{{.State.Status}} {{.State.ExitCode}}") == "exited 255"
    });
    host.ok(&["rm", "mon"]);
    host.assert_gone(&id);

    // The CLI of a foreground run killed.
    let cid = host.berth.dir.path().join("cid-fg");
    let mut child = host
        .berth
        .command()
        .args(["run", "--name", "fg", "--cidfile"])
        .arg(&cid)
        .args(["busybox", "sleep", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually(20, "the foreground container to run", || {
        cid.exists() && inspect(&host, "fg", "{{.State.Running}}") == "true"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    eventually(10, "the record to converge", || {
        inspect(&host, "fg", "{{.State.Status}}") == "exited"
    });
    let id = std::fs::read_to_string(&cid).unwrap();
    host.ok(&["rm", "fg"]);
    host.assert_gone(&id);

    // The container's init killed from outside: the monitor records it.
    host.ok(&["run", "-d", "--name", "ctr", "busybox", "sleep", "300"]);
    let pid = inspect(&host, "ctr", "{{.State.Pid}}")
        .parse::<i32>()
        .unwrap();
    kill9(pid);
    eventually(10, "the monitor to record the end", || {
        inspect(&host, "ctr", "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    });
    host.ok(&["rm", "ctr"]);
}

#[test]
fn ps_filters_and_prune() {
    let host = Host::new();
    host.ok(&[
        "run", "--name", "ok", "--label", "team=ml", "busybox", "true",
    ]);
    let _ = host
        .berth
        .run(&["run", "--name", "bad", "busybox", "sh", "-c", "exit 3"]);
    host.ok(&["run", "-d", "--name", "up", "busybox", "sleep", "300"]);
    let names = |args: &[&str]| -> String {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        let out = host.ok(&all);
        let mut v: Vec<&str> = out.lines().collect();
        v.sort();
        v.join(",")
    };
    assert_eq!(names(&[]), "up");
    assert_eq!(names(&["-a"]), "bad,ok,up");
    assert_eq!(names(&["--filter", "status=exited"]), "bad,ok");
    assert_eq!(names(&["--filter", "exited=3"]), "bad");
    assert_eq!(names(&["-a", "--filter", "label=team=ml"]), "ok");
    assert_eq!(names(&["-a", "--filter", "name=u"]), "up");
    assert_eq!(names(&["-a", "--filter", "ancestor=busybox"]), "bad,ok,up");
    assert_eq!(names(&["-l"]), "up");
    assert_eq!(names(&["-n", "2"]), "bad,up");
    let err = host.berth.fails(&["ps", "--filter", "colour=red"]);
    assert!(err.contains("invalid filter 'colour'"), "{err}");
    let out = host.ok(&["container", "prune", "-f"]);
    assert!(out.starts_with("Deleted Containers:\n"), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert_eq!(names(&["-a"]), "up");
    host.ok(&["rm", "-f", "up"]);
    assert_eq!(names(&["-a"]), "");
}

#[test]
fn fifty_concurrent_run_d_and_rm_f() {
    let host = Host::new();
    let root = host.berth.root();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let root = root.clone();
            thread::spawn(move || {
                let bin = common::berth_bin();
                let run = Command::new(bin)
                    .arg("--root")
                    .arg(&root)
                    .args([
                        "run",
                        "-d",
                        "--name",
                        &format!("c{i}"),
                        "busybox",
                        "sleep",
                        "60",
                    ])
                    .output()
                    .unwrap();
                assert!(
                    run.status.success(),
                    "run -d c{i}: {}",
                    String::from_utf8_lossy(&run.stderr)
                );
                let rm = Command::new(bin)
                    .arg("--root")
                    .arg(&root)
                    .args(["rm", "-f", &format!("c{i}")])
                    .output()
                    .unwrap();
                assert!(
                    rm.status.success(),
                    "rm -f c{i}: {}",
                    String::from_utf8_lossy(&rm.stderr)
                );
                String::from_utf8_lossy(&run.stdout).trim().to_string()
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(host.ok(&["ps", "-aq"]).trim().is_empty());
    for id in ids {
        host.assert_gone(&id);
    }
}

#[test]
fn pause_unpause_and_rename() {
    let host = Host::new();
    host.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    thread::sleep(Duration::from_millis(400));
    assert_eq!(host.ok(&["pause", "ticker"]).trim(), "ticker");
    assert_eq!(
        inspect(
            &host,
            "ticker",
            "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"
        ),
        "paused true true"
    );
    let status = host.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(status.trim().ends_with("(Paused)"), "{status}");
    // Frozen: no output while paused.
    let before = host.ok(&["logs", "ticker"]).lines().count();
    thread::sleep(Duration::from_millis(500));
    assert_eq!(host.ok(&["logs", "ticker"]).lines().count(), before);
    let err = host.berth.fails(&["pause", "ticker"]);
    assert!(err.contains("already paused"), "{err}");
    host.ok(&["unpause", "ticker"]);
    eventually(10, "output again", || {
        host.ok(&["logs", "ticker"]).lines().count() > before
    });
    let err = host.berth.fails(&["unpause", "ticker"]);
    assert!(err.contains("is not paused"), "{err}");

    // A paused container still stops.
    host.ok(&["pause", "ticker"]);
    host.ok(&["stop", "-t", "1", "ticker"]);
    assert_eq!(inspect(&host, "ticker", "{{.State.Status}}"), "exited");

    host.ok(&["rename", "ticker", "clock"]);
    assert_eq!(inspect(&host, "clock", "{{.Name}}"), "/clock");
    host.ok(&["create", "--name", "other", "busybox", "true"]);
    let err = host.berth.fails(&["rename", "clock", "other"]);
    assert!(err.contains("is already in use"), "{err}");
    let err = host.berth.fails(&["inspect", "ticker"]);
    assert!(err.contains("ticker"), "{err}");
    host.ok(&["rm", "clock", "other"]);
}

#[test]
fn health_checks_set_the_status_the_log_and_events() {
    let host = Host::new();
    // Healthy once /tmp/ok exists, unhealthy after two failures once the test removes it
    // (the test, not a timer: healthy lasts as long as the checks below need).
    let id = host.ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "cat /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "echo fine > /tmp/ok; exec sleep 100",
    ]);
    let id = id.trim();
    eventually(10, "healthy", || {
        inspect(&host, "checked", "{{.State.Health.Status}}") == "healthy"
    });
    assert!(
        host.ok(&["ps", "--format", "{{.Status}}"])
            .contains("(healthy)"),
        "ps shows the health"
    );
    assert_eq!(
        host.ok(&["ps", "-q", "--filter", "health=healthy"]).trim(),
        &id[..12]
    );
    let log = inspect(&host, "checked", "{{(index .State.Health.Log 0).Output}}");
    assert_eq!(log, "fine");
    host.ok(&["exec", "checked", "rm", "/tmp/ok"]);
    eventually(10, "unhealthy", || {
        inspect(&host, "checked", "{{.State.Health.Status}}") == "unhealthy"
    });
    let streak: i64 = inspect(&host, "checked", "{{.State.Health.FailingStreak}}")
        .parse()
        .unwrap();
    assert!(streak >= 2, "{streak}");
    // The status is written just before its event.
    eventually(5, "both health events", || {
        let events = host.ok(&[
            "events",
            "--since",
            "1m",
            "--until",
            "0s",
            "--filter",
            "container=checked",
            "--format",
            "{{.Action}}",
        ]);
        events.contains("health_status: healthy\n") && events.contains("health_status: unhealthy\n")
    });
    // The checks stop with the container; its last outcome stays, as dockerd keeps it.
    host.ok(&["stop", "-t", "0", "checked"]);
    assert_eq!(
        inspect(&host, "checked", "{{.State.Health.Status}}"),
        "unhealthy"
    );
    // Flags are checked as the docker CLI checks them.
    let out = host.run(&[
        "--rm",
        "--no-healthcheck",
        "--health-cmd",
        "true",
        "busybox",
        "true",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("--no-healthcheck conflicts with --health-* options"),
        "{}",
        out.stderr
    );
    // `--no-healthcheck` turns an image's check off.
    host.ok(&[
        "run",
        "-d",
        "--name",
        "unchecked",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(
        inspect(&host, "unchecked", "{{json .Config.Healthcheck.Test}}"),
        r#"["NONE"]"#
    );
    assert_eq!(
        inspect(&host, "unchecked", "{{.State.Health}}"),
        "<no value>"
    );
}
