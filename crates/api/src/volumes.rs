//! `/volumes`: list, create, inspect, remove and prune, on the engine's volume calls.

use std::collections::BTreeMap;

use berth_engine::{VOLUME_FILTERS, VOLUME_PRUNE_FILTERS, VolumeOptions};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError,
    http::{Api, Body, Call, json, no_content},
};

/// `GET /volumes`.
pub async fn list(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(VOLUME_FILTERS)?;
    let volumes = api
        .engine(move |engine| Ok(engine.volume_list(&filters)?))
        .await?;
    json(
        StatusCode::OK,
        &json!({ "Volumes": volumes, "Warnings": null }),
    )
}

/// `POST /volumes/create`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateBody {
    name: String,
    driver: String,
    driver_opts: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
}

/// `POST /volumes/create`: the volume (an existing one of that name as it is).
pub async fn create(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    let body: CreateBody = call.lenient_json().await?;
    let opts = VolumeOptions {
        name: Some(body.name).filter(|n| !n.is_empty()),
        driver: body.driver,
        labels: body.labels,
        options: body.driver_opts,
        anonymous: false,
    };
    let volume = api
        .engine(move |engine| Ok(engine.volume_create(&opts)?))
        .await?;
    json(StatusCode::CREATED, &volume)
}

/// `GET /volumes/{name}`.
pub async fn inspect(api: &Api, name: String) -> Result<Response<Body>, ApiError> {
    let volume = api.engine(move |engine| Ok(engine.volume(&name)?)).await?;
    json(StatusCode::OK, &volume)
}

/// `DELETE /volumes/{name}` (`force`: no error when there is none).
pub async fn remove(api: &Api, call: &Call, name: String) -> Result<Response<Body>, ApiError> {
    let force = call.flag("force");
    api.engine(move |engine| Ok(engine.volume_remove(&name, force)?))
        .await?;
    no_content(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune`: anonymous volumes no container uses (every unused one with the
/// filter `all=true`, as API 1.42 and later).
pub async fn prune(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let mut filters = call.filters(VOLUME_PRUNE_FILTERS)?;
    // Before API 1.42 a prune took every unused volume, as dockerd still answers old clients.
    if call.version < (1, 42) && filters.get("all").is_empty() {
        filters = filters.with("all", "true");
    }
    let (deleted, reclaimed) = api
        .engine(move |engine| Ok(engine.volume_prune(&filters)?))
        .await?;
    json(
        StatusCode::OK,
        &json!({ "VolumesDeleted": deleted, "SpaceReclaimed": reclaimed }),
    )
}
