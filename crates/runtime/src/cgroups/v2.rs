//! cgroup v2: the container's cgroup is one directory of the unified hierarchy.
//!
//! What to write where is decided by [`plan`], a pure function of the resources; applying
//! it checks each file's controller against the cgroup's `cgroup.controllers` and writes.
//! Device rules are **not enforced** on v2 (that needs an eBPF program); see the module
//! documentation of `cgroups`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Once,
    time::Duration,
};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxRdma, LinuxResources};

use super::{
    CgroupStats, IoStats, Result, create_dir, invalid, keyed, kill_pids, missing, poll_until,
    procs_recursive, read_max_opt, read_opt, read_string, read_u64_opt, warn_ignored, write_value,
};

/// How long freeze and thaw wait for `cgroup.events` to report the new state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

static DEVICES_WARNING: Once = Once::new();

#[derive(Debug)]
pub(super) struct V2Cgroup {
    dir: PathBuf,
}

/// One file write decided by [`plan`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Write {
    /// The controller the file belongs to; `None` for raw `unified` keys.
    pub(super) controller: Option<&'static str>,
    /// The OCI resource it comes from, for errors.
    pub(super) resource: &'static str,
    /// The file, relative to the cgroup directory.
    pub(super) file: String,
    /// What to write.
    pub(super) value: String,
    /// Skip (with a log line) instead of failing when the file does not exist.
    pub(super) optional: bool,
}

impl V2Cgroup {
    pub(super) fn create(root: &Path, comps: &[&str], resources: &LinuxResources) -> Result<Self> {
        let mut made = None;
        let result = (|| {
            let mut dir = root.to_owned();
            for (i, comp) in comps.iter().enumerate() {
                enable_controllers(&dir)?;
                dir.push(comp);
                if create_dir(&dir)? && i + 1 == comps.len() {
                    made = Some(dir.clone());
                }
            }
            let cgroup = V2Cgroup { dir };
            cgroup.apply(resources)?;
            Ok(cgroup)
        })();
        if let (Err(_), Some(dir)) = (&result, made) {
            let _ = std::fs::remove_dir(dir);
        }
        result
    }

