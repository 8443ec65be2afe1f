//! Registries for the registry client's tests, on 127.0.0.1 unless a test asks for another of
//! this host's addresses, and all gone on Drop:
//!
//! - [`Registry`]: distribution (`docker-registry serve`) on a free port, storage in a temp dir,
//!   with no auth, htpasswd (bcrypt) or token auth; over TLS with a certificate of a [`TestCa`]
//!   and with its access log on ([`RegistryOptions`]);
//! - [`TokenServer`]: the token auth server a token registry sends clients to, run in the test
//!   process (std only): RS256 JWTs signed by `openssl`, a per-test policy, every request counted;
//! - [`CutProxy`]: a TCP proxy in front of a registry that cuts the first big blob download in
//!   half and records every request it forwards (to see the client's `Range: bytes=N-`), or
//!   ([`CutProxy::throttled`]) slows blob downloads down instead;
//! - [`TestCa`]: a certificate authority made with `openssl`, and server certificates it signs;
//! - [`non_loopback_ipv4`]: an address of this host that berth does not take for a local
//!   (always insecure) registry;
//! - [`TestImage`] and [`write_index_layout`]: images made without a registry, as OCI layouts
//!   that `skopeo copy [--all] oci:DIR:TAG docker://...` pushes.
//!
//! A small HTTP/1.1 client ([`http`]) lets tests talk to all of them without curl.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use super::{berth_arch, gzip, host::busybox_tar, require_tool, sha256_hex, test_tmp};

/// The service and issuer names the token registry and its token server agree on.
pub const TOKEN_SERVICE: &str = "test-registry";
pub const TOKEN_ISSUER: &str = "test-issuer";

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(test_tmp())
        .expect("temp dir")
}

/// A port nobody listens on right now (the caller retries if someone takes it meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs a tool and expects success; returns stdout.
pub fn run_tool(cmd: &str, args: &[&str]) -> String {
    require_tool(cmd);
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

// ---------------------------------------------------------------------------------------------
// The registry

enum Auth {
    None,
    Htpasswd,
    Token { realm: String, cert: PathBuf },
}

/// How a [`Registry`] serves, beyond its auth.
#[derive(Clone, Copy)]
pub struct RegistryOptions<'a> {
    /// Listen on this address (127.0.0.1 by default).
    pub ip: IpAddr,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1, as distribution does) with a certificate this CA
    /// signs for 127.0.0.1 and `ip`.
    pub tls: Option<&'a TestCa>,
    /// Log every request (Apache's combined format, with the protocol: `"GET /v2/ HTTP/2.0"`),
    /// for [`Registry::access_log`].
    pub access_log: bool,
}

impl Default for RegistryOptions<'_> {
    fn default() -> Self {
        RegistryOptions {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: None,
            access_log: false,
        }
    }
}

/// One request in a registry's access log.
#[derive(Clone, Debug)]
pub struct AccessEntry {
    pub method: String,
    pub target: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: String,
    pub status: u16,
    pub user_agent: String,
}

impl AccessEntry {
    /// Parses `IP - USER [DATE] "METHOD TARGET PROTO" STATUS SIZE "REFERER" "UA"`.
    fn parse(line: &str) -> Option<AccessEntry> {
        let parts: Vec<&str> = line.split('"').collect();
        if parts.len() < 6 || !parts[0].trim_end().ends_with(']') {
            return None;
        }
        let mut request = parts[1].split_whitespace();
        let (method, target, protocol) = (request.next()?, request.next()?, request.next()?);
        let status = parts[2].split_whitespace().next()?.parse().ok()?;
        Some(AccessEntry {
            method: method.to_string(),
            target: target.to_string(),
            protocol: protocol.to_string(),
            status,
            user_agent: parts[5].to_string(),
        })
    }
}

/// `docker-registry serve` (distribution 2.8) on 127.0.0.1 (or [`RegistryOptions::ip`]), killed
/// and its storage removed on Drop.
pub struct Registry {
    child: Child,
    ip: IpAddr,
    port: u16,
    tokens: Option<TokenServer>,
    // Last: the registry is killed before its directory goes.
    dir: tempfile::TempDir,
}

impl Registry {
    /// No auth: anyone pulls and pushes.
    pub fn plain() -> Registry {
        Registry::start(Auth::None, None)
    }

    /// No auth, served as `opts` say.
    pub fn plain_with(opts: RegistryOptions) -> Registry {
        Registry::start_in(temp_dir("registry-"), Auth::None, None, opts)
    }

    /// htpasswd auth with one user (bcrypt, as `htpasswd -Bbn` writes it).
    pub fn htpasswd(user: &str, pass: &str) -> Registry {
        require_tool("htpasswd");
        let line = run_tool("htpasswd", &["-Bbn", user, pass]);
        let dir = temp_dir("registry-");
        std::fs::write(
            dir.path().join("htpasswd"),
            line.trim_end().to_string() + "\n",
        )
        .unwrap();
        Registry::start_in(dir, Auth::Htpasswd, None, RegistryOptions::default())
    }

