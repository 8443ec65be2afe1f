//! `import --change` / `commit --change`: the Dockerfile instructions Docker accepts there
//! (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR), parsed
//! by `berth-dockerfile` and applied by the builder's own dispatch ([`crate::metadata`]).
//! Shared by the CLI and the Engine API (`POST /commit?changes=`).

use berth_store::RunConfig;

/// The instructions `--change` takes, as Docker's.
const ALLOWED: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Applies the `--change` lines to `config`, in order and as one sequence (a `CMD` among
/// them is kept by a later `ENTRYPOINT`, as in a Dockerfile). An error names its line.
pub fn apply_changes(config: &mut RunConfig, lines: &[String]) -> Result<(), String> {
    let mut author = None;
    let mut cmd_set = false;
    let mut target = crate::metadata::Target {
        config,
        author: &mut author,
        cmd_set: &mut cmd_set,
    };
    for line in lines {
        apply_change(&mut target, line).map_err(|e| format!("--change {line:?}: {e}"))?;
    }
    Ok(())
}

fn apply_change(target: &mut crate::metadata::Target<'_>, line: &str) -> Result<(), String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("empty change".into());
    }
    let file = berth_dockerfile::parse(&format!("FROM scratch\n{line}")).map_err(|e| e.message)?;
    if file.stages.len() > 1 {
        return Err("FROM is not a valid change command".into());
    }
    // Every instruction of the change is checked (a line may hold several, with heredocs
    // or escaped newlines), not only the first word.
    for ins in &file.stages[0].instructions {
        let keyword = ins.kind.keyword();
        if !ALLOWED.contains(&keyword) {
            return Err(format!("{keyword} is not a valid change command"));
        }
        crate::metadata::apply(target, &ins.kind, file.escape, &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(lines: &[&str]) -> Result<RunConfig, String> {
        let mut c = RunConfig::default();
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        apply_changes(&mut c, &lines)?;
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
        // A variable set again keeps its place, as Docker's dispatchEnv.
        assert_eq!(
            c.env.unwrap(),
            ["A=replaced", "B=two words", "C=three words"]
        );
        let labels = c.labels.unwrap();
        assert_eq!(labels["org.x"], "y");
        assert_eq!(labels["z"], "q r");
    }

    #[test]
    fn ports_volumes_user_workdir() {
        let c = apply(&[
            "EXPOSE 80 53/udp 8000-8002",
            r#"VOLUME ["/data"]"#,
            "VOLUME /a /b",
            "USER 1000:1000",
            "workdir /srv",
            "STOPSIGNAL SIGINT",
        ])
        .unwrap();
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        // A range is each of its ports, as Docker's nat.ParsePortSpecs makes it.
        assert_eq!(
            ports,
            ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
        );
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
