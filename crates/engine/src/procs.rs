//! What runs in a container and what it uses, for `top` and `stats` (the CLI's and the
//! Engine API's): the host's `ps` narrowed to the container's cgroup, and readings of its
//! cgroup, of its network namespace's interfaces and of the host's CPU time.

use std::{fs, os::unix::fs::MetadataExt, process::Command, process::Stdio};

use berth_runtime::cgroups::{Cgroup, IoStats};

use crate::{ContainerRecord, Engine, EngineError, lifecycle::cgroup_path, summary::host_memory};

type Result<T, E = EngineError> = std::result::Result<T, E>;

/// What `top` shows: `ps`'s column titles and the rows of the container's processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopTable {
    /// The column titles of `ps`'s header.
    pub titles: Vec<String>,
    /// One row per process (and per thread, with `-L`), one field per title.
    pub processes: Vec<Vec<String>>,
}

impl Engine {
    /// The container's processes as `ps` with `ps_args` (`-ef` when empty) shows them.
    /// Docker's client sends the options as one string and its daemon splits it on spaces,
    /// so `top C "-o pid,comm"` and `top C -o pid,comm` mean the same.
    pub fn top(&mut self, key: &str, ps_args: &str) -> Result<TopTable> {
        let ps_args = if ps_args.trim().is_empty() {
            "-ef"
        } else {
            ps_args
        };
        check_ps_args(ps_args)?;
        let rec = self.container(key)?;
        // Between two runs under a restart policy there are no processes to list.
        if rec.state.restarting {
            return Err(EngineError::Conflict(format!(
                "Container {} is restarting, wait until the container is running",
                rec.id
            )));
        }
        if !rec.state.running {
            return Err(EngineError::NotRunning(rec.id));
        }
        let pids = Cgroup::open(&cgroup_path(&rec.id))
            .and_then(|cg| cg.pids())
            .map_err(|e| EngineError::Failed(format!("container {}: {e}", rec.id)))?;
        let argv: Vec<&str> = ps_args.split(' ').filter(|a| !a.is_empty()).collect();
        if let Some(arg) = argv.iter().find(|a| NO_HEADER_OPTIONS.contains(a)) {
            return Err(EngineError::Invalid(format!("option {arg} is not allowed")));
        }
        let output = run_ps(&argv, &pids)?;
        parse_ps(&String::from_utf8_lossy(&output), &pids)
    }
}

/// `ps` options that drop the header line, without which the PID column cannot be found.
const NO_HEADER_OPTIONS: [&str; 8] = [
    "--no-header",
    "--no-headers",
    "--no-heading",
    "--no-headings",
    "--noheader",
    "--noheaders",
    "--noheading",
    "--noheadings",
];

/// Refuses a column renamed to `PID` (`-o user=PID`): the PID column must hold pids.
/// Like Docker, only a word after whitespace is checked, and `pid=PID` is allowed.
fn check_ps_args(ps_args: &str) -> Result<()> {
    let words: Vec<(usize, &str)> = word_spans(ps_args.as_bytes())
        .into_iter()
        .map(|(a, b)| (a, &ps_args[a..b]))
        .collect();
    for (i, &(at, word)) in words.iter().enumerate() {
        if at == 0 {
            continue;
        }
        // The right-most `=` whose value (here, or in the next word after `name= `) starts
        // with PID.
        for (eq, _) in word.rmatch_indices('=') {
            let rest = &word[eq + 1..];
            let value = if rest.is_empty() {
                words.get(i + 1).map_or("", |(_, w)| *w)
            } else {
                rest
            };
            if value.starts_with("PID") {
                let key = &word[..eq];
                if key != "pid" {
                    return Err(EngineError::Invalid(format!(
                        "specifying \"{key}={value}\" is not allowed"
                    )));
                }
                break;
            }
        }
    }
    Ok(())
}

/// Runs `ps`: first for the container's pids only (`-q`), then, if `ps` refuses that
/// combination (forest listings do), over every process, as Docker does.
fn run_ps(args: &[&str], pids: &[i32]) -> Result<Vec<u8>> {
    let ps = |quick: Option<&str>| {
        let mut cmd = Command::new("ps");
        cmd.args(args).args(quick).stdin(Stdio::null());
        // Docker's ps runs in the daemon's environment; a user's column width or default
        // format must not change the table.
        for var in ["COLUMNS", "PS_FORMAT", "PS_PERSONALITY"] {
            cmd.env_remove(var);
        }
        cmd.output()
    };
    if !pids.is_empty() {
        let list: Vec<String> = pids.iter().map(i32::to_string).collect();
        let quick = format!("-q{}", list.join(","));
        if let Ok(out) = ps(Some(&quick))
            && out.status.success()
        {
            return Ok(out.stdout);
        }
    }
    let out = ps(None).map_err(|e| EngineError::Failed(format!("ps: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(EngineError::Failed(if first.is_empty() {
            format!("ps: exit status {}", out.status.code().unwrap_or(-1))
        } else {
            format!("ps: {first}")
        }));
    }
    Ok(out.stdout)
}

