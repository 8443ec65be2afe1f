//! The same docker CLI commands (docker 28, the first `docker` on PATH) against a private
//! dockerd 20.10 and against `berth serve`: what they print, on stdout and stderr, and their
//! exit codes must be the same.
//!
//! One scenario runs three times, one daemon at a time (they share the published port, the
//! names and the host's network namespace): on dockerd, on berth with the CLI held at API 1.41
//! (dockerd 20.10's version, so the CLI sends berth exactly the requests it sent dockerd), and
//! on berth at the version the CLI negotiates with it (what a user's CLI does). Every step is
//! recorded; at the end every step that differs from dockerd's is listed with both outputs.
//!
//! Both daemons get the same busybox image: berth's (scripts/make-busybox-image.sh) is pushed
//! to a local distribution registry and pulled from there by each daemon, so the `pull` and
//! `images` outputs are compared too. The scenario: pull, images, run --rm (output, exit
//! codes), a user network and a named volume, run -d with -p and -v, ps, port, an HTTP request
//! through the published port, logs, exec, cp both ways, stop, rm, volume and network
//! commands, and errors for things that do not exist.
//!
//! Outputs are compared after replacing only what must differ between two daemons (each
//! replacement is explained where it is made, in [`Session::normalise`] and the steps).
//! dockerd and docker-registry missing fail the test (scripts/install-deps.sh --peers).

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    Berth,
    api::ApiServer,
    dockerd::{RunningDockerd, require_peer},
    host::Host,
    registry::{Registry, free_port},
    unix_now,
};

/// The names one run of the test uses, the same on every daemon (they appear in outputs).
struct Names {
    /// `127.0.0.1:PORT/parity-PID/busybox`: the image, pulled without a tag.
    image: String,
    /// The same repository's name for a tag that the registry does not have.
    missing_image: String,
    container: String,
    network: String,
    volume: String,
    /// The host port published as `127.0.0.1:PORT:80`.
    port: u16,
}

/// What a daemon under test is to the scenario.
struct Target<'a> {
    name: String,
    /// `docker` pointed at the daemon.
    docker: Box<dyn Fn() -> Command + 'a>,
    /// The daemon's state root: a volume's Mountpoint is under it.
    data_root: PathBuf,
    /// A host directory of this run's own, for `docker cp` (`{work}` in commands).
    work: PathBuf,
}

/// One recorded command: what it printed (normalised) and how it exited.
#[derive(Clone, PartialEq)]
struct Step {
    label: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// One run of the scenario on one target.
struct Session<'a> {
    target: &'a Target<'a>,
    /// IDs that the daemon chose (container, network), each with the placeholder that replaces
    /// it.
    ids: Vec<(String, &'static str)>,
    steps: Vec<Step>,
}

/// Where a step's output is a table: its columns are padded to their widest cell.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Text,
    Table,
}

impl<'a> Session<'a> {
    fn new(target: &'a Target<'a>) -> Session<'a> {
        Session {
            target,
            ids: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// `docker ARGS` on the target, `{work}` in an argument standing for its work directory.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        let work = self.target.work.to_string_lossy().into_owned();
        let args: Vec<String> = args.iter().map(|a| a.replace("{work}", &work)).collect();
        (self.target.docker)()
            .args(&args)
            .output()
            .expect("run docker")
    }

    /// Runs `docker ARGS` and records it.
    fn step(&mut self, args: &[&str], shape: Shape) {
        self.step_as(&command_line(args), args, shape);
    }

    /// Runs `docker ARGS` and records it under `label` (for arguments that differ between
    /// runs, such as times).
    fn step_as(&mut self, label: &str, args: &[&str], shape: Shape) {
        let out = self.exec(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.record(
            label,
            out.status.code().unwrap_or(-1),
            &stdout,
            &stderr,
            shape,
        );
    }

    /// Records a check the test made itself (an HTTP request, a file on the host).
    fn record(&mut self, label: &str, code: i32, stdout: &str, stderr: &str, shape: Shape) {
        let step = Step {
            label: label.to_string(),
            code,
            stdout: self.normalise(stdout, shape),
            stderr: self.normalise(stderr, shape),
        };
        self.steps.push(step);
    }

    /// Notes an ID the daemon chose, to be replaced by `placeholder` from now on.
    fn learn_id(&mut self, id: &str, placeholder: &'static str) {
        let id = id.trim();
        if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.ids.push((id.to_string(), placeholder));
        }
    }

