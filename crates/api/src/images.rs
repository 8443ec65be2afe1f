//! `/images/...`: Docker's wire forms over the image store.

use std::io::Write;

use base64::Engine as _;
use berth_distribution::{
    Credential, DistributionError, LayerState, Platform, Progress, PullOptions, Registries,
};
use berth_reference::{Digest, Reference};
use berth_store::{ArchiveFormat, HistoryEntry, RemoveEvent};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    ApiError,
    http::{Api, Body, Call, ChannelWriter, channel_body, json, json_line, no_content, with_body},
};

/// `GET /images/json?all=&filters=` (and the old `filter=` reference pattern).
pub async fn list(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(berth_store::IMAGE_FILTERS)?;
    let mut references = filters.get("reference").to_vec();
    references.extend(
        call.param("filter")
            .filter(|f| !f.is_empty())
            .map(String::from),
    );
    let all = call.flag("all");
    // `VirtualSize` went away in API 1.44.
    let virtual_size = call.version < (1, 44);
    let rows = api
        .engine(move |engine| {
            let listed = engine.store().list_images(&berth_store::ImageQuery {
                filters: &filters,
                all,
                references,
                labels: true,
            })?;
            Ok(listed
                .into_iter()
                .map(|l| image_row(&l.record, l.labels.as_ref(), virtual_size))
                .collect::<Vec<_>>())
        })
        .await?;
    json(StatusCode::OK, &rows)
}

/// One image as `GET /images/json` lists it (`SharedSize` and `Containers` unknown: -1).
pub(crate) fn image_row(
    rec: &berth_store::ImageRecord,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    virtual_size: bool,
) -> Value {
    let created = rec.created_at().map_or(0, |t| t.as_second());
    let mut row = json!({
        "Id": rec.id.to_string(),
        "ParentId": rec.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        "RepoTags": rec.tags.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
        "RepoDigests": rec.repo_digests.iter().map(|t| t.familiar_string()).collect::<Vec<_>>(),
        "Created": created,
        "Size": rec.size,
        "SharedSize": -1,
        "Labels": labels.map_or(Value::Null, |l| json!(l)),
        "Containers": -1,
    });
    if virtual_size {
        row["VirtualSize"] = json!(rec.size);
    }
    row
}

/// `GET /images/{name}/json`.
pub async fn inspect(api: &Api, name: String) -> Result<Response<Body>, ApiError> {
    let doc = api
        .engine(move |engine| {
            let store = engine.store();
            let rec = store.resolve(&name)?;
            Ok(store.inspect_document(&rec)?)
        })
        .await?;
    json(StatusCode::OK, &doc)
}

/// `POST /images/create?fromImage=&tag=&platform=`: a pull, reported as Docker's stream of
/// JSON messages (`status`, `id`, `progressDetail`; `errorDetail` when it fails after the
/// answer began).
pub async fn create(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let Some(from) = call.param("fromImage").filter(|f| !f.is_empty()) else {
        return Err(ApiError::bad_request(
            "fromSrc (import) is not served yet: use `berth import`; fromImage is required",
        ));
    };
    let name = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.contains(':') => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let reference = Reference::parse_with_default_tag(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?;
    let platform = call
        .param("platform")
        .filter(|p| !p.is_empty())
        .map(Platform::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registries = registries(call, Some(&reference))?;
    let root = api.root.clone();
    let (tx, body) = channel_body();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let progress = JsonProgress {
            out: tx,
            head: std::sync::Mutex::new(Some(head_tx)),
        };
        let pulled = berth_store::Store::open(&root)
            .map_err(DistributionError::from)
            .and_then(|mut store| {
                registries.pull(&mut store, &reference, &PullOptions { platform }, &progress)
            });
        match pulled {
            Ok(pulled) => {
                progress.send(json!({ "status": format!("Digest: {}", pulled.digest) }));
                progress.send(json!({
                    "status": berth_distribution::pull_status(pulled.new, &reference.familiar_string())
                }));
            }
            // Before any progress (the manifest was not found, the registry refused or
            // cannot be reached), dockerd answers with the error's status, and the docker
            // CLI prints "Error response from daemon: ...".
            Err(e) => match progress.take_head() {
                Some(head) => {
                    let _ = head.send(Err(pull_error(&e)));
                }
                None => progress.error(&e.to_string()),
            },
        }
    });
    head_rx
        .await
        .map_err(|_| ApiError::internal("the pull ended early"))??;
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// The status dockerd answers a failed pull with.
fn pull_error(e: &DistributionError) -> ApiError {
    let status = match e {
        DistributionError::ManifestNotFound { .. }
        | DistributionError::RepositoryNotFound { .. }
        | DistributionError::PullAccessDenied { .. }
        | DistributionError::NoMatchingPlatform { .. } => StatusCode::NOT_FOUND,
        DistributionError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
        DistributionError::Denied { .. } => StatusCode::FORBIDDEN,
        DistributionError::Usage(_) => StatusCode::BAD_REQUEST,
        DistributionError::Store(s) => return crate::error::store_error(s, e.to_string()),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.to_string())
}

/// Docker's `AuthConfig` (`username`, `password`, `auth`, `identitytoken`, `serveraddress`),
/// as `X-Registry-Auth`, `X-Registry-Config` and `/auth` carry it.
type AuthConfig = serde_json::Map<String, Value>;

/// The credential an `AuthConfig` carries (read as `config.json`'s entries are).
fn credential_of(header: &str, config: &AuthConfig) -> Result<Option<Credential>, ApiError> {
    berth_distribution::credentials::auth_entry_credential(config)
        .map_err(|e| ApiError::bad_request(format!("invalid {header}: {e}")))
}

/// A header of base64url JSON (padded or not, as Go's clients vary).
fn decode_header<T: serde::de::DeserializeOwned>(name: &str, value: &str) -> Result<T, ApiError> {
    let text = value.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|e| ApiError::bad_request(format!("invalid {name} header: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid {name} header: {e}")))
}

