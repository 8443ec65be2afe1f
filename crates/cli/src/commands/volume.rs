//! Volume commands: `volume create`, `ls`, `inspect`, `rm`, `prune`.

use std::{
    io::{self, Write},
    path::Path,
};

use anyhow::{Result, bail};
use berth_engine::{Engine, EngineError, VOLUME_FILTERS, VOLUME_PRUNE_FILTERS, VolumeOptions};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{print_json_indented, procs::natural_cmp, report};
use crate::{filters::Filters, format, units};

/// `berth volume ...`.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum VolumeCommand {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Remove unused local volumes
    Prune(PruneArgs),
}

/// Runs one `volume` command.
pub fn dispatch(root: &Path, command: VolumeCommand) -> Result<()> {
    match command {
        VolumeCommand::Create(args) => create(root, args),
        VolumeCommand::Ls(args) => list(root, args),
        VolumeCommand::Inspect(args) => inspect(root, args),
        VolumeCommand::Rm(args) => remove(root, args),
        VolumeCommand::Prune(args) => prune(root, args),
    }
}

// ---------------------------------------------------------------- create

/// `berth volume create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Specify volume driver name
    #[arg(short, long, default_value = "local", value_name = "string")]
    driver: String,
    /// Set metadata for a volume
    #[arg(long, value_name = "list")]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    opt: Vec<String>,
    /// Specify volume name
    #[arg(long, hide = true)]
    name: Option<String>,
    /// [VOLUME]
    volume: Option<String>,
}

/// `berth volume create`: prints the volume's name.
pub fn create(root: &Path, args: CreateArgs) -> Result<()> {
    let name = match (args.volume, args.name) {
        (Some(_), Some(_)) => bail!(
            "conflicting options: cannot specify a volume-name through both --name and as a positional arg"
        ),
        (positional, flag) => positional.or(flag),
    };
    let opts = VolumeOptions {
        name,
        driver: args.driver,
        labels: super::key_values(&args.label, "label")?,
        options: super::key_values(&args.opt, "opt")?,
        anonymous: false,
    };
    let mut engine = Engine::open(root)?;
    let volume = engine.volume_create(&opts)?;
    println!("{}", volume.name);
    Ok(())
}

// ---------------------------------------------------------------- ls

/// `berth volume ls` flags.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Provide filter values (e.g. 'dangling=true')
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
}

/// One row of `volume ls`, with the field names Docker's templates use (the cluster
/// fields and the usage fields, which `ls` does not compute, are `N/A` as in Docker).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VolumeRow {
    availability: String,
    driver: String,
    group: String,
    labels: String,
    links: String,
    mountpoint: String,
    name: String,
    scope: String,
    size: String,
    status: String,
}

/// `berth volume ls`: Docker's columns, names in natural order.
pub fn list(root: &Path, args: ListArgs) -> Result<()> {
    let filters = Filters::parse(&args.filter, VOLUME_FILTERS)?;
    let mut engine = Engine::open(root)?;
    let mut volumes = engine.volume_list(&filters)?;
    volumes.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let mut rows = Vec::new();
    for v in volumes {
        rows.push(VolumeRow {
            availability: "N/A".into(),
            labels: v
                .labels
                .iter()
                .map(|(k, val)| format!("{k}={val}"))
                .collect::<Vec<_>>()
                .join(","),
            links: "N/A".into(),
            group: "N/A".into(),
            mountpoint: v.mountpoint,
            scope: v.scope,
            size: "N/A".into(),
            status: "N/A".into(),
            driver: v.driver,
            name: v.name,
        });
    }
    format::print_list(
        &rows,
        args.quiet,
        |r| &r.name,
        args.format.as_deref(),
        "table {{.Driver}}\t{{.Name}}",
        &[
            ("Availability", "AVAILABILITY"),
            ("Driver", "DRIVER"),
            ("Group", "GROUP"),
            ("Labels", "LABELS"),
            ("Links", "LINKS"),
            ("Mountpoint", "MOUNTPOINT"),
            ("Name", "VOLUME NAME"),
            ("Scope", "SCOPE"),
            ("Size", "SIZE"),
            ("Status", "STATUS"),
        ],
    )
}

// ---------------------------------------------------------------- inspect

/// `berth volume inspect` flags.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// VOLUME...
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `berth volume inspect`: the documents found, then one error line per name that is not
/// a volume (exit 1).
pub fn inspect(root: &Path, args: InspectArgs) -> Result<()> {
    let engine = Engine::open(root)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for name in &args.volumes {
        match engine.volume(name) {
            Ok(v) => docs.push(serde_json::to_value(v)?),
            Err(EngineError::NoSuchVolume(_)) => errors.push(format!("No such volume: {name}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match args.format.as_deref() {
        Some(tmpl) if !tmpl.is_empty() && tmpl != "json" => {
            let mut out = io::stdout().lock();
            for d in &docs {
                writeln!(out, "{}", format::render_one(tmpl, d)?)?;
            }
        }
        _ => print_json_indented(&serde_json::Value::Array(docs))?,
    }
    report(&errors)
}

/// The `inspect` document of the volume `name`, `None` when there is none (for the
/// top-level `inspect`).
pub fn inspect_document(root: &Path, name: &str) -> Result<Option<serde_json::Value>> {
    match Engine::open(root)?.volume(name) {
        Ok(v) => Ok(Some(serde_json::to_value(v)?)),
        Err(EngineError::NoSuchVolume(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- rm

/// `berth volume rm` flags.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// Force the removal of one or more volumes
    #[arg(short, long)]
    force: bool,
    /// VOLUME...
    #[arg(required = true)]
    volumes: Vec<String>,
}

/// `berth volume rm`: prints each name removed; the errors come after, one line each, as
/// Docker reports them.
pub fn remove(root: &Path, args: RemoveArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut errors = Vec::new();
    let mut out = io::stdout().lock();
    for name in &args.volumes {
        match engine.volume_remove(name, args.force) {
            Ok(()) => writeln!(out, "{name}")?,
            Err(e) => errors.push(e.to_string()),
        }
    }
    drop(out);
    report(&errors)
}

// ---------------------------------------------------------------- prune

/// `berth volume prune` flags.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
}

/// `berth volume prune`: without `--all`, anonymous volumes only (Docker 23 and later).
pub fn prune(root: &Path, args: PruneArgs) -> Result<()> {
    let mut filters = Filters::parse(&args.filter, VOLUME_PRUNE_FILTERS)?;
    if args.all {
        if !filters.get("all").is_empty() {
            bail!("conflicting options: cannot specify both --all and --filter all=1");
        }
        filters = filters.with("all", "true");
    }
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all local volumes not used by at least one container."
        } else {
            "WARNING! This will remove anonymous local volumes not used by at least one container."
        };
        if !super::image::confirm(warning)? {
            return Ok(());
        }
    }
    let mut engine = Engine::open(root)?;
    let (deleted, reclaimed) = engine.volume_prune(&filters)?;
    let mut out = io::stdout().lock();
    if !deleted.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for name in &deleted {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    // Docker prints this one with go-units' `HumanSize` (4 significant digits).
    writeln!(
        out,
        "Total reclaimed space: {}",
        units::human_size_with_precision(reclaimed as f64, 4)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn key_values_take_bare_keys_and_the_last_value() {
        let map = crate::commands::key_values(
            &["a=1".into(), "b".into(), "a=2".into(), "c=x=y".into()],
            "opt",
        )
        .unwrap();
        assert_eq!(
            map.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_string(), "2".to_string()),
                ("b".to_string(), String::new()),
                ("c".to_string(), "x=y".to_string())
            ]
        );
    }
}
