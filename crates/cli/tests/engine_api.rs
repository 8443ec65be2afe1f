//! `berth serve` driven by clients we did not write: the docker CLI on this machine (28.x)
//! over the Engine API socket, and raw HTTP for what the CLI hides (status codes, error
//! bodies, version negotiation).

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::{api::ApiServer, eventually, host::Host, json, unix_now};

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_negotiation_and_error_bodies() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    assert_eq!(
        api.docker_ok(&[
            "version",
            "--format",
            "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}"
        ])
        .trim(),
        "1.50 1.41"
    );
    let (status, body) = api.http("GET", "/_ping", None);
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, body) = api.http("HEAD", "/v1.45/_ping", None);
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, body) = api.http("GET", "/v1.40/version", None);
    assert_eq!(status, 400);
    assert!(
        json(&body)["message"].as_str().unwrap().contains("too old"),
        "{body}"
    );
    let (status, body) = api.http("GET", "/v1.51/version", None);
    assert_eq!(status, 400);
    assert!(
        json(&body)["message"].as_str().unwrap().contains("too new"),
        "{body}"
    );
    let (status, body) = api.http("GET", "/v1.50/nothing/here", None);
    assert_eq!(
        (status, json(&body)["message"].as_str()),
        (404, Some("page not found"))
    );
    let (status, body) = api.http("GET", "/v1.50/containers/nope/json", None);
    assert_eq!(
        (status, json(&body)["message"].as_str()),
        (404, Some("No such container: nope"))
    );
    let (status, body) = api.http("POST", "/v1.50/containers/create", Some("{not json"));
    assert_eq!(status, 400, "{body}");
    // What berth cannot do yet is refused, not silently left out.
    let out = api.docker(&[
        "run",
        "--rm",
        "--sysctl",
        "net.core.somaxconn=1024",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out)
            .1
            .contains("HostConfig.Sysctls is not supported by berth yet"),
        "{:?}",
        text(&out)
    );
    let info = json(&api.http("GET", "/info", None).1);
    assert_eq!(info["Images"], 1);
    assert_eq!(info["OSType"], "linux");
}

#[test]
fn docker_run_rm_passes_output_and_exit_codes() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let out = api.docker(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(text(&out).0, "hi\n", "{:?}", text(&out));
    assert_eq!(out.status.code(), Some(0));
    let out = api.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out), ("out\n".to_string(), "err\n".to_string()));
    // Docker's CLI takes 127 from the daemon's message, as it does with dockerd.
    let out = api.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("executable file not found"),
        "{:?}",
        text(&out)
    );
    // --rm left nothing, also for the container that could not start.
    eventually(10, "the --rm containers are removed", || {
        host.berth.ok(&["ps", "-aq"]).trim().is_empty()
    });
    // Piped input reaches the container and its end closes the container's stdin.
    let out = api.docker_stdin(
        &["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"],
        b"piped\n",
    );
    assert_eq!(text(&out).0, "piped\ndone\n", "{:?}", text(&out));
}

