//! `berth exec`: a command in a running container.

use std::{fs, io, os::fd::OwnedFd, path::Path, sync::Arc, thread};

use anyhow::Result;
use berth_engine::{
    Engine,
    exec::ExecOptions,
    monitor::{self, Hub, Session},
};
use berth_runtime::console;
use clap::Args;

use super::{
    Status,
    container::{Foreground, env_entry, feed, read_env_file},
    fail,
};

/// `berth exec` flags.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub(crate) detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long, value_name = "list")]
    pub(crate) env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub(crate) env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub(crate) privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long, value_name = "string")]
    pub(crate) user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    pub(crate) workdir: Option<String>,
    /// CONTAINER
    #[arg(value_name = "CONTAINER")]
    pub(crate) container: String,
    /// COMMAND [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub(crate) command: Vec<String>,
}

/// `berth exec`: runs the command in the container and exits with its status; with `-d`,
/// returns once it runs.
pub fn exec(root: &Path, args: ExecArgs) -> Result<()> {
    let container = args.container.as_str();
    let mut env = Vec::new();
    for file in &args.env_file {
        env.extend(read_env_file(file).map_err(|e| fail(1, super::one_line(&e)))?);
    }
    env.extend(args.env.iter().filter_map(|e| env_entry(e)));
    let opts = ExecOptions {
        cmd: args.command.clone(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty && !args.detach,
        privileged: args.privileged,
    };
    let mut engine = Engine::open(root).map_err(|e| fail(1, e))?;
    let failed = |e: berth_engine::EngineError| match monitor::exit_status_for(&e) {
        125 => fail(1, e),
        code => fail(code, e),
    };
    if args.detach {
        let null = || -> io::Result<OwnedFd> { Ok(fs::File::open("/dev/null")?.into()) };
        let stdio = berth_runtime::Stdio {
            stdin: null()?,
            stdout: null()?,
            stderr: null()?,
        };
        let process = engine.exec(container, &opts, stdio, None).map_err(failed)?;
        process.detach();
        return Ok(());
    }

    let Foreground {
        hub,
        stdin,
        console_size,
        feed_stdin,
        raw_mode,
    } = Foreground::new(args.interactive, args.tty)?;
    let session = Session::exec(
        &mut engine,
        container,
        &opts,
        &hub,
        stdin,
        args.interactive,
        console_size,
    )
    .map_err(failed)?;
    let raw_mode = raw_mode.then(|| console::RawMode::enable(io::stdin()).ok());
    if feed_stdin {
        feed(hub.clone());
    }
    if args.tty {
        follow_window_size(hub.clone());
    }
    let exit = session.wait();
    drop(raw_mode);
    let exit = exit.map_err(|e| fail(1, e))?;
    if exit.code != 0 {
        return Err(Status(exit.code.clamp(0, 255) as u8).into());
    }
    Ok(())
}

/// Passes this terminal's size changes on to the command's pty.
fn follow_window_size(hub: Arc<Hub>) {
    use signal_hook::consts::signal::SIGWINCH;
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGWINCH]) else {
        return;
    };
    thread::spawn(move || {
        for _ in signals.forever() {
            if let Some((rows, cols)) = console::window_size(io::stdin()) {
                hub.resize(rows, cols);
            }
        }
    });
}
