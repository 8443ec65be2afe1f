//! What runs in a container and what it uses: `top` (the host's `ps`, narrowed to the
//! container's processes), `stats` (CPU, memory, network, block I/O and pids from its
//! cgroup and network namespace), and `port` (its published ports).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    fs,
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};
use berth_engine::{
    ContainerRecord, Engine, EngineError, lifecycle::cgroup_path, summary::host_memory,
};
use berth_runtime::cgroups::Cgroup;
use clap::Args;
use serde::Serialize;
use tabwriter::TabWriter;

use super::{Status, fail, image::headers};
use crate::{format, units};

// ---------------------------------------------------------------- top

/// `berth top` arguments: everything after the container goes to `ps`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// CONTAINER
    container: String,
    /// Options for ps (default -ef)
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    ps_args: Vec<String>,
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

/// Go's tabwriter as `docker top` sets it up: `NewWriter(out, 20, 1, 3, ' ', 0)`.
const TOP_MIN_WIDTH: usize = 20;
const TOP_PADDING: usize = 3;

/// `berth top`: the host's `ps` with the given options (`-ef` by default), showing only
/// the rows of the container's processes (those in its cgroup).
pub fn top(root: &Path, args: TopArgs) -> Result<()> {
    // Docker's client sends the options as one string and its daemon splits it on spaces,
    // so `top C "-o pid,comm"` and `top C -o pid,comm` mean the same.
    let joined = args.ps_args.join(" ");
    let ps_args = if joined.is_empty() { "-ef" } else { &joined };
    check_ps_args(ps_args)?;
    let mut engine = Engine::open(root)?;
    let rec = engine.container(&args.container)?;
    // Between two runs under a restart policy there are no processes to list.
    if rec.state.restarting {
        bail!(
            "Container {} is restarting, wait until the container is running",
            rec.id
        );
    }
    if !rec.state.running {
        return Err(EngineError::NotRunning(rec.id).into());
    }
    let pids = Cgroup::open(&cgroup_path(&rec.id))
        .and_then(|cg| cg.pids())
        .map_err(|e| anyhow!("container {}: {e}", rec.id))?;
    let argv: Vec<&str> = ps_args.split(' ').filter(|a| !a.is_empty()).collect();
    if let Some(arg) = argv.iter().find(|a| NO_HEADER_OPTIONS.contains(a)) {
        bail!("option {arg} is not allowed");
    }
    let output = run_ps(&argv, &pids)?;
    let (titles, rows) = parse_ps(&String::from_utf8_lossy(&output), &pids)?;
    let mut out = io::stdout().lock();
    write_top(&mut out, &titles, &rows)?;
    Ok(())
}

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
                    bail!("specifying \"{key}={value}\" is not allowed");
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
    let out = ps(None).map_err(|e| anyhow!("ps: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        if first.is_empty() {
            bail!("ps: exit status {}", out.status.code().unwrap_or(-1));
        }
        bail!("ps: {first}");
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
fn parse_ps(output: &str, pids: &[i32]) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let lines: Vec<&[u8]> = output.split('\n').map(str::as_bytes).collect();
    let header = lines[0];
    let spans = word_spans(header);
    let titles: Vec<String> = spans
        .iter()
        .map(|&(a, b)| String::from_utf8_lossy(&header[a..b]).into_owned())
        .collect();
    let Some(pid_index) = titles.iter().position(|t| t == "PID") else {
        bail!("Couldn't find PID field in ps output");
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
            anyhow!("Unexpected pid '{pid}': strconv.Atoi: parsing \"{pid}\": invalid syntax")
        })?;
        in_container = pids.contains(&pid);
        if in_container {
            rows.push(fields);
        }
    }
    Ok((titles, rows))
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