#[test]
fn docker_run_detached_ps_logs_stop_rm() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let id = api
        .docker_ok(&[
            "run", "-d", "--name", "web", "--label", "role=test", "busybox", "sh", "-c",
            "echo started; echo warn >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    // The docker CLI's ps, berth's ps and the record agree.
    let ps = api.docker_ok(&[
        "ps",
        "--format",
        "{{.ID}} {{.Names}} {{.Image}} {{.Status}} {{.Labels}}",
    ]);
    assert!(
        ps.starts_with(&format!("{} web busybox Up ", &id[..12])),
        "{ps}"
    );
    assert!(ps.trim_end().ends_with("role=test"), "{ps}");
    assert_eq!(
        api.docker_ok(&["ps", "-q", "--filter", "label=role=test"])
            .trim(),
        &id[..12]
    );
    assert!(
        api.docker_ok(&["ps", "-q", "--filter", "label=role=other"])
            .is_empty()
    );
    assert_eq!(host.berth.ok(&["ps", "-q"]).trim(), &id[..12]);
    assert_eq!(
        api.docker_ok(&[
            "inspect",
            "--format",
            "{{.Name}} {{.State.Status}} {{.Config.Labels.role}}",
            "web"
        ])
        .trim(),
        "/web running test"
    );
    eventually(10, "the container's output is logged", || {
        api.docker_ok(&["logs", "web"]).contains("started")
    });
    let out = api.docker(&["logs", "web"]);
    assert_eq!(text(&out), ("started\n".to_string(), "warn\n".to_string()));
    // logs -f follows until the container ends (stop sends TERM, the trap says bye).
    let follow = api
        .docker_command()
        .args(["logs", "-f", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker logs -f");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.docker_ok(&["stop", "web"]).trim(), "web");
    let followed = follow.wait_with_output().expect("logs -f ends");
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "started\nbye\n");
    let ps = api.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Exited (0) "), "{ps}");
    assert!(api.docker_ok(&["ps", "-q"]).is_empty());
    // stop of a stopped container is no error (304), kill of one is.
    assert_eq!(api.docker_ok(&["stop", "web"]).trim(), "web");
    let out = api.docker(&["kill", "web"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
    // restart runs it again, rm -f removes it running.
    api.docker_ok(&["restart", "web"]);
    assert!(
        api.docker_ok(&["ps", "--format", "{{.Status}}"])
            .starts_with("Up ")
    );
    let out = api.docker(&["rm", "web"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains("container is running"),
        "{:?}",
        text(&out)
    );
    assert_eq!(api.docker_ok(&["rm", "-f", "web"]).trim(), "web");
    assert!(host.berth.ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn docker_run_with_a_tty() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    // -it is raw, through the container's pty.
    let out = api.docker_in_pty("docker run -it --rm busybox sh -c 'tty; exit 5'");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{shown}");
    assert!(shown.contains("/dev/pts/0"), "{shown}");
}

#[test]
fn docker_run_with_a_port_and_a_volume() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    common::require_tool("curl");
    let www = host.berth.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "served by busybox\n").unwrap();
    let port = 20000 + (std::process::id() % 20000) as u16;
    let id = api
        .docker_ok(&[
            "run",
            "-d",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "-v",
            &format!("{}:/www:ro", www.display()),
            "-v",
            "data:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/file; httpd -f -h /www",
        ])
        .trim()
        .to_string();
    let ports = api.docker_ok(&["port", &id]);
    assert_eq!(ports.trim(), format!("80/tcp -> 127.0.0.1:{port}"));
    let mut body = String::new();
    eventually(10, "httpd answers on the published port", || {
        let out = Command::new("curl")
            .args(["-s", "--noproxy", "*", &format!("http://127.0.0.1:{port}/")])
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        body == "served by busybox\n"
    });
    api.docker_ok(&["rm", "-f", &id]);
    // The named volume outlives the container.
    let out = api.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        "busybox",
        "cat",
        "/data/file",
    ]);
    assert_eq!(text(&out).0, "kept\n", "{:?}", text(&out));
    assert!(host.berth.ok(&["volume", "ls", "-q"]).contains("data"));
}

#[test]
fn docker_images_and_inspect_match_berth() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let format = "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}";
    assert_eq!(
        api.docker_ok(&["images", "--format", format]),
        host.berth.ok(&["images", "--format", format])
    );
    let format = "{{.Id}} {{.Os}} {{json .Config.Cmd}} {{.RepoTags}}";
    assert_eq!(
        api.docker_ok(&["image", "inspect", "--format", format, "busybox"]),
        host.berth
            .ok(&["image", "inspect", "--format", format, "busybox"])
    );
    // Daemon-side checks answer the docker CLI as dockerd's do.
    let out = api.docker(&["run", "--rm", "-m", "4m", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out).1.contains("Minimum memory limit allowed is 6MB"),
        "{:?}",
        text(&out)
    );
    let out = api.docker(&["inspect", "no-such-thing"]);
    assert!(!out.status.success());
}

#[test]
fn docker_pulls_from_a_local_registry() {
    let registry = common::registry_server::BerthRegistry::start();
    let source = Host::new();
    let image = registry.image("tools/busybox:1");
    source.berth.ok(&["tag", "busybox", &image]);
    source.berth.ok(&["push", &image]);

    let empty = common::Berth::new();
    let api = ApiServer::start(&empty);
    let out = api.docker(&["pull", &image]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1: Pulling from tools/busybox"), "{stdout}");
    assert!(stdout.contains("Pull complete"), "{stdout}");
    assert!(
        stdout.contains(&format!("Status: Downloaded newer image for {image}")),
        "{stdout}"
    );
    assert_eq!(empty.image_id(&image), source.berth.image_id("busybox"));
    // Pulled again: up to date.
    let again = api.docker_ok(&["pull", &image]);
    assert!(again.contains("Status: Image is up to date"), "{again}");
    // `docker run` of an image the root lacks pulls it first, through the API.
    empty.ok(&["rmi", &image]);
    let out = api.docker(&["run", "--rm", &image, "echo", "pulled and ran"]);
    let (stdout, stderr) = text(&out);
    assert!(stdout.ends_with("pulled and ran\n"), "{stdout}{stderr}");
    assert!(stderr.contains("Unable to find image"), "{stderr}");
    // A repository the registry lacks: the CLI fails with the registry's error.
    let out = api.docker(&["pull", &registry.image("tools/nope:1")]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not found"), "{:?}", text(&out));
}

#[test]
fn docker_exec_output_codes_input_detach_and_tty() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    api.docker_ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);

    let out = api.docker(&["exec", "web", "sh", "-c", "echo out; echo err >&2; exit 4"]);
    assert_eq!(text(&out), ("out\n".into(), "err\n".into()));
    assert_eq!(out.status.code(), Some(4));

    let shown = api.docker_ok(&[
        "exec",
        "-e",
        "A=1",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "web",
        "sh",
        "-c",
        "echo $A $(pwd) $(id -u):$(id -g)",
    ]);
    assert_eq!(shown, "1 /tmp 1000:1000\n");

    // Input ends: so does the exec's stdin, and cat.
    let out = api.docker_stdin(&["exec", "-i", "web", "cat"], b"piped\n");
    assert_eq!(text(&out).0, "piped\n", "{:?}", text(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = api.docker(&["exec", "web", "no-such-command"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("no-such-command"),
        "{stdout}{stderr}"
    );

    api.docker_ok(&[
        "exec",
        "-d",
        "web",
        "sh",
        "-c",
        "sleep 0.2; echo done > /tmp/marker",
    ]);
    eventually(10, "the detached exec's file", || {
        api.docker(&["exec", "web", "cat", "/tmp/marker"]).stdout == b"done\n"
    });

    let out = api.docker_in_pty("docker exec -it web sh -c 'tty; exit 6'");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{shown}");
    assert!(shown.contains("/dev/pts/"), "{shown}");

    // The instance as the API keeps it, and what it refuses.
    let (status, body) = api.http(
        "POST",
        "/containers/web/exec",
        Some(r#"{"Cmd":["sh","-c","exit 9"],"AttachStdout":true}"#),
    );
    assert_eq!(status, 201, "{body}");
    let exec_id = json(&body)["Id"].as_str().unwrap().to_string();
    let (status, body) = api.http(
        "POST",
        &format!("/exec/{exec_id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(status, 200, "{body}");
    eventually(10, "the detached exec's exit code", || {
        json(&api.http("GET", &format!("/exec/{exec_id}/json"), None).1)["ExitCode"] == 9
    });
    let inspect = json(&api.http("GET", &format!("/exec/{exec_id}/json"), None).1);
    assert_eq!(inspect["Running"], false);
    assert_eq!(inspect["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(
        inspect["ProcessConfig"]["arguments"],
        json(r#"["-c","exit 9"]"#)
    );
    let (status, body) = api.http(
        "POST",
        &format!("/exec/{exec_id}/start"),
        Some(r#"{"Detach":true}"#),
    );
    assert_eq!(status, 409, "{body}");
    let (status, body) = api.http("GET", "/exec/nope/json", None);
    assert_eq!(
        (status, json(&body)["message"].as_str()),
        (404, Some("No such exec instance: nope"))
    );
    let (status, _) = api.http("POST", "/containers/web/exec", Some(r#"{"Cmd":[]}"#));
    assert_eq!(status, 400);

    api.docker_ok(&["stop", "-t", "1", "web"]);
    let out = api.docker(&["exec", "web", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
}

#[test]
fn docker_cp_both_ways_running_and_stopped() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    api.docker_ok(&["run", "-d", "--name", "web", "busybox", "sleep", "1000"]);
    api.docker_ok(&[
        "exec", "web", "sh", "-c",
        "mkdir -p /srv /tmp/dir/sub && echo a > /tmp/dir/a.txt && echo b > /tmp/dir/sub/b && ln -s a.txt /tmp/dir/ln",
    ]);
    let local = tempfile::tempdir().unwrap();
    let at = |p: &str| local.path().join(p);
    let arg = |p: &str| at(p).display().to_string();

    // Out: a file into a directory, a directory's contents under a new name, a directory.
    api.docker_ok(&["cp", "web:/tmp/dir/a.txt", &arg("")]);
    assert_eq!(std::fs::read_to_string(at("a.txt")).unwrap(), "a\n");
    api.docker_ok(&["cp", "web:/tmp/dir/.", &arg("contents")]);
    assert_eq!(
        std::fs::read_to_string(at("contents/sub/b")).unwrap(),
        "b\n"
    );
    assert_eq!(
        std::fs::read_link(at("contents/ln")).unwrap(),
        std::path::Path::new("a.txt")
    );
    api.docker_ok(&["cp", "web:/tmp/dir", &arg("")]);
    assert_eq!(std::fs::read_to_string(at("dir/a.txt")).unwrap(), "a\n");

    // In: a local directory, and a tar stream on stdin.
    std::fs::create_dir_all(at("up/deep")).unwrap();
    std::fs::write(at("up/deep/f"), "uploaded\n").unwrap();
    api.docker_ok(&["cp", &arg("up"), "web:/tmp/"]);
    let shown = api.docker_ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "cat /tmp/up/deep/f; stat -c %u:%g /tmp/up/deep/f",
    ]);
    assert_eq!(shown, "uploaded\n0:0\n");
    let tar = Command::new("tar")
        .args(["-C", &arg("up"), "-cf", "-", "deep"])
        .output()
        .unwrap()
        .stdout;
    let out = api.docker_stdin(&["cp", "-", "web:/srv"], &tar);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        api.docker_ok(&["exec", "web", "cat", "/srv/deep/f"]),
        "uploaded\n"
    );

    // Errors as dockerd words them.
    let out = api.docker(&["cp", "web:/nope", &arg("x")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("Could not find the file /nope in container web"),
        "{:?}",
        text(&out)
    );
    let (status, body) = api.http("HEAD", "/containers/web/archive?path=/tmp/dir/ln", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.http(
        "PUT",
        "/containers/web/archive?path=/tmp/dir/a.txt",
        Some(""),
    );
    assert_eq!(
        (status, json(&body)["message"].as_str()),
        (400, Some("extraction point is not a directory"))
    );

    // A stopped container: in and out through its filesystem.
    api.docker_ok(&["stop", "-t", "1", "web"]);
    api.docker_ok(&["cp", &arg("a.txt"), "web:/srv/after-stop.txt"]);
    api.docker_ok(&["cp", "web:/srv/after-stop.txt", &arg("back.txt")]);
    assert_eq!(std::fs::read_to_string(at("back.txt")).unwrap(), "a\n");
    api.docker_ok(&["start", "web"]);
    assert_eq!(
        api.docker_ok(&["exec", "web", "cat", "/srv/after-stop.txt"]),
        "a\n"
    );
    api.docker_ok(&["rm", "-f", "web"]);
}

#[test]
fn docker_volume_and_network_commands() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    assert_eq!(
        api.docker_ok(&["volume", "create", "--label", "team=ml", "data"]),
        "data\n"
    );
    api.docker_ok(&["volume", "create", "scratch"]);
    assert_eq!(
        api.docker_ok(&["volume", "ls", "-q", "--filter", "label=team=ml"]),
        "data\n"
    );
    // The same table as berth's own command prints.
    assert_eq!(
        api.docker_ok(&["volume", "ls"]),
        host.berth.ok(&["volume", "ls"])
    );
    assert_eq!(
        api.docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]),
        host.berth
            .ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"])
    );

    let id = api.docker_ok(&["network", "create", "--label", "team=ml", "appnet"]);
    assert_eq!(id.trim().len(), 64, "{id}");
    let out = api.docker(&["network", "create", "appnet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("already exists"), "{:?}", text(&out));
    assert_eq!(
        api.docker_ok(&[
            "network",
            "ls",
            "--filter",
            "label=team=ml",
            "--format",
            "{{.Name}} {{.Driver}}"
        ]),
        "appnet bridge\n"
    );
    assert_eq!(
        api.docker_ok(&["network", "ls"]),
        host.berth.ok(&["network", "ls"])
    );

    // A service on the network with the volume; another container reaches it by name.
    api.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "appnet",
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; exec sleep 1000",
    ]);
    let out = api.docker(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "srv",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    api.docker_ok(&["network", "create", "side"]);
    api.docker_ok(&["network", "connect", "--alias", "api", "side", "srv"]);
    assert_eq!(
        api.docker_ok(&["network", "inspect", "-f", "{{len .Containers}}", "side"]),
        "1\n"
    );
    api.docker_ok(&["network", "disconnect", "side", "srv"]);
    assert_eq!(
        api.docker_ok(&["network", "inspect", "-f", "{{len .Containers}}", "side"]),
        "0\n"
    );
    let out = api.docker(&["volume", "rm", "data"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("volume is in use"),
        "{:?}",
        text(&out)
    );

    api.docker_ok(&["rm", "-f", "srv"]);
    assert_eq!(
        api.docker_ok(&[
            "run",
            "--rm",
            "-v",
            "data:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "kept\n"
    );
    api.docker_ok(&["network", "rm", "appnet"]);
    assert_eq!(
        api.docker_ok(&["network", "prune", "-f"]),
        "Deleted Networks:\nside\n\n"
    );
    api.docker_ok(&["volume", "rm", "data"]);
    let pruned = api.docker_ok(&["volume", "prune", "-a", "-f"]);
    assert!(pruned.contains("scratch"), "{pruned}");
    assert_eq!(api.docker_ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn docker_image_commands_match_berth() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    api.docker_ok(&["tag", "busybox", "tools/bb:1"]);
    api.docker_ok(&["image", "tag", "busybox", "tools/bb:2"]);
    let format = "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}";
    let listed = api.docker_ok(&["images", "--format", format]);
    // The docker CLI lists one image's repositories in Go's map order (random, against
    // dockerd too): the lines are compared as a set.
    let sorted = |text: &str| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    assert_eq!(
        sorted(&listed),
        sorted(&host.berth.ok(&["images", "--format", format]))
    );
    assert!(listed.contains("tools/bb:1 ") && listed.contains("tools/bb:2 "));
    // Filters run daemon-side: reference patterns and dangling.
    for filter in [
        "reference=tools/*",
        "reference=*:latest",
        "dangling=false",
        "dangling=true",
    ] {
        assert_eq!(
            sorted(&api.docker_ok(&["images", "--filter", filter, "--format", format])),
            sorted(
                &host
                    .berth
                    .ok(&["images", "--filter", filter, "--format", format])
            ),
            "{filter}"
        );
    }
    let out = api.docker(&["images", "--filter", "nope=1"]);
    assert!(
        text(&out).1.contains("invalid filter 'nope'"),
        "{:?}",
        text(&out)
    );
    let history = "{{.ID}} {{.CreatedBy}} {{.Size}} {{.Comment}}";
    assert_eq!(
        api.docker_ok(&["history", "--format", history, "tools/bb:1"]),
        host.berth
            .ok(&["history", "--format", history, "tools/bb:1"])
    );
    // rmi: untag, then refuse an image a container uses, and say what is missing.
    assert_eq!(
        api.docker_ok(&["rmi", "tools/bb:1"]),
        "Untagged: tools/bb:1\n"
    );
    api.docker_ok(&["create", "--name", "holder", "tools/bb:2"]);
    // Another tag remains, so tools/bb:2 goes; busybox is the last name of a used image.
    let out = api.docker(&["rmi", "tools/bb:2", "busybox"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout, "Untagged: tools/bb:2\n");
    assert!(
        stderr.contains("unable to remove repository reference \"busybox\" (must force)"),
        "{stderr}"
    );
    api.docker_ok(&["tag", "busybox", "tools/bb:2"]);
    let out = api.docker(&["rmi", "no-such-image"]);
    assert!(
        text(&out).1.contains("No such image: no-such-image"),
        "{:?}",
        text(&out)
    );
    api.docker_ok(&["rm", "holder"]);

    // save and load round-trip through the API, as a file and as a stream.
    let archive = host.berth.dir.path().join("saved.tar");
    api.docker_ok(&["save", "-o", archive.to_str().unwrap(), "tools/bb:2"]);
    assert_eq!(
        api.docker_ok(&["rmi", "tools/bb:2"]),
        "Untagged: tools/bb:2\n"
    );
    assert_eq!(
        api.docker_ok(&["load", "-i", archive.to_str().unwrap()]),
        "Loaded image: tools/bb:2\n"
    );
    let streamed = api
        .docker_command()
        .args(["save", "busybox"])
        .output()
        .unwrap();
    assert!(streamed.status.success());
    assert!(streamed.stdout.len() > 1_000_000, "a tar of busybox");
    api.docker_ok(&["rmi", "tools/bb:2", "busybox"]);
    let out = api.docker_stdin(&["load"], &streamed.stdout);
    assert_eq!(
        text(&out).0,
        "Loaded image: busybox:latest\n",
        "{:?}",
        text(&out)
    );
    let out = api.docker_stdin(&["load"], b"not a tar");
    assert!(!out.status.success());
    assert_eq!(
        host.berth.ok(&["images", "--format", "{{.Repository}}"]),
        "busybox\n",
        "a failed load leaves the store as it was"
    );

    // prune: a dangling image goes; the tagged one stays unless -a.
    let dangling = host
        .berth
        .ok(&["commit", host.berth.ok(&["create", "busybox"]).trim()])
        .trim()
        .to_string();
    host.berth.ok(&["container", "prune", "-f"]);
    let pruned = api.docker_ok(&["image", "prune", "-f"]);
    assert!(pruned.contains(&format!("deleted: {dangling}")), "{pruned}");
    assert!(pruned.contains("Total reclaimed space:"), "{pruned}");
    assert_eq!(
        host.berth.ok(&["images", "-q"]).lines().count(),
        1,
        "busybox stays"
    );
}

#[test]
fn docker_push_and_login_against_a_registry_with_auth() {
    let host = Host::new();
    let htpasswd = host.berth.dir.path().join("htpasswd");
    let made = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .expect("htpasswd");
    std::fs::write(&htpasswd, made.stdout).unwrap();
    let registry = common::registry_server::BerthRegistry::start_with(&[
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ]);
    let api = ApiServer::start(&host.berth);
    let image = registry.image("team/bb:v1");
    api.docker_ok(&["tag", "busybox", &image]);
    // Without credentials the registry refuses, and the CLI says so.
    let out = api.docker(&["push", &image]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("authentication required"),
        "{:?}",
        text(&out)
    );
    // `docker login` checks through `/auth`; a wrong password fails there.
    let server = image.split('/').next().unwrap().to_string();
    let out = api.docker_stdin(
        &["login", "-u", "alice", "--password-stdin", &server],
        b"wrong\n",
    );
    assert!(!out.status.success(), "{:?}", text(&out));
    let out = api.docker_stdin(
        &["login", "-u", "alice", "--password-stdin", &server],
        b"s3cret\n",
    );
    assert!(text(&out).0.contains("Login Succeeded"), "{:?}", text(&out));
    // The CLI now sends the credential with each push (X-Registry-Auth).
    let out = api.docker(&["push", &image]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("The push refers to repository"), "{stdout}");
    let digest_line = stdout.lines().last().unwrap();
    assert!(digest_line.starts_with("v1: digest: sha256:"), "{stdout}");
    // Pulled back with the same credential, the image is the one pushed.
    api.docker_ok(&["rmi", &image]);
    let out = api.docker(&["pull", &image]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(host.berth.image_id(&image), host.berth.image_id("busybox"));
}

#[test]
fn docker_build_through_the_api() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let context = host.berth.dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nARG GREETING=hello\nLABEL team=ml\nCOPY . /app/\nRUN echo \"$GREETING from the build\" > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    )
    .unwrap();
    std::fs::write(context.join("data.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(context.join("secret.key"), "do not send").unwrap();
    std::fs::write(context.join(".dockerignore"), "*.key\n").unwrap();
    let dir = context.to_str().unwrap();
    let out = api.docker(&["build", "-t", "ml/app:1", "--build-arg", "GREETING=hi", dir]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("RUN echo"), "the steps are shown: {stdout}");
    assert!(stdout.contains("Successfully tagged ml/app:1"), "{stdout}");
    assert_eq!(
        api.docker_ok(&["run", "--rm", "ml/app:1"]),
        "hi from the build\n"
    );
    assert_eq!(
        api.docker_ok(&["run", "--rm", "ml/app:1", "ls", "/app"]),
        "Dockerfile\ndata.csv\n",
        ".dockerignore kept secret.key out of the context"
    );
    assert_eq!(
        api.docker_ok(&["inspect", "-f", "{{.Config.Labels.team}}", "ml/app:1"]),
        "ml\n"
    );
    // -q prints the ID alone; the cache makes the same build the same image.
    let quiet = api.docker_ok(&["build", "-q", "--build-arg", "GREETING=hi", dir]);
    assert_eq!(quiet.trim(), host.berth.image_id("ml/app:1"));
    // A Dockerfile by another name, and from stdin.
    std::fs::write(
        context.join("Failing.Dockerfile"),
        "FROM busybox\nRUN exit 3\n",
    )
    .unwrap();
    let out = api.docker(&[
        "build",
        "-f",
        context.join("Failing.Dockerfile").to_str().unwrap(),
        dir,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("exit code: 3"), "{:?}", text(&out));
    let out = api.docker_stdin(
        &["build", "-t", "from-stdin", "-"],
        b"FROM busybox\nENV X=1\n",
    );
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(
        api.docker_ok(&["run", "--rm", "from-stdin", "sh", "-c", "echo $X"]),
        "1\n"
    );
    let out = api.docker_stdin(&["build", "-"], b"FROM busybox\nNOPE x\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("unknown instruction: NOPE"),
        "{:?}",
        text(&out)
    );
    let contexts = host.berth.root().join("build/tmp");
    assert!(
        std::fs::read_dir(&contexts).map_or(true, |mut d| d.next().is_none()),
        "no context is left behind in {}",
        contexts.display()
    );
}

#[test]
fn docker_container_extras_diff_pause_rename_commit_export_prune() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    api.docker_ok(&[
        "run",
        "-d",
        "--name",
        "extras",
        "busybox",
        "sh",
        "-c",
        "echo x > /new; rm /bin/ls; exec sleep 100",
    ]);
    eventually(10, "the container wrote /new", || {
        api.docker_ok(&["diff", "extras"]).contains("A /new")
    });
    assert_eq!(
        api.docker_ok(&["diff", "extras"]),
        host.berth.ok(&["diff", "extras"])
    );
    api.docker_ok(&["pause", "extras"]);
    assert!(
        api.docker_ok(&["ps", "--format", "{{.Status}}"])
            .contains("(Paused)"),
        "paused"
    );
    let out = api.docker(&["pause", "extras"]);
    assert!(!out.status.success());
    api.docker_ok(&["unpause", "extras"]);
    api.docker_ok(&["rename", "extras", "renamed"]);
    assert_eq!(
        api.docker_ok(&["ps", "--format", "{{.Names}}"]),
        "renamed\n"
    );
    let id = api.docker_ok(&[
        "commit", "-c", "ENV Z=9", "-m", "a note", "renamed", "snap:1",
    ]);
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        api.docker_ok(&["run", "--rm", "snap:1", "sh", "-c", "cat /new; echo $Z"]),
        "x\n9\n"
    );
    let exported = api
        .docker_command()
        .args(["export", "renamed"])
        .output()
        .unwrap();
    assert!(exported.status.success());
    let names = tar_names(&exported.stdout);
    assert!(names.iter().any(|n| n == "new"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "bin/ls"),
        "deleted files are not exported"
    );
    api.docker_ok(&["rm", "-f", "renamed"]);
    api.docker_ok(&["run", "--name", "done1", "busybox", "true"]);
    api.docker_ok(&[
        "run", "--name", "done2", "--label", "keep=1", "busybox", "true",
    ]);
    let pruned = api.docker_ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(
        api.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]),
        "done2\n"
    );
}

#[test]
fn docker_top_and_stats() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    // One busy process (CPU %) and one sleeping child.
    api.docker_ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "sleep 300 & while :; do :; done",
    ]);
    let top = api.docker_ok(&["top", "busy"]);
    let mut lines = top.lines();
    let titles: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{top}");
    assert!(rows.iter().any(|r| r.ends_with("sleep 300")), "{top}");
    // The same table as berth's own `top`, options passed through to ps.
    let ours = host.berth.ok(&["top", "busy", "-o", "pid,comm"]);
    assert_eq!(api.docker_ok(&["top", "busy", "-o", "pid,comm"]), ours);
    let out = api.docker(&["top", "busy", "-o", "user=PID"]);
    assert_eq!(
        (out.status.code(), text(&out).1.as_str()),
        (
            Some(1),
            "Error response from daemon: specifying \"user=PID\" is not allowed\n"
        )
    );
    // docker stats reads CPU %, memory and its limit, and the pids from the API.
    let row = api.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
        "busy",
    ]);
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[0], "busy", "{row}");
    let cpu: f64 = fields[1].trim_end_matches('%').parse().unwrap();
    // Well below the 100% it takes alone: the tests beside it share the two CPUs.
    assert!(cpu > 10.0, "a busy loop shows its CPU: {row}");
    assert_eq!(&fields[3..], ["/", "64MiB", "2"], "{row}");
    // One-shot reading over raw HTTP: Docker's field names.
    let (status, body) = api.http("GET", "/containers/busy/stats?stream=0&one-shot=1", None);
    assert_eq!(status, 200, "{body}");
    let doc = json(&body);
    assert_eq!(doc["name"], "/busy");
    assert_eq!(doc["memory_stats"]["limit"], 64 << 20);
    assert_eq!(doc["pids_stats"]["current"], 2);
    assert!(doc["cpu_stats"]["system_cpu_usage"].as_u64().unwrap() > 0);
    assert!(doc["networks"]["eth0"]["rx_bytes"].is_u64(), "{body}");
    let (status, _) = api.http("GET", "/containers/busy/stats?stream=1&one-shot=1", None);
    assert_eq!(status, 400);
    // inspect: the running exec among ExecIDs, and the sizes with -s.
    api.docker_ok(&["exec", "-d", "busy", "sleep", "30"]);
    let execs = api.docker_ok(&["inspect", "--format", "{{len .ExecIDs}}", "busy"]);
    assert_eq!(execs.trim(), "1");
    let sizes = api.docker_ok(&["inspect", "-s", "--format", "{{.SizeRootFs}}", "busy"]);
    assert!(sizes.trim().parse::<u64>().unwrap() > 1_000_000, "{sizes}");
    api.docker_ok(&["stop", "-t", "0", "busy"]);
    let out = api.docker(&["top", "busy"]);
    assert!(text(&out).1.contains("is not running"), "{:?}", text(&out));
    // A stopped container reads as zeros, as with dockerd.
    assert_eq!(
        api.docker_ok(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.CPUPerc}} {{.MemUsage}} {{.PIDs}}",
            "busy"
        ]),
        "0.00% 0B / 0B 0\n"
    );
    let out = api.docker(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("No such container: nosuch"));
}

#[test]
fn events_stream_and_replay_through_the_api_and_the_cli() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let since = unix_now();
    // A follower sees what happens next. With `--since` it replays from there first, so
    // the events it gets do not depend on how soon it subscribed.
    let mut follower = api
        .docker_command()
        .args([
            "events",
            "--since",
            &since,
            "--filter",
            "type=volume",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    api.docker_ok(&["volume", "create", "evvol"]);
    let out = api.docker(&[
        "run", "--name", "evc", "--label", "tier=x", "busybox", "sh", "-c", "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    api.docker_ok(&["tag", "busybox", "ev:1"]);
    api.docker_ok(&["rmi", "ev:1"]);
    api.docker_ok(&["rm", "evc"]);
    host.berth.ok(&["volume", "rm", "evvol"]);
    let until = unix_now();
    let mut seen = String::new();
    let mut reader = std::io::BufReader::new(follower.stdout.take().unwrap());
    for _ in 0..2 {
        std::io::BufRead::read_line(&mut reader, &mut seen).unwrap();
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    assert_eq!(seen, "create evvol\ndestroy evvol\n");
    // Replayed: the same lines from docker (through the API) and from berth.
    let args = ["events", "--since", &since, "--until", &until];
    let theirs = api.docker_ok(&args);
    assert_eq!(theirs, host.berth.ok(&args));
    let actions: Vec<String> = theirs
        .lines()
        .map(|l| l.split(' ').skip(1).take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        actions,
        [
            "volume create",
            "container create",
            "network connect",
            "container start",
            "network disconnect",
            "container die",
            "image tag",
            "image untag",
            "container destroy",
            "volume destroy",
        ],
        "{theirs}"
    );
    assert!(
        theirs.contains("(exitCode=3, image=busybox, name=evc, tier=x)"),
        "{theirs}"
    );
    let mut filtered = args.to_vec();
    filtered.extend([
        "--filter",
        "label=tier=x",
        "--filter",
        "event=die",
        "--format",
        "json",
    ]);
    let line = api.docker_ok(&filtered);
    let doc = json(&line);
    assert_eq!(
        (
            doc["status"].as_str(),
            doc["from"].as_str(),
            doc["Actor"]["Attributes"]["name"].as_str()
        ),
        (Some("die"), Some("busybox"), Some("evc"))
    );
    let out = host.berth.run(&["events", "--filter", "colour=red"]);
    assert!(!out.status.success());
}

#[test]
fn docker_system_df_matches_berth() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    api.docker_ok(&["volume", "create", "dfvol"]);
    api.docker_ok(&[
        "run",
        "-d",
        "--name",
        "dfup",
        "-v",
        "dfvol:/d",
        "busybox",
        "sh",
        "-c",
        "echo hi > /d/f; head -c 300000 /dev/zero > /big; exec sleep 300",
    ]);
    api.docker_ok(&[
        "run",
        "--name",
        "dfdone",
        "busybox",
        "sh",
        "-c",
        "echo x > /y",
    ]);
    api.docker_ok(&["volume", "create", "dfidle"]);
    eventually(10, "the container wrote its file", || {
        host.berth.ok(&["diff", "dfup"]).contains("A /big")
    });
    let summary = api.docker_ok(&["system", "df"]);
    assert_eq!(summary, host.berth.ok(&["system", "df"]));
    let rows: Vec<Vec<&str>> = summary
        .lines()
        .skip(1)
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0][..3], ["Images", "1", "1"], "{summary}");
    assert_eq!(rows[1][..4], ["Containers", "2", "1", "300kB"], "{summary}");
    assert_eq!(rows[2][..4], ["Local Volumes", "2", "1", "3B"], "{summary}");
    // Two calls a moment apart: relative times ("1 second ago") and the column widths
    // they set are the only things allowed to differ.
    let timeless = |text: &str| {
        text.lines()
            .map(|l| {
                let line = l.split_whitespace().collect::<Vec<_>>().join(" ");
                let line = line.replace("Less than a second", "<t>");
                let mut words: Vec<&str> = line.split(' ').collect();
                for i in 0..words.len().saturating_sub(1) {
                    if words[i].parse::<u32>().is_ok()
                        && matches!(words[i + 1], "second" | "seconds")
                    {
                        words[i] = "<t>";
                        words[i + 1] = "";
                    }
                }
                words.retain(|w| !w.is_empty());
                words.join(" ")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        timeless(&api.docker_ok(&["system", "df", "-v"])),
        timeless(&host.berth.ok(&["system", "df", "-v"]))
    );
    let (status, body) = api.http("GET", "/system/df?type=volume", None);
    assert_eq!(status, 200);
    let doc = json(&body);
    assert!(doc.get("Images").is_none(), "{body}");
    let used = doc["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "dfvol")
        .unwrap();
    assert_eq!(
        used["UsageData"],
        serde_json::json!({ "Size": 3, "RefCount": 1 })
    );
    api.docker_ok(&["rm", "-f", "dfup", "dfdone"]);
}

#[test]
fn docker_health_checks_from_flags_and_from_the_dockerfile() {
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    // From the docker CLI's flags (the API's Config.Healthcheck).
    api.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flagged",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "busybox",
        "sleep",
        "100",
    ]);
    eventually(10, "healthy", || {
        api.docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", "flagged"])
            .trim()
            == "healthy"
    });
    assert!(
        api.docker_ok(&[
            "ps",
            "--filter",
            "health=healthy",
            "--format",
            "{{.Names}} {{.Status}}"
        ])
        .starts_with("flagged Up"),
    );
    // From a Dockerfile's HEALTHCHECK, failing.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"false\"]\n",
    )
    .unwrap();
    api.docker_ok(&[
        "build",
        "-q",
        "-t",
        "checked:1",
        dir.path().to_str().unwrap(),
    ]);
    api.docker_ok(&["run", "-d", "--name", "imaged", "checked:1", "sleep", "100"]);
    eventually(10, "unhealthy", || {
        api.docker_ok(&[
            "ps",
            "--filter",
            "health=unhealthy",
            "--format",
            "{{.Names}}",
        ])
        .trim()
            == "imaged"
    });
    assert_eq!(
        api.docker_ok(&[
            "inspect",
            "--format",
            "{{json .Config.Healthcheck.Test}}",
            "imaged"
        ])
        .trim(),
        r#"["CMD","false"]"#
    );
    api.docker_ok(&["rm", "-f", "flagged", "imaged"]);
}

fn tar_names(bytes: &[u8]) -> Vec<String> {
    tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// Where `scripts/install-deps.sh --peers` puts docker-py (from PyPI).
const DOCKER_PY: &str = "/var/lib/berth-tests/docker-py/bin/python";

#[test]
fn docker_compose_v1_runs_a_two_service_app() {
    common::require_tool("docker-compose");
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let port = common::registry::free_port();
    let project = host.berth.dir.path().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("docker-compose.yml"),
        format!(
            r#"version: "3.8"
services:
  web:
    image: busybox
    command: sh -c 'echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www'
    volumes:
      - site:/www
    ports:
      - "127.0.0.1:{port}:80"
    networks:
      - backend
  client:
    image: busybox
    command: sh -c 'until wget -qO- http://web/index.html; do sleep 0.2; done; exec sleep 600'
    networks:
      - backend
    depends_on:
      - web
networks:
  backend: {{}}
volumes:
  site: {{}}
"#
        ),
    )
    .unwrap();
    let compose = |args: &[&str]| api.compose_v1(&project, Some("mlapp"), args);
    let (_, stderr) = compose(&["up", "-d"]);
    assert!(
        stderr.contains("Creating network \"mlapp_backend\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("Creating volume \"mlapp_site\""),
        "{stderr}"
    );
    // The client reaches the web service by its name on the project's network.
    eventually(20, "the client fetched the page from web", || {
        compose(&["logs", "client"]).0.contains("hello-from-web")
    });
    let (ps, _) = compose(&["ps"]);
    for name in ["mlapp_web_1", "mlapp_client_1"] {
        let row = ps
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{ps}"));
        assert!(row.contains(" Up "), "{row}");
    }
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // The published port reaches the web service from the host.
    let page = Command::new("curl")
        .args([
            "-sf",
            "--noproxy",
            "*",
            &format!("http://127.0.0.1:{port}/index.html"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&page.stdout), "hello-from-web\n");
    // berth sees what compose made, by compose's labels.
    assert_eq!(
        host.berth
            .ok(&[
                "ps",
                "--filter",
                "label=com.docker.compose.project=mlapp",
                "--format",
                "{{.Names}}"
            ])
            .lines()
            .count(),
        2
    );
    compose(&["down", "-v", "-t", "1"]);
    assert_eq!(host.berth.ok(&["ps", "-aq"]), "");
    assert!(
        !host
            .berth
            .ok(&["volume", "ls", "-q"])
            .contains("mlapp_site")
    );
    assert!(!host.berth.ok(&["network", "ls"]).contains("mlapp_backend"));
}

#[test]
fn docker_py_drives_berth() {
    assert!(
        std::path::Path::new(DOCKER_PY).exists(),
        "{DOCKER_PY} is missing: run scripts/install-deps.sh --peers"
    );
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let port = common::registry::free_port();
    let script = format!(
        r#"
import io, sys, time, urllib.request
import docker
c = docker.DockerClient(base_url="unix://{socket}")
assert c.ping()
assert c.version()["ApiVersion"] == "1.50"
# run, with output and an exit code
assert c.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
try:
    c.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    sys.exit("a failing container raised nothing")
except docker.errors.ContainerError as e:
    assert e.exit_status == 3, e
# a detached container: logs, exec, stop, wait
ct = c.containers.run("busybox", ["sh", "-c", "echo started; exec sleep 60"], detach=True,
                      name="py1", environment={{"A": "1"}})
for _ in range(100):
    if b"started" in ct.logs():
        break
    time.sleep(0.1)
ct.reload()
assert ct.status == "running", ct.status
code, out = ct.exec_run(["sh", "-c", "echo $A; exit 4"])
assert (code, out) == (4, b"1\n"), (code, out)
ct.stop(timeout=1)
assert ct.wait()["StatusCode"] == 137
ct.remove()
# build from a file object; the image carries its label
img, _ = c.images.build(fileobj=io.BytesIO(b"FROM busybox\nLABEL x=y\nRUN echo built > /b\n"),
                        tag="py/img:1", rm=True)
assert img.labels == {{"x": "y"}}, img.labels
assert "py/img:1" in img.tags
# a volume, a network and a published port
vol = c.volumes.create("pyvol", labels={{"k": "v"}})
net = c.networks.create("pynet")
web = c.containers.run("py/img:1", ["sh", "-c", "echo ok > /www/i && exec httpd -f -p 80 -h /www"],
                       detach=True, network="pynet", volumes={{"pyvol": {{"bind": "/www", "mode": "rw"}}}},
                       ports={{"80/tcp": ("127.0.0.1", {port})}})
web.reload()
assert web.ports["80/tcp"][0]["HostPort"] == "{port}", web.ports
assert [x.name for x in c.containers.list(filters={{"network": "pynet"}})] == [web.name]
body = None
for _ in range(100):
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
        body = opener.open("http://127.0.0.1:{port}/i", timeout=2).read()
        break
    except OSError:
        time.sleep(0.1)
assert body == b"ok\n", body
web.remove(force=True)
net.remove()
vol.remove()
assert [i.tags for i in c.images.list(name="py/img")] == [["py/img:1"]]
c.images.remove("py/img:1")
try:
    c.containers.get("nope")
    sys.exit("no error for a missing container")
except docker.errors.NotFound:
    pass
print("docker-py ok")
"#,
        socket = api.socket.display()
    );
    let out = Command::new(DOCKER_PY)
        .args(["-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("run docker-py");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "docker-py ok\n");
    assert_eq!(host.berth.ok(&["ps", "-aq"]), "");
}
