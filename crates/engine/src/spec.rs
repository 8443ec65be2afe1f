//! Docker's defaults, made into an OCI runtime spec: the default mounts, capabilities,
//! masked and read-only paths, device rules, namespaces and resource limits.

use std::collections::BTreeSet;

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use crate::{EngineError, record::ContainerRecord};

/// The capabilities a Docker container has by default.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths a container cannot read (Docker's list).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths a container cannot write (Docker's list).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default `PATH` when the image has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every capability up to Linux 6.x (capabilities(7)), sorted: `ALL` and `--privileged`.
const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYSLOG",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_WAKE_ALARM",
];

fn all_capabilities() -> Vec<String> {
    ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect()
}

/// `NET_ADMIN`, `cap_net_admin` or `CAP_NET_ADMIN` to `CAP_NET_ADMIN`; `ALL` stays.
fn canonical_cap(name: &str) -> Result<String, EngineError> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(EngineError::Invalid(format!(
            "unknown capability: \"{name}\""
        )))
    }
}

/// Docker's capability arithmetic: the defaults (or all, privileged), then drops, then adds;
/// `ALL` in either list means every capability.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Vec<String>, EngineError> {
    if privileged {
        return Ok(all_capabilities());
    }
    let add: Vec<String> = add
        .iter()
        .map(|c| canonical_cap(c))
        .collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop
        .iter()
        .map(|c| canonical_cap(c))
        .collect::<Result<_, _>>()?;
    let mut set: BTreeSet<String> = if drop.iter().any(|c| c == "ALL") {
        BTreeSet::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|c| c == "ALL") {
        set.extend(all_capabilities());
    } else {
        set.extend(add.into_iter().filter(|c| c != "ALL"));
    }
    Ok(set.into_iter().collect())
}

/// What the spec needs besides the record.
pub struct SpecInputs<'a> {
    /// The mount target for the rootfs.
    pub rootfs: &'a std::path::Path,
    /// Files bound at /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: [(&'a str, &'a std::path::Path); 3],
    /// The container's capabilities.
    pub capabilities: &'a [String],
    /// Docker's `--security-opt no-new-privileges`.
    pub no_new_privileges: bool,
    /// Volumes with driver options (`--opt type=... device=... o=...`), by name: mounted
    /// as the options say instead of binding their `_data`.
    pub volume_options:
        &'a std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// The OCI spec for `rec`.
pub fn build(rec: &ContainerRecord, inputs: &SpecInputs<'_>) -> Result<Spec, EngineError> {
    let hc = &rec.host_config;
    let privileged = hc.privileged;
    let mut args = vec![rec.path.clone()];
    args.extend(rec.args.iter().cloned());

    let shm = if hc.shm_size > 0 {
        hc.shm_size
    } else {
        64 << 20
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": if privileged { json!(["nosuid", "noexec", "nodev"]) } else { json!(["nosuid", "noexec", "nodev", "ro"]) }}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": if privileged { json!(["nosuid", "noexec", "nodev", "relatime"]) } else { json!(["ro", "nosuid", "noexec", "nodev", "relatime"]) }}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    for (dest, source) in inputs.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": source, "options": ["rbind", "rprivate"]}));
    }
    // The user's mounts, parents before what is mounted inside them.
    let mut user_mounts: Vec<(&str, Value)> = Vec::new();
    for (dest, opts) in &hc.tmpfs {
        let mut options = vec![
            "noexec".to_string(),
            "nosuid".to_string(),
            "nodev".to_string(),
        ];
        options.extend(
            opts.split(',')
                .filter(|o| !o.is_empty())
                .map(str::to_string),
        );
        user_mounts.push((
            dest,
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options}),
        ));
    }
    for m in rec
        .mounts
        .iter()
        .filter(|m| m.kind == "bind" || m.kind == "volume")
    {
        if m.kind == "volume"
            && let Some(opts) = inputs.volume_options.get(&m.name)
            && let Some(kind) = opts.get("type")
        {
            // Docker's local driver: `mount -t TYPE -o O DEVICE`; `o` with `bind` is a bind.
            let mut options: Vec<String> = opts
                .get("o")
                .map(|o| {
                    o.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !m.rw {
                options.push("ro".into());
            }
            let device = opts.get("device").cloned().unwrap_or_default();
            let typ = if options.iter().any(|o| o == "bind" || o == "rbind") {
                "bind"
            } else {
                kind.as_str()
            };
            user_mounts.push((
                &m.destination,
                json!({"destination": m.destination, "type": typ, "source": device, "options": options}),
            ));
            continue;
        }
        let propagation = if m.propagation.is_empty() {
            "rprivate"
        } else {
            m.propagation.as_str()
        };
        let mut options = vec!["rbind", propagation];
        if !m.rw {
            options.push("ro");
        }
        user_mounts.push((
            &m.destination,
            json!({"destination": m.destination, "type": "bind", "source": m.source, "options": options}),
        ));
    }
    user_mounts.sort_by_key(|(dest, _)| dest.matches('/').count());
    mounts.extend(user_mounts.into_iter().map(|(_, m)| m));

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    match hc.network_mode.as_str() {
        "host" => {}
        _ => namespaces.push(json!({"type": "network"})),
    }

    let mut resources = json!({
        "devices": device_rules(privileged),
    });
    let mut memory = serde_json::Map::new();
    if hc.memory > 0 {
        memory.insert("limit".into(), json!(hc.memory));
        // Docker: without --memory-swap, as much swap as memory.
        let swap = match hc.memory_swap {
            0 => hc.memory * 2,
            s => s,
        };
        memory.insert("swap".into(), json!(swap));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if hc.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(hc.cpu_shares));
    }
    if hc.nano_cpus > 0 {
        let period: i64 = 100_000;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(hc.nano_cpus * period / 1_000_000_000));
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(hc.cpuset_cpus));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(limit) = hc.pids_limit.filter(|l| *l > 0) {
        resources["pids"] = json!({"limit": limit});
    }

    let caps = inputs.capabilities;
    let rlimits: Vec<Value> = hc
        .ulimits
        .iter()
        .map(|u| json!({"type": format!("RLIMIT_{}", u.name.to_ascii_uppercase()), "soft": u.soft, "hard": u.hard}))
        .collect();
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
    });
    if !privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    let spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": rec.config.tty,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": rec.config.env,
            "cwd": if rec.config.working_dir.is_empty() { "/" } else { rec.config.working_dir.as_str() },
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": rlimits,
            "noNewPrivileges": inputs.no_new_privileges,
        },
        "root": {"path": inputs.rootfs, "readonly": hc.readonly_rootfs},
        "hostname": rec.config.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    serde_json::from_value(spec).map_err(|e| EngineError::Invalid(format!("container spec: {e}")))
}