    /// Token auth: clients get their tokens from a [`TokenServer`] with `policy`
    /// ([`Registry::tokens`]).
    pub fn token(policy: TokenPolicy) -> Registry {
        let tokens = TokenServer::start(policy);
        let auth = Auth::Token {
            realm: tokens.realm(),
            cert: tokens.cert_path(),
        };
        Registry::start(auth, Some(tokens))
    }

    fn start(auth: Auth, tokens: Option<TokenServer>) -> Registry {
        Registry::start_in(
            temp_dir("registry-"),
            auth,
            tokens,
            RegistryOptions::default(),
        )
    }

    fn start_in(
        dir: tempfile::TempDir,
        auth: Auth,
        tokens: Option<TokenServer>,
        opts: RegistryOptions,
    ) -> Registry {
        require_tool("docker-registry");
        let d = dir.path();
        let ip = opts.ip;
        let tls_yaml = match opts.tls {
            None => String::new(),
            Some(ca) => {
                let (cert, key) = ca.issue(d, &[IpAddr::V4(Ipv4Addr::LOCALHOST), ip]);
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                )
            }
        };
        let log_disabled = !opts.access_log;
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd => format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                d.join("htpasswd").display()
            ),
            Auth::Token { realm, cert } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    \
                 issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        // A busy machine may hand our free port to someone else before the registry binds it.
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: {log_disabled}\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 cache:\n    blobdescriptor: inmemory\n\
                 http:\n  addr: {}\n  secret: berth-registry-tests\n\
                 {tls_yaml}\
                 {auth_yaml}",
                d.join("data").display(),
                host_port(ip, port),
            );
            std::fs::write(d.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(d.join("log")).unwrap();
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(d.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let log = std::fs::read_to_string(d.join("log")).unwrap_or_default();
                    if log.contains("address already in use") {
                        break;
                    }
                    panic!("docker-registry exited ({status}) before answering:\n{log}");
                }
                // Over TLS, Go answers plain HTTP with "400 Client sent an HTTP request to an
                // HTTPS server": up, too.
                if let Ok(r) = http("GET", &host_port(ip, port), "/v2/", &[], b"")
                    && (r.status == 200
                        || r.status == 401
                        || (opts.tls.is_some() && r.status == 400))
                {
                    return Registry {
                        child,
                        ip,
                        port,
                        tokens,
                        dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = std::fs::read_to_string(d.join("log")).unwrap_or_default();
                    panic!("docker-registry did not answer /v2/ in 20 s:\n{log}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("docker-registry found no free port in 5 tries");
    }

    /// `127.0.0.1:PORT` (or the address it listens on).
    pub fn host(&self) -> String {
        host_port(self.ip, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `HOST/name` (name may carry `:tag` or `@digest`).
    pub fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.host())
    }

    /// The registry's temp dir (config, log, htpasswd; storage under `data`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Distribution's storage root (filesystem driver `rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where distribution keeps a blob's bytes: `docker/registry/v2/blobs/sha256/<2>/<hex>/data`.
    /// `digest` is `sha256:<hex>` or the bare hex.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256 digest: {digest}"
        );
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The token server of a [`Registry::token`] registry.
    pub fn tokens(&self) -> &TokenServer {
        self.tokens
            .as_ref()
            .expect("not a token registry: use Registry::token")
    }

    /// What the registry logged (warnings and errors; requests too with
    /// [`RegistryOptions::access_log`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The requests logged so far (only with [`RegistryOptions::access_log`]).
    pub fn access_log(&self) -> Vec<AccessEntry> {
        self.log().lines().filter_map(AccessEntry::parse).collect()
    }
}

/// `IP:PORT`, `[IPv6]:PORT`.
fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// An IPv4 address of this host that is not loopback (berth reaches a registry there as a
/// remote one: verified TLS unless configured insecure), and that a test can listen on;
/// `None` where the host has none (a network namespace with only `lo`). Berth's own bridges
/// are passed over: other tests may delete them.
pub fn non_loopback_ipv4() -> Option<Ipv4Addr> {
    let out = run_tool("ip", &["-o", "-4", "addr", "show", "scope", "global"]);
    out.lines()
        .filter_map(|l| {
            // `4: eth0    inet 192.0.2.2/24 brd ... scope global eth0`
            let mut words = l.split_whitespace();
            let dev = words.nth(1)?;
            let addr = words.skip_while(|w| *w != "inet").nth(1)?;
            Some((
                dev.to_string(),
                addr.split('/').next()?.parse::<Ipv4Addr>().ok()?,
            ))
        })
        .filter(|(dev, ip)| !dev.starts_with("berth") && !ip.is_loopback())
        .map(|(_, ip)| ip)
        .find(|ip| {
            TcpListener::bind((*ip, 0))
                .and_then(|l| TcpStream::connect(l.local_addr()?))
                .is_ok()
        })
}

// ---------------------------------------------------------------------------------------------
// TLS certificates

/// A certificate authority (P-256, made by `openssl`) in a temp dir, and the server
/// certificates it issues.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        require_tool("openssl");
        let dir = temp_dir("test-ca-");
        let (key, cert) = (dir.path().join("ca.key"), dir.path().join("ca.crt"));
        run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-days",
                "2",
                "-subj",
                "/CN=berth test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa { dir }
    }

    /// The CA certificate (PEM): what `certs.d/<host>/ca.crt` holds.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Copies the CA certificate to `certs_d/<host>/ca.crt` (Docker's layout: `host` is the
    /// registry as named, `IP:PORT`).
    pub fn install(&self, certs_d: &Path, host: &str) {
        let dir = certs_d.join(host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(self.cert_path(), dir.join("ca.crt")).unwrap();
    }

    /// A server certificate for `ips` (as IP subjectAltNames), and its key, written to `dir`
    /// as `server.crt` and `server.key`.
    pub fn issue(&self, dir: &Path, ips: &[IpAddr]) -> (PathBuf, PathBuf) {
        let (key, csr, cert, ext) = (
            dir.join("server.key"),
            dir.join("server.csr"),
            dir.join("server.crt"),
            dir.join("server.ext"),
        );
        let mut sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        sans.dedup();
        std::fs::write(
            &ext,
            format!(
                "subjectAltName={}\nbasicConstraints=critical,CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        )
        .unwrap();
        run_tool(
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                "/CN=berth test registry",
            ],
        );
        let ca_key = self.dir.path().join("ca.key");
        let cert_path = self.cert_path();
        run_tool(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                cert_path.to_str().unwrap(),
                "-CAkey",
                ca_key.to_str().unwrap(),
                "-set_serial",
                &format!("{}", unix_now()),
                "-days",
                "2",
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        (cert, key)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client and the parsing the servers share

/// A request or response head.
#[derive(Clone, Debug)]
pub struct Head {
    /// The request line or the status line.
    pub first: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn parse(raw: &[u8]) -> Head {
        let text = String::from_utf8_lossy(raw);
        let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
        let first = lines.next().unwrap_or_default().to_string();
        let headers = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        Head { first, headers }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.parse().ok()
    }

    /// A status line's code.
    fn status(&self) -> u16 {
        self.first
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one head (up to and with the empty line); `None` at EOF before any byte.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        if r.read_until(b'\n', &mut head)? == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside an HTTP head",
            ));
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(Some(head));
        }
        if head.len() > 256 * 1024 {
            return Err(io::Error::other("HTTP head over 256 KiB"));
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size, 16).map_err(io::Error::other)?;
        if size == 0 {
            // Trailers, then the empty line.
            while {
                line.clear();
                r.read_line(&mut line)? > 0 && !line.trim().is_empty()
            } {}
            return Ok(body);
        }
        r.by_ref().take(size).read_to_end(&mut body)?;
        line.clear();
        r.read_line(&mut line)?;
    }
}

/// A response from [`http`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub fn http(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut w = stream.try_clone()?;
    w.write_all(req.as_bytes())?;
    w.write_all(body)?;
    let mut r = BufReader::new(stream);
    let raw = read_head(&mut r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let head = Head::parse(&raw);
    let status = head.status();
    let mut body = Vec::new();
    if method != "HEAD" && status != 204 && status != 304 {
        if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            body = read_chunked(&mut r)?;
        } else if let Some(n) = head.content_length() {
            r.take(n).read_to_end(&mut body)?;
        } else {
            r.read_to_end(&mut body)?;
        }
    }
    Ok(Response { status, head, body })
}

