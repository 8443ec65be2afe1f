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
    let created_by = match kind {
        Kind::Env(pairs) => {
            let mut shown = Vec::new();
            // Every pair expands with the environment from before the line (Docker's
            // `ENV abc=bye def=$abc` gives def the old abc).
            let before = config.clone();
            for p in pairs {
                let key = ex(&before, &p.key)?;
                let value = ex(&before, &p.value)?;
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
                // The engine's `--expose` rules: a range is each of its ports.
                let keys = berth_engine::ports::parse_expose(&p)?;
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for key in keys {
                    ports.insert(key, serde_json::json!({}));
                }
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                shown.push(format!("{port}/{}", proto.to_ascii_lowercase()));
            }
            format!("EXPOSE [{}]", shown.join(" "))
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
            let wd = crate::clean_path(&joined);
            config.working_dir = Some(wd.clone());
            format!("WORKDIR {wd}")
        }
        Kind::Stopsignal(signal) => {
            let signal = ex(config, signal)?;
            // The engine's own check: an image's STOPSIGNAL must be one `stop` can send.
            berth_engine::lifecycle::parse_signal(&signal)?;
            config.stop_signal = Some(signal.clone());
            format!("STOPSIGNAL {signal}")
        }
        Kind::Maintainer(name) => {
            *target.author = Some(name.clone());
            format!("MAINTAINER {name}")
        }
        Kind::Cmd(command) => {
            let words = command_words(command, &shell(config));
            config.cmd = Some(words.clone()).filter(|w| !w.is_empty());
            *target.cmd_set = true;
            format!("CMD {}", go_quoted(&words))
        }
        Kind::Entrypoint(command) => {
            let words = command_words(command, &shell(config));
            config.entrypoint = Some(words.clone()).filter(|w| !w.is_empty());
            if !*target.cmd_set {
                config.cmd = None;
            }
            format!("ENTRYPOINT {}", go_quoted(&words))
        }
        Kind::Shell(words) => {
            config.shell = Some(words.clone());
            format!("SHELL [{}]", words.join(" "))
        }
        Kind::Healthcheck(check) => {
            let value = healthcheck_config(check);
            config.healthcheck = Some(value);
            format!("HEALTHCHECK {}", healthcheck_history(check))
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

/// Words as Go's `%q` prints a `[]string` (`["a" "b c"]`): how BuildKit's history shows
/// `CMD` and `ENTRYPOINT`.
fn go_quoted(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| go_quote(w)).collect();
    format!("[{}]", quoted.join(" "))
}

/// One string as Go's `strconv.Quote` (for the characters commands carry): how BuildKit's
/// history and Docker's `ps` show commands.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `HEALTHCHECK`'s history text: Go's `%q` of BuildKit's health config
/// (`&{["CMD-SHELL" "curl -f http://localhost/"] "30s" "5s" "0s" "0s" '\x03'}`).
fn healthcheck_history(check: &Healthcheck) -> String {
    match check {
        Healthcheck::None => "&{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}".into(),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = health_test(test);
            let retries = match u32::try_from(*retries).ok().and_then(char::from_u32) {
                Some(c) if (' '..='~').contains(&c) && c != '\'' && c != '\\' => format!("'{c}'"),
                _ => format!("'\\x{:02x}'", retries),
            };
            format!(
                "&{{{} \"{}\" \"{}\" \"{}\" \"{}\" {retries}}}",
                go_quoted(&test),
                berth_store::format_go_duration(*interval),
                berth_store::format_go_duration(*timeout),
                berth_store::format_go_duration(*start_period),
                berth_store::format_go_duration(*start_interval),
            )
        }
    }
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

/// A `HEALTHCHECK` command as the config's `Test`: `CMD` and the words, or `CMD-SHELL` and
/// the line.
fn health_test(test: &Command) -> Vec<String> {
    match test {
        Command::Exec(words) => std::iter::once("CMD".to_string())
            .chain(words.clone())
            .collect(),
        Command::Shell(text) => vec!["CMD-SHELL".to_string(), text.clone()],
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
            let test = health_test(test);
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
    fn history_texts_are_buildkits() {
        let mut config = RunConfig::default();
        let (mut author, mut cmd_set) = (None, false);
        let mut t = Target {
            config: &mut config,
            author: &mut author,
            cmd_set: &mut cmd_set,
        };
        let mut created = |line: &str| apply(&mut t, &kind(line), '\\', &[]).unwrap().unwrap();
        assert_eq!(created("CMD [\"c1\", \"c 2\"]"), r#"CMD ["c1" "c 2"]"#);
        assert_eq!(
            created("ENTRYPOINT echo \"hi\""),
            r#"ENTRYPOINT ["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(
            created("SHELL [\"/bin/sh\", \"-ec\"]"),
            "SHELL [/bin/sh -ec]"
        );
        assert_eq!(
            created("EXPOSE 80 7000-7001/udp"),
            "EXPOSE [80/tcp 7000-7001/udp]"
        );
        assert_eq!(
            created("HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD true"),
            r#"HEALTHCHECK &{["CMD-SHELL" "true"] "1m30s" "500ms" "0s" "0s" '\x03'}"#
        );
        assert_eq!(created("WORKDIR a/b"), "WORKDIR /a/b");
        let ports: Vec<&String> = config.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["7000/udp", "7001/udp", "80/tcp"]);
    }

    #[test]
    fn env_on_one_line_sees_the_values_from_before_it() {
        let mut config = RunConfig::default();
        let (mut author, mut cmd_set) = (None, false);
        let mut t = Target {
            config: &mut config,
            author: &mut author,
            cmd_set: &mut cmd_set,
        };
        apply(&mut t, &kind("ENV A=1 B=$A"), '\\', &[]).unwrap();
        apply(&mut t, &kind("ENV A=2 C=${A:-unset}"), '\\', &[]).unwrap();
        assert_eq!(env_value(t.config, "B").as_deref(), Some(""));
        assert_eq!(env_value(t.config, "C").as_deref(), Some("1"));
        assert!(apply(&mut t, &kind("STOPSIGNAL NOPE"), '\\', &[]).is_err());
        assert!(apply(&mut t, &kind("STOPSIGNAL SIGUSR1"), '\\', &[]).is_ok());
        assert!(apply(&mut t, &kind("STOPSIGNAL 9"), '\\', &[]).is_ok());
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
        // W sees the V from before its line: the ARG's.
        assert_eq!(t.config.working_dir.as_deref(), Some("/srv/arg/sub/arg2"));
        assert!(apply(&mut t, &kind("EXPOSE 80/http"), '\\', &args).is_err());
        assert_eq!(apply(&mut t, &kind("RUN true"), '\\', &args), Ok(None));
    }
}
