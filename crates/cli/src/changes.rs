//! `import --change` / `commit --change`: the Dockerfile instructions Docker accepts there
//! (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR),
//! applied to an image's container defaults.
//!
//! This is a small line parser of its own because the full Dockerfile parser
//! (`berth-dockerfile`) does not exist yet; when it does, this file should call it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use berth_store::RunConfig;
use serde_json::Value;

/// Applies one `--change` line to `config`.
pub fn apply_change(config: &mut RunConfig, line: &str) -> Result<()> {
    let line = line.trim();
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .map(|(w, r)| (w, r.trim()))
        .unwrap_or((line, ""));
    let instruction = word.to_ascii_uppercase();
    let args = || -> Result<Vec<String>> { words(rest) };
    match instruction.as_str() {
        "CMD" => config.cmd = Some(exec_or_shell(rest)?),
        "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(rest)?),
        "ENV" => {
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in key_values(rest, "ENV")? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in key_values(rest, "LABEL")? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in args()? {
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let valid =
                    |s: &str| !s.is_empty() && s.split('-').all(|n| n.parse::<u16>().is_ok());
                if !valid(port) || !matches!(proto, "tcp" | "udp" | "sctp") {
                    bail!("invalid containerPort: {p}");
                }
                ports.insert(format!("{port}/{proto}"), Value::Object(Default::default()));
            }
        }
        "VOLUME" => {
            let vols = config.volumes.get_or_insert_with(BTreeMap::new);
            let list = if rest.starts_with('[') {
                json_array(rest)?
            } else {
                args()?
            };
            for v in list {
                vols.insert(v, Value::Object(Default::default()));
            }
        }
        "USER" => config.user = Some(single(rest, "USER")?),
        "WORKDIR" => config.working_dir = Some(single(rest, "WORKDIR")?),
        "STOPSIGNAL" => config.stop_signal = Some(single(rest, "STOPSIGNAL")?),
        "ONBUILD" => {
            if rest.is_empty() {
                bail!("ONBUILD requires at least one argument");
            }
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(rest.to_string());
        }
        "" => bail!("empty change"),
        other => bail!("{other} is not a valid change command"),
    }
    Ok(())
}

fn single(rest: &str, what: &str) -> Result<String> {
    let w = words(rest)?;
    match w.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("{what} requires exactly one argument"),
    }
}

/// JSON form (`["a","b"]`) or shell form (`a b` -> `/bin/sh -c "a b"`).
fn exec_or_shell(rest: &str) -> Result<Vec<String>> {
    if rest.starts_with('[')
        && let Ok(v) = json_array(rest)
    {
        return Ok(v);
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

fn json_array(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).with_context(|| format!("not a JSON array of strings: {s}"))
}

/// Splits on whitespace, honouring double and single quotes and backslash escapes.
fn words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push('\\'),
                }
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        bail!("unterminated {q} quote in: {s}");
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `K=V K2="v 2"` or the legacy `K V...` form.
fn key_values(rest: &str, what: &str) -> Result<Vec<(String, String)>> {
    let w = words(rest)?;
    if w.is_empty() {
        bail!("{what} requires at least one argument");
    }
    if !w[0].contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .unwrap_or((rest.to_string(), String::new()));
        if what == "ENV" && v.is_empty() {
            bail!("ENV names can not be blank and need a value: {rest}");
        }
        return Ok(vec![(k, v)]);
    }
    w.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what}: invalid key=value pair: {kv}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<RunConfig> {
        let mut c = RunConfig::default();
        for l in lines {
            apply_change(&mut c, l)?;
        }
        Ok(c)
    }

    #[test]
    fn cmd_forms() {
        let c = apply(&[r#"CMD ["sh", "-c", "echo hi"]"#, "ENTRYPOINT top -b"]).unwrap();
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "top -b"]);
    }

    #[test]
    fn env_and_labels() {
        let c = apply(&[
            "ENV A=1 B=\"two words\"",
            "ENV C three words",
            "ENV A=replaced",
            "LABEL org.x=y z=\"q r\"",
        ])
        .unwrap();
        assert_eq!(
            c.env.unwrap(),
            ["B=two words", "C=three words", "A=replaced"]
        );
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.x"], "y");
        assert_eq!(labels["z"], "q r");
    }

    #[test]
    fn ports_volumes_user_workdir() {
        let c = apply(&[
            "EXPOSE 80 53/udp 8000-8010",
            r#"VOLUME ["/data"]"#,
            "VOLUME /a /b",
            "USER 1000:1000",
            "workdir /srv",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000-8010/tcp"]);
        let vols: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(vols, ["/a", "/b", "/data"]);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "RUN echo",
            "EXPOSE http",
            "USER",
            "ENV",
            "ENV A",
            "LABEL =x",
        ] {
            assert!(apply(&[bad]).is_err(), "{bad} should be refused");
        }
    }
}
