//! What a container holds: `cp`, `diff`, `export`, `commit`.

use std::{
    fs,
    io::{self, IsTerminal, Write},
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use berth_engine::{
    Engine, EngineError,
    contents::{CommitRequest, archive_name},
};
use berth_reference::Reference;
use berth_store::{ChangeKind, PackOptions, PathKind, PathStat, UnpackOptions};
use clap::Args;
use rustix::fs::{Mode, OFlags};

use super::fail;
use crate::units;

// ---------------------------------------------------------------- cp

/// `berth cp` flags.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH or - (a tar stream on stdin)
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    src: String,
    /// CONTAINER:DEST_PATH or DEST_PATH or - (a tar stream on stdout)
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    dest: String,
}

/// `CONTAINER:PATH` as Docker splits it: a path that starts with `/` or `.` is local even
/// with a colon in it.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

/// `berth cp`: between a container and this machine, or a tar stream (`-`).
pub fn cp(root: &Path, args: CpArgs) -> Result<()> {
    let mut engine = Engine::open(root).map_err(|e| fail(1, e))?;
    match (container_path(&args.src), container_path(&args.dest)) {
        (Some((container, path)), None) => copy_out(&mut engine, container, path, &args),
        (None, Some((container, path))) => copy_in(&mut engine, container, path, &args),
        (Some(_), Some(_)) => Err(fail(1, "copying between containers is not supported")),
        (None, None) => Err(fail(1, "must specify at least one container source")),
    }
}

/// The last component of `path` (what a copy is named after): empty for `/` and for
/// `dir/.`, whose contents are copied.
fn base_name(path: &str) -> PathBuf {
    if path.ends_with("/.") || path == "." {
        return PathBuf::new();
    }
    Path::new(path)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The directory a copy is extracted into and the name its top entry gets there, given
/// what is at the destination (`None`: nothing), Docker's rules: into an existing
/// directory under its own name; over an existing file, or as a new name, in the parent.
fn placement(
    src: &str,
    src_is_dir: bool,
    dest: &str,
    dest_kind: Option<PathKind>,
) -> std::result::Result<(PathBuf, PathBuf), String> {
    let dest_path = Path::new(dest);
    let parent = || {
        dest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    };
    match dest_kind {
        Some(PathKind::Dir) => Ok((dest_path.to_path_buf(), base_name(src))),
        Some(_) if src_is_dir => Err(format!(
            "cannot copy a directory to a file: {dest} is not a directory"
        )),
        Some(_) => Ok((parent(), base_name(dest))),
        None if dest.ends_with('/') && !src_is_dir => {
            Err(format!("destination directory {dest} does not exist"))
        }
        None => Ok((parent(), base_name(dest))),
    }
}

fn copy_out(engine: &mut Engine, container: &str, path: &str, args: &CpArgs) -> Result<()> {
    let (_rec, fs) = engine.open_fs(container, false).map_err(|e| fail(1, e))?;
    let stat = container_stat(fs.root(), path, args.follow_link, container)?;
    let pack = |name: PathBuf, out: &mut dyn Write| {
        berth_store::pack_path(
            fs.root(),
            Path::new(path),
            &PackOptions {
                name,
                follow_top: args.follow_link,
                owner: None,
                owner_names: true,
            },
            out,
        )
    };
    if args.dest == "-" {
        // Named as dockerd names the archive (`./NAME` entries for `DIR/.`).
        let mut stdout = io::stdout().lock();
        pack(archive_name(path).into(), &mut stdout).map_err(|e| fail(1, e))?;
        stdout.flush()?;
        return Ok(());
    }
    let dest_kind = match fs::metadata(&args.dest) {
        Ok(m) if m.is_dir() => Some(PathKind::Dir),
        Ok(_) => Some(PathKind::File),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(1, format!("stat {}: {e}", args.dest))),
    };
    let (dir, name) = placement(path, stat.kind == PathKind::Dir, &args.dest, dest_kind)
        .map_err(|e| fail(1, e))?;
    let dir_fd = rustix::fs::open(
        &dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail(1, format!("{}: {e}", dir.display())))?;
    // Files copied out belong to whoever copies them, unless -a.
    let owner = (!args.archive).then(|| {
        (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        )
    });
    let bytes = transfer(
        |out| pack(name, out),
        dir_fd.as_fd(),
        &dir,
        UnpackOptions {
            whiteouts: false,
            owner,
        },
    )?;
    report(args, bytes, &args.dest);
    Ok(())
}

