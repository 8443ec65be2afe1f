//! `berth build` on busybox: multi-stage builds with `COPY --from`, `--target`, build args,
//! `.dockerignore`, the image config Docker's build would write, the step cache (hits, and
//! misses from a changed file on), failures reported with their step and line, and `ADD`:
//! archives unpacked, URLs downloaded from a loopback server.

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
    // Metadata steps add no layer: busybox's one, then WORKDIR (its directory, as
    // BuildKit), COPY, RUN, WORKDIR, COPY, COPY, RUN.
    assert_eq!(
        doc[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        8,
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

    // rmi takes the tag away; the step cache still has the image for the next build.
    let removed = host.ok(&["rmi", "c:1"]);
    assert!(removed.contains("Untagged: c:1"), "{removed}");
    let stderr = build_ok(&host, &dir, &["-t", "c:1"]);
    assert_eq!(stderr.matches("CACHED").count(), 4, "{stderr}");

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

    // A missing base is pulled; from a registry that is not there, the step says so (a
    // loopback address: tests reach nothing outside this machine).
    let dir = context(&host, &[("Dockerfile", "FROM 127.0.0.1:1/nosuchimage:1\n")]);
    let stderr = String::from_utf8_lossy(&build(&host, &dir, &[]).stderr).into_owned();
    assert!(
        stderr.contains("pulling 127.0.0.1:1/nosuchimage:1") && stderr.contains("refused"),
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
        5,
        "the tools stage's RUN, WORKDIR and the cache steps: {stderr}"
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

/// A tar of `(name, type, mode, body or link target)`, owned by 1234:5678, mtime 1600000000.
fn tar_of(members: &[(&str, tar::EntryType, u32, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, kind, mode, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_600_000_000);
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                h.set_size(0);
                tar.append_link(&mut h, name, data).unwrap();
            }
            _ => {
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, name, data.as_bytes()).unwrap();
            }
        }
    }
    tar.into_inner().unwrap()
}

