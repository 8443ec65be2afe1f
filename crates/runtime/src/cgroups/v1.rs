//! cgroup v1: the container's cgroup is one directory in every mounted hierarchy.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxResources,
};
use rustix::io::Errno;

use super::{
    CgroupError, CgroupStats, Hierarchy, IoStats, Result, create_dir, invalid, keyed, kill_pids,
    missing, parse_u64, poll_until, procs_recursive, read_max_opt, read_opt, read_string,
    read_u64_opt, warn_ignored, write_value,
};

/// A v1 `memory.limit_in_bytes` at or above this is "unlimited" (the kernel shows
/// `PAGE_COUNTER_MAX` pages, about 2^63 bytes).
const UNLIMITED: u64 = 1 << 62;

#[derive(Debug)]
pub(super) struct V1Cgroup {
    /// Each hierarchy with the cgroup's directory in it.
    dirs: Vec<(Hierarchy, PathBuf)>,
}

impl V1Cgroup {
    pub(super) fn create(
        hierarchies: &[Hierarchy],
        comps: &[&str],
        resources: &LinuxResources,
    ) -> Result<Self> {
        let mut made = Vec::new();
        let result = (|| {
            let mut dirs = Vec::new();
            for h in hierarchies {
                let mut dir = h.mountpoint.clone();
                for (i, comp) in comps.iter().enumerate() {
                    let parent = dir.clone();
                    dir.push(comp);
                    if create_dir(&dir)? && i + 1 == comps.len() {
                        made.push(dir.clone());
                    }
                    if h.has("cpuset") {
                        copy_cpuset(&parent, &dir)?;
                    }
                }
                dirs.push((h.clone(), dir));
            }
            let cgroup = V1Cgroup { dirs };
            cgroup.apply(resources)?;
            Ok(cgroup)
        })();
        if result.is_err() {
            for dir in made {
                let _ = fs::remove_dir(dir);
            }
        }
        result
    }

    /// The cgroup in every hierarchy where its directory exists; `None` if in none.
    pub(super) fn open(hierarchies: &[Hierarchy], rel: &str) -> Option<Self> {
        let dirs: Vec<_> = hierarchies
            .iter()
            .map(|h| (h.clone(), h.mountpoint.join(rel)))
            .filter(|(_, d)| d.is_dir())
            .collect();
        (!dirs.is_empty()).then_some(V1Cgroup { dirs })
    }

