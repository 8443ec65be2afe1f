//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`): the Engine API's parsers of
//! request bodies and queries, reachable without a server.
//!
//! [`request_parts`] takes a selector byte and a payload: a JSON body (container, exec,
//! network and volume creates), a query string (`filters`, build, stop, logs, commit, ...),
//! a registry auth header or a request path. None may panic, and where a value goes on to
//! be stored or sent back, it must read back the same.

use berth_engine::{health::HealthConfig, networks, summary::CONTAINER_FILTERS};
use berth_store::{Filters, RunConfig, parse_go_duration, parse_time_arg};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    build, containers, exec,
    http::{self, Call},
    images, volumes,
};

/// The parsers [`request_parts`] picks from, by its first byte modulo their number.
const PARSERS: u8 = 10;

/// One request's worth of client input to one parser: `data[0]` picks the parser, the rest
/// is its input.
pub fn request_parts(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(payload).ok();
    match (selector % PARSERS, text) {
        (0, _) => container_create(payload),
        (1, Some(text)) => filters(text),
        (2, Some(text)) => build_query(text),
        (3, _) => {
            let _ = body::<exec::CreateBody>(payload);
            let _ = body::<exec::StartBody>(payload);
        }
        (4, _) => network_create(payload, text),
        (5, _) => {
            let _ = body::<volumes::CreateBody>(payload);
            if let Some(name) = text {
                let _ = berth_engine::volumes::validate_name(name);
            }
        }
        (6, Some(text)) => registry_auth(text),
        (7, Some(text)) => lifecycle_query(text),
        (8, Some(text)) => commit_query(text),
        (9, Some(text)) => request_path(text),
        _ => {}
    }
}

/// A body as `Call::lenient_json` reads it.
fn lenient_value(payload: &[u8]) -> Option<Value> {
    Some(http::lenient(http::json_body(payload).ok()?))
}

fn body<T: DeserializeOwned>(payload: &[u8]) -> Option<T> {
    serde_json::from_value(lenient_value(payload)?).ok()
}

/// A request to `/x?{query}`, its query decoded as `http::parse` decodes it; `None` where
/// hyper would not have taken the URI either.
fn call(query: &str) -> Option<Call> {
    let (parts, ()) = hyper::Request::builder()
        .uri(format!("/x?{query}"))
        .body(())
        .ok()?
        .into_parts();
    Call::new(parts, None).ok()
}

/// `POST /containers/create`: the body to the engine's options. What is accepted has an
/// image, no `default` network mode, a log driver and ports with protocols, and its host
/// config survives the container record's JSON.
fn container_create(payload: &[u8]) {
    let Some(value) = lenient_value(payload) else {
        return;
    };
    let Ok((opts, more_networks)) = containers::create_options(value, Some("/fuzz")) else {
        return;
    };
    assert!(!opts.image.is_empty());
    assert_eq!(opts.name.as_deref(), Some("fuzz"));
    assert_ne!(opts.host.network_mode, "default");
    assert!(!opts.host.log_config.kind.is_empty());
    assert!(opts.host.port_bindings.keys().all(|p| p.contains('/')));
    let primary = match opts.host.network_mode.as_str() {
        "" => "bridge",
        mode => mode,
    };
    assert!(more_networks.iter().all(|(n, _)| n != primary));
    let record = serde_json::to_value(&opts.host).expect("a host config serializes");
    let again: berth_engine::HostConfig =
        serde_json::from_value(record.clone()).expect("a stored host config reads back");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), record);
    let _ = berth_engine::validate_host_config(&opts.host);
    if let Some(health) = &opts.healthcheck {
        let stored = serde_json::to_value(health).expect("a health check serializes");
        let again: HealthConfig = serde_json::from_value(stored).expect("reads back");
        assert_eq!(&again, health);
        let _ = health.validate();
    }
}

/// `filters=` under every listing's keys: what parses prints in the list form and parses
/// back to the same filters.
fn filters(text: &str) {
    for allowed in [
        CONTAINER_FILTERS,
        berth_engine::CONTAINER_PRUNE_FILTERS,
        berth_store::IMAGE_FILTERS,
        berth_store::IMAGE_PRUNE_FILTERS,
        berth_store::events::EVENT_FILTERS,
        berth_engine::VOLUME_FILTERS,
        networks::NETWORK_FILTERS,
    ] {
        let Ok(parsed) = Filters::from_json(text, allowed) else {
            continue;
        };
        let listed: serde_json::Map<String, Value> = allowed
            .iter()
            .filter(|k| !parsed.get(k).is_empty())
            .map(|k| (k.to_string(), Value::from(parsed.get(k).to_vec())))
            .collect();
        let printed = Value::Object(listed).to_string();
        assert_eq!(
            Filters::from_json(&printed, allowed).as_ref(),
            Ok(&parsed),
            "{printed}"
        );
        let _ = parsed.until();
        let _ = parsed.bool("dangling");
        let _ = parsed.labels_match(None);
    }
}

/// `POST /build?...`: the JSON maps, tags and flags the handler reads.
fn build_query(text: &str) {
    let Some(call) = call(text) else {
        return;
    };
    for key in ["buildargs", "labels"] {
        let _ = build::map_param(&call, key);
    }
    for t in call.params("t") {
        let _ = berth_reference::Reference::parse_with_default_tag(&t);
    }
    let _ = (call.flag("nocache"), call.flag("pull"), call.flag("q"));
}

