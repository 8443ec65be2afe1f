//! `system` commands: df, events (also `berth events`), check.

use std::{io, io::Write, path::Path};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::image::{headers, since};
use crate::{format, units};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
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
    let log = berth_store::events::EventLog::open(root)?;
    berth_store::events::follow(&log, since, until, &filters, &|| false, &mut |ev| {
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
    let usage = berth_engine::Engine::open(root)?.disk_usage()?;
    if args.verbose {
        return df_verbose(&usage);
    }
    // go-units' HumanSize (4 significant digits), as the docker CLI's summary prints.
    let human = |n: u64| units::human_size_with_precision(n as f64, 4);
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
    // The docker CLI's sums over the Engine API's `/system/df`.
    let images = &usage.images;
    let active_images: Vec<_> = images.iter().filter(|i| i.containers > 0).collect();
    let images_used: u64 = active_images
        .iter()
        .map(|i| i.record.size.saturating_sub(i.shared_size))
        .sum();
    let containers = &usage.containers;
    let active = |c: &&berth_engine::ContainerUsage| c.record.state.running;
    let container_size: u64 = containers.iter().map(|c| c.size_rw).sum();
    let idle_size: u64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| c.size_rw)
        .sum();
    let volumes = &usage.volumes;
    let volume_size: u64 = volumes.iter().map(|v| v.size).sum();
    let unused_volumes: u64 = volumes
        .iter()
        .filter(|v| v.ref_count == 0)
        .map(|v| v.size)
        .sum();
    let rows = vec![
        row(
            "Images",
            images.len(),
            active_images.len(),
            usage.layers_size,
            usage.layers_size.saturating_sub(images_used),
        ),
        row(
            "Containers",
            containers.len(),
            containers.iter().filter(active).count(),
            container_size,
            idle_size,
        ),
        row(
            "Local Volumes",
            volumes.len(),
            volumes.iter().filter(|v| v.ref_count > 0).count(),
            volume_size,
            unused_volumes,
        ),
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

/// `system df -v`: per image, container and volume, as the docker CLI's tables show them
/// (Go's tabwriter: columns padded to the widest cell plus 3 spaces, at least 10 wide).
fn df_verbose(usage: &berth_engine::DiskUsage) -> Result<()> {
    let table = |lines: Vec<String>| -> Result<Vec<u8>> {
        let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
        for line in lines {
            writeln!(tw, "{line}")?;
        }
        Ok(tw.into_inner()?)
    };
    // The docker CLI's widths: 3 significant digits for an image's and a container's own
    // size, 4 (go-units' HumanSize) for the rest.
    let human = |n: u64| units::human_size(n as f64);
    let human4 = |n: u64| units::human_size_with_precision(n as f64, 4);
    let mut out = io::stdout().lock();
    writeln!(out, "Images space usage:\n")?;
    let mut lines = vec![
        "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS"
            .to_string(),
    ];
    for image in &usage.images {
        let rec = &image.record;
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
            lines.push(format!(
                "{repo}\t{tag}\t{}\t{created}\t{}\t{}\t{}\t{}",
                rec.id.short(),
                human(rec.size),
                human4(image.shared_size),
                human4(rec.size.saturating_sub(image.shared_size)),
                image.containers,
            ));
        }
    }
    out.write_all(&table(lines)?)?;
    writeln!(out, "\nContainers space usage:\n")?;
    let now = jiff::Timestamp::now();
    let mut lines = vec![
        "CONTAINER ID\tIMAGE\tCOMMAND\tLOCAL VOLUMES\tSIZE\tCREATED\tSTATUS\tNAMES".to_string(),
    ];
    for c in &usage.containers {
        let rec = &c.record;
        let created = rec.created.parse::<jiff::Timestamp>().unwrap_or(now);
        let volumes = rec.mounts.iter().filter(|m| m.kind == "volume").count();
        lines.push(format!(
            "{}\t{}\t{}\t{volumes}\t{}\t{}\t{}\t{}",
            &rec.id[..12],
            rec.config.image,
            berth_build::metadata::go_quote(&units::ellipsis(&rec.command_line(), 20)),
            human(c.size_rw),
            units::ago(created, now),
            berth_engine::summary::status_text(rec, now),
            rec.name,
        ));
    }
    out.write_all(&table(lines)?)?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    let mut lines = vec!["VOLUME NAME\tLINKS\tSIZE".to_string()];
    for v in &usage.volumes {
        lines.push(format!(
            "{}\t{}\t{}",
            v.volume.name,
            v.ref_count,
            human4(v.size)
        ));
    }
    out.write_all(&table(lines)?)?;
    writeln!(out, "\nBuild cache usage: 0B\n")?;
    out.write_all(&table(vec![
        "CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED".to_string(),
    ])?)?;
    Ok(())
}

fn check(root: &Path) -> Result<()> {
    let report = berth_engine::Engine::open(root)?.check()?;
    let mut out = io::stdout().lock();
    for p in report.store.problems.iter().chain(&report.problems) {
        writeln!(out, "problem: {p}")?;
    }
    let problems = report.store.problems.len() + report.problems.len();
    writeln!(
        out,
        "checked {} blobs, {} images, {} layers, {} containers: {}",
        report.store.blobs,
        report.store.images,
        report.store.layers,
        report.containers,
        if problems == 0 {
            "no problems".to_string()
        } else {
            format!("{problems} problems")
        }
    )?;
    if report.store.debris > 0 {
        writeln!(
            out,
            "{} leftovers of interrupted writes (removed by the next `image prune` or `rmi`)",
            report.store.debris
        )?;
    }
    if report.debris > 0 {
        writeln!(
            out,
            "{} leftovers of interrupted container creates or removals (removed by the next `container prune`)",
            report.debris
        )?;
    }
    if !report.is_sound() {
        return Err(super::Status(1).into());
    }
    Ok(())
}
