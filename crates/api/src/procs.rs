//! `/containers/{id}/top` and `/containers/{id}/stats`: the engine's `ps` table and usage
//! readings (`berth_engine::procs`, the same the CLI's `top` and `stats` show) in Docker's
//! wire forms.

use std::{thread, time::Duration};

use berth_engine::{
    ContainerRecord, EngineError, ZERO_TIME,
    procs::{TopTable, Usage},
};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::{
    ApiError,
    http::{Api, Body, Call, json, json_line, with_body},
};

/// How often a stats stream sends a reading (dockerd's collector interval).
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// `stream=false`: CPU % needs two readings, this far apart (dockerd waits for its
/// collector's second reading; the CLI's own `stats` uses the same window).
const PRIMING_WINDOW: Duration = Duration::from_millis(500);

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    let ps_args = call.param("ps_args").unwrap_or("").to_string();
    let TopTable { titles, processes } = api
        .engine(move |engine| Ok(engine.top(&id, &ps_args)?))
        .await?;
    json(
        StatusCode::OK,
        &json!({ "Titles": titles, "Processes": processes }),
    )
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one reading a second while streaming
/// (the first with empty `precpu_stats`), or one reading: with `one-shot` at once, else
/// after a priming reading so that CPU % means something. A container that does not run
/// answers one empty reading when not streaming; a stream waits for it to run again and
/// ends when it is removed or the client goes.
pub async fn stats(api: &Api, call: &Call, id: String) -> Result<Response<Body>, ApiError> {
    // `stream` defaults to true.
    let stream = call.param("stream").is_none() || call.flag("stream");
    let one_shot = call.flag("one-shot");
    if one_shot && stream {
        return Err(ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let ((), body) = api
        .stream(
            move |engine| Ok(((), engine.container(&id)?)),
            move |engine, rec, tx| {
                let send = |doc: Value| tx.blocking_send(json_line(&doc)).is_ok();
                if !stream {
                    let Some(first) = Usage::read(&rec) else {
                        send(stats_document(&rec, None, None));
                        return;
                    };
                    if one_shot {
                        send(stats_document(&rec, Some(&first), None));
                        return;
                    }
                    thread::sleep(PRIMING_WINDOW);
                    let now = Usage::read(&rec);
                    send(stats_document(&rec, now.as_ref(), Some(&first)));
                    return;
                }
                let mut before: Option<Usage> = None;
                loop {
                    // Looked up each time: a container stopped and started again has a new
                    // init (and network namespace) to read.
                    let rec = match engine.container(&rec.id) {
                        Ok(rec) => rec,
                        Err(EngineError::NoSuchContainer(_)) => return,
                        Err(e) => {
                            tracing::warn!("stats of {}: {e}", rec.id);
                            return;
                        }
                    };
                    if let Some(now) = Usage::read(&rec) {
                        if !send(stats_document(&rec, Some(&now), before.as_ref())) {
                            return;
                        }
                        before = Some(now);
                    } else if tx.is_closed() {
                        return;
                    }
                    thread::sleep(STATS_INTERVAL);
                }
            },
        )
        .await?;
    Ok(with_body(StatusCode::OK, "application/json", body))
}

/// Docker's `StatsJSON` for one reading (`now`, none when the container does not run) and
/// the one before it (`precpu_stats`, `preread`).
fn stats_document(rec: &ContainerRecord, now: Option<&Usage>, before: Option<&Usage>) -> Value {
    let read = |u: Option<&Usage>| u.map_or_else(|| ZERO_TIME.to_string(), |u| u.read.to_string());
    let cpu = |u: Option<&Usage>| match u {
        Some(u) => json!({
            "cpu_usage": { "total_usage": u.cpu_ns, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "system_cpu_usage": u.system_cpu_ns,
            "online_cpus": u.online_cpus,
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
        None => json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": { "periods": 0, "throttled_periods": 0, "throttled_time": 0 },
        }),
    };
    let mut doc = json!({
        "name": format!("/{}", rec.name),
        "id": rec.id,
        "read": read(now),
        "preread": read(before),
        "pids_stats": {},
        "blkio_stats": {
            "io_service_bytes_recursive": null,
            "io_serviced_recursive": null,
            "io_queue_recursive": null,
            "io_service_time_recursive": null,
            "io_wait_time_recursive": null,
            "io_merged_recursive": null,
            "io_time_recursive": null,
            "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(now),
        "precpu_stats": cpu(before),
        "memory_stats": {},
    });
    let Some(u) = now else {
        return doc;
    };
    let mut pids = json!({ "current": u.pids });
    if let Some(limit) = u.pids_limit {
        pids["limit"] = json!(limit);
    }
    doc["pids_stats"] = pids;
    let io: Vec<Value> =
        u.io.devices
            .iter()
            .flat_map(|d| {
                [("read", d.read_bytes), ("write", d.write_bytes)].map(|(op, value)| {
                json!({ "major": d.major, "minor": d.minor, "op": op, "value": value })
            })
            })
            .collect();
    doc["blkio_stats"]["io_service_bytes_recursive"] = json!(io);
    // `usage` is already without the inactive file cache, so `stats` need not carry it.
    doc["memory_stats"] = json!({ "usage": u.memory, "stats": {}, "limit": u.memory_limit });
    if !u.networks.is_empty() {
        let networks: Map<String, Value> = u
            .networks
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    json!({
                        "rx_bytes": c.rx_bytes, "rx_packets": c.rx_packets,
                        "rx_errors": c.rx_errors, "rx_dropped": c.rx_dropped,
                        "tx_bytes": c.tx_bytes, "tx_packets": c.tx_packets,
                        "tx_errors": c.tx_errors, "tx_dropped": c.tx_dropped,
                    }),
                )
            })
            .collect();
        doc["networks"] = Value::Object(networks);
    }
    doc
}