/// A raw tar whose one member has `name` exactly as given (`tar::Builder` refuses `..`).
fn hostile_tar(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(4);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(b"evil");
    out.resize(512 * 4, 0);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A loopback HTTP server for `ADD <url>`: `/files/<name>` serves `files[name]` with a
/// `Last-Modified`, anything else is a 404. It answers at most 32 requests and stops after
/// two minutes; returns its base URL and the number of requests answered so far.
fn serve_files(
    files: Vec<(&'static str, Vec<u8>)>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while count.load(Ordering::SeqCst) < 32 && std::time::Instant::now() < deadline {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let found = files
                .iter()
                .find(|(name, _)| path == format!("/files/{name}"));
            let mut out = &stream;
            let _ = match found {
                Some((_, body)) => write!(
                    out,
                    "HTTP/1.1 200 OK\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .and_then(|()| out.write_all(body)),
                None => write!(
                    out,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            };
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (base, served)
}

/// `berth build` with no proxy from the environment: the test's traffic stays on loopback.
fn build_local(host: &Host, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut command = host.berth.command();
    command.arg("build").args(extra).arg(dir);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    command
        .env("NO_PROXY", "127.0.0.1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn add_unpacks_local_archives_and_downloads_urls() {
    use std::sync::atomic::Ordering;
    use tar::EntryType as T;
    let host = Host::new();
    let app = tar_of(&[
        ("bin", T::Directory, 0o750, ""),
        ("bin/run.sh", T::Regular, 0o755, "echo hi\n"),
        ("bin/hard", T::Link, 0o755, "bin/run.sh"),
        ("lib/link", T::Symlink, 0o777, "../bin/run.sh"),
    ]);
    let data = {
        use std::io::Write;
        let plain = tar_of(&[("sub/b.csv", T::Regular, 0o640, "1,2\n")]);
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let owned = {
        use std::io::Write;
        let plain = tar_of(&[("f.txt", T::Regular, 0o600, "mine\n")]);
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    let tool = b"tool v1\n".to_vec();
    let tool_digest = common::sha256_hex(&tool);
    let (base, served) = serve_files(vec![("tool.txt", tool.clone()), ("app.tar.gz", gzip(&app))]);
    let dockerfile = format!(
        "FROM busybox
ADD app.tar.gz /opt/app/
ADD data.bin /opt/data
ADD --chown=1000:1000 owned.tar.bz2 /opt/owned/
ADD notes.txt.gz plain.txt /opt/files/
ADD {base}/files/tool.txt {base}/files/app.tar.gz /opt/dl/
ADD --chmod=755 --chown=10:20 {base}/files/tool.txt /opt/tool
ADD --checksum=sha256:{tool_digest} {base}/files/tool.txt /opt/checked.txt
"
    );
    let dir = context(
        &host,
        &[("Dockerfile", &dockerfile), ("plain.txt", "plain\n")],
    );
    std::fs::write(dir.join("app.tar.gz"), gzip(&app)).unwrap();
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    std::fs::write(dir.join("owned.tar.bz2"), &owned).unwrap();
    std::fs::write(dir.join("notes.txt.gz"), gzip(b"notes\n")).unwrap();

    let out = build_local(&host, &dir, &["-t", "add:1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build failed:\n{stderr}");
    let script = "cd /opt
stat -c '%n %a %u:%g %Y' app/bin
stat -c '%n %a %u:%g %Y %h' app/bin/run.sh app/bin/hard
readlink app/lib/link; cat app/lib/link
stat -c '%n %a %u:%g' data data/sub/b.csv owned owned/f.txt dl/tool.txt dl/app.tar.gz tool
stat -c '%Y' dl/tool.txt
zcat files/notes.txt.gz; cat files/plain.txt checked.txt
tar -tzf dl/app.tar.gz | head -1";
    let listing = host.run_ok(&["add:1", "sh", "-c", script]);
    assert_eq!(
        listing,
        "app/bin 750 1234:5678 1600000000
app/bin/run.sh 755 1234:5678 1600000000 2
app/bin/hard 755 1234:5678 1600000000 2
../bin/run.sh
echo hi
data 755 0:0
data/sub/b.csv 640 1234:5678
owned 755 1000:1000
owned/f.txt 600 1000:1000
dl/tool.txt 600 0:0
dl/app.tar.gz 600 0:0
tool 755 10:20
1445412480
notes
plain
tool v1
bin
",
        "archives unpacked with their metadata (--chown applied), URLs downloaded as files"
    );

    // A rebuild downloads again; the same bytes keep every step cached.
    let before = served.load(Ordering::SeqCst);
    let out = build_local(&host, &dir, &["-t", "add:2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("CACHED").count(), 7, "{stderr}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        before + 4,
        "downloaded again"
    );
    assert_eq!(host.berth.image_id("add:1"), host.berth.image_id("add:2"));

    // A changed archive reruns its step.
    std::fs::write(
        dir.join("data.bin"),
        gzip(&tar_of(&[("c", T::Regular, 0o644, "")])),
    )
    .unwrap();
    let out = build_local(&host, &dir, &["-t", "add:3"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("CACHED").count(), 1, "{stderr}");

    // Failures name the step's line, the URL and the cause.
    let fails = |dockerfile: String, files: &[(&str, &[u8])]| {
        let dir = context(&host, &[("Dockerfile", &dockerfile)]);
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let out = build_local(&host, &dir, &[]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = fails(
        format!(
            "FROM busybox\nADD --checksum=sha256:{} {base}/files/tool.txt /x\n",
            "0".repeat(64)
        ),
        &[],
    );
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "digest mismatch for {base}/files/tool.txt: sha256:{tool_digest} (expected: sha256:{})",
            "0".repeat(64)
        )),
        "{stderr}"
    );
    let stderr = fails(
        format!("FROM busybox\nENV A=b\nADD {base}/files/missing.txt /x\n"),
        &[],
    );
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{base}/files/missing.txt: the server answered 404 Not Found"
        )),
        "{stderr}"
    );
    let stderr = fails(
        "FROM busybox\nADD evil.tar /x/\n".into(),
        &[("evil.tar", &hostile_tar("../../etc/evil"))],
    );
    assert!(stderr.contains("Dockerfile:2"), "{stderr}");
    assert!(stderr.contains("outside the destination"), "{stderr}");
    let stderr = fails(
        "FROM busybox\nADD --checksum=sha256:00 plain.txt /x\n".into(),
        &[("plain.txt", b"plain\n")],
    );
    assert!(stderr.contains("non-HTTP(S) sources"), "{stderr}");
}

#[test]
fn copy_keeps_the_directories_it_writes_into() {
    let host = Host::new();
    let dir = context(
        &host,
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN mkdir -p /own/sub && chown -R 5:5 /own && chmod 700 /own/sub\nCOPY f.txt /tmp/\nCOPY f.txt /own/sub/\nCOPY --chown=1000:1000 f.txt /dst/\nCOPY f.txt nomatch* /dst/second.txt\nUSER 1234\nWORKDIR /wd/2\nRUN touch here\n",
            ),
            ("f.txt", "f\n"),
        ],
    );
    build_ok(&host, &dir, &["-t", "dirs:1"]);
    let modes = host.run_ok(&[
        "dirs:1",
        "stat",
        "-c",
        "%n %a %u:%g",
        "/tmp",
        "/own",
        "/own/sub",
        "/dst",
        "/dst/second.txt",
    ]);
    assert_eq!(
        modes,
        "/tmp 1777 0:0\n/own 755 5:5\n/own/sub 700 5:5\n/dst 755 1000:1000\n/dst/second.txt 644 0:0\n"
    );
    // WORKDIR makes its directory, owned by the USER in effect, who can write there.
    let wd = host.run_ok(&[
        "dirs:1",
        "stat",
        "-c",
        "%n %u:%g",
        "/wd",
        "/wd/2",
        "/wd/2/here",
    ]);
    assert_eq!(wd, "/wd 1234:1234\n/wd/2 1234:1234\n/wd/2/here 1234:0\n");
}

#[test]
fn a_symlink_does_not_bring_in_what_dockerignore_excludes() {
    let host = Host::new();
    let dir = context(
        &host,
        &[
            ("Dockerfile", "FROM busybox\nCOPY link /secret\n"),
            ("secret.env", "TOKEN=1\n"),
            ("private/key.pem", "key\n"),
            (".dockerignore", "secret.env\nprivate\n"),
        ],
    );
    std::os::unix::fs::symlink("secret.env", dir.join("link")).unwrap();
    std::os::unix::fs::symlink("private", dir.join("linkdir")).unwrap();
    let stderr = String::from_utf8_lossy(&build(&host, &dir, &[]).stderr).into_owned();
    assert!(stderr.contains("\"/link\": not found"), "{stderr}");
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nCOPY linkdir /keys\n").unwrap();
    let stderr = String::from_utf8_lossy(&build(&host, &dir, &[]).stderr).into_owned();
    assert!(stderr.contains("\"/linkdir\": not found"), "{stderr}");
}