/// Prints the table as `docker top` does: every column but the last as wide as its widest
/// cell plus 3 spaces, and at least 20.
fn write_top(out: &mut dyn Write, titles: &[String], rows: &[Vec<String>]) -> io::Result<()> {
    // Go's width is max(minwidth, cell + padding); this tabwriter's is
    // max(minwidth, cell) + padding.
    let mut tw = TabWriter::new(out)
        .minwidth(TOP_MIN_WIDTH - TOP_PADDING)
        .padding(TOP_PADDING);
    writeln!(tw, "{}", titles.join("\t"))?;
    for row in rows {
        writeln!(tw, "{}", row.join("\t"))?;
    }
    tw.flush()
}

// ---------------------------------------------------------------- stats

/// `berth stats` flags.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// CONTAINER...
    containers: Vec<String>,
}

/// One row of `stats`, with Docker's field names for `--format`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StatsRow {
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    container: String,
    #[serde(rename = "ID")]
    id: String,
    mem_perc: String,
    mem_usage: String,
    name: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "PIDs")]
    pids: String,
}

const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// The first CPU sample window: CPU % needs two readings of the cgroup's CPU time.
const FIRST_WINDOW: Duration = Duration::from_millis(500);
/// How often the live display refreshes.
const REFRESH: Duration = Duration::from_secs(1);

/// One reading of a running container.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    cpu_ns: u64,
    memory: u64,
    memory_limit: Option<u64>,
    pids: u64,
    net: (u64, u64),
    block: (u64, u64),
}

/// What a row shows of a container.
enum Usage {
    /// Running: this reading and the one before it, if any (for CPU %).
    Running(Sample, Option<Sample>),
    /// Not running, in `--no-stream`: Docker's daemon answers with an empty reading.
    Zero,
    /// Not running or gone, in the live display: no reading arrives, Docker shows `--`.
    Invalid,
}

/// A container to show: the name it was asked for (or its ID), and its record if it
/// still exists.
struct Target {
    key: String,
    rec: Option<ContainerRecord>,
}

