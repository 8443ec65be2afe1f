//! `berth build` on busybox: multi-stage builds with `COPY --from`, `--target`, build args,
//! `.dockerignore`, the image config Docker's build would write, the step cache (hits, and
//! misses from a changed file on), and failures reported with their step and line.

mod common;

use std::path::{Path, PathBuf};

use common::{host::Host, json};

/// A context directory in the test's root with `files` (path, contents).
fn context(host: &Host, files: &[(&str, &str)]) -> PathBuf {
    let dir = host
        .berth
        .dir
        .path()
        .join(format!("ctx-{}", common::host::unique()));
    for (path, body) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

fn build(host: &Host, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let d = dir.to_str().unwrap();
    args.push(d);
    host.berth.run(&args)
}

fn build_ok(host: &Host, dir: &Path, extra: &[&str]) -> String {
    let out = build(host, dir, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed:\n{stderr}");
    stderr
}

const MULTI_STAGE: &str = r#"ARG BASE=busybox
FROM ${BASE} AS deps
ARG LEVEL=low
WORKDIR /src
COPY requirements.txt .
RUN echo "installed at $LEVEL" > /src/installed

FROM deps AS app
ENV APP_HOME=/app MODE="fast mode"
WORKDIR $APP_HOME
COPY --chown=1000:1000 app/ ./
COPY --from=deps /src/installed /opt/
RUN ls /app > /opt/listing
USER 1000
EXPOSE 8888
ENTRYPOINT ["sh", "-c"]
CMD ["cat /opt/installed"]

FROM app AS test
RUN exit 0
"#;

#[test]
fn multi_stage_build_with_args_ignore_and_config() {
    let host = Host::new();
    let dir = context(
        &host,
        &[
            ("Dockerfile", MULTI_STAGE),
            ("requirements.txt", "numpy\n"),
            ("app/train.py", "print('train')\n"),
            ("app/notes.md", "notes\n"),
            ("app/README.md", "kept\n"),
            ("app/data/big.csv", "1,2\n"),
            (".dockerignore", "app/*.md\n!app/README.md\napp/data\n"),
        ],
    );
    let stderr = build_ok(
        &host,
        &dir,
        &[
            "-t",
            "ml:1",
            "-t",
            "ml:latest",
            "--build-arg",
            "LEVEL=high",
            "--target",
            "app",
        ],
    );
    // Steps are what makes layers, named with their variables expanded, as BuildKit's.
    assert!(stderr.contains("[deps 2/4] WORKDIR /src"), "{stderr}");
    assert!(
        stderr.contains("[deps 4/4] RUN echo \"installed at high\" > /src/installed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("RUN exit 0"),
        "the test stage is not built: {stderr}"
    );

    // What the image holds and runs.
    assert_eq!(host.run_ok(&["ml:1"]), "installed at high\n");
    let listing = host.run_ok(&["--entrypoint", "cat", "ml:1", "/opt/listing"]);
    assert_eq!(
        listing, "README.md\ntrain.py\n",
        ".dockerignore with its exception"
    );
    let owner = host.run_ok(&[
        "--entrypoint",
        "stat",
        "ml:1",
        "-c",
        "%u:%g %a",
        "/app/train.py",
    ]);
    assert_eq!(owner, "1000:1000 644\n");
    let owner = host.run_ok(&[
        "--entrypoint",
        "stat",
        "ml:1",
        "-c",
        "%u:%g",
        "/src/requirements.txt",
    ]);
    assert_eq!(owner, "0:0\n", "COPY without --chown gives root");

    // The config, as Docker's build writes it.
    let doc = json(&host.ok(&["image", "inspect", "ml:1"]));
    let config = &doc[0]["Config"];
    assert_eq!(config["User"], "1000");
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["Entrypoint"], serde_json::json!(["sh", "-c"]));
    assert_eq!(config["Cmd"], serde_json::json!(["cat /opt/installed"]));
    let env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap();
    assert!(env.contains(&"APP_HOME=/app".to_string()), "{env:?}");
    assert!(env.contains(&"MODE=fast mode".to_string()), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("LEVEL=")),
        "ARGs stay out of the image: {env:?}"
    );
    assert!(config["ExposedPorts"]["8888/tcp"].is_object());
    let history = json(
        &host
            .ok(&["history", "--no-trunc", "--format", "{{json .}}", "ml:1"])
            .lines()
            .next()
            .map(|l| format!("[{l}]"))
            .unwrap(),
    );
    assert!(
        history[0]["CreatedBy"].as_str().unwrap().starts_with("CMD"),
        "{history}"
    );
    // Metadata steps add no layer: busybox's one, then COPY, RUN, COPY, COPY, RUN.
    assert_eq!(
        doc[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        6,
        "{doc}"
    );
    assert_eq!(
        host.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "ml:1\nml:latest\nbusybox:latest\n",
        "intermediate images stay hidden"
    );
}

#[test]
fn the_cache_reruns_only_what_changed() {
    let host = Host::new();
    let dockerfile = "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy-a\nCOPY b.txt /b.txt\nRUN cat /b.txt > /copy-b\n";
    let dir = context(
        &host,
        &[
            ("Dockerfile", dockerfile),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let iid = dir.join("iid");
    build_ok(
        &host,
        &dir,
        &["-t", "c:1", "--iidfile", iid.to_str().unwrap()],
    );
    let first = std::fs::read_to_string(&iid).unwrap();
    assert!(first.starts_with("sha256:"), "{first}");

    // Everything cached: the same image.
    let stderr = build_ok(
        &host,
        &dir,
        &["-t", "c:1", "--iidfile", iid.to_str().unwrap()],
    );
    assert_eq!(stderr.matches("CACHED").count(), 4, "{stderr}");
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), first);

    // The live view (forced: stderr is not a terminal here) ends with every step in it.
    let stderr = build_ok(&host, &dir, &["-t", "c:1", "--progress", "tty"]);
    let last_paint = stderr.rsplit("\x1b[J").next().unwrap();
    assert!(
        last_paint.starts_with("[+] Building") && last_paint.contains("(6/6) FINISHED"),
        "{stderr}"
    );
    assert!(
        last_paint.contains(" => CACHED [stage-0 5/5] RUN cat /b.txt > /copy-b"),
        "{last_paint}"
    );

    // Touched, not changed: still cached (the key is content, not mtime).
    let b = dir.join("b.txt");
    std::fs::write(&b, "b\n").unwrap();
    let stderr = build_ok(&host, &dir, &["-t", "c:1"]);
    assert_eq!(stderr.matches("CACHED").count(), 4, "{stderr}");

    // b.txt changed: its COPY and the RUN after it rerun, the steps before stay cached.
    std::fs::write(&b, "b2\n").unwrap();
    let stderr = build_ok(
        &host,
        &dir,
        &["-t", "c:1", "--iidfile", iid.to_str().unwrap()],
    );
    assert_eq!(stderr.matches("CACHED").count(), 2, "{stderr}");
    assert_ne!(std::fs::read_to_string(&iid).unwrap(), first);
    assert_eq!(
        host.run_ok(&["c:1", "cat", "/copy-a", "/copy-b"]),
        "a\nb2\n"
    );

    // --no-cache runs everything.
    let stderr = build_ok(&host, &dir, &["--no-cache", "-q"]);
    assert_eq!(stderr.matches("CACHED").count(), 0, "{stderr}");

    // builder prune forgets the steps: the next build runs them again.
    assert_ne!(
        host.ok(&["images", "-a", "-q"]),
        host.ok(&["images", "-q"]),
        "-a shows the cached steps' images"
    );
    let pruned = host.ok(&["builder", "prune", "-f"]);
    assert!(
        pruned.starts_with("Deleted build cache objects:"),
        "{pruned}"
    );
    assert_eq!(
        host.ok(&["images", "-a", "-q"]),
        host.ok(&["images", "-q"]),
        "the cached steps' images went with the cache"
    );
    let stderr = build_ok(&host, &dir, &["-t", "c:2"]);
    assert_eq!(stderr.matches("CACHED").count(), 0, "{stderr}");
}

#[test]
fn failures_name_the_step_line_and_exit_code() {
    let host = Host::new();
    let dir = context(
        &host,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo preparing\nRUN echo 'about to fail' && exit 3\nRUN echo never\n",
        )],
    );
    let out = build(&host, &dir, &["-t", "bad:1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(
        stderr.contains(">>> RUN echo 'about to fail' && exit 3"),
        "{stderr}"
    );
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(
        stderr.contains(
            "------\n > [stage-0 3/4] RUN echo 'about to fail' && exit 3:\nabout to fail\n------"
        ),
        "the step and its last output lines: {stderr}"
    );
    assert!(!stderr.contains("never\n#"), "{stderr}");
    let ps = host.ok(&["ps", "-aq"]);
    assert_eq!(ps, "", "the build container is gone");
    assert!(
        host.berth
            .fails(&["image", "inspect", "bad:1"])
            .contains("No such image")
    );

    let dir = context(&host, &[("Dockerfile", "FROM busybox\nCOPY only-one\n")]);
    let out = build(&host, &dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(stderr.contains("at least two arguments"), "{stderr}");

    let dir = context(
        &host,
        &[("Dockerfile", "FROM busybox\nCOPY missing.txt /\n")],
    );
    let stderr = String::from_utf8_lossy(&build(&host, &dir, &[]).stderr).into_owned();
    assert!(stderr.contains("\"/missing.txt\": not found"), "{stderr}");

    let dir = context(&host, &[("Dockerfile", "FROM nosuchimage:1\n")]);
    let stderr = String::from_utf8_lossy(&build(&host, &dir, &[]).stderr).into_owned();
    assert!(
        stderr.contains("nosuchimage:1 not found locally"),
        "{stderr}"
    );

    let dir = context(&host, &[("Dockerfile", "FROM busybox AS a\n")]);
    let stderr =
        String::from_utf8_lossy(&build(&host, &dir, &["--target", "b"]).stderr).into_owned();
    assert!(
        stderr.contains("target stage \"b\" could not be found"),
        "{stderr}"
    );

    // --network: the default network of RUN steps.
    let dir = context(
        &host,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN ip -o link | grep -c eth0 > /links || true\n",
        )],
    );
    build_ok(&host, &dir, &["-t", "isolated:1", "--network", "none"]);
    assert_eq!(host.run_ok(&["isolated:1", "cat", "/links"]), "0\n");
    build_ok(&host, &dir, &["-t", "bridged:1"]);
    assert_eq!(host.run_ok(&["bridged:1", "cat", "/links"]), "1\n");
}

