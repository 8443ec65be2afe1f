//! The instructions that change only an image's config (`ENV`, `LABEL`, `EXPOSE`, `VOLUME`,
//! `USER`, `WORKDIR`, `STOPSIGNAL`, `MAINTAINER`, `CMD`, `ENTRYPOINT`, `SHELL`,
//! `HEALTHCHECK`, `ONBUILD`), applied as Docker's dispatchers apply them. One place for the
//! builder and for `import --change` / `commit --change`, which take the same instructions.

use std::collections::BTreeMap;

use berth_dockerfile::{Command, Healthcheck, Kind, expand};
use berth_store::RunConfig;

/// What a metadata instruction changes.
pub struct Target<'a> {
    /// The container defaults.
    pub config: &'a mut RunConfig,
    /// The image's author (`MAINTAINER`).
    pub author: &'a mut Option<String>,
    /// `CMD` was set since the base: a new `ENTRYPOINT` then keeps it (otherwise it clears
    /// the `CMD` inherited from the base, as Docker does).
    pub cmd_set: &'a mut bool,
}

/// The default `SHELL`.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Applies `kind` to `target`, expanding its words with the config's `ENV` and then `args`
/// (the build's `ARG`s in scope). Returns the history entry's `created_by`, or `None` for an
/// instruction that is not a metadata one (`RUN`, `COPY`, `ADD`, `ARG`).
pub fn apply(
    target: &mut Target<'_>,
    kind: &Kind,
    escape: char,
    args: &[(String, Option<String>)],
) -> Result<Option<String>, String> {
    let config = &mut *target.config;
    let ex = |config: &RunConfig, word: &str| -> Result<String, String> {
        let lookup = |name: &str| {
            env_value(config, name).or_else(|| {
                args.iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.clone())
            })
        };
        expand::expand(word, expand::Options { escape, raw: false }, &lookup)
            .map_err(|e| e.to_string())
    };
    let json = |words: &[String]| serde_json::to_string(words).unwrap_or_default();
    let created_by = match kind {
        Kind::Env(pairs) => {
            let mut shown = Vec::new();
            // Each pair sees the ones before it.
            for p in pairs {
                let key = ex(config, &p.key)?;
                let value = ex(config, &p.value)?;
                set_env(config, &key, &value);
                shown.push(format!("{key}={value}"));
            }
            format!("ENV {}", shown.join(" "))
        }
        Kind::Label(pairs) => {
            let mut shown = Vec::new();
            for p in pairs {
                let key = ex(config, &p.key)?;
                let value = ex(config, &p.value)?;
                config
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key.clone(), value.clone());
                shown.push(format!("{key}={value}"));
            }
            format!("LABEL {}", shown.join(" "))
        }
        Kind::Expose(ports) => {
            let mut shown = Vec::new();
            for p in ports {
                let p = ex(config, p)?;
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let valid =
                    |s: &str| !s.is_empty() && s.split('-').all(|n| n.parse::<u16>().is_ok());
                if !valid(port) || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(format!("invalid containerPort: {p}"));
                }
                let key = format!("{port}/{proto}");
                config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key.clone(), serde_json::json!({}));
                shown.push(key);
            }
            format!("EXPOSE map[{}]", shown.join(" "))
        }
        Kind::Volume(paths) => {
            let mut shown = Vec::new();
            for p in paths {
                let p = ex(config, p)?;
                config
                    .volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(p.clone(), serde_json::json!({}));
                shown.push(p);
            }
            format!("VOLUME [{}]", shown.join(" "))
        }
        Kind::User(user) => {
            let user = ex(config, user)?;
            config.user = Some(user.clone());
            format!("USER {user}")
        }
        Kind::Workdir(dir) => {
            let dir = ex(config, dir)?;
            let base = config.working_dir.clone().unwrap_or_else(|| "/".into());
            let joined = if dir.starts_with('/') {
                dir.clone()
            } else {
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            config.working_dir = Some(crate::clean_path(&joined));
            format!("WORKDIR {dir}")
        }
        Kind::Stopsignal(signal) => {
            let signal = ex(config, signal)?;
            config.stop_signal = Some(signal.clone());
            format!("STOPSIGNAL {signal}")
        }
        Kind::Maintainer(name) => {
            *target.author = Some(name.clone());
            format!("MAINTAINER {name}")
        }
        Kind::Cmd(command) => {
            let words = command_words(command, &shell(config));
            config.cmd = Some(words.clone());
            *target.cmd_set = true;
            format!("CMD {}", json(&words))
        }
        Kind::Entrypoint(command) => {
            let words = command_words(command, &shell(config));
            config.entrypoint = Some(words.clone());
            if !*target.cmd_set {
                config.cmd = None;
            }
            format!("ENTRYPOINT {}", json(&words))
        }
        Kind::Shell(words) => {
            config.shell = Some(words.clone());
            format!("SHELL {}", json(words))
        }
        Kind::Healthcheck(check) => {
            let value = healthcheck_config(check);
            config.healthcheck = Some(value.clone());
            format!("HEALTHCHECK {value}")
        }
        Kind::Onbuild(trigger) => {
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(trigger.clone());
            format!("ONBUILD {trigger}")
        }
        Kind::Run(_) | Kind::Copy(_) | Kind::Add(_) | Kind::Arg(_) => return Ok(None),
    };
    Ok(Some(created_by))
}

