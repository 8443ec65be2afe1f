//! Containers as lists show them: `ps`'s filters ([`Engine::list_containers`]), Docker's
//! `Status` text and the inspect document. Docker's daemon computes these, so the CLI and
//! the Engine API both take them from here.

use std::time::Duration;

use berth_store::{FilterError, Filters};
use serde_json::Value;

use crate::{ContainerRecord, Engine, EngineError, ZERO_TIME};

/// The filters `ps` and `GET /containers/json` accept.
pub const CONTAINER_FILTERS: &[&str] = &[
    "status", "name", "label", "label!", "ancestor", "exited", "id", "before", "since", "network",
    "volume", "publish", "expose", "is-task", "health",
];

/// The ports a `publish=`/`expose=` filter names (`80`, `80/udp`, `8000-8002/tcp`), as
/// `PORT/PROTO` keys.
fn port_filter(key: &str, values: &[String]) -> Result<Vec<String>, EngineError> {
    let mut out = Vec::new();
    for value in values {
        let (ports, proto) = value.split_once('/').unwrap_or((value, "tcp"));
        let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
        let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>()) else {
            return Err(invalid(key, value));
        };
        if first > last || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(invalid(key, value));
        }
        out.extend((first..=last).map(|p| format!("{p}/{proto}")));
    }
    Ok(out)
}

/// Which containers a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Stopped ones too (`-a`).
    pub all: bool,
    /// Only the newest this many, of every state (`-n`, `-l`).
    pub last: Option<usize>,
    /// `--filter` / `filters=` (keys from [`CONTAINER_FILTERS`]).
    pub filters: Filters,
}

impl From<FilterError> for EngineError {
    fn from(e: FilterError) -> EngineError {
        EngineError::Invalid(e.to_string())
    }
}

