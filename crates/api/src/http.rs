//! Requests in, responses out: the `/vX.Y` prefix and version checks, routing by method and
//! path segments, Docker's headers, JSON and streamed bodies.

use std::{collections::HashMap, convert::Infallible, io, path::PathBuf, sync::Arc};

use berth_engine::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Frame, Incoming},
    header::{self, HeaderValue},
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    ApiError, MAX_VERSION, MIN_VERSION, archive, build, containers, contents, events, exec,
    exec::Execs, images, networks, procs, streams::Streams, system, volumes,
};

/// A response body: whole, or streamed.
pub type Body = BoxBody<Bytes, Infallible>;

/// What every request shares.
pub struct Api {
    /// The state root.
    pub root: PathBuf,
    /// Attach clients waiting for starts, and the ends of containers.
    pub streams: Arc<Streams>,
    /// Exec instances.
    pub execs: Execs,
}

impl Api {
    pub(crate) fn new(root: PathBuf) -> Api {
        Api {
            root,
            streams: Arc::default(),
            execs: Execs::default(),
        }
    }

    /// A streamed answer made on one blocking thread with one engine: `prepare` runs first,
    /// and its error is the answer (status and message, before any head goes out); its head
    /// value comes back with the body for the caller's response (a content type, a header),
    /// and `write` then feeds the body with the same engine. `write` sees the client go
    /// away as a closed sender.
    pub async fn stream<H: Send + 'static, T: Send + 'static>(
        &self,
        prepare: impl FnOnce(&mut Engine) -> Result<(H, T), ApiError> + Send + 'static,
        write: impl FnOnce(&mut Engine, T, mpsc::Sender<Bytes>) + Send + 'static,
    ) -> Result<(H, Body), ApiError> {
        let root = self.root.clone();
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (tx, body) = channel_body();
        tokio::task::spawn_blocking(move || {
            let prepared = Engine::open(&root)
                .map_err(ApiError::from)
                .and_then(|mut engine| prepare(&mut engine).map(|p| (engine, p)));
            match prepared {
                Ok((mut engine, (head, state))) => {
                    if head_tx.send(Ok(head)).is_ok() {
                        write(&mut engine, state, tx);
                    }
                }
                Err(e) => {
                    let _ = head_tx.send(Err(e));
                }
            }
        });
        let head = head_rx
            .await
            .map_err(|_| ApiError::internal("the streaming task ended early"))??;
        Ok((head, body))
    }

    /// Runs engine work on a blocking thread with an engine of its own (rusqlite connections
    /// are not shared between threads).
    pub async fn engine<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut engine = Engine::open(&root)?;
            f(&mut engine)
        })
        .await
        .map_err(|e| ApiError::internal(format!("engine task: {e}")))?
    }
}

/// The largest JSON request body read (a container's create document is a few KiB).
const MAX_DOCUMENT_BODY: usize = 16 << 20;

/// One request, parsed enough to route.
pub struct Call {
    /// Method, URI, headers and extensions (where a connection upgrade waits).
    pub parts: hyper::http::request::Parts,
    /// The body, until read.
    body: Option<Incoming>,
    /// The API version it asked for (the newest when it named none).
    pub version: (u32, u32),
    /// The path after the version, split at `/` (percent-decoded).
    pub segments: Vec<String>,
    /// The query, decoded; a key given twice keeps the last value.
    pub query: HashMap<String, String>,
}

impl Call {
    /// A query value.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// A boolean query value as dockerd's `BoolValue` reads it: absent, empty, `0`, `no`,
    /// `false` and `none` (any case) are false, anything else true.
    pub fn flag(&self, key: &str) -> bool {
        !matches!(
            self.param(key)
                .map(|v| v.trim().to_ascii_lowercase())
                .as_deref(),
            None | Some("" | "0" | "no" | "false" | "none")
        )
    }

