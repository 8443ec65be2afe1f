//! `berth serve` on a test's root, and the clients that drive it: the docker CLI on the
//! machine (28.x) and raw HTTP over the socket.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::Berth;

/// A running `berth serve`, stopped (SIGTERM) when dropped.
pub struct ApiServer {
    child: Child,
    /// Its Unix socket.
    pub socket: PathBuf,
    docker_config: PathBuf,
}

impl ApiServer {
    /// Starts `berth serve` on `berth`'s root, listening on a socket in its directory.
    pub fn start(berth: &Berth) -> ApiServer {
        super::require_tool("docker");
        let socket = berth.dir.path().join("api.sock");
        let child = berth
            .command()
            .args(["serve", "-H"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start berth serve");
        let started = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "berth serve did not listen on {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let docker_config = berth.dir.path().join("docker-cli-config");
        std::fs::create_dir_all(&docker_config).expect("docker config dir");
        ApiServer {
            child,
            socket,
            docker_config,
        }
    }

    /// The docker CLI pointed at this server (and at a config of its own).
    pub fn docker_command(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        c
    }

    /// `docker ARGS` with no input.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// `docker ARGS` with `input` on its stdin.
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .docker_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn docker");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(input);
        drop(stdin);
        child.wait_with_output().expect("wait docker")
    }

    /// `command` (a docker command line) run by script(1), which gives it a terminal: what
    /// the terminal showed is the output's stdout.
    pub fn docker_in_pty(&self, command: &str) -> Output {
        super::require_tool("script");
        Command::new("script")
            .args(["-qec", command, "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.docker_config)
            .stdin(Stdio::null())
            .output()
            .expect("run script")
    }

    /// `docker-compose ARGS` (compose v1, Debian's) in `dir` on this server, which must
    /// succeed; its stdout and stderr. `project` is `COMPOSE_PROJECT_NAME` (none: the
    /// directory's name).
    pub fn compose_v1(&self, dir: &Path, project: Option<&str>, args: &[&str]) -> (String, String) {
        super::require_tool("docker-compose");
        let mut c = Command::new("docker-compose");
        c.current_dir(dir)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .env_remove("COMPOSE_PROJECT_NAME");
        if let Some(p) = project {
            c.env("COMPOSE_PROJECT_NAME", p);
        }
        let out = c
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker-compose");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {stdout}{stderr}"
        );
        (stdout, stderr)
    }

    /// `docker ARGS`, which must succeed; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// One HTTP/1.1 request over the socket; the status and the body.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.socket, method, path, body)
    }
}

/// One HTTP/1.1 request (connection closed after it); the status and the (unchunked) body.
pub fn http(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut conn = UnixStream::connect(socket).expect("connect to the API socket");
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let body = body.unwrap_or("");
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("read answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn unchunk(mut text: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = text.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        text = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if started.elapsed() > Duration::from_secs(10) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
