//! The Compose Specification's model as berth runs it. Every short form a file may use
//! (a string command, a list environment, `"8080:80"` ports, `./data:/data` volumes, a
//! list `depends_on`) is turned into the long form while deserializing, so the rest of the
//! crate and `compose config` see one shape. Unknown keys are refused (the schema check).

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, de::Error as _};
use serde_json::Value;

/// A whole project file (or several merged).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    /// Obsolete, ignored (compose warns).
    #[serde(default, skip_serializing, deserialize_with = "opt_scalar")]
    pub version: Option<String>,
    /// The project's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The services.
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    /// Networks the project creates or uses.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "map_of_optional"
    )]
    pub networks: IndexMap<String, NetworkDef>,
    /// Named volumes the project creates or uses.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "map_of_optional"
    )]
    pub volumes: IndexMap<String, VolumeDef>,
}

/// One service.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "build"
    )]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "command"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "command"
    )]
    pub entrypoint: Option<Vec<String>>,
    /// `KEY: value`; `None` takes the value from the shell's environment, if set.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "list_or_map"
    )]
    pub environment: IndexMap<String, Option<String>>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "env_files"
    )]
    pub env_file: Vec<EnvFile>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "ports"
    )]
    pub ports: Vec<Port>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list"
    )]
    pub expose: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "service_volumes"
    )]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "service_networks"
    )]
    pub networks: IndexMap<String, ServiceNetwork>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "depends_on"
    )]
    pub depends_on: IndexMap<String, Dependency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_count"
    )]
    pub scale: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub shm_size: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub mem_limit: Option<i64>,
    /// Memory and swap together (`--memory-swap`; -1: unlimited swap).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub memswap_limit: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub pids_limit: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_bool"
    )]
    pub init: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_duration"
    )]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub tty: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub stdin_open: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub privileged: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_list"
    )]
    pub group_add: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub dns: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "string_or_list"
    )]
    pub tmpfs: Vec<String>,
    /// `host:address`, in the docker CLI's `--add-host` form.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "extra_hosts"
    )]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// GPU requests: accepted in the model, refused when run (berth has no GPU support yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `nofile: 1024` or `nofile: {soft: 1024, hard: 2048}`.
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "ulimits"
    )]
    pub ulimits: IndexMap<String, Ulimit>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub cpu_shares: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
}

/// `logging:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub options: IndexMap<String, String>,
}

/// One `ulimits:` entry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl Service {
    /// How many containers it has: `scale`, else `deploy.replicas`, else one (`up --scale`
    /// overrides).
    pub fn replicas(&self) -> u32 {
        self.scale
            .or_else(|| self.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// The file's network keys its containers join, in the file's order: `default` when it
    /// names none, nothing with a `network_mode`.
    pub fn network_keys(&self) -> Vec<&str> {
        if self.network_mode.is_some() {
            Vec::new()
        } else if self.networks.is_empty() {
            vec!["default"]
        } else {
            self.networks.keys().map(String::as_str).collect()
        }
    }

    /// The services this one needs first: `depends_on`, and the one whose network
    /// namespace it joins (`network_mode: service:x`).
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self.depends_on.keys().map(String::as_str).collect();
        if let Some(other) = self
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("service:"))
            && !deps.contains(&other)
        {
            deps.push(other);
        }
        deps
    }
}

/// `build:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Build {
    #[serde(default = "dot")]
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "list_or_map"
    )]
    pub args: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub no_cache: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub pull: bool,
}

fn dot() -> String {
    ".".into()
}

/// One `env_file:` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    #[serde(default = "yes", deserialize_with = "flex_bool")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// A published port, long form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The container's port (or range).
    #[serde(deserialize_with = "scalar")]
    pub target: String,
    /// The host's port (or range); `None` picks a free one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_scalar"
    )]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

