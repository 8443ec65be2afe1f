//! `berth registry serve` as a test fixture: started on a free loopback port with its own
//! storage directory, killed (and its directory removed) on Drop. And the clients we did not
//! write, each isolated from the host's own: a private dockerd ([`RunningDockerd`](super::dockerd::RunningDockerd)) and a podman
//! store in a temp dir ([`PodmanStore`]).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::registry::run_tool;
use super::{berth_bin, host::unique, require_tool, test_tmp};

pub struct BerthRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    tls: bool,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    // Last: the server is killed before its directory goes.
    dir: tempfile::TempDir,
}

/// A fresh directory for one server (its root, log and address file), removed with it.
fn fresh_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-registry-")
        .tempdir_in(test_tmp())
        .expect("temp dir")
}

impl BerthRegistry {
    /// A server on a fresh root with no extra flags.
    pub fn start() -> BerthRegistry {
        BerthRegistry::start_with(&[])
    }

    /// A server on a fresh root (`<dir>/root`) with extra `serve` flags.
    pub fn start_with(flags: &[&str]) -> BerthRegistry {
        BerthRegistry::start_in(fresh_dir(), flags)
    }

    /// A server on `<dir>/root`, which may hold a previous server's storage.
    pub fn start_in(dir: tempfile::TempDir, flags: &[&str]) -> BerthRegistry {
        BerthRegistry::spawn(dir, "127.0.0.1:0", flags)
    }

    /// A server on a fresh root listening on `ip` (a free port) instead of 127.0.0.1: on an
    /// address of this host that is not loopback, clients take it for a remote registry.
    pub fn start_on(ip: IpAddr, flags: &[&str]) -> BerthRegistry {
        BerthRegistry::spawn(fresh_dir(), &SocketAddr::new(ip, 0).to_string(), flags)
    }

    /// A server on a fresh root started by another `berth` executable (one with no
    /// `berth-registry` beside it, say).
    pub fn start_by(berth: &Path) -> BerthRegistry {
        let dir = fresh_dir();
        let root = dir.path().join("root");
        BerthRegistry::spawn_by(berth, dir, &root, "127.0.0.1:0", &[])
    }

    /// A second server, in a process of its own, on `other`'s storage root.
    pub fn start_sharing(other: &BerthRegistry, flags: &[&str]) -> BerthRegistry {
        let dir = fresh_dir();
        let root = other.root();
        BerthRegistry::spawn_by(Path::new(berth_bin()), dir, &root, "127.0.0.1:0", flags)
    }

    fn spawn(dir: tempfile::TempDir, addr: &str, flags: &[&str]) -> BerthRegistry {
        let root = dir.path().join("root");
        BerthRegistry::spawn_by(Path::new(berth_bin()), dir, &root, addr, flags)
    }

    fn spawn_by(
        berth: &Path,
        dir: tempfile::TempDir,
        root: &Path,
        addr: &str,
        flags: &[&str],
    ) -> BerthRegistry {
        let mut child = Command::new(berth)
            .args(["registry", "serve", "--addr", addr, "--root"])
            .arg(root)
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start berth registry serve");
        // The first stderr line names the address; the rest is kept for `log()`.
        let (tx, rx) = mpsc::channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(tx) = tx.take_if(|_| line.contains("://")) {
                    let _ = tx.send(line.clone());
                }
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "berth registry serve did not start ({status:?}): {}",
                    stderr.lock().unwrap()
                );
            }
        };
        let tls = line.contains("https://");
        let addr = line
            .rsplit("://")
            .next()
            .expect("address")
            .trim()
            .to_owned();
        BerthRegistry {
            child,
            addr,
            tls,
            stderr,
            dir,
        }
    }

    /// The server process's executable and environment.
    pub fn process(&self) -> (PathBuf, Vec<String>) {
        let proc = PathBuf::from(format!("/proc/{}", self.child.id()));
        let exe = std::fs::read_link(proc.join("exe")).expect("the server's executable");
        let environ = std::fs::read(proc.join("environ")).expect("the server's environment");
        let environ = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        (exe, environ)
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.addr)
    }

    /// `http://127.0.0.1:PORT` (or https).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// The storage root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The fixture's directory (the root is `root/` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Kills the server (SIGKILL) and returns its directory, to restart on the same root.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let placeholder = tempfile::Builder::new()
            .prefix("berth-registry-gone-")
            .tempdir_in(test_tmp())
            .expect("temp dir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// `berth registry check` on the root: Ok with its output when consistent.
    pub fn check(&self) -> Result<String, String> {
        registry_check(&self.root())
    }
}

/// `berth registry check --root ROOT`.
pub fn registry_check(root: &Path) -> Result<String, String> {
    let out = Command::new(berth_bin())
        .args(["registry", "check", "--root"])
        .arg(root)
        .output()
        .expect("run berth registry check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

impl Drop for BerthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth registry gc --root ROOT ARGS`.
pub fn registry_gc(root: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(["registry", "gc", "--root"])
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run berth registry gc")
}

/// An htpasswd file (bcrypt, as `htpasswd -B` writes it) holding `user` with `password`, at
/// `dir/htpasswd`.
pub fn htpasswd_file(dir: &Path, user: &str, password: &str) -> PathBuf {
    let path = dir.join("htpasswd");
    let line = run_tool("htpasswd", &["-Bbn", user, password]);
    std::fs::write(&path, line).expect("write the htpasswd file");
    path
}

/// Detaches every mount at or under `dir`, deepest first (what a daemon killed half-way may
/// leave behind), so that the directory can be removed.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Sends SIGKILL to every process whose command line mentions `needle` (a fixture's private
/// directory: the processes a daemon it started left behind).
pub fn kill_processes_mentioning(needle: &Path) {
    let needle = needle.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle)
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

pub fn fixture_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_tmp())
        .expect("temp dir")
}

/// A podman image store of its own (`--root` in a temp dir; `--runroot` and `--tmpdir` under
/// `/run/berth-podman-<pid>-<n>`, as podman refuses a runroot over 50 characters; the overlay
/// driver), so that nothing of the host's podman images is seen or touched, and no credential
/// of the host's is used. Drop detaches anything podman left mounted there, then both
/// directories go.
pub struct PodmanStore {
    run_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl PodmanStore {
    pub fn new() -> PodmanStore {
        require_tool("podman");
        let run_dir = PathBuf::from(format!(
            "/run/berth-podman-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", run_dir.display()));
        let dir = fixture_dir("podman-");
        // podman insists that REGISTRY_AUTH_FILE exists.
        std::fs::write(dir.path().join("auth.json"), "{\"auths\":{}}\n").expect("auth.json");
        PodmanStore { run_dir, dir }
    }

    /// A `podman` command on this store.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(self.run_dir.join("run"))
            .arg("--tmpdir")
            .arg(self.run_dir.join("tmp"))
            .args(["--storage-driver", "overlay", "--events-backend", "file"])
            .env("REGISTRY_AUTH_FILE", d.join("auth.json"))
            .env("DOCKER_CONFIG", d.join("docker-config"))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run podman")
    }

    /// Runs `podman ARGS` and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// The store's directory (`root/` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PodmanStore {
    fn drop(&mut self) {
        unmount_under(&self.run_dir);
        unmount_under(self.dir.path());
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
