//! `pull`, `push`, `login`, `logout`: the registry client's commands, with Docker's output
//! (per-layer bars on a terminal, plain lines otherwise).

use std::{
    io::{self, BufRead, IsTerminal, Write},
    path::Path,
    sync::Mutex,
};

use anyhow::{Context, Result, bail};
use berth_distribution::{
    Credential, DOCKER_HUB_HOST, LayerState, Platform, Progress, PullOptions, Registries, Silent,
    credentials,
};
use berth_engine::{ContainerRecord, CreateOptions, Engine, EngineError};
use berth_reference::{Digest, Reference};
use berth_store::StoreError;
use clap::Args;

use super::{fail, open_store};
use crate::units::human_size_with_precision;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long = "all-tags")]
    pub(crate) all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub(crate) platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Skip image verification (accepted for compatibility; berth always verifies digests)
    #[arg(long = "disable-content-trust", hide = true)]
    pub(crate) disable_content_trust: bool,
    /// NAME[:TAG|@DIGEST]
    pub(crate) name: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long = "all-tags")]
    pub(crate) all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Skip image signing (accepted for compatibility)
    #[arg(long = "disable-content-trust", hide = true)]
    pub(crate) disable_content_trust: bool,
    /// NAME[:TAG]
    pub(crate) name: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password or Personal Access Token (PAT)
    #[arg(short, long)]
    password: Option<String>,
    /// Take the Password or Personal Access Token (PAT) from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// The registry (Docker Hub when left out)
    server: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// The registry (Docker Hub when left out)
    server: Option<String>,
}

/// Draws pull and push progress as Docker does: on a terminal, one line per layer updated
/// in place (with a bar while bytes move); otherwise one line per state change.
pub struct TransferView {
    terminal: bool,
    /// Draw on stderr (a pull inside `run`, whose stdout is the container's).
    stderr: bool,
    /// Layer lines drawn so far (terminal only), by short ID, in order.
    lines: Mutex<Vec<String>>,
}

