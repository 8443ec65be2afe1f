//! `berth registry serve`: an OCI distribution-spec 1.1 registry on tokio, axum and hyper
//! (HTTP/1.1, and HTTP/2 over TLS by ALPN), with its own file storage ([`storage`]).

mod error;
mod htpasswd;
mod http;
pub mod storage;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustix::fs::FlockOperation;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

pub use error::{ApiError, Code};
pub use htpasswd::{Htpasswd, HtpasswdError};
pub use storage::{GcOptions, GcReport, Storage};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after SIGINT or SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head (idle keep-alive connections too).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the kernel's accept queue. Keeps a flood of
/// idle connections from exhausting file descriptors (the limit here is often 20000).
const MAX_CONNECTIONS: usize = 4096;
/// The most an HTTP/1 connection buffers in each direction. Pushes of 50 MB blobs by 16
/// clients ran 5% slower with 32 KiB than with 128 KiB, at half the server's memory.
const HTTP1_BUFFER: usize = 32 << 10;
/// Uploads idle this long are abandoned: removed by the running server, checked hourly.
const UPLOAD_MAX_IDLE: Duration = Duration::from_secs(24 * 3600);
const UPLOAD_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// `berth registry serve`'s options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    pub root: PathBuf,
    pub htpasswd: Option<PathBuf>,
    pub anonymous_pull: bool,
    /// Certificate chain and private key, PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub read_only: bool,
    pub delete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("registry root {path}: {source}")]
    Root {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Htpasswd(#[from] HtpasswdError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Runtime(std::io::Error),
}

/// Takes the root's lock: shared for a writable server, exclusive for `gc`, never waiting.
fn lock_root(storage: &Storage, exclusive: bool) -> Result<Option<File>, std::io::Error> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(storage.lock_path())?;
    let op = if exclusive {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::NonBlockingLockShared
    };
    match rustix::fs::flock(&file, op) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_storage(root: &Path, create: bool) -> Result<Storage, ServerError> {
    let opened = if create {
        Storage::open(root)
    } else {
        Storage::open_existing(root)
    };
    opened.map_err(|source| ServerError::Root {
        path: root.display().to_string(),
        source,
    })
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ServerError::Tls(format!("reading certificates from {}: {e}", cert.display()))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        ServerError::Tls(format!(
            "reading the private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves until SIGINT or SIGTERM. `ready` is called once the socket listens, with its
/// address (the port chosen when `addr` asked for port 0) and whether it speaks TLS.
pub fn serve(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServerError> {
    let storage = open_storage(&options.root, true)?;
    // A writable server and `gc` must not run on one root at once (gc would take a blob a
    // push has just been told exists); read-only servers may.
    let _lock = if options.read_only {
        None
    } else {
        let lock = lock_root(&storage, false).map_err(|source| ServerError::Root {
            path: options.root.display().to_string(),
            source,
        })?;
        Some(lock.ok_or_else(|| {
            ServerError::Locked(format!(
                "a garbage collection is running on {}; serve it when it is done",
                options.root.display()
            ))
        })?)
    };
    let htpasswd = options
        .htpasswd
        .as_deref()
        .map(Htpasswd::load)
        .transpose()?;
    let tls = options
        .tls
        .as_ref()
        .map(|(cert, key)| tls_acceptor(cert, key))
        .transpose()?;
    let registry = Arc::new(http::Registry::new(
        storage,
        http::Policy {
            htpasswd,
            anonymous_pull: options.anonymous_pull,
            read_only: options.read_only,
            delete: options.delete,
        },
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Each blob read or upload write is a short job: 16 threads keep up with the disk
        // and the network, and fewer threads means fewer malloc arenas kept resident.
        .max_blocking_threads(16)
        .thread_name("registry")
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(async move {
        let listener =
            TcpListener::bind(options.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: options.addr,
                    source,
                })?;
        let local = listener.local_addr().map_err(ServerError::Runtime)?;
        if !local.ip().is_loopback() {
            if options.htpasswd.is_none() {
                tracing::warn!(
                    "serving {local} without --htpasswd: anyone who reaches it can push and pull"
                );
            } else if tls.is_none() {
                tracing::warn!(
                    "serving {local} with passwords over plain HTTP: use --tls-cert and --tls-key"
                );
            }
        }
        ready(local, tls.is_some());
        if !options.read_only {
            tokio::spawn(sweep_idle_uploads(registry.clone()));
        }
        accept_loop(listener, tls, http::router(registry)).await;
        Ok(())
    })
}

/// Removes abandoned uploads while serving (gc cannot run beside a writable server).
async fn sweep_idle_uploads(registry: Arc<http::Registry>) {
    let mut every = tokio::time::interval_at(
        tokio::time::Instant::now() + UPLOAD_SWEEP_EVERY,
        UPLOAD_SWEEP_EVERY,
    );
    loop {
        every.tick().await;
        let storage = registry.storage();
        match tokio::task::spawn_blocking(move || storage.remove_idle_uploads(UPLOAD_MAX_IDLE))
            .await
        {
            Ok(Ok(ids)) => registry.forget_uploads(&ids),
            Ok(Err(e)) => tracing::warn!("removing idle uploads: {e}"),
            Err(_) => {}
        }
    }
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        // hyper's read buffer grows to ~400 KiB per connection by default: under many
        // concurrent pushes that is most of the server's memory, for no gain in speed.
        .max_buf_size(HTTP1_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        // Layer pushes share one connection in containerd and Go clients: let the windows
        // grow with the bandwidth-delay product instead of hyper's fixed 1 MiB.
        .adaptive_window(true)
        .keep_alive_interval(Some(Duration::from_secs(60)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, app: axum::Router) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut interrupt => break,
            _ = async {
                match terminate.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => break,
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let builder = connection_builder();
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    else {
                        return;
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

/// `berth registry gc`: refused while a writable server holds the root.
pub fn gc(root: &Path, options: &GcOptions) -> Result<GcReport, ServerError> {
    let storage = open_storage(root, false)?;
    let root_error = |source| ServerError::Root {
        path: root.display().to_string(),
        source,
    };
    let _lock = lock_root(&storage, true)
        .map_err(root_error)?
        .ok_or_else(|| {
            ServerError::Locked(format!(
                "{} is in use by a writable `berth registry serve`; stop it, or restart it with --read-only, then run gc",
                root.display()
            ))
        })?;
    storage.gc(options).map_err(root_error)
}

/// `berth registry check`: the storage's problems, none when it is consistent.
pub fn check(root: &Path) -> Result<Vec<String>, ServerError> {
    let storage = open_storage(root, false)?;
    storage.check().map_err(|source| ServerError::Root {
        path: root.display().to_string(),
        source,
    })
}

/// Runs every parser the server applies to request data (routes, `Range`, `Content-Range`,
/// manifests with their Content-Type, htpasswd files) on arbitrary input: the fuzz target's
/// entry. Panics only on a bug.
#[doc(hidden)]
pub fn fuzz_parsers(data: &[u8]) {
    let _ = storage::parse_manifest_for_fuzzing(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    http::fuzz_parsers(text);
    let _ = Htpasswd::parse(text);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::fuzz_parsers;

    // The fuzz target's checks (fuzz/fuzz_targets/registry_server.rs) on every test run:
    // arbitrary bytes, and inputs shaped like what the parsers expect.
    proptest! {
        #[test]
        fn parsers_survive_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzz_parsers(&data);
        }

        #[test]
        fn parsers_survive_request_shaped_text(
            text in "(/v2/[a-z0-9._/-]{0,40}/(manifests|blobs|tags|referrers)/[a-zA-Z0-9:._-]{0,80})\
                     |(bytes[ =][0-9]{0,21}-[0-9]{0,21}(/[0-9*]{0,21})?)\
                     |([a-z]{1,8}:\\$2[aby]\\$[0-9]{2}\\$[./A-Za-z0-9]{0,60})\
                     |(\\{\"schemaVersion\":2,\"mediaType\":\"[a-z./+-]{0,60}\"\\})"
        ) {
            fuzz_parsers(text.as_bytes());
        }
    }
}
