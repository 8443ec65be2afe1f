//! `berth build` and `berth builder prune`.

use std::{collections::BTreeMap, io::Read, path::Path};

use anyhow::{Result, anyhow};
use berth_build::{BuildError, BuildOptions, Progress};
use berth_engine::Engine;
use berth_reference::Reference;
use clap::{Args, Subcommand};

use super::{Status, fail};

/// `berth build` flags, Docker's names.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short, long, value_name = "list")]
    tag: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short, long, value_name = "string")]
    file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "list")]
    build_arg: Vec<String>,
    /// Set the target build stage to build
    #[arg(long, value_name = "string")]
    target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Set metadata for an image
    #[arg(long, value_name = "list")]
    label: Vec<String>,
    /// Write the image ID to the file
    #[arg(long, value_name = "string")]
    iidfile: Option<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Set type of progress output ("auto", "plain", "tty", "quiet"): auto is tty on a
    /// terminal, plain otherwise
    #[arg(long, value_name = "string", default_value = "auto")]
    progress: String,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, value_name = "string")]
    network: Option<String>,
    /// Output destination (format: "type=local,dest=path" or "type=tar,dest=path|-"; a path
    /// alone is type=local, "-" a tar on stdout)
    #[arg(short, long, value_name = "stringArray")]
    output: Vec<String>,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or
    /// "id=mysecret,env=VAR")
    #[arg(long, value_name = "stringArray")]
    secret: Vec<String>,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pull: bool,
    /// Set target platform for build (only this host's: linux/ARCH)
    #[arg(long, value_name = "string")]
    platform: Option<String>,
    /// Remove intermediate containers after a successful build (always: accepted for
    /// scripts written for the legacy builder)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    rm: Option<String>,
    /// Always remove intermediate containers (always: accepted for the legacy builder's
    /// scripts)
    #[arg(long = "force-rm", hide = true)]
    force_rm: bool,
    /// PATH: the build context directory ("-" reads a Dockerfile from stdin, no context)
    context: String,
}

/// `berth builder ...`.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum BuilderCommand {
    /// Remove build cache
    Prune(PruneArgs),
}

/// `berth builder prune` flags.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused build cache, not just dangling ones (every prune removes the steps
    /// and cache mounts; --all also forgets the context files' digests)
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

/// Runs `berth build`.
pub fn build(root: &Path, args: BuildArgs) -> Result<()> {
    if !matches!(args.progress.as_str(), "auto" | "plain" | "tty" | "quiet") {
        return Err(fail(
            1,
            format!(
                "invalid progress mode {:?}: auto, plain, tty or quiet",
                args.progress
            ),
        ));
    }
    let _ = (&args.rm, args.force_rm);
    // `-`: stdin is a Dockerfile (an empty context), or the context as a tar archive
    // (gzip, bzip2, xz or zstd compressed or not, as `ADD` reads them).
    let mut stdin_context = None;
    let (context, dockerfile, dockerfile_name) = if args.context == "-" {
        let streamed = berth_build::receive_context(root, std::io::stdin())
            .map_err(|e| fail(1, format!("unable to prepare context: {e}")))?;
        let name = match &streamed.dockerfile {
            Some(_) => "Dockerfile".to_string(),
            None => args.file.clone().unwrap_or_else(|| "Dockerfile".into()),
        };
        let text = streamed.read_dockerfile(&name).map_err(|e| fail(1, e))?;
        let dir = streamed.path().to_path_buf();
        // Removed when the command ends, whichever way it ends.
        stdin_context = Some(streamed);
        (dir, text, name)
    } else {
        let context = std::path::PathBuf::from(&args.context);
        if !context.is_dir() {
            return Err(fail(
                1,
                format!(
                    "unable to prepare context: path {:?} not found",
                    args.context
                ),
            ));
        }
        let file = match &args.file {
            Some(f) if f == "-" => None,
            Some(f) => Some(std::path::PathBuf::from(f)),
            None => Some(context.join("Dockerfile")),
        };
        let (text, name) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    fail(
                        1,
                        format!("failed to read dockerfile {}: {e}", path.display()),
                    )
                })?;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "Dockerfile".into());
                (text, name)
            }
            None => {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                (text, "Dockerfile".into())
            }
        };
        (context, text, name)
    };
    let dockerignore = std::fs::read_to_string(context.join(".dockerignore")).unwrap_or_default();
    let mut tags = Vec::new();
    for t in &args.tag {
        tags.push(
            Reference::parse_with_default_tag(t)
                .map_err(|e| fail(1, format!("invalid tag \"{t}\": {e}")))?,
        );
    }
    let mut build_args = BTreeMap::new();
    for a in &args.build_arg {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            // `--build-arg NAME` takes the value from the environment, as Docker.
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let labels = super::key_values(&args.label, "label")?;
    let mut secrets = BTreeMap::new();
    for spec in &args.secret {
        let (id, value) =
            read_secret(spec).map_err(|e| fail(1, format!("--secret {spec}: {e}")))?;
        secrets.insert(id, value);
    }
    let opts = BuildOptions {
        context,
        dockerfile,
        dockerfile_name: dockerfile_name.clone(),
        dockerignore,
        tags,
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        labels,
        network: args.network.clone(),
        secrets,
        fetch_base: Some(super::registry::base_fetcher(
            root,
            !(args.quiet || args.progress == "quiet"),
        )),
        pull: args.pull,
        platform: args.platform.clone(),
    };
    let output = match args.output.as_slice() {
        [] => None,
        [one] => {
            parse_output(one).map_err(|e| fail(1, format!("invalid --output {one:?}: {e}")))?
        }
        _ => return Err(fail(1, "multiple outputs are not supported")),
    };
    let quiet = args.quiet || args.progress == "quiet";
    // `auto` is the live view on a terminal, lines otherwise (as BuildKit).
    let tty = match args.progress.as_str() {
        "tty" => true,
        "auto" => std::io::IsTerminal::is_terminal(&std::io::stderr()),
        _ => false,
    };
    let mut progress = if quiet {
        Progress::new(None)
    } else if tty {
        Progress::tty()
    } else {
        Progress::new(Some(Box::new(std::io::stderr())))
    };
    let mut engine = Engine::open(root)?;
    let built = berth_build::build(&mut engine, &opts, &mut progress);
    drop(stdin_context);
    let built = match (built, &output) {
        (Ok(id), Some(out)) => export(&mut engine, &id, out, &mut progress).map(|()| id),
        (built, _) => built,
    };
    progress.finish();
    match built {
        Ok(id) => {
            if let Some(path) = &args.iidfile {
                std::fs::write(path, id.to_string())
                    .map_err(|e| anyhow!("write --iidfile {path}: {e}"))?;
            }
            if quiet {
                println!("{id}");
            }
            Ok(())
        }
        Err(e) => {
            report_failure(
                &dockerfile_name,
                &opts.dockerfile,
                &e,
                progress.failed_step(),
            );
            Err(Status(1).into())
        }
    }
}