/// `berth stats`.
pub fn stats(root: &Path, args: StatsArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut keys: Vec<String> = Vec::new();
    for key in &args.containers {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    // Named containers must all exist before anything is shown, as in Docker.
    let mut missing = false;
    for key in &keys {
        if let Err(e) = engine.container(key) {
            eprintln!("Error: {e}");
            missing = true;
        }
    }
    if missing {
        return Err(Status(1).into());
    }
    let host_memory = host_memory();
    let format = format::parse_format(args.format.as_deref());
    let stats_headers = headers(&[
        ("BlockIO", "BLOCK I/O"),
        ("CPUPerc", "CPU %"),
        ("Container", "CONTAINER"),
        ("ID", "CONTAINER ID"),
        ("MemPerc", "MEM %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("Name", "NAME"),
        ("NetIO", "NET I/O"),
        ("PIDs", "PIDS"),
    ]);
    let terminal = !args.no_stream && rustix::termios::isatty(io::stdout());
    // The last ID and name of each named container, for a row after it is removed.
    let mut known: HashMap<String, (String, String)> = HashMap::new();
    let mut previous: HashMap<String, Sample> = HashMap::new();
    let mut first_frame = true;
    // CPU % compares two readings: the first frame comes after a short first window.
    for rec in targets(&mut engine, &keys, args.all)?
        .into_iter()
        .filter_map(|t| t.rec)
    {
        if let Some(s) = sample(&rec) {
            previous.insert(rec.id, s);
        }
    }
    thread::sleep(FIRST_WINDOW);
    loop {
        let targets = targets(&mut engine, &keys, args.all)?;
        let mut current = HashMap::new();
        let mut rows = Vec::new();
        for target in &targets {
            let usage = match &target.rec {
                Some(rec) => match sample(rec) {
                    Some(s) => {
                        current.insert(rec.id.clone(), s);
                        Usage::Running(s, previous.get(&rec.id).copied())
                    }
                    None if args.no_stream => Usage::Zero,
                    None => Usage::Invalid,
                },
                None => Usage::Invalid,
            };
            let (id, name) = match &target.rec {
                Some(rec) => {
                    known.insert(target.key.clone(), (rec.id.clone(), rec.name.clone()));
                    (rec.id.clone(), rec.name.clone())
                }
                None => known
                    .get(&target.key)
                    .cloned()
                    .unwrap_or_else(|| (target.key.clone(), String::new())),
            };
            rows.push(stats_row(
                &target.key,
                &id,
                &name,
                &usage,
                host_memory,
                !args.no_trunc,
            ));
        }
        let mut frame = Vec::new();
        format::render_rows(&format, STATS_TABLE, &stats_headers, &rows, &mut frame)?;
        let mut out = io::stdout().lock();
        if terminal {
            out.write_all(&repaint(&frame, first_frame))?;
        } else {
            out.write_all(&frame)?;
        }
        out.flush()?;
        drop(out);
        first_frame = false;
        if args.no_stream {
            return Ok(());
        }
        previous = current;
        thread::sleep(REFRESH);
    }
}

/// The containers to show now: those named (each looked up again, so one removed meanwhile
/// shows as gone), or every running one (every one with `-a`), newest first.
fn targets(engine: &mut Engine, keys: &[String], all: bool) -> Result<Vec<Target>> {
    if keys.is_empty() {
        return Ok(engine
            .containers()?
            .into_iter()
            .filter(|rec| all || rec.state.running)
            .map(|rec| Target {
                key: rec.id.clone(),
                rec: Some(rec),
            })
            .collect());
    }
    let mut out = Vec::new();
    for key in keys {
        let rec = match engine.container(key) {
            Ok(rec) => Some(rec),
            Err(EngineError::NoSuchContainer(_)) => None,
            Err(e) => return Err(e.into()),
        };
        out.push(Target {
            key: key.clone(),
            rec,
        });
    }
    Ok(out)
}

/// Reads a running container's cgroup and network counters; `None` when it does not run
/// (or stopped just now and its cgroup is gone).
fn sample(rec: &ContainerRecord) -> Option<Sample> {
    if !rec.state.running {
        return None;
    }
    let cgroup = Cgroup::open(&cgroup_path(&rec.id)).ok()?;
    let at = Instant::now();
    let stats = cgroup.stats().ok()?;
    // Block I/O is a detail of the row: a file that does not read as expected shows 0B
    // rather than hiding the container's other figures.
    let io = cgroup.io_stats().unwrap_or_default();
    Some(Sample {
        at,
        cpu_ns: stats.cpu_usage_ns,
        memory: stats.memory_usage,
        memory_limit: stats.memory_limit,
        pids: stats.pids_current,
        net: network_bytes(rec.state.pid),
        block: (io.read_bytes, io.write_bytes),
    })
}

/// Bytes received and sent on the container's interfaces other than `lo`, from
/// `/proc/<init>/net/dev`. A container in the host's network namespace (`--network host`)
/// has no interfaces of its own: Docker shows 0B there, not the host's traffic.
fn network_bytes(pid: i32) -> (u64, u64) {
    if pid <= 0 {
        return (0, 0);
    }
    let ns = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    let own = ns(&format!("/proc/{pid}/ns/net"));
    if own.is_none() || own == ns("/proc/self/ns/net") {
        return (0, 0);
    }
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|text| parse_net_dev(&text))
        .unwrap_or((0, 0))
}

/// Sums received and transmitted bytes (the 1st and 9th numbers after `iface:`) over the
/// interfaces of a `/proc/net/dev` table, loopback left out.
fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines() {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let numbers: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        if numbers.len() >= 9 {
            rx = rx.saturating_add(numbers[0]);
            tx = tx.saturating_add(numbers[8]);
        }
    }
    (rx, tx)
}

