//! `system` commands: df (and, later, prune, info, check).

use std::{collections::HashSet, io, path::Path};

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{image::headers, open_store};
use crate::{format, units};

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show berth disk usage
    Df(DfArgs),
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
    }
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
    // Shared layers count once, as docker's SIZE does.
    let mut seen = HashSet::new();
    let mut size = 0u64;
    for rec in &images {
        for chain in store.image(rec.clone())?.chain_ids()? {
            if seen.insert(chain.clone()) {
                size += store.layer(&chain)?.map_or(0, |l| l.size);
            }
        }
    }
    let human = |n: u64| units::human_size(n as f64);
    let reclaim = |n: u64, total: u64| {
        if total == 0 {
            human(n)
        } else {
            format!("{} ({}%)", human(n), n * 100 / total)
        }
    };
    let row = |kind: &str, total: usize, size: u64| DfRow {
        kind: kind.into(),
        total_count: total.to_string(),
        active: "0".into(),
        size: human(size),
        reclaimable: reclaim(size, size),
    };
    let rows = vec![
        row("Images", images.len(), size),
        row("Containers", 0, 0),
        row("Local Volumes", 0, 0),
        row("Build Cache", 0, 0),
    ];
    let _ = args.verbose;
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