impl Port {
    /// `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`, or a bare port number.
    pub fn parse(spec: &str) -> Result<Port, String> {
        let invalid =
            || format!("invalid port {spec:?}: expected [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]");
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((rest, p)) => (rest, p.to_string()),
            None => (spec, tcp()),
        };
        // An IPv6 host address is in brackets.
        let (host_ip, rest) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (ip, after) = v6.split_once("]:").ok_or_else(invalid)?;
                (Some(ip.to_string()), after)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, published, target) = match (host_ip, parts.as_slice()) {
            (None, [t]) => (None, None, *t),
            (None, [p, t]) => (None, Some(*p), *t),
            (None, [ip, p, t]) => (Some(ip.to_string()), Some(*p), *t),
            (Some(ip), [p, t]) => (Some(ip), Some(*p), *t),
            _ => return Err(invalid()),
        };
        if target.is_empty() {
            return Err(invalid());
        }
        Ok(Port {
            target: target.into(),
            published: published.filter(|p| !p.is_empty()).map(str::to_string),
            host_ip: host_ip.filter(|ip| !ip.is_empty()),
            protocol,
            mode: None,
            name: None,
            app_protocol: None,
        })
    }

    /// The docker CLI's `-p` form of it.
    pub fn publish_flag(&self) -> String {
        let ip = match self.host_ip.as_deref() {
            Some(ip) if ip.contains(':') => format!("[{ip}]:"),
            Some(ip) => format!("{ip}:"),
            None => String::new(),
        };
        match &self.published {
            Some(p) => format!("{ip}{p}:{}/{}", self.target, self.protocol),
            None if !ip.is_empty() => format!("{ip}:{}/{}", self.target, self.protocol),
            None => format!("{}/{}", self.target, self.protocol),
        }
    }
}

/// A service's mount, long form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceVolume {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A volume's name (as in the file's `volumes:`) or a host path; none: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_host_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub nocopy: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl ServiceVolume {
    /// `[SOURCE:]TARGET[:MODE]`: a source starting with `.`, `/` or `~` is a host path.
    fn parse(spec: &str) -> Result<ServiceVolume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, ""),
            [s, t] => (Some(*s), *t, ""),
            [s, t, m] => (Some(*s), *t, *m),
            _ => {
                return Err(format!(
                    "invalid volume {spec:?}: expected [SOURCE:]TARGET[:MODE]"
                ));
            }
        };
        if target.is_empty() || source.is_some_and(str::is_empty) {
            return Err(format!("invalid volume {spec:?}: empty section"));
        }
        let modes: Vec<&str> = mode.split(',').filter(|m| !m.is_empty()).collect();
        let is_path = source.is_some_and(|s| s.starts_with(['.', '/', '~']));
        let propagation = modes
            .iter()
            .find(|m| m.ends_with("shared") || m.ends_with("slave") || m.ends_with("private"))
            .map(|m| m.to_string());
        Ok(ServiceVolume {
            kind: if is_path { "bind" } else { "volume" }.into(),
            source: source.map(str::to_string),
            target: target.into(),
            read_only: modes.contains(&"ro"),
            bind: is_path.then_some(BindOptions {
                propagation,
                create_host_path: Some(true),
                selinux: None,
            }),
            volume: (!is_path && modes.contains(&"nocopy"))
                .then_some(VolumeOptions { nocopy: true }),
            tmpfs: None,
            consistency: None,
        })
    }
}

/// A service's attachment to one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub priority: Option<i64>,
}

/// One `depends_on:` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default = "service_started")]
    pub condition: Condition,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub restart: bool,
    #[serde(default = "yes", deserialize_with = "flex_bool")]
    pub required: bool,
}

fn service_started() -> Condition {
    Condition::ServiceStarted
}

/// What a dependent waits for.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// `deploy:` (the parts a single engine acts on).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_count"
    )]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<DeployRestart>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Reservations>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub memory: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reservations {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_cpus"
    )]
    pub cpus: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_bytes"
    )]
    pub memory: Option<i64>,
    /// Device requests (GPUs): refused when run, as `gpus:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployRestart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub max_attempts: Option<i64>,
}

/// `healthcheck:`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", cmd]` (a string), `["NONE"]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "health_test"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_duration"
    )]
    pub interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_duration"
    )]
    pub start_period: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_duration"
    )]
    pub start_interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_flex_int"
    )]
    pub retries: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub disable: bool,
}

/// A Go duration as written (`1m30s`) with its nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duration {
    pub text: String,
    pub nanos: i64,
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A network of the project.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub driver_opts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "external"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub internal: bool,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "flex_bool"
    )]
    pub attachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// A named volume of the project.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub driver_opts: IndexMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        deserialize_with = "external"
    )]
    pub external: bool,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "labels"
    )]
    pub labels: IndexMap<String, String>,
}