    /// Replaces what must differ between two daemons, and nothing else:
    ///
    /// - the container's and the network's IDs: each daemon picks them at random (image and
    ///   layer IDs are not replaced: both daemons pulled the same manifest, so they must
    ///   print the same ones);
    /// - the daemon's state root in paths (a volume's Mountpoint): each daemon has its own
    ///   directory, and the part after it is still compared; so is the host directory each
    ///   run copies files to and from (`{work}`);
    /// - go-units' human durations ("Less than a second", "About a minute", "3 seconds"):
    ///   `images` CREATED and `ps` CREATED/STATUS count from when the image was imported and
    ///   the container started, which is a different moment on each daemon, as the runs are
    ///   one after the other;
    /// - in tables only, the run of spaces between columns: the CLI pads each column to its
    ///   widest cell, so a longer ID or duration (replaced above) moves the next columns; the
    ///   columns, their order and each cell are still compared.
    fn normalise(&self, text: &str, shape: Shape) -> String {
        let mut text = text.to_string();
        for (id, placeholder) in &self.ids {
            text = text.replace(id.as_str(), placeholder);
            text = text.replace(&id[..12], placeholder);
        }
        let root = self.target.data_root.to_string_lossy().into_owned();
        text = text.replace(&root, "<data-root>");
        let work = self.target.work.to_string_lossy().into_owned();
        text = text.replace(&work, "{work}");
        text = human_durations(&text);
        if shape == Shape::Table {
            text = text
                .lines()
                .map(|l| collapse_column_gaps(l.trim_end()))
                .collect::<Vec<_>>()
                .join("\n")
                + if text.ends_with('\n') { "\n" } else { "" };
        }
        text
    }
}

/// `docker ARGS` as a shell would take it (arguments quoted where needed).
fn command_line(args: &[&str]) -> String {
    let mut line = String::from("docker");
    for a in args {
        line.push(' ');
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,{}-".contains(c));
        if plain {
            line.push_str(a);
        } else {
            line.push('\'');
            line.push_str(&a.replace('\'', "'\\''"));
            line.push('\'');
        }
    }
    line
}

/// go-units' `HumanDuration` phrases become `<duration>`.
fn human_durations(text: &str) -> String {
    let mut text = text.to_string();
    for phrase in ["Less than a second", "About a minute", "About an hour"] {
        text = text.replace(phrase, "<duration>");
    }
    const UNITS: [&str; 14] = [
        "seconds", "second", "minutes", "minute", "hours", "hour", "days", "day", "weeks", "week",
        "months", "month", "years", "year",
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() && !prev.is_some_and(|p| p.is_alphanumeric()) {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Some(after) = rest[digits..].strip_prefix(' ')
                && let Some(unit) = UNITS.iter().find(|u| {
                    after.starts_with(*u)
                        && !after[u.len()..].starts_with(|c: char| c.is_alphabetic())
                })
            {
                out.push_str("<duration>");
                rest = &after[unit.len()..];
                prev = Some('>');
                continue;
            }
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Two or more spaces (a tabwriter's padding) become exactly two.
fn collapse_column_gaps(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut spaces = 0;
    for c in line.chars() {
        if c == ' ' {
            spaces += 1;
            continue;
        }
        match spaces {
            0 => {}
            1 => out.push(' '),
            _ => out.push_str("  "),
        }
        spaces = 0;
        out.push(c);
    }
    out
}

/// A tar stream as text: every entry's header fields as written (the mode with any file-type
/// bits in it, the owner's names) and its content, except the modification time (the file was
/// written at a different moment on each daemon).
fn tar_listing(data: &[u8]) -> String {
    let mut archive = tar::Archive::new(data);
    let mut out = String::new();
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return format!("not a tar stream: {e}\n"),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.push_str(&format!("bad entry: {e}\n"));
                break;
            }
        };
        let mut pax = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let key = ext.key().unwrap_or("?").to_string();
                if !["mtime", "atime", "ctime"].contains(&key.as_str()) {
                    pax.push(format!(
                        "{key}={}",
                        String::from_utf8_lossy(ext.value_bytes())
                    ));
                }
            }
        }
        let h = entry.header().clone();
        let mut content = Vec::new();
        let _ = entry.read_to_end(&mut content);
        out.push_str(&format!(
            "{} type={:?} mode={:o} uid={} gid={} uname={:?} gname={:?} size={} pax={:?} content={:?}\n",
            String::from_utf8_lossy(&entry.path_bytes()),
            h.entry_type(),
            h.mode().unwrap_or(0),
            h.uid().unwrap_or(0),
            h.gid().unwrap_or(0),
            h.username().ok().flatten().unwrap_or(""),
            h.groupname().ok().flatten().unwrap_or(""),
            h.size().unwrap_or(0),
            pax,
            String::from_utf8_lossy(&content),
        ));
    }
    out
}