impl Engine {
    /// The containers a listing shows, newest first, as Docker's `ps` selects them.
    pub fn list_containers(
        &mut self,
        opts: &ListOptions,
    ) -> Result<Vec<ContainerRecord>, EngineError> {
        let filters = &opts.filters;
        for s in filters.get("status") {
            if !matches!(
                s.as_str(),
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(invalid("status", s));
            }
        }
        for h in filters.get("health") {
            if !matches!(h.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
                return Err(invalid("health", h));
            }
        }
        let exited: Vec<i32> = filters
            .get("exited")
            .iter()
            .map(|v| v.parse().map_err(|_| invalid("exited", v)))
            .collect::<Result<_, _>>()?;
        let published = port_filter("publish", filters.get("publish"))?;
        let exposed = port_filter("expose", filters.get("expose"))?;
        // berth runs no swarm: no container is a task.
        if filters.bool("is-task")? == Some(true) {
            return Ok(Vec::new());
        }
        let records = self.containers()?;
        let position = |key: &str| -> Result<usize, EngineError> {
            records
                .iter()
                .position(|r| r.id.starts_with(key) || r.name == key.trim_start_matches('/'))
                .ok_or_else(|| EngineError::NoSuchContainer(key.to_string()))
        };
        // Records are newest first: "before X" are those after X's position, "since X" before.
        let before = filters
            .get("before")
            .last()
            .map(|k| position(k))
            .transpose()?;
        let since = filters
            .get("since")
            .last()
            .map(|k| position(k))
            .transpose()?;
        let ancestors: Vec<String> = filters
            .get("ancestor")
            .iter()
            .filter_map(|a| self.store().resolve(a).ok().map(|rec| rec.id.to_string()))
            .collect();
        let all = opts.all
            || opts.last.is_some()
            || !filters.get("status").is_empty()
            || !exited.is_empty();
        let mut out = Vec::new();
        for (i, rec) in records.into_iter().enumerate() {
            if opts.last.is_some_and(|last| i >= last) {
                break;
            }
            if before.is_some_and(|b| i <= b) || since.is_some_and(|s| i >= s) {
                continue;
            }
            let state = &rec.state;
            if !all && !state.running {
                continue;
            }
            let statuses = filters.get("status");
            if !statuses.is_empty() && !statuses.contains(&state.status) {
                continue;
            }
            if !exited.is_empty()
                && (state.status != "exited" || !exited.contains(&state.exit_code))
            {
                continue;
            }
            // `none`: no check; a stopped container's last outcome still counts (dockerd).
            let health = filters.get("health");
            let status = state.health.as_ref().map_or("none", |h| h.status.as_str());
            if !health.is_empty() && !health.iter().any(|h| h == status) {
                continue;
            }
            let names = filters.get("name");
            if !names.is_empty()
                && !names
                    .iter()
                    .any(|n| rec.name.contains(n.trim_start_matches('/')))
            {
                continue;
            }
            let ids = filters.get("id");
            if !ids.is_empty() && !ids.iter().any(|p| rec.id.starts_with(p.as_str())) {
                continue;
            }
            if !filters.labels_match(Some(&rec.config.labels)) {
                continue;
            }
            if !filters.get("ancestor").is_empty() && !ancestors.contains(&rec.image) {
                continue;
            }
            let networks = filters.get("network");
            if !networks.is_empty()
                && !networks.iter().any(|n| {
                    rec.network_settings
                        .networks
                        .iter()
                        .any(|(name, ep)| name == n || ep.network_id.starts_with(n.as_str()))
                })
            {
                continue;
            }
            let volumes = filters.get("volume");
            if !volumes.is_empty()
                && !volumes.iter().any(|v| {
                    rec.mounts
                        .iter()
                        .any(|m| &m.name == v || &m.destination == v)
                })
            {
                continue;
            }
            if !published.is_empty()
                && !rec
                    .host_config
                    .port_bindings
                    .keys()
                    .any(|p| published.contains(p))
            {
                continue;
            }
            if !exposed.is_empty() && !rec.config.exposed_ports.keys().any(|p| exposed.contains(p))
            {
                continue;
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// Docker's `inspect` document of the container `key` names.
    pub fn inspect_container(&mut self, key: &str) -> Result<Value, EngineError> {
        let rec = self.container(key)?;
        let mut doc = serde_json::to_value(&rec)?;
        doc["Name"] = Value::String(format!("/{}", rec.name));
        // Docker's fields that berth derives rather than records.
        let dir = self.container_dir(&rec.id);
        let file = |name: &str| Value::String(dir.join(name).display().to_string());
        doc["ResolvConfPath"] = file("resolv.conf");
        doc["HostnamePath"] = file("hostname");
        doc["HostsPath"] = file("hosts");
        doc["Driver"] = Value::String("overlay2".into());
        doc["Platform"] = Value::String("linux".into());
        doc["MountLabel"] = Value::String(String::new());
        doc["ProcessLabel"] = Value::String(String::new());
        doc["AppArmorProfile"] = Value::String(String::new());
        doc["ExecIDs"] = Value::Null;
        if rec.state.running {
            doc["NetworkSettings"]["SandboxKey"] =
                Value::String(format!("/proc/{}/ns/net", rec.state.pid));
        }
        // berth's own bookkeeping, not part of Docker's document.
        if let Some(map) = doc.as_object_mut() {
            map.remove("HasBeenManuallyStopped");
        }
        Ok(doc)
    }
}

/// The host as Docker's `info` describes it.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `1` or `2`, empty when no cgroup hierarchy is mounted.
    pub cgroup_version: &'static str,
    /// Bytes of RAM (`MemTotal`).
    pub mem_total: u64,
    /// CPUs this process may use.
    pub cpus: usize,
    /// `uname -r`.
    pub kernel_version: String,
    /// `uname -n`.
    pub hostname: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub operating_system: String,
}

impl HostFacts {
    /// Reads them.
    pub fn read() -> HostFacts {
        let uname = rustix::system::uname();
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        HostFacts {
            cgroup_version: match berth_runtime::cgroups::detect() {
                Ok(berth_runtime::cgroups::CgroupVersion::V1) => "1",
                Ok(berth_runtime::cgroups::CgroupVersion::V2) => "2",
                Err(_) => "",
            },
            mem_total: host_memory(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel_version: uname.release().to_string_lossy().into_owned(),
            hostname: uname.nodename().to_string_lossy().into_owned(),
            operating_system: os_release
                .lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| "Linux".into()),
        }
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix("MemTotal:")?;
                let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
                Some(kib * 1024)
            })
        })
        .unwrap_or(0)
}

fn invalid(key: &str, value: &str) -> EngineError {
    FilterError::Value {
        key: key.into(),
        value: value.into(),
    }
    .into()
}

