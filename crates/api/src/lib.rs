//! `berth serve`: Docker's Engine API (versions [`MIN_VERSION`] to [`MAX_VERSION`]) on a Unix
//! socket, and on TCP when asked, so that the docker CLI, docker-py and compose drive berth
//! unchanged. Every request is served by the engine library (`berth-engine`), the same code
//! the berth CLI runs: there is no second implementation of any feature here, only Docker's
//! wire forms.
//!
//! berth has no daemon: this server is one more berth process on the state root, beside any
//! number of CLI commands. Containers it starts run under monitors of their own
//! (`berth_engine::monitor::spawn`), so they outlive the server, as they outlive `run -d`.

#![warn(missing_docs)]
// `/info` is one large `json!` document.
#![recursion_limit = "256"]

mod archive;
mod build;
mod containers;
mod contents;
mod error;
mod events;
mod exec;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod images;
mod networks;
mod procs;
mod streams;
mod system;
mod volumes;

use std::{
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};

pub use error::ApiError;

/// The oldest API version served.
pub const MIN_VERSION: (u32, u32) = (1, 41);
/// The newest API version served (docker 28's).
pub const MAX_VERSION: (u32, u32) = (1, 50);
/// Where the socket is unless `--host` says otherwise.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// `berth serve`'s options.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The state root.
    pub root: PathBuf,
    /// `unix:///path` or `tcp://host:port`, one listener each.
    pub hosts: Vec<String>,
    /// The group that may use the Unix socket (root only when unset).
    pub group: Option<String>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `--host` that is neither `unix://` nor `tcp://`.
    #[error("invalid --host {0:?}: expected unix:///path or tcp://host:port")]
    Host(String),
    /// Listening failed.
    #[error("listening on {host}: {source}")]
    Listen {
        /// The host.
        host: String,
        /// The cause.
        source: io::Error,
    },
    /// Another server answers on the socket.
    #[error("{0} is in use by another server: stop it first")]
    InUse(String),
    /// `--group` names no group.
    #[error("group {0:?} not found")]
    NoSuchGroup(String),
    /// The async runtime.
    #[error("starting the server: {0}")]
    Runtime(io::Error),
}

enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

/// Serves the Engine API until SIGINT or SIGTERM. `ready` is called with the hosts once
/// every listener is bound.
pub fn serve(options: ServeOptions, ready: impl FnOnce(&[String])) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-api")
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let hosts = if options.hosts.is_empty() {
            vec![DEFAULT_HOST.to_string()]
        } else {
            options.hosts.clone()
        };
        let gid = options.group.as_deref().map(group_id).transpose()?;
        let mut listeners = Vec::new();
        for host in &hosts {
            listeners.push(listen(host, gid).await?);
        }
        ready(&hosts);
        let api = Arc::new(http::Api::new(options.root.clone()));
        let mut tasks = Vec::new();
        for listener in listeners {
            tasks.push(tokio::spawn(accept_loop(listener, api.clone())));
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match terminate.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        for task in tasks {
            task.abort();
            if let Err(e) = task.await
                && !e.is_cancelled()
            {
                tracing::warn!("listener: {e}");
            }
        }
        Ok(())
    })
}

async fn listen(host: &str, gid: Option<u32>) -> Result<Listener, ServeError> {
    let listen_err = |source| ServeError::Listen {
        host: host.to_string(),
        source,
    };
    if let Some(path) = host.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() {
            return Err(ServeError::Host(host.into()));
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(listen_err)?;
        }
        remove_stale_socket(&path, host).await?;
        let listener = UnixListener::bind(&path).map_err(listen_err)?;
        // Root only (and the group, when one is given): the socket is root on this host.
        std::os::unix::fs::chown(&path, None, gid).map_err(listen_err)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).map_err(listen_err)?;
        return Ok(Listener::Unix(listener, path));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        tracing::warn!(
            "serving the Engine API on tcp://{addr} without TLS or authentication: whoever reaches it is root on this host"
        );
        return Ok(Listener::Tcp(listener));
    }
    Err(ServeError::Host(host.into()))
}

/// A socket file left by a server that died is removed; one that answers is refused.
async fn remove_stale_socket(path: &Path, host: &str) -> Result<(), ServeError> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServeError::InUse(host.into()));
    }
    fs::remove_file(path).map_err(|source| ServeError::Listen {
        host: host.into(),
        source,
    })
}

fn group_id(name: &str) -> Result<u32, ServeError> {
    if let Ok(gid) = name.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(ServeError::NoSuchGroup(name.into())),
    }
}

async fn accept_loop(listener: Listener, api: Arc<http::Api>) {
    let _socket = match &listener {
        Listener::Unix(_, path) => Some(SocketFile(path.clone())),
        Listener::Tcp(_) => None,
    };
    loop {
        let accepted = match &listener {
            Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Conn::Tcp(s)
            }),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let api = api.clone();
        tokio::spawn(async move {
            match conn {
                Conn::Unix(s) => serve_connection(TokioIo::new(s), api).await,
                Conn::Tcp(s) => serve_connection(TokioIo::new(s), api).await,
            }
        });
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn serve_connection<I>(io: I, api: Arc<http::Api>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(http::handle(api, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

/// Removes the Unix socket when its listener ends.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