/// Where `-o` sends the result instead of the image store.
enum Output {
    /// `type=local,dest=DIR`: the files, into a directory.
    Local(std::path::PathBuf),
    /// `type=tar,dest=FILE`: the files as one tar (`None`: to stdout).
    Tar(Option<std::path::PathBuf>),
}

/// `-o`: `type=local|tar,dest=...`, a path alone (local), `-` (a tar on stdout);
/// `type=docker` or `type=image` is the default (the store), `None`.
fn parse_output(spec: &str) -> Result<Option<Output>, String> {
    if spec == "-" {
        return Ok(Some(Output::Tar(None)));
    }
    if !spec.contains('=') {
        return Ok(Some(Output::Local(spec.into())));
    }
    let (mut kind, mut dest) = (None, None);
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(v.to_string()),
            _ => return Err(format!("unexpected field {field:?}")),
        }
    }
    match (kind.as_deref(), dest) {
        (Some("local"), Some(d)) => Ok(Some(Output::Local(d.into()))),
        (Some("tar"), Some(d)) if d == "-" => Ok(Some(Output::Tar(None))),
        (Some("tar"), Some(d)) => Ok(Some(Output::Tar(Some(d.into())))),
        (Some("tar"), None) => Ok(Some(Output::Tar(None))),
        (Some("local"), None) => Err("dest is required for local output".into()),
        (Some("docker" | "image"), _) => Ok(None),
        (Some(other), _) => Err(format!("unsupported output type {other:?}: local or tar")),
        (None, _) => Err("type is required".into()),
    }
}

