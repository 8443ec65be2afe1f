//! The parser on tricky Dockerfiles: every instruction, both forms, continuations and
//! comments, here-documents, `# escape=`, ARG scoping, and the errors.

use berth_dockerfile::{
    ArgDecl, Command, Healthcheck, KeyValue, Kind, ParseError, RunMount, expand, parse,
};

fn kinds(text: &str) -> Vec<Kind> {
    let file = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    file.stages
        .into_iter()
        .flat_map(|s| s.instructions)
        .map(|i| i.kind)
        .collect()
}

fn error(text: &str) -> ParseError {
    match parse(text) {
        Ok(f) => panic!("parsed: {f:?}"),
        Err(e) => e,
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn every_instruction() {
    let text = r#"# syntax=docker/dockerfile:1
ARG BASE=python:3
FROM ${BASE} AS Build
MAINTAINER someone <a@b.c>
LABEL org.example.a="one two" b=3
ENV PATH=/opt/bin:$PATH LANG=C.UTF-8
ENV A=1 B="two words" C='single $x'
ARG VERSION=1.0 OTHER
WORKDIR /app
USER 1000:1000
EXPOSE 80/tcp 443
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
COPY --from=build --chown=1000:1000 --chmod=0644 --link a.txt b/ /dest/
ADD --checksum=sha256:abc https://example.com/x.tar.gz /opt/
RUN --mount=type=cache,target=/root/.cache/pip --network=none pip install numpy
RUN ["python3", "-c", "print(1)"]
CMD ["python3", "app.py"]
ENTRYPOINT exec python3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --retries=3 CMD curl -f http://localhost/ || exit 1
ONBUILD RUN echo triggered
"#;
    let file = parse(text).unwrap();
    assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(file.meta_args.len(), 1);
    let stage = &file.stages[0];
    assert_eq!(stage.base, "${BASE}");
    assert_eq!(
        stage.name.as_deref(),
        Some("build"),
        "stage names are lowercased"
    );
    assert_eq!(stage.line, 3);
    let k: Vec<Kind> = stage.instructions.iter().map(|i| i.kind.clone()).collect();
    assert_eq!(k[0], Kind::Maintainer("someone <a@b.c>".into()));
    assert_eq!(
        k[1],
        Kind::Label(vec![kv("org.example.a", "\"one two\""), kv("b", "3")])
    );
    assert_eq!(
        k[2],
        Kind::Env(vec![kv("PATH", "/opt/bin:$PATH"), kv("LANG", "C.UTF-8")])
    );
    assert_eq!(
        k[3],
        Kind::Env(vec![
            kv("A", "1"),
            kv("B", "\"two words\""),
            kv("C", "'single $x'")
        ])
    );
    assert_eq!(
        k[4],
        Kind::Arg(vec![
            ArgDecl {
                name: "VERSION".into(),
                default: Some("1.0".into())
            },
            ArgDecl {
                name: "OTHER".into(),
                default: None
            }
        ])
    );
    assert_eq!(k[5], Kind::Workdir("/app".into()));
    assert_eq!(k[6], Kind::User("1000:1000".into()));
    assert_eq!(k[7], Kind::Expose(vec!["80/tcp".into(), "443".into()]));
    assert_eq!(k[8], Kind::Volume(vec!["/data".into(), "/logs".into()]));
    assert_eq!(k[9], Kind::Volume(vec!["/cache".into(), "/tmp/x".into()]));
    let Kind::Copy(copy) = &k[10] else {
        panic!("{:?}", k[10])
    };
    assert_eq!(copy.sources, ["a.txt", "b/"]);
    assert_eq!(copy.dest, "/dest/");
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("1000:1000"));
    assert_eq!(copy.chmod.as_deref(), Some("0644"));
    assert!(copy.link);
    let Kind::Add(add) = &k[11] else {
        panic!("{:?}", k[11])
    };
    assert_eq!(add.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(add.sources, ["https://example.com/x.tar.gz"]);
    let Kind::Run(run) = &k[12] else {
        panic!("{:?}", k[12])
    };
    assert_eq!(run.command, Command::Shell("pip install numpy".into()));
    assert_eq!(run.network.as_deref(), Some("none"));
    assert_eq!(
        RunMount::parse(&run.mounts[0]).unwrap().target,
        "/root/.cache/pip"
    );
    let Kind::Run(run) = &k[13] else { panic!() };
    assert_eq!(
        run.command,
        Command::Exec(vec!["python3".into(), "-c".into(), "print(1)".into()])
    );
    assert_eq!(
        k[14],
        Kind::Cmd(Command::Exec(vec!["python3".into(), "app.py".into()]))
    );
    assert_eq!(
        k[15],
        Kind::Entrypoint(Command::Shell("exec python3".into()))
    );
    assert_eq!(
        k[16],
        Kind::Shell(vec![
            "/bin/bash".into(),
            "-o".into(),
            "pipefail".into(),
            "-c".into()
        ])
    );
    assert_eq!(k[17], Kind::Stopsignal("SIGINT".into()));
    assert_eq!(
        k[18],
        Kind::Healthcheck(Healthcheck::Check {
            test: Command::Shell("curl -f http://localhost/ || exit 1".into()),
            interval: 30_000_000_000,
            timeout: 5_000_000_000,
            start_period: 60_000_000_000,
            start_interval: 0,
            retries: 3,
        })
    );
    assert_eq!(k[19], Kind::Onbuild("RUN echo triggered".into()));
    assert_eq!(
        stage.instructions[12].source,
        "RUN --mount=type=cache,target=/root/.cache/pip --network=none pip install numpy"
    );
}

#[test]
fn old_env_form_and_case_insensitive_keywords() {
    assert_eq!(
        kinds("from scratch\nenv GREETING hello   world\nlabel version 1\n"),
        [
            Kind::Env(vec![kv("GREETING", "hello   world")]),
            Kind::Label(vec![kv("version", "1")])
        ]
    );
}

#[test]
fn continuations_and_comments() {
    let text = "FROM busybox\n\
                # a comment\n\
                RUN echo a \\\n\
                \x20   # a comment inside the continuation\n\
                \n\
                \x20   && echo b \\  \n\
                \x20   && echo c\n\
                RUN echo '#not a comment'\n";
    let file = parse(text).unwrap();
    let run = &file.stages[0].instructions;
    assert_eq!(run[0].line, 3);
    assert_eq!(run[0].source, "RUN echo a && echo b && echo c");
    assert_eq!(run[1].line, 8);
    assert_eq!(
        run[1].kind,
        Kind::Run(berth_dockerfile::Run {
            command: Command::Shell("echo '#not a comment'".into()),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None,
        })
    );
    // A continuation on the last line ends the instruction there.
    let k = kinds("FROM busybox\nRUN echo end \\");
    assert!(matches!(&k[0], Kind::Run(r) if r.command == Command::Shell("echo end".into())));
    // CRLF line ends.
    let k = kinds("FROM busybox\r\nRUN a \\\r\n b\r\n");
    assert!(matches!(&k[0], Kind::Run(r) if r.command == Command::Shell("a b".into())));
}

#[test]
fn backtick_escape_for_windows_paths() {
    let text = "# escape=`\nFROM busybox\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  && echo done\n";
    let file = parse(text).unwrap();
    assert_eq!(file.escape, '`');
    let k: Vec<&Kind> = file.stages[0]
        .instructions
        .iter()
        .map(|i| &i.kind)
        .collect();
    let Kind::Copy(c) = k[0] else { panic!() };
    assert_eq!(c.dest, "c:\\", "a backslash does not continue the line");
    assert!(
        matches!(k[1], Kind::Run(r) if r.command == Command::Shell("dir c:\\ && echo done".into()))
    );
}

#[test]
fn directives_only_at_the_top() {
    let file = parse("# directive=unknown\n# escape=`\nFROM busybox\n").unwrap();
    assert_eq!(
        file.escape, '\\',
        "an unknown directive ends the directives"
    );
    let file = parse("\n# escape=`\nFROM busybox\n").unwrap();
    assert_eq!(file.escape, '\\', "a blank line ends the directives");
    let file = parse("# ESCAPE = `\nFROM busybox\n").unwrap();
    assert_eq!(file.escape, '`');
    let e = error("# escape=`\n# escape=\\\nFROM busybox\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("only one escape"), "{e}");
    let e = error("# escape=x\nFROM busybox\n");
    assert!(e.message.contains("invalid escape token"), "{e}");
}

#[test]
fn heredocs() {
    let text = "FROM busybox\n\
                RUN <<EOF\n\
                echo one\n\
                echo \"$HOME\"\n\
                EOF\n\
                RUN python3 - <<'PY' > out.txt && cat <<-END\n\
                print('$x')\n\
                PY\n\
                \t\tindented\n\
                \tEND\n\
                COPY <<conf.ini <<\"other\" /etc/app/\n\
                [a]\n\
                conf.ini\n\
                b\n\
                other\n\
                CMD [\"sh\"]\n";
    let file = parse(text).unwrap();
    let ins = &file.stages[0].instructions;
    let Kind::Run(r) = &ins[0].kind else { panic!() };
    assert_eq!(r.command, Command::Shell("<<EOF".into()));
    assert_eq!(r.heredocs.len(), 1);
    assert_eq!(r.heredocs[0].name, "EOF");
    assert_eq!(r.heredocs[0].content, "echo one\necho \"$HOME\"\n");
    assert!(r.heredocs[0].expand);
    let Kind::Run(r) = &ins[1].kind else { panic!() };
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(r.heredocs[0].content, "print('$x')\n");
    assert!(
        !r.heredocs[0].expand,
        "a quoted delimiter turns expansion off"
    );
    assert_eq!(
        r.heredocs[1].content, "indented\n",
        "<<- strips leading tabs"
    );
    let Kind::Copy(c) = &ins[2].kind else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(c.dest, "/etc/app/");
    assert_eq!(c.heredocs[0].name, "conf.ini");
    assert_eq!(c.heredocs[0].content, "[a]\n");
    assert_eq!(c.heredocs[1].content, "b\n");
    assert!(matches!(ins[3].kind, Kind::Cmd(_)));
    assert_eq!(ins[3].line, 16);
    let e = error("FROM busybox\nRUN <<EOF\necho never closed\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("unterminated heredoc"), "{e}");
    // `<<` that is not a heredoc marker (a shell's here-string, an arithmetic shift).
    let k = kinds("FROM busybox\nRUN cat <<< word; echo $((1<<2))\n");
    assert!(matches!(&k[0], Kind::Run(r) if r.heredocs.is_empty()));
}

#[test]
fn json_form_falls_back_to_shell_form() {
    let k = kinds("FROM busybox\nCMD [\"a\", 1]\nRUN [not json\nENTRYPOINT []\n");
    assert_eq!(k[0], Kind::Cmd(Command::Shell("[\"a\", 1]".into())));
    assert!(matches!(&k[1], Kind::Run(r) if r.command == Command::Shell("[not json".into())));
    assert_eq!(k[2], Kind::Entrypoint(Command::Exec(vec![])));
}

#[test]
fn stages_and_arg_scoping() {
    let text = "ARG TAG=3\nARG UNUSED\nFROM python:${TAG} AS base\nARG TAG\nRUN echo $TAG\n\
                FROM --platform=$BUILDPLATFORM base as second\nFROM scratch\nCOPY --from=second /a /a\n";
    let file = parse(text).unwrap();
    assert_eq!(file.meta_args.len(), 2);
    assert_eq!(file.stages.len(), 3);
    assert_eq!(file.stages[1].platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(file.stages[1].name.as_deref(), Some("second"));
    assert_eq!(file.stages[2].name, None);
    assert_eq!(file.stages[2].base, "scratch");
    // What the builder does with a meta ARG: the FROM line sees its default.
    let Kind::Arg(decls) = &file.meta_args[0].kind else {
        panic!()
    };
    let tag = decls[0].default.clone();
    let base = expand::expand(&file.stages[0].base, expand::Options::default(), &|n| {
        (n == "TAG").then(|| tag.clone()).flatten()
    })
    .unwrap();
    assert_eq!(base, "python:3");
}

#[test]
fn errors_name_the_line_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "no instructions"),
        ("# just a comment\n", 0, "no instructions"),
        ("ARG A=1\n", 0, "no FROM"),
        ("RUN echo\nFROM busybox\n", 1, "no build stage"),
        ("FROM busybox\nFOO bar\n", 2, "unknown instruction: FOO"),
        ("FROM\n", 1, "FROM requires either one argument"),
        ("FROM a b\n", 1, "FROM requires"),
        ("FROM a AS 1x\n", 1, "invalid name for build stage"),
        (
            "FROM busybox\nRUN\n",
            2,
            "RUN requires at least one argument",
        ),
        ("FROM busybox\nCOPY onlyone\n", 2, "at least two arguments"),
        (
            "FROM busybox\nCOPY --bogus=1 a b\n",
            2,
            "unknown flag: --bogus",
        ),
        (
            "FROM busybox\nCOPY --from a b\n",
            2,
            "missing a value on flag: --from",
        ),
        (
            "FROM busybox\nADD --from=x a b\n",
            2,
            "unknown flag: --from",
        ),
        (
            "FROM busybox\nRUN --network=bridge x\n",
            2,
            "unsupported network mode",
        ),
        ("FROM busybox\nSHELL /bin/sh -c\n", 2, "JSON form"),
        (
            "FROM busybox\nENV\n",
            2,
            "ENV requires at least one argument",
        ),
        (
            "FROM busybox\nENV ONLYKEY\n",
            2,
            "ENV must have two arguments",
        ),
        ("FROM busybox\nENV A=1 B\n", 2, "can't find = in \"B\""),
        ("FROM busybox\nLABEL =x\n", 2, "key that is empty"),
        (
            "FROM busybox\nARG\n",
            2,
            "ARG requires at least one argument",
        ),
        (
            "FROM busybox\nWORKDIR\n",
            2,
            "WORKDIR requires exactly one argument",
        ),
        (
            "FROM busybox\nEXPOSE\n",
            2,
            "EXPOSE requires at least one argument",
        ),
        ("FROM busybox\nVOLUME [\"\"]\n", 2, "empty string"),
        ("FROM busybox\nHEALTHCHECK CMD\n", 2, "missing command"),
        (
            "FROM busybox\nHEALTHCHECK --interval=5 CMD true\n",
            2,
            "invalid duration",
        ),
        (
            "FROM busybox\nHEALTHCHECK --interval=1us CMD true\n",
            2,
            "less than 1ms",
        ),
        (
            "FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n",
            2,
            "--retries",
        ),
        (
            "FROM busybox\nHEALTHCHECK NONE x\n",
            2,
            "NONE takes no other",
        ),
        (
            "FROM busybox\nHEALTHCHECK PING x\n",
            2,
            "unknown type \"PING\"",
        ),
        (
            "FROM busybox\nONBUILD ONBUILD RUN x\n",
            2,
            "isn't allowed as an ONBUILD trigger",
        ),
        ("FROM busybox\nONBUILD FROM x\n", 2, "isn't allowed"),
        (
            "FROM busybox\nONBUILD BOGUS x\n",
            2,
            "unknown instruction: BOGUS",
        ),
        (
            "FROM busybox\nCOPY --link=maybe a b\n",
            2,
            "expecting boolean value",
        ),
    ];
    for (text, line, needle) in cases {
        let e = error(text);
        assert_eq!(e.line, *line, "{text:?}: {e}");
        assert!(e.message.contains(needle), "{text:?}: {e}");
    }
}

#[test]
fn healthcheck_none_and_exec_form() {
    let k = kinds("FROM busybox\nHEALTHCHECK NONE\nHEALTHCHECK CMD [\"true\"]\n");
    assert_eq!(k[0], Kind::Healthcheck(Healthcheck::None));
    assert!(matches!(
        &k[1],
        Kind::Healthcheck(Healthcheck::Check { test: Command::Exec(t), retries: 0, .. }) if t == &["true"]
    ));
}

#[test]
fn env_values_expand_as_docker_does() {
    // ENV A="x y" B=$A\ z: each value is processed once the earlier ones are known.
    let k = kinds("FROM busybox\nENV A=\"x y\" B=${A}\\ z C='$A'\n");
    let Kind::Env(pairs) = &k[0] else { panic!() };
    let mut vars: Vec<(String, String)> = Vec::new();
    for pair in pairs {
        let value = expand::expand(&pair.value, expand::Options::default(), &|n| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        vars.push((pair.key.clone(), value));
    }
    assert_eq!(
        vars,
        [
            ("A".to_string(), "x y".to_string()),
            ("B".to_string(), "x y z".to_string()),
            ("C".to_string(), "$A".to_string())
        ]
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Text made of the pieces that make Dockerfiles tricky.
    fn dockerfileish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("FROM ".to_string()),
            Just("RUN ".to_string()),
            Just("COPY ".to_string()),
            Just("ENV ".to_string()),
            Just("ARG ".to_string()),
            Just("HEALTHCHECK ".to_string()),
            Just("ONBUILD ".to_string()),
            Just("<<EOF".to_string()),
            Just("<<-'X'".to_string()),
            Just("EOF".to_string()),
            Just("\n".to_string()),
            Just("\\\n".to_string()),
            Just("`\n".to_string()),
            Just("# escape=`\n".to_string()),
            Just("--mount=".to_string()),
            Just("${a:-".to_string()),
            Just("}".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("=".to_string()),
            Just("[\"a\"]".to_string()),
            "[ -~]{0,6}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parse_and_expand(text in dockerfileish()) {
            if let Ok(file) = parse(&text) {
                let lookup = |n: &str| n.len().is_multiple_of(2).then(|| n.to_string());
                let options = expand::Options { escape: file.escape, raw: false };
                for stage in &file.stages {
                    let _ = expand::expand(&stage.base, options, &lookup);
                    for i in &stage.instructions {
                        if let Kind::Env(pairs) = &i.kind {
                            for p in pairs {
                                let _ = expand::expand(&p.value, options, &lookup);
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn expand_any_word(word in "[ -~]{0,40}") {
            let lookup = |n: &str| n.len().is_multiple_of(2).then(|| n.to_string());
            let _ = expand::expand(&word, expand::Options::default(), &lookup);
            let _ = expand::expand(&word, expand::Options { escape: '\\', raw: true }, &lookup);
        }

        #[test]
        fn run_mount_any_value(value in "[a-z=,/0-9 ]{0,40}") {
            let _ = RunMount::parse(&value);
        }
    }
}