// Deserializers of the short forms. Each reads the node as JSON and says what it expected.

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn expected<E: serde::de::Error>(what: &str, got: &Value) -> E {
    E::custom(format!("expected {what}, got {}", kind(got)))
}

/// A scalar as compose reads it where a string is meant: numbers and booleans as text.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = Value::deserialize(d)?;
    scalar_text(&v).ok_or_else(|| expected("a string or a number", &v))
}

/// An optional value: null is absent, anything else is what `read` makes of it, or an error
/// saying `what` was expected.
fn opt_with<'de, D: Deserializer<'de>, T>(
    d: D,
    what: &str,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Result<Option<T>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    read(&v).map(Some).ok_or_else(|| expected(what, &v))
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    opt_with(d, "a string or a number", scalar_text)
}

fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| scalar_text(i).ok_or_else(|| expected("a string in the list", i)))
            .collect(),
        _ => Err(expected("a list of strings", &v)),
    }
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Null | Value::Array(_) => string_list(v).map_err(D::Error::custom),
        _ => Err(expected("a string or a list of strings", &v)),
    }
}

fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        // A string is split as a shell would, without running one (compose's shellwords).
        Value::String(s) => shlex::split(s).map(Some).ok_or_else(|| {
            D::Error::custom(format!("cannot split {s:?} into words: unclosed quote"))
        }),
        Value::Array(_) => string_list(v).map(Some).map_err(D::Error::custom),
        _ => Err(expected("a string or a list of strings", &v)),
    }
}

fn health_test<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::String(s) => Ok(vec!["CMD-SHELL".into(), s.clone()]),
        Value::Null | Value::Array(_) => string_list(v).map_err(D::Error::custom),
        _ => Err(expected("a string or a list of strings", &v)),
    }
}

/// `KEY=VALUE` lists and `KEY: value` mappings alike; a bare `KEY` (or `KEY:` with no
/// value) is `None`.
fn list_or_map_value(v: &Value) -> Result<IndexMap<String, Option<String>>, String> {
    let mut out = IndexMap::new();
    match v {
        Value::Null => {}
        Value::Object(map) => {
            for (k, val) in map {
                let text = match val {
                    Value::Null => None,
                    other => Some(scalar_text(other).ok_or_else(|| {
                        format!(
                            "{k}: expected a string, a number or a boolean, got {}",
                            kind(other)
                        )
                    })?),
                };
                out.insert(k.clone(), text);
            }
        }
        Value::Array(items) => {
            for item in items {
                let text = scalar_text(item).ok_or_else(|| {
                    format!("expected a list of KEY=VALUE strings, got {}", kind(item))
                })?;
                match text.split_once('=') {
                    Some((k, val)) => out.insert(k.to_string(), Some(val.to_string())),
                    None => out.insert(text, None),
                };
            }
        }
        other => {
            return Err(format!(
                "expected a mapping or a list of KEY=VALUE strings, got {}",
                kind(other)
            ));
        }
    }
    Ok(out)
}

fn list_or_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    list_or_map_value(&Value::deserialize(d)?).map_err(D::Error::custom)
}

fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, String>, D::Error> {
    Ok(list_or_map(d)?
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

fn extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Object(_) => Ok(list_or_map_value(&v)
            .map_err(D::Error::custom)?
            .into_iter()
            .map(|(k, val)| format!("{k}:{}", val.unwrap_or_default()))
            .collect()),
        _ => string_list(v).map_err(D::Error::custom),
    }
}

fn env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    let v = Value::deserialize(d)?;
    let one = |item: &Value| -> Result<EnvFile, String> {
        match item {
            Value::String(s) => Ok(EnvFile {
                path: s.clone(),
                required: true,
            }),
            Value::Object(_) => serde_json::from_value(item.clone()).map_err(|e| e.to_string()),
            other => Err(format!("expected a path or a mapping, got {}", kind(other))),
        }
    };
    match &v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| one(i).map_err(D::Error::custom))
            .collect(),
        _ => one(&v).map(|f| vec![f]).map_err(D::Error::custom),
    }
}

fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Array(items) = &v else {
        return if v.is_null() {
            Ok(Vec::new())
        } else {
            Err(expected("a list of ports", &v))
        };
    };
    items
        .iter()
        .map(|item| {
            let port: Port = match item {
                Value::String(s) => Port::parse(s)?,
                Value::Number(n) => Port::parse(&n.to_string())?,
                Value::Object(_) => {
                    serde_json::from_value(item.clone()).map_err(|e| e.to_string())?
                }
                other => {
                    return Err(format!(
                        "expected a port (a string, a number or a mapping), got {}",
                        kind(other)
                    ));
                }
            };
            // Checked here by the engine's `-p` rules (ranges, protocols, addresses), so that
            // `config` refuses what `up` would, with the file and path.
            berth_engine::ports::parse_publish(&port.publish_flag(), &mut Default::default())?;
            Ok(port)
        })
        .collect::<Result<_, String>>()
        .map_err(D::Error::custom)
}

fn service_volumes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServiceVolume>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Array(items) = &v else {
        return if v.is_null() {
            Ok(Vec::new())
        } else {
            Err(expected("a list of volumes", &v))
        };
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => ServiceVolume::parse(s),
            Value::Object(_) => {
                let vol: ServiceVolume =
                    serde_json::from_value(item.clone()).map_err(|e| e.to_string())?;
                if !matches!(vol.kind.as_str(), "volume" | "bind" | "tmpfs") {
                    return Err(format!(
                        "volume type {:?}: expected volume, bind or tmpfs",
                        vol.kind
                    ));
                }
                Ok(vol)
            }
            other => Err(format!(
                "expected a volume (a string or a mapping), got {}",
                kind(other)
            )),
        })
        .collect::<Result<_, _>>()
        .map_err(D::Error::custom)
}

fn service_networks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, ServiceNetwork>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(IndexMap::new()),
        Value::Array(_) => Ok(string_list(v)
            .map_err(D::Error::custom)?
            .into_iter()
            .map(|n| (n, ServiceNetwork::default()))
            .collect()),
        Value::Object(map) => map
            .iter()
            .map(|(k, val)| {
                let net = if val.is_null() {
                    ServiceNetwork::default()
                } else {
                    serde_json::from_value(val.clone())
                        .map_err(|e| D::Error::custom(format!("{k}: {e}")))?
                };
                Ok((k.clone(), net))
            })
            .collect(),
        _ => Err(expected("a list or a mapping of networks", &v)),
    }
}

fn depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Dependency>, D::Error> {
    let v = Value::deserialize(d)?;
    let started = || Dependency {
        condition: Condition::ServiceStarted,
        restart: false,
        required: true,
    };
    match &v {
        Value::Null => Ok(IndexMap::new()),
        Value::Array(_) => Ok(string_list(v)
            .map_err(D::Error::custom)?
            .into_iter()
            .map(|n| (n, started()))
            .collect()),
        Value::Object(map) => map
            .iter()
            .map(|(k, val)| {
                let dep = if val.is_null() {
                    started()
                } else {
                    serde_json::from_value(val.clone())
                        .map_err(|e| D::Error::custom(format!("{k}: {e}")))?
                };
                Ok((k.clone(), dep))
            })
            .collect(),
        _ => Err(expected("a list or a mapping of services", &v)),
    }
}

fn build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Build>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(Build {
            context: s.clone(),
            ..Default::default()
        })),
        Value::Object(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        _ => Err(expected("a build context path or a mapping", &v)),
    }
}

fn map_of_optional<'de, D, T>(d: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Default + serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(IndexMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, val)| {
                let def = if val.is_null() {
                    T::default()
                } else {
                    serde_json::from_value(val.clone())
                        .map_err(|e| D::Error::custom(format!("{k}: {e}")))?
                };
                Ok((k.clone(), def))
            })
            .collect(),
        _ => Err(expected("a mapping", &v)),
    }
}

/// `external: true`, or the old `external: {name: x}` (the name is taken as given).
fn external<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Object(_) => Ok(true),
        _ => bool_of(&v).ok_or_else(|| expected("a boolean", &v)),
    }
}

/// A boolean, also as the text an interpolated value leaves (`"true"`, `"yes"`, `"off"`).
fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Some(true),
            "false" | "no" | "n" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(opt_flex_bool(d)?.unwrap_or(false))
}

fn opt_flex_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    opt_with(d, "a boolean", bool_of)
}

