//! What a Dockerfile says: stages of instructions, each with the line it starts on. Words are
//! as written (quotes and `$variables` included) wherever Docker substitutes variables at
//! build time; [`crate::expand`] does that once `ARG` and `ENV` values are known.

use serde::Serialize;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The `# syntax=` directive (berth reads it and builds with its own frontend).
    pub syntax: Option<String>,
    /// The escape character: `\` unless `# escape=` says `` ` ``.
    pub escape: char,
    /// `ARG`s before the first `FROM`: usable in `FROM` lines, and in a stage that declares
    /// them again without a value.
    pub meta_args: Vec<Instruction>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The line of its `FROM`.
    pub line: usize,
    /// The base image, stage name or `scratch` (unexpanded).
    pub base: String,
    /// `AS name`, lowercased as Docker does.
    pub name: Option<String>,
    /// `--platform` (unexpanded).
    pub platform: Option<String>,
    /// Its instructions after `FROM`.
    pub instructions: Vec<Instruction>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    /// The instruction as one line: its keyword upper-cased, continuations joined, comments
    /// left out (what Docker's history and the build cache see).
    pub source: String,
    /// What it is.
    pub kind: Kind,
}

/// The instructions of the language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL ["executable", "parameters"]`.
    Shell(Vec<String>),
    /// `LABEL k=v ...`.
    Label(Vec<KeyValue>),
    /// `ENV k=v ...` (or the old `ENV k v`).
    Env(Vec<KeyValue>),
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `EXPOSE 80/tcp ...`.
    Expose(Vec<String>),
    /// `VOLUME /a /b` or `VOLUME ["/a"]`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR /path`.
    Workdir(String),
    /// `STOPSIGNAL SIGTERM`.
    Stopsignal(String),
    /// `MAINTAINER name` (deprecated, still honoured: it sets the image's author).
    Maintainer(String),
    /// `COPY`.
    Copy(Copy),
    /// `ADD` (archives extracted, URLs fetched).
    Add(Copy),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD INSTRUCTION`: the trigger as written (it runs in builds based on the image).
    Onbuild(String),
}

impl Kind {
    /// The instruction's keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Kind::Run(_) => "RUN",
            Kind::Cmd(_) => "CMD",
            Kind::Entrypoint(_) => "ENTRYPOINT",
            Kind::Shell(_) => "SHELL",
            Kind::Label(_) => "LABEL",
            Kind::Env(_) => "ENV",
            Kind::Arg(_) => "ARG",
            Kind::Expose(_) => "EXPOSE",
            Kind::Volume(_) => "VOLUME",
            Kind::User(_) => "USER",
            Kind::Workdir(_) => "WORKDIR",
            Kind::Stopsignal(_) => "STOPSIGNAL",
            Kind::Maintainer(_) => "MAINTAINER",
            Kind::Copy(_) => "COPY",
            Kind::Add(_) => "ADD",
            Kind::Healthcheck(_) => "HEALTHCHECK",
            Kind::Onbuild(_) => "ONBUILD",
        }
    }
}

/// A command in exec form (`["a", "b"]`, run as it is) or shell form (run by the shell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// `["executable", "arg"]`.
    Exec(Vec<String>),
    /// `executable arg`, for `SHELL` (default `/bin/sh -c`).
    Shell(String),
}

/// A here-document (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// Its delimiter word, unquoted (`EOF`).
    pub name: String,
    /// Its lines, each ending in a newline (leading tabs removed for `<<-`).
    pub content: String,
    /// Variables in it are expanded (the delimiter was not quoted).
    pub expand: bool,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// Here-documents the command names, in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount=...` values, unexpanded (see [`RunMount::parse`]).
    pub mounts: Vec<String>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--security=sandbox|insecure`.
    pub security: Option<String>,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    /// Sources (unexpanded), paths in the context, in `from`, or URLs for `ADD`.
    pub sources: Vec<String>,
    /// Destination (unexpanded), relative to `WORKDIR` unless absolute.
    pub dest: String,
    /// Here-documents used as sources (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
    /// `--from=stage|image|index`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=mode`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude=pattern`, repeatable.
    pub exclude: Vec<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// `ADD --checksum=sha256:...`.
    pub checksum: Option<String>,
}

/// `KEY=value` of `ENV` and `LABEL`, both as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// One name of `ARG`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// `=default`, as written.
    pub default: Option<String>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: the base image's check is turned off.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD command`.
    Check {
        /// The command.
        test: Command,
        /// `--interval` in nanoseconds (0: Docker's default).
        interval: i64,
        /// `--timeout` in nanoseconds.
        timeout: i64,
        /// `--start-period` in nanoseconds.
        start_period: i64,
        /// `--start-interval` in nanoseconds.
        start_interval: i64,
        /// `--retries` (0: Docker's default).
        retries: i64,
    },
}