/// CPU %: CPU time used between two readings over the wall time between them, so a
/// container keeping two CPUs busy shows 200%. The first reading of a container shows 0.
fn cpu_percent(now: &Sample, before: Option<&Sample>) -> f64 {
    let Some(before) = before else {
        return 0.0;
    };
    let wall = now.at.saturating_duration_since(before.at).as_nanos() as f64;
    let used = now.cpu_ns.saturating_sub(before.cpu_ns) as f64;
    if wall > 0.0 && used > 0.0 {
        used / wall * 100.0
    } else {
        0.0
    }
}

/// One row in Docker's wording: binary units for memory, decimal ones for I/O.
fn stats_row(
    key: &str,
    id: &str,
    name: &str,
    usage: &Usage,
    host_memory: u64,
    trunc: bool,
) -> StatsRow {
    let percent = |v: f64| format!("{v:.2}%");
    let pair = |(a, b): (u64, u64)| {
        format!(
            "{} / {}",
            units::human_size(a as f64),
            units::human_size(b as f64)
        )
    };
    let id = if trunc && id.len() > 12 {
        &id[..12]
    } else {
        id
    };
    let name = if name.is_empty() { "--" } else { name };
    let mut row = StatsRow {
        block_io: "--".into(),
        cpu_perc: "--".into(),
        container: key.to_string(),
        id: id.to_string(),
        mem_perc: "--".into(),
        mem_usage: "-- / --".into(),
        name: name.to_string(),
        net_io: "--".into(),
        pids: "--".into(),
    };
    match usage {
        Usage::Invalid => {}
        Usage::Zero => {
            row.block_io = pair((0, 0));
            row.cpu_perc = percent(0.0);
            row.mem_perc = percent(0.0);
            row.mem_usage = format!("{} / {}", units::bytes_size(0.0), units::bytes_size(0.0));
            row.net_io = pair((0, 0));
            row.pids = "0".into();
        }
        Usage::Running(now, before) => {
            // Docker caps the limit at the host's memory: no cgroup limit reads as an
            // enormous number, and a limit above the host's memory cannot be reached.
            let limit = match now.memory_limit {
                Some(l) if host_memory == 0 || l < host_memory => l,
                _ => host_memory,
            };
            let mem_perc = if limit == 0 {
                0.0
            } else {
                now.memory as f64 / limit as f64 * 100.0
            };
            row.block_io = pair(now.block);
            row.cpu_perc = percent(cpu_percent(now, before.as_ref()));
            row.mem_perc = percent(mem_perc);
            row.mem_usage = format!(
                "{} / {}",
                units::bytes_size(now.memory as f64),
                units::bytes_size(limit as f64)
            );
            row.net_io = pair(now.net);
            row.pids = now.pids.to_string();
        }
    }
    row
}

/// A frame of the live display for a terminal: drawn over the previous one from the top
/// left (the screen cleared once, first), each line's old tail erased and the lines of a
/// longer previous frame cleared below, so the display does not flicker or scroll.
fn repaint(frame: &[u8], first: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 64);
    if first {
        out.extend_from_slice(b"\x1b[2J");
    }
    out.extend_from_slice(b"\x1b[H");
    for line in frame.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\x1b[K\n");
    }
    out.extend_from_slice(b"\x1b[J");
    out
}

// ---------------------------------------------------------------- port

/// `berth port` arguments.
#[derive(Args, Debug)]
pub struct PortArgs {
    /// CONTAINER
    container: String,
    /// PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    private_port: Option<String>,
}