    pub(super) fn open(root: &Path, rel: &str) -> Option<Self> {
        let dir = root.join(rel);
        dir.is_dir().then_some(V2Cgroup { dir })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn add_process(&self, pid: i32) -> Result<()> {
        write_value(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    pub(super) fn apply(&self, r: &LinuxResources) -> Result<()> {
        warn_ignored(r);
        let writes = plan(r)?;
        let controllers_file = self.dir.join("cgroup.controllers");
        let controllers = read_string(&controllers_file)?;
        let available: BTreeSet<&str> = controllers.split_whitespace().collect();
        for w in &writes {
            if let Some(controller) = w.controller
                && !available.contains(controller)
            {
                return Err(missing(controller, w.resource));
            }
        }
        for w in writes {
            let path = self.dir.join(&w.file);
            if w.optional && !path.exists() {
                tracing::warn!(file = %path.display(), value = %w.value, "{} not applied: the kernel has no such file", w.resource);
                continue;
            }
            write_value(&path, &w.value)?;
        }
        if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
            DEVICES_WARNING.call_once(|| {
                tracing::warn!("device rules are not enforced on cgroup v2 (they need an eBPF program berth does not load yet)");
            });
        }
        Ok(())
    }

    pub(super) fn oom_kill_count(&self) -> Result<u64> {
        let path = self.dir.join("memory.events");
        let text = read_string(&path)?;
        keyed(&text, "oom_kill").ok_or(super::CgroupError::Parse {
            path,
            content: text,
        })
    }

    pub(super) fn freeze(&self) -> Result<()> {
        write_value(&self.dir.join("cgroup.freeze"), "1")?;
        let events = self.dir.join("cgroup.events");
        let waited = poll_until(&events, "frozen 1", FREEZE_TIMEOUT, |t| {
            keyed(t, "frozen") == Some(1)
        });
        if waited.is_err() {
            let _ = write_value(&self.dir.join("cgroup.freeze"), "0");
        }
        waited
    }

    pub(super) fn thaw(&self) -> Result<()> {
        write_value(&self.dir.join("cgroup.freeze"), "0")?;
        let events = self.dir.join("cgroup.events");
        poll_until(&events, "frozen 0", FREEZE_TIMEOUT, |t| {
            keyed(t, "frozen") == Some(0)
        })
    }

    /// `cgroup.kill` (Linux 5.14) kills the whole subtree at once; without it, freeze,
    /// SIGKILL each process, thaw.
    pub(super) fn kill_all(&self) -> Result<()> {
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            return write_value(&kill, "1");
        }
        if let Err(e) = self.freeze() {
            tracing::warn!(error = %e, "could not freeze the cgroup before killing it");
        }
        let mut pids = BTreeSet::new();
        let listed = procs_recursive(&self.dir, &mut pids);
        let killed = kill_pids(&pids.into_iter().collect::<Vec<_>>(), &self.dir);
        self.thaw()?;
        listed.and(killed)
    }

    pub(super) fn stats(&self) -> Result<CgroupStats> {
        let d = &self.dir;
        let mut stats = CgroupStats::default();
        if let Some(current) = read_u64_opt(&d.join("memory.current"))? {
            let inactive = read_opt(&d.join("memory.stat"))?
                .and_then(|t| keyed(&t, "inactive_file"))
                .unwrap_or(0);
            stats.memory_usage = current.saturating_sub(inactive);
        }
        stats.memory_limit = read_max_opt(&d.join("memory.max"))?;
        stats.cpu_usage_ns = read_opt(&d.join("cpu.stat"))?
            .and_then(|t| keyed(&t, "usage_usec"))
            .map_or(0, |us| us.saturating_mul(1000));
        stats.pids_current = read_u64_opt(&d.join("pids.current"))?.unwrap_or(0);
        stats.pids_limit = read_max_opt(&d.join("pids.max"))?;
        Ok(stats)
    }
}

impl V2Cgroup {
    pub(super) fn io_stats(&self) -> Result<IoStats> {
        let path = self.dir.join("io.stat");
        Ok(read_opt(&path)?.map_or_else(IoStats::default, |t| parse_io_stat(&t)))
    }
}

/// `rbytes=` and `wbytes=` of each device of `io.stat`
/// (`8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0`, one line per device).
pub(super) fn parse_io_stat(text: &str) -> IoStats {
    let mut stats = IoStats::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(entry) = fields.next().and_then(|d| stats.device(d)) else {
            continue;
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "rbytes" => entry.read_bytes = entry.read_bytes.saturating_add(value),
                "wbytes" => entry.write_bytes = entry.write_bytes.saturating_add(value),
                _ => {}
            }
        }
    }
    stats
}

/// Enables in `parent/cgroup.subtree_control` every controller of `parent/cgroup.controllers`
/// not yet enabled: all in one write, or one by one if that fails (a controller that cannot
/// be enabled is logged; asking for its resources then fails with a missing controller).
fn enable_controllers(parent: &Path) -> Result<()> {
    let available = read_string(&parent.join("cgroup.controllers"))?;
    let control = parent.join("cgroup.subtree_control");
    let enabled = read_string(&control)?;
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    let wanted: Vec<&str> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(c))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let all = wanted
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if write_value(&control, &all).is_err() {
        for c in wanted {
            if let Err(e) = write_value(&control, &format!("+{c}")) {
                tracing::warn!(error = %e, "cannot enable the {c} cgroup controller");
            }
        }
    }
    Ok(())
}

