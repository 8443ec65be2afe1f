//! The registry server's arguments and start, shared by `berth registry serve` and the
//! `berth-registry` executable (`src/bin/berth-registry.rs`), which includes this file.
//! `berth registry serve` executes `berth-registry` when it sits beside `berth`: the server
//! then runs without the pages of berth's other commands (its RSS under load is less than
//! half, benches/README.md).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use berth_distribution::server::{self, ServeOptions};
use clap::Args;

const DEFAULT_ADDR: &str = "127.0.0.1:5000";
const DEFAULT_ROOT: &str = "/var/lib/berth-registry";

#[derive(Args, Debug, Clone, PartialEq)]
pub struct RootArgs {
    /// The registry's storage directory
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
}

#[derive(Args, Debug, Clone, PartialEq)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start)
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub root: RootArgs,
    /// htpasswd file with bcrypt hashes (htpasswd -B); every request then needs credentials
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// With --htpasswd: let anyone pull; pushes and deletes still need credentials. (The
    /// docker CLI cannot pull anonymously from a Basic-auth registry: it needs `docker login`;
    /// skopeo, podman, containerd and berth can.)
    #[arg(long, requires = "htpasswd")]
    pub anonymous_pull: bool,
    /// TLS certificate chain (PEM)
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse pushes and deletes
    #[arg(long)]
    pub read_only: bool,
    /// Allow DELETE of manifests, tags and blobs
    #[arg(long)]
    pub delete: bool,
}

/// The command line of `berth-registry` for these arguments ([`parse_server_args`] reads it
/// back).
#[allow(
    dead_code,
    reason = "berth builds the command line berth-registry reads"
)]
pub fn server_args(args: &ServeArgs, log_level: &str) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![
        "--log-level".into(),
        log_level.into(),
        "--addr".into(),
        args.addr.to_string().into(),
        "--root".into(),
        args.root.root.clone().into(),
    ];
    let paths = [
        ("--htpasswd", &args.htpasswd),
        ("--tls-cert", &args.tls_cert),
        ("--tls-key", &args.tls_key),
    ];
    for (flag, path) in paths {
        if let Some(path) = path {
            out.push(flag.into());
            out.push(path.clone().into());
        }
    }
    let switches = [
        ("--anonymous-pull", args.anonymous_pull),
        ("--read-only", args.read_only),
        ("--delete", args.delete),
    ];
    out.extend(switches.iter().filter(|s| s.1).map(|s| s.0.into()));
    out
}

#[allow(
    dead_code,
    reason = "berth-registry parses its arguments by hand; berth has clap"
)]
pub const SERVER_USAGE: &str = "\
usage: berth-registry [--log-level LEVEL] [--addr ADDR] [--root DIR]
                      [--htpasswd FILE [--anonymous-pull]] [--tls-cert FILE --tls-key FILE]
                      [--read-only] [--delete]
berth's registry server alone: `berth registry serve` runs it (see `berth registry serve --help`).";

/// What `berth-registry`'s command line asks for.
#[allow(
    dead_code,
    reason = "berth-registry parses its arguments by hand; berth has clap"
)]
#[derive(Debug, PartialEq)]
pub enum ServerCommandLine {
    Serve {
        log_level: tracing::Level,
        args: ServeArgs,
    },
    Help,
}