    /// Reads the body as JSON; an empty body reads as `null`.
    pub async fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let bytes = self.body_bytes().await?;
        json_body(&bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// The `filters` query parameter (either of Docker's JSON forms), keys limited to
    /// `allowed`.
    pub fn filters(&self, allowed: &[&str]) -> Result<berth_store::Filters, ApiError> {
        berth_store::Filters::from_json(self.param("filters").unwrap_or(""), allowed)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// A pty size from `?h=&w=` (rows, columns), as `resize` takes it.
    pub fn console_size(&self) -> Result<(u16, u16), ApiError> {
        let size = |key: &str| -> Result<u16, ApiError> {
            self.param(key)
                .unwrap_or("")
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid {key}: must be a number")))
        };
        Ok((size("h")?, size("w")?))
    }

    /// Reads a JSON body of a Go client, whose unset pointers, slices and maps are `null`:
    /// nulls are dropped at every depth, so they read as the field's default.
    pub async fn lenient_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let value = lenient(self.json().await?);
        serde_json::from_value(value)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }

    /// Reads the whole body (empty the second time).
    pub async fn body_bytes(&mut self) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Ok(Bytes::new());
        };
        // Only JSON documents are read whole (tars stream through `body_reader`): a client
        // cannot make the server hold an unbounded body in memory.
        http_body_util::Limited::new(body, MAX_DOCUMENT_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body larger than {MAX_DOCUMENT_BODY} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("reading the request body: {e}"))
                }
            })
    }

    /// The body as a blocking reader (for a blocking thread), fed as it arrives. A body
    /// cut short reads as an error, not as its end.
    pub fn body_reader(&mut self) -> BodyReader {
        let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(16);
        let incoming = self.body.take();
        let feeder = tokio::spawn(async move {
            let Some(mut body) = incoming else {
                return;
            };
            while let Some(frame) = body.frame().await {
                let chunk = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue,
                    },
                    Err(e) => Err(e.to_string()),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        BodyReader {
            rx,
            chunk: Bytes::new(),
            feeder,
        }
    }

    /// The query values of a key that may repeat (`names=a&names=b`).
    pub fn params(&self, key: &str) -> Vec<String> {
        form_urlencoded::parse(self.parts.uri.query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The connection, once the answer (101) has gone out, when the client asked for an
    /// upgrade (attach, exec start).
    pub fn upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        let asked = self
            .parts
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
        if !asked {
            return None;
        }
        self.parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    }
}

/// Drops `null` members of objects, at every depth.
pub(crate) fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Serves one request.
pub async fn handle(api: Arc<Api>, req: Request<Incoming>) -> Response<Body> {
    let head_only = req.method() == Method::HEAD;
    let mut response = match parse(req) {
        Ok(call) => route(api, call).await.unwrap_or_else(error),
        Err(e) => error(e),
    };
    let headers = response.headers_mut();
    let version = format!("{}.{}", MAX_VERSION.0, MAX_VERSION.1);
    headers.insert(
        "Api-Version",
        HeaderValue::from_str(&version).expect("ascii"),
    );
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("berth/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    if head_only {
        *response.body_mut() = empty();
    }
    response
}

fn parse(req: Request<Incoming>) -> Result<Call, ApiError> {
    let (parts, body) = req.into_parts();
    Call::new(parts, Some(body))
}

impl Call {
    /// A request's call: its path's API version and segments, and its query, decoded.
    pub(crate) fn new(
        parts: hyper::http::request::Parts,
        body: Option<Incoming>,
    ) -> Result<Call, ApiError> {
        let (version, segments) = split_path(parts.uri.path())?;
        let query = query_pairs(&parts);
        Ok(Call {
            parts,
            body,
            version,
            segments,
            query,
        })
    }
}

/// A request path's `/vX.Y` prefix (the newest version without one; refused outside the
/// versions served) and its percent-decoded segments.
pub(crate) fn split_path(path: &str) -> Result<((u32, u32), Vec<String>), ApiError> {
    let mut rest = path.trim_start_matches('/');
    let mut version = MAX_VERSION;
    if let Some(after) = rest.strip_prefix('v')
        && let Some((v, tail)) = after.split_once('/').or(Some((after, "")))
        && let Some(parsed) = parse_version(v)
    {
        if parsed < MIN_VERSION {
            return Err(ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {}.{}, please upgrade your client to a newer version",
                MIN_VERSION.0, MIN_VERSION.1
            )));
        }
        if parsed > MAX_VERSION {
            return Err(ApiError::bad_request(format!(
                "client version {v} is too new. Maximum supported API version is {}.{}",
                MAX_VERSION.0, MAX_VERSION.1
            )));
        }
        version = parsed;
        rest = tail;
    }
    let segments = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    Ok((version, segments))
}