/// The files to write for `r`, in order.
pub(super) fn plan(r: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    let mut push = |controller, resource, file: &str, value: String| {
        // Without swap accounting there is no memory.swap.max and no swap to limit, so
        // "unlimited swap" already holds.
        let optional = file == "memory.swap.max" && value == "max";
        out.push(Write {
            controller: Some(controller),
            resource,
            file: file.to_owned(),
            value,
            optional,
        });
    };
    if let Some(cpu) = r.cpu() {
        plan_cpu(cpu, &mut push)?;
    }
    if let Some(memory) = r.memory() {
        plan_memory(memory, &mut push)?;
    }
    if let Some(pids) = r.pids() {
        push(
            "pids",
            "pids.limit",
            "pids.max",
            super::v1::pids_max(pids.limit()),
        );
    }
    for limit in r.hugepage_limits().iter().flatten() {
        let size = page_size(limit.page_size())?;
        push(
            "hugetlb",
            "hugepageLimits",
            &format!("hugetlb.{size}.max"),
            max_or(limit.limit()),
        );
    }
    let mut rdma: Vec<_> = r.rdma().iter().flatten().collect();
    rdma.sort_by(|a, b| a.0.cmp(b.0));
    for (device, limits) in rdma {
        push("rdma", "rdma", "rdma.max", rdma_line(device, limits));
    }
    if r.network()
        .as_ref()
        .is_some_and(|n| n.class_id().is_some() || n.priorities().is_some())
    {
        tracing::warn!(
            "network (net_cls/net_prio) resources do not exist on cgroup v2; not applied"
        );
    }
    if let Some(blkio) = r.block_io() {
        plan_io(blkio, &mut out)?;
    }
    let mut unified: Vec<_> = r.unified().iter().flatten().collect();
    unified.sort();
    for (key, value) in unified {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(invalid(
                "unified",
                format!("{key:?} is not a cgroup file name"),
            ));
        }
        out.push(Write {
            controller: None,
            resource: "unified",
            file: key.clone(),
            value: value.clone(),
            optional: false,
        });
    }
    Ok(out)
}

fn plan_memory(
    m: &LinuxMemory,
    push: &mut impl FnMut(&'static str, &'static str, &str, String),
) -> Result<()> {
    let limit = m.limit().filter(|v| *v != 0);
    let swap = m.swap().filter(|v| *v != 0);
    super::v1::check_memory(limit, swap)?;
    if let Some(swap) = swap_max(limit, swap)? {
        push("memory", "memory.swap", "memory.swap.max", swap);
    }
    if let Some(limit) = limit {
        push("memory", "memory.limit", "memory.max", max_or(limit));
    }
    if let Some(reservation) = m.reservation().filter(|v| *v != 0) {
        push(
            "memory",
            "memory.reservation",
            "memory.low",
            max_or(reservation),
        );
    }
    if m.swappiness().is_some() {
        tracing::warn!("memory.swappiness does not exist on cgroup v2; not applied");
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!(
            "the OOM killer cannot be disabled on cgroup v2; disableOOMKiller not applied"
        );
    }
    Ok(())
}

fn plan_cpu(
    c: &LinuxCpu,
    push: &mut impl FnMut(&'static str, &'static str, &str, String),
) -> Result<()> {
    if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
        return Err(invalid(
            "cpu.realtimePeriod/realtimeRuntime",
            "realtime CPU limits do not exist on cgroup v2",
        ));
    }
    if let Some(shares) = c.shares().filter(|s| *s != 0) {
        push(
            "cpu",
            "cpu.shares",
            "cpu.weight",
            cpu_weight(shares).to_string(),
        );
    }
    if let Some(max) = cpu_max(c.quota(), c.period()) {
        push("cpu", "cpu.quota/period", "cpu.max", max);
    }
    if let Some(burst) = c.burst() {
        push("cpu", "cpu.burst", "cpu.max.burst", burst.to_string());
    }
    if let Some(idle) = c.idle() {
        push("cpu", "cpu.idle", "cpu.idle", idle.to_string());
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        push("cpuset", "cpu.cpus", "cpuset.cpus", cpus.to_owned());
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        push("cpuset", "cpu.mems", "cpuset.mems", mems.to_owned());
    }
    Ok(())
}

fn plan_io(b: &LinuxBlockIo, out: &mut Vec<Write>) -> Result<()> {
    let io = |resource, file: &str, value: String, optional| Write {
        controller: Some("io"),
        resource,
        file: file.to_owned(),
        value,
        optional,
    };
    if let Some(weight) = b.weight().filter(|w| *w != 0) {
        out.push(io(
            "blockIO.weight",
            "io.weight",
            io_weight(weight)?.to_string(),
            true,
        ));
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let line = format!("{}:{} {}", wd.major(), wd.minor(), io_weight(w)?);
            out.push(io("blockIO.weightDevice", "io.weight", line, true));
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, devices) in throttles {
        for t in devices.iter().flatten() {
            let line = format!("{}:{} {key}={}", t.major(), t.minor(), t.rate());
            out.push(io("blockIO.throttle", "io.max", line, false));
        }
    }
    Ok(())
}