/// Splits `ps` output into the header's titles and the rows of the processes in `pids`.
///
/// Columns are found from the header, not by splitting on spaces, because a column other
/// than the last may hold spaces (`-o cmd,pid`): each title's column starts at the
/// right-most position between it and the previous title where every line has a space
/// (right-aligned numbers reach left of their title). The last column takes the rest of
/// the line. A row whose PID is `-` (a thread, with `-L` or `m`) belongs to the process
/// row before it.
fn parse_ps(output: &str, pids: &[i32]) -> Result<TopTable> {
    let lines: Vec<&[u8]> = output.split('\n').map(str::as_bytes).collect();
    let header = lines[0];
    let spans = word_spans(header);
    let titles: Vec<String> = spans
        .iter()
        .map(|&(a, b)| String::from_utf8_lossy(&header[a..b]).into_owned())
        .collect();
    let Some(pid_index) = titles.iter().position(|t| t == "PID") else {
        return Err(EngineError::Failed(
            "Couldn't find PID field in ps output".into(),
        ));
    };
    let body = &lines[1..];
    let blank_everywhere = |col: usize| {
        body.iter()
            .all(|l| l.get(col).is_none_or(|c| c.is_ascii_whitespace()))
    };
    let mut starts = vec![0];
    for pair in spans.windows(2) {
        let (prev_end, start) = (pair[0].1, pair[1].0);
        let col = (prev_end..start).rev().find(|&c| blank_everywhere(c));
        starts.push(col.unwrap_or(start));
    }
    let mut rows = Vec::new();
    let mut in_container = false;
    for line in body.iter().filter(|l| !l.is_empty()) {
        let fields: Vec<String> = (0..starts.len())
            .map(|i| {
                let from = starts[i].min(line.len());
                let to = starts.get(i + 1).map_or(line.len(), |&e| e.min(line.len()));
                String::from_utf8_lossy(&line[from..to.max(from)])
                    .trim()
                    .to_string()
            })
            .collect();
        let pid = &fields[pid_index];
        if pid == "-" {
            if in_container {
                rows.push(fields);
            }
            continue;
        }
        let pid: i32 = pid.parse().map_err(|_| {
            EngineError::Failed(format!(
                "Unexpected pid '{pid}': strconv.Atoi: parsing \"{pid}\": invalid syntax"
            ))
        })?;
        in_container = pids.contains(&pid);
        if in_container {
            rows.push(fields);
        }
    }
    Ok(TopTable {
        titles,
        processes: rows,
    })
}

