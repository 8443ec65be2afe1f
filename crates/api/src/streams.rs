//! Streams that outlive a request: attach clients parked until their container starts, the
//! relay between a hijacked connection and a monitor's attach socket, and the ends of
//! containers that `wait` reports.
//!
//! A monitor sends every attached client a last frame with the container's exit code. A
//! container this server starts always has one client of the server's (the first parked
//! attach, or an observer that asks for no output), so its code is known even when `--rm`
//! removes the record at once; a container started elsewhere gets an observer when a `wait`
//! finds it running.

use std::{
    collections::{HashMap, HashSet},
    os::unix::net::UnixStream,
    path::Path,
    sync::{Arc, Mutex},
};

use berth_engine::monitor::{self, AttachRequest, ExitFrame, FRAME_EXIT};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::{Notify, oneshot},
};

/// Exit codes kept for containers (enough for every `wait` in flight).
const EXITS_KEPT: usize = 4096;

/// The server's shared stream state.
#[derive(Default)]
pub struct Streams {
    parked: Mutex<HashMap<String, Vec<Parked>>>,
    exits: Mutex<Exits>,
    observing: Mutex<HashSet<String>>,
    /// Woken on every exit recorded.
    pub exited: Notify,
}

#[derive(Default)]
struct Exits {
    /// Container ID -> (exits seen, the last code).
    by_id: HashMap<String, (u64, i32)>,
    order: std::collections::VecDeque<String>,
}

/// An attach client waiting for its container's start.
pub struct Parked {
    /// What it asked for.
    pub request: AttachRequest,
    /// Where its connection to the monitor goes.
    pub deliver: oneshot::Sender<UnixStream>,
}

impl Streams {
    /// Parks an attach client of `id`; the receiver gets its monitor connection.
    pub fn park(&self, id: &str, request: AttachRequest) -> oneshot::Receiver<UnixStream> {
        let (deliver, receive) = oneshot::channel();
        let mut parked = self.parked.lock().expect("lock");
        // Clients that went away before any start are dropped here (a container that is
        // never started would keep them otherwise).
        parked.retain(|_, clients| {
            clients.retain(|p| !p.deliver.is_closed());
            !clients.is_empty()
        });
        parked
            .entry(id.to_string())
            .or_default()
            .push(Parked { request, deliver });
        receive
    }

    /// The clients parked for `id` that are still there, oldest first.
    pub fn take_parked(&self, id: &str) -> Vec<Parked> {
        let parked = self.parked.lock().expect("lock").remove(id);
        parked
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.deliver.is_closed())
            .collect()
    }

    /// How many ends of `id` this server has seen, and the last code.
    pub fn exits(&self, id: &str) -> (u64, Option<i32>) {
        let exits = self.exits.lock().expect("lock");
        match exits.by_id.get(id) {
            Some((n, code)) => (*n, Some(*code)),
            None => (0, None),
        }
    }

    /// The code of an end of `id` after the `baseline`th, waiting up to `within` for it to
    /// be heard (other containers' ends wake the wait too, and are not it).
    pub async fn exit_after(
        &self,
        id: &str,
        baseline: u64,
        within: std::time::Duration,
    ) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let woken = self.exited.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let (seen, Some(code)) = self.exits(id)
                && seen > baseline
            {
                return Some(code);
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return None;
            }
        }
    }

    /// Records an end of `id`.
    pub fn record_exit(&self, id: &str, code: i32) {
        let mut exits = self.exits.lock().expect("lock");
        let entry = exits.by_id.entry(id.to_string()).or_insert((0, 0));
        entry.0 += 1;
        entry.1 = code;
        if entry.0 == 1 {
            exits.order.push_back(id.to_string());
            while exits.order.len() > EXITS_KEPT {
                if let Some(old) = exits.order.pop_front() {
                    exits.by_id.remove(&old);
                }
            }
        }
        drop(exits);
        self.exited.notify_waiters();
    }

    /// Watches a running container's end through its attach socket, unless an observer of
    /// this server already does; whether its end will be heard.
    pub fn observe_running(self: &Arc<Self>, container_dir: &Path, id: &str) -> bool {
        if self.observing.lock().expect("lock").contains(id) {
            return true;
        }
        let Ok(stream) = monitor::attach(container_dir, &AttachRequest::default()) else {
            return false;
        };
        self.observe(stream, id);
        true
    }

    /// Reads a monitor connection that carries no output to its last frame.
    pub fn observe(self: &Arc<Self>, stream: UnixStream, id: &str) {
        if !self.observing.lock().expect("lock").insert(id.to_string()) {
            return;
        }
        let streams = self.clone();
        let id = id.to_string();
        std::thread::spawn(move || {
            let mut stream = stream;
            while let Ok(Some((kind, payload))) = monitor::read_frame(&mut stream) {
                if kind == FRAME_EXIT {
                    if let Ok(frame) = serde_json::from_slice::<ExitFrame>(&payload) {
                        streams.record_exit(&id, frame.exit_code);
                    }
                    break;
                }
            }
            streams.observing.lock().expect("lock").remove(&id);
        });
    }
}

/// Relays between a hijacked client and its monitor connection until the container's output
/// ends: the monitor's frames go to the client as Docker's multiplexed stream (headers
/// kept: the formats are the same) or, with a TTY, as raw bytes; the client's bytes go to the
/// container's stdin when it asked for stdin. The exit frame goes to `on_exit`, not to the
/// client. (An exec's stream is the same: its hub speaks the monitor's frames.)
pub async fn relay(
    client: Upgraded,
    monitor: UnixStream,
    tty: bool,
    stdin: bool,
    on_exit: impl FnOnce(i32),
) {
    let monitor = match monitor
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(monitor))
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("attach: {e}");
            return;
        }
    };
    let (mut from_monitor, mut to_monitor) = monitor.into_split();
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(client));
    let input = tokio::spawn(async move {
        if stdin {
            let _ = tokio::io::copy(&mut from_client, &mut to_monitor).await;
            // The client closed its side: so does the monitor's reader.
            let _ = to_monitor.shutdown().await;
        } else {
            // Nothing to forward; hold the monitor's write side open until the end.
            std::future::pending::<()>().await;
        }
        drop(to_monitor);
    });
    let mut header = [0u8; 8];
    loop {
        if from_monitor.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes(header[4..].try_into().expect("4 bytes")) as usize;
        let mut payload = vec![0u8; len];
        if from_monitor.read_exact(&mut payload).await.is_err() {
            break;
        }
        if header[0] == FRAME_EXIT {
            if let Ok(frame) = serde_json::from_slice::<ExitFrame>(&payload) {
                on_exit(frame.exit_code);
            }
            break;
        }
        let written = if tty {
            to_client.write_all(&payload).await
        } else {
            match to_client.write_all(&header).await {
                Ok(()) => to_client.write_all(&payload).await,
                Err(e) => Err(e),
            }
        };
        if written.is_err() || to_client.flush().await.is_err() {
            break;
        }
    }
    let _ = to_client.shutdown().await;
    input.abort();
}