/// The system's registries, given the credentials a request carries: `X-Registry-Auth` for
/// `reference`'s registry (pull, push), `X-Registry-Config` by server (build).
pub fn registries(call: &Call, reference: Option<&Reference>) -> Result<Registries, ApiError> {
    let mut registries = Registries::load().map_err(|e| ApiError::internal(e.to_string()))?;
    let header = |name: &str| call.header(name).filter(|h| !h.trim().is_empty());
    if let (Some(reference), Some(value)) = (reference, header("X-Registry-Auth"))
        && let Some(credential) = auth_header_credential(value)?
    {
        registries.give(reference.domain(), credential);
    }
    if let Some(value) = header("X-Registry-Config") {
        for (server, credential) in config_header_credentials(value)? {
            registries.give(&server, credential);
        }
    }
    Ok(registries)
}

/// The credential an `X-Registry-Auth` header carries, if any.
pub(crate) fn auth_header_credential(value: &str) -> Result<Option<Credential>, ApiError> {
    let config: AuthConfig = decode_header("X-Registry-Auth", value)?;
    credential_of("X-Registry-Auth", &config)
}

/// The credentials an `X-Registry-Config` header carries, by server.
pub(crate) fn config_header_credentials(
    value: &str,
) -> Result<Vec<(String, Credential)>, ApiError> {
    let configs: std::collections::BTreeMap<String, AuthConfig> =
        decode_header("X-Registry-Config", value)?;
    let mut credentials = Vec::new();
    for (server, config) in configs {
        if let Some(credential) = credential_of("X-Registry-Config", &config)? {
            credentials.push((server, credential));
        }
    }
    Ok(credentials)
}