    pub(super) fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| h.has(controller))
            .map(|(_, d)| d.as_path())
    }

    fn need(&self, controller: &str, resource: &str) -> Result<&Path> {
        self.dir(controller)
            .ok_or_else(|| missing(controller, resource))
    }

    pub(super) fn add_process(&self, pid: i32) -> Result<()> {
        for (_, dir) in &self.dirs {
            write_value(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    pub(super) fn apply(&self, r: &LinuxResources) -> Result<()> {
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(invalid(
                "unified",
                "unified resources need a cgroup v2 host",
            ));
        }
        warn_ignored(r);
        if let Some(cpu) = r.cpu() {
            self.apply_cpu(cpu)?;
        }
        if let Some(memory) = r.memory() {
            self.apply_memory(memory)?;
        }
        if let Some(pids) = r.pids() {
            let dir = self.need("pids", "pids.limit")?;
            write_value(&dir.join("pids.max"), &pids_max(pids.limit()))?;
        }
        if let Some(rules) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            let dir = self.need("devices", "device rules")?;
            for rule in rules {
                if let Some((file, line)) = device_rule(rule) {
                    write_value(&dir.join(file), &line)?;
                }
            }
        }
        if let Some(blkio) = r.block_io() {
            self.apply_blkio(blkio)?;
        }
        for limit in r.hugepage_limits().iter().flatten() {
            let dir = self.need("hugetlb", "hugepage limits")?;
            let size = super::v2::page_size(limit.page_size())?;
            write_value(
                &dir.join(format!("hugetlb.{size}.limit_in_bytes")),
                &limit.limit().to_string(),
            )?;
        }
        if let Some(net) = r.network() {
            if let Some(class_id) = net.class_id() {
                let dir = self.need("net_cls", "network.classID")?;
                write_value(&dir.join("net_cls.classid"), &class_id.to_string())?;
            }
            for prio in net.priorities().iter().flatten() {
                let dir = self.need("net_prio", "network.priorities")?;
                write_value(
                    &dir.join("net_prio.ifpriomap"),
                    &format!("{} {}", prio.name(), prio.priority()),
                )?;
            }
        }
        for (device, limits) in r.rdma().iter().flatten() {
            let dir = self.need("rdma", "rdma limits")?;
            write_value(&dir.join("rdma.max"), &super::v2::rdma_line(device, limits))?;
        }
        Ok(())
    }

    fn apply_memory(&self, m: &LinuxMemory) -> Result<()> {
        let limit = m.limit().filter(|v| *v != 0);
        let mut swap = m.swap().filter(|v| *v != 0);
        let reservation = m.reservation().filter(|v| *v != 0);
        if limit.is_none()
            && swap.is_none()
            && reservation.is_none()
            && m.swappiness().is_none()
            && m.disable_oom_killer().is_none()
        {
            return Ok(());
        }
        check_memory(limit, swap)?;
        let dir = self.need("memory", "memory limits")?;
        let limit_file = dir.join("memory.limit_in_bytes");
        let memsw_file = dir.join("memory.memsw.limit_in_bytes");
        // Unlimited memory with swap left out means unlimited swap too (as runc), and it
        // must be raised first or the kernel refuses the memory limit above it.
        if limit == Some(-1) && swap.is_none() && memsw_file.exists() {
            swap = Some(-1);
        }
        if swap.is_some() && !memsw_file.exists() {
            return Err(invalid(
                "memory.swap",
                format!(
                    "{} does not exist: the kernel has no swap accounting (boot with swapaccount=1)",
                    memsw_file.display()
                ),
            ));
        }
        match (limit, swap) {
            (Some(limit), Some(swap)) => {
                // The kernel keeps memory <= memory+swap at every step: raise memsw first
                // when it grows past the current memory limit, else lower memory first.
                let current = parse_u64(&limit_file, &read_string(&limit_file)?)?;
                if swap_first(current, swap) {
                    write_value(&memsw_file, &swap.to_string())?;
                    write_value(&limit_file, &limit.to_string())?;
                } else {
                    write_value(&limit_file, &limit.to_string())?;
                    write_value(&memsw_file, &swap.to_string())?;
                }
            }
            (Some(limit), None) => write_value(&limit_file, &limit.to_string())?,
            (None, Some(swap)) => write_value(&memsw_file, &swap.to_string())?,
            (None, None) => {}
        }
        if let Some(reservation) = reservation {
            write_value(
                &dir.join("memory.soft_limit_in_bytes"),
                &reservation.to_string(),
            )?;
        }
        if let Some(swappiness) = m.swappiness() {
            if swappiness > 100 {
                return Err(invalid(
                    "memory.swappiness",
                    format!("{swappiness} is not between 0 and 100"),
                ));
            }
            write_value(&dir.join("memory.swappiness"), &swappiness.to_string())?;
        }
        if let Some(disable) = m.disable_oom_killer() {
            write_value(
                &dir.join("memory.oom_control"),
                if disable { "1" } else { "0" },
            )?;
        }
        Ok(())
    }

    fn apply_cpu(&self, c: &LinuxCpu) -> Result<()> {
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_some() || mems.is_some() {
            let dir = self.need("cpuset", "cpu.cpus/cpu.mems")?;
            if let Some(mems) = mems {
                write_value(&dir.join("cpuset.mems"), mems)?;
            }
            if let Some(cpus) = cpus {
                write_value(&dir.join("cpuset.cpus"), cpus)?;
            }
        }
        let shares = c.shares().filter(|v| *v != 0);
        let quota = c.quota().filter(|v| *v != 0);
        let period = c.period().filter(|v| *v != 0);
        if shares.is_none()
            && quota.is_none()
            && period.is_none()
            && c.burst().is_none()
            && c.idle().is_none()
            && c.realtime_period().is_none()
            && c.realtime_runtime().is_none()
        {
            return Ok(());
        }
        let dir = self.need("cpu", "cpu shares, quota and period")?;
        if let Some(shares) = shares {
            write_value(&dir.join("cpu.shares"), &shares.to_string())?;
        }
        // A period shorter than the current one can be refused (EINVAL) while the old quota
        // is in place; then it is written again after the quota, as runc does.
        let period_file = dir.join("cpu.cfs_period_us");
        let mut period_again = None;
        if let Some(period) = period {
            match write_value(&period_file, &period.to_string()) {
                Ok(()) => {}
                Err(CgroupError::Write { source, .. })
                    if quota.is_some()
                        && source.raw_os_error() == Some(Errno::INVAL.raw_os_error()) =>
                {
                    period_again = Some(period);
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(quota) = quota {
            write_value(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            if let Some(period) = period_again {
                write_value(&period_file, &period.to_string())?;
            }
        }
        if let Some(burst) = c.burst() {
            write_value(&dir.join("cpu.cfs_burst_us"), &burst.to_string())?;
        }
        if let Some(idle) = c.idle() {
            write_value(&dir.join("cpu.idle"), &idle.to_string())?;
        }
        if let Some(period) = c.realtime_period() {
            write_value(&dir.join("cpu.rt_period_us"), &period.to_string())?;
        }
        if let Some(runtime) = c.realtime_runtime() {
            write_value(&dir.join("cpu.rt_runtime_us"), &runtime.to_string())?;
        }
        Ok(())
    }

    fn apply_blkio(&self, b: &LinuxBlockIo) -> Result<()> {
        let weight = b.weight().filter(|w| *w != 0);
        let weight_devices = b.weight_device().as_deref().unwrap_or_default();
        let throttles = [
            (
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        let any_throttle = throttles
            .iter()
            .any(|(_, t)| t.as_ref().is_some_and(|t| !t.is_empty()));
        if weight.is_none() && weight_devices.is_empty() && !any_throttle {
            return Ok(());
        }
        let dir = self.need("blkio", "blockIO")?;
        if weight.is_some() || !weight_devices.is_empty() {
            // CFQ had blkio.weight; with BFQ it is blkio.bfq.weight; other schedulers
            // (mq-deadline, none) have no weights at all, which Docker also just warns about.
            let prefix = ["blkio", "blkio.bfq"]
                .into_iter()
                .find(|p| dir.join(format!("{p}.weight")).exists());
            match prefix {
                None => tracing::warn!(
                    dir = %dir.display(),
                    "the kernel's I/O scheduler has no blkio weights; blockIO weight not applied"
                ),
                Some(prefix) => {
                    if let Some(weight) = weight {
                        write_value(&dir.join(format!("{prefix}.weight")), &weight.to_string())?;
                    }
                    for wd in weight_devices {
                        if let Some(w) = wd.weight() {
                            let line = format!("{}:{} {w}", wd.major(), wd.minor());
                            write_value(&dir.join(format!("{prefix}.weight_device")), &line)?;
                        }
                    }
                }
            }
        }
        for (file, devices) in throttles {
            for t in devices.iter().flatten() {
                write_value(
                    &dir.join(file),
                    &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn oom_kill_count(&self) -> Result<u64> {
        let path = self
            .need("memory", "the OOM kill count")?
            .join("memory.oom_control");
        let text = read_string(&path)?;
        keyed(&text, "oom_kill").ok_or(CgroupError::Parse {
            path,
            content: text,
        })
    }

    /// Writes FROZEN until `freezer.state` reads FROZEN (it reads FREEZING while tasks are
    /// still being stopped), thawing now and then so that a forking workload cannot keep
    /// it from settling, as runc does. Gives up (thawed) after about a second.
    pub(super) fn freeze(&self) -> Result<()> {
        let state = self.need("freezer", "freeze")?.join("freezer.state");
        let start = std::time::Instant::now();
        let mut last = String::new();
        for i in 0..1000 {
            if i % 50 == 49 {
                write_value(&state, "THAWED")?;
                thread::sleep(Duration::from_millis(10));
            }
            write_value(&state, "FROZEN")?;
            last = read_string(&state)?.trim().to_owned();
            match last.as_str() {
                "FROZEN" => return Ok(()),
                "FREEZING" => thread::sleep(Duration::from_millis(1)),
                _ => {
                    return Err(CgroupError::Parse {
                        path: state,
                        content: last,
                    });
                }
            }
        }
        write_value(&state, "THAWED")?;
        Err(CgroupError::Timeout {
            path: state,
            want: "FROZEN".into(),
            waited: start.elapsed(),
            last,
        })
    }

    pub(super) fn thaw(&self) -> Result<()> {
        let state = self.need("freezer", "thaw")?.join("freezer.state");
        write_value(&state, "THAWED")?;
        poll_until(&state, "THAWED", Duration::from_secs(1), |s| {
            s.trim() == "THAWED"
        })
    }

    /// Freezes (if there is a freezer), SIGKILLs every process, thaws so they can die.
    pub(super) fn kill_all(&self) -> Result<()> {
        let has_freezer = self.dir("freezer").is_some();
        if has_freezer && let Err(e) = self.freeze() {
            tracing::warn!(error = %e, "could not freeze the cgroup before killing it");
        }
        let mut pids = BTreeSet::new();
        let mut result = Ok(());
        for (_, dir) in &self.dirs {
            if let Err(e) = procs_recursive(dir, &mut pids) {
                result = Err(e);
            }
        }
        let pids: Vec<i32> = pids.into_iter().collect();
        let killed = kill_pids(&pids, &self.dirs[0].1);
        if has_freezer {
            self.thaw()?;
        }
        result.and(killed)
    }

    pub(super) fn stats(&self) -> Result<CgroupStats> {
        let mut stats = CgroupStats::default();
        if let Some(dir) = self.dir("memory") {
            if let Some(usage) = read_u64_opt(&dir.join("memory.usage_in_bytes"))? {
                let inactive = read_opt(&dir.join("memory.stat"))?
                    .and_then(|t| keyed(&t, "total_inactive_file"))
                    .unwrap_or(0);
                stats.memory_usage = usage.saturating_sub(inactive);
            }
            stats.memory_limit =
                read_u64_opt(&dir.join("memory.limit_in_bytes"))?.filter(|l| *l < UNLIMITED);
        }
        if let Some(dir) = self.dir("cpuacct") {
            stats.cpu_usage_ns = read_u64_opt(&dir.join("cpuacct.usage"))?.unwrap_or(0);
        }
        if let Some(dir) = self.dir("pids") {
            stats.pids_current = read_u64_opt(&dir.join("pids.current"))?.unwrap_or(0);
            stats.pids_limit = read_max_opt(&dir.join("pids.max"))?;
        }
        Ok(stats)
    }
}

/// The blkio files that count bytes per device and operation, in the order runc reads them:
/// the I/O schedulers' own accounting (CFQ, BFQ) counts only devices they schedule, so a
/// file that lists no device says nothing and the next one is tried; the throttle layer
/// sees every device.
const IO_SERVICE_BYTES: [&str; 3] = [
    "blkio.io_service_bytes_recursive",
    "blkio.bfq.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes_recursive",
];

impl V1Cgroup {
    pub(super) fn io_stats(&self) -> Result<IoStats> {
        let Some(dir) = self.dir("blkio") else {
            return Ok(IoStats::default());
        };
        for file in IO_SERVICE_BYTES {
            let path = dir.join(file);
            if let Some(text) = read_opt(&path)?
                && let Some(stats) = parse_io_service_bytes(&path, &text)?
            {
                return Ok(stats);
            }
        }
        Ok(IoStats::default())
    }
}

/// The `Read` and `Write` lines of an `io_service_bytes` file (`8:0 Read 4096`, one line
/// per device and operation, then `Total N`); `None` when it lists no device.
pub(super) fn parse_io_service_bytes(path: &Path, text: &str) -> Result<Option<IoStats>> {
    let mut stats = IoStats::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, op, value] = fields[..] else {
            // `Total N`, the only line without a device, and blank lines.
            continue;
        };
        let Some(entry) = stats.device(device) else {
            continue;
        };
        let value = parse_u64(path, value)?;
        match op {
            "Read" => entry.read_bytes = entry.read_bytes.saturating_add(value),
            "Write" => entry.write_bytes = entry.write_bytes.saturating_add(value),
            _ => {}
        }
    }
    Ok((!stats.devices.is_empty()).then_some(stats))
}

/// A new cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and refuses
/// processes until both are set: copy them from the parent.
fn copy_cpuset(parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if read_string(&dir.join(file))?.trim().is_empty() {
            let value = read_string(&parent.join(file))?;
            write_value(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// `memory+swap >= memory`, both `-1` (unlimited) or positive.
pub(super) fn check_memory(limit: Option<i64>, swap: Option<i64>) -> Result<()> {
    if let Some(l) = limit.filter(|l| *l < -1) {
        return Err(invalid("memory.limit", format!("{l} is negative")));
    }
    if let Some(s) = swap.filter(|s| *s < -1) {
        return Err(invalid("memory.swap", format!("{s} is negative")));
    }
    if let (Some(l), Some(s)) = (limit, swap)
        && l > 0
        && s > 0
        && s < l
    {
        return Err(invalid(
            "memory.swap",
            format!("the memory+swap limit {s} is below the memory limit {l}"),
        ));
    }
    Ok(())
}

/// Whether `memory.memsw.limit_in_bytes` must be written before `memory.limit_in_bytes`:
/// when the new memory+swap limit is unlimited or not below the current memory limit
/// (raising). Otherwise (lowering) memory goes first.
pub(super) fn swap_first(current_limit: u64, new_swap: i64) -> bool {
    new_swap == -1 || u64::try_from(new_swap).is_ok_and(|s| s >= current_limit)
}

/// `pids.max`: a positive limit, or `max` for `-1`/`0`.
pub(super) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

/// The file and line for one device rule: `("devices.allow", "c 1:3 rwm")`, `"a"` for all
/// devices. FIFO rules (type `p`) are not device-cgroup rules and give `None`.
pub(super) fn device_rule(rule: &LinuxDeviceCgroup) -> Option<(&'static str, String)> {
    let file = if rule.allow() {
        "devices.allow"
    } else {
        "devices.deny"
    };
    let kind = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => return Some((file, "a".to_owned())),
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        LinuxDeviceType::P => return None,
    };
    let number = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or_else(|| "*".to_owned(), |n| n.to_string())
    };
    let access = rule
        .access()
        .as_deref()
        .filter(|a| !a.is_empty())
        .unwrap_or("rwm");
    Some((
        file,
        format!(
            "{kind} {}:{} {access}",
            number(rule.major()),
            number(rule.minor())
        ),
    ))
}

/// One v1 hierarchy in the container's view of `/sys/fs/cgroup`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ViewEntry {
    /// The directory name under the tmpfs: the host mount point's name.
    pub(super) dir: String,
    /// The `cgroup` mount data: its controllers (`cpu,cpuacct`, `name=systemd`).
    pub(super) options: String,
    /// Symlinks to `dir`, one per co-mounted controller named otherwise (`cpu`, `cpuacct`).
    pub(super) links: Vec<String>,
}

pub(super) fn view_entries(hierarchies: &[Hierarchy]) -> Vec<ViewEntry> {
    let mut entries: Vec<ViewEntry> = hierarchies
        .iter()
        .map(|h| {
            let fallback = || {
                h.controllers
                    .iter()
                    .map(|c| c.strip_prefix("name=").unwrap_or(c))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let dir = h
                .mountpoint
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty())
                .map_or_else(fallback, str::to_owned);
            let links = h
                .controllers
                .iter()
                .filter(|c| !c.starts_with("name=") && **c != dir)
                .cloned()
                .collect();
            ViewEntry {
                dir,
                options: h.controllers.join(","),
                links,
            }
        })
        .collect();
    let dirs: Vec<String> = entries.iter().map(|e| e.dir.clone()).collect();
    for entry in &mut entries {
        entry.links.retain(|l| !dirs.contains(l));
    }
    entries
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
    };

    use super::*;
    use crate::cgroups::{Cgroup, DeviceIo, Layout};

    /// Control files of each fake hierarchy, with their initial content at the root.
    fn files(controllers: &[&str]) -> Vec<(&'static str, &'static str)> {
        let mut out = vec![("cgroup.procs", ""), ("tasks", "")];
        for c in controllers {
            out.extend(match *c {
                "memory" => vec![
                    ("memory.limit_in_bytes", "9223372036854771712"),
                    ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                    ("memory.soft_limit_in_bytes", "9223372036854771712"),
                    ("memory.swappiness", "60"),
                    (
                        "memory.oom_control",
                        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                    ),
                    ("memory.usage_in_bytes", "0"),
                    ("memory.stat", "cache 0\ntotal_inactive_file 0\n"),
                ],
                "cpu" => vec![
                    ("cpu.shares", "1024"),
                    ("cpu.cfs_quota_us", "-1"),
                    ("cpu.cfs_period_us", "100000"),
                    ("cpu.cfs_burst_us", "0"),
                ],
                "cpuacct" => vec![("cpuacct.usage", "0")],
                "cpuset" => vec![("cpuset.cpus", "0-3"), ("cpuset.mems", "0")],
                "pids" => vec![("pids.max", "max"), ("pids.current", "0")],
                "devices" => vec![
                    ("devices.allow", ""),
                    ("devices.deny", ""),
                    ("devices.list", "a *:* rwm"),
                ],
                "freezer" => vec![("freezer.state", "THAWED")],
                "blkio" => vec![
                    ("blkio.throttle.read_bps_device", ""),
                    ("blkio.throttle.write_iops_device", ""),
                ],
                _ => vec![],
            });
        }
        out
    }

    /// A fake v1 root: `cpu,cpuacct` co-mounted, a named systemd hierarchy, and `berth/c1`
    /// made in each hierarchy with its files (as the kernel would on mkdir; cpuset files
    /// of new cgroups start empty). `skip` leaves hierarchies out.
    fn fake_root(root: &Path, skip: &[&str]) -> Layout {
        let all: &[(&str, &[&str])] = &[
            ("memory", &["memory"]),
            ("cpu,cpuacct", &["cpu", "cpuacct"]),
            ("cpuset", &["cpuset"]),
            ("pids", &["pids"]),
            ("devices", &["devices"]),
            ("freezer", &["freezer"]),
            ("blkio", &["blkio"]),
            ("systemd", &["name=systemd"]),
        ];
        let mut hierarchies = Vec::new();
        for (dir, controllers) in all.iter().filter(|(d, _)| !skip.contains(d)) {
            let mountpoint = root.join(dir);
            for (i, level) in [
                mountpoint.clone(),
                mountpoint.join("berth"),
                mountpoint.join("berth/c1"),
            ]
            .iter()
            .enumerate()
            {
                fs::create_dir_all(level).unwrap();
                for (file, content) in files(controllers) {
                    let content = if i > 0 && file.starts_with("cpuset.") {
                        ""
                    } else {
                        content
                    };
                    fs::write(level.join(file), content).unwrap();
                }
            }
            hierarchies.push(Hierarchy {
                mountpoint,
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
            });
        }
        Layout::V1(hierarchies)
    }

    fn read(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn create_writes_every_resource_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layout = fake_root(root, &[]);
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32i64 << 20)
                    .swap(64i64 << 20)
                    .reservation(16i64 << 20)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50000i64)
                    .period(100000u64)
                    .cpus("1")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .unwrap(),
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(1i64)
                    .minor(3i64)
                    .access("rwm")
                    .build()
                    .unwrap(),
            ])
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .throttle_read_bps_device(vec![
                        LinuxThrottleDeviceBuilder::default()
                            .major(8i64)
                            .minor(0i64)
                            .rate(1048576u64)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let cg = Cgroup::create_in(&layout, "/berth/c1", &resources).unwrap();
        assert_eq!(cg.path(), "berth/c1");
        let mem = root.join("memory/berth/c1");
        assert_eq!(read(mem.join("memory.limit_in_bytes")), "33554432");
        assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "67108864");
        assert_eq!(read(mem.join("memory.soft_limit_in_bytes")), "16777216");
        assert_eq!(read(mem.join("memory.swappiness")), "10");
        assert_eq!(read(mem.join("memory.oom_control")), "1");
        let cpu = root.join("cpu,cpuacct/berth/c1");
        assert_eq!(read(cpu.join("cpu.shares")), "512");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        // cpuset: the middle level got the root's values copied down, the leaf its own cpus.
        assert_eq!(read(root.join("cpuset/berth/cpuset.cpus")), "0-3");
        assert_eq!(read(root.join("cpuset/berth/cpuset.mems")), "0");
        assert_eq!(read(root.join("cpuset/berth/c1/cpuset.cpus")), "1");
        assert_eq!(read(root.join("cpuset/berth/c1/cpuset.mems")), "0");
        assert_eq!(read(root.join("pids/berth/c1/pids.max")), "10");
        assert_eq!(read(root.join("devices/berth/c1/devices.deny")), "a");
        assert_eq!(
            read(root.join("devices/berth/c1/devices.allow")),
            "c 1:3 rwm"
        );
        // No weight file on this (fake) kernel: weight skipped with a warning; throttles written.
        assert_eq!(
            read(root.join("blkio/berth/c1/blkio.throttle.read_bps_device")),
            "8:0 1048576"
        );
        assert_eq!(cg.paths().len(), 8);
        assert!(cg.paths().contains(&root.join("systemd/berth/c1")));
    }

    #[test]
    fn missing_controller_is_an_error_only_when_asked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), &["pids", "cpuset"]);
        let pids = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5i64).build().unwrap())
            .build()
            .unwrap();
        let err = Cgroup::create_in(&layout, "berth/c1", &pids).unwrap_err();
        assert!(
            matches!(&err, CgroupError::MissingController { controller, .. } if controller == "pids"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "pids.limit needs the pids cgroup controller, which this host does not provide"
        );
        let cpus = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("0").build().unwrap())
            .build()
            .unwrap();
        let err = Cgroup::create_in(&layout, "berth/c1", &cpus).unwrap_err();
        assert!(
            err.to_string().contains("cpuset cgroup controller"),
            "{err}"
        );
        let memory = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        Cgroup::create_in(&layout, "berth/c1", &memory).unwrap();
    }

    #[test]
    fn memory_swap_rules() {
        // Raising (new swap not below the current limit, or unlimited): memsw first.
        assert!(swap_first(32 << 20, 64 << 20));
        assert!(swap_first(32 << 20, 32 << 20));
        assert!(swap_first(9223372036854771712, -1));
        // Lowering below the current limit: memory first.
        assert!(!swap_first(9223372036854771712, 64 << 20));
        assert!(!swap_first(128 << 20, 64 << 20));
        check_memory(Some(32), Some(64)).unwrap();
        check_memory(Some(32), Some(-1)).unwrap();
        check_memory(Some(-1), None).unwrap();
        let err = check_memory(Some(64), Some(32)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid memory.swap: the memory+swap limit 32 is below the memory limit 64"
        );
        assert!(check_memory(Some(-2), None).is_err());
    }

    #[test]
    fn unlimited_memory_also_unlimits_swap_and_missing_memsw_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), &[]);
        let mem = tmp.path().join("memory/berth/c1");
        fs::write(mem.join("memory.memsw.limit_in_bytes"), "67108864").unwrap();
        let unlimited = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        Cgroup::create_in(&layout, "berth/c1", &unlimited).unwrap();
        assert_eq!(read(mem.join("memory.limit_in_bytes")), "-1");
        assert_eq!(read(mem.join("memory.memsw.limit_in_bytes")), "-1");

        fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
        let swap = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 20)
                    .swap(2i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = Cgroup::open_in(&layout, "berth/c1")
            .unwrap()
            .update(&swap)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("memory.memsw.limit_in_bytes does not exist"),
            "{err}"
        );
    }

    #[test]
    fn pids_and_device_rule_values() {
        assert_eq!(pids_max(10), "10");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
        let rule = |allow: bool,
                    typ: Option<LinuxDeviceType>,
                    major: Option<i64>,
                    minor: Option<i64>,
                    access: &str| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .access(access);
            if let Some(t) = typ {
                b = b.typ(t);
            }
            if let Some(m) = major {
                b = b.major(m);
            }
            if let Some(m) = minor {
                b = b.minor(m);
            }
            device_rule(&b.build().unwrap())
        };
        assert_eq!(
            rule(false, None, None, None, "rwm"),
            Some(("devices.deny", "a".into()))
        );
        assert_eq!(
            rule(true, Some(LinuxDeviceType::A), None, None, ""),
            Some(("devices.allow", "a".into()))
        );
        assert_eq!(
            rule(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rwm"),
            Some(("devices.allow", "c 1:3 rwm".into()))
        );
        assert_eq!(
            rule(true, Some(LinuxDeviceType::C), Some(136), None, "rw"),
            Some(("devices.allow", "c 136:* rw".into()))
        );
        assert_eq!(
            rule(false, Some(LinuxDeviceType::B), Some(8), Some(0), ""),
            Some(("devices.deny", "b 8:0 rwm".into()))
        );
        assert_eq!(
            rule(true, Some(LinuxDeviceType::U), Some(5), Some(1), "m"),
            Some(("devices.allow", "c 5:1 m".into()))
        );
        assert_eq!(
            rule(true, Some(LinuxDeviceType::P), None, None, "rwm"),
            None
        );
    }

    #[test]
    fn io_stats_take_the_first_file_that_lists_a_device() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), &[]);
        let cg = Cgroup::open_in(&layout, "berth/c1").unwrap();
        let dir = tmp.path().join("blkio/berth/c1");
        // No accounting file at all: zeros.
        assert_eq!(cg.io_stats().unwrap(), IoStats::default());
        // BFQ lists no device (the disk has another scheduler): the throttle file counts.
        fs::write(
            dir.join("blkio.bfq.io_service_bytes_recursive"),
            "Total 0\n",
        )
        .unwrap();
        fs::write(
            dir.join("blkio.throttle.io_service_bytes_recursive"),
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Async 0\n8:0 Discard 7\n\
             8:0 Total 4608\n253:1 Read 1000\n253:1 Write 24\nTotal 5632\n",
        )
        .unwrap();
        assert_eq!(
            cg.io_stats().unwrap(),
            IoStats {
                devices: vec![
                    DeviceIo {
                        major: 8,
                        minor: 0,
                        read_bytes: 4096,
                        write_bytes: 512
                    },
                    DeviceIo {
                        major: 253,
                        minor: 1,
                        read_bytes: 1000,
                        write_bytes: 24
                    },
                ]
            }
        );
        fs::write(
            dir.join("blkio.bfq.io_service_bytes_recursive"),
            "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
        )
        .unwrap();
        assert_eq!(
            cg.io_stats().unwrap(),
            IoStats {
                devices: vec![DeviceIo {
                    major: 8,
                    minor: 0,
                    read_bytes: 1,
                    write_bytes: 2
                }]
            }
        );
        fs::write(
            dir.join("blkio.bfq.io_service_bytes_recursive"),
            "8:0 Read many\n",
        )
        .unwrap();
        let err = cg.io_stats().unwrap_err().to_string();
        assert!(err.starts_with("parse ") && err.contains("many"), "{err}");
    }

    #[test]
    fn stats_oom_and_freezer_on_fake_files() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), &[]);
        let cg = Cgroup::open_in(&layout, "berth/c1").unwrap();
        let mem = tmp.path().join("memory/berth/c1");
        fs::write(mem.join("memory.usage_in_bytes"), "1000000\n").unwrap();
        fs::write(
            mem.join("memory.stat"),
            "cache 5\ntotal_cache 7\ntotal_inactive_file 400000\n",
        )
        .unwrap();
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        fs::write(
            tmp.path().join("cpu,cpuacct/berth/c1/cpuacct.usage"),
            "123456789\n",
        )
        .unwrap();
        fs::write(tmp.path().join("pids/berth/c1/pids.current"), "3\n").unwrap();
        fs::write(tmp.path().join("pids/berth/c1/cgroup.procs"), "10\n11\n").unwrap();
        fs::write(tmp.path().join("memory/berth/c1/cgroup.procs"), "11\n12\n").unwrap();
        let stats = cg.stats().unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                memory_usage: 600000,
                memory_limit: None,
                cpu_usage_ns: 123456789,
                pids_current: 3,
                pids_limit: None,
            }
        );
        fs::write(mem.join("memory.limit_in_bytes"), "33554432\n").unwrap();
        assert_eq!(cg.stats().unwrap().memory_limit, Some(33554432));
        assert_eq!(cg.oom_kill_count().unwrap(), 3);
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        )
        .unwrap();
        let err = cg.oom_kill_count().unwrap_err();
        assert!(err.to_string().starts_with("parse "), "{err}");
        assert_eq!(cg.pids().unwrap(), vec![10, 11, 12]);
        cg.freeze().unwrap();
        assert_eq!(
            read(tmp.path().join("freezer/berth/c1/freezer.state")),
            "FROZEN"
        );
        cg.thaw().unwrap();
        assert_eq!(
            read(tmp.path().join("freezer/berth/c1/freezer.state")),
            "THAWED"
        );
        cg.add_process(42).unwrap();
        assert_eq!(read(tmp.path().join("systemd/berth/c1/cgroup.procs")), "42");
    }

    #[test]
    fn container_view_names_and_links() {
        let h = |mp: &str, c: &[&str]| Hierarchy {
            mountpoint: PathBuf::from(mp),
            controllers: c.iter().map(|s| s.to_string()).collect(),
        };
        let entries = view_entries(&[
            h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"]),
            h("/sys/fs/cgroup/memory", &["memory"]),
            h("/sys/fs/cgroup/net_cls,net_prio", &["net_cls", "net_prio"]),
            h("/sys/fs/cgroup/systemd", &["name=systemd"]),
        ]);
        let want = |dir: &str, options: &str, links: &[&str]| ViewEntry {
            dir: dir.into(),
            options: options.into(),
            links: links.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            entries,
            vec![
                want("cpu,cpuacct", "cpu,cpuacct", &["cpu", "cpuacct"]),
                want("memory", "memory", &[]),
                want(
                    "net_cls,net_prio",
                    "net_cls,net_prio",
                    &["net_cls", "net_prio"]
                ),
                want("systemd", "name=systemd", &[]),
            ]
        );
    }
}