fn write_response(
    w: &mut impl Write,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    w.write_all(out.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// A listener on 127.0.0.1 served by `handle`, one thread per connection, stopped on Drop.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(conn));
                }
            })
        };
        Server {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encodings: base64 (JWS, Basic auth), form and query strings, RFC 3339 times

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// base64url without padding (JWS).
pub fn base64url(data: &[u8]) -> String {
    base64(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// Standard or URL-safe base64, padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'-' => 62,
            b'_' => 63,
            _ => B64.iter().position(|&b| b == c)? as u32,
        };
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` into pairs, percent- and plus-decoded.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `2006-01-02T15:04:05Z` for a Unix time.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// The token server

/// Who gets what from a [`TokenServer`].
#[derive(Clone, Debug, Default)]
pub struct TokenPolicy {
    /// The one user (and password) accepted; they get every action they ask for. Other
    /// credentials are refused with 401.
    pub user: Option<(String, String)>,
    /// Requests without credentials get `pull` (nothing else) on repositories whose name starts
    /// with this prefix (`Some("")`: every repository); `None`: anonymous requests get tokens
    /// that grant nothing.
    pub anonymous_pull: Option<String>,
}

impl TokenPolicy {
    /// Accepts `user`/`pass`; anonymous requests get nothing.
    pub fn user(user: &str, pass: &str) -> TokenPolicy {
        TokenPolicy {
            user: Some((user.into(), pass.into())),
            anonymous_pull: None,
        }
    }

    /// Anonymous requests may pull repositories whose names start with `prefix`.
    pub fn anonymous_pull(mut self, prefix: &str) -> TokenPolicy {
        self.anonymous_pull = Some(prefix.into());
        self
    }
}

/// One request a [`TokenServer`] answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// GET (Docker's token flow) or POST (OAuth2 password grant).
    pub method: String,
    /// The user the request authenticated as (right password); `None`: anonymous or refused.
    pub user: Option<String>,
    /// Credentials were sent (Basic auth or a password grant), right or wrong.
    pub sent_credentials: bool,
    pub service: Option<String>,
    /// Every `scope` asked for, as sent (`repository:NAME:ACTIONS`).
    pub scopes: Vec<String>,
    /// What the token granted (`[{type, name, actions}]`); empty when refused.
    pub granted: Value,
    pub status: u16,
}

struct TokenState {
    policy: Mutex<TokenPolicy>,
    requests: Mutex<Vec<TokenRequest>>,
    key: PathBuf,
    cert_der_b64: String,
    realm: String,
    serial: AtomicU64,
}

/// Docker's token auth server (`GET /token?service=..&scope=..`, optionally with Basic auth;
/// also `POST /token` with an OAuth2 password grant), in a thread of the test.
///
/// Tokens are JWS (RS256, `x5c` holding a self-signed certificate that is the registry's
/// `rootcertbundle`) with claims iss, sub, aud, exp (+300 s), nbf, iat, jti and access.
pub struct TokenServer {
    state: Arc<TokenState>,
    server: Server,
    dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn start(policy: TokenPolicy) -> TokenServer {
        require_tool("openssl");
        let dir = temp_dir("token-server-");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let der = dir.path().join("cert.der");
        run_tool(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
                "-days",
                "2",
                "-subj",
                &format!("/CN={TOKEN_ISSUER}"),
            ],
        );
        run_tool(
            "openssl",
            &[
                "x509",
                "-in",
                cert.to_str().unwrap(),
                "-outform",
                "DER",
                "-out",
                der.to_str().unwrap(),
            ],
        );
        let cert_der_b64 = base64(&std::fs::read(&der).unwrap());
        // The realm needs the port, the handler needs the realm: bind first, then serve.
        let state_slot: Arc<Mutex<Option<Arc<TokenState>>>> = Arc::new(Mutex::new(None));
        let server = {
            let slot = state_slot.clone();
            Server::start(move |conn| {
                let state = slot.lock().unwrap().clone();
                if let Some(state) = state {
                    let _ = serve_token(conn, &state);
                }
            })
        };
        let state = Arc::new(TokenState {
            policy: Mutex::new(policy),
            requests: Mutex::new(Vec::new()),
            key,
            cert_der_b64,
            realm: format!("http://127.0.0.1:{}/token", server.port),
            serial: AtomicU64::new(0),
        });
        *state_slot.lock().unwrap() = Some(state.clone());
        TokenServer { state, server, dir }
    }

    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        self.state.realm.clone()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// The certificate (PEM) whose key signs the tokens: the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn set_policy(&self, policy: TokenPolicy) {
        *self.state.policy.lock().unwrap() = policy;
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many requests were answered so far (tokens issued or refused).
    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// A token for `scopes` as `user` would get it (for curl and direct checks), or the refusal.
    pub fn fetch(&self, creds: Option<(&str, &str)>, scopes: &[&str]) -> Response {
        let mut target = format!("/token?service={TOKEN_SERVICE}");
        for s in scopes {
            target.push_str(&format!("&scope={s}"));
        }
        let auth = creds.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        http("GET", &self.host(), &target, &headers, b"").expect("token request")
    }
}

fn serve_token(conn: TcpStream, state: &TokenState) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let Some(raw) = read_head(&mut r)? else {
        return Ok(());
    };
    let head = Head::parse(&raw);
    let mut parts = head.first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if path != "/token" {
        return write_response(&mut w, "404 Not Found", &[], b"not found\n");
    }
    let mut params = parse_form(query);
    let mut creds: Option<(String, String)> = None;
    if method == "POST" {
        let mut body = Vec::new();
        r.by_ref()
            .take(head.content_length().unwrap_or(0))
            .read_to_end(&mut body)?;
        let form = parse_form(&String::from_utf8_lossy(&body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("grant_type").as_deref() != Some("password") {
            let body = br#"{"error":"unsupported_grant_type"}"#;
            return write_response(
                &mut w,
                "400 Bad Request",
                &[("Content-Type", "application/json")],
                body,
            );
        }
        creds = Some((
            get("username").unwrap_or_default(),
            get("password").unwrap_or_default(),
        ));
        params.extend(form);
    } else if let Some(basic) = head.header("authorization").and_then(|a| {
        a.strip_prefix("Basic ")
            .or_else(|| a.strip_prefix("basic "))
    }) {
        let decoded = base64_decode(basic).unwrap_or_default();
        let decoded = String::from_utf8_lossy(&decoded);
        let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
        creds = Some((u.to_string(), p.to_string()));
    }
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let policy = state.policy.lock().unwrap().clone();
    let sent_credentials = creds.is_some();
    let user = match &creds {
        None => None,
        Some(c) if Some(c) == policy.user.as_ref() => Some(c.0.clone()),
        Some(_) => {
            state.requests.lock().unwrap().push(TokenRequest {
                method,
                user: None,
                sent_credentials,
                service,
                scopes,
                granted: json!([]),
                status: 401,
            });
            let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}],"details":"incorrect username or password"}"#;
            return write_response(
                &mut w,
                "401 Unauthorized",
                &[
                    ("Content-Type", "application/json"),
                    ("WWW-Authenticate", "Basic realm=\"test-token-server\""),
                ],
                body,
            );
        }
    };
    let mut access = Vec::new();
    for scope in &scopes {
        // type:name:actions; the name itself may hold colons only in odd cases (a port).
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let asked: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
        let granted: Vec<&str> = if user.is_some() {
            asked
        } else if kind == "repository"
            && policy
                .anonymous_pull
                .as_deref()
                .is_some_and(|prefix| name.starts_with(prefix))
        {
            asked.into_iter().filter(|a| *a == "pull").collect()
        } else {
            Vec::new()
        };
        if !granted.is_empty() {
            access.push(json!({"type": kind, "name": name, "actions": granted}));
        }
    }
    let now = unix_now();
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [state.cert_der_b64]});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": user.clone().unwrap_or_default(),
        "aud": TOKEN_SERVICE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{}-{serial}-{now}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let signature = openssl_sign(&state.key, signing_input.as_bytes())?;
    let token = format!("{signing_input}.{}", base64url(&signature));
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
        "issued_at": rfc3339(now),
    });
    state.requests.lock().unwrap().push(TokenRequest {
        method,
        user,
        sent_credentials,
        service,
        scopes,
        granted: Value::Array(access),
        status: 200,
    });
    write_response(
        &mut w,
        "200 OK",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256) by `openssl dgst`.
fn openssl_sign(key: &Path, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(data)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "openssl dgst -sign: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

// ---------------------------------------------------------------------------------------------
// The cutting proxy

/// One request a [`CutProxy`] forwarded.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    /// The request target (`/v2/NAME/blobs/sha256:...`, with any query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// The upstream's response status (0 if none came).
    pub status: u16,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The start offset of a `Range: bytes=N-[M]` header.
    pub fn range_start(&self) -> Option<u64> {
        let r = self.header("range")?.strip_prefix("bytes=")?;
        r.split('-').next()?.trim().parse().ok()
    }

    pub fn is_blob_get(&self) -> bool {
        self.method == "GET"
            && self.target.starts_with("/v2/")
            && self.target.contains("/blobs/sha256:")
    }
}

/// The download a [`CutProxy`] cut.
#[derive(Clone, Debug)]
pub struct Cut {
    pub target: String,
    /// The response's Content-Length.
    pub content_length: u64,
    /// The body bytes forwarded before the connection was closed.
    pub forwarded: u64,
}

/// What a [`CutProxy`] does to a big blob download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misbehaviour {
    /// Half the body, then the connection closes (the first such download only).
    Cut,
    /// Half the body, then silence with the connection open; later downloads get silence
    /// from the start.
    Stall,
    /// A body without end instead of the blob (every such download).
    Endless,
}

struct ProxyState {
    upstream: String,
    threshold: u64,
    misbehaviour: Misbehaviour,
    /// Bytes per second for each blob download's body; 0: as fast as they come.
    rate: AtomicU64,
    cut_done: AtomicBool,
    cut: Mutex<Option<Cut>>,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (`HOST:PORT`). It forwards one request per
/// connection (it sends `Connection: close` upstream, so the registry closes after each response
/// and clients open a new connection for the next), records every request, and for the first
/// response to a `GET /v2/.../blobs/sha256:...` with a body over the threshold (1 MiB by
/// default), forwards half the body and closes the connection. [`CutProxy::throttled`] cuts
/// nothing and slows every blob download down instead.
pub struct CutProxy {
    state: Arc<ProxyState>,
    server: Server,
}

impl CutProxy {
    pub fn new(upstream_host: &str) -> CutProxy {
        CutProxy::with_threshold(upstream_host, 1024 * 1024)
    }

    /// Cuts the first blob download whose Content-Length is over `threshold` bytes.
    pub fn with_threshold(upstream_host: &str, threshold: u64) -> CutProxy {
        CutProxy::misbehaving(upstream_host, threshold, Misbehaviour::Cut)
    }

    /// The first blob download over 1 MiB stops half-way and stays silent, its connection
    /// open (until the client closes it, or a minute); later ones send no byte of the body.
    pub fn stalling(upstream_host: &str) -> CutProxy {
        CutProxy::misbehaving(upstream_host, 1024 * 1024, Misbehaviour::Stall)
    }

    /// Every blob download over 1 MiB gets an endless body (no length, never closed) instead
    /// of the blob.
    pub fn endless(upstream_host: &str) -> CutProxy {
        CutProxy::misbehaving(upstream_host, 1024 * 1024, Misbehaviour::Endless)
    }

    fn misbehaving(upstream_host: &str, threshold: u64, misbehaviour: Misbehaviour) -> CutProxy {
        let state = Arc::new(ProxyState {
            upstream: upstream_host.to_string(),
            threshold,
            misbehaviour,
            rate: AtomicU64::new(0),
            cut_done: AtomicBool::new(false),
            cut: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
        });
        let server = {
            let state = state.clone();
            Server::start(move |conn| {
                let _ = proxy_conn(conn, &state);
            })
        };
        CutProxy { state, server }
    }

    /// Cuts nothing; sends each blob download's body at `bytes_per_sec` (each connection on
    /// its own), so that a pull is still under way seconds later.
    pub fn throttled(upstream_host: &str, bytes_per_sec: u64) -> CutProxy {
        let proxy = CutProxy::with_threshold(upstream_host, u64::MAX);
        proxy.set_rate(bytes_per_sec);
        proxy
    }

    /// Changes the blob download rate (0: full speed), downloads under way included.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.state.rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// `127.0.0.1:PORT`: use it as the registry host.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    /// Every request forwarded so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The download it cut, once it has.
    pub fn cut(&self) -> Option<Cut> {
        self.state.cut.lock().unwrap().clone()
    }

    /// Blob GETs that carried a `Range` header.
    pub fn range_requests(&self) -> Vec<SeenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_blob_get() && r.header("range").is_some())
            .collect()
    }
}

fn proxy_conn(client: TcpStream, state: &ProxyState) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut from_client = BufReader::new(client.try_clone()?);
    // A TLS handshake (berth tries HTTPS first, even on loopback): refuse it at once, as a
    // plain HTTP server does, rather than wait for a line end that may never come (the client
    // would wait for its connect timeout before falling back to HTTP).
    if from_client.fill_buf()?.first() == Some(&0x16) {
        let mut w = client.try_clone()?;
        let _ = write_response(&mut w, "400 Bad Request", &[], b"plain HTTP only\n");
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let Some(raw) = read_head(&mut from_client)? else {
        return Ok(());
    };
    let head = Head::parse(&raw);
    let mut parts = head.first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(SeenRequest {
            method: method.clone(),
            target: target.clone(),
            headers: head.headers.clone(),
            status: 0,
        });
        seen.len() - 1
    };
    let upstream = TcpStream::connect(&state.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = format!("{}\r\n", head.first);
    for (k, v) in &head.headers {
        if ["connection", "keep-alive", "proxy-connection"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut to_upstream = upstream.try_clone()?;
    to_upstream.write_all(out.as_bytes())?;
    // The request body (if any), and whatever else the client sends, goes up as it comes.
    let pump = std::thread::spawn(move || {
        let _ = io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let mut from_upstream = BufReader::new(upstream.try_clone()?);
    let mut to_client = client.try_clone()?;
    let result = (|| -> io::Result<()> {
        // Interim responses (100 Continue) pass through as they are.
        let (raw, rhead) = loop {
            let raw = read_head(&mut from_upstream)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
            let rhead = Head::parse(&raw);
            if (100..200).contains(&rhead.status()) {
                to_client.write_all(&raw)?;
                continue;
            }
            break (raw, rhead);
        };
        let status = rhead.status();
        state.seen.lock().unwrap()[index].status = status;
        let len = rhead.content_length().unwrap_or(0);
        let blob_get =
            method == "GET" && target.starts_with("/v2/") && target.contains("/blobs/sha256:");
        let big_blob = blob_get && (status == 200 || status == 206) && len > state.threshold;
        // The first big download is cut half-way (Cut, Stall); only Cut lets later ones be.
        let first = big_blob && !state.cut_done.swap(true, Ordering::SeqCst);
        let misbehave = big_blob && (state.misbehaviour != Misbehaviour::Cut || first);
        if misbehave && state.misbehaviour == Misbehaviour::Endless {
            // No length: the body ends when the connection does, which it never does.
            to_client.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                  Connection: close\r\n\r\n",
            )?;
            let block = vec![0x5a; 64 << 10];
            loop {
                to_client.write_all(&block)?;
            }
        }
        to_client.write_all(&raw)?;
        if misbehave {
            // A stall after the first sends nothing at all: no progress, so the client's
            // attempts run out.
            let half = if first { len / 2 } else { 0 };
            let forwarded = io::copy(&mut from_upstream.by_ref().take(half), &mut to_client)?;
            to_client.flush()?;
            if first {
                *state.cut.lock().unwrap() = Some(Cut {
                    target: target.clone(),
                    content_length: len,
                    forwarded,
                });
            }
            if state.misbehaviour == Misbehaviour::Stall {
                // Silent, not closed, until the client gives up: the pump of its side ends
                // when it closes the connection (or after the read timeout, a minute).
                while !pump.is_finished() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        } else if blob_get {
            copy_throttled(&mut from_upstream, &mut to_client, &state.rate)?;
        } else {
            io::copy(&mut from_upstream, &mut to_client)?;
        }
        to_client.flush()
    })();
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = pump.join();
    result
}

/// Copies `from` to `to` at `rate` bytes per second (read again for every chunk; 0: at full
/// speed).
fn copy_throttled(from: &mut impl Read, to: &mut impl Write, rate: &AtomicU64) -> io::Result<()> {
    const CHUNK: usize = 64 << 10;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let per_sec = rate.load(Ordering::SeqCst);
        let want = if per_sec == 0 {
            CHUNK
        } else {
            CHUNK.min((per_sec / 10).max(1) as usize)
        };
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        if per_sec > 0 {
            to.flush()?;
            std::thread::sleep(Duration::from_secs_f64(n as f64 / per_sec as f64));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Images without a registry

/// A layer tar of `entries`: a path ending in `/` is a directory (0755), others regular files
/// (0644, or 0755 under bin/); `.wh.NAME` entries are whiteouts.
pub fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        if path.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if path.starts_with("bin/") {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
        }
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// `len` bytes that no compressor shrinks (xorshift64*, from `seed`).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The other of amd64/arm64.
pub fn other_arch() -> &'static str {
    if berth_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// An OCI image (gzip layers, OCI manifest and config) held in memory.
#[derive(Clone)]
pub struct TestImage {
    pub arch: String,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// The compressed layer blobs, bottom first.
    pub layers: Vec<Vec<u8>>,
}

/// A layer for [`TestImage::from_layers`].
pub struct ImageLayer {
    /// The blob as stored in the registry.
    pub blob: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's diff ID).
    pub diff_id: String,
    pub media_type: String,
}

impl ImageLayer {
    /// A gzip layer with deflate's stored blocks: its length depends only on the tar's length,
    /// so two tars of the same length give blobs of the same length (a corruption that is still
    /// valid gzip and a valid tar, caught only by the digest).
    pub fn stored_gzip(tar: &[u8]) -> ImageLayer {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        e.write_all(tar).unwrap();
        ImageLayer {
            blob: e.finish().unwrap(),
            diff_id: format!("sha256:{}", sha256_hex(tar)),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

impl TestImage {
    /// An image of `layer_tars` (gzipped here), for linux/`arch`, with CMD ["sh"].
    pub fn new(arch: &str, layer_tars: &[Vec<u8>]) -> TestImage {
        let layers: Vec<ImageLayer> = layer_tars
            .iter()
            .map(|t| ImageLayer {
                blob: gzip(t),
                diff_id: format!("sha256:{}", sha256_hex(t)),
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            })
            .collect();
        TestImage::from_layers(arch, layers)
    }

    /// An image of layers given as blobs (any compression, any diff ID).
    pub fn from_layers(arch: &str, layers: Vec<ImageLayer>) -> TestImage {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created": "2023-11-14T22:13:20Z", "created_by": format!("test layer {i}")}))
            .collect();
        let config = serde_json::to_vec(&json!({
            "created": "2023-11-14T22:13:20Z",
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }))
        .unwrap();
        let layer_descs: Vec<Value> = layers
            .iter()
            .map(|l| {
                json!({
                    "mediaType": l.media_type,
                    "digest": format!("sha256:{}", sha256_hex(&l.blob)),
                    "size": l.blob.len(),
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{}", sha256_hex(&config)),
                "size": config.len(),
            },
            "layers": layer_descs,
        }))
        .unwrap();
        TestImage {
            arch: arch.to_string(),
            config,
            manifest,
            layers: layers.into_iter().map(|l| l.blob).collect(),
        }
    }

    /// The image ID (`sha256:` of the config), what `berth image inspect` calls Id.
    pub fn id(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.config))
    }

    /// The manifest's digest.
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest))
    }

    pub fn layer_digests(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| format!("sha256:{}", sha256_hex(l)))
            .collect()
    }

    /// The manifest's descriptor, with its platform.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": self.digest(),
            "size": self.manifest.len(),
            "platform": {"architecture": self.arch, "os": "linux"},
        })
    }

    fn blobs(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![
            (
                format!("blobs/sha256/{}", sha256_hex(&self.manifest)),
                self.manifest.clone(),
            ),
            (
                format!("blobs/sha256/{}", sha256_hex(&self.config)),
                self.config.clone(),
            ),
        ];
        for l in &self.layers {
            out.push((format!("blobs/sha256/{}", sha256_hex(l)), l.clone()));
        }
        out
    }

    /// The files of an OCI layout holding this image tagged `tag`.
    pub fn layout_files(&self, tag: &str) -> Vec<(String, Vec<u8>)> {
        let mut desc = self.descriptor();
        desc["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        layout_files(desc, self.blobs())
    }

    /// Writes an OCI layout directory holding this image tagged `tag`:
    /// `skopeo copy oci:DIR:TAG docker://...` pushes it.
    pub fn write_layout(&self, dir: &Path, tag: &str) {
        write_files(dir, &self.layout_files(tag));
    }

    /// An OCI layout tar of this image (for `berth load`).
    pub fn layout_tar(&self, tag: &str) -> Vec<u8> {
        super::tar_of(&self.layout_files(tag))
    }
}

fn layout_files(tagged: Value, blobs: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [tagged],
    }))
    .unwrap();
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
    ];
    files.extend(blobs);
    files
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// The image index of `images` (one manifest per platform).
pub fn image_index(images: &[&TestImage]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|i| i.descriptor()).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// Writes an OCI layout whose `tag` is an image index of `images`; returns the index's digest.
/// `skopeo copy --all oci:DIR:TAG docker://...` pushes all of it.
pub fn write_index_layout(dir: &Path, tag: &str, images: &[&TestImage]) -> String {
    let index = image_index(images);
    let digest = format!("sha256:{}", sha256_hex(&index));
    let tagged = json!({
        "mediaType": OCI_INDEX,
        "digest": digest,
        "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    });
    let mut blobs = vec![(format!("blobs/sha256/{}", sha256_hex(&index)), index)];
    for i in images {
        blobs.extend(i.blobs());
    }
    write_files(dir, &layout_files(tagged, blobs));
    digest
}

/// Busybox (from scripts/make-busybox-image.sh) as one layer.
pub fn busybox_layer() -> Vec<u8> {
    std::fs::read(busybox_tar()).expect("read the busybox tarball")
}

/// A runnable three-layer image for the host's architecture: busybox; `/layer2/{marker,gone}`;
/// `/layer3/marker` and a whiteout of `/layer2/gone`.
pub fn multi_layer_image() -> TestImage {
    TestImage::new(
        berth_arch(),
        &[
            busybox_layer(),
            layer_tar(&[
                ("layer2/", b""),
                ("layer2/marker", b"two\n"),
                ("layer2/gone", b"deleted above\n"),
            ]),
            layer_tar(&[
                ("layer3/", b""),
                ("layer3/marker", b"three\n"),
                ("layer2/", b""),
                ("layer2/.wh.gone", b""),
            ]),
        ],
    )
}

/// The two images of [`write_index_layout`]'s usual index: for the host's architecture,
/// busybox plus `/etc/platform` saying the architecture (runnable); for [`other_arch`], only
/// `/etc/platform`.
pub fn two_platform_images() -> (TestImage, TestImage) {
    let host = TestImage::new(
        berth_arch(),
        &[
            busybox_layer(),
            layer_tar(&[
                ("etc/", b""),
                ("etc/platform", format!("{}\n", berth_arch()).as_bytes()),
            ]),
        ],
    );
    let other = TestImage::new(
        other_arch(),
        &[layer_tar(&[
            ("etc/", b""),
            ("etc/platform", format!("{}\n", other_arch()).as_bytes()),
        ])],
    );
    (host, other)
}

/// `skopeo copy [--all] oci:LAYOUT:TAG docker://DEST` over plain HTTP, with `creds`
/// (`user:pass`) if given.
pub fn skopeo_push_layout(layout: &Path, tag: &str, dest: &str, all: bool, creds: Option<&str>) {
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{dest}");
    let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    if let Some(c) = creds {
        args.extend(["--dest-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    run_tool("skopeo", &args);
}

/// `skopeo inspect --raw docker://REF` over plain HTTP: the manifest or index, byte for byte.
pub fn skopeo_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let r = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&r);
    run_tool("skopeo", &args).into_bytes()
}