/// `POST /auth`: checks a credential against its registry (the client keeps it).
pub async fn auth(mut call: Call) -> Result<Response<Body>, ApiError> {
    let config: AuthConfig = call.lenient_json().await?;
    let host = match config
        .get("serveraddress")
        .and_then(Value::as_str)
        .map(str::trim)
    {
        None | Some("") => berth_distribution::DOCKER_HUB_HOST.to_string(),
        Some(s) => berth_distribution::credentials::registry_host(s),
    };
    let credential = credential_of("auth config", &config)?.ok_or_else(|| {
        ApiError::bad_request("a username and password, or an identity token, is required")
    })?;
    tokio::task::spawn_blocking(move || {
        let registries = Registries::load().map_err(|e| ApiError::internal(e.to_string()))?;
        registries
            .check_login(&host, &credential)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    json(
        StatusCode::OK,
        &json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
    )
}

/// The image name `?repo=&tag=` give (`tag` then `commit`): `None` without a `repo`; a digest
/// is refused, as dockerd refuses it.
pub fn target_reference(call: &Call) -> Result<Option<Reference>, ApiError> {
    let Some(repo) = call.param("repo").filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let name = match call.param("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let reference = Reference::parse_with_default_tag(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?;
    if reference.digest().is_some() {
        return Err(ApiError::bad_request(format!(
            "refusing to create a tag with a digest reference: {name}"
        )));
    }
    Ok(Some(reference))
}

/// `POST /images/{name}/tag?repo=&tag=`.
pub async fn tag(api: &Api, call: &Call, name: String) -> Result<Response<Body>, ApiError> {
    let target = target_reference(call)?
        .ok_or_else(|| ApiError::bad_request("repository name (repo) is required"))?;
    api.engine(move |engine| Ok(engine.store().tag(&name, &target)?))
        .await?;
    no_content(StatusCode::CREATED)
}

fn event_json(event: &RemoveEvent) -> Value {
    match event {
        RemoveEvent::Untagged(t) => json!({ "Untagged": t }),
        RemoveEvent::Deleted(d) => json!({ "Deleted": d.to_string() }),
    }
}

/// `DELETE /images/{name}?force=&noprune=`.
pub async fn remove(api: &Api, call: &Call, name: String) -> Result<Response<Body>, ApiError> {
    let force = call.flag("force");
    let events = api
        .engine(move |engine| Ok(engine.store().remove_image(&name, force)?))
        .await?;
    json(
        StatusCode::OK,
        &events.iter().map(event_json).collect::<Vec<_>>(),
    )
}

/// `POST /images/prune?filters=`: `dangling=false` prunes every unused image.
pub async fn prune(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(berth_store::IMAGE_PRUNE_FILTERS)?;
    let report = api
        .engine(move |engine| Ok(engine.store().prune_images_matching(&filters)?))
        .await?;
    let deleted: Vec<Value> = report.events.iter().map(event_json).collect();
    json(
        StatusCode::OK,
        &json!({
            "ImagesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
            "SpaceReclaimed": report.reclaimed,
        }),
    )
}

/// `GET /images/{name}/history`: newest first; the top line carries the image's ID and
/// tags.
pub async fn history(api: &Api, name: String) -> Result<Response<Body>, ApiError> {
    let rows = api
        .engine(move |engine| {
            let store = engine.store();
            let rec = store.resolve(&name)?;
            let image = store.image(rec.clone())?;
            let mut rows: Vec<Value> = store
                .history(&image)?
                .into_iter()
                .map(|HistoryEntry { history: h, size }| {
                    let created = h.created_at().map_or(0, |t| t.as_second());
                    json!({
                        "Id": "<missing>",
                        "Created": created,
                        "CreatedBy": h.created_by.unwrap_or_default(),
                        "Tags": null,
                        "Size": size,
                        "Comment": h.comment.unwrap_or_default(),
                    })
                })
                .collect();
            rows.reverse();
            if let Some(top) = rows.first_mut() {
                top["Id"] = json!(rec.id.to_string());
                top["Tags"] = json!(
                    rec.tags
                        .iter()
                        .map(|t| t.familiar_string())
                        .collect::<Vec<_>>()
                );
            }
            Ok(rows)
        })
        .await?;
    json(StatusCode::OK, &rows)
}

/// `GET /images/get?names=` and `GET /images/{name}/get`: `docker save`'s archive,
/// streamed. Unknown names fail before the stream starts.
pub async fn get(api: &Api, names: Vec<String>) -> Result<Response<Body>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::bad_request("no images named"));
    }
    let ((), body) = api
        .stream(
            move |engine| Ok(((), engine.store().save_requests_all(&names)?)),
            |engine, requests, tx| {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
                let saved = engine
                    .store()
                    .save(&requests, ArchiveFormat::Docker, &mut out)
                    .map_err(|e| e.to_string())
                    .and_then(|()| out.flush().map_err(|e| e.to_string()));
                // The head has gone out: the client sees a cut stream, as with dockerd.
                if let Err(e) = saved {
                    tracing::warn!("image save: {e}");
                }
            },
        )
        .await?;
    Ok(with_body(StatusCode::OK, "application/x-tar", body))
}

