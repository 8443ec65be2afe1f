//! What runs in a container and what it uses, as the docker CLI prints it: `top` (the
//! engine's `ps` table) and `stats` (tables of the engine's `procs::Usage` readings, live or
//! once), and `port` (its published ports).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashMap},
    io::{self, Write},
    path::Path,
    thread,
    time::Duration,
};

use anyhow::Result;
use berth_engine::{ContainerRecord, Engine, EngineError, procs::Usage};
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

/// Go's tabwriter as `docker top` sets it up: `NewWriter(out, 20, 1, 3, ' ', 0)`.
const TOP_MIN_WIDTH: usize = 20;
const TOP_PADDING: usize = 3;

/// `berth top`: the host's `ps` with the given options (`-ef` by default), showing only
/// the rows of the container's processes (those in its cgroup).
pub fn top(root: &Path, args: TopArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let table = engine.top(&args.container, &args.ps_args.join(" "))?;
    let mut out = io::stdout().lock();
    write_top(&mut out, &table.titles, &table.processes)?;
    Ok(())
}

/// Prints the table as `docker top` does: every column but the last as wide as its widest
/// cell plus 3 spaces, and at least 20.
pub(crate) fn write_top(
    out: &mut dyn Write,
    titles: &[String],
    rows: &[Vec<String>],
) -> io::Result<()> {
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

/// The first CPU window: CPU % needs two readings of the cgroup's CPU time.
const FIRST_WINDOW: Duration = Duration::from_millis(500);
/// How often the live display refreshes.
const REFRESH: Duration = Duration::from_secs(1);

/// What a row shows of a container.
enum Shown {
    /// Running: this reading and the one before it, if any (for CPU %).
    Running(Box<Usage>, Option<Box<Usage>>),
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
    let mut previous: HashMap<String, Usage> = HashMap::new();
    let mut first_frame = true;
    // CPU % compares two readings: the first frame comes after a short first window.
    for rec in targets(&mut engine, &keys, args.all)?
        .into_iter()
        .filter_map(|t| t.rec)
    {
        if let Some(u) = Usage::read(&rec) {
            previous.insert(rec.id, u);
        }
    }
    thread::sleep(FIRST_WINDOW);
    loop {
        let targets = targets(&mut engine, &keys, args.all)?;
        let mut current = HashMap::new();
        let mut rows = Vec::new();
        for target in &targets {
            let shown = match &target.rec {
                Some(rec) => match Usage::read(rec) {
                    Some(u) => {
                        current.insert(rec.id.clone(), u.clone());
                        Shown::Running(Box::new(u), previous.remove(&rec.id).map(Box::new))
                    }
                    None if args.no_stream => Shown::Zero,
                    None => Shown::Invalid,
                },
                None => Shown::Invalid,
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
            rows.push(stats_row(&target.key, &id, &name, &shown, !args.no_trunc));
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

/// One row in Docker's wording: binary units for memory, decimal ones for I/O.
fn stats_row(key: &str, id: &str, name: &str, shown: &Shown, trunc: bool) -> StatsRow {
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
    match shown {
        Shown::Invalid => {}
        Shown::Zero => {
            row.block_io = pair((0, 0));
            row.cpu_perc = percent(0.0);
            row.mem_perc = percent(0.0);
            row.mem_usage = format!("{} / {}", units::bytes_size(0.0), units::bytes_size(0.0));
            row.net_io = pair((0, 0));
            row.pids = "0".into();
        }
        Shown::Running(now, before) => {
            row.block_io = pair((now.io.read_bytes(), now.io.write_bytes()));
            row.cpu_perc = percent(now.cpu_percent(before.as_deref()));
            row.mem_perc = percent(now.memory_percent());
            row.mem_usage = format!(
                "{} / {}",
                units::bytes_size(now.memory as f64),
                units::bytes_size(now.memory_limit as f64)
            );
            row.net_io = pair(now.network_totals());
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
    use berth_runtime::cgroups::{DeviceIo, IoStats};

    use super::*;

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

    fn reading(cpu_ns: u64, system_cpu_ns: u64) -> Usage {
        Usage {
            read: jiff::Timestamp::UNIX_EPOCH,
            cpu_ns,
            system_cpu_ns,
            online_cpus: 2,
            memory: 1_258_291,
            memory_limit: 24 << 30,
            pids: 2,
            pids_limit: None,
            networks: Vec::new(),
            io: IoStats {
                devices: vec![DeviceIo {
                    major: 8,
                    minor: 0,
                    read_bytes: 4096,
                    write_bytes: 0,
                }],
            },
        }
    }

    #[test]
    fn stats_row_reads_like_docker() {
        let before = reading(1_000_000_000, 10_000_000_000);
        let now = reading(1_750_000_000, 11_000_000_000);
        let row = stats_row(
            "web",
            &"a".repeat(64),
            "web",
            &Shown::Running(Box::new(now.clone()), Some(Box::new(before))),
            true,
        );
        assert_eq!(row.id, "a".repeat(12));
        assert_eq!(row.cpu_perc, "150.00%");
        assert_eq!(row.mem_usage, "1.2MiB / 24GiB");
        assert_eq!(row.mem_perc, "0.00%");
        assert_eq!(row.net_io, "0B / 0B");
        assert_eq!(row.block_io, "4.1kB / 0B");
        assert_eq!(row.pids, "2");
        let limited = Usage {
            memory_limit: 64 << 20,
            memory: 16 << 20,
            ..now
        };
        let row = stats_row(
            "c",
            "c",
            "n",
            &Shown::Running(Box::new(limited), None),
            true,
        );
        assert_eq!(row.mem_usage, "16MiB / 64MiB");
        assert_eq!(row.mem_perc, "25.00%");
        assert_eq!(row.cpu_perc, "0.00%");
        let row = stats_row("c", "c", "", &Shown::Zero, false);
        assert_eq!(
            (row.name.as_str(), row.mem_usage.as_str(), row.pids.as_str()),
            ("--", "0B / 0B", "0")
        );
        let row = stats_row("c", "c", "n", &Shown::Invalid, false);
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
