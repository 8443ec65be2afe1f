//! Where registries are and how to reach them: Docker Hub's real address, registries
//! allowed over plain HTTP (loopback always, others when configured as insecure), mirrors for
//! docker.io, and per-registry CA certificates (`certs.d/<host>/`).
//!
//! berth has no daemon, so what dockerd takes as `daemon.json` berth reads from
//! `/etc/berth/daemon.json` (or the file `$BERTH_DAEMON_CONFIG` names), with Docker's keys:
//! `insecure-registries` (hosts, `host:port`s or CIDRs) and `registry-mirrors` (URLs).
//! Certificates are looked up in `$BERTH_CERTS_DIR/<host>/` first, then in
//! `/etc/berth/certs.d/<host>/` and Docker's `/etc/docker/certs.d/<host>/`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::error::{DistributionError, Result};

/// The registry that `docker.io` names.
pub const DOCKER_HUB_HOST: &str = "docker.io";
/// Where Docker Hub's registry API really is.
const DOCKER_HUB_API: &str = "https://registry-1.docker.io";

/// How berth reaches registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries that may be reached without verified TLS (hosts, `host:port`s, CIDRs).
    pub insecure: Vec<String>,
    /// Mirrors of docker.io, tried in order before Docker Hub itself (pulls only).
    pub mirrors: Vec<String>,
    /// Directories holding `<host>/*.crt` CA certificates (and `*.cert`/`*.key` client
    /// certificates), as Docker's `/etc/docker/certs.d`.
    pub certs_dirs: Vec<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct DaemonJson {
    #[serde(default, rename = "insecure-registries")]
    insecure_registries: Vec<String>,
    #[serde(default, rename = "registry-mirrors")]
    registry_mirrors: Vec<String>,
}

/// One way to reach a registry: a base URL, and whether its certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]`, no trailing slash.
    pub base: String,
    /// Whether TLS certificates are verified (always, except for insecure registries).
    pub verify_tls: bool,
    /// A mirror (its failures fall through to the next endpoint).
    pub mirror: bool,
}

impl RegistryConfig {
    /// Reads `$BERTH_DAEMON_CONFIG`, else `/etc/berth/daemon.json`; a missing file is the
    /// default configuration.
    pub fn load() -> Result<RegistryConfig> {
        let path = std::env::var_os("BERTH_DAEMON_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/berth/daemon.json"));
        Self::load_from(&path)
    }

    /// Reads the configuration from `path` (missing: the default).
    pub fn load_from(path: &Path) -> Result<RegistryConfig> {
        let parsed: DaemonJson = match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| {
                DistributionError::Usage(format!("{}: invalid JSON: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DaemonJson::default(),
            Err(e) => {
                return Err(DistributionError::Usage(format!(
                    "reading {}: {e}",
                    path.display()
                )));
            }
        };
        for m in &parsed.registry_mirrors {
            if !(m.starts_with("https://") || m.starts_with("http://")) {
                return Err(DistributionError::Usage(format!(
                    "{}: registry mirror {m:?} must be an http:// or https:// URL",
                    path.display()
                )));
            }
        }
        Ok(RegistryConfig {
            insecure: parsed.insecure_registries,
            mirrors: parsed
                .registry_mirrors
                .into_iter()
                .map(|m| m.trim_end_matches('/').to_string())
                .collect(),
            certs_dirs: std::env::var_os("BERTH_CERTS_DIR")
                .map(PathBuf::from)
                .into_iter()
                .chain(["/etc/berth/certs.d".into(), "/etc/docker/certs.d".into()])
                .collect(),
        })
    }

    /// Whether `host` (`name[:port]`) may be reached over plain HTTP or unverified TLS: a
    /// loopback address or `localhost` (as Docker), or one configured as insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = host_name(host);
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        let ip = name.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            if entry == host || (!entry.contains(':') && entry == name) {
                return true;
            }
            match (ip, entry.split_once('/')) {
                (Some(ip), Some((net, bits))) => cidr_contains(net, bits, ip),
                _ => false,
            }
        })
    }

    /// The endpoints to try for a registry, in order. `pull` allows docker.io's mirrors.
    pub fn endpoints(&self, host: &str, pull: bool) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if host == DOCKER_HUB_HOST {
            if pull {
                for m in &self.mirrors {
                    out.push(Endpoint {
                        base: m.clone(),
                        verify_tls: !m.starts_with("http://"),
                        mirror: true,
                    });
                }
            }
            out.push(Endpoint {
                base: DOCKER_HUB_API.into(),
                verify_tls: true,
                mirror: false,
            });
            return out;
        }
        let insecure = self.is_insecure(host);
        out.push(Endpoint {
            base: format!("https://{host}"),
            verify_tls: !insecure,
            mirror: false,
        });
        if insecure {
            out.push(Endpoint {
                base: format!("http://{host}"),
                verify_tls: false,
                mirror: false,
            });
        }
        out
    }

    /// PEM files for `host` in the certs.d directories: CA certificates, and client
    /// certificate/key pairs.
    pub(crate) fn certificates(&self, host: &str) -> (Vec<PathBuf>, Vec<(PathBuf, PathBuf)>) {
        let mut cas = Vec::new();
        let mut clients = Vec::new();
        for dir in &self.certs_dirs {
            let Ok(entries) = std::fs::read_dir(dir.join(host)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in &files {
                match f.extension().and_then(|e| e.to_str()) {
                    Some("crt") => cas.push(f.clone()),
                    Some("cert") => {
                        let key = f.with_extension("key");
                        if key.exists() {
                            clients.push((f.clone(), key));
                        }
                    }
                    _ => {}
                }
            }
        }
        (cas, clients)
    }
}