const MOUNTS: &str = r#"FROM busybox AS tools
RUN mkdir -p /opt/tools && echo tool > /opt/tools/t.txt
FROM busybox
WORKDIR /work
RUN --mount=type=cache,target=rel echo rel > rel/file && test ! -e /root/.cache
RUN --mount=type=cache,target=/work/rel test -e /work/rel/file
RUN --mount=type=cache,target=/root/.cache/pip echo run >> /root/.cache/pip/log && wc -l < /root/.cache/pip/log > /cache-lines
RUN --mount=type=bind,source=data,target=/mnt/data ls /mnt/data > /data-listing && cat /mnt/data/keep.txt > /kept
RUN --mount=type=bind,from=tools,source=/opt/tools,target=/t cat /t/t.txt > /tool
RUN --mount=type=bind,target=/ctx,rw touch /ctx/written && ls /ctx/written > /rw
RUN --mount=type=tmpfs,target=/scratch,size=1m df /scratch | awk 'NR==2 {print $2}' > /tmpfs-size
RUN --mount=type=secret,id=token wc -c < /run/secrets/token > /secret-size && stat -c '%a %u' /run/secrets/token > /secret-mode
RUN --mount=type=secret,id=token,env=TOKEN test "$TOKEN" = s3cr3t && echo ok > /secret-env
"#;