/// A JSON body: blank is `null` (clients send no body for "no options").
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"null"[..]
    } else {
        bytes
    };
    serde_json::from_slice(text)
}

/// What `lenient_json` reads a body as: nulls dropped at every depth, `null` itself an
/// empty object (docker-py sends `"Key": null` for options it leaves unset).
pub(crate) fn lenient(mut value: serde_json::Value) -> serde_json::Value {
    strip_nulls(&mut value);
    if value.is_null() {
        value = serde_json::Value::Object(Default::default());
    }
    value
}

/// The query's parameters, decoded.
fn query_pairs(parts: &hyper::http::request::Parts) -> HashMap<String, String> {
    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn percent_decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(api: Arc<Api>, call: Call) -> Result<Response<Body>, ApiError> {
    let method = call.parts.method.clone();
    let segs: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (&method, segs.as_slice()) {
        (&Method::GET | &Method::HEAD, ["_ping"]) => system::ping(),
        (&Method::GET, ["version"]) => system::version().await,
        (&Method::GET, ["info"]) => system::info(&api).await,
        (&Method::GET, ["events"]) => events::events(&api, &call).await,
        (&Method::GET, ["system", "df"]) => system::df(&api, &call).await,

        (&Method::GET, ["containers", "json"]) => containers::list(&api, &call).await,
        (&Method::POST, ["containers", "prune"]) => containers::prune(&api, &call).await,
        (&Method::GET, ["containers", id, "changes"]) => {
            contents::changes(&api, id.to_string()).await
        }
        (&Method::GET, ["containers", id, "export"]) => {
            contents::export(&api, id.to_string()).await
        }
        (&Method::POST, ["commit"]) => contents::commit(&api, &call).await,
        (&Method::GET, ["containers", id, "top"]) => procs::top(&api, &call, id.to_string()).await,
        (&Method::GET, ["containers", id, "stats"]) => {
            procs::stats(&api, &call, id.to_string()).await
        }
        (&Method::POST, ["containers", "create"]) => containers::create(&api, call).await,
        (&Method::GET, ["containers", id, "json"]) => {
            let id = id.to_string();
            containers::inspect(&api, &call, id).await
        }
        (&Method::POST, ["containers", id, "exec"]) => {
            let id = id.to_string();
            exec::create(&api, call, id).await
        }
        (&Method::POST, ["exec", id, "start"]) => {
            let id = id.to_string();
            exec::start(api.clone(), call, id).await
        }
        (&Method::POST, ["exec", id, "resize"]) => {
            let id = id.to_string();
            exec::resize(&api, &call, id).await
        }
        (&Method::GET, ["exec", id, "json"]) => {
            let id = id.to_string();
            exec::inspect(&api, id).await
        }
        (&Method::POST, ["containers", id, action]) => {
            let (id, action) = (id.to_string(), action.to_string());
            containers::action(api, call, id, &action).await
        }
        (&Method::HEAD, ["containers", id, "archive"]) => {
            let id = id.to_string();
            archive::stat(&api, &call, id).await
        }
        (&Method::GET, ["containers", id, "archive"]) => {
            let id = id.to_string();
            archive::get(&api, &call, id).await
        }
        (&Method::PUT, ["containers", id, "archive"]) => {
            let id = id.to_string();
            archive::put(&api, call, id).await
        }
        (&Method::GET, ["containers", id, "logs"]) => {
            let id = id.to_string();
            containers::logs(&api, &call, id).await
        }
        (&Method::DELETE, ["containers", id]) => {
            let id = id.to_string();
            containers::remove(&api, &call, id).await
        }

        (&Method::GET, ["volumes"]) => volumes::list(&api, &call).await,
        (&Method::POST, ["volumes", "create"]) => volumes::create(&api, call).await,
        (&Method::POST, ["volumes", "prune"]) => volumes::prune(&api, &call).await,
        (&Method::GET, ["volumes", name]) => {
            let name = name.to_string();
            volumes::inspect(&api, name).await
        }
        (&Method::DELETE, ["volumes", name]) => {
            let name = name.to_string();
            volumes::remove(&api, &call, name).await
        }

        (&Method::GET, ["networks"]) => networks::list(&api, &call).await,
        (&Method::POST, ["networks", "create"]) => networks::create(&api, call).await,
        (&Method::POST, ["networks", "prune"]) => networks::prune(&api, &call).await,
        (&Method::GET, ["networks", key]) => {
            let key = key.to_string();
            networks::inspect(&api, key).await
        }
        (&Method::DELETE, ["networks", key]) => {
            let key = key.to_string();
            networks::remove(&api, key).await
        }
        (&Method::POST, ["networks", key, action @ ("connect" | "disconnect")]) => {
            let (key, connect) = (key.to_string(), *action == "connect");
            networks::connect(&api, call, key, connect).await
        }

        (&Method::GET, ["images", "json"]) => images::list(&api, &call).await,
        (&Method::POST, ["images", "create"]) => images::create(&api, &call).await,
        // Image names have slashes: `/images/127.0.0.1:5000/team/base:1/json`.
        (&Method::GET, ["images", "get"]) => images::get(&api, call.params("names")).await,
        (&Method::POST, ["images", "load"]) => images::load(&api, call).await,
        (&Method::POST, ["images", "prune"]) => images::prune(&api, &call).await,
        (&Method::POST, ["auth"]) => images::auth(call).await,
        (&Method::POST, ["build"]) => build::build(&api, call).await,
        (&Method::GET, ["images", name @ .., "get"]) if !name.is_empty() => {
            images::get(&api, vec![name.join("/")]).await
        }
        (&Method::GET, ["images", name @ .., "history"]) if !name.is_empty() => {
            images::history(&api, name.join("/")).await
        }
        (&Method::POST, ["images", name @ .., "tag"]) if !name.is_empty() => {
            images::tag(&api, &call, name.join("/")).await
        }
        (&Method::POST, ["images", name @ .., "push"]) if !name.is_empty() => {
            images::push(&api, &call, name.join("/")).await
        }
        (&Method::DELETE, ["images", name @ ..]) if !name.is_empty() => {
            images::remove(&api, &call, name.join("/")).await
        }
        (&Method::GET, ["images", name @ .., "json"]) if !name.is_empty() => {
            images::inspect(&api, name.join("/")).await
        }
        _ => Err(ApiError::not_found("page not found")),
    }
}

/// A JSON value and a newline, as Docker writes answers and each message of a stream.
pub fn json_line(value: &impl Serialize) -> Bytes {
    let mut bytes = serde_json::to_vec(value).expect("JSON values serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Response<Body>, ApiError> {
    Ok(with_body(
        status,
        "application/json",
        full(json_line(value)),
    ))
}

/// An answer of `content_type` (a streamed body's head goes out at once).
pub fn with_body(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .expect("valid response")
}

/// Docker's media type of a container's output: raw bytes from a TTY, else stdout and
/// stderr multiplexed in 8-byte-header frames.
pub fn stream_content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// `101`: the connection becomes the stream of a container's or an exec's output (attach,
/// exec start).
pub fn switching_protocols(tty: bool) -> Response<Body> {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, stream_content_type(tty))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(empty())
        .expect("valid response")
}

/// An answer with no body.
pub fn no_content(status: StatusCode) -> Result<Response<Body>, ApiError> {
    Ok(Response::builder()
        .status(status)
        .body(empty())
        .expect("valid response"))
}

/// Docker's error answer.
pub fn error(e: ApiError) -> Response<Body> {
    let body = full(json_line(&serde_json::json!({ "message": e.message })));
    with_body(e.status, "application/json", body)
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// No body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A request body read on a blocking thread; the task feeding it stops when it is dropped.
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    chunk: Bytes,
    feeder: tokio::task::JoinHandle<()>,
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("reading the request body: {e}"),
                    ));
                }
                // The sender is gone: the body ended.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

impl Drop for BodyReader {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

/// Bytes written on a blocking thread, into a streamed body (see [`channel_body`]); a
/// client that went away is a broken pipe.
pub struct ChannelWriter(pub mpsc::Sender<Bytes>);

impl io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A body fed by a channel: the answer's head goes out at once, and its body as the sender
/// writes (the sender sees the client go away as a closed channel).
pub fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    (tx, ChannelBody(rx).boxed())
}

struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