/// `GET PATH` on 127.0.0.1:PORT: the status line and the body, or the error.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    Ok(format!("{status}\n{body}"))
}

/// Polls `f` (not recorded) until it is true or `secs` pass; false when it never was.
fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The container's command: a file in the volume, a line on each stream, an HTTP server on
/// port 80 in the background, and a clean exit (with a last line) on SIGTERM, so that `stop`
/// does not wait out its timeout.
const CONTAINER_SCRIPT: &str = "trap 'echo stopping; exit 0' TERM; echo hello > /data/f; \
    echo started; echo warming up >&2; httpd -f -p 80 & wait";

fn scenario(target: &Target, n: &Names) -> Vec<Step> {
    let mut s = Session::new(target);
    let port_spec = format!("127.0.0.1:{}:80", n.port);
    let volume_spec = format!("{}:/data", n.volume);
    let c = n.container.as_str();
    // Events are read back from here on, at the end.
    let since = unix_now();

    // Images. dockerd reports a layer's download states to the client as the latest state at
    // the moment the client's watcher looks, so a state followed at once by the next one can be
    // skipped: for one and the same pull of this one-layer image, dockerd 20.10 printed
    // "Verifying Checksum" between "Pulling fs layer" and "Download complete" in some runs and
    // not in others. That line alone is left out of both outputs; every other line (and the
    // order of all of them) is compared.
    let pull_args = ["pull", n.image.as_str()];
    let out = s.exec(&pull_args);
    let stdout: String = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(": Verifying Checksum"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.record(
        &command_line(&pull_args),
        out.status.code().unwrap_or(-1),
        &stdout,
        &String::from_utf8_lossy(&out.stderr),
        Shape::Text,
    );
    // Pulled again: nothing to fetch.
    s.step(&["pull", &n.image], Shape::Text);
    s.step(&["images"], Shape::Table);
    s.step(
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
        Shape::Text,
    );

    // Foreground runs on the default network: output streams and exit codes.
    s.step(&["run", "--rm", &n.image, "echo", "hi"], Shape::Text);
    s.step(
        &[
            "run",
            "--rm",
            &n.image,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        Shape::Text,
    );

    // A user network (dockerd runs with --bridge none, so -p needs one) and a named volume.
    let id = s.exec(&["network", "create", &n.network]);
    s.learn_id(&String::from_utf8_lossy(&id.stdout), "<network-id>");
    s.record(
        &command_line(&["network", "create", &n.network]),
        id.status.code().unwrap_or(-1),
        &String::from_utf8_lossy(&id.stdout),
        &String::from_utf8_lossy(&id.stderr),
        Shape::Text,
    );
    s.step(&["volume", "create", &n.volume], Shape::Text);

    // A detached container with a published port and the volume.
    let run_args = [
        "run",
        "-d",
        "--name",
        c,
        "--network",
        &n.network,
        "-p",
        &port_spec,
        "-v",
        &volume_spec,
        &n.image,
        "sh",
        "-c",
        CONTAINER_SCRIPT,
    ];
    let out = s.exec(&run_args);
    s.learn_id(&String::from_utf8_lossy(&out.stdout), "<container-id>");
    s.record(
        &command_line(&run_args),
        out.status.code().unwrap_or(-1),
        &String::from_utf8_lossy(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        Shape::Text,
    );
    // Not recorded: until the script has written its lines and the server answers.
    let started = wait_for(20, || {
        String::from_utf8_lossy(&s.exec(&["logs", c]).stdout).contains("started")
    });
    let serving = wait_for(20, || {
        http_get(n.port, "/data/f").is_ok_and(|r| r.starts_with("HTTP/"))
    });
    s.record(
        "(the container logged its first line and answers HTTP within 20 s)",
        0,
        &format!("started={started} serving={serving}\n"),
        "",
        Shape::Text,
    );

    s.step(&["ps"], Shape::Table);
    s.step(
        &["ps", "-a", "--format", "{{.Names}} {{.Status}}"],
        Shape::Text,
    );
    s.step(
        &[
            "ps",
            "--format",
            "{{.Names}}|{{.Image}}|{{.Command}}|{{.Ports}}|{{.Networks}}|{{.Mounts}}",
        ],
        Shape::Text,
    );
    s.step(&["port", c], Shape::Text);
    s.step(&["port", c, "80"], Shape::Text);
    let answer = http_get(n.port, "/data/f");
    s.record(
        &format!("GET http://127.0.0.1:{}/data/f", n.port),
        if answer.is_ok() { 0 } else { 1 },
        &answer.clone().unwrap_or_default(),
        &answer.err().unwrap_or_default(),
        Shape::Text,
    );
    s.step(&["logs", c], Shape::Text);
    s.step(&["exec", c, "cat", "/data/f"], Shape::Text);
    s.step(
        &[
            "exec",
            c,
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 5",
        ],
        Shape::Text,
    );

    // cp into the container: a file of mode 0600 with known content.
    let host_in = target.work.join("in.txt");
    std::fs::write(&host_in, "copied in\n").expect("write in.txt");
    std::fs::set_permissions(&host_in, std::fs::Permissions::from_mode(0o600)).unwrap();
    let into = format!("{c}:/data/in.txt");
    s.step(&["cp", "{work}/in.txt", &into], Shape::Text);
    s.step(&["exec", c, "cat", "/data/in.txt"], Shape::Text);
    s.step(
        &["exec", c, "stat", "-c", "%a %u:%g %s %n", "/data/in.txt"],
        Shape::Text,
    );

    // cp out of the container: to a host file, and as a tar on stdout.
    let from = format!("{c}:/data/f");
    s.step(&["cp", &from, "{work}/out.txt"], Shape::Text);
    let host_out = target.work.join("out.txt");
    let (code, seen) = match std::fs::metadata(&host_out) {
        Ok(m) => (
            0,
            format!(
                "mode={:o} owner={}:{} content={:?}\n",
                m.permissions().mode() & 0o7777,
                m.uid(),
                m.gid(),
                std::fs::read_to_string(&host_out).unwrap_or_default()
            ),
        ),
        Err(e) => (1, format!("{e}\n")),
    };
    s.record("(host) {work}/out.txt", code, &seen, "", Shape::Text);
    let out = s.exec(&["cp", &from, "-"]);
    s.record(
        &format!(
            "{} (stdout as a tar listing)",
            command_line(&["cp", &from, "-"])
        ),
        out.status.code().unwrap_or(-1),
        &tar_listing(&out.stdout),
        &String::from_utf8_lossy(&out.stderr),
        Shape::Text,
    );

    // stop, then rm.
    s.step(&["stop", c], Shape::Text);
    s.step(
        &["ps", "-a", "--format", "{{.Names}} {{.Status}}"],
        Shape::Text,
    );
    s.step(
        &[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.HostConfig.NetworkMode}}",
            c,
        ],
        Shape::Text,
    );
    s.step(&["logs", c], Shape::Text);
    s.step(&["ps"], Shape::Table);
    s.step(&["rm", c], Shape::Text);
    s.step(&["ps", "-a"], Shape::Table);

    // Volumes.
    s.step(&["volume", "ls"], Shape::Table);
    s.step(
        &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"],
        Shape::Text,
    );
    s.step(
        &[
            "volume",
            "inspect",
            "--format",
            "{{.Name}} {{.Driver}} {{.Mountpoint}} {{.Scope}}",
            &n.volume,
        ],
        Shape::Text,
    );
    s.step(&["volume", "rm", &n.volume], Shape::Text);
    s.step(&["volume", "ls", "--format", "{{.Name}}"], Shape::Text);

    // Networks. The unfiltered `network ls` is not compared: dockerd runs with --bridge none
    // here, so it has no `bridge` network, which every berth root has.
    let filter = format!("name={}", n.network);
    s.step(&["network", "ls", "--filter", &filter], Shape::Table);
    s.step(
        &[
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{.Scope}}",
            &n.network,
        ],
        Shape::Text,
    );
    s.step(&["network", "rm", &n.network], Shape::Text);
    s.step(&["network", "ls", "--filter", &filter], Shape::Table);

    // The events of the scenario (since its start, labelled without the times): the
    // container's lifecycle (exec and cp events left out: berth does not log them) and the
    // network's, with the container's connect and disconnect.
    let until = unix_now();
    let container_filter = format!("container={c}");
    let network_filter = format!("network={}", n.network);
    for (label, filters, format) in [
        (
            "events: the container's lifecycle",
            vec![
                container_filter.as_str(),
                "event=create",
                "event=start",
                "event=kill",
                "event=die",
                "event=stop",
                "event=destroy",
            ],
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
        ),
        (
            "events: the network's",
            vec!["type=network", network_filter.as_str()],
            "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}",
        ),
    ] {
        let mut args = vec!["events", "--since", &since, "--until", &until];
        for f in filters {
            args.extend(["--filter", f]);
        }
        args.extend(["--format", format]);
        s.step_as(label, &args, Shape::Text);
    }

    // Things that do not exist: the same message and exit code.
    s.step(&["inspect", "nosuch"], Shape::Text);
    s.step(&["rm", "nosuch"], Shape::Text);
    s.step(&["stop", "nosuch"], Shape::Text);
    s.step(&["logs", "nosuch"], Shape::Text);
    s.step(&["exec", "nosuch", "true"], Shape::Text);
    s.step(&["port", "nosuch"], Shape::Text);
    s.step(&["volume", "rm", "nosuch"], Shape::Text);
    s.step(&["volume", "inspect", "nosuch"], Shape::Text);
    s.step(&["network", "rm", "nosuch"], Shape::Text);
    s.step(&["network", "inspect", "nosuch"], Shape::Text);
    s.step(&["rmi", "nosuch"], Shape::Text);
    // A repository the registry does not have: the pull fails at the manifest.
    s.step(&["pull", &n.missing_image], Shape::Text);
    s.step(&["run", "--rm", &n.missing_image], Shape::Text);

    s.steps
}