#[test]
fn run_mounts_cache_bind_tmpfs_and_secret() {
    let host = Host::new();
    let dir = context(
        &host,
        &[
            ("Dockerfile", MOUNTS),
            ("data/keep.txt", "kept\n"),
            ("data/skip.log", "ignored\n"),
            (".dockerignore", "data/*.log\n"),
        ],
    );
    let secret = dir.join("../token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let secret_flag = format!("id=token,src={}", secret.display());
    build_ok(&host, &dir, &["-t", "m:1", "--secret", &secret_flag]);
    let cat = |path: &str| host.run_ok(&["m:1", "cat", path]);
    assert_eq!(cat("/cache-lines"), "1\n");
    assert_eq!(cat("/data-listing"), "keep.txt\n", ".dockerignore applies");
    assert_eq!(cat("/kept"), "kept\n");
    assert_eq!(cat("/tool"), "tool\n");
    assert_eq!(cat("/rw"), "/ctx/written\n");
    assert!(
        !dir.join("written").exists(),
        "a rw bind leaves the context"
    );
    assert_eq!(cat("/tmpfs-size"), "1024\n");
    assert_eq!(cat("/secret-size"), "6\n");
    assert_eq!(cat("/secret-mode"), "400 0\n");
    assert_eq!(cat("/secret-env"), "ok\n");
    // The mount points made for the step are not in the image.
    let listing = host.run_ok(&[
        "m:1",
        "sh",
        "-c",
        "ls -a /root; ls -d /mnt /t /ctx /scratch /run 2>&1 | wc -l",
    ]);
    assert_eq!(listing, ".\n..\n5\n", "{listing}");
    let root = host.berth.root();
    let staged = std::fs::read_dir(root.join("build/mounts"))
        .unwrap()
        .count();
    assert_eq!(staged, 0, "nothing stays staged after the build");

    // The cache mount outlives the step's cache: --no-cache runs it again on the same
    // directory. A changed bound file reruns its step; the secret's value is not in the key.
    std::fs::write(dir.join("data/keep.txt"), "changed\n").unwrap();
    std::fs::write(&secret, "s3cr3t").unwrap();
    let stderr = build_ok(&host, &dir, &["-t", "m:2", "--secret", &secret_flag]);
    assert_eq!(
        stderr.matches("CACHED").count(),
        4,
        "the tools stage's RUN and the cache steps: {stderr}"
    );
    assert_eq!(host.run_ok(&["m:2", "cat", "/kept"]), "changed\n");
    build_ok(
        &host,
        &dir,
        &["-t", "m:3", "--no-cache", "--secret", &secret_flag],
    );
    assert_eq!(host.run_ok(&["m:3", "cat", "/cache-lines"]), "2\n");

    // A required secret that is not given fails its step; one not required is skipped.
    let dir2 = context(
        &host,
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=absent test ! -e /run/secrets/absent\nRUN --mount=type=secret,id=needed,required true\n",
        )],
    );
    let stderr = String::from_utf8_lossy(&build(&host, &dir2, &[]).stderr).into_owned();
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(stderr.contains("secret needed not found"), "{stderr}");

    // builder prune removes the cache mounts too.
    host.ok(&["builder", "prune", "-f"]);
    let mounts = std::fs::read_dir(root.join("build/cache-mounts"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".lock")
        })
        .count();
    assert_eq!(mounts, 0);
}

