//! berth-build: `berth build`. A Dockerfile ([`berth_dockerfile::parse`]) is built stage by
//! stage, only the stages the target needs, instruction by instruction:
//!
//! - metadata instructions (`ENV`, `LABEL`, `CMD`, `WORKDIR`, ...) change the config being
//!   built and add a history entry with `empty_layer`;
//! - `RUN` runs in a real container of the engine (the default bridge network unless
//!   `--network`), made from the last image of the stage, with the config's environment,
//!   user and working directory plus the `ARG`s in scope; its changes become a layer;
//! - `COPY` and `ADD` write a layer straight from the context (or another stage's image),
//!   with no container.
//!
//! Every layered step and every stage's end is an image in the store ([`Store::extend`]),
//! and its cache key (the parent's key, the instruction as expanded, the build args it sees,
//! and for `COPY` the content digest of its sources: names, modes and bytes, not mtimes) maps
//! to it in the step cache ([`cache`]). A rebuild walks the same keys and reuses what it
//! finds; the first miss runs, and everything after it.

#![warn(missing_docs)]

mod archive;
mod board;
pub mod cache;
pub mod changes;
mod context;
mod copy;
mod fetch;
mod filehash;
pub mod metadata;
mod mounts;
mod output;
pub mod progress;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use berth_dockerfile::{Command, Dockerfile, Kind, Stage, expand};
use berth_engine::{CreateOptions, Engine, EngineError, monitor, record::HostConfig};
use berth_reference::{Digest, Reference};
use berth_store::{Extension, History, RunConfig, StoreError};
use sha2::{Digest as _, Sha256};

pub use archive::{decompressed, is_compressed};
pub use context::{StreamedContext, is_archive, receive_context};
pub use filehash::forget_file_hashes;
pub use mounts::prune_cache_mounts;
pub use output::export_filesystem;
pub use progress::Progress;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The Dockerfile's name.
        file: String,
        /// Its line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A step failed: its line and instruction, and why.
    #[error("{message}")]
    Step {
        /// The Dockerfile's line of the instruction.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// Why it failed (`process "/bin/sh -c exit 3" did not complete successfully: exit
        /// code: 3`).
        message: String,
        /// The last lines of its output.
        output: Vec<String>,
    },
    /// Something about the build as a whole (a missing target or base image, a platform
    /// this host cannot build).
    #[error("{0}")]
    Invalid(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cache database failed.
    #[error("build cache: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading or writing a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What berth was doing.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl BuildError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what: what.into(),
            source,
        }
    }
}

impl BuildError {
    /// The one line BuildKit ends a failed build with: `failed to solve: ...`.
    pub fn solve_message(&self) -> String {
        match self {
            BuildError::Parse { .. } => format!("failed to solve: failed to parse {self}"),
            _ => format!("failed to solve: {self}"),
        }
    }
}