/// Removes what the scenario makes on a berth root (containers, the network, the volume),
/// whether or not the scenario got to it.
struct BerthLeftovers<'a> {
    berth: &'a Berth,
    network: String,
    volume: String,
}

impl Drop for BerthLeftovers<'_> {
    fn drop(&mut self) {
        self.berth.remove_all_containers();
        let _ = self.berth.run(&["network", "rm", &self.network]);
        let _ = self.berth.run(&["volume", "rm", "-f", &self.volume]);
    }
}

/// The scenario on a fresh berth root served by `berth serve`, the CLI held at `api_version`
/// (or negotiating when None).
fn berth_scenario(n: &Names, api_version: Option<&str>) -> Vec<Step> {
    let berth = Berth::new();
    let api = ApiServer::start(&berth);
    let _leftovers = BerthLeftovers {
        berth: &berth,
        network: n.network.clone(),
        volume: n.volume.clone(),
    };
    let work = berth.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let target = Target {
        name: match api_version {
            Some(v) => format!("berth serve (CLI at API {v})"),
            None => "berth serve (CLI negotiating)".to_string(),
        },
        docker: Box::new(|| {
            let mut c = api.docker_command();
            c.stdin(std::process::Stdio::null());
            if let Some(v) = api_version {
                c.env("DOCKER_API_VERSION", v);
            }
            c
        }),
        data_root: berth.root(),
        work,
    };
    println!("--- {}", target.name);
    scenario(&target, n)
}