/// Docker's device cgroup rules: nothing but the standard nodes, the ptys, and mknod.
fn device_rules(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    for typ in ["c", "b"] {
        rules.push(json!({"allow": true, "type": typ, "access": "m"}));
    }
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
        (5, Some(0)),
        (5, Some(1)),
        (5, Some(2)),
        (136, None),
        (10, Some(200)),
    ] {
        let mut rule = json!({"allow": true, "type": "c", "major": major, "access": "rwm"});
        if let Some(minor) = minor {
            rule["minor"] = json!(minor);
        }
        rules.push(rule);
    }
    Value::Array(rules)
}

/// Docker's environment: `PATH` (the image's, or the default), `HOSTNAME`, `TERM=xterm`
/// with a tty, then the image's and the user's variables, later ones replacing earlier.
pub fn environment(
    image_env: &[String],
    user_env: &[String],
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut env: Vec<String> = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    for var in image_env.iter().chain(user_env) {
        let key = var.split_once('=').map_or(var.as_str(), |(k, _)| k);
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(slot) => *slot = var.clone(),
            None => env.push(var.clone()),
        }
    }
    env
}

/// Docker's entrypoint and command: `--entrypoint` replaces the image's entrypoint and
/// clears its command; a command given on the line replaces the image's. An empty
/// entrypoint list (an API client's `"Entrypoint": []`, compose's `entrypoint: []`) leaves
/// none and keeps the image's command, as dockerd merges it; one empty string
/// (`--entrypoint ""`) leaves none and clears the command.
pub fn command(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: &[String],
) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let given_or_image_cmd = || {
        if cmd.is_empty() {
            image_cmd.map(|c| c.to_vec())
        } else {
            Some(cmd.to_vec())
        }
    };
    match entrypoint {
        Some([]) => (None, given_or_image_cmd()),
        Some([only]) if only.is_empty() => (None, (!cmd.is_empty()).then(|| cmd.to_vec())),
        Some(ep) => (Some(ep.to_vec()), (!cmd.is_empty()).then(|| cmd.to_vec())),
        None => (image_entrypoint.map(|e| e.to_vec()), given_or_image_cmd()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn capability_arithmetic_follows_docker() {
        let caps = capabilities(false, &[], &[]).unwrap();
        assert_eq!(caps.len(), 14);
        let caps = capabilities(false, &s(&["NET_ADMIN"]), &s(&["chown", "CAP_KILL"])).unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        let caps = capabilities(false, &s(&["SETUID"]), &s(&["ALL"])).unwrap();
        assert_eq!(caps, s(&["CAP_SETUID"]));
        assert!(
            capabilities(false, &s(&["ALL"]), &[])
                .unwrap()
                .contains(&"CAP_SYS_ADMIN".into())
        );
        assert!(capabilities(true, &[], &[]).unwrap().len() > 38);
        let err = capabilities(false, &s(&["NOPE"]), &[]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability: \"NOPE\"");
    }

    #[test]
    fn environment_merges_like_docker() {
        let env = environment(
            &s(&["PATH=/bin", "A=1", "B=2"]),
            &s(&["B=3", "C=4"]),
            "abc",
            true,
        );
        assert_eq!(
            env,
            s(&[
                "PATH=/bin",
                "HOSTNAME=abc",
                "TERM=xterm",
                "A=1",
                "B=3",
                "C=4"
            ])
        );
        let env = environment(&[], &[], "h", false);
        assert_eq!(env, s(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h"]));
    }

    #[test]
    fn entrypoint_and_cmd_merge_like_docker() {
        let ep = s(&["/entry"]);
        let cmd = s(&["default"]);
        assert_eq!(
            command(Some(&ep), Some(&cmd), None, &[]),
            (Some(ep.clone()), Some(cmd.clone()))
        );
        assert_eq!(
            command(Some(&ep), Some(&cmd), None, &s(&["x"])),
            (Some(ep.clone()), Some(s(&["x"])))
        );
        // --entrypoint clears the image's command.
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some(&s(&["/other"])), &[]),
            (Some(s(&["/other"])), None)
        );
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some(&s(&[""])), &s(&["ls"])),
            (None, Some(s(&["ls"])))
        );
        // `"Entrypoint": []`: no entrypoint, and the image's command stays.
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some(&[]), &[]),
            (None, Some(cmd.clone()))
        );
        assert_eq!(
            command(Some(&ep), Some(&cmd), Some(&s(&[""])), &[]),
            (None, None)
        );
    }
}
