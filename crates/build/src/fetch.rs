//! `ADD` from a URL: the file is downloaded on the host, by berth itself (no container),
//! on every build, as BuildKit without a cache does; its digest is then the step's cache key.
//! The rules are BuildKit's: `http://` and `https://` only (Git repositories are refused
//! here), the file named after the URL path's last segment (`__unnamed__` without one),
//! `--checksum=<algorithm>:<hex>` checked against the bytes, the `Last-Modified` header
//! (or the epoch) as mtime, and a response outside 2xx failing the step.
//!
//! The client is reqwest's blocking one: rustls with the platform's roots (the host's CA
//! bundle), proxies from `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, redirects
//! followed, no transparent decompression (the bytes are the server's).

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response may stall (headers, or any one read of the body) before the
/// download fails.
const STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a download failed; each names the URL.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// The request could not be made or its body not read: the cause chain, on one line.
    #[error("{url}: {cause}")]
    Request {
        /// The URL.
        url: String,
        /// The network error and its causes.
        cause: String,
    },
    /// The server answered outside 2xx.
    #[error("{url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// Code and reason (`404 Not Found`).
        status: String,
    },
    /// The bytes are not the ones `--checksum` names.
    #[error("digest mismatch for {url}: {got} (expected: {expected})")]
    Mismatch {
        /// The URL.
        url: String,
        /// The downloaded bytes' digest.
        got: String,
        /// `--checksum`.
        expected: String,
    },
    /// Writing the downloaded bytes failed.
    #[error("{url}: store the download: {source}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        source: io::Error,
    },
}

/// `--checksum`'s value is not `<algorithm>:<hex>`.
#[derive(Debug, thiserror::Error)]
#[error("invalid checksum {0:?}: expected sha256:, sha384: or sha512: and the digest's hex digits")]
pub(crate) struct BadChecksum(String);

/// A digest algorithm `--checksum` may name (those of OCI digests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Sha256,
    Sha384,
    Sha512,
}

/// `--checksum=<algorithm>:<hex>`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checksum {
    algorithm: Algorithm,
    hex: String,
}

impl Checksum {
    pub(crate) fn parse(value: &str) -> Result<Checksum, BadChecksum> {
        let bad = || BadChecksum(value.to_string());
        let (name, hex) = value.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match name {
            "sha256" => (Algorithm::Sha256, 64),
            "sha384" => (Algorithm::Sha384, 96),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad()),
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != len || !lower_hex {
            return Err(bad());
        }
        Ok(Checksum {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{name}:{}", self.hex)
    }
}

/// Hashes with a checksum's algorithm.
enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Checksum {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha384(h) => (Algorithm::Sha384, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Checksum { algorithm, hex }
    }
}

/// Whether `source` is a URL `ADD` downloads.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Whether `source` names a Git repository (BuildKit clones those; berth does not yet).
pub(crate) fn is_git(source: &str) -> bool {
    let without_fragment = source.split('#').next().unwrap_or(source);
    source.starts_with("git@")
        || source.starts_with("git://")
        || source.starts_with("ssh://")
        || (is_url(source) && without_fragment.trim_end_matches('/').ends_with(".git"))
}

/// The name a download gets in a destination directory: the last segment of the URL's
/// path, query and fragment left out, or `__unnamed__` (BuildKit's names).
pub(crate) fn file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    match path.rsplit('/').find(|s| !s.is_empty() && *s != ".") {
        Some(name) if name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// A finished download.
pub(crate) struct Download {
    /// The bytes, in the file given to [`download`].
    pub(crate) file: File,
    /// From `Last-Modified`, in seconds since the epoch.
    pub(crate) mtime: Option<u64>,
}

/// Downloads `url` into `into` (an empty file), checking `checksum` if given.
pub(crate) fn download(
    url: &str,
    mut into: File,
    checksum: Option<&Checksum>,
) -> Result<Download, FetchError> {
    let request_error = |e: reqwest::Error| FetchError::Request {
        url: url.to_string(),
        cause: causes(&e.without_url()),
    };
    let client = reqwest::blocking::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(STALL_TIMEOUT)
        .build()
        .map_err(request_error)?;
    let mut response = client.get(url).send().map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.to_string(),
        });
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date);
    let mut hasher = Hasher::new(checksum.map_or(Algorithm::Sha256, |c| c.algorithm));
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FetchError::Request {
                    url: url.to_string(),
                    cause: causes(&e),
                });
            }
        };
        hasher.update(&buf[..n]);
        into.write_all(&buf[..n]).map_err(|source| FetchError::Io {
            url: url.to_string(),
            source,
        })?;
    }
    let got = hasher.finish();
    if let Some(expected) = checksum
        && got != *expected
    {
        return Err(FetchError::Mismatch {
            url: url.to_string(),
            got: got.to_string(),
            expected: expected.to_string(),
        });
    }
    Ok(Download { file: into, mtime })
}