/// The byte ranges of the space-separated words of `line`.
fn word_spans(line: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in line.iter().enumerate() {
        match (c.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

// ---------------------------------------------------------------- usage (stats)

/// One interface's counters, from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Packets dropped on sending.
    pub tx_dropped: u64,
}

/// One reading of a running container: what `docker stats` shows and the Engine API's
/// stats endpoint sends.
#[derive(Debug, Clone)]
pub struct Usage {
    /// When it was read.
    pub read: jiff::Timestamp,
    /// CPU time the container's processes used so far, in nanoseconds.
    pub cpu_ns: u64,
    /// CPU time the whole host used so far (all CPUs, idle included), in nanoseconds: CPU %
    /// is the container's share of it between two readings, as Docker computes it.
    pub system_cpu_ns: u64,
    /// The host's online CPUs.
    pub online_cpus: u32,
    /// Memory in use without the inactive file cache.
    pub memory: u64,
    /// The memory limit, or the host's memory when there is none (or a larger one), as
    /// Docker reports it.
    pub memory_limit: u64,
    /// Processes (tasks) now.
    pub pids: u64,
    /// `pids.max`; `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// Counters of the interfaces of the container's own network namespace, `lo` left
    /// out; none with `--network host` (Docker shows 0B there, not the host's traffic).
    pub networks: Vec<(String, NetCounters)>,
    /// Block I/O per device.
    pub io: IoStats,
}

impl Usage {
    /// Reads a running container's cgroup and network counters; `None` when it does not
    /// run (or stopped just now and its cgroup is gone).
    pub fn read(rec: &ContainerRecord) -> Option<Usage> {
        if !rec.state.running {
            return None;
        }
        let cgroup = Cgroup::open(&cgroup_path(&rec.id)).ok()?;
        let stats = cgroup.stats().ok()?;
        // Block I/O is a detail: a file that does not read as expected shows nothing rather
        // than hiding the container's other figures.
        let io = cgroup.io_stats().unwrap_or_default();
        let (system_cpu_ns, online_cpus) = host_cpu();
        let host_memory = host_memory();
        // No cgroup limit reads as an enormous number, and a limit above the host's memory
        // cannot be reached: Docker reports the host's memory then.
        let memory_limit = match stats.memory_limit {
            Some(l) if host_memory == 0 || l < host_memory => l,
            _ => host_memory,
        };
        Some(Usage {
            read: jiff::Timestamp::now(),
            cpu_ns: stats.cpu_usage_ns,
            system_cpu_ns,
            online_cpus,
            memory: stats.memory_usage,
            memory_limit,
            pids: stats.pids_current,
            pids_limit: stats.pids_limit,
            networks: network_counters(rec.state.pid),
            io,
        })
    }

    /// CPU % since `before` as Docker computes it: the container's CPU time over the host's
    /// in the same span, times the CPUs, so a container keeping two CPUs busy shows 200%.
    /// Without an earlier reading it is 0.
    pub fn cpu_percent(&self, before: Option<&Usage>) -> f64 {
        let Some(before) = before else {
            return 0.0;
        };
        let used = self.cpu_ns.saturating_sub(before.cpu_ns) as f64;
        let system = self.system_cpu_ns.saturating_sub(before.system_cpu_ns) as f64;
        if used > 0.0 && system > 0.0 {
            used / system * f64::from(self.online_cpus) * 100.0
        } else {
            0.0
        }
    }

    /// Memory in use as a share of the limit, in %.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            0.0
        } else {
            self.memory as f64 / self.memory_limit as f64 * 100.0
        }
    }

    /// Bytes received and sent over all interfaces.
    pub fn network_totals(&self) -> (u64, u64) {
        self.networks.iter().fold((0, 0), |(rx, tx), (_, c)| {
            (rx.saturating_add(c.rx_bytes), tx.saturating_add(c.tx_bytes))
        })
    }
}

/// Linux reports `/proc/stat` in USER_HZ, which is 100 on every architecture's ABI.
const USER_HZ: u64 = 100;

/// The host's CPU time so far in nanoseconds (the first line of `/proc/stat`: user, nice,
/// system, idle, iowait, irq and softirq, as Docker's daemon sums them) and its online
/// CPUs (the `cpuN` lines).
fn host_cpu() -> (u64, u32) {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return (0, 1);
    };
    parse_proc_stat(&text)
}

fn parse_proc_stat(text: &str) -> (u64, u32) {
    let mut total = 0u64;
    let mut online = 0u32;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.take(7).filter_map(|f| f.parse::<u64>().ok()).sum();
                total = ticks.saturating_mul(1_000_000_000 / USER_HZ);
            }
            Some(name) if name.starts_with("cpu") => online += 1,
            _ => {}
        }
    }
    (total, online.max(1))
}

/// The interfaces of the namespace of `/proc/<pid>`, unless it is the host's.
fn network_counters(pid: i32) -> Vec<(String, NetCounters)> {
    if pid <= 0 {
        return Vec::new();
    }
    let ns = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let own = ns(&format!("/proc/{pid}/ns/net"));
    if own.is_none() || own == ns("/proc/self/ns/net") {
        return Vec::new();
    }
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default()
}