fn copy_in(engine: &mut Engine, container: &str, path: &str, args: &CpArgs) -> Result<()> {
    // Both ways in go through the engine's extraction, which owns the rules (a directory
    // to extract into, a read-only root refused outside writable mounts, owners).
    let extract = |engine: &mut Engine, dir: &str, tar: &mut (dyn io::Read + Send)| {
        engine
            .extract_archive(container, dir, tar, args.archive)
            .map_err(|e| match e {
                EngineError::NotADirectory => fail(
                    1,
                    format!("destination \"{container}:{path}\" must be a directory"),
                ),
                e => fail(1, e),
            })
    };
    if args.src == "-" {
        return extract(engine, path, &mut io::stdin());
    }
    let dest_kind = match engine.stat_path(container, path) {
        Ok(stat) => Some(stat.stat.kind),
        Err(EngineError::NoSuchPath { .. }) => None,
        Err(e) => return Err(fail(1, e)),
    };
    let local = std::env::current_dir()?.join(&args.src);
    let meta = if args.follow_link {
        fs::metadata(&local)
    } else {
        fs::symlink_metadata(&local)
    };
    let meta = meta.map_err(|e| fail(1, format!("lstat {}: {}", args.src, lower_io(&e))))?;
    let (dir, name) =
        placement(&args.src, meta.is_dir(), path, dest_kind).map_err(|e| fail(1, e))?;
    let host_root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Packed on one thread, extracted by the engine on this one, through a pipe.
    let (mut reader, writer) = io::pipe()?;
    let bytes = std::thread::scope(|scope| {
        let packer = scope.spawn(move || {
            let mut writer = writer;
            berth_store::pack_path(
                host_root.as_fd(),
                &local,
                &PackOptions {
                    name,
                    follow_top: args.follow_link,
                    owner: None,
                    // Extracted into the container, where names are not read.
                    owner_names: false,
                },
                &mut writer,
            )
        });
        let extracted = extract(engine, &dir.to_string_lossy(), &mut reader);
        // A refused extraction closes the pipe: the packer's broken pipe says nothing new.
        drop(reader);
        let packed = packer.join().expect("the packing thread panicked");
        extracted?;
        packed.map(|stats| stats.bytes).map_err(|e| fail(1, e))
    })?;
    report(args, bytes, &args.dest);
    Ok(())
}

fn container_stat(
    root: BorrowedFd<'_>,
    path: &str,
    follow: bool,
    container: &str,
) -> Result<PathStat> {
    berth_store::stat_in_root(root, Path::new(path), follow).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            fail(
                1,
                format!("Could not find the file {path} in container {container}"),
            )
        } else {
            fail(1, format!("{container}:{path}: {}", lower_io(&e)))
        }
    })
}

/// Go's way of printing an OS error: "no such file or directory".
fn lower_io(e: &io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Packs on one thread and unpacks on this one, through a pipe; returns the tar's size.
fn transfer(
    pack: impl FnOnce(
        &mut dyn Write,
    ) -> std::result::Result<berth_store::PackStats, berth_store::PackError>
    + Send,
    dir: BorrowedFd<'_>,
    label: &Path,
    options: UnpackOptions,
) -> Result<u64> {
    let (reader, writer) = io::pipe()?;
    std::thread::scope(|scope| {
        let packer = scope.spawn(move || {
            let mut writer = writer;
            pack(&mut writer)
        });
        let unpacked = berth_store::unpack_into(reader, dir, label, &options);
        let packed = packer.join().expect("the packing thread panicked");
        match (packed, unpacked) {
            (Ok(stats), Ok(_)) => Ok(stats.bytes),
            (Err(e), _) => Err(fail(1, e)),
            (Ok(_), Err(e)) => Err(fail(1, e)),
        }
    })
}

/// Docker's last line on a terminal: "Successfully copied 2.05kB to /tmp/x".
fn report(args: &CpArgs, bytes: u64, dest: &str) {
    if !args.quiet && io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {dest}",
            units::human_size(bytes as f64)
        );
    }
}

// ---------------------------------------------------------------- diff / export

/// `berth diff` arguments.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// CONTAINER
    container: String,
}

/// `berth diff`: `C`, `A` or `D` and the path, one change a line.
pub fn diff(root: &Path, args: DiffArgs) -> Result<()> {
    let mut engine = Engine::open(root).map_err(|e| fail(1, e))?;
    let changes = engine.diff(&args.container).map_err(|e| fail(1, e))?;
    let mut out = io::stdout().lock();
    for change in changes {
        let kind = match change.kind {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        };
        writeln!(out, "{kind} {}", change.path)?;
    }
    Ok(())
}

/// `berth export` flags.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "string")]
    output: Option<PathBuf>,
    /// CONTAINER
    container: String,
}

/// `berth export`: the container's filesystem as a tar archive.
pub fn export(root: &Path, args: ExportArgs) -> Result<()> {
    let mut engine = Engine::open(root).map_err(|e| fail(1, e))?;
    match &args.output {
        Some(path) => {
            let file = fs::File::create(path)
                .map_err(|e| fail(1, format!("failed to export container: {e}")))?;
            let mut out = io::BufWriter::new(file);
            engine
                .export(&args.container, &mut out)
                .map_err(|e| fail(1, e))?;
            out.flush()
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                return Err(fail(
                    1,
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect",
                ));
            }
            let mut out = io::BufWriter::new(io::stdout().lock());
            engine
                .export(&args.container, &mut out)
                .map_err(|e| fail(1, e))?;
            out.flush()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- commit

/// `berth commit` flags.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long, value_name = "string")]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long, value_name = "list")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long, value_name = "string")]
    message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    /// CONTAINER
    container: String,
    /// [REPOSITORY[:TAG]]
    repository: Option<String>,
}

/// `berth commit`: a new image from the container's changes; prints its ID.
pub fn commit(root: &Path, args: CommitArgs) -> Result<()> {
    let tag = args
        .repository
        .as_deref()
        .map(Reference::parse_with_default_tag)
        .transpose()
        .map_err(|e| fail(1, e))?;
    if tag.as_ref().is_some_and(|t| t.digest().is_some()) {
        return Err(fail(1, "cannot commit to a reference with a digest"));
    }
    let mut engine = Engine::open(root).map_err(|e| fail(1, e))?;
    let request = CommitRequest {
        author: args.author.clone(),
        comment: args.message.clone(),
        tag,
        pause: args.pause,
    };
    let image = engine
        .commit(&args.container, request, |config| {
            berth_build::changes::apply_changes(config, &args.change)
        })
        .map_err(|e: EngineError| fail(1, e))?;
    println!("{}", image.id);
    Ok(())
}