impl TransferView {
    pub fn new(terminal: bool) -> Self {
        TransferView {
            terminal,
            stderr: false,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// A view on stderr (pulls inside `run` and `build`, whose stdout is not theirs).
    fn on_stderr(terminal: bool) -> Self {
        TransferView {
            stderr: true,
            ..TransferView::new(terminal)
        }
    }

    /// Forgets the drawn lines (the next image starts below them).
    fn reset(&self) {
        self.lines.lock().expect("view lock").clear();
    }
}

/// Docker's progress bar: `[=====>     ]  1.23MB/4.56MB`.
fn bar(done: u64, total: Option<u64>) -> String {
    const WIDTH: usize = 50;
    let done_text = human_size_with_precision(done as f64, 4);
    match total {
        Some(total) if total > 0 => {
            let filled = ((done.min(total) as f64 / total as f64) * WIDTH as f64) as usize;
            let head = if filled < WIDTH { ">" } else { "" };
            let arrow = format!("{}{head}", "=".repeat(filled.min(WIDTH)));
            format!(
                "[{arrow:<width$}] {done_text:>8}/{}",
                human_size_with_precision(total as f64, 4),
                width = WIDTH + 1
            )
        }
        _ => done_text,
    }
}

impl TransferView {
    fn out(&self) -> Box<dyn Write> {
        if self.stderr {
            Box::new(io::stderr().lock())
        } else {
            Box::new(io::stdout().lock())
        }
    }
}

impl Progress for TransferView {
    fn message(&self, line: &str) {
        let _ = writeln!(self.out(), "{line}");
    }

    fn layer(&self, id: &Digest, state: LayerState) {
        let short = id.short();
        if !self.terminal {
            if !state.is_transfer() {
                let _ = writeln!(self.out(), "{short}: {}", state.label());
            }
            return;
        }
        let text = match &state {
            LayerState::Downloading { done, total } | LayerState::Pushing { done, total } => {
                format!("{short}: {} {}", state.label(), bar(*done, *total))
            }
            _ => format!("{short}: {}", state.label()),
        };
        let mut lines = self.lines.lock().expect("view lock");
        let mut out = self.out();
        match lines.iter().position(|l| l == short) {
            Some(i) => {
                let up = lines.len() - i;
                let _ = write!(out, "\x1b[{up}A\r\x1b[2K{text}\x1b[{up}B\r");
            }
            None => {
                lines.push(short.to_string());
                let _ = writeln!(out, "{text}");
            }
        }
        let _ = out.flush();
    }
}

fn parse_reference(name: &str) -> Result<Reference> {
    Reference::parse_normalized(name).map_err(|e| fail(1, format!("invalid reference format: {e}")))
}

/// `berth pull`.
pub fn pull(root: &Path, args: PullArgs) -> Result<()> {
    let _ = args.disable_content_trust;
    let named = parse_reference(&args.name)?;
    if args.all_tags && (named.tag().is_some() || named.digest().is_some()) {
        return Err(fail(1, "tag can't be used with --all-tags/-a"));
    }
    let platform = args
        .platform
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(Platform::parse)
        .transpose()
        .map_err(|e| fail(1, e))?;
    let registries = Registries::load().map_err(|e| fail(1, e))?;
    let mut store = open_store(root)?;
    let view = TransferView::new(io::stdout().is_terminal());
    let progress: &dyn Progress = if args.quiet { &Silent } else { &view };
    let opts = PullOptions { platform };

    if args.all_tags {
        let tags = registries.list_tags(&named).map_err(|e| fail(1, e))?;
        if tags.is_empty() {
            return Err(fail(
                1,
                format!("no tags in repository {}", named.familiar_name()),
            ));
        }
        let mut any_new = false;
        for tag in tags {
            let r = named.with_tag(&tag).map_err(|e| fail(1, e))?;
            view.reset();
            let pulled = registries
                .pull(&mut store, &r, &opts, progress)
                .map_err(|e| fail(1, e))?;
            any_new |= pulled.new;
            if !args.quiet {
                println!("Digest: {}", pulled.digest);
            }
        }
        if args.quiet {
            println!("{named}");
        } else {
            println!(
                "{}",
                berth_distribution::pull_status(any_new, &named.familiar_name())
            );
            println!("{named}");
        }
        return Ok(());
    }

    let reference = if named.tag().is_none() && named.digest().is_none() {
        if !args.quiet {
            println!("Using default tag: latest");
        }
        named.with_tag("latest").map_err(|e| fail(1, e))?
    } else {
        named
    };
    let pulled = registries
        .pull(&mut store, &reference, &opts, progress)
        .map_err(|e| fail(1, e))?;
    if !args.quiet {
        println!("Digest: {}", pulled.digest);
        println!(
            "{}",
            berth_distribution::pull_status(pulled.new, &reference.familiar_string())
        );
    }
    println!("{reference}");
    Ok(())
}

/// Creates a container, pulling its image as `docker run --pull` says: `missing` (the
/// default) pulls it only when the create finds no such image, so a container start pays
/// nothing for the registry client; `always` pulls first; `never` leaves the store alone.
/// Pull progress goes to stderr (stdout belongs to the container).
pub fn create_pulling(
    root: &Path,
    engine: &mut Engine,
    opts: &CreateOptions,
    policy: &str,
    platform: Option<&str>,
) -> Result<ContainerRecord> {
    let always = match policy {
        "missing" => false,
        "always" => true,
        "never" => return Ok(engine.create(opts)?),
        other => bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    };
    if always {
        pull_for_run(root, &opts.image, platform, true)?;
    }
    match engine.create(opts) {
        Err(EngineError::Store(StoreError::ImageNotFound(_)))
            if !always && pull_for_run(root, &opts.image, platform, false)? =>
        {
            Ok(engine.create(opts)?)
        }
        other => Ok(other?),
    }
}

/// Pulls the image a container is created from; false when `image` is no reference (an ID
/// or ID prefix is never pulled, and the create reports it missing).
pub(crate) fn pull_for_run(
    root: &Path,
    image: &str,
    platform: Option<&str>,
    always: bool,
) -> Result<bool> {
    let Ok(reference) = Reference::parse_with_default_tag(image) else {
        return Ok(false);
    };
    if !always {
        eprintln!(
            "Unable to find image '{}' locally",
            reference.familiar_string()
        );
    }
    let platform = platform
        .filter(|p| !p.is_empty())
        .map(Platform::parse)
        .transpose()?;
    let registries = Registries::load()?;
    let mut store = open_store(root)?;
    let view = TransferView::on_stderr(io::stderr().is_terminal());
    let pulled = registries.pull(&mut store, &reference, &PullOptions { platform }, &view)?;
    eprintln!("Digest: {}", pulled.digest);
    eprintln!(
        "{}",
        berth_distribution::pull_status(pulled.new, &reference.familiar_string())
    );
    Ok(true)
}

/// Pulls a build's missing base images (plain progress lines on stderr unless `verbose` is
/// off or stderr is a terminal, where the build's own view is drawn).
pub fn base_fetcher(root: &Path, verbose: bool) -> berth_build::BaseFetcher {
    let root = root.to_owned();
    berth_build::BaseFetcher(std::sync::Arc::new(move |name: &str| {
        let reference = Reference::parse_with_default_tag(name)
            .map_err(|e| format!("invalid base image reference {name:?}: {e}"))?;
        let pull = || -> Result<()> {
            let registries = Registries::load()?;
            let mut store = open_store(&root)?;
            let view = TransferView::on_stderr(false);
            let progress: &dyn Progress = if verbose && !io::stderr().is_terminal() {
                &view
            } else {
                &Silent
            };
            registries.pull(&mut store, &reference, &PullOptions::default(), progress)?;
            Ok(())
        };
        pull().map_err(|e| {
            format!(
                "pulling {}: {}",
                reference.familiar_string(),
                super::one_line(&e)
            )
        })
    }))
}

/// `berth push`.
pub fn push(root: &Path, args: PushArgs) -> Result<()> {
    let _ = args.disable_content_trust;
    let named = parse_reference(&args.name)?;
    if named.digest().is_some() {
        return Err(fail(1, "cannot push a digest reference"));
    }
    if args.all_tags && named.tag().is_some() {
        return Err(fail(1, "tag can't be used with --all-tags/-a"));
    }
    let registries = Registries::load().map_err(|e| fail(1, e))?;
    let mut store = open_store(root)?;
    let references: Vec<Reference> = if args.all_tags {
        let tags = store.repository_tags(&named.name())?;
        if tags.is_empty() {
            return Err(fail(
                1,
                format!(
                    "An image does not exist locally with the tag: {}",
                    named.familiar_name()
                ),
            ));
        }
        tags
    } else if named.tag().is_none() {
        if !args.quiet {
            println!("Using default tag: latest");
        }
        vec![named.with_tag("latest").map_err(|e| fail(1, e))?]
    } else {
        vec![named]
    };
    let view = TransferView::new(io::stdout().is_terminal());
    let progress: &dyn Progress = if args.quiet { &Silent } else { &view };
    for reference in &references {
        view.reset();
        let pushed = registries
            .push(&mut store, reference, progress)
            .map_err(|e| fail(1, e))?;
        if args.quiet {
            println!("{reference}");
        } else {
            println!("{pushed}");
        }
    }
    Ok(())
}

/// The registry a `login`/`logout` argument names (Docker Hub when left out).
fn registry_host(server: Option<&str>) -> String {
    match server.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => credentials::registry_host(s),
        None => DOCKER_HUB_HOST.into(),
    }
}

/// `berth login`.
pub fn login(args: LoginArgs) -> Result<()> {
    let host = registry_host(args.server.as_deref());
    let mut registries = Registries::load().map_err(|e| fail(1, e))?;
    if args.password.is_some() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        if args.password_stdin {
            return Err(fail(
                1,
                "--password and --password-stdin are mutually exclusive",
            ));
        }
    }
    let password = if args.password_stdin {
        if args.username.is_none() {
            return Err(fail(1, "Must provide --username with --password-stdin"));
        }
        let mut line = String::new();
        io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        Some(line.trim_end_matches(['\n', '\r']).to_string())
    } else {
        args.password.clone()
    };
    let credential = match (args.username, password) {
        (Some(username), Some(password)) => Credential::Basic { username, password },
        (username, password) => {
            // Stored credentials are tried first, as docker does.
            if username.is_none()
                && password.is_none()
                && let Some(stored) = registries.credential(&host).map_err(|e| fail(1, e))?
                && registries.check_login(&host, &stored).is_ok()
            {
                println!("Login Succeeded");
                return Ok(());
            }
            prompt_credential(username, password)?
        }
    };
    registries
        .check_login(&host, &credential)
        .map_err(|e| fail(1, e))?;
    let in_file = registries.credentials.stores_in_file(&host);
    registries
        .credentials
        .store(&host, &credential)
        .map_err(|e| fail(1, format!("Error saving credentials: {e}")))?;
    if in_file {
        eprintln!(
            "WARNING! Your password will be stored unencrypted in {}.\n\
             Configure a credential helper to remove this warning. See\n\
             https://docs.docker.com/engine/reference/commandline/login/#credential-stores\n",
            registries.credentials.path().display()
        );
    }
    println!("Login Succeeded");
    Ok(())
}

