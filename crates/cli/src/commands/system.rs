//! `system` commands: df, events (also `berth events`), check.

use std::{collections::HashMap, io, io::Write, path::Path};

use berth_reference::Digest;
use berth_store::ImageRecord;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{
    image::{headers, since},
    open_store,
};
use crate::{format, units};

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(DfArgs),
    /// Verify the store: every blob's digest, every image's manifest, config and layers
    Check,
    /// Get real time events from berth
    Events(EventsArgs),
}

/// `events` flags.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'json' or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    until: Option<String>,
}

#[derive(Args, Debug)]
pub struct DfArgs {
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
}

pub fn dispatch(root: &Path, cmd: SystemCommand) -> Result<()> {
    match cmd {
        SystemCommand::Df(a) => df(root, a),
        SystemCommand::Check => check(root),
        SystemCommand::Events(a) => events(root, a),
    }
}

/// `berth events`: the state root's event log, as `docker events` prints it: past events
/// from `--since`, then new ones as they happen, until `--until` (or interrupted).
pub fn events(root: &Path, args: EventsArgs) -> Result<()> {
    let filters = berth_store::Filters::parse(&args.filter, berth_store::events::EVENT_FILTERS)?;
    let now = jiff::Timestamp::now();
    let time = |v: Option<&String>| {
        v.map(|v| berth_store::parse_time_arg(v, now))
            .transpose()
            .map_err(anyhow::Error::msg)
    };
    let (since, until) = (time(args.since.as_ref())?, time(args.until.as_ref())?);
    let format = format::parse_format(args.format.as_deref());
    let renderer = match &format {
        format::Format::Template(t) => Some(format::Renderer::new(t)?),
        _ => None,
    };
    let mut out = io::stdout().lock();
    let mut failed = None;
    berth_store::events::follow(root, since, until, &filters, &|| false, &mut |ev| {
        let line = match (&format, &renderer) {
            (format::Format::Json, _) => ev.docker_message().to_string(),
            (_, Some(r)) => match r.render(&ev.docker_message()) {
                Ok(line) => line,
                Err(e) => {
                    failed = Some(e);
                    return Err(io::ErrorKind::InvalidData.into());
                }
            },
            _ => pretty_event(ev),
        };
        writeln!(out, "{line}")?;
        out.flush()
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `docker events`' own line: local time with nanoseconds, type, action, actor, then the
/// attributes sorted by key.
fn pretty_event(ev: &berth_store::events::Event) -> String {
    let nanos = ev.time_nano.rem_euclid(1_000_000_000);
    let at = jiff::Timestamp::from_nanosecond(i128::from(ev.time_nano))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let offset = jiff::tz::TimeZone::system().to_offset(at);
    let time = offset.to_datetime(at);
    let zone = match offset.seconds() {
        0 => "Z".to_string(),
        s => format!(
            "{}{:02}:{:02}",
            if s < 0 { '-' } else { '+' },
            s.abs() / 3600,
            s.abs() % 3600 / 60
        ),
    };
    let mut line = format!(
        "{}.{nanos:09}{zone} {} {} {}",
        time.strftime("%Y-%m-%dT%H:%M:%S"),
        ev.kind,
        ev.action,
        ev.actor
    );
    if !ev.attributes.is_empty() {
        let attrs: Vec<String> = ev
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        line.push_str(&format!(" ({})", attrs.join(", ")));
    }
    line
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DfRow {
    #[serde(rename = "Type")]
    kind: String,
    total_count: String,
    active: String,
    size: String,
    reclaimable: String,
}

fn df(root: &Path, args: DfArgs) -> Result<()> {
    let store = open_store(root)?;
    let images = store.images()?;
    // Layer sizes, and how many images use each layer.
    let mut layer_use: HashMap<Digest, (u64, usize)> = HashMap::new();
    let mut image_layers = Vec::new();
    for rec in &images {
        let chains = store.image(rec.clone())?.chain_ids()?;
        for chain in &chains {
            let size = store.layer(chain)?.map_or(0, |l| l.size);
            layer_use.entry(chain.clone()).or_insert((size, 0)).1 += 1;
        }
        image_layers.push(chains);
    }
    // Shared layers count once, as docker's SIZE does.
    let size: u64 = layer_use.values().map(|(s, _)| s).sum();
    if args.verbose {
        return df_verbose(&images, &image_layers, &layer_use);
    }
    let human = |n: u64| units::human_size(n as f64);
    let reclaim = |n: u64, total: u64| match (n * 100).checked_div(total) {
        Some(pct) => format!("{} ({pct}%)", human(n)),
        None => human(n),
    };
    let row = |kind: &str, total: usize, active: usize, size: u64, reclaimable: u64| DfRow {
        kind: kind.into(),
        total_count: total.to_string(),
        active: active.to_string(),
        size: human(size),
        reclaimable: reclaim(reclaimable, size),
    };
    let mut engine = berth_engine::Engine::open(root)?;
    let containers = engine.containers()?;
    let sizes: Vec<(bool, u64)> = containers
        .iter()
        .map(|c| (c.state.running, engine.container_size(&c.id)))
        .collect();
    let container_size: u64 = sizes.iter().map(|(_, s)| s).sum();
    let idle_size: u64 = sizes.iter().filter(|(r, _)| !r).map(|(_, s)| s).sum();
    let running = sizes.iter().filter(|(r, _)| *r).count();
    // Images a container uses cannot be reclaimed.
    let used: std::collections::HashSet<&str> =
        containers.iter().map(|c| c.image.as_str()).collect();
    let used_size: u64 = layer_use
        .iter()
        .filter(|(chain, _)| {
            images.iter().zip(&image_layers).any(|(rec, chains)| {
                used.contains(rec.id.to_string().as_str()) && chains.contains(chain)
            })
        })
        .map(|(_, (s, _))| s)
        .sum();
    let images_active = images
        .iter()
        .filter(|r| used.contains(r.id.to_string().as_str()))
        .count();
    let rows = vec![
        row(
            "Images",
            images.len(),
            images_active,
            size,
            size - used_size.min(size),
        ),
        row(
            "Containers",
            containers.len(),
            running,
            container_size,
            idle_size,
        ),
        row("Local Volumes", 0, 0, 0, 0),
        row("Build Cache", 0, 0, 0, 0),
    ];
    let headers = headers(&[
        ("Type", "TYPE"),
        ("TotalCount", "TOTAL"),
        ("Active", "ACTIVE"),
        ("Size", "SIZE"),
        ("Reclaimable", "RECLAIMABLE"),
    ]);
    let fmt = format::parse_format(args.format.as_deref());
    format::render_rows(
        &fmt,
        "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        &headers,
        &rows,
        &mut io::stdout().lock(),
    )?;
    Ok(())
}

/// `system df -v`: per-image shared and unique sizes, then the (still empty) other sections.
fn df_verbose(
    images: &[ImageRecord],
    image_layers: &[Vec<Digest>],
    layer_use: &HashMap<Digest, (u64, usize)>,
) -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "Images space usage:\n")?;
    let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
    writeln!(
        tw,
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
    )?;
    for (rec, chains) in images.iter().zip(image_layers) {
        let (mut shared, mut unique) = (0u64, 0u64);
        for c in chains {
            let (size, users) = layer_use[c];
            if users > 1 {
                shared += size;
            } else {
                unique += size;
            }
        }
        let created = since(rec.created_at());
        let names: Vec<(String, String)> = if rec.tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            rec.tags
                .iter()
                .map(|t| (t.familiar_name(), t.tag().unwrap_or("latest").to_string()))
                .collect()
        };
        for (repo, tag) in names {
            writeln!(
                tw,
                "{repo}\t{tag}\t{}\t{created}\t{}\t{}\t{}\t0",
                rec.id.short(),
                units::human_size(rec.size as f64),
                units::human_size(shared as f64),
                units::human_size(unique as f64),
            )?;
        }
    }
    out.write_all(&tw.into_inner()?)?;
    writeln!(out, "\nContainers space usage:\n")?;
    writeln!(
        out,
        "CONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES"
    )?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    writeln!(out, "VOLUME NAME   LINKS     SIZE")?;
    writeln!(out, "\nBuild cache usage: 0B\n")?;
    writeln!(
        out,
        "CACHE ID   CACHE TYPE   SIZE      CREATED   LAST USED   USAGE     SHARED"
    )?;
    Ok(())
}

fn check(root: &Path) -> Result<()> {
    let store = open_store(root)?;
    let report = store.check()?;
    let mut out = io::stdout().lock();
    for p in &report.problems {
        writeln!(out, "problem: {p}")?;
    }
    writeln!(
        out,
        "checked {} blobs, {} images, {} layers: {}",
        report.blobs,
        report.images,
        report.layers,
        if report.problems.is_empty() {
            "no problems".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    )?;
    if report.debris > 0 {
        writeln!(
            out,
            "{} leftovers of interrupted writes (removed by the next `image prune` or `rmi`)",
            report.debris
        )?;
    }
    if !report.problems.is_empty() {
        return Err(super::Status(1).into());
    }
    Ok(())
}