#[test]
fn onbuild_outputs_and_a_context_on_stdin() {
    let host = Host::new();
    // ONBUILD triggers run in the child's build, right after its FROM, and are not
    // inherited further.
    let dir = context(
        &host,
        &[
            (
                "Dockerfile",
                "FROM busybox\nONBUILD COPY seed.txt /seed\nONBUILD RUN echo triggered > /t\n",
            ),
            ("seed.txt", "seed\n"),
            ("child/seed.txt", "child seed\n"),
            (
                "child/Dockerfile",
                "FROM parent:1\nRUN cat /t /seed > /both\n",
            ),
        ],
    );
    build_ok(&host, &dir, &["-t", "parent:1"]);
    let stderr = build_ok(
        &host,
        &dir,
        &[
            "-t",
            "child:1",
            "-f",
            dir.join("child/Dockerfile").to_str().unwrap(),
        ],
    );
    assert!(stderr.contains("ONBUILD] RUN echo triggered"), "{stderr}");
    assert_eq!(
        host.run_ok(&["child:1", "cat", "/both"]),
        "triggered\nseed\n"
    );
    let onbuild = host.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.OnBuild}}",
        "child:1",
    ]);
    assert_eq!(onbuild.trim(), "null");

    // -o type=local and type=tar: the files, not an image.
    let out_dir = dir.join("../exported");
    build_ok(
        &host,
        &dir,
        &["-o", &format!("type=local,dest={}", out_dir.display())],
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("seed")).ok(),
        None,
        "triggers run only in children"
    );
    assert!(out_dir.join("bin/busybox").is_file());
    let tar = dir.join("../exported.tar");
    build_ok(
        &host,
        &dir.join("child"),
        &["-o", &format!("type=tar,dest={}", tar.display())],
    );
    let listing = std::process::Command::new("tar")
        .arg("tf")
        .arg(&tar)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.lines().any(|l| l == "both"), "{listing}");
    let bad = host
        .berth
        .fails(&["build", "-o", "type=oci,dest=x", dir.to_str().unwrap()]);
    assert!(bad.contains("unsupported output type \"oci\""), "{bad}");

    // `build -` with a gzip tar on stdin: the archive is the context.
    let ctx = context(
        &host,
        &[
            ("Dockerfile", "FROM busybox\nCOPY f.txt /f.txt\n"),
            ("f.txt", "from the archive\n"),
        ],
    );
    let archive = dir.join("../ctx.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(&ctx)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let out = host.berth.run_stdin(
        &["build", "-t", "stdin:1", "-"],
        &std::fs::read(&archive).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        host.run_ok(&["stdin:1", "cat", "/f.txt"]),
        "from the archive\n"
    );
}