/// The kinds of `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MountKind {
    /// `type=bind` (the default): a directory of the context or of another stage.
    Bind,
    /// `type=cache`: a directory kept between builds.
    Cache,
    /// `type=tmpfs`.
    Tmpfs,
    /// `type=secret`: a file given to the build.
    Secret,
    /// `type=ssh`: an SSH agent socket.
    Ssh,
}

/// One `RUN --mount=...`, parsed after its variables are expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunMount {
    /// `type=`.
    pub kind: MountKind,
    /// `target=` (also `dst=`, `destination=`).
    pub target: String,
    /// `source=` (also `src=`).
    pub source: Option<String>,
    /// `from=`: a stage or image.
    pub from: Option<String>,
    /// `ro`/`readonly` or `rw`/`readwrite` (bind mounts are read-only by default).
    pub read_only: bool,
    /// `id=` (cache and secret).
    pub id: Option<String>,
    /// `sharing=shared|private|locked` (cache).
    pub sharing: Option<String>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<u64>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `env=` (secret): the secret goes into this variable instead of a file.
    pub env: Option<String>,
}

impl RunMount {
    /// Parses a `--mount` value: comma-separated `key=value` (and bare `ro`, `rw`,
    /// `required`), as BuildKit does.
    pub fn parse(value: &str) -> Result<RunMount, String> {
        let mut m = RunMount {
            kind: MountKind::Bind,
            target: String::new(),
            source: None,
            from: None,
            read_only: true,
            id: None,
            sharing: None,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            required: false,
            env: None,
        };
        let mut explicit_rw = None;
        let fields: Vec<&str> = value.split(',').map(str::trim).collect();
        // The type decides defaults, so it is read first wherever it is.
        for field in &fields {
            if let Some(kind) = field.strip_prefix("type=") {
                m.kind = match kind.to_ascii_lowercase().as_str() {
                    "bind" => MountKind::Bind,
                    "cache" => MountKind::Cache,
                    "tmpfs" => MountKind::Tmpfs,
                    "secret" => MountKind::Secret,
                    "ssh" => MountKind::Ssh,
                    other => return Err(format!("unsupported mount type {other:?}")),
                };
            }
        }
        m.read_only = matches!(m.kind, MountKind::Bind | MountKind::Secret | MountKind::Ssh);
        let number = |key: &str, v: &str, radix: u32| {
            u32::from_str_radix(v, radix).map_err(|_| format!("invalid value for {key}: {v:?}"))
        };
        for field in fields {
            if field.is_empty() {
                continue;
            }
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.to_ascii_lowercase(), None),
            };
            let flag = |v: Option<&str>| -> Result<bool, String> {
                match v.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") | Some("1") => Ok(true),
                    Some("false") | Some("0") => Ok(false),
                    Some(other) => Err(format!("invalid value for {key}: {other:?}")),
                }
            };
            let need = |v: Option<&str>| {
                v.map(str::to_string)
                    .ok_or_else(|| format!("invalid field '{key}' must be a key=value pair"))
            };
            match key.as_str() {
                "type" => {}
                "target" | "dst" | "destination" => m.target = need(val)?,
                "source" | "src" => m.source = Some(need(val)?),
                "from" => m.from = Some(need(val)?),
                "ro" | "readonly" => explicit_rw = Some(!flag(val)?),
                "rw" | "readwrite" => explicit_rw = Some(flag(val)?),
                "id" => m.id = Some(need(val)?),
                "sharing" => {
                    let s = need(val)?;
                    if !matches!(s.as_str(), "shared" | "private" | "locked") {
                        return Err(format!("unsupported sharing value {s:?}"));
                    }
                    m.sharing = Some(s);
                }
                "mode" => m.mode = Some(number("mode", &need(val)?, 8)?),
                "uid" => m.uid = Some(number("uid", &need(val)?, 10)?),
                "gid" => m.gid = Some(number("gid", &need(val)?, 10)?),
                "size" => {
                    let s = need(val)?;
                    m.size = Some(parse_size(&s).ok_or_else(|| format!("invalid size {s:?}"))?);
                }
                "required" => m.required = flag(val)?,
                "env" => m.env = Some(need(val)?),
                other => return Err(format!("unexpected key '{other}' in '{field}'")),
            }
        }
        if let Some(rw) = explicit_rw {
            m.read_only = !rw;
        }
        if m.target.is_empty() {
            match m.kind {
                // A secret without a target lands in /run/secrets/<id>; ssh in a socket path.
                MountKind::Secret if m.env.is_none() => {
                    let id = m.id.clone().or_else(|| {
                        m.source
                            .as_deref()
                            .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
                    });
                    match id {
                        Some(id) => m.target = format!("/run/secrets/{id}"),
                        None => return Err("secret mount needs an id or a target".into()),
                    }
                }
                MountKind::Secret => {}
                MountKind::Ssh => m.target = "/run/buildkit/ssh_agent.0".into(),
                _ => return Err("mount target must be specified".into()),
            }
        }
        if m.kind == MountKind::Secret && m.id.is_none() {
            m.id = Some(
                m.target
                    .rsplit('/')
                    .next()
                    .unwrap_or(m.target.as_str())
                    .to_string(),
            );
        }
        Ok(m)
    }
}

