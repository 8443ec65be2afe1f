//! The image configuration document (OCI image-spec config, plus Docker's extra fields).
//!
//! berth keeps its own serde types here instead of `oci_spec::image::ImageConfiguration`:
//! that type has no `Healthcheck`, `OnBuild`, `Shell` or `ArgsEscaped`, and no catch-all, so
//! a Docker config would lose data on a round trip. Unknown fields are kept in `extra` maps,
//! and the raw bytes stay in the blob store anyway (the image ID is their digest).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The image configuration blob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (GOARCH spelling: amd64, arm64).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (linux).
    #[serde(default)]
    pub os: String,
    /// CPU variant (v8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How containers run by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// One entry per instruction that made the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Docker-only and future fields, kept verbatim (container, docker_version, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `config` member: the container defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports as `80/tcp` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// `KEY=value` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Paths as keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Signal that stops the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Healthcheck (Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    /// Build triggers (Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Shell for shell-form instructions (Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Whatever else (Hostname, Tty, ArgsEscaped, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `rootfs`: the diff IDs, bottom layer first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// sha256 of each uncompressed layer tar.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// A comment (`import -m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
}

impl History {
    /// When the step ran, if `created` reads as RFC 3339.
    pub fn created_at(&self) -> Option<jiff::Timestamp> {
        parse_created(self.created.as_deref())
    }
}

/// A config's or history entry's `created`, as an instant (`None` when absent or malformed).
pub(crate) fn parse_created(created: Option<&str>) -> Option<jiff::Timestamp> {
    created.and_then(|c| c.parse().ok())
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn from_slice(data: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

/// The architecture name of this host in GOARCH spelling, as image configs use it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_fields_survive_a_round_trip() {
        let raw = r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"]},"ArgsEscaped":true},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"docker_version":"24.0.0","history":[{"created_by":"x","empty_layer":true}]}"#;
        let c = ImageConfig::from_slice(raw.as_bytes()).unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert!(c.history[0].empty_layer);
        let back: Value = serde_json::to_value(&c).unwrap();
        assert_eq!(back["config"]["Healthcheck"]["Test"][1], "true");
        assert_eq!(back["config"]["ArgsEscaped"], true);
        assert_eq!(back["docker_version"], "24.0.0");
    }
}
