//! Image commands: images, import, load, save, tag, rmi, history, inspect, prune.

use std::{
    fs::File,
    io::{self, IsTerminal, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use berth_reference::Reference;
use berth_store::{
    ArchiveFormat, HistoryEntry, ImageQuery, ImageRecord, ImportOptions, ListedImage, RemoveEvent,
    RunConfig, StoreError,
};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::{Status, one_line, open_store, print_json_indented};
use crate::{filters::Filters, format, units};

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Remove unused images
    Prune(PruneArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Download an image from a registry
    Pull(super::registry::PullArgs),
    /// Upload an image to a registry
    Push(super::registry::PushArgs),
}

pub fn dispatch(root: &Path, cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Ls(a) => list(root, a),
        ImageCommand::Rm(a) => remove(root, a),
        ImageCommand::Inspect(a) => inspect_images(root, &a.images, a.format.as_deref()),
        ImageCommand::History(a) => history(root, a),
        ImageCommand::Prune(a) => prune(root, a),
        ImageCommand::Tag(a) => tag(root, a),
        ImageCommand::Import(a) => import(root, a),
        ImageCommand::Load(a) => load(root, a),
        ImageCommand::Save(a) => save(root, a),
        ImageCommand::Pull(a) => super::registry::pull(root, a),
        ImageCommand::Push(a) => super::registry::push(root, a),
    }
}

// ---------------------------------------------------------------- images

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    all: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')
    #[arg(long)]
    format: Option<String>,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// [REPOSITORY[:TAG]]
    repository: Option<String>,
}

/// One row of `images`, with the field names docker's templates use.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRow {
    containers: String,
    created_at: String,
    created_since: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    repository: String,
    shared_size: String,
    size: String,
    tag: String,
    unique_size: String,
    virtual_size: String,
}

/// Go's `time.Time.String()` in UTC, as docker prints CreatedAt.
fn go_time(ts: Option<jiff::Timestamp>) -> String {
    match ts {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => "0001-01-01 00:00:00 +0000 UTC".into(),
    }
}

pub(super) fn since(ts: Option<jiff::Timestamp>) -> String {
    match ts {
        Some(t) => units::ago(t, jiff::Timestamp::now()),
        None => "N/A".into(),
    }
}

fn short_id(rec: &ImageRecord, no_trunc: bool) -> String {
    if no_trunc {
        rec.id.to_string()
    } else {
        rec.id.short().to_string()
    }
}

