//! `berth exec`: a command in a running container.

use std::{
    fs,
    io::{self, Read},
    os::fd::{AsFd, OwnedFd},
    path::Path,
    sync::Arc,
    thread,
};

use anyhow::Result;
use berth_engine::{
    Engine,
    exec::ExecOptions,
    logfile::Stream,
    monitor::{self, Hub, Session, Sink},
};
use berth_runtime::console;
use clap::Args;

use super::{
    Status,
    container::{env_entry, read_env_file},
};

/// `berth exec` flags.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short, long, value_name = "list")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short, long, value_name = "string")]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "string")]
    workdir: Option<String>,
    /// CONTAINER
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// COMMAND [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// Prints `e` as berth's one-line error and returns the status to exit with.
fn fail(code: u8, e: impl std::fmt::Display) -> anyhow::Error {
    eprintln!("Error: {e}");
    Status(code).into()
}

/// `berth exec`: runs the command in the container and exits with its status; with `-d`,
/// returns once it runs.
pub fn exec(root: &Path, args: ExecArgs) -> Result<()> {
    let container = args.container.as_str();
    if let Some(workdir) = &args.workdir
        && !workdir.is_empty()
        && !workdir.starts_with('/')
    {
        return Err(fail(
            1,
            format!(
                "the working directory '{workdir}' is invalid, it needs to be an absolute path"
            ),
        ));
    }
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

    let stdin_is_tty = rustix::termios::isatty(io::stdin());
    // As for `run`: a terminal's input goes through this process (the command runs in
    // another session), piped input is handed over as it is.
    let feed_stdin = args.interactive && (args.tty || stdin_is_tty);
    let stdin: Option<OwnedFd> = if args.tty || feed_stdin {
        None
    } else if args.interactive {
        Some(io::stdin().as_fd().try_clone_to_owned()?)
    } else {
        Some(fs::File::open("/dev/null")?.into())
    };
    let console_size = if args.tty {
        console::window_size(io::stdout()).or_else(|| console::window_size(io::stdin()))
    } else {
        None
    };
    let hub = Hub::new();
    hub.add(Sink::Local {
        stream: Stream::Stdout,
        out: Box::new(io::stdout()),
    });
    hub.add(Sink::Local {
        stream: Stream::Stderr,
        out: Box::new(io::stderr()),
    });
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
    let raw_mode = if args.tty && args.interactive && stdin_is_tty {
        console::RawMode::enable(io::stdin()).ok()
    } else {
        None
    };
    if feed_stdin {
        let hub = hub.clone();
        thread::spawn(move || feed(&hub));
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

/// Copies this process's stdin to the command's until either ends.
fn feed(hub: &Hub) {
    let mut buf = [0u8; 8192];
    let mut stdin = io::stdin();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if hub.write_stdin(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    hub.close_stdin();
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