/// The value of `ENV` variable `name` in `config`.
pub(crate) fn env_value(config: &RunConfig, name: &str) -> Option<String> {
    config.env.iter().flatten().rev().find_map(|e| {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        (k == name).then(|| v.to_string())
    })
}

/// Sets `key` in place when it is set, at the end otherwise (Docker's `dispatchEnv`).
fn set_env(config: &mut RunConfig, key: &str, value: &str) {
    let env = config.env.get_or_insert_with(Vec::new);
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// The `SHELL` in effect.
pub(crate) fn shell(config: &RunConfig) -> Vec<String> {
    config
        .shell
        .clone()
        .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect())
}

/// A command as the config keeps it: exec form as it is, shell form run by `shell`.
pub(crate) fn command_words(command: &Command, shell: &[String]) -> Vec<String> {
    match command {
        Command::Exec(words) => words.clone(),
        Command::Shell(text) => shell.iter().cloned().chain([text.clone()]).collect(),
    }
}

/// Docker's `Healthcheck` config object.
fn healthcheck_config(check: &Healthcheck) -> serde_json::Value {
    match check {
        Healthcheck::None => serde_json::json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                Command::Exec(words) => std::iter::once("CMD".to_string())
                    .chain(words.clone())
                    .collect(),
                Command::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
            };
            let mut v = serde_json::json!({"Test": test});
            for (key, n) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
                ("Retries", retries),
            ] {
                if *n != 0 {
                    v[key] = serde_json::json!(n);
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Kind {
        let file = berth_dockerfile::parse(&format!("FROM scratch\n{line}")).unwrap();
        file.stages[0].instructions[0].kind.clone()
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_only() {
        let mut config = RunConfig {
            cmd: Some(vec!["from-base".into()]),
            ..Default::default()
        };
        let (mut author, mut cmd_set) = (None, false);
        let mut t = Target {
            config: &mut config,
            author: &mut author,
            cmd_set: &mut cmd_set,
        };
        apply(&mut t, &kind("ENTRYPOINT [\"top\"]"), '\\', &[]).unwrap();
        assert_eq!(t.config.cmd, None);
        apply(&mut t, &kind("CMD [\"-b\"]"), '\\', &[]).unwrap();
        apply(&mut t, &kind("ENTRYPOINT top"), '\\', &[]).unwrap();
        assert_eq!(t.config.cmd.as_deref(), Some(&["-b".to_string()][..]));
        assert_eq!(
            t.config.entrypoint.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "top".into()][..])
        );
    }

    #[test]
    fn words_expand_with_env_then_args() {
        let mut config = RunConfig::default();
        let (mut author, mut cmd_set) = (None, false);
        let mut t = Target {
            config: &mut config,
            author: &mut author,
            cmd_set: &mut cmd_set,
        };
        let args = [("V".to_string(), Some("arg".to_string()))];
        apply(&mut t, &kind("WORKDIR /srv/$V"), '\\', &args).unwrap();
        apply(&mut t, &kind("ENV V=env W=${V}2"), '\\', &args).unwrap();
        apply(&mut t, &kind("WORKDIR sub/$W"), '\\', &args).unwrap();
        assert_eq!(t.config.working_dir.as_deref(), Some("/srv/arg/sub/env2"));
        assert!(apply(&mut t, &kind("EXPOSE 80/http"), '\\', &args).is_err());
        assert_eq!(apply(&mut t, &kind("RUN true"), '\\', &args), Ok(None));
    }
}
