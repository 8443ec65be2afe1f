//! `berth registry serve|gc|check`: the registry server and its storage maintenance.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_distribution::server::{self, GcOptions, ServeOptions};
use clap::{Args, Subcommand};

use super::fail;
use crate::units;

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
pub struct RootArgs {
    /// The registry's storage directory
    #[arg(long, default_value = "/var/lib/berth-registry")]
    root: PathBuf,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start)
    #[arg(long, default_value = "127.0.0.1:5000")]
    addr: SocketAddr,
    #[command(flatten)]
    root: RootArgs,
    /// htpasswd file with bcrypt hashes (htpasswd -B); every request then needs credentials
    #[arg(long)]
    htpasswd: Option<PathBuf>,
    /// With --htpasswd: let anyone pull; pushes and deletes still need credentials. (The
    /// docker CLI cannot pull anonymously from a Basic-auth registry: it needs `docker login`;
    /// skopeo, podman, containerd and berth can.)
    #[arg(long, requires = "htpasswd")]
    anonymous_pull: bool,
    /// TLS certificate chain (PEM)
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse pushes and deletes
    #[arg(long)]
    read_only: bool,
    /// Allow DELETE of manifests, tags and blobs
    #[arg(long)]
    delete: bool,
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

pub fn dispatch(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(args),
        RegistryCommand::Gc(args) => gc(args),
        RegistryCommand::Check(args) => check(args),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    reexec_with_one_malloc_arena();
    let options = ServeOptions {
        addr: args.addr,
        root: args.root.root.clone(),
        htpasswd: args.htpasswd,
        anonymous_pull: args.anonymous_pull,
        tls: args.tls_cert.zip(args.tls_key),
        read_only: args.read_only,
        delete: args.delete,
    };
    let root = args.root.root;
    server::serve(options, |addr, tls| {
        // Tests and scripts read the address from this line (port 0 picks one).
        eprintln!(
            "berth registry: serving {} on {}://{addr}",
            root.display(),
            if tls { "https" } else { "http" }
        );
    })
    .context("berth registry serve")
}

/// glibc gives every thread that allocates an arena of its own, and memory freed in one is
/// not reused by another: under 16 concurrent pushes the server's anonymous memory peaked at
/// 5.2 MiB with the default arenas and 3.4 MiB with one, at the same throughput
/// (benches/README.md). The tunable is read only when a process starts, and `mallopt` would
/// be unsafe code outside `berth-runtime`, so the server executes itself again, once, with
/// the tunable added. A user's own `arena_max` is kept; if the exec fails, the server runs
/// with glibc's defaults.
fn reexec_with_one_malloc_arena() {
    const ARENA_MAX: &str = "glibc.malloc.arena_max";
    if !cfg!(target_env = "gnu") {
        return;
    }
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains(ARENA_MAX) {
        return;
    }
    let tunables = if tunables.is_empty() {
        format!("{ARENA_MAX}=1")
    } else {
        format!("{tunables}:{ARENA_MAX}=1")
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
    tracing::debug!("serving with glibc's default malloc arenas: exec failed: {error}");
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