/// Each of two independent stages waits (10 s at most) for a file the other writes in a
/// shared cache mount: built one after the other, the first would fail.
const RENDEZVOUS: &str = r#"FROM busybox AS a
RUN --mount=type=cache,id=rendezvous,target=/s touch /s/a && for i in $(seq 100); do [ -e /s/b ] && exit 0; sleep 0.1; done; exit 1
RUN echo a > /a
FROM busybox AS b
RUN --mount=type=cache,id=rendezvous,target=/s touch /s/b && for i in $(seq 100); do [ -e /s/a ] && exit 0; sleep 0.1; done; exit 1
RUN echo b > /b
FROM busybox AS unused
RUN exit 1
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
"#;

#[test]
fn independent_stages_build_concurrently() {
    let host = Host::new();
    let dir = context(&host, &[("Dockerfile", RENDEZVOUS)]);
    build_ok(&host, &dir, &["-t", "both:1"]);
    assert_eq!(host.run_ok(&["both:1", "cat", "/a", "/b"]), "a\nb\n");

    // A failing stage stops the build with its own error, not the others'.
    let dir = context(
        &host,
        &[(
            "Dockerfile",
            "FROM busybox AS slow\nRUN sleep 1\nRUN echo never\nFROM busybox AS bad\nRUN exit 7\nFROM busybox\nCOPY --from=slow /etc/passwd /p\nCOPY --from=bad /etc/passwd /q\n",
        )],
    );
    let out = build(&host, &dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("exit code: 7"), "{stderr}");
    assert!(
        !stderr.contains("] RUN echo never"),
        "the other stage stopped: {stderr}"
    );
}
