//! A private dockerd, for tests that compare what the docker CLI prints against it and
//! against `berth serve` (`api_parity.rs`), and that push and pull through it
//! (`registry_server.rs`). It can run containers, so it gets the rlimits this host allows
//! (peers.md section 3: nothing here may raise a hard rlimit, and dockerd's defaults are
//! above them), and Drop removes what the test left in it (containers, user networks: their
//! bridges live on the host) before the daemon stops.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::{
    host::unique,
    registry_server::{fixture_dir, kill_processes_mentioning, unmount_under},
};

/// How long a private dockerd gets to answer its first request.
const START: Duration = Duration::from_secs(60);
/// How long it gets to stop on SIGTERM before it is killed.
const STOP: Duration = Duration::from_secs(30);

/// Fails the test, with the fix, when a peer tool (dockerd, docker-registry, the docker CLI)
/// is missing: a comparison that silently skipped would prove nothing.
pub fn require_peer(tool: &str) {
    super::require_tool(tool);
}

/// A private dockerd 20.10 (peers.md section 4): its own socket, data root, exec root (and so
/// its own containerd) and pid file, an empty daemon.json, `--iptables=false` and
/// `--bridge none` (no default bridge, so no subnet or firewall rule of another daemon is
/// touched; containers that publish ports join a user network). The docker CLI (the first
/// `docker` on PATH) reaches it through DOCKER_HOST, with a DOCKER_CONFIG of its own.
///
/// Drop removes every container and user network, stops the daemon (SIGTERM, SIGKILL after
/// 30 s), kills what it left running under its exec root, detaches its mounts and removes its
/// directories.
pub struct RunningDockerd {
    child: Child,
    /// `/run/berth-pd-<pid>-<n>`: the socket, the exec root and the pid file (short: the
    /// containerd sockets under the exec root must fit in 108 bytes).
    run_dir: PathBuf,
    /// `data/` (the data root), `daemon.json`, `client/` (DOCKER_CONFIG), `dockerd.log`.
    dir: tempfile::TempDir,
}

impl RunningDockerd {
    /// Starts the daemon and waits until it answers; panics, with its log, when it cannot.
    pub fn start() -> RunningDockerd {
        require_peer("dockerd");
        require_peer("docker");
        let dir = fixture_dir("dockerd-");
        let run_dir = PathBuf::from(format!("/run/berth-pd-{}-{}", std::process::id(), unique()));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", run_dir.display()));
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd.log");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--host")
            .arg(format!("unix://{}/docker.sock", run_dir.display()))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(run_dir.join("exec"))
            .arg("--pidfile")
            .arg(run_dir.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip-forward=false"])
            // peers.md section 3: at or below the hard limits this host has.
            .args(["--default-ulimit", "nofile=20000:20000"])
            .args(["--default-ulimit", "nproc=65536:65536"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup dockerd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd cannot run here: {e}"));
        // From here on Drop cleans up, whatever fails.
        let mut dockerd = RunningDockerd {
            child,
            run_dir,
            dir,
        };
        let deadline = Instant::now() + START;
        loop {
            if let Ok(Some(status)) = dockerd.child.try_wait() {
                panic!(
                    "dockerd cannot run here: it exited ({status}) before answering; its log:\n{}",
                    dockerd.log()
                );
            }
            let out = dockerd.docker(&["version", "--format", "{{.Server.Version}}"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within {START:?} ({}); its log:\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                dockerd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        dockerd
    }

    /// `unix:///run/berth-pd-…/docker.sock`, for DOCKER_HOST.
    pub fn docker_host(&self) -> String {
        format!("unix://{}/docker.sock", self.run_dir.display())
    }

    /// The daemon's `--data-root` (volumes live under `volumes/` in it).
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A `docker` command that talks to this daemon only, with a client config of its own.
    pub fn docker_command(&self) -> Command {
        let mut c = Command::new("docker");
        for var in [
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS",
            "DOCKER_API_VERSION",
        ] {
            c.env_remove(var);
        }
        c.env("DOCKER_HOST", self.docker_host())
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .stdin(Stdio::null());
        c
    }

    /// `docker ARGS`, whatever it does.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command()
            .args(args)
            .output()
            .expect("run docker")
    }

    /// `docker ARGS`, which must succeed; its stdout (the end of dockerd's log otherwise).
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndockerd's log ends:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// What dockerd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The words of `docker ARGS`' stdout (IDs, names), or none when it fails.
    fn words(&self, args: &[&str]) -> Vec<String> {
        let out = self.docker(args);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Removes every container (and its anonymous volumes), every user network and every
    /// volume, so that nothing of the daemon's is left on the host once it stops.
    fn remove_everything(&self) {
        let containers = self.words(&["ps", "-aq", "--no-trunc"]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            let _ = self.docker(&args);
        }
        let networks = self.words(&["network", "ls", "-q", "--filter", "type=custom"]);
        for n in &networks {
            let _ = self.docker(&["network", "rm", n]);
        }
        let volumes = self.words(&["volume", "ls", "-q"]);
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            let _ = self.docker(&args);
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for RunningDockerd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.remove_everything();
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // dockerd stops its containerd on the way out; not when it had to be killed.
        kill_processes_mentioning(&self.run_dir);
        unmount_under(&self.run_dir);
        unmount_under(self.dir.path());
        let _ = std::fs::remove_dir_all(&self.run_dir);
        // `dir` (the data root among it) removes itself.
    }
}
