//! The `berth` command line: Docker's commands and flags, over berth's libraries.
//!
//! This crate is glue: it parses arguments (clap), opens the store, calls the libraries, and
//! prints tables and JSON the way the docker CLI does. No engine logic lives here.

#![forbid(unsafe_code)]

mod commands;
mod error_line;
mod filters;
mod format;
mod logging;
mod registry_serve;
#[allow(
    dead_code,
    reason = "go-units' full set; not every parser has a user yet"
)]
mod units;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// Exit status for a bad command line, as docker uses it.
const EXIT_USAGE: u8 = 125;
/// Exit status when a command fails.
const EXIT_FAILURE: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "A daemonless, Docker-compatible container engine",
    disable_version_flag = true,
    max_term_width = 100
)]
struct Cli {
    /// State directory (images, layers, containers)
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth"
    )]
    root: PathBuf,
    /// Set the logging level ("debug", "info", "warn", "error", "fatal")
    #[arg(
        short = 'l',
        long,
        default_value = "warn",
        env = "BERTH_LOG",
        value_parser = ["debug", "info", "warn", "error", "fatal"]
    )]
    log_level: String,
    /// Enable debug mode
    #[arg(short = 'D', long, global = true)]
    debug: bool,
    /// Print version information and quit
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum Command {
    /// List images
    Images(commands::image::ListArgs),
    /// Manage images
    Image {
        #[command(subcommand)]
        command: commands::image::ImageCommand,
    },
    /// Import the contents from a tarball to create a filesystem image
    Import(commands::image::ImportArgs),
    /// Load an image from a tar archive or STDIN
    Load(commands::image::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(commands::image::SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::image::TagArgs),
    /// Remove one or more images
    Rmi(commands::image::RemoveArgs),
    /// Show the history of an image
    History(commands::image::HistoryArgs),
    /// Download an image from a registry
    Pull(commands::registry::PullArgs),
    /// Upload an image to a registry
    Push(commands::registry::PushArgs),
    /// Authenticate to a registry
    Login(commands::registry::LoginArgs),
    /// Log out from a registry
    Logout(commands::registry::LogoutArgs),
    /// Run and maintain a registry server
    Registry {
        #[command(subcommand)]
        command: commands::registry_server::RegistryCommand,
    },
    /// Serve the Docker Engine API (for the docker CLI, docker-py and compose)
    Serve(commands::serve::ServeArgs),
    /// Define and run multi-container applications (compose files)
    Compose(commands::compose::ComposeArgs),
    /// Build an image from a Dockerfile
    Build(commands::build::BuildArgs),
    /// Manage builds
    Builder {
        #[command(subcommand)]
        command: commands::build::BuilderCommand,
    },
    #[command(flatten)]
    ContainerShared(ContainerCommand),
    /// List containers
    Ps(commands::lifecycle::PsArgs),
    /// Manage containers
    Container {
        #[command(subcommand)]
        command: ContainerGroup,
    },
    /// Looks after one container (started by `run -d` and `start`)
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor {
        /// The container's full ID
        id: String,
        /// Wait for an attach client before the start
        #[arg(long = "wait-for-attach")]
        wait_for_attach: bool,
    },
    /// Return low-level information on berth objects
    Inspect(commands::image::InspectArgs),
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        command: commands::volume::VolumeCommand,
    },
    /// Manage networks
    Network {
        #[command(subcommand)]
        command: commands::network::NetworkCommand,
    },
    /// Manage berth
    System {
        #[command(subcommand)]
        command: commands::system::SystemCommand,
    },
    /// Show the berth version information
    Version,
    /// Get real time events from berth
    Events(commands::system::EventsArgs),
}

