//! `/images/...`: Docker's wire forms over the image store.

use berth_distribution::{LayerState, Platform, Progress, PullOptions, Registries};
use berth_reference::{Digest, Reference};
use bytes::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    ApiError,
    http::{Api, Body, Call, channel_body, json, json_line, with_body},
};

/// The filters `GET /images/json` takes here.
const IMAGE_FILTERS: &[&str] = &["dangling", "label", "label!"];

/// `GET /images/json?all=&filters=`.
pub async fn list(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(IMAGE_FILTERS)?;
    let dangling = filters
        .bool("dangling")
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let all = call.flag("all");
    // `VirtualSize` went away in API 1.44.
    let virtual_size = call.version < (1, 44);
    let rows = api
        .engine(move |engine| {
            let store = engine.store();
            let mut rows = Vec::new();
            for rec in store.images()? {
                if !all && rec.is_build_intermediate() {
                    continue;
                }
                if dangling.is_some_and(|d| d != rec.tags.is_empty()) {
                    continue;
                }
                // An image removed by another process since the listing is not shown.
                let Ok(image) = store.image(rec.clone()) else {
                    continue;
                };
                let labels = image.config.config.as_ref().and_then(|c| c.labels.clone());
                if !filters.labels_match(labels.as_ref()) {
                    continue;
                }
                let created = rec
                    .created
                    .as_deref()
                    .and_then(|c| c.parse::<jiff::Timestamp>().ok())
                    .map_or(0, |t| t.as_second());
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
                rows.push(row);
            }
            Ok(rows)
        })
        .await?;
    json(StatusCode::OK, &rows)
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
    let registries = Registries::load().map_err(|e| ApiError::internal(e.to_string()))?;
    let root = api.root.clone();
    let (tx, body) = channel_body();
    tokio::task::spawn_blocking(move || {
        let progress = JsonProgress { out: tx.clone() };
        let pulled = berth_store::Store::open(&root)
            .map_err(|e| e.to_string())
            .and_then(|mut store| {
                registries
                    .pull(&mut store, &reference, &PullOptions { platform }, &progress)
                    .map_err(|e| e.to_string())
            });
        match pulled {
            Ok(pulled) => {
                progress.send(json!({ "status": format!("Digest: {}", pulled.digest) }));
                let status = if pulled.new {
                    "Downloaded newer image for"
                } else {
                    "Image is up to date for"
                };
                progress.send(json!({
                    "status": format!("Status: {status} {}", reference.familiar_string())
                }));
            }
            Err(message) => progress.send(json!({
                "errorDetail": { "message": message },
                "error": message,
            })),
        }
    });
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// Docker's JSON messages of a pull or push, one per line.
struct JsonProgress {
    out: tokio::sync::mpsc::Sender<Bytes>,
}

impl JsonProgress {
    fn send(&self, message: Value) {
        // A client that went away stops reading; the pull goes on and lands in the store.
        let _ = self.out.blocking_send(json_line(&message));
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