/// What `berth build` asks for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Its name, for messages (`Dockerfile`).
    pub dockerfile_name: String,
    /// `.dockerignore` patterns, one per line as in the file.
    pub dockerignore: String,
    /// `-t`.
    pub tags: Vec<Reference>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--network`: the network of `RUN` steps without `RUN --network` (`default`: the
    /// default bridge; `none`, `host` or a network's name).
    pub network: Option<String>,
    /// `--secret`: each secret's value by id, for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Fetches base images from outside (a registry), if the caller can.
    pub fetch_base: Option<BaseFetcher>,
    /// `--pull`: fetch every base image even when the store has it.
    pub pull: bool,
    /// `--platform`: only this host's (`linux/ARCH`) can be built.
    pub platform: Option<String>,
}

/// Brings a base image into the store: called with the name from `FROM` when the store does
/// not have it (or always, with `--pull`). The builder knows nothing of registries; the
/// caller supplies this.
#[derive(Clone)]
pub struct BaseFetcher(pub std::sync::Arc<FetchBase>);

/// The function behind a [`BaseFetcher`]: the `FROM` name in, an error message out.
pub type FetchBase = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for BaseFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BaseFetcher")
    }
}

/// The `PATH` of a stage whose base sets none, as BuildKit's.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's predefined build args: usable without an `ARG` line (the proxy variables).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Builds what `opts` says and returns the image ID, tagged as asked.
pub fn build(
    engine: &mut Engine,
    opts: &BuildOptions,
    progress: &mut Progress,
) -> Result<Digest, BuildError> {
    if let Some(platform) = &opts.platform {
        let host = format!("linux/{}", berth_store::host_architecture());
        if platform != &host {
            return Err(BuildError::Invalid(format!(
                "platform {platform}: only this host's platform ({host}) can be built"
            )));
        }
    }
    let file = berth_dockerfile::parse(&opts.dockerfile).map_err(|e| BuildError::Parse {
        file: opts.dockerfile_name.clone(),
        line: e.line,
        message: e.message,
    })?;
    let ignore = berth_dockerfile::ignore::IgnoreRules::parse(&opts.dockerignore)
        .map_err(|e| BuildError::Invalid(e.to_string()))?;
    mounts::sweep(engine.root());
    let target = target_stage(&file, opts.target.as_deref())?;
    let meta_args = meta_args(&file, &opts.build_args)?;
    let needed = needed_stages(&file, target, &meta_args);
    let hashes = filehash::FileHashes::open(engine.root())
        .map_err(|e| tracing::warn!("the context's file digests are not remembered: {e}"))
        .ok();
    let context = copy::Context::new(opts.context.clone(), ignore, hashes);
    let cancel = AtomicBool::new(false);
    let shared = Shared {
        root: engine.root().to_path_buf(),
        opts,
        file: &file,
        context: &context,
        meta_args: &meta_args,
        cancel: &cancel,
    };
    let images = build_stages(&shared, &needed, progress)?;
    let mut id = images[&target].clone();
    if !opts.labels.is_empty() {
        id = add_labels(engine, &id, &opts.labels)?;
    }
    progress.start("exporting to image");
    progress.note(&format!("writing image {id} done"));
    engine.store().promote(&id, &opts.tags)?;
    for tag in &opts.tags {
        progress.note(&format!("naming to {tag} done"));
    }
    progress.done(std::time::Duration::ZERO);
    Ok(id)
}

/// The index of the stage to build: `--target` by name, or the last.
fn target_stage(file: &Dockerfile, target: Option<&str>) -> Result<usize, BuildError> {
    match target {
        None => Ok(file.stages.len() - 1),
        Some(t) => file
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| BuildError::Invalid(format!("target stage \"{t}\" could not be found"))),
    }
}

/// The stage an instruction's `--from` or a `FROM` names, by name or index, if it is one
/// of the stages before `before`.
fn stage_ref(file: &Dockerfile, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    file.stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
}

/// The stages `target` needs, in file order: itself, and the stages it names,
/// transitively.
fn needed_stages(
    file: &Dockerfile,
    target: usize,
    meta: &[(String, Option<String>)],
) -> Vec<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(stage_deps(file, i, meta));
        }
    }
    needed.into_iter().collect()
}

/// The earlier stages stage `i` names: in its `FROM`, `COPY --from` and
/// `RUN --mount=from=`.
fn stage_deps(file: &Dockerfile, i: usize, meta: &[(String, Option<String>)]) -> Vec<usize> {
    let stage = &file.stages[i];
    // Names may use the ARGs before the first FROM (`FROM ${BASE}`).
    let expanded = |name: &str| {
        expand_word(name, file.escape, &|n| lookup_in(meta, n)).unwrap_or_else(|_| name.to_string())
    };
    let mut deps: Vec<usize> = stage_ref(file, &expanded(&stage.base), i)
        .into_iter()
        .collect();
    for ins in &stage.instructions {
        let froms: Vec<String> = match &ins.kind {
            Kind::Copy(c) => c.from.iter().cloned().collect(),
            Kind::Run(r) => r
                .mounts
                .iter()
                .filter_map(|m| berth_dockerfile::RunMount::parse(m).ok()?.from)
                .collect(),
            _ => Vec::new(),
        };
        deps.extend(
            froms
                .iter()
                .filter_map(|f| stage_ref(file, &expanded(f), i)),
        );
    }
    deps.sort_unstable();
    deps.dedup();
    deps
}

/// The `ARG`s before the first `FROM`, with `--build-arg` values over their defaults.
fn meta_args(
    file: &Dockerfile,
    build_args: &BTreeMap<String, String>,
) -> Result<Vec<(String, Option<String>)>, BuildError> {
    // BuildKit's automatic platform ARGs, in the global scope without a declaration (a
    // stage gets them with `ARG NAME`); the build and target platforms are this host's.
    let arch = berth_store::host_architecture();
    let platform = format!("linux/{arch}");
    let mut out: Vec<(String, Option<String>)> = [
        ("TARGETPLATFORM", platform.as_str()),
        ("TARGETOS", "linux"),
        ("TARGETARCH", arch),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", platform.as_str()),
        ("BUILDOS", "linux"),
        ("BUILDARCH", arch),
        ("BUILDVARIANT", ""),
    ]
    .iter()
    .map(|(k, v)| {
        (
            k.to_string(),
            Some(build_args.get(*k).cloned().unwrap_or_else(|| v.to_string())),
        )
    })
    .collect();
    for ins in &file.meta_args {
        if let Kind::Arg(decls) = &ins.kind {
            for d in decls {
                let lookup = |n: &str| lookup_in(&out, n);
                let default = match &d.default {
                    Some(v) => Some(
                        expand_word(v, file.escape, &lookup)
                            .map_err(|e| BuildError::Invalid(format!("line {}: {e}", ins.line)))?,
                    ),
                    None => None,
                };
                let value = build_args.get(&d.name).cloned().or(default);
                out.push((d.name.clone(), value));
            }
        }
    }
    Ok(out)
}

fn lookup_in(vars: &[(String, Option<String>)], name: &str) -> Option<String> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}

fn expand_word(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, expand::ExpandError> {
    expand::expand(word, expand::Options { escape, raw: false }, lookup)
}

struct Builder<'a> {
    engine: &'a mut Engine,
    shared: &'a Shared<'a>,
    cache: cache::Cache,
    /// The stages built so far (those this one needs among them).
    stage_images: BTreeMap<usize, Digest>,
}

/// What every stage's builder shares, each in its own thread.
struct Shared<'a> {
    root: PathBuf,
    opts: &'a BuildOptions,
    file: &'a Dockerfile,
    context: &'a copy::Context,
    meta_args: &'a [(String, Option<String>)],
    /// Set when a stage fails: the others stop at their next instruction.
    cancel: &'a AtomicBool,
}

/// Builds the `needed` stages, each in a thread of its own with its own engine handle as
/// soon as the stages it names are built, so that independent stages run concurrently (as
/// BuildKit's solver does); returns each stage's image. The first failure stops the
/// others at their next instruction and is the build's error.
fn build_stages(
    shared: &Shared,
    needed: &[usize],
    progress: &Progress,
) -> Result<BTreeMap<usize, Digest>, BuildError> {
    let deps: BTreeMap<usize, Vec<usize>> = needed
        .iter()
        .map(|&i| (i, stage_deps(shared.file, i, shared.meta_args)))
        .collect();
    let mut done: BTreeMap<usize, Digest> = BTreeMap::new();
    let mut started = BTreeSet::new();
    let mut running = 0;
    let mut failure = None;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        loop {
            if failure.is_none() {
                let ready: Vec<usize> = needed
                    .iter()
                    .copied()
                    .filter(|i| !started.contains(i))
                    .filter(|i| deps[i].iter().all(|d| done.contains_key(d)))
                    .collect();
                for index in ready {
                    started.insert(index);
                    running += 1;
                    let tx = tx.clone();
                    let images = done.clone();
                    let mut progress = progress.fork();
                    scope.spawn(move || {
                        let result = build_stage(shared, index, images, &mut progress);
                        let _ = tx.send((index, result));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((index, result)) = rx.recv() else {
                break;
            };
            running -= 1;
            match result {
                Ok(image) => {
                    done.insert(index, image);
                }
                Err(e) => {
                    shared.cancel.store(true, Ordering::Relaxed);
                    // The first failure is the build's; the others' "canceled" are not.
                    failure.get_or_insert(e);
                }
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// One stage, built in the calling thread with an engine handle of its own.
fn build_stage(
    shared: &Shared,
    index: usize,
    images: BTreeMap<usize, Digest>,
    progress: &mut Progress,
) -> Result<Digest, BuildError> {
    let mut engine = Engine::open(&shared.root)?;
    let cache = cache::Cache::open(&shared.root)?;
    let mut builder = Builder {
        engine: &mut engine,
        shared,
        cache,
        stage_images: images,
    };
    builder.stage(index, progress)
}

/// A stage being built.
struct State {
    /// The last image of the stage (`None`: nothing yet, after `FROM scratch`).
    image: Option<Digest>,
    config: RunConfig,
    author: Option<String>,
    /// History entries of metadata instructions since `image`.
    pending: Vec<History>,
    /// The cache key of everything so far.
    key: Digest,
    /// `ARG`s declared in the stage, with their values.
    args: Vec<(String, Option<String>)>,
    /// `CMD` was set in the stage (a later `ENTRYPOINT` keeps it).
    cmd_set: bool,
}

impl State {
    /// A variable as instructions see it: `ENV` first, then `ARG`.
    fn lookup(&self, name: &str) -> Option<String> {
        metadata::env_value(&self.config, name).or_else(|| lookup_in(&self.args, name))
    }

    fn advance(&mut self, text: &str) {
        let mut h = Sha256::new();
        h.update(self.key.to_string().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        self.key =
            Digest::from_sha256_hex(&hex::encode(h.finalize())).expect("a sha256 is 64 hex digits");
    }

    fn shell(&self) -> Vec<String> {
        metadata::shell(&self.config)
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn history(created_by: String, empty_layer: bool) -> History {
    History {
        created: Some(now()),
        created_by: Some(created_by),
        author: None,
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer,
    }
}

impl Builder<'_> {
    fn stage(&mut self, index: usize, progress: &mut Progress) -> Result<Digest, BuildError> {
        let stage: &Stage = &self.shared.file.stages[index];
        let label = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"));
        let meta = self.shared.meta_args;
        let base = expand_word(&stage.base, self.shared.file.escape, &|n| {
            lookup_in(meta, n)
        })
        .map_err(|e| self.step_error(stage.line, &format!("FROM {}", stage.base), e))?;
        if let Some(platform) = &stage.platform {
            let platform = expand_word(platform, self.shared.file.escape, &|n| lookup_in(meta, n))
                .map_err(|e| self.step_error(stage.line, &format!("FROM {}", stage.base), e))?;
            let host = format!("linux/{}", berth_store::host_architecture());
            if platform != host && !platform.is_empty() {
                return Err(self.step_error(
                    stage.line,
                    &format!("FROM {}", stage.base),
                    format!(
                        "--platform={platform}: only this host's platform ({host}) can be built"
                    ),
                ));
            }
        }
        let total = 1 + stage
            .instructions
            .iter()
            .filter(|i| is_step(&i.kind))
            .count();
        let shown_base = match Reference::parse_with_default_tag(&base) {
            Ok(r) if stage_ref(self.shared.file, &base, index).is_none() && base != "scratch" => {
                r.to_string()
            }
            _ => base.clone(),
        };
        progress.start(&format!("[{label} 1/{total}] FROM {shown_base}"));
        let mut state = State {
            image: None,
            config: RunConfig::default(),
            author: None,
            pending: Vec::new(),
            key: Digest::sha256_of(b"scratch"),
            args: Vec::new(),
            cmd_set: false,
        };
        // A failed FROM shows as its step's error, as any other.
        if let Err(e) = self.start_base(&mut state, stage, index, &base) {
            progress.failed(&e.to_string());
            return Err(e);
        }
        if base == "scratch" && state.image.is_none() {
            state.config.working_dir = Some("/".into());
        }
        // BuildKit gives every stage a PATH when its base has none.
        if metadata::env_value(&state.config, "PATH").is_none() {
            state
                .config
                .env
                .get_or_insert_with(Vec::new)
                .push(format!("PATH={DEFAULT_PATH}"));
            state.advance("(default PATH)");
        }
        progress.done(std::time::Duration::ZERO);
        self.onbuild_triggers(&mut state, stage, &label, progress)?;
        let mut n = 1;
        for ins in &stage.instructions {
            if self.shared.cancel.load(Ordering::Relaxed) {
                return Err(BuildError::Invalid("canceled".into()));
            }
            if !is_step(&ins.kind) {
                // Config only: no step of its own in the progress, as BuildKit's.
                self.instruction(&mut state, ins, progress)?;
                continue;
            }
            n += 1;
            // Shown with its variables expanded, as BuildKit names its steps; as written
            // when it names a variable the build does not know (the command's own).
            let st: &State = &state;
            let unknown = std::cell::Cell::new(false);
            let shown = expand::expand(
                &ins.source,
                expand::Options {
                    escape: self.shared.file.escape,
                    raw: true,
                },
                &|v| {
                    let value = st.lookup(v);
                    unknown.set(unknown.get() || value.is_none());
                    value
                },
            )
            .ok()
            .filter(|_| !unknown.get())
            .unwrap_or_else(|| ins.source.clone());
            self.step(
                &mut state,
                ins,
                &format!("[{label} {n}/{total}] {shown}"),
                progress,
            )?;
        }
        self.materialize(&mut state)
    }

    /// The base image's `ONBUILD` triggers, run right after `FROM` as if written there; the
    /// image built on them no longer has them (they are not inherited by grandchildren).
    fn onbuild_triggers(
        &mut self,
        state: &mut State,
        stage: &Stage,
        label: &str,
        progress: &mut Progress,
    ) -> Result<(), BuildError> {
        let Some(triggers) = state.config.on_build.take().filter(|t| !t.is_empty()) else {
            state.config.on_build = None;
            return Ok(());
        };
        state.advance("(ONBUILD triggers cleared)");
        for trigger in triggers {
            let source = format!("ONBUILD {trigger}");
            let parsed =
                berth_dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(|e| {
                    self.step_error(stage.line, &source, format!("{source}: {}", e.message))
                })?;
            for mut ins in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                if matches!(ins.kind, Kind::Onbuild(_)) {
                    return Err(self.step_error(
                        stage.line,
                        &source,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                }
                // Failures point at the FROM that brought the trigger in.
                ins.line = stage.line;
                let name = format!("[{label} ONBUILD] {}", ins.source);
                self.step(state, &ins, &name, progress)?;
            }
        }
        Ok(())
    }

    /// One instruction as a step of the progress named `name`: `CACHED`, `DONE` with its
    /// time, or its error.
    fn step(
        &mut self,
        state: &mut State,
        ins: &berth_dockerfile::Instruction,
        name: &str,
        progress: &mut Progress,
    ) -> Result<(), BuildError> {
        progress.start(name);
        let began = Instant::now();
        match self.instruction(state, ins, progress) {
            Ok(true) => progress.cached(),
            Ok(false) => progress.done(began.elapsed()),
            Err(e) => {
                progress.failed(&e.to_string());
                return Err(e);
            }
        }
        Ok(())
    }

    /// The stage's base: an earlier stage's image, an image in the store, or nothing
    /// (`scratch`).
    fn start_base(
        &mut self,
        state: &mut State,
        stage: &Stage,
        index: usize,
        base: &str,
    ) -> Result<(), BuildError> {
        if let Some(dep) = stage_ref(self.shared.file, base, index) {
            let image = self.stage_images.get(&dep).cloned().ok_or_else(|| {
                self.step_error(
                    stage.line,
                    &format!("FROM {}", stage.base),
                    format!("stage {base} was not built"),
                )
            })?;
            self.start_from(state, &image)?;
        } else if base != "scratch" {
            let from_error = |message: String| BuildError::Step {
                line: stage.line,
                instruction: format!("FROM {}", stage.base),
                message,
                output: Vec::new(),
            };
            let opts = self.shared.opts;
            let missing = self.engine.store().resolve(base).is_err();
            if let Some(fetch) = &opts.fetch_base
                && (missing || opts.pull)
            {
                (fetch.0)(base).map_err(from_error)?;
            }
            let record = self.engine.store().resolve(base).map_err(|_| {
                from_error(format!(
                    "base image {base} not found locally (pull it with berth pull, or load it with berth load or berth import)"
                ))
            })?;
            self.start_from(state, &record.id)?;
        }
        Ok(())
    }

    /// A stage starts from the image `id`: its config, and a key of its own.
    fn start_from(&mut self, state: &mut State, id: &Digest) -> Result<(), BuildError> {
        self.adopt(state, id)?;
        state.key = Digest::sha256_of(format!("FROM {id}").as_bytes());
        Ok(())
    }

    fn step_error(&self, line: usize, instruction: &str, e: impl std::fmt::Display) -> BuildError {
        BuildError::Step {
            line,
            instruction: instruction.to_string(),
            message: e.to_string(),
            output: Vec::new(),
        }
    }

    /// The state's pending metadata as an image (from the cache when it was made before).
    fn materialize(&mut self, state: &mut State) -> Result<Digest, BuildError> {
        if state.pending.is_empty()
            && let Some(image) = &state.image
        {
            return Ok(image.clone());
        }
        state.advance("(end of metadata)");
        if !self.shared.opts.no_cache
            && let Some(image) = self.cache.get(self.engine.store(), &state.key)?
        {
            state.image = Some(image.clone());
            state.pending.clear();
            return Ok(image);
        }
        let history = std::mem::take(&mut state.pending);
        let record = self.engine.store().extend(Extension {
            parent: state.image.as_ref(),
            layer: None,
            config: state.config.clone(),
            history,
            author: state.author.clone(),
            created: now(),
        })?;
        self.cache
            .put(self.engine.store(), &state.key, &record.id)?;
        state.image = Some(record.id.clone());
        Ok(record.id)
    }

    /// Runs one instruction; true when its result came from the cache.
    fn instruction(
        &mut self,
        state: &mut State,
        ins: &berth_dockerfile::Instruction,
        progress: &mut Progress,
    ) -> Result<bool, BuildError> {
        let escape = self.shared.file.escape;
        let fail = failure(ins);
        // Expands with the state as it is now (ENV before ARG).
        macro_rules! ex {
            ($word:expr) => {{
                let st: &State = state;
                expand_word($word, escape, &|n| st.lookup(n)).map_err(|e| fail(&e))?
            }};
        }
        let metadata = |state: &mut State, created_by: String| {
            state.advance(&created_by);
            state.pending.push(history(created_by, true));
            Ok(false)
        };
        match &ins.kind {
            Kind::Arg(decls) => {
                let mut shown = Vec::new();
                for d in decls {
                    let default = match &d.default {
                        Some(v) => Some(ex!(v)),
                        None => None,
                    };
                    // A value from --build-arg wins; a meta ARG declared again inherits its
                    // value.
                    let value = self
                        .shared
                        .opts
                        .build_args
                        .get(&d.name)
                        .cloned()
                        .or(default)
                        .or_else(|| lookup_in(self.shared.meta_args, &d.name));
                    state.advance(&format!("ARG {}={:?}", d.name, value));
                    shown.push(match &value {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    });
                    state.args.push((d.name.clone(), value));
                }
                // An empty-layer entry with the values in effect, as BuildKit's.
                state
                    .pending
                    .push(history(format!("ARG {}", shown.join(" ")), true));
                Ok(false)
            }
            Kind::Run(run) => self.run(state, ins, run, progress),
            Kind::Workdir(_) => {
                let mut target = metadata::Target {
                    config: &mut state.config,
                    author: &mut state.author,
                    cmd_set: &mut state.cmd_set,
                };
                let created_by = metadata::apply(&mut target, &ins.kind, escape, &state.args)
                    .map_err(|e| fail(&e))?
                    .unwrap_or_default();
                let wd = state
                    .config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into());
                if wd == "/" {
                    return metadata(state, created_by);
                }
                // BuildKit makes the directory, owned by the USER in effect, as a layer.
                let user = state.config.user.clone();
                let base = state.image.clone();
                let plan = copy::mkdir_plan(self.engine, base.as_ref(), &wd, user.as_deref())
                    .map_err(|e| fail(&e))?;
                state.advance(&format!(
                    "{created_by} user={user:?} digest={}",
                    plan.digest
                ));
                self.commit_plan(state, &plan, created_by)
                    .map_err(|e| fail(&e))
            }
            Kind::Copy(copy) | Kind::Add(copy) => {
                let is_add = matches!(ins.kind, Kind::Add(_));
                self.copy(state, ins, copy, is_add)
            }
            kind => {
                let mut target = metadata::Target {
                    config: &mut state.config,
                    author: &mut state.author,
                    cmd_set: &mut state.cmd_set,
                };
                match metadata::apply(&mut target, kind, escape, &state.args) {
                    Ok(Some(created_by)) => metadata(state, created_by),
                    Ok(None) => Ok(false),
                    Err(e) => Err(fail(&e)),
                }
            }
        }
    }

    fn run(
        &mut self,
        state: &mut State,
        ins: &berth_dockerfile::Instruction,
        run: &berth_dockerfile::Run,
        progress: &mut Progress,
    ) -> Result<bool, BuildError> {
        let argv = metadata::command_words(&run.command, &state.shell());
        let argv = match (&run.command, run.heredocs.as_slice()) {
            // `RUN <<EOF` alone: the document is the script.
            (Command::Shell(text), [doc])
                if text.trim() == format!("<<{}", doc.name)
                    || text.trim() == format!("<<-{}", doc.name) =>
            {
                state
                    .shell()
                    .into_iter()
                    .chain([doc.content.clone()])
                    .collect()
            }
            _ => argv,
        };
        // The ARGs in scope are the command's environment too (not the image's).
        let args: Vec<(String, String)> = state
            .args
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .chain(PREDEFINED_ARGS.iter().filter_map(|k| {
                Some((k.to_string(), self.shared.opts.build_args.get(*k)?.clone()))
            }))
            .collect();
        let mounts = self.run_mounts(state, ins, run)?;
        let network = run
            .network
            .clone()
            .or_else(|| self.shared.opts.network.clone())
            .unwrap_or_else(|| "default".into());
        state.advance(&format!(
            "RUN {} {:?} network={network} mounts={:?}",
            json(&argv),
            args,
            mounts.iter().map(mounts::Spec::key).collect::<Vec<_>>()
        ));
        let created_by = format!("RUN {} # buildkit", run_command_string(state, &argv));
        if !self.shared.opts.no_cache
            && let Some(image) = self.cache.get(self.engine.store(), &state.key)?
        {
            self.adopt(state, &image)?;
            return Ok(true);
        }
        let base = self.materialize_for_container(state)?;
        let prepared = mounts::prepare(
            self.engine,
            self.shared.context,
            &mounts,
            &self.shared.opts.secrets,
        )
        .map_err(|e| self.step_error(ins.line, &ins.source, e))?;
        let mut env = state.config.env.clone().unwrap_or_default();
        // An ENV of the same name wins over an ARG.
        env.extend(
            args.iter()
                .filter(|(k, _)| metadata::env_value(&state.config, k).is_none())
                .map(|(k, v)| format!("{k}={v}")),
        );
        env.extend(prepared.env.iter().cloned());
        let create = CreateOptions {
            image: base.to_string(),
            cmd: argv.clone(),
            entrypoint: Some(Vec::new()),
            env,
            workdir: state.config.working_dir.clone(),
            user: state.config.user.clone(),
            hostname: Some("buildkitsandbox".into()),
            mounts: prepared.requests.clone(),
            labels: vec![("berth.build".into(), "step".into())],
            host: HostConfig {
                network_mode: match network.as_str() {
                    "default" => String::new(),
                    other => other.to_string(),
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let rec = self.engine.create(&create)?;
        let outcome = self.run_container(&rec.id, progress);
        let result = outcome.and_then(|code| {
            if code != 0 {
                return Err(BuildError::Step {
                    line: ins.line,
                    instruction: ins.source.clone(),
                    message: format!(
                        "process {:?} did not complete successfully: exit code: {code}",
                        argv.join(" ")
                    ),
                    output: progress.tail(),
                });
            }
            let changes = self.engine.changes(&rec.id)?;
            changes.remove_mount_stubs(&prepared.targets)?;
            let record = self.extend_with_layer(state, Some(&base), created_by.clone(), |out| {
                changes.write(out).map_err(|e| e.to_string())
            })?;
            Ok(record.id)
        });
        if let Err(e) = self.engine.remove(&rec.id, true) {
            tracing::warn!("removing build container {}: {e}", &rec.id[..12]);
        }
        drop(prepared);
        let image = result?;
        self.cache.put(self.engine.store(), &state.key, &image)?;
        state.image = Some(image);
        Ok(false)
    }

    /// A `RUN`'s `--mount`s, expanded (ARGs and ENV in scope), each target absolute, each
    /// `from=` resolved to a stage's or an image's ID, and a bind of the context digested.
    fn run_mounts(
        &mut self,
        state: &State,
        ins: &berth_dockerfile::Instruction,
        run: &berth_dockerfile::Run,
    ) -> Result<Vec<mounts::Spec>, BuildError> {
        let fail = failure(ins);
        let workdir = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let mut specs = Vec::new();
        for raw in &run.mounts {
            let value = expand_word(raw, self.shared.file.escape, &|n| state.lookup(n))
                .map_err(|e| fail(&e))?;
            let mut mount = berth_dockerfile::RunMount::parse(&value)
                .map_err(|e| fail(&format!("--mount={value}: {e}")))?;
            if !mount.target.is_empty() {
                mount.target = if mount.target.starts_with('/') {
                    clean_path(&mount.target)
                } else {
                    clean_path(&format!("{workdir}/{}", mount.target))
                };
                if mount.target == "/" {
                    return Err(fail(&format!("--mount={value}: cannot mount over /")));
                }
            }
            let origin = match &mount.from {
                Some(name) => {
                    let id = self
                        .image_named(name)
                        .map_err(|e| fail(&format!("--mount={value}: {e}")))?;
                    mounts::Origin::Image(id, name.clone())
                }
                None => mounts::Origin::Context,
            };
            let digest = match (&mount.kind, &origin) {
                (berth_dockerfile::MountKind::Bind, mounts::Origin::Context) => {
                    let source = mount
                        .source
                        .as_deref()
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    let request = copy::CopyRequest {
                        sources: vec![if source.is_empty() {
                            ".".into()
                        } else {
                            source.to_string()
                        }],
                        heredocs: Vec::new(),
                        dest: "/".into(),
                        workdir: "/".into(),
                        chown: None,
                        chmod: None,
                        from: None,
                        extract_archives: false,
                    };
                    let plan = copy::plan(self.engine, self.shared.context, None, &request)
                        .map_err(|e| fail(&format!("--mount={value}: {e}")))?;
                    Some(plan.digest)
                }
                _ => None,
            };
            specs.push(mounts::Spec {
                mount,
                origin,
                digest,
            });
        }
        Ok(specs)
    }

    /// The image of a stage built before (by name or index), or else of an image in the
    /// store: what `COPY --from` and `--mount=from=` name.
    fn image_named(&mut self, name: &str) -> Result<Digest, String> {
        let index = stage_ref(self.shared.file, name, self.shared.file.stages.len());
        match index.and_then(|i| self.stage_images.get(&i)) {
            Some(id) => Ok(id.clone()),
            None => Ok(self
                .engine
                .store()
                .resolve(name)
                .map_err(|_| format!("no stage or image named {name}"))?
                .id),
        }
    }

    /// Starts the created container `id` with its output going to the step's progress,
    /// and returns its exit code.
    fn run_container(&mut self, id: &str, progress: &Progress) -> Result<i32, BuildError> {
        let _lock = monitor::lock_for_foreground(self.engine, id)?;
        let hub = monitor::Hub::new();
        hub.add(monitor::Sink::Local {
            stream: berth_engine::logfile::Stream::Stdout,
            out: progress.output(),
        });
        hub.add(monitor::Sink::Local {
            stream: berth_engine::logfile::Stream::Stderr,
            out: progress.output(),
        });
        let session = monitor::Session::start(self.engine, id, &hub, None, None)?;
        let (started, exit) = session.wait()?;
        self.engine.finish(started, exit)?;
        Ok(exit.code)
    }

    /// The image a container for the next step starts from: the stage's last image with
    /// its layers (pending metadata does not change the filesystem, and the container gets
    /// the current config directly).
    fn materialize_for_container(&mut self, state: &mut State) -> Result<Digest, BuildError> {
        match &state.image {
            Some(image) => Ok(image.clone()),
            None => {
                let record = self.engine.store().extend(Extension {
                    parent: None,
                    layer: None,
                    config: RunConfig::default(),
                    history: Vec::new(),
                    author: None,
                    created: now(),
                })?;
                Ok(record.id)
            }
        }
    }

    /// The stage goes on from `image` (a cache hit, or its base): its config and author.
    fn adopt(&mut self, state: &mut State, image: &Digest) -> Result<(), BuildError> {
        let record = self.engine.store().resolve(&image.to_string())?;
        let config = self.engine.store().image(record)?.config;
        state.config = config.config.unwrap_or_default();
        state.author = config.author;
        state.image = Some(image.clone());
        state.pending.clear();
        Ok(())
    }

    fn copy(
        &mut self,
        state: &mut State,
        ins: &berth_dockerfile::Instruction,
        copy: &berth_dockerfile::Copy,
        is_add: bool,
    ) -> Result<bool, BuildError> {
        let escape = self.shared.file.escape;
        let fail = failure(ins);
        // Refused rather than ignored: a copy without its exclusions could leak files.
        if !copy.exclude.is_empty() {
            return Err(fail(&"COPY --exclude is not supported yet"));
        }
        if copy.parents {
            return Err(fail(&"COPY --parents is not supported yet"));
        }
        let st: &State = state;
        let lookup = |n: &str| st.lookup(n);
        let mut sources = Vec::new();
        for s in &copy.sources {
            sources.push(expand_word(s, escape, &lookup).map_err(|e| fail(&e))?);
        }
        let dest = expand_word(&copy.dest, escape, &lookup).map_err(|e| fail(&e))?;
        let chown = match &copy.chown {
            Some(c) => Some(expand_word(c, escape, &lookup).map_err(|e| fail(&e))?),
            None => None,
        };
        let chmod = match &copy.chmod {
            Some(m) => Some(
                u32::from_str_radix(&expand_word(m, escape, &lookup).map_err(|e| fail(&e))?, 8)
                    .map_err(|_| fail(&format!("invalid --chmod {m:?}: an octal mode")))?,
            ),
            None => None,
        };
        let checksum = match &copy.checksum {
            Some(c) => Some(expand_word(c, escape, &lookup).map_err(|e| fail(&e))?),
            None => None,
        };
        let workdir = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let from = match &copy.from {
            Some(f) => {
                let name = expand_word(f, escape, &lookup).map_err(|e| fail(&e))?;
                let image = self
                    .image_named(&name)
                    .map_err(|e| fail(&format!("--from: {e}")))?;
                Some((image, name))
            }
            None => None,
        };
        let request = copy::CopyRequest {
            sources,
            heredocs: copy
                .heredocs
                .iter()
                .map(|h| (h.name.clone(), h.content.clone()))
                .collect(),
            dest,
            workdir,
            chown,
            chmod,
            from,
            extract_archives: is_add,
        };
        let base = state.image.clone();
        let plan = copy::plan_add(
            self.engine,
            self.shared.context,
            base.as_ref(),
            &request,
            checksum.as_deref(),
        )
        .map_err(|e| fail(&e))?;
        state.advance(&format!(
            "{} {} from={:?} digest={}",
            if is_add { "ADD" } else { "COPY" },
            request.describe(),
            request.from.as_ref().map(|(id, _)| id.to_string()),
            plan.digest
        ));
        let created_by = format!(
            "{} {} # buildkit",
            if is_add { "ADD" } else { "COPY" },
            request.describe()
        );
        // Whatever fails in writing the layer (a source gone meanwhile) names the step.
        self.commit_plan(state, &plan, created_by)
            .map_err(|e| fail(&e))
    }

    /// A step whose layer is `plan` (`COPY`, `ADD`, `WORKDIR`), keyed by the state's key:
    /// from the cache, or written and registered; true when it came from the cache.
    fn commit_plan(
        &mut self,
        state: &mut State,
        plan: &copy::Plan,
        created_by: String,
    ) -> Result<bool, BuildError> {
        if !self.shared.opts.no_cache
            && let Some(image) = self.cache.get(self.engine.store(), &state.key)?
        {
            self.adopt(state, &image)?;
            return Ok(true);
        }
        let parent = state.image.clone();
        let record =
            self.extend_with_layer(state, parent.as_ref(), created_by, |out| plan.write(out))?;
        self.cache
            .put(self.engine.store(), &state.key, &record.id)?;
        state.image = Some(record.id);
        Ok(false)
    }

    /// Registers the step's image: `parent` plus the layer `write` makes, with the state's
    /// config and its pending history and `created_by`. The layer goes to the store through
    /// a pipe, written by a thread while the store reads it, so its bytes are neither kept
    /// in a temporary file nor read twice.
    fn extend_with_layer(
        &mut self,
        state: &mut State,
        parent: Option<&Digest>,
        created_by: String,
        write: impl FnOnce(&mut dyn std::io::Write) -> Result<(), String> + Send,
    ) -> Result<berth_store::ImageRecord, BuildError> {
        let mut history_entries = std::mem::take(&mut state.pending);
        history_entries.push(history(created_by, false));
        let config = state.config.clone();
        let author = state.author.clone();
        let store = self.engine.store();
        let record = berth_store::with_written_layer(write, |layer| {
            store.extend(Extension {
                parent,
                layer: Some(layer),
                config,
                history: history_entries,
                author,
                created: now(),
            })
        })
        .map_err(|e| BuildError::io("make a pipe for the layer", e))??;
        Ok(record)
    }
}

/// `--label`: one more metadata step on the result.
fn add_labels(
    engine: &mut Engine,
    id: &Digest,
    labels: &BTreeMap<String, String>,
) -> Result<Digest, BuildError> {
    let record = engine.store().resolve(&id.to_string())?;
    let image = engine.store().image(record)?;
    let mut config = image.config.config.unwrap_or_default();
    let all = config.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in labels {
        all.insert(k.clone(), v.clone());
    }
    // BuildKit sets them in the config without a history entry.
    let record = engine.store().extend(Extension {
        parent: Some(id),
        layer: None,
        config,
        history: Vec::new(),
        author: None,
        created: now(),
    })?;
    Ok(record.id)
}

/// A mutex's guard, poisoned or not: what it guards (progress, a cache in memory) stays
/// usable after a thread panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An anonymous temporary file in `dir` (`O_TMPFILE`: gone when closed, even after a crash).
fn tempfile_in(dir: &std::path::Path) -> Result<std::fs::File, BuildError> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        BuildError::io(
            format!("create a temporary file in {}", dir.display()),
            e.into(),
        )
    })?;
    Ok(std::fs::File::from(fd))
}

/// How a step's errors are made: its line and instruction, and why.
fn failure(
    ins: &berth_dockerfile::Instruction,
) -> impl Fn(&dyn std::fmt::Display) -> BuildError + '_ {
    move |e| BuildError::Step {
        line: ins.line,
        instruction: ins.source.clone(),
        message: e.to_string(),
        output: Vec::new(),
    }
}

/// Whether an instruction is a step of the progress (it makes a layer), as BuildKit
/// counts them: the others change the config only.
fn is_step(kind: &Kind) -> bool {
    matches!(
        kind,
        Kind::Run(_) | Kind::Copy(_) | Kind::Add(_) | Kind::Workdir(_)
    )
}

/// `RUN`'s history text as BuildKit writes it: the ARGs in scope first (`|2 A=1 B= cmd`,
/// each with the value the command sees), so that `history` shows what the build used.
fn run_command_string(state: &State, argv: &[String]) -> String {
    let mut args: Vec<(String, String)> = Vec::new();
    for (k, v) in &state.args {
        let value = metadata::env_value(&state.config, k)
            .or_else(|| v.clone())
            .unwrap_or_default();
        match args.iter_mut().find(|(name, _)| name == k) {
            Some(slot) => slot.1 = value,
            None => args.push((k.clone(), value)),
        }
    }
    let mut words: Vec<String> = Vec::new();
    if !args.is_empty() {
        words.push(format!("|{}", args.len()));
        words.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(argv.iter().cloned());
    words.join(" ")
}

fn json(words: &[String]) -> String {
    serde_json::to_string(words).unwrap_or_default()
}

/// `/a/./b/../c` as `/a/c`.
pub(crate) fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