/// The container commands docker has both at the top level and under `docker container`.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ContainerCommand {
    /// Create and run a new container from an image
    Run(Box<commands::container::RunArgs>),
    /// Create a new container
    Create(Box<commands::container::RunArgs>),
    /// Start one or more stopped containers
    Start(commands::lifecycle::StartArgs),
    /// Stop one or more running containers
    Stop(commands::lifecycle::StopArgs),
    /// Kill one or more running containers
    Kill(commands::lifecycle::KillArgs),
    /// Restart one or more containers
    Restart(commands::lifecycle::RestartArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(commands::lifecycle::WaitArgs),
    /// Fetch the logs of a container
    Logs(commands::lifecycle::LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::lifecycle::AttachArgs),
    /// Remove one or more containers
    Rm(commands::container::RemoveArgs),
    /// Pause all processes within one or more containers
    Pause(commands::lifecycle::PauseArgs),
    /// Unpause all processes within one or more containers
    Unpause(commands::lifecycle::PauseArgs),
    /// Rename a container
    Rename(commands::lifecycle::RenameArgs),
    /// Execute a command in a running container
    Exec(commands::exec::ExecArgs),
    /// Display the running processes of a container
    Top(commands::procs::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::procs::StatsArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::procs::PortArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(commands::contents::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(commands::contents::DiffArgs),
    /// Export a container's filesystem as a tar archive
    Export(commands::contents::ExportArgs),
    /// Create a new image from a container's changes
    Commit(commands::contents::CommitArgs),
}

/// `berth container ...`: the container commands under one name, as in docker.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
enum ContainerGroup {
    #[command(flatten)]
    Shared(ContainerCommand),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(commands::lifecycle::PsArgs),
    /// Remove all stopped containers
    Prune(commands::lifecycle::PruneArgs),
}

fn container_command(root: &std::path::Path, command: ContainerCommand) -> anyhow::Result<()> {
    use commands::{container, lifecycle};
    match command {
        ContainerCommand::Run(args) => container::run(root, *args),
        ContainerCommand::Create(args) => lifecycle::create(root, *args),
        ContainerCommand::Start(args) => lifecycle::start(root, args),
        ContainerCommand::Stop(args) => lifecycle::stop(root, args),
        ContainerCommand::Kill(args) => lifecycle::kill(root, args),
        ContainerCommand::Restart(args) => lifecycle::restart(root, args),
        ContainerCommand::Wait(args) => lifecycle::wait(root, args),
        ContainerCommand::Logs(args) => lifecycle::logs(root, args),
        ContainerCommand::Attach(args) => lifecycle::attach(root, args),
        ContainerCommand::Rm(args) => container::remove(root, args),
        ContainerCommand::Pause(args) => lifecycle::pause(root, args),
        ContainerCommand::Unpause(args) => lifecycle::unpause(root, args),
        ContainerCommand::Rename(args) => lifecycle::rename(root, args),
        ContainerCommand::Exec(args) => commands::exec::exec(root, args),
        ContainerCommand::Top(args) => commands::procs::top(root, args),
        ContainerCommand::Stats(args) => commands::procs::stats(root, args),
        ContainerCommand::Port(args) => commands::procs::port(root, args),
        ContainerCommand::Cp(args) => commands::contents::cp(root, args),
        ContainerCommand::Diff(args) => commands::contents::diff(root, args),
        ContainerCommand::Export(args) => commands::contents::export(root, args),
        ContainerCommand::Commit(args) => commands::contents::commit(root, args),
    }
}

/// The level `-D` and `--log-level` ask for, as tracing names it.
fn effective_log_level(debug: bool, log_level: &str) -> &str {
    if debug { "debug" } else { log_level }
}

fn init_tracing(cli: &Cli) {
    let level = effective_log_level(cli.debug, &cli.log_level);
    logging::init(logging::parse_level(level).unwrap_or(tracing::Level::WARN));
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        unreachable!("main prints help when no command is given")
    };
    let root = cli.root;
    let log_level = effective_log_level(cli.debug, &cli.log_level);
    match command {
        Command::Images(args) => commands::image::list(&root, args),
        Command::Image { command } => commands::image::dispatch(&root, command),
        Command::Import(args) => commands::image::import(&root, args),
        Command::Load(args) => commands::image::load(&root, args),
        Command::Save(args) => commands::image::save(&root, args),
        Command::Tag(args) => commands::image::tag(&root, args),
        Command::Rmi(args) => commands::image::remove(&root, args),
        Command::History(args) => commands::image::history(&root, args),
        Command::Pull(args) => commands::registry::pull(&root, args),
        Command::Push(args) => commands::registry::push(&root, args),
        Command::Login(args) => commands::registry::login(args),
        Command::Logout(args) => commands::registry::logout(args),
        Command::Registry { command } => commands::registry_server::dispatch(command, log_level),
        Command::Serve(args) => commands::serve::serve(&root, args),
        Command::Compose(args) => commands::compose::compose(&root, args),
        Command::Build(args) => commands::build::build(&root, args),
        Command::Builder { command } => commands::build::builder(&root, command),
        Command::ContainerShared(command) => container_command(&root, command),
        Command::Ps(args) => commands::lifecycle::ps(&root, args),
        Command::Container { command } => match command {
            ContainerGroup::Shared(command) => container_command(&root, command),
            ContainerGroup::Ls(args) => commands::lifecycle::ps(&root, args),
            ContainerGroup::Prune(args) => commands::lifecycle::prune(&root, args),
        },
        Command::ContainerMonitor {
            id,
            wait_for_attach,
        } => commands::lifecycle::monitor_main(&root, &id, wait_for_attach),
        Command::Inspect(args) => commands::image::inspect(&root, args),
        Command::Volume { command } => commands::volume::dispatch(&root, command),
        Command::Network { command } => commands::network::dispatch(&root, command),
        Command::System { command } => commands::system::dispatch(&root, command),
        Command::Events(args) => commands::system::events(&root, args),
        Command::Version => {
            print_version();
            Ok(())
        }
    }
}

fn print_version() {
    println!("berth version {}", env!("CARGO_PKG_VERSION"));
}

fn main() -> ExitCode {
    // A container's init is this binary re-executed: it must not parse arguments, log, or
    // start a thread before it has set the container up.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(berth_runtime::INIT_ARG))
    {
        berth_runtime::init_main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => EXIT_FAILURE,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        print_version();
        return ExitCode::SUCCESS;
    }
    if cli.command.is_none() {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
    }
    init_tracing(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(status) = e.downcast_ref::<commands::Status>() {
                return ExitCode::from(status.0);
            }
            // A closed pipe (`berth images | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("Error: {}", commands::one_line(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand's arguments are built (clap defers them until one is invoked) and
    /// pass clap's own consistency checks: a clash with a global argument such as `--root`
    /// would otherwise show only when a user runs that command.
    #[test]
    fn every_subcommand_builds() {
        use clap::CommandFactory;
        fn walk(path: &mut Vec<String>, cmd: &clap::Command, seen: &mut usize) {
            // clap's own `help` subcommands take no --help.
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                path.push(sub.get_name().to_string());
                let mut argv = vec!["berth".to_string()];
                argv.extend(path.iter().cloned());
                argv.push("--help".into());
                let err = Cli::try_parse_from(&argv).expect_err("--help stops the parse");
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::DisplayHelp,
                    "{argv:?}: {err}"
                );
                *seen += 1;
                let mut built = sub.clone();
                built.build();
                walk(path, &built, seen);
                path.pop();
            }
        }
        let mut top = Cli::command();
        top.build();
        let mut seen = 0;
        walk(&mut Vec::new(), &top, &mut seen);
        assert!(seen > 50, "only {seen} subcommands found");
    }
}
