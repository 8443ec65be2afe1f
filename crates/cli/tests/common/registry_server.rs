//! `berth registry serve` as a test fixture: started on a free loopback port with its own
//! storage directory, killed (and its directory removed) on Drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{berth_bin, test_tmp};

pub struct BerthRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    addr: String,
    tls: bool,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    // Last: the server is killed before its directory goes.
    dir: tempfile::TempDir,
}

impl BerthRegistry {
    /// A server on a fresh root with no extra flags.
    pub fn start() -> BerthRegistry {
        BerthRegistry::start_with(&[])
    }

    /// A server on a fresh root (`<dir>/root`) with extra `serve` flags.
    pub fn start_with(flags: &[&str]) -> BerthRegistry {
        let dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir_in(test_tmp())
            .expect("temp dir");
        BerthRegistry::start_in(dir, flags)
    }

    /// A server on `<dir>/root`, which may hold a previous server's storage.
    pub fn start_in(dir: tempfile::TempDir, flags: &[&str]) -> BerthRegistry {
        let root = dir.path().join("root");
        let mut child = Command::new(berth_bin())
            .args(["registry", "serve", "--addr", "127.0.0.1:0", "--root"])
            .arg(&root)
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