fn show(step: &Step) -> String {
    format!(
        "exit {}\n      stdout: {:?}\n      stderr: {:?}",
        step.code, step.stdout, step.stderr
    )
}

/// Every step of `theirs` that differs from dockerd's, described with both outputs.
fn differences(name: &str, dockerd: &[Step], theirs: &[Step]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, d) in dockerd.iter().enumerate() {
        let Some(b) = theirs.get(i) else {
            out.push(format!("{name}: step {i} ({}) missing", d.label));
            continue;
        };
        assert_eq!(d.label, b.label, "the scenario ran the same steps");
        if d != b {
            out.push(format!(
                "{name}: `{}`\n    dockerd: {}\n    berth:   {}",
                d.label,
                show(d),
                show(b)
            ));
        }
    }
    out
}

#[test]
fn docker_cli_prints_the_same_against_dockerd_and_berth_serve() {
    require_peer("docker");
    require_peer("dockerd");
    require_peer("docker-registry");

    // berth's busybox, pushed to a local registry for both daemons to pull.
    let registry = Registry::plain();
    let run_id = std::process::id();
    let image = registry.image(&format!("parity-{run_id}/busybox"));
    {
        let source = Host::new();
        let tagged = format!("{image}:latest");
        source.ok(&["tag", "busybox:latest", &tagged]);
        source.ok(&["push", &tagged]);
    }
    let names = Names {
        image: image.clone(),
        missing_image: registry.image(&format!("parity-{run_id}/nosuch:tag")),
        container: format!("parity-{run_id}-c"),
        network: format!("parity-{run_id}-net"),
        volume: format!("parity-{run_id}-vol"),
        port: free_port(),
    };

    let dockerd_steps = {
        let dockerd = RunningDockerd::start();
        let work = tempfile::Builder::new()
            .prefix("parity-work-")
            .tempdir_in(common::test_tmp())
            .unwrap();
        let target = Target {
            name: "dockerd".to_string(),
            docker: Box::new(|| dockerd.docker_command()),
            data_root: dockerd.data_root(),
            work: work.path().to_path_buf(),
        };
        println!("--- dockerd");
        let steps = scenario(&target, &names);
        // Drops here: containers, network and volume removed, daemon stopped.
        if steps
            .iter()
            .any(|s| s.label.starts_with("docker run -d") && s.code != 0)
        {
            println!("dockerd's log:\n{}", dockerd.log());
        }
        steps
    };
    for step in &dockerd_steps {
        println!("{}\n    {}", step.label, show(step));
    }

    let pinned = berth_scenario(&names, Some("1.41"));
    let negotiated = berth_scenario(&names, None);

    let mut mismatches = differences("berth (API 1.41)", &dockerd_steps, &pinned);
    mismatches.extend(differences(
        "berth (negotiated API)",
        &dockerd_steps,
        &negotiated,
    ));
    let matched = |theirs: &[Step]| {
        dockerd_steps
            .iter()
            .zip(theirs)
            .filter(|(d, b)| d == b)
            .count()
    };
    println!(
        "{} steps; the same as dockerd's: {} at API 1.41, {} negotiated",
        dockerd_steps.len(),
        matched(&pinned),
        matched(&negotiated)
    );
    assert!(
        mismatches.is_empty(),
        "{} differences from dockerd:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
