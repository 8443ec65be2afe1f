//! `/networks`: list, inspect, create, remove, connect, disconnect and prune, on the
//! engine's network calls.

use std::collections::BTreeMap;

use berth_engine::networks::{NETWORK_FILTERS, NetworkOptions, parse_gateway, parse_subnet};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ApiError,
    http::{Api, Body, Call, json, no_content},
};

/// `GET /networks`: Docker's `NetworkResource`s (without their containers, as dockerd
/// lists them).
pub async fn list(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(NETWORK_FILTERS)?;
    let documents = api
        .engine(move |engine| {
            let mut out = Vec::new();
            for entry in engine.network_entries(&filters)? {
                out.push(engine.network_document(&entry, false)?);
            }
            Ok(out)
        })
        .await?;
    json(StatusCode::OK, &documents)
}

/// `GET /networks/{id}`.
pub async fn inspect(api: &Api, key: String) -> Result<Response<Body>, ApiError> {
    let document = api
        .engine(move |engine| {
            let entry = engine.network_entry(&key)?;
            Ok(engine.network_document(&entry, true)?)
        })
        .await?;
    json(StatusCode::OK, &document)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Ipam,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Vec<IpamConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
    gateway: String,
}

/// `POST /networks/create`: a bridge network (the only driver berth has).
pub async fn create(api: &Api, mut call: Call) -> Result<Response<Body>, ApiError> {
    let body: CreateBody = call.lenient_json().await?;
    if body.enable_ipv6 {
        return Err(ApiError::bad_request(
            "IPv6 networks are not supported by berth",
        ));
    }
    if body.ipam.config.len() > 1 {
        return Err(ApiError::bad_request(
            "berth networks have one IPv4 subnet: give at most one IPAM config",
        ));
    }
    let (subnet, gateway) = match body.ipam.config.first() {
        Some(c) => (
            Some(c.subnet.as_str()).filter(|s| !s.is_empty()),
            Some(c.gateway.as_str()).filter(|s| !s.is_empty()),
        ),
        None => (None, None),
    };
    let opts = NetworkOptions {
        name: body.name,
        driver: body.driver,
        subnet: subnet.map(parse_subnet).transpose()?,
        gateway: gateway.map(parse_gateway).transpose()?,
        internal: body.internal,
        labels: body.labels,
    };
    let network = api
        .engine(move |engine| Ok(engine.network_create(&opts)?))
        .await?;
    json(
        StatusCode::CREATED,
        &json!({ "Id": network.id, "Warning": "" }),
    )
}

/// `DELETE /networks/{id}`.
pub async fn remove(api: &Api, key: String) -> Result<Response<Body>, ApiError> {
    api.engine(move |engine| Ok(engine.network_remove(&key).map(|_| ())?))
        .await?;
    no_content(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct ConnectBody {
    container: String,
    endpoint_config: EndpointConfig,
    force: bool,
}

/// Docker's `EndpointSettings` as clients send it (`network connect`, and each network of
/// a create's `NetworkingConfig`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    /// DNS names on the network besides the container's name.
    pub aliases: Vec<String>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: EndpointIpam,
}

/// An endpoint's fixed addresses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    ipv6_address: String,
}

impl EndpointConfig {
    /// Refuses what berth cannot honour rather than dropping it: fixed addresses (`--ip`).
    pub fn check(&self, network: &str) -> Result<(), ApiError> {
        let ipam = &self.ipam_config;
        if !ipam.ipv4_address.is_empty() || !ipam.ipv6_address.is_empty() {
            return Err(ApiError::bad_request(format!(
                "network {network}: a fixed address (--ip, --ip6) is not supported; berth assigns addresses"
            )));
        }
        Ok(())
    }
}

/// `POST /networks/{id}/connect` and `/disconnect`.
pub async fn connect(
    api: &Api,
    mut call: Call,
    key: String,
    connect: bool,
) -> Result<Response<Body>, ApiError> {
    let body: ConnectBody = call.lenient_json().await?;
    body.endpoint_config.check(&key)?;
    api.engine(move |engine| {
        if connect {
            engine.network_connect(&key, &body.container, &body.endpoint_config.aliases)?;
        } else {
            engine.network_disconnect(&key, &body.container, body.force)?;
        }
        Ok(())
    })
    .await?;
    no_content(StatusCode::OK)
}

/// `POST /networks/prune`.
pub async fn prune(api: &Api, call: &Call) -> Result<Response<Body>, ApiError> {
    let filters = call.filters(berth_engine::networks::NETWORK_PRUNE_FILTERS)?;
    let deleted = api
        .engine(move |engine| Ok(engine.network_prune(&filters)?))
        .await?;
    json(StatusCode::OK, &json!({ "NetworksDeleted": deleted }))
}