/// A limit where `-1` (or anything negative) means `max`.
fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_owned()
    } else {
        v.to_string()
    }
}

/// `cpu.weight` from v1 `cpu.shares` (2..=262144 onto 1..=10000), as runc converts it.
pub(super) fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `cpu.max`: `"<quota> <period>"`, `max` for no quota; `None` when neither is set.
pub(super) fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    let quota = quota.filter(|q| *q != 0);
    let period = period.filter(|p| *p != 0);
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut value = quota
        .filter(|q| *q > 0)
        .map_or_else(|| "max".to_owned(), |q| q.to_string());
    if let Some(period) = period {
        value.push_str(&format!(" {period}"));
    }
    Some(value)
}

/// `memory.swap.max` from OCI's memory+swap total: swap minus memory, `max` for `-1` (or
/// for unlimited memory with swap left out). `None` when swap is not set.
pub(super) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    let (memory, swap) = (limit.unwrap_or(0), swap.unwrap_or(0));
    if memory == -1 && swap == 0 {
        return Ok(Some("max".to_owned()));
    }
    match swap {
        0 => Ok(None),
        -1 => Ok(Some("max".to_owned())),
        s if s < -1 => Err(invalid("memory.swap", format!("{s} is negative"))),
        s if memory <= 0 => Err(invalid(
            "memory.swap",
            format!("a memory+swap limit ({s}) needs a memory limit"),
        )),
        s if s < memory => Err(invalid(
            "memory.swap",
            format!("the memory+swap limit {s} is below the memory limit {memory}"),
        )),
        s => Ok(Some((s - memory).to_string())),
    }
}

/// `io.weight` (1..=10000) from a blkio weight (10..=1000), as runc converts it.
pub(super) fn io_weight(weight: u16) -> Result<u64> {
    if !(10..=1000).contains(&weight) {
        return Err(invalid(
            "blockIO.weight",
            format!("{weight} is not between 10 and 1000"),
        ));
    }
    Ok(1 + (u64::from(weight) - 10) * 9999 / 990)
}

/// A hugepage size as used in file names (`2MB`, `1GB`), checked to be one.
pub(super) fn page_size(size: &str) -> Result<&str> {
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            "hugepageLimits.pageSize",
            format!("{size:?} is not a page size like 2MB"),
        ));
    }
    Ok(size)
}

