//! `GET /events`: the state root's event log (`berth_store::events`, which `berth events`
//! reads too) as Docker's stream of JSON messages.

use berth_store::events::{self, EVENT_FILTERS, EventLog};
use hyper::{Response, StatusCode};

use crate::{
    ApiError,
    http::{Api, Body, Call, channel_body, json_line, with_body},
};

/// `GET /events?since=&until=&filters=`.
pub async fn events(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(EVENT_FILTERS)?;
    let now = jiff::Timestamp::now();
    let time = |key: &str| {
        call.param(key)
            .filter(|v| !v.is_empty())
            .map(|v| berth_store::parse_time_arg(v, now))
            .transpose()
            .map_err(ApiError::bad_request)
    };
    let (since, until) = (time("since")?, time("until")?);
    // Opened before the answer begins, so that a log that cannot be read is the answer's
    // status; no engine is needed.
    let root = api.root.clone();
    let log = tokio::task::spawn_blocking(move || EventLog::open(&root))
        .await
        .map_err(|e| ApiError::internal(format!("events task: {e}")))??;
    let (tx, body) = channel_body();
    tokio::task::spawn_blocking(move || {
        let gone = || tx.is_closed();
        let followed = events::follow(&log, since, until, &filters, &gone, &mut |ev| {
            tx.blocking_send(json_line(&ev.docker_message()))
                .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
        });
        if let Err(e) = followed {
            tracing::warn!("events: {e}");
        }
    });
    Ok(with_body(StatusCode::OK, "application/json", body))
}