/// An integer, also as text (an interpolated value).
fn opt_flex_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    opt_with(d, "an integer", |v| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn ulimits<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Ulimit>, D::Error> {
    let v = Value::deserialize(d)?;
    let Value::Object(map) = &v else {
        return if v.is_null() {
            Ok(IndexMap::new())
        } else {
            Err(expected("a mapping of limits", &v))
        };
    };
    map.iter()
        .map(|(name, limit)| {
            let limit = match limit {
                Value::Number(n) => n.as_i64().map(|n| Ulimit { soft: n, hard: n }),
                Value::Object(o) => match (
                    o.get("soft").and_then(Value::as_i64),
                    o.get("hard").and_then(Value::as_i64),
                ) {
                    (Some(soft), Some(hard)) if o.len() == 2 => Some(Ulimit { soft, hard }),
                    _ => None,
                },
                _ => None,
            };
            limit.map(|l| (name.clone(), l)).ok_or_else(|| {
                D::Error::custom(format!("{name}: expected a number or {{soft: N, hard: N}}"))
            })
        })
        .collect()
}

fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    opt_with(d, "a count (0 or more)", |v| scalar_text(v)?.parse().ok())
}

fn opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| expected("a size in bytes", &v)),
        Value::String(s) => berth_engine::units::ram_in_bytes(s)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{s:?}: {e}"))),
        _ => Err(expected(
            "a size (bytes, or a number with b, k, m or g)",
            &v,
        )),
    }
}

fn opt_cpus<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    opt_with(d, "a number of CPUs", |v| {
        scalar_text(v)?.parse::<f64>().ok().filter(|c| *c >= 0.0)
    })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Value::deserialize(d)?;
    let text = match &v {
        Value::Null => return Ok(None),
        // A bare number is seconds, as compose reads it.
        Value::Number(n) => format!("{n}s"),
        Value::String(s) => s.clone(),
        _ => return Err(expected("a duration such as 1m30s", &v)),
    };
    let nanos = berth_store::parse_go_duration(&text)
        .and_then(|n| i64::try_from(n).ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| D::Error::custom(format!("{text:?}: expected a duration such as 1m30s")))?;
    Ok(Some(Duration { text, nanos }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: Value) -> Result<Service, String> {
        serde_json::from_value(json).map_err(|e| e.to_string())
    }

    #[test]
    fn short_forms_become_long() {
        let s = service(serde_json::json!({
            "image": "busybox",
            "command": "sh -c 'echo hi'",
            "environment": ["A=1", "B"],
            "ports": ["8080:80", 9000, "127.0.0.1::53/udp", "[::1]:81:80"],
            "volumes": ["data:/data:ro", "./src:/src", "/cache"],
            "depends_on": ["db"],
            "networks": ["front"],
            "healthcheck": {"test": "true", "interval": "2s", "retries": 3},
            "shm_size": "64m",
            "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "128M"}}},
        }))
        .unwrap();
        assert_eq!(s.command.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(s.environment["A"].as_deref(), Some("1"));
        assert_eq!(s.environment["B"], None);
        let flags: Vec<_> = s.ports.iter().map(Port::publish_flag).collect();
        assert_eq!(
            flags,
            [
                "8080:80/tcp",
                "9000/tcp",
                "127.0.0.1::53/udp",
                "[::1]:81:80/tcp"
            ]
        );
        assert_eq!(s.volumes[0].kind, "volume");
        assert!(s.volumes[0].read_only);
        assert_eq!(s.volumes[1].kind, "bind");
        assert_eq!(s.volumes[2].source, None);
        assert_eq!(s.depends_on["db"].condition, Condition::ServiceStarted);
        assert!(s.networks.contains_key("front"));
        assert_eq!(s.healthcheck.unwrap().test, ["CMD-SHELL", "true"]);
        assert_eq!(s.shm_size, Some(64 << 20));
        let limits = s.deploy.unwrap().resources.unwrap().limits.unwrap();
        assert_eq!((limits.cpus, limits.memory), (Some(0.5), Some(128 << 20)));
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let e = service(serde_json::json!({"image": "a", "ports": "80"})).unwrap_err();
        assert!(e.contains("expected a list of ports, got a string"), "{e}");
        let e = service(serde_json::json!({"image": "a", "ports": ["x:80"]})).unwrap_err();
        assert!(e.contains("invalid port"), "{e}");
        let e = service(serde_json::json!({"imagee": "a"})).unwrap_err();
        assert!(e.contains("unknown field `imagee`"), "{e}");
        let e =
            service(serde_json::json!({"depends_on": {"a": {"condition": "done"}}})).unwrap_err();
        assert!(e.contains("service_completed_successfully"), "{e}");
    }
}