/// A size as Docker's units take it: a number with an optional `b`, `k`, `m`, `g` suffix
/// (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, mult) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1u64 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// A Go duration (`1m30s`, `500ms`, `1.5h`) in nanoseconds, as `HEALTHCHECK` flags take it.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if s == "0" {
        return Some(0);
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let ns = total.round() as i64;
    Some(if negative { -ns } else { ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_mounts_parse_as_buildkit() {
        let m = RunMount::parse("type=cache,target=/root/.cache/pip").unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert_eq!(m.target, "/root/.cache/pip");
        assert!(!m.read_only);
        let m = RunMount::parse("target=/src,from=build,source=/out,rw").unwrap();
        assert_eq!(m.kind, MountKind::Bind);
        assert_eq!(m.from.as_deref(), Some("build"));
        assert!(!m.read_only);
        assert!(RunMount::parse("target=/x").unwrap().read_only);
        let m = RunMount::parse("type=secret,id=token").unwrap();
        assert_eq!(m.target, "/run/secrets/token");
        let m = RunMount::parse("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = RunMount::parse("type=cache,target=/c,sharing=locked,mode=0700,uid=1000").unwrap();
        assert_eq!(
            (m.sharing.as_deref(), m.mode, m.uid),
            (Some("locked"), Some(0o700), Some(1000))
        );
        assert!(RunMount::parse("type=nfs,target=/x").is_err());
        assert!(RunMount::parse("type=cache").is_err());
        assert!(RunMount::parse("type=cache,target=/x,bogus=1").is_err());
        assert!(RunMount::parse("type=cache,target=/x,sharing=all").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