/// The interfaces of a `/proc/net/dev` table but loopback: after `iface:`, eight receive
/// counters (bytes, packets, errs, drop, ...) and eight transmit ones.
fn parse_net_dev(text: &str) -> Vec<(String, NetCounters)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        let iface = iface.trim();
        if iface == "lo" {
            continue;
        }
        let n: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if n.len() >= 12 {
            out.push((
                iface.to_string(),
                NetCounters {
                    rx_bytes: n[0],
                    rx_packets: n[1],
                    rx_errors: n[2],
                    rx_dropped: n[3],
                    tx_bytes: n[8],
                    tx_packets: n[9],
                    tx_errors: n[10],
                    tx_dropped: n[11],
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS_EF: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 Nov23 ?        00:01:45 /sbin/init splash
root         812       1  0 10:00 ?        00:00:00 sh -c sleep 300
root         813     812  0 10:00 ?        00:00:00 sleep 300
";

    #[test]
    fn ps_rows_are_narrowed_to_the_container_and_keep_the_command_whole() {
        let TopTable {
            titles,
            processes: rows,
        } = parse_ps(PS_EF, &[812, 813]).unwrap();
        assert_eq!(
            titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            [
                "root",
                "812",
                "1",
                "0",
                "10:00",
                "?",
                "00:00:00",
                "sh -c sleep 300"
            ]
        );
        assert_eq!(rows[1][1], "813");
        assert_eq!(rows[1][7], "sleep 300");
    }

    #[test]
    fn a_column_with_spaces_before_the_last_one_stays_one_field() {
        let out = "\
CMD                            PID COMMAND
sleep 100000                  4242 sleep 100000
/bin/sh /st 6379                 7 /bin/sh /st 6379
";
        let rows = parse_ps(out, &[7, 4242]).unwrap().processes;
        assert_eq!(rows[0], ["sleep 100000", "4242", "sleep 100000"]);
        assert_eq!(rows[1], ["/bin/sh /st 6379", "7", "/bin/sh /st 6379"]);
    }

    #[test]
    fn thread_rows_follow_their_process() {
        // (No `\` line continuation here: it would eat the header's leading spaces.)
        let out = "  PID TTY      STAT   TIME COMMAND
    5 ?        -      0:00 sleep
    - -        Ss     0:00 -
    9 ?        -      0:00 other
    - -        S      0:00 -
";
        let rows = parse_ps(out, &[5]).unwrap().processes;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][0], "-");
    }

    #[test]
    fn ps_output_without_pid_or_with_a_bad_pid_fails() {
        let err = parse_ps("USER COMMAND\nroot sh\n", &[1]).unwrap_err();
        assert_eq!(err.to_string(), "Couldn't find PID field in ps output");
        let err = parse_ps("PID CMD\nabc sh\n", &[1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unexpected pid 'abc': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
    }

    #[test]
    fn renaming_a_column_to_pid_is_refused() {
        assert!(check_ps_args("-ef").is_ok());
        assert!(check_ps_args("-o pid=PID,comm").is_ok());
        assert_eq!(
            check_ps_args("-o user=PID").unwrap_err().to_string(),
            "specifying \"user=PID\" is not allowed"
        );
        assert_eq!(
            check_ps_args("-o comm,user= PIDX").unwrap_err().to_string(),
            "specifying \"comm,user=PIDX\" is not allowed"
        );
    }

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0
  eth0:    1000      10    0    0    0     0          0         0      200       2    0    0    0     0       0          0
  eth1:      24       1    0    0    0     0          0         0       56       1    0    0    0     0       0          0
";
        let interfaces = parse_net_dev(text);
        let names: Vec<&str> = interfaces.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(
            interfaces[0].1,
            NetCounters {
                rx_bytes: 1000,
                rx_packets: 10,
                tx_bytes: 200,
                tx_packets: 2,
                ..NetCounters::default()
            }
        );
        let mut usage = reading(0, 0);
        usage.networks = interfaces;
        assert_eq!(usage.network_totals(), (1024, 256));
    }

    #[test]
    fn proc_stat_gives_host_cpu_time_and_cpus() {
        let text = "cpu  100 2 30 1000 5 1 1 7 0 0\ncpu0 50 1 15 500 2 1 0 3 0 0\n\
                    cpu1 50 1 15 500 3 0 1 4 0 0\nintr 1 2 3\n";
        // steal (7) is not counted, as in Docker.
        assert_eq!(parse_proc_stat(text), (1139 * 10_000_000, 2));
    }

    fn reading(cpu_ns: u64, system_cpu_ns: u64) -> Usage {
        Usage {
            read: jiff::Timestamp::UNIX_EPOCH,
            cpu_ns,
            system_cpu_ns,
            online_cpus: 2,
            memory: 16 << 20,
            memory_limit: 64 << 20,
            pids: 1,
            pids_limit: None,
            networks: Vec::new(),
            io: IoStats::default(),
        }
    }

    #[test]
    fn cpu_percent_is_the_share_of_host_time_times_cpus() {
        let before = reading(1_000_000_000, 10_000_000_000);
        // 0.75 s of CPU while the host's two CPUs ran 1 s in all (0.5 s each).
        let now = reading(1_750_000_000, 11_000_000_000);
        assert_eq!(now.cpu_percent(Some(&before)), 150.0);
        assert_eq!(now.cpu_percent(None), 0.0);
        assert_eq!(now.memory_percent(), 25.0);
    }
}
