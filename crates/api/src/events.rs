//! `GET /events`: the state root's event log (`berth_store::events`, which `berth events`
//! reads too) as Docker's stream of JSON messages.

use berth_store::events::{self, EVENT_FILTERS};
use hyper::{Response, StatusCode};

use crate::{
    ApiError,
    http::{Api, Body, Call, json_line, with_body},
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
    let root = api.root.clone();
    let ((), body) = api
        .stream(
            |_| Ok(((), ())),
            move |_, (), tx| {
                let gone = || tx.is_closed();
                let followed = events::follow(&root, since, until, &filters, &gone, &mut |ev| {
                    tx.blocking_send(json_line(&ev.docker_message()))
                        .map_err(|_| std::io::ErrorKind::BrokenPipe.into())
                });
                if let Err(e) = followed {
                    tracing::warn!("events: {e}");
                }
            },
        )
        .await?;
    Ok(with_body(StatusCode::OK, "application/json", body))
}
