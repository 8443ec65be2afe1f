//! `berth registry serve|gc|check`: the registry server and its storage maintenance.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_distribution::server::{self, GcOptions};
use clap::{Args, Subcommand};

use super::fail;
use crate::registry_serve::{self, RootArgs, ServeArgs};
use crate::units;

/// Not `defer`red: `serve`'s own `--root` (the registry's storage) must exist before clap
/// propagates berth's global `--root`, which it then leaves out of `serve`.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Serve an OCI distribution registry
    Serve(ServeArgs),
    /// Delete blobs (and with --delete-untagged, manifests) that nothing references
    Gc(GcArgs),
    /// Verify the registry's storage: blob digests, tags, manifests' references
    Check(RootArgs),
}

#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    root: RootArgs,
    /// Print what would be deleted, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// Also delete manifests no tag reaches (directly, through an index, or as a referrer)
    #[arg(long)]
    delete_untagged: bool,
}

/// `log_level`: berth's, for a server in a process of its own.
pub fn dispatch(command: RegistryCommand, log_level: &str) -> Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(args, log_level),
        RegistryCommand::Gc(args) => gc(args),
        RegistryCommand::Check(args) => check(args),
    }
}

/// Executes `berth-registry` when it sits beside this executable (the server alone, in less
/// memory), and serves in this process otherwise.
fn serve(args: ServeArgs, log_level: &str) -> Result<()> {
    if let Ok(exe) = std::env::current_exe() {
        let lean = exe.with_file_name("berth-registry");
        if lean.is_file() {
            let mut command = std::process::Command::new(&lean);
            command.args(registry_serve::server_args(&args, log_level));
            registry_serve::with_one_malloc_arena(&mut command);
            let error = command.exec();
            tracing::info!(
                "serving in berth itself: cannot execute {}: {error}",
                lean.display()
            );
        }
    }
    registry_serve::reexec_with_one_malloc_arena();
    registry_serve::serve(args)
}

fn gc(args: GcArgs) -> Result<()> {
    let options = GcOptions {
        dry_run: args.dry_run,
        delete_untagged: args.delete_untagged,
        upload_max_idle: Duration::from_secs(24 * 3600),
    };
    let report = server::gc(&args.root.root, &options).context("berth registry gc")?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for manifest in &report.manifests {
        println!("{verb} manifest {manifest}");
    }
    for blob in &report.blobs {
        println!("{verb} blob {blob}");
    }
    println!(
        "{} {} manifest(s), {} blob(s) ({}), {} abandoned upload(s)",
        if args.dry_run {
            "Would delete"
        } else {
            "Deleted"
        },
        report.manifests.len(),
        report.blobs.len(),
        units::human_size(report.bytes as f64),
        report.uploads
    );
    Ok(())
}

fn check(args: RootArgs) -> Result<()> {
    let problems = server::check(&args.root).context("berth registry check")?;
    if problems.is_empty() {
        println!("{}: consistent", args.root.display());
        return Ok(());
    }
    for problem in &problems {
        println!("{problem}");
    }
    Err(fail(
        1,
        format!("{} problem(s) in {}", problems.len(), args.root.display()),
    ))
}