/// `POST /images/load?quiet=`: the request body is a `docker save` archive (or an OCI
/// layout as a tar); the answer is Docker's JSON stream of `Loaded image:` lines.
pub async fn load(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    let reader = call.body_reader();
    let loaded = api
        .engine(move |engine| {
            engine
                .store()
                .load(std::io::BufReader::with_capacity(1 << 20, reader))
                .map_err(|e| ApiError::bad_request(format!("loading images: {e}")))
        })
        .await?;
    let mut out = Vec::new();
    for line in loaded.iter().flat_map(|image| image.report()) {
        out.extend(json_line(&json!({ "stream": format!("{line}\n") })));
    }
    Ok(with_body(
        StatusCode::OK,
        "application/json",
        crate::http::full(out),
    ))
}

/// `POST /images/{name}/push?tag=`: pushes one tag, or every tag of the repository when
/// `tag` is empty, as Docker's JSON progress stream; the last message's `aux` carries the
/// manifest's digest and size.
pub async fn push(api: &Api, call: &Call, name: String) -> Result<Response<Body>, ApiError> {
    let named = Reference::parse_normalized(&name)
        .map_err(|e| ApiError::bad_request(format!("invalid reference format: {e}")))?;
    let registries = registries(call, Some(&named))?;
    let tag = call
        .param("tag")
        .filter(|t| !t.is_empty())
        .map(String::from);
    let references = api
        .engine(move |engine| {
            let store = engine.store();
            let references = match tag {
                Some(t) => vec![
                    named
                        .with_tag(&t)
                        .map_err(|e| ApiError::bad_request(format!("invalid tag: {e}")))?,
                ],
                None => store.repository_tags(&named.name())?,
            };
            if references.is_empty() {
                return Err(ApiError::not_found(format!(
                    "An image does not exist locally with the tag: {}",
                    named.familiar_name()
                )));
            }
            for r in &references {
                store.resolve(&r.to_string()).map_err(|_| {
                    ApiError::not_found(format!(
                        "An image does not exist locally with the tag: {}",
                        r.familiar_name()
                    ))
                })?;
            }
            Ok(references)
        })
        .await?;
    let root = api.root.clone();
    let (tx, body) = channel_body();
    tokio::task::spawn_blocking(move || {
        let progress = JsonProgress {
            out: tx,
            head: std::sync::Mutex::new(None),
        };
        let mut store = match berth_store::Store::open(&root) {
            Ok(store) => store,
            Err(e) => return progress.error(&e.to_string()),
        };
        for reference in &references {
            match registries.push(&mut store, reference, &progress) {
                Ok(pushed) => {
                    progress.send(json!({ "status": pushed.to_string() }));
                    progress.send(json!({
                        "progressDetail": {},
                        "aux": {
                            "Tag": pushed.tag,
                            "Digest": pushed.digest.to_string(),
                            "Size": pushed.size,
                        },
                    }));
                }
                Err(e) => return progress.error(&e.to_string()),
            }
        }
    });
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// Docker's JSON messages of a pull or push, one per line.
struct JsonProgress {
    out: tokio::sync::mpsc::Sender<Bytes>,
    /// Where the answer's head waits (for a pull: its first line, or its error): `None`
    /// once the answer began.
    head: std::sync::Mutex<Option<HeadSender>>,
}

type HeadSender = tokio::sync::oneshot::Sender<Result<(), ApiError>>;

impl JsonProgress {
    /// The head's sender, if the answer has not begun.
    fn take_head(&self) -> Option<HeadSender> {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn send(&self, message: Value) {
        if let Some(head) = self.take_head() {
            let _ = head.send(Ok(()));
        }
        // A client that went away stops reading; the pull goes on and lands in the store.
        let _ = self.out.blocking_send(json_line(&message));
    }

    /// A failure after the answer began: Docker's error message in the stream.
    fn error(&self, message: &str) {
        self.send(json!({ "errorDetail": { "message": message }, "error": message }));
    }
}

impl Progress for JsonProgress {
    fn message(&self, line: &str) {
        // "latest: Pulling from library/busybox": Docker sends the part before the colon as
        // the message's id.
        match line.split_once(": ") {
            Some((id, status)) if !id.contains(' ') => {
                self.send(json!({ "status": status, "id": id }))
            }
            _ => self.send(json!({ "status": line })),
        }
    }

    fn layer(&self, id: &Digest, state: LayerState) {
        let short = id.short().to_string();
        let detail = match &state {
            LayerState::Downloading { done, total } | LayerState::Pushing { done, total } => {
                json!({ "current": done, "total": total })
            }
            _ => json!({}),
        };
        self.send(json!({ "status": state.label(), "progressDetail": detail, "id": short }));
    }
}