pub fn list(root: &Path, args: ListArgs) -> Result<()> {
    let store = open_store(root)?;
    let filters = Filters::parse(&args.filter, berth_store::IMAGE_FILTERS)?;
    let mut references = filters.get("reference").to_vec();
    references.extend(args.repository.clone());
    let images = store.list_images(&ImageQuery {
        filters: &filters,
        all: args.all,
        references,
        labels: false,
    })?;
    let mut rows = Vec::new();
    for ListedImage { record: rec, .. } in &images {
        let created = rec.created_at();
        let mut names: Vec<(String, String, String)> = Vec::new();
        for t in &rec.tags {
            let digest = rec
                .repo_digests
                .iter()
                .find(|d| d.name() == t.name())
                .and_then(|d| d.digest())
                .map_or("<none>".to_string(), |d| d.to_string());
            names.push((
                t.familiar_name(),
                t.tag().unwrap_or("latest").into(),
                digest,
            ));
        }
        if rec.tags.is_empty() {
            for d in &rec.repo_digests {
                let digest = d.digest().map_or("<none>".into(), |d| d.to_string());
                names.push((d.familiar_name(), "<none>".into(), digest));
            }
        }
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into(), "<none>".into()));
        }
        let size = units::human_size(rec.size as f64);
        for (repo, tag, digest) in names {
            rows.push(ImageRow {
                containers: "N/A".into(),
                created_at: go_time(created),
                created_since: since(created),
                digest,
                id: short_id(rec, args.no_trunc),
                repository: repo,
                shared_size: "N/A".into(),
                size: size.clone(),
                tag,
                unique_size: "N/A".into(),
                virtual_size: size.clone(),
            });
        }
    }
    // With -q, one line per row, as docker prints them (an image with two tags shows twice).
    let default = if args.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    format::print_list(
        &rows,
        args.quiet,
        |r| &r.id,
        args.format.as_deref(),
        default,
        &[
            ("Containers", "CONTAINERS"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("SharedSize", "SHARED SIZE"),
            ("Size", "SIZE"),
            ("Tag", "TAG"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
        ],
    )?;
    Ok(())
}

pub fn headers(pairs: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

// ---------------------------------------------------------------- import

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    message: Option<String>,
    /// Set platform if server is multi-platform capable (os/arch)
    #[arg(long)]
    platform: Option<String>,
    /// file|- : the tarball to import ("-" reads standard input)
    file: String,
    /// [REPOSITORY[:TAG]]
    reference: Option<String>,
}

pub fn import(root: &Path, args: ImportArgs) -> Result<()> {
    let mut config = RunConfig::default();
    berth_build::changes::apply_changes(&mut config, &args.change).map_err(anyhow::Error::msg)?;
    let tag = args
        .reference
        .as_deref()
        .map(Reference::parse_with_default_tag)
        .transpose()?;
    if tag.as_ref().is_some_and(|t| t.digest().is_some()) {
        bail!("import cannot tag an image with a digest");
    }
    let architecture = match args.platform.as_deref() {
        None => None,
        Some(p) => match p.split('/').collect::<Vec<_>>().as_slice() {
            ["linux", arch] | ["linux", arch, _] => Some(arch.to_string()),
            _ => bail!("invalid platform {p:?}: expected linux/ARCH"),
        },
    };
    if args.file.contains("://") {
        bail!("importing from a URL is not supported: download the tarball and pass its path or -");
    }
    let mut store = open_store(root)?;
    let opts = ImportOptions {
        config,
        message: args.message,
        // docker's CLI streams a file as the request body, so its history says "-" too.
        source: "-".into(),
        tag,
        architecture,
    };
    let rec = if args.file == "-" {
        store.import(stdin_file()?, opts)
    } else {
        let f = File::open(&args.file).with_context(|| format!("open {}", args.file))?;
        store.import(f, opts)
    }
    .with_context(|| format!("importing {}", args.file))?;
    println!("{}", rec.id);
    Ok(())
}

// ---------------------------------------------------------------- load / save

/// Standard input as a `File`, so that it can be read on the unpacker's thread.
fn stdin_file() -> Result<File> {
    use std::os::fd::AsFd;
    Ok(File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicate stdin")?,
    ))
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short, long)]
    quiet: bool,
}

