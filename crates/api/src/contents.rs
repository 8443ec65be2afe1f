//! What a container holds: `GET /containers/{id}/changes` (`docker diff`),
//! `GET /containers/{id}/export` and `POST /commit`, on the engine's `diff`, `export` and
//! `commit`.

use std::io::Write;

use berth_engine::contents::CommitRequest;
use berth_store::ChangeKind;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{
    ApiError,
    http::{Api, Body, Call, ChannelWriter, json, with_body},
};

/// `GET /containers/{id}/changes`: `[{"Path", "Kind"}]`, Kind 0 modified, 1 added,
/// 2 deleted (`null` when nothing changed, as dockerd answers).
pub async fn changes(api: &Api, id: String) -> Result<Response<Body>, ApiError> {
    let changes = api.engine(move |engine| Ok(engine.diff(&id)?)).await?;
    let rows: Vec<Value> = changes
        .into_iter()
        .map(|c| {
            let kind = match c.kind {
                ChangeKind::Modified => 0,
                ChangeKind::Added => 1,
                ChangeKind::Deleted => 2,
            };
            json!({ "Path": c.path, "Kind": kind })
        })
        .collect();
    if rows.is_empty() {
        return json(StatusCode::OK, &Value::Null);
    }
    json(StatusCode::OK, &rows)
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar stream. An unknown
/// container fails before the stream starts.
pub async fn export(api: &Api, id: String) -> Result<Response<Body>, ApiError> {
    let ((), body) = api
        .stream(
            move |engine| Ok(((), engine.container(&id)?.id)),
            |engine, id, tx| {
                let mut out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
                let exported = engine.export(&id, &mut out).and_then(|()| {
                    out.flush()
                        .map_err(|e| berth_engine::EngineError::Invalid(format!("export: {e}")))
                });
                // The head has gone out: the client sees a cut stream, as with dockerd.
                if let Err(e) = exported {
                    tracing::warn!("export {id}: {e}");
                }
            },
        )
        .await?;
    Ok(with_body(StatusCode::OK, "application/x-tar", body))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`: `201 {"Id"}`.
/// (A config in the body, which the docker CLI does not send, is not merged.)
pub async fn commit(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let container = call
        .param("container")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("container is required"))?
        .to_string();
    let tag = crate::images::target_reference(call)?;
    let request = CommitRequest {
        author: call
            .param("author")
            .filter(|a| !a.is_empty())
            .map(String::from),
        comment: call
            .param("comment")
            .filter(|c| !c.is_empty())
            .map(String::from),
        tag,
        // Docker's default is to pause (an empty value too, as dockerd reads it).
        pause: call
            .param("pause")
            .is_none_or(|p| p.is_empty() || call.flag("pause")),
    };
    let changes = call.params("changes");
    let image = api
        .engine(move |engine| {
            Ok(engine.commit(&container, request, |config| {
                berth_build::changes::apply_changes(config, &changes)
            })?)
        })
        .await?;
    json(StatusCode::CREATED, &json!({ "Id": image.id.to_string() }))
}