/// Docker's `Status` column: `Up 3 seconds`, `Exited (0) 2 minutes ago`, ...
pub fn status_text(rec: &ContainerRecord, now: jiff::Timestamp) -> String {
    let since = |t: &str| {
        t.parse::<jiff::Timestamp>()
            .map(|t| {
                let nanos = (now.as_nanosecond() - t.as_nanosecond()).max(0);
                human_duration(Duration::from_nanos(nanos as u64))
            })
            .unwrap_or_default()
    };
    let state = &rec.state;
    if state.restarting {
        return format!(
            "Restarting ({}) {} ago",
            state.exit_code,
            since(&state.finished_at)
        );
    }
    if state.running {
        let up = format!("Up {}", since(&state.started_at));
        return match &state.health {
            _ if state.paused => format!("{up} (Paused)"),
            Some(health) => format!("{up} ({})", health.shown()),
            None => up,
        };
    }
    if state.dead {
        return "Dead".into();
    }
    if state.started_at.is_empty() || state.started_at == ZERO_TIME {
        return "Created".into();
    }
    if state.finished_at.is_empty() || state.finished_at == ZERO_TIME {
        return String::new();
    }
    format!(
        "Exited ({}) {} ago",
        state.exit_code,
        since(&state.finished_at)
    )
}

/// Go's `units.HumanDuration`: "Less than a second", "About a minute", "3 hours", ...
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Go computes hours as a float (whole hours plus the fraction), then rounds
    // half up for everything below the "years" branch.
    let hours_f = go_hours(d);
    let hours = (hours_f + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (hours_f as u64) / 24 / 365)
}

/// Go's `time.Duration.Hours()`: whole hours plus the remainder as a fraction.
fn go_hours(d: Duration) -> f64 {
    const NANOS_PER_HOUR: u128 = 3_600_000_000_000;
    let nanos = d.as_nanos();
    (nanos / NANOS_PER_HOUR) as f64 + (nanos % NANOS_PER_HOUR) as f64 / NANOS_PER_HOUR as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_filters_expand_ranges_and_default_to_tcp() {
        let ports = |v: &[&str]| {
            port_filter(
                "publish",
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(ports(&["80"]).unwrap(), ["80/tcp"]);
        assert_eq!(ports(&["53/udp"]).unwrap(), ["53/udp"]);
        assert_eq!(
            ports(&["8000-8002/tcp"]).unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["x", "90-80", "80/http", "70000"] {
            assert!(ports(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_duration_go_units_table() {
        let s = Duration::from_secs;
        let m = |n: u64| s(n * 60);
        let h = |n: u64| s(n * 3600);
        let day = |n: u64| h(n * 24);
        let week = |n: u64| day(n * 7);
        let month = |n: u64| day(n * 30);
        let year = |n: u64| day(n * 365);
        let cases = [
            (Duration::from_millis(450), "Less than a second"),
            (s(1), "1 second"),
            (s(45), "45 seconds"),
            (s(46), "46 seconds"),
            (s(47), "47 seconds"),
            (s(59), "59 seconds"),
            (s(60), "About a minute"),
            (m(1), "About a minute"),
            (m(3), "3 minutes"),
            (m(35), "35 minutes"),
            (m(35) + s(40), "35 minutes"),
            (m(45), "45 minutes"),
            (m(45) + s(40), "45 minutes"),
            (m(46), "46 minutes"),
            (m(59), "59 minutes"),
            (h(1), "About an hour"),
            (h(1) + m(29), "About an hour"),
            (h(1) + m(31), "2 hours"),
            (h(1) + m(45), "2 hours"),
            (h(1) + m(59), "2 hours"),
            (h(3), "3 hours"),
            (h(3) + m(29), "3 hours"),
            (h(3) + m(31), "4 hours"),
            (h(3) + m(59), "4 hours"),
            (h(3) + m(60), "4 hours"),
            (h(24), "24 hours"),
            (day(1) + h(12), "36 hours"),
            (day(2), "2 days"),
            (day(7), "7 days"),
            (day(13) + h(5), "13 days"),
            (week(2), "2 weeks"),
            (week(2) + day(4), "2 weeks"),
            (week(3), "3 weeks"),
            (week(4), "4 weeks"),
            (week(4) + day(3), "4 weeks"),
            (month(1), "4 weeks"),
            (month(1) + week(2), "6 weeks"),
            (month(2), "2 months"),
            (month(2) + week(2), "2 months"),
            (month(3), "3 months"),
            (month(3) + week(1), "3 months"),
            (month(5) + week(2), "5 months"),
            (month(13), "13 months"),
            (month(23), "23 months"),
            (month(24), "24 months"),
            (month(24) + week(2), "2 years"),
            (year(3) + month(2), "3 years"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "duration {d:?}");
        }
    }
}