pub fn load(root: &Path, args: LoadArgs) -> Result<()> {
    let mut store = open_store(root)?;
    let loaded = match &args.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("open {}", p.display()))?;
            store.load(f)
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            store.load(stdin_file()?)
        }
    }
    .context("loading images")?;
    for line in loaded.iter().flat_map(|image| image.report()) {
        println!("{line}");
    }
    // `-q` silences progress only; berth's load prints none, and docker prints the
    // "Loaded image" lines either way.
    let _ = args.quiet;
    Ok(())
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Archive format: "docker" (docker save's format) or "oci" (an OCI image layout)
    #[arg(long, default_value = "docker")]
    format: String,
    /// IMAGE...
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn save(root: &Path, args: SaveArgs) -> Result<()> {
    let format = match args.format.as_str() {
        "docker" | "docker-archive" => ArchiveFormat::Docker,
        "oci" | "oci-archive" => ArchiveFormat::Oci,
        other => bail!("unknown archive format {other:?}: expected docker or oci"),
    };
    let store = open_store(root)?;
    let requests = store.save_requests_all(&args.images)?;
    match &args.output {
        Some(path) => {
            // Written beside the target and renamed, so a failed save leaves no partial file.
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::Builder::new()
                .prefix(".berth-save-")
                .tempfile_in(dir)
                .with_context(|| {
                    format!("failed to save image: create a file in {}", dir.display())
                })?;
            store.save(
                &requests,
                format,
                io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut()),
            )?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("failed to save image: write {}", path.display()))?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let result = store.save(
                &requests,
                format,
                io::BufWriter::with_capacity(1 << 20, io::stdout().lock()),
            );
            // A reader that went away got a truncated archive: say so in the status, as
            // docker does by dying of SIGPIPE (128 + 13), but print nothing more.
            if let Err(berth_store::StoreError::Io { source, .. }) = &result
                && source.kind() == io::ErrorKind::BrokenPipe
            {
                return Err(Status(141).into());
            }
            result?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- tag / rmi / prune

#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    source: String,
    /// TARGET_IMAGE[:TAG]
    target: String,
}

pub fn tag(root: &Path, args: TagArgs) -> Result<()> {
    let target = Reference::parse_with_default_tag(&args.target)?;
    let mut store = open_store(root)?;
    store.tag(&args.source, &target)?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// Force removal of the image
    #[arg(short, long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    no_prune: bool,
    /// IMAGE...
    #[arg(required = true)]
    images: Vec<String>,
}

fn print_events(out: &mut impl Write, events: &[RemoveEvent], lower: bool) -> io::Result<()> {
    for e in events {
        match (e, lower) {
            (RemoveEvent::Untagged(t), false) => writeln!(out, "Untagged: {t}")?,
            (RemoveEvent::Deleted(d), false) => writeln!(out, "Deleted: {d}")?,
            (RemoveEvent::Untagged(t), true) => writeln!(out, "untagged: {t}")?,
            (RemoveEvent::Deleted(d), true) => writeln!(out, "deleted: {d}")?,
        }
    }
    Ok(())
}

pub fn remove(root: &Path, args: RemoveArgs) -> Result<()> {
    let mut store = open_store(root)?;
    let mut failed = false;
    // Images made by import, load or pull have no local parent chain, so there is nothing
    // for --no-prune to keep; it matters once builds record parents.
    let _ = args.no_prune;
    for name in &args.images {
        match store.remove_image(name, args.force) {
            Ok(events) => print_events(&mut io::stdout().lock(), &events, false)?,
            Err(e) => {
                failed = true;
                eprintln!("Error: {}", one_line(&e.into()));
            }
        }
    }
    if failed {
        return Err(Status(1).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    filter: Vec<String>,
}

/// Asks the docker-style `[y/N]` question on the terminal.
pub fn confirm(warning: &str) -> Result<bool> {
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn prune(root: &Path, args: PruneArgs) -> Result<()> {
    // `-a` is the filter `dangling=false`, as the docker CLI sends it.
    let mut given = args.filter.clone();
    if args.all {
        given.push("dangling=false".into());
    }
    let filters = Filters::parse(&given, berth_store::IMAGE_PRUNE_FILTERS)?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !confirm(warning)? {
            return Ok(());
        }
    }
    let report = open_store(root)?.prune_images_matching(&filters)?;
    let mut out = io::stdout().lock();
    if !report.events.is_empty() {
        writeln!(out, "Deleted Images:")?;
        print_events(&mut out, &report.events, true)?;
        writeln!(out)?;
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        units::human_size(report.reclaimed as f64)
    )?;
    Ok(())
}

// ---------------------------------------------------------------- history

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
    /// Print sizes and dates in human readable format
    #[arg(
        short = 'H',
        long,
        default_value = "true",
        default_missing_value = "true",
        num_args = 0..=1,
        require_equals = true,
        action = clap::ArgAction::Set
    )]
    human: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// IMAGE
    image: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryRow {
    #[serde(rename = "ID")]
    id: String,
    created_since: String,
    created_at: String,
    created_by: String,
    size: String,
    comment: String,
}

pub fn history(root: &Path, args: HistoryArgs) -> Result<()> {
    let store = open_store(root)?;
    let rec = store.resolve(&args.image)?;
    let image = store.image(rec.clone())?;
    let mut rows: Vec<HistoryRow> = store
        .history(&image)?
        .into_iter()
        .map(|HistoryEntry { history: h, size }| {
            let created = h.created_at();
            let created_by = h.created_by.clone().unwrap_or_default();
            HistoryRow {
                id: "<missing>".into(),
                created_since: if args.human {
                    since(created)
                } else {
                    h.created.clone().unwrap_or_default()
                },
                created_at: h.created.clone().unwrap_or_default(),
                created_by: if args.no_trunc {
                    created_by
                } else {
                    crate::units::ellipsis(&created_by, 45)
                },
                size: if args.human {
                    units::human_size(size as f64)
                } else {
                    size.to_string()
                },
                comment: h.comment.clone().unwrap_or_default(),
            }
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = short_id(&rec, args.no_trunc);
    }
    format::print_list(
        &rows,
        args.quiet,
        |r| &r.id,
        args.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- inspect

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// IMAGE...
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    format: Option<String>,
    /// Return JSON for specified type
    #[arg(long = "type")]
    kind: Option<String>,
    /// NAME|ID...
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn inspect(root: &Path, args: InspectArgs) -> Result<()> {
    match args.kind.as_deref() {
        None => inspect_any(root, &args.names, args.format.as_deref()),
        Some("container") | Some("image") | Some("volume") | Some("network") => inspect_kind(
            root,
            &args.names,
            args.format.as_deref(),
            args.kind.as_deref(),
        ),
        Some(other) => bail!("\"{other}\" is not a valid value for --type"),
    }
}

pub fn inspect_images(root: &Path, names: &[String], format: Option<&str>) -> Result<()> {
    inspect_kind(root, names, format, Some("image"))
}

/// `inspect` without `--type`: a container by that name or ID first, then an image, then a
/// volume, then a network.
fn inspect_any(root: &Path, names: &[String], format: Option<&str>) -> Result<()> {
    inspect_kind(root, names, format, None)
}

fn inspect_kind(
    root: &Path,
    names: &[String],
    format: Option<&str>,
    kind: Option<&str>,
) -> Result<()> {
    let store = open_store(root)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        if kind == Some("volume") {
            match super::volume::inspect_document(root, name) {
                Ok(Some(doc)) => docs.push(doc),
                Ok(None) => errors.push(format!("No such volume: {name}")),
                Err(e) => errors.push(one_line(&e)),
            }
            continue;
        }
        if kind == Some("network") {
            match super::network::inspect_document(root, name) {
                Ok(Some(doc)) => docs.push(doc),
                Ok(None) => errors.push(format!("network {name} not found")),
                Err(e) => errors.push(one_line(&e)),
            }
            continue;
        }
        if kind != Some("image") {
            match super::container::inspect_document(root, name) {
                Ok(Some(doc)) => {
                    docs.push(doc);
                    continue;
                }
                Ok(None) if kind == Some("container") => {
                    errors.push(format!("No such container: {name}"));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    errors.push(one_line(&e));
                    continue;
                }
            }
        }
        match store
            .resolve(name)
            .map_err(anyhow::Error::from)
            .and_then(|r| store.inspect_document(&r).map_err(anyhow::Error::from))
        {
            Ok(doc) => docs.push(doc),
            Err(_) if kind.is_none() => match super::volume::inspect_document(root, name) {
                Ok(Some(doc)) => docs.push(doc),
                _ => match super::network::inspect_document(root, name) {
                    Ok(Some(doc)) => docs.push(doc),
                    _ => errors.push(format!("No such object: {name}")),
                },
            },
            // The docker CLI words a missing image itself, as it was named.
            Err(e)
                if matches!(
                    e.downcast_ref::<StoreError>(),
                    Some(StoreError::ImageNotFound(_))
                ) =>
            {
                errors.push(format!("No such image: {name}"))
            }
            Err(e) => errors.push(one_line(&e)),
        }
    }
    match format {
        Some(tmpl) if !tmpl.is_empty() && tmpl != "json" => {
            let mut out = io::stdout().lock();
            for d in &docs {
                writeln!(out, "{}", format::render_one(tmpl, d)?)?;
            }
        }
        _ => print_json_indented(&Value::Array(docs))?,
    }
    if !errors.is_empty() {
        for e in errors {
            eprintln!("Error: {e}");
        }
        return Err(Status(1).into());
    }
    Ok(())
}