/// Asks for what is missing on the terminal (the password without echo).
fn prompt_credential(username: Option<String>, password: Option<String>) -> Result<Credential> {
    if !io::stdin().is_terminal() {
        return Err(fail(
            1,
            "Cannot perform an interactive login from a non TTY device",
        ));
    }
    let username = match username {
        Some(u) => u,
        None => {
            print!("Username: ");
            io::stdout().flush()?;
            let mut line = String::new();
            io::stdin().lock().read_line(&mut line)?;
            line.trim().to_string()
        }
    };
    if username.is_empty() {
        bail!("Username is required");
    }
    let password = match password {
        Some(p) => p,
        None => read_password()?,
    };
    if password.is_empty() {
        bail!("Password is required");
    }
    Ok(Credential::Basic { username, password })
}

fn read_password() -> Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    print!("Password: ");
    io::stdout().flush()?;
    let stdin = io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    println!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `berth logout`.
pub fn logout(args: LogoutArgs) -> Result<()> {
    let host = registry_host(args.server.as_deref());
    let mut registries = Registries::load().map_err(|e| fail(1, e))?;
    let key = credentials::config_key(&host);
    if registries
        .credentials
        .erase(&host)
        .map_err(|e| fail(1, e))?
    {
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_server_names() {
        assert_eq!(registry_host(None), "docker.io");
        assert_eq!(
            registry_host(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(registry_host(Some("127.0.0.1:5000")), "127.0.0.1:5000");
        assert_eq!(
            registry_host(Some("http://r.example:5000/")),
            "r.example:5000"
        );
    }

    #[test]
    fn bars_like_docker() {
        let b = bar(500_000, Some(1_000_000));
        assert!(b.starts_with("[=========================>"), "{b}");
        assert!(b.ends_with("500kB/1MB"), "{b}");
        assert_eq!(bar(10, None), "10B");
    }
}
