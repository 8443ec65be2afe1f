//! `berth serve`: the Docker Engine API on a socket (`berth-api`).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

/// `berth serve` flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where to listen: unix:///PATH or tcp://HOST:PORT (repeatable)
    #[arg(short = 'H', long = "host", value_name = "list", default_value = berth_api::DEFAULT_HOST)]
    hosts: Vec<String>,
    /// Group that may use the Unix socket besides root
    #[arg(short = 'G', long)]
    group: Option<String>,
}

/// `berth serve`: until SIGINT or SIGTERM.
pub fn serve(root: &Path, args: ServeArgs) -> Result<()> {
    let options = berth_api::ServeOptions {
        root: root.to_path_buf(),
        hosts: args.hosts,
        group: args.group,
    };
    berth_api::serve(options, |hosts| {
        for host in hosts {
            eprintln!("berth serve: API listening on {host}");
        }
    })
    .context("berth serve")
}