/// `POST /networks/create` and `/connect`, and the payload as a subnet and a gateway: a
/// subnet that parses prints back to itself.
fn network_create(payload: &[u8], text: Option<&str>) {
    let _ = body::<crate::networks::CreateBody>(payload);
    let _ = body::<crate::networks::ConnectBody>(payload);
    if let Some(endpoint) = body::<crate::networks::EndpointConfig>(payload) {
        let _ = endpoint.check("fuzz");
    }
    let Some(text) = text else {
        return;
    };
    if let Ok(net) = networks::parse_subnet(text) {
        let printed = format!("{}/{}", net.addr, net.prefix);
        assert_eq!(
            networks::parse_subnet(&printed).ok(),
            Some(net),
            "{printed}"
        );
    }
    let _ = networks::parse_gateway(text);
}

/// `X-Registry-Auth` (one `AuthConfig`) and `X-Registry-Config` (one per server).
fn registry_auth(text: &str) {
    let _ = images::auth_header_credential(text);
    let _ = images::config_header_credentials(text);
}

/// The queries of stop, kill, resize, tag, logs and events. A time argument that parses as
/// a point after the epoch reads back from its Unix form, and a Go duration from its print.
fn lifecycle_query(text: &str) {
    let Some(call) = call(text) else {
        return;
    };
    let _ = containers::stop_params(&call);
    let _ = call.console_size();
    let _ = images::target_reference(&call);
    if let Some(signal) = call.param("signal") {
        let _ = berth_engine::lifecycle::parse_signal(signal);
    }
    let now = jiff::Timestamp::from_second(1_700_000_000).expect("a valid time");
    let _ = containers::log_options(&call, now);
    for value in call.query.values() {
        if let Ok(t) = parse_time_arg(value, now)
            && t >= jiff::Timestamp::UNIX_EPOCH
        {
            let unix = format!("{}.{:09}", t.as_second(), t.subsec_nanosecond());
            assert_eq!(parse_time_arg(&unix, now), Ok(t), "{value:?} as {unix}");
        }
        if let Some(ns) = parse_go_duration(value) {
            let ns = i64::try_from(ns).expect("Go durations fit in 64 bits");
            let printed = berth_store::format_go_duration(ns);
            assert_eq!(
                parse_go_duration(&printed),
                Some(ns.into()),
                "{value:?} as {printed}"
            );
        }
    }
}

/// `POST /commit?changes=...`: the `--change` lines applied to a config.
fn commit_query(text: &str) {
    let Some(call) = call(text) else {
        return;
    };
    let _ = images::target_reference(&call);
    let mut config = RunConfig::default();
    let _ = berth_build::changes::apply_changes(&mut config, &call.params("changes"));
}

/// A request path: the `/vX.Y` prefix and percent-decoded segments, as routing reads them.
fn request_path(text: &str) {
    let _ = http::split_path(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(selector: u8, payload: &str) -> Vec<u8> {
        let mut data = vec![selector];
        data.extend_from_slice(payload.as_bytes());
        data
    }

    #[test]
    fn request_parts_take_valid_and_garbage_input() {
        let create = r#"{"Image":"busybox","Cmd":"echo hi","HostConfig":{
            "NetworkMode":"default","PortBindings":{"80":[{"HostPort":"8080"}]},
            "Binds":["/srv:/srv:ro"]},
            "Healthcheck":{"Test":["CMD","true"],"Interval":1000000000}}"#;
        let inputs = [
            with(0, create),
            with(0, "{\"Image\":"),
            with(0, "   "),
            with(
                1,
                r#"{"label":{"a=b":true},"dangling":["true"],"until":["10m"]}"#,
            ),
            with(1, r#"{"label":"#),
            with(
                2,
                "t=web:1&t=UPPER&buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D",
            ),
            with(3, r#"{"Cmd":["sh"],"ConsoleSize":[24,80],"Detach":true}"#),
            with(4, "10.1.0.0/16"),
            with(4, r#"{"IPAM":{"Config":[{"Subnet":"10.1.0.0/16"}]}}"#),
            with(5, r#"{"Name":"data","DriverOpts":{"type":"tmpfs"}}"#),
            with(6, "eyJ1c2VybmFtZSI6ImEiLCJwYXNzd29yZCI6ImIifQ"),
            with(
                7,
                "t=10&signal=SIGTERM&h=24&w=80&repo=web&tag=1&since=1700000000.5&until=1h30m",
            ),
            with(
                8,
                "repo=web&changes=CMD%20%5B%22sh%22%5D&changes=ENV%20A%3D1",
            ),
            with(9, "/v1.45/containers/a%2Fb/json"),
            vec![0xff, 0xfe, 0x00],
            Vec::new(),
        ];
        for input in &inputs {
            request_parts(input);
        }
        let (opts, _) =
            containers::create_options(lenient_value(create.as_bytes()).unwrap(), None).unwrap();
        assert_eq!(opts.host.network_mode, "");
        let call = call("buildargs=%7B%22A%22%3A%221%22%2C%22B%22%3Anull%7D").unwrap();
        assert_eq!(build::map_param(&call, "buildargs").unwrap().len(), 1);
    }
}