/// An error and its causes on one line (`error sending request: ...: Connection refused`).
fn causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors repeat their source's text in their own.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) in seconds since the epoch; `None` when
/// it does not parse or is before the epoch.
fn http_date(value: &str) -> Option<u64> {
    let parsed = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value.trim())
        .ok()?;
    u64::try_from(parsed.as_second()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Seek};
    use std::net::TcpListener;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("https://example.com/dl/tool.tar.gz"),
            "tool.tar.gz"
        );
        assert_eq!(file_name("https://example.com/dl/tool?v=1#x"), "tool");
        assert_eq!(file_name("https://example.com/dl/dir/"), "dir");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
        assert_eq!(file_name("https://example.com/"), "__unnamed__");
        assert_eq!(file_name("https://example.com/?q=a/b"), "__unnamed__");
    }

    #[test]
    fn git_sources_are_told_apart() {
        assert!(is_git("git@github.com:moby/buildkit.git"));
        assert!(is_git("https://github.com/moby/buildkit.git#v0.10.1"));
        assert!(is_git("https://github.com/moby/buildkit.git/"));
        assert!(is_git("git://example.com/repo"));
        assert!(!is_git("https://example.com/file.tar.gz"));
        assert!(!is_git("dir/app.git"), "a local path is not a URL");
        assert!(is_url("http://x/y") && is_url("https://x") && !is_url("ftp://x/y"));
    }

    #[test]
    fn checksums_parse_strictly() {
        let hex = "a".repeat(64);
        let c = Checksum::parse(&format!("sha256:{hex}")).unwrap();
        assert_eq!(c.to_string(), format!("sha256:{hex}"));
        assert!(Checksum::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            hex.clone(),
            format!("sha256:{}", &hex[1..]),
            format!("sha256:{}", "A".repeat(64)),
            format!("md5:{hex}"),
        ] {
            assert!(Checksum::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(http_date("yesterday"), None);
    }

    /// Serves `responses` (status line, extra headers, body), one per connection, on
    /// loopback; returns the base URL.
    fn serve(responses: Vec<(&'static str, &'static str, &'static str)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (status, headers, body) in responses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let mut stream = &stream;
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        base
    }

    #[test]
    fn downloads_check_status_and_checksum() {
        let base = serve(vec![
            (
                "200 OK",
                "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
                "hello\n",
            ),
            ("200 OK", "", "hello\n"),
            ("404 Not Found", "", "gone"),
        ]);
        let url = format!("{base}/files/hello.txt");
        let good = Checksum::parse(&format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"hello\n"))
        ))
        .unwrap();
        let mut got = download(&url, tempfile::tempfile().unwrap(), Some(&good)).unwrap();
        assert_eq!(got.mtime, Some(784111777));
        got.file.rewind().unwrap();
        assert_eq!(io::read_to_string(&got.file).unwrap(), "hello\n");

        let wrong = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let e = download(&url, tempfile::tempfile().unwrap(), Some(&wrong))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(&format!("digest mismatch for {url}: sha256:")),
            "{e}"
        );

        let e = download(&url, tempfile::tempfile().unwrap(), None)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(e, format!("{url}: the server answered 404 Not Found"));

        // Nothing listens on the port.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("http://{closed}/x");
        let e = download(&url, tempfile::tempfile().unwrap(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with(&format!("{url}: ")), "{e}");
        assert!(e.contains("onnect"), "{e}");
    }
}