/// The name part of `host[:port]` (an IPv6 literal keeps its brackets off).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_configured_registries_are_insecure() {
        let c = RegistryConfig {
            insecure: vec![
                "myreg:5000".into(),
                "plain.example".into(),
                "10.1.0.0/16".into(),
            ],
            ..Default::default()
        };
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:5000",
            "[::1]:5000",
            "myreg:5000",
            "plain.example:443",
            "10.1.2.3:5000",
        ] {
            assert!(c.is_insecure(h), "{h}");
        }
        for h in ["myreg:5001", "ghcr.io", "10.2.0.1:5000", "docker.io"] {
            assert!(!c.is_insecure(h), "{h}");
        }
    }

    #[test]
    fn endpoints_in_order() {
        let c = RegistryConfig {
            mirrors: vec!["https://mirror.example".into()],
            ..Default::default()
        };
        let hub = c.endpoints("docker.io", true);
        assert_eq!(hub.len(), 2);
        assert!(hub[0].mirror);
        assert_eq!(hub[1].base, "https://registry-1.docker.io");
        assert_eq!(
            c.endpoints("docker.io", false).len(),
            1,
            "no mirror for push"
        );
        let local = c.endpoints("127.0.0.1:5000", true);
        assert_eq!(
            local.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]
        );
        assert!(!local[0].verify_tls);
        let ghcr = c.endpoints("ghcr.io", true);
        assert_eq!(ghcr.len(), 1);
        assert!(ghcr[0].verify_tls);
    }

    #[test]
    fn daemon_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("daemon.json");
        std::fs::write(
            &p,
            r#"{"insecure-registries":["r:5000"],"registry-mirrors":["https://m/"],"debug":true}"#,
        )
        .unwrap();
        let c = RegistryConfig::load_from(&p).unwrap();
        assert_eq!(c.insecure, ["r:5000"]);
        assert_eq!(c.mirrors, ["https://m"]);
        std::fs::write(&p, r#"{"registry-mirrors":["m.example"]}"#).unwrap();
        let e = RegistryConfig::load_from(&p).unwrap_err().to_string();
        assert!(e.contains("must be an http:// or https:// URL"), "{e}");
        assert!(
            RegistryConfig::load_from(&dir.path().join("none"))
                .unwrap()
                .insecure
                .is_empty()
        );
    }
}