/// An `rdma.max` line: `mlx4_0 hca_handle=2 hca_object=max`.
pub(super) fn rdma_line(device: &str, limits: &LinuxRdma) -> String {
    let n = |v: Option<u32>| v.map_or_else(|| "max".to_owned(), |v| v.to_string());
    format!(
        "{device} hca_handle={} hca_object={}",
        n(limits.hca_handles()),
        n(limits.hca_objects())
    )
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs, path::Path};

    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };

    use super::*;
    use crate::cgroups::{Cgroup, CgroupError, DeviceIo, Layout};

    const CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc\n";

    /// A fake unified root with `berth/c1` and the files the kernel would show.
    fn fake_root(root: &Path, leaf_controllers: &str) -> Layout {
        for dir in [root.to_owned(), root.join("berth")] {
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup.controllers"), CONTROLLERS).unwrap();
            fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
        }
        let leaf = root.join("berth/c1");
        fs::create_dir_all(&leaf).unwrap();
        for (file, content) in [
            ("cgroup.controllers", leaf_controllers),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
            ("cgroup.freeze", "0"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("memory.low", "0"),
            ("memory.current", "0"),
            ("memory.stat", "anon 0\nfile 0\ninactive_file 0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"),
            ("cpu.weight", "100"),
            ("cpu.max", "max 100000"),
            ("cpu.stat", "usage_usec 0\nuser_usec 0\n"),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
            ("pids.max", "max"),
            ("pids.current", "0"),
            ("io.max", ""),
        ] {
            fs::write(leaf.join(file), content).unwrap();
        }
        Layout::V2(root.to_owned())
    }

    fn read(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn value_conversions() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(512), 20);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1), 1);
        assert_eq!(cpu_weight(1 << 20), 10_000);
        assert_eq!(
            cpu_max(Some(50000), Some(100000)).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(cpu_max(Some(50000), None).as_deref(), Some("50000"));
        assert_eq!(
            cpu_max(Some(-1), Some(100000)).as_deref(),
            Some("max 100000")
        );
        assert_eq!(cpu_max(None, Some(250000)).as_deref(), Some("max 250000"));
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(0), Some(0)), None);
        assert_eq!(
            swap_max(Some(32 << 20), Some(64 << 20)).unwrap().as_deref(),
            Some("33554432")
        );
        assert_eq!(
            swap_max(Some(32 << 20), Some(32 << 20)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(
            swap_max(Some(32 << 20), Some(-1)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(swap_max(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(swap_max(Some(32 << 20), None).unwrap(), None);
        assert!(swap_max(None, Some(64 << 20)).is_err());
        assert!(swap_max(Some(64 << 20), Some(32 << 20)).is_err());
        assert_eq!(io_weight(10).unwrap(), 1);
        assert_eq!(io_weight(500).unwrap(), 4950);
        assert_eq!(io_weight(1000).unwrap(), 10000);
        assert!(io_weight(5).is_err());
        assert_eq!(
            rdma_line(
                "mlx4_0",
                &oci_spec::runtime::LinuxRdmaBuilder::default()
                    .hca_handles(2u32)
                    .build()
                    .unwrap()
            ),
            "mlx4_0 hca_handle=2 hca_object=max"
        );
        assert!(page_size("2MB").is_ok());
        assert!(page_size("../x").is_err());
    }

    #[test]
    fn plan_lists_files_in_order() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32i64 << 20)
                    .swap(64i64 << 20)
                    .reservation(-1i64)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50000i64)
                    .period(100000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![
                        LinuxWeightDeviceBuilder::default()
                            .major(8i64)
                            .minor(0i64)
                            .weight(100u16)
                            .build()
                            .unwrap(),
                    ])
                    .throttle_write_iops_device(vec![
                        LinuxThrottleDeviceBuilder::default()
                            .major(8i64)
                            .minor(16i64)
                            .rate(300u64)
                            .build()
                            .unwrap(),
                    ])
                    .build()
                    .unwrap(),
            )
            .unified(HashMap::from([(
                "memory.high".to_owned(),
                "1000000".to_owned(),
            )]))
            .build()
            .unwrap();
        let got: Vec<(Option<&str>, String, String)> = plan(&r)
            .unwrap()
            .into_iter()
            .map(|w| (w.controller, w.file, w.value))
            .collect();
        let want = [
            (Some("cpu"), "cpu.weight", "20"),
            (Some("cpu"), "cpu.max", "50000 100000"),
            (Some("cpuset"), "cpuset.cpus", "0"),
            (Some("cpuset"), "cpuset.mems", "0"),
            (Some("memory"), "memory.swap.max", "33554432"),
            (Some("memory"), "memory.max", "33554432"),
            (Some("memory"), "memory.low", "max"),
            (Some("pids"), "pids.max", "max"),
            (Some("io"), "io.weight", "4950"),
            (Some("io"), "io.weight", "8:0 910"),
            (Some("io"), "io.max", "8:16 wiops=300"),
            (None, "memory.high", "1000000"),
        ];
        let want: Vec<(Option<&str>, String, String)> = want
            .iter()
            .map(|(c, f, v)| (*c, f.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);

        let bad = LinuxResourcesBuilder::default()
            .unified(HashMap::from([("../escape".to_owned(), "1".to_owned())]))
            .build()
            .unwrap();
        assert!(plan(&bad).is_err());
        let rt = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(1000i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(plan(&rt).unwrap_err().to_string().contains("realtime"));
    }

    #[test]
    fn create_enables_controllers_and_writes_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layout = fake_root(root, CONTROLLERS);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(32i64 << 20)
                    .swap(32i64 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50000i64)
                    .period(100000u64)
                    .cpus("0")
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
            ])
            .build()
            .unwrap();
        let cg = Cgroup::create_in(&layout, "berth/c1", &r).unwrap();
        let all = "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc";
        assert_eq!(read(root.join("cgroup.subtree_control")), all);
        assert_eq!(read(root.join("berth/cgroup.subtree_control")), all);
        assert_eq!(
            read(root.join("berth/c1/cgroup.subtree_control")),
            "",
            "never in the leaf"
        );
        let leaf = root.join("berth/c1");
        assert_eq!(read(leaf.join("memory.max")), "33554432");
        assert_eq!(read(leaf.join("memory.swap.max")), "0");
        assert_eq!(read(leaf.join("cpu.weight")), "20");
        assert_eq!(read(leaf.join("cpu.max")), "50000 100000");
        assert_eq!(read(leaf.join("cpuset.cpus")), "0");
        assert_eq!(read(leaf.join("pids.max")), "10");
        assert_eq!(cg.paths(), vec![leaf.clone()]);

        // A resource whose controller is not enabled for the cgroup is an error naming it.
        fs::write(leaf.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let err = cg.update(&r).unwrap_err();
        assert!(
            matches!(&err, CgroupError::MissingController { controller, .. } if controller == "cpuset"),
            "{err}"
        );
        // Without it asked for, fine.
        let memory_only = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        cg.update(&memory_only).unwrap();
        assert_eq!(read(leaf.join("memory.max")), "67108864");
    }

    #[test]
    fn io_stats_sum_the_devices_of_io_stat() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), CONTROLLERS);
        let cg = Cgroup::open_in(&layout, "berth/c1").unwrap();
        assert_eq!(cg.io_stats().unwrap(), IoStats::default());
        fs::write(
            tmp.path().join("berth/c1/io.stat"),
            "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=9 dios=1\n\
             253:1 rbytes=1000 wbytes=24 rios=2 wios=1 dbytes=0 dios=0\n",
        )
        .unwrap();
        let io = cg.io_stats().unwrap();
        assert_eq!((io.read_bytes(), io.write_bytes()), (5096, 536));
        assert_eq!(
            io.devices[1],
            DeviceIo {
                major: 253,
                minor: 1,
                read_bytes: 1000,
                write_bytes: 24
            }
        );
    }

    #[test]
    fn optional_files_and_stats_on_fake_files() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = fake_root(tmp.path(), CONTROLLERS);
        let leaf = tmp.path().join("berth/c1");
        let cg = Cgroup::open_in(&layout, "berth/c1").unwrap();
        // No swap accounting: memory.swap.max missing; "max" for it is skipped, a number fails.
        fs::remove_file(leaf.join("memory.swap.max")).unwrap();
        let unlimited = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1i64).build().unwrap())
            .build()
            .unwrap();
        cg.update(&unlimited).unwrap();
        assert_eq!(read(leaf.join("memory.max")), "max");
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
        let err = cg.update(&swap).unwrap_err().to_string();
        assert!(
            err.starts_with("write 1048576 to ") && err.contains("memory.swap.max"),
            "{err}"
        );

        fs::write(leaf.join("memory.current"), "1000000\n").unwrap();
        fs::write(
            leaf.join("memory.stat"),
            "anon 1\nfile 2\ninactive_file 250000\n",
        )
        .unwrap();
        fs::write(leaf.join("memory.max"), "33554432\n").unwrap();
        fs::write(leaf.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        fs::write(leaf.join("pids.current"), "2\n").unwrap();
        fs::write(leaf.join("pids.max"), "10\n").unwrap();
        fs::write(
            leaf.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n",
        )
        .unwrap();
        fs::write(leaf.join("cgroup.procs"), "7\n8\n").unwrap();
        assert_eq!(
            cg.stats().unwrap(),
            CgroupStats {
                memory_usage: 750000,
                memory_limit: Some(33554432),
                cpu_usage_ns: 1_500_000,
                pids_current: 2,
                pids_limit: Some(10),
            }
        );
        assert_eq!(cg.oom_kill_count().unwrap(), 2);
        assert_eq!(cg.pids().unwrap(), vec![7, 8]);

        // Freeze waits for cgroup.events to say frozen; the fake says so only if told.
        fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        cg.freeze().unwrap();
        assert_eq!(read(leaf.join("cgroup.freeze")), "1");
        fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        cg.thaw().unwrap();
        assert_eq!(read(leaf.join("cgroup.freeze")), "0");
    }
}