/// `berth port`: the container's published ports (`80/tcp -> 0.0.0.0:8080`), or the
/// host addresses of one private port.
pub fn port(root: &Path, args: PortArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let rec = engine.container(&args.container)?;
    let ports = published_ports(&rec)?;
    let mut lines = Vec::new();
    match &args.private_port {
        Some(asked) => {
            let (port, proto) = asked.split_once('/').unwrap_or((asked, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(why) = parse_port(port) {
                return Err(fail(
                    1,
                    format!("invalid port ({port}): strconv.ParseUint: parsing {port:?}: {why}"),
                ));
            }
            let frontends = ports
                .get(&format!("{port}/{proto}"))
                .filter(|f| !f.is_empty());
            let Some(frontends) = frontends else {
                return Err(fail(
                    1,
                    format!("No public port '{asked}' published for {}", args.container),
                ));
            };
            lines.extend(frontends.iter().map(|(ip, port)| join_host_port(ip, port)));
        }
        None => {
            for (private, frontends) in &ports {
                for (ip, port) in frontends {
                    lines.push(format!("{private} -> {}", join_host_port(ip, port)));
                }
            }
        }
    }
    lines.sort_by(|a, b| natural_cmp(a, b));
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A private port (`80/tcp`) and its host addresses (IP, port).
type PortMap = BTreeMap<String, Vec<(String, String)>>;

/// The container's published ports, read from the record as `docker inspect` shapes them
/// (`NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`).
/// Records have no such field until berth publishes ports; reading the inspect shape
/// rather than a Rust field keeps this command right once they do.
fn published_ports(rec: &ContainerRecord) -> Result<PortMap> {
    let value = serde_json::to_value(rec)?;
    let mut map = PortMap::new();
    let Some(ports) = value
        .pointer("/NetworkSettings/Ports")
        .and_then(|p| p.as_object())
    else {
        return Ok(map);
    };
    for (private, bindings) in ports {
        let list = bindings.as_array().map_or(&[][..], Vec::as_slice);
        let text = |b: &serde_json::Value, k: &str| {
            b.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        map.insert(
            private.clone(),
            list.iter()
                .map(|b| (text(b, "HostIp"), text(b, "HostPort")))
                .collect(),
        );
    }
    Ok(map)
}

/// Go's `strconv.ParseUint(s, 10, 16)`: digits only; the reason in Go's words otherwise.
fn parse_port(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse().map_err(|_| "value out of range")
}

/// Go's `net.JoinHostPort`: an IPv6 address goes in brackets.
fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Natural order, as Docker sorts `port` lines: runs of digits compare as numbers
/// (`8080` after `900`) and come before other characters; other bytes compare as bytes;
/// of two equal numbers the one with fewer leading zeros comes first.
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (da, db) = (a[i].is_ascii_digit(), b[j].is_ascii_digit());
        if da != db {
            return if da {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        if !da {
            match a[i].cmp(&b[j]) {
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                    continue;
                }
                other => return other,
            }
        }
        let zeros = |s: &[u8], mut k: usize| {
            while k < s.len() && s[k] == b'0' {
                k += 1;
            }
            k
        };
        let digits = |s: &[u8], mut k: usize| {
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            k
        };
        let (na, nb) = (zeros(a, i), zeros(b, j));
        let (ea, eb) = (digits(a, na), digits(b, nb));
        let order = (ea - na)
            .cmp(&(eb - nb))
            .then_with(|| a[na..ea].cmp(&b[nb..eb]))
            .then_with(|| (na - i).cmp(&(nb - j)));
        if order != Ordering::Equal {
            return order;
        }
        i = ea;
        j = eb;
    }
    (a.len() - i).cmp(&(b.len() - j))
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
        let (titles, rows) = parse_ps(PS_EF, &[812, 813]).unwrap();
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
        let (_, rows) = parse_ps(out, &[7, 4242]).unwrap();
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
        let (_, rows) = parse_ps(out, &[5]).unwrap();
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
    fn top_table_pads_to_twenty_and_leaves_the_last_column_alone() {
        let mut out = Vec::new();
        let titles = vec!["PID".to_string(), "COMMAND".to_string()];
        let rows = vec![vec!["12".to_string(), "sleep 300".to_string()]];
        write_top(&mut out, &titles, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "PID{}COMMAND\n12{}sleep 300\n",
                " ".repeat(17),
                " ".repeat(18)
            )
        );
        let mut out = Vec::new();
        let wide = vec![vec!["x".repeat(25), "y".to_string()]];
        write_top(&mut out, &titles, &wide).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(&format!("PID{}COMMAND\n", " ".repeat(25))));
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
        assert_eq!(parse_net_dev(text), (1024, 256));
    }

    fn sample(at: Instant, cpu_ns: u64) -> Sample {
        Sample {
            at,
            cpu_ns,
            memory: 1_258_291,
            memory_limit: None,
            pids: 2,
            net: (0, 0),
            block: (4096, 0),
        }
    }

    #[test]
    fn stats_row_reads_like_docker() {
        let t0 = Instant::now();
        let before = sample(t0, 1_000_000_000);
        let now = sample(t0 + Duration::from_millis(500), 1_000_000_000 + 750_000_000);
        let row = stats_row(
            "web",
            &"a".repeat(64),
            "web",
            &Usage::Running(now, Some(before)),
            24 << 30,
            true,
        );
        assert_eq!(row.id, "a".repeat(12));
        assert_eq!(row.cpu_perc, "150.00%");
        assert_eq!(row.mem_usage, "1.2MiB / 24GiB");
        assert_eq!(row.mem_perc, "0.00%");
        assert_eq!(row.net_io, "0B / 0B");
        assert_eq!(row.block_io, "4.1kB / 0B");
        assert_eq!(row.pids, "2");
        let limited = Sample {
            memory_limit: Some(64 << 20),
            memory: 16 << 20,
            ..now
        };
        let row = stats_row(
            "c",
            "c",
            "n",
            &Usage::Running(limited, None),
            24 << 30,
            true,
        );
        assert_eq!(row.mem_usage, "16MiB / 64MiB");
        assert_eq!(row.mem_perc, "25.00%");
        assert_eq!(row.cpu_perc, "0.00%");
        let row = stats_row("c", "c", "", &Usage::Zero, 1, false);
        assert_eq!(
            (row.name.as_str(), row.mem_usage.as_str(), row.pids.as_str()),
            ("--", "0B / 0B", "0")
        );
        let row = stats_row("c", "c", "n", &Usage::Invalid, 1, false);
        assert_eq!(
            (row.cpu_perc.as_str(), row.mem_usage.as_str()),
            ("--", "-- / --")
        );
    }

    #[test]
    fn repaint_erases_old_text() {
        assert_eq!(
            repaint(b"A\nBB\n", false),
            b"\x1b[HA\x1b[K\nBB\x1b[K\n\x1b[J".to_vec()
        );
        assert!(repaint(b"A\n", true).starts_with(b"\x1b[2J\x1b[H"));
    }

    #[test]
    fn ports_parse_and_sort_like_docker() {
        assert_eq!(parse_port("80"), Ok(80));
        assert_eq!(parse_port("+80"), Err("invalid syntax"));
        assert_eq!(parse_port("70000"), Err("value out of range"));
        assert_eq!(join_host_port("::", "8080"), "[::]:8080");
        assert_eq!(join_host_port("0.0.0.0", "8080"), "0.0.0.0:8080");
        let mut lines = vec![
            "8080/tcp -> 0.0.0.0:1",
            "443/tcp -> 0.0.0.0:2",
            "80/udp -> 0.0.0.0:3",
            "80/tcp -> 0.0.0.0:4",
            "a",
        ];
        lines.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            lines,
            [
                "80/tcp -> 0.0.0.0:4",
                "80/udp -> 0.0.0.0:3",
                "443/tcp -> 0.0.0.0:2",
                "8080/tcp -> 0.0.0.0:1",
                "a",
            ]
        );
        assert_eq!(natural_cmp("x01", "x1"), Ordering::Greater);
        assert_eq!(natural_cmp("x1", "x1"), Ordering::Equal);
    }
}