/// Parses `berth-registry`'s arguments (without the program name). By hand, not with clap:
/// clap's parser was 0.3 MiB of the server's resident memory (its code pages, touched once),
/// more than a tenth of what the server adds under load; `berth registry serve`, which is
/// where people type these flags, parses them with clap and passes [`server_args`].
#[allow(
    dead_code,
    reason = "berth-registry parses its arguments by hand; berth has clap"
)]
pub fn parse_server_args(
    args: impl IntoIterator<Item = OsString>,
) -> Result<ServerCommandLine, String> {
    let mut level = std::env::var("BERTH_LOG").unwrap_or_else(|_| "warn".into());
    let mut serve = ServeArgs {
        addr: DEFAULT_ADDR.parse().expect("the default address parses"),
        root: RootArgs {
            root: DEFAULT_ROOT.into(),
        },
        htpasswd: None,
        anonymous_pull: false,
        tls_cert: None,
        tls_key: None,
        read_only: false,
        delete: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("unexpected argument {a:?}"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(ServerCommandLine::Help),
            "-l" | "--log-level" => {
                level = value()?
                    .into_string()
                    .map_err(|v| format!("invalid log level {v:?}"))?
            }
            "--addr" => {
                let v = value()?;
                serve.addr = v
                    .to_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("invalid --addr {v:?}: not an IP address and port"))?
            }
            "--root" => serve.root.root = value()?.into(),
            "--htpasswd" => serve.htpasswd = Some(value()?.into()),
            "--tls-cert" => serve.tls_cert = Some(value()?.into()),
            "--tls-key" => serve.tls_key = Some(value()?.into()),
            "--anonymous-pull" | "--read-only" | "--delete" if inline.is_some() => {
                return Err(format!("{flag} takes no value"));
            }
            "--anonymous-pull" => serve.anonymous_pull = true,
            "--read-only" => serve.read_only = true,
            "--delete" => serve.delete = true,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if serve.anonymous_pull && serve.htpasswd.is_none() {
        return Err("--anonymous-pull needs --htpasswd".into());
    }
    if serve.tls_cert.is_some() != serve.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    let log_level = crate::logging::parse_level(&level)?;
    Ok(ServerCommandLine::Serve {
        log_level,
        args: serve,
    })
}

/// Serves in this process until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
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

const ARENA_MAX: &str = "glibc.malloc.arena_max";

/// glibc gives every thread that allocates an arena of its own, and memory freed in one is
/// not reused by another: under 16 concurrent pushes the server's anonymous memory peaked at
/// 5.2 MiB with the default arenas and 3.4 MiB with one, at the same throughput
/// (benches/README.md). The tunable is read only when a process starts (and `mallopt` would
/// be unsafe code outside `berth-runtime`), so it goes into the environment of the exec that
/// starts the server. A user's own `arena_max` is kept. Returns whether it was added.
pub fn with_one_malloc_arena(command: &mut Command) -> bool {
    if !cfg!(target_env = "gnu") {
        return false;
    }
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains(ARENA_MAX) {
        return false;
    }
    let tunables = if tunables.is_empty() {
        format!("{ARENA_MAX}=1")
    } else {
        format!("{tunables}:{ARENA_MAX}=1")
    };
    command.env("GLIBC_TUNABLES", tunables);
    true
}

/// Executes this program again, same arguments, with [`with_one_malloc_arena`]; returns only
/// when that is not needed or the exec failed (the server then runs with glibc's defaults).
pub fn reexec_with_one_malloc_arena() {
    let mut args = std::env::args_os();
    let mut command = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    if with_one_malloc_arena(command.args(args)) {
        let error = command.exec();
        tracing::debug!("serving with glibc's default malloc arenas: exec failed: {error}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn os(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn what_berth_passes_parses_back_the_same() {
        let lines = [
            "",
            "--addr 127.0.0.1:0 --root /srv/r",
            "--addr [::1]:5000 --root /srv/r --htpasswd /etc/h --anonymous-pull --delete",
            "--addr 0.0.0.0:443 --root /srv/r --tls-cert /c.pem --tls-key /k.pem --read-only",
        ];
        for line in lines {
            let parsed = Serve::parse_from(std::iter::once("x".into()).chain(os(line))).args;
            let again = parse_server_args(server_args(&parsed, "debug"));
            let want = ServerCommandLine::Serve {
                log_level: tracing::Level::DEBUG,
                args: parsed,
            };
            assert_eq!(again, Ok(want), "{line}");
        }
    }

    #[test]
    fn bad_server_command_lines() {
        for (line, error) in [
            ("--addr", "--addr needs a value"),
            ("--addr localhost", "invalid --addr"),
            ("--anonymous-pull", "--anonymous-pull needs --htpasswd"),
            ("--tls-cert /c", "--tls-cert and --tls-key go together"),
            ("--read-only=yes", "--read-only takes no value"),
            ("--log-level loud", "invalid log level"),
            ("serve", "unexpected argument"),
        ] {
            let got = parse_server_args(os(line)).unwrap_err();
            assert!(got.contains(error), "{line}: {got}");
        }
        assert_eq!(parse_server_args(os("--help")), Ok(ServerCommandLine::Help));
        let inline = parse_server_args(os("--root=/a --addr=127.0.0.1:1")).unwrap();
        let ServerCommandLine::Serve { args, .. } = inline else {
            panic!("{inline:?}")
        };
        assert_eq!(args.root.root, PathBuf::from("/a"));
        assert_eq!(args.addr.port(), 1);
    }
}