/// Writes the built image's files where `-o` says.
fn export(
    engine: &mut Engine,
    id: &berth_reference::Digest,
    output: &Output,
    progress: &mut Progress,
) -> Result<(), BuildError> {
    let io = |what: &str, e: std::io::Error| BuildError::Invalid(format!("{what}: {e}"));
    match output {
        Output::Tar(dest) => {
            progress.start("exporting to client tarball");
            let out: Box<dyn std::io::Write> = match dest {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .map_err(|e| io(&format!("create {}", path.display()), e))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut out = std::io::BufWriter::new(out);
            berth_build::export_filesystem(engine, id, &mut out)?;
            std::io::Write::flush(&mut out).map_err(|e| io("write the archive", e))?;
        }
        Output::Local(dir) => {
            progress.start("exporting to client directory");
            std::fs::create_dir_all(dir)
                .map_err(|e| io(&format!("create {}", dir.display()), e))?;
            let (reader, writer) = std::io::pipe().map_err(|e| io("make a pipe", e))?;
            let dest = dir.clone();
            let unpacker = std::thread::spawn(move || {
                let root = std::fs::File::open(&dest)?;
                let opts = berth_store::UnpackOptions {
                    whiteouts: false,
                    owner: None,
                };
                berth_store::unpack_into(
                    std::io::BufReader::new(reader),
                    std::os::fd::AsFd::as_fd(&root),
                    &dest,
                    &opts,
                )
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string()))
            });
            let written =
                berth_build::export_filesystem(engine, id, std::io::BufWriter::new(writer));
            let unpacked = unpacker
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the unpacker panicked")));
            // The unpacker's error first: the export's would only be the broken pipe.
            unpacked.map_err(|e| io(&format!("write into {}", dir.display()), e))?;
            written?;
        }
    }
    progress.done(std::time::Duration::ZERO);
    Ok(())
}

/// `--secret id=ID[,type=file|env][,src=PATH|,env=VAR]` as buildx reads it: the type is
/// `env` when `env=` is given; with neither `src=` nor `env=`, the variable named ID if set,
/// or else the file named ID.
fn read_secret(spec: &str) -> Result<(String, Vec<u8>), String> {
    let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
    for field in spec.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?} is not a key=value pair"))?;
        match key.trim().to_ascii_lowercase().as_str() {
            "id" => id = Some(value.to_string()),
            "type" => kind = Some(value.to_string()),
            "src" | "source" => src = Some(value.to_string()),
            "env" => env = Some(value.to_string()),
            other => return Err(format!("unexpected key {other:?}")),
        }
    }
    let id = id.ok_or("an id= is required")?;
    let kind = match kind.as_deref() {
        Some("file") => "file",
        Some("env") => "env",
        Some(other) => return Err(format!("unsupported secret type {other:?}")),
        None if env.is_some() => "env",
        None if src.is_none() && std::env::var_os(&id).is_some() => "env",
        None => "file",
    };
    let value = if kind == "env" {
        let var = env.unwrap_or_else(|| id.clone());
        std::env::var(&var)
            .map_err(|_| format!("environment variable {var} is not set"))?
            .into_bytes()
    } else {
        let path = src.unwrap_or_else(|| id.clone());
        std::fs::read(&path).map_err(|e| format!("read {path}: {e}"))?
    };
    Ok((id, value))
}

/// Docker's failure report: the Dockerfile around the failing line, then one `ERROR:` line.
fn report_failure(name: &str, text: &str, e: &BuildError, step: Option<String>) {
    let line = match e {
        BuildError::Step { line, output, .. } => {
            if !output.is_empty() {
                eprintln!("------");
                if let Some(step) = step {
                    eprintln!(" > {step}:");
                }
                for l in output {
                    eprintln!("{l}");
                }
                eprintln!("------");
            }
            Some(*line)
        }
        BuildError::Parse { line, .. } if *line > 0 => Some(*line),
        _ => None,
    };
    if let Some(line) = line {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("{name}:{line}");
        eprintln!("--------------------");
        let first = line.saturating_sub(2).max(1);
        let last = (line + 2).min(lines.len());
        for n in first..=last {
            let marker = if n == line { ">>>" } else { "   " };
            eprintln!(
                "{n:>4} | {marker} {}",
                lines.get(n - 1).copied().unwrap_or("")
            );
        }
        eprintln!("--------------------");
    }
    eprintln!("ERROR: {}", e.solve_message());
}

/// Runs `berth builder ...`.
pub fn builder(root: &Path, command: BuilderCommand) -> Result<()> {
    match command {
        BuilderCommand::Prune(args) => {
            if !args.force {
                eprint!(
                    "WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] "
                );
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y") {
                    return Ok(());
                }
            }
            let mut engine = Engine::open(root)?;
            let cache = berth_build::cache::Cache::open(root)?;
            let (steps, reclaimed) = cache.prune(engine.store())?;
            let mounts = berth_build::prune_cache_mounts(root)
                .map_err(|e| anyhow!("remove the cache mounts: {e}"))?;
            // The context files' digests are like BuildKit's copy of the context: only
            // `--all` lets go of them.
            if args.all {
                berth_build::forget_file_hashes(root)
                    .map_err(|e| anyhow!("forget the context's file digests: {e}"))?;
            }
            println!("Deleted build cache objects: {steps}");
            println!(
                "Total reclaimed space: {}",
                crate::units::human_size((reclaimed + mounts) as f64)
            );
            Ok(())
        }
    }
}
