//! `berth compose` end to end: a three-service project on the real engine (a web server, a
//! client that reaches it by its service name, a one-shot job the client waits for), the
//! same file through docker-compose v1 on `berth serve`, the file checks, and `config`,
//! `run`, `build`.

mod common;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use common::{api::ApiServer, host::Host, json};
use serde_json::Value;

/// The Show's project: `web` serves a page from a named volume on a published port and has
/// a health check; `job` runs once; `client` waits for web healthy and job done, then
/// fetches the page by the name `web`.
fn project_file(port: u16, client_sleep: u32) -> String {
    format!(
        r#"services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hello-from-web > /www/index.html; echo web up; exec httpd -f -p 80 -h /www"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["site:/www"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost/"]
      interval: 1s
      retries: 10
  job:
    image: busybox
    command: sh -c 'echo job done'
  client:
    image: busybox
    command: ["sh", "-c", "wget -q -O - http://web/ && exec sleep {client_sleep}"]
    depends_on:
      web:
        condition: service_healthy
      job:
        condition: service_completed_successfully
volumes:
  site:
"#
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A project directory in the test's own directory.
fn project_dir(host: &Host, name: &str, file: &str) -> PathBuf {
    let dir = host.berth.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("compose.yaml"), file).unwrap();
    dir
}

/// `berth compose ARGS` in `dir`.
fn compose(host: &Host, dir: &Path, args: &[&str]) -> Output {
    host.berth
        .command()
        .current_dir(dir)
        .arg("compose")
        .args(args)
        .env_remove("COMPOSE_PROJECT_NAME")
        .env_remove("COMPOSE_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run berth compose")
}

fn compose_ok(host: &Host, dir: &Path, args: &[&str]) -> (String, String) {
    let out = compose(host, dir, args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "berth compose {args:?}: {stdout}{stderr}"
    );
    (stdout, stderr)
}

fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the published port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// The project's containers as `(service, number, state, exit code)`, with their IDs.
fn containers(host: &Host, project: &str) -> Vec<(String, Value)> {
    let ids = host.ok(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    ids.lines()
        .map(|id| {
            let doc = json(&host.ok(&["inspect", id]));
            (id.to_string(), doc[0].clone())
        })
        .collect()
}

fn service(doc: &Value) -> String {
    doc["Config"]["Labels"]["com.docker.compose.service"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn three_service_project_up_change_down() {
    let host = Host::new();
    let port = common::registry::free_port();
    let dir = project_dir(&host, "mlapp", &project_file(port, 600));

    let (_, progress) = compose_ok(&host, &dir, &["up", "-d", "--wait"]);
    for line in [
        " Network mlapp_default  Created",
        " Volume \"mlapp_site\"  Created",
        " Container mlapp-web-1  Healthy",
        " Container mlapp-job-1  Exited",
        " Container mlapp-client-1  Started",
    ] {
        assert!(progress.contains(line), "no {line:?} in:\n{progress}");
    }
    // The client started only after the job had finished and web was healthy.
    let at = |s: &str| {
        progress
            .find(s)
            .unwrap_or_else(|| panic!("{s}: {progress}"))
    };
    assert!(at(" Container mlapp-client-1  Starting") > at(" Container mlapp-job-1  Exited"));
    assert!(at(" Container mlapp-client-1  Starting") > at(" Container mlapp-web-1  Healthy"));

    // Docker Compose's labels and names on every object.
    let before = containers(&host, "mlapp");
    assert_eq!(before.len(), 3, "{before:?}");
    for (_, doc) in &before {
        let labels = &doc["Config"]["Labels"];
        assert_eq!(labels["com.docker.compose.container-number"], "1");
        assert_eq!(labels["com.docker.compose.oneoff"], "False");
        assert_eq!(doc["Name"], format!("/mlapp-{}-1", service(doc)));
        assert!(
            doc["NetworkSettings"]["Networks"]["mlapp_default"].is_object(),
            "{doc}"
        );
    }
    let net = json(&host.ok(&["network", "inspect", "mlapp_default"]));
    assert_eq!(net[0]["Labels"]["com.docker.compose.project"], "mlapp");
    assert_eq!(net[0]["Labels"]["com.docker.compose.network"], "default");
    let vol = json(&host.ok(&["volume", "inspect", "mlapp_site"]));
    assert_eq!(vol[0]["Labels"]["com.docker.compose.volume"], "site");

    // ps: the two running services; -a adds the finished job.
    let (ps, _) = compose_ok(&host, &dir, &["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("SERVICE"),
        "{ps}"
    );
    assert_eq!(lines.len(), 3, "{ps}");
    assert!(
        ps.contains("(healthy)") && ps.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );
    let (ps_all, _) = compose_ok(&host, &dir, &["ps", "-a", "--format", "json"]);
    let rows = json(&ps_all);
    let states: BTreeSet<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["Service"].as_str().unwrap().to_string(),
                r["State"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [("client", "running"), ("job", "exited"), ("web", "running")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into()
    );

    // logs, with service prefixes; the client fetched the page by the service's name.
    let (logs, _) = compose_ok(&host, &dir, &["logs", "--no-color"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("client-1") && l.ends_with("| hello-from-web")),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.starts_with("job-1") && l.ends_with("| job done")),
        "{logs}"
    );
    let (web_only, _) = compose_ok(&host, &dir, &["logs", "--no-log-prefix", "web"]);
    assert_eq!(web_only, "web up\n");

    // exec, and the published port from the host.
    let (page, _) = compose_ok(
        &host,
        &dir,
        &["exec", "-T", "web", "cat", "/www/index.html"],
    );
    assert_eq!(page, "hello-from-web\n");
    let failed = compose(&host, &dir, &["exec", "-T", "web", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3));
    assert!(http_get(port).ends_with("hello-from-web\n"));

    // A change to the client recreates the client only.
    std::fs::write(dir.join("compose.yaml"), project_file(port, 601)).unwrap();
    let (_, progress) = compose_ok(&host, &dir, &["up", "-d", "--wait", "-t", "1"]);
    assert!(
        progress.contains(" Container mlapp-client-1  Recreated"),
        "{progress}"
    );
    assert!(!progress.contains("mlapp-web-1  Recreate"), "{progress}");
    let after = containers(&host, "mlapp");
    let id_of = |list: &[(String, Value)], s: &str| {
        list.iter()
            .find(|(_, d)| service(d) == s)
            .map(|(id, _)| id.clone())
            .unwrap()
    };
    assert_eq!(id_of(&before, "web"), id_of(&after, "web"));
    assert_eq!(id_of(&before, "job"), id_of(&after, "job"));
    assert_ne!(id_of(&before, "client"), id_of(&after, "client"));
    host.assert_gone(&id_of(&before, "client"));
    // Nothing changed: nothing recreated.
    let (_, progress) = compose_ok(&host, &dir, &["up", "-d"]);
    assert!(!progress.contains("Recreate"), "{progress}");

    // stop / start / restart keep the containers.
    compose_ok(&host, &dir, &["stop", "-t", "1", "client"]);
    let (ps, _) = compose_ok(&host, &dir, &["ps", "--services"]);
    assert_eq!(ps, "web\njob\nclient\n");
    compose_ok(&host, &dir, &["start", "client"]);
    assert_eq!(containers(&host, "mlapp").len(), 3);

    // down -v: nothing of the project is left.
    let ids: Vec<String> = containers(&host, "mlapp")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    compose_ok(&host, &dir, &["down", "-v", "-t", "1"]);
    assert!(containers(&host, "mlapp").is_empty());
    for id in &ids {
        host.assert_gone(id);
    }
    assert!(!host.ok(&["network", "ls"]).contains("mlapp"));
    assert_eq!(host.ok(&["volume", "ls", "-q"]), "");
    assert!(
        common::nothing_listens(("127.0.0.1", port)),
        "the port is still published"
    );
}

#[test]
fn docker_compose_v1_through_serve_gives_the_same_project() {
    common::require_tool("docker-compose");
    let host = Host::new();
    let api = ApiServer::start(&host.berth);
    let port = common::registry::free_port();
    let dir = project_dir(&host, "shared", &project_file(port, 600));
    let v1 = |args: &[&str]| api.compose_v1(&dir, None, args).0;
    // What a project is, apart from names and IDs: per container its service, number,
    // image, command, the networks and volumes it is on and its published ports; the
    // project's networks and volumes with their compose labels.
    let shape = |host: &Host| -> Value {
        let mut cs: Vec<Value> = containers(host, "shared")
            .into_iter()
            .map(|(_, d)| {
                let labels = &d["Config"]["Labels"];
                serde_json::json!({
                    "service": labels["com.docker.compose.service"],
                    "number": labels["com.docker.compose.container-number"],
                    "oneoff": labels["com.docker.compose.oneoff"],
                    "image": d["Config"]["Image"],
                    "cmd": d["Config"]["Cmd"],
                    "status": d["State"]["Status"],
                    "exit": d["State"]["ExitCode"],
                    "networks": d["NetworkSettings"]["Networks"].as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
                    "aliases_include_service": d["NetworkSettings"]["Networks"]["shared_default"]["Aliases"]
                        .as_array()
                        .is_some_and(|a| a.contains(&labels["com.docker.compose.service"])),
                    "mounts": d["Mounts"].as_array().unwrap().iter().map(|m| (m["Name"].clone(), m["Destination"].clone())).collect::<Vec<_>>(),
                    "ports": d["HostConfig"]["PortBindings"],
                })
            })
            .collect();
        cs.sort_by_key(|c| c["service"].to_string());
        // The project's networks or volumes, each with its compose key label.
        let labeled = |kind: &str| -> Vec<Value> {
            host.ok(&[
                kind,
                "ls",
                "--filter",
                "label=com.docker.compose.project=shared",
                "--format",
                "{{.Name}}",
            ])
            .lines()
            .map(|n| {
                let doc = json(&host.ok(&[kind, "inspect", n]));
                serde_json::json!([n, doc[0]["Labels"][format!("com.docker.compose.{kind}")]])
            })
            .collect()
        };
        let (nets, vols) = (labeled("network"), labeled("volume"));
        serde_json::json!({"containers": cs, "networks": nets, "volumes": vols})
    };
    let wait_for_client = |host: &Host| {
        common::eventually(30, "the client fetched the page", || {
            containers(host, "shared").iter().any(|(id, d)| {
                service(d) == "client" && host.ok(&["logs", id]).contains("hello-from-web")
            })
        });
    };

    v1(&["up", "-d"]);
    wait_for_client(&host);
    let by_v1 = shape(&host);
    // berth compose sees docker-compose's project as its own.
    let (ps, _) = compose_ok(&host, &dir, &["ps", "-a", "--format", "json"]);
    assert_eq!(json(&ps).as_array().unwrap().len(), 3, "{ps}");
    assert!(http_get(port).ends_with("hello-from-web\n"));
    v1(&["down", "-v", "-t", "1"]);
    assert!(containers(&host, "shared").is_empty());

    compose_ok(&host, &dir, &["up", "-d", "--wait"]);
    wait_for_client(&host);
    let by_berth = shape(&host);
    assert_eq!(by_v1, by_berth);
    // And docker-compose sees berth compose's project: its ps lists the three, its down
    // removes them.
    let ps = v1(&["ps"]);
    for s in ["shared-web-1", "shared-job-1", "shared-client-1"] {
        assert!(ps.contains(s), "{ps}");
    }
    v1(&["down", "-v", "-t", "1"]);
    assert!(containers(&host, "shared").is_empty());
    assert!(!host.ok(&["network", "ls"]).contains("shared"));
    assert_eq!(host.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn malformed_files_name_file_and_path_and_start_nothing() {
    let host = Host::new();
    let cases: &[(&str, &str)] = &[
        (
            "services:\n  web:\n    image: busybox\n    ports: 80\n",
            "compose.yaml: services.web.ports: expected a list of ports, got a number",
        ),
        (
            "services:\n  web:\n    imagee: busybox\n",
            "compose.yaml: services.web.imagee: unknown field `imagee`, expected one of `profiles`, `image`",
        ),
        (
            "services:\n  web:\n    image: busybox\n    depends_on:\n      db:\n        condition: done\n",
            "compose.yaml: services.web.depends_on: db: unknown variant `done`",
        ),
        (
            "services:\n  web:\n    image: ${TAG:?set TAG first}\n",
            "compose.yaml: services.web.image: required variable TAG is missing a value: set TAG first",
        ),
        ("services:\n  web: [\n", "compose.yaml: yaml:"),
        (
            "services:\n  web:\n    image: busybox\n    volumes: ['data:/d']\n",
            "service \"web\" refers to undefined volume data: invalid compose project",
        ),
        (
            "services:\n  web:\n    image: busybox\n    healthcheck:\n      interval: soon\n",
            "compose.yaml: services.web.healthcheck.interval: \"soon\": expected a duration",
        ),
        (
            "services:\n  web:\n    image: busybox\n    sysctls: {net.core.somaxconn: 1024}\n",
            "compose.yaml: services.web.sysctls: not supported by berth",
        ),
        (
            "services:\n  web:\n    image: busybox\n    container_name: one\n    scale: 2\n",
            "service \"web\" has a container_name and 2 replicas",
        ),
    ];
    for (i, (file, expected)) in cases.iter().enumerate() {
        let dir = project_dir(&host, &format!("bad{i}"), file);
        let out = compose(&host, &dir, &["up", "-d"]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        let line = stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "one line for {file:?}: {stderr}");
        assert!(
            line.contains(expected),
            "{file:?}: want {expected:?} in {line:?}"
        );
        assert!(
            line.contains(&dir.join("compose.yaml").display().to_string())
                || !expected.starts_with("compose.yaml"),
            "{line}"
        );
    }
    assert_eq!(host.ok(&["ps", "-aq"]), "");
    assert_eq!(host.ok(&["volume", "ls", "-q"]), "");
    assert!(!host.ok(&["network", "ls"]).contains("bad"));
}

#[test]
fn config_merges_files_and_interpolates() {
    let host = Host::new();
    let dir = project_dir(
        &host,
        "cfg",
        "name: ${PROJECT:-fallback}\nservices:\n  nb:\n    image: busybox:${TAG}\n    tty: ${TTY:-yes}\n    healthcheck:\n      test: 'true'\n      retries: ${RETRIES:-4}\n    environment: [A=1, B=2]\n    ports: ['${PORT:-8888}:8888']\n  gpu:\n    image: busybox\n    profiles: [gpu]\n",
    );
    std::fs::write(dir.join(".env"), "TAG=latest\nPROJECT=lab\n").unwrap();
    std::fs::write(
        dir.join("compose.override.yaml"),
        "services:\n  nb:\n    environment:\n      B: three\n    command: !override [sh]\n",
    )
    .unwrap();
    let (out, _) = compose_ok(&host, &dir, &["config", "--format", "json"]);
    let model = json(&out);
    assert_eq!(model["name"], "lab");
    let nb = &model["services"]["nb"];
    assert_eq!(nb["image"], "busybox:latest");
    assert_eq!(
        nb["environment"],
        serde_json::json!({"A": "1", "B": "three"})
    );
    assert_eq!(nb["command"], serde_json::json!(["sh"]));
    assert_eq!(nb["ports"][0]["published"], "8888");
    // Interpolated values take the field's type.
    assert_eq!(nb["tty"], true);
    assert_eq!(nb["healthcheck"]["retries"], 4);
    assert!(
        model["services"].get("gpu").is_none(),
        "an inactive profile's service: {out}"
    );
    let (services, _) = compose_ok(&host, &dir, &["--profile", "gpu", "config", "--services"]);
    assert_eq!(services, "nb\ngpu\n");
    // The YAML form says the same.
    let (yaml, _) = compose_ok(&host, &dir, &["config"]);
    assert!(
        yaml.contains("image: \"busybox:latest\"") || yaml.contains("image: busybox:latest"),
        "{yaml}"
    );
    // -p and COMPOSE_PROJECT_NAME win over the file's name.
    let (out, _) = compose_ok(&host, &dir, &["-p", "other", "config", "--format", "json"]);
    assert_eq!(json(&out)["name"], "other");
}

#[test]
fn run_one_off_and_build_service() {
    let host = Host::new();
    let dir = project_dir(
        &host,
        "jobs",
        "services:\n  app:\n    build:\n      context: ./app\n      args:\n        GREETING: built-by-compose\n    command: cat /greeting\n",
    );
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nARG GREETING\nRUN echo $GREETING > /greeting\n",
    )
    .unwrap();
    let (_, progress) = compose_ok(&host, &dir, &["build"]);
    assert!(progress.contains("Service app  Built"), "{progress}");
    assert!(!host.ok(&["images", "-q", "jobs-app"]).is_empty());

    // run --rm: the command's output and status, and no container left.
    let (out, _) = compose_ok(&host, &dir, &["run", "--rm", "app"]);
    assert_eq!(out, "built-by-compose\n");
    let failed = compose(&host, &dir, &["run", "--rm", "app", "sh", "-c", "exit 7"]);
    assert_eq!(failed.status.code(), Some(7));
    assert_eq!(host.ok(&["ps", "-aq"]), "");

    // up (attached) shows the output with the service's prefix and ends with the container.
    let (logs, _) = compose_ok(&host, &dir, &["up", "--no-color"]);
    assert!(logs.contains("app-1  | built-by-compose"), "{logs}");
    let (images, _) = compose_ok(&host, &dir, &["images"]);
    assert!(
        images.contains("jobs-app-1") && images.contains("jobs-app"),
        "{images}"
    );
    compose_ok(&host, &dir, &["down", "--rmi", "local"]);
    assert_eq!(host.ok(&["images", "-q", "jobs-app"]), "");
    assert_eq!(host.ok(&["ps", "-aq"]), "");
}

#[test]
fn service_options_reach_the_containers() {
    let host = Host::new();
    let dir = project_dir(
        &host,
        "opts",
        r#"services:
  api:
    image: busybox
    command: sleep 600
    user: "1000:1000"
    working_dir: /tmp
    hostname: api-host
    shm_size: 64m
    init: true
    stop_signal: SIGUSR1
    stop_grace_period: 3s
    restart: on-failure:2
    labels: [team=ml]
    environment:
      MODE: serve
    env_file: [vars.env]
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64M}
    networks:
      front:
        aliases: [model-server]
      back: {}
  probe:
    image: busybox
    command: ["sh", "-c", "wget -q -O /dev/null http://model-server:1 2>&1; nslookup model-server 2>&1; sleep 600"]
    networks: [front]
    depends_on: [api]
networks:
  front:
  back:
    internal: true
"#,
    );
    std::fs::write(dir.join("vars.env"), "FROM_FILE=yes\nMODE=overridden\n").unwrap();
    compose_ok(&host, &dir, &["up", "-d"]);
    let api = json(&host.ok(&["inspect", "opts-api-1"]));
    let api = &api[0];
    assert_eq!(api["Config"]["User"], "1000:1000");
    assert_eq!(api["Config"]["WorkingDir"], "/tmp");
    assert_eq!(api["Config"]["Hostname"], "api-host");
    assert_eq!(api["Config"]["StopSignal"], "SIGUSR1");
    assert_eq!(api["Config"]["StopTimeout"], 3);
    assert_eq!(api["Config"]["Labels"]["team"], "ml");
    let env: Vec<&str> = api["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"MODE=serve") && env.contains(&"FROM_FILE=yes"),
        "{env:?}"
    );
    assert_eq!(api["HostConfig"]["ShmSize"], 64 << 20);
    assert_eq!(api["HostConfig"]["Init"], true);
    assert_eq!(api["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(api["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(api["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(api["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 2);
    let nets = api["NetworkSettings"]["Networks"].as_object().unwrap();
    assert_eq!(nets.keys().collect::<Vec<_>>(), ["opts_back", "opts_front"]);
    let aliases = nets["opts_front"]["Aliases"].to_string();
    assert!(
        aliases.contains("model-server") && aliases.contains("\"api\""),
        "{aliases}"
    );
    assert_eq!(
        json(&host.ok(&["network", "inspect", "opts_back"]))[0]["Internal"],
        true
    );
    // The probe finds the api by its alias on the shared network.
    common::eventually(20, "the probe resolved the alias", || {
        host.ok(&["logs", "opts-probe-1"]).contains("Address")
    });

    // --scale adds numbered containers; --no-deps touches only the named service.
    compose_ok(
        &host,
        &dir,
        &["up", "-d", "--no-deps", "--scale", "probe=3", "probe"],
    );
    let (ps, _) = compose_ok(&host, &dir, &["ps", "--format", "json", "probe"]);
    let mut names: Vec<String> = json(&ps)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["opts-probe-1", "opts-probe-2", "opts-probe-3"]);
    let (_, progress) = compose_ok(
        &host,
        &dir,
        &[
            "up",
            "-d",
            "-t",
            "1",
            "--scale",
            "probe=1",
            "--force-recreate",
            "probe",
        ],
    );
    assert!(
        progress.contains("opts-probe-3  Removed") && progress.contains("opts-probe-1  Recreated"),
        "{progress}"
    );

    // A service removed from the file is an orphan: a warning, then --remove-orphans.
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  api:\n    image: busybox\n    command: sleep 600\n",
    )
    .unwrap();
    let (_, progress) = compose_ok(&host, &dir, &["up", "-d"]);
    assert!(
        progress.contains("Found orphan containers ([opts-probe-1])"),
        "{progress}"
    );
    let (_, progress) = compose_ok(&host, &dir, &["up", "-d", "-t", "1", "--remove-orphans"]);
    assert!(
        progress.contains("Container opts-probe-1  Removed"),
        "{progress}"
    );
    compose_ok(&host, &dir, &["down", "-t", "1"]);
    assert_eq!(host.ok(&["ps", "-aq"]), "");
    // The networks the earlier file had are the project's still: gone with a down that
    // knows them (the file has only the default network now).
    for n in ["opts_front", "opts_back"] {
        host.ok(&["network", "rm", n]);
    }
}

#[test]
fn push_and_pull_service_images_through_a_registry() {
    let host = Host::new();
    let registry = common::registry::Registry::plain();
    let image = registry.image("team/app:1");
    let dir = project_dir(
        &host,
        "shipit",
        &format!(
            "services:\n  app:\n    build: ./app\n    image: {image}\n  cache:\n    image: {image}\n    command: cat /built\n"
        ),
    );
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("app/Dockerfile"),
        "FROM busybox\nRUN echo shipped > /built\n",
    )
    .unwrap();
    compose_ok(&host, &dir, &["build", "app"]);
    compose_ok(&host, &dir, &["push"]);
    host.ok(&["rmi", &image]);
    let (_, progress) = compose_ok(&host, &dir, &["pull", "cache"]);
    assert!(progress.contains("cache Pulled"), "{progress}");
    let (out, _) = compose_ok(&host, &dir, &["run", "--rm", "cache"]);
    assert_eq!(out, "shipped\n");
    compose_ok(&host, &dir, &["down"]);
    // A missing image of a service that is not built: the pull's error, named.
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "services:\n  gone:\n    image: {}\n",
            registry.image("team/none:1")
        ),
    )
    .unwrap();
    let out = compose(&host, &dir, &["up", "-d"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("team/none:1") && stderr.contains("manifest unknown"),
        "{stderr}"
    );
    assert_eq!(host.ok(&["ps", "-aq"]), "");
    assert!(
        !host.ok(&["network", "ls"]).contains("shipit"),
        "a network made before the pull failed"
    );
}

#[test]
fn recreate_keeps_anonymous_volumes() {
    let host = Host::new();
    let file = |cmd: &str| {
        format!(
            "services:\n  db:\n    image: busybox\n    command: {cmd}\n    volumes: [/data]\n    stop_grace_period: 1s\n"
        )
    };
    let dir = project_dir(&host, "keep", &file("sleep 600"));
    compose_ok(&host, &dir, &["up", "-d"]);
    compose_ok(
        &host,
        &dir,
        &["exec", "-T", "db", "sh", "-c", "echo rows > /data/table"],
    );
    std::fs::write(dir.join("compose.yaml"), file("sleep 601")).unwrap();
    let (_, progress) = compose_ok(&host, &dir, &["up", "-d"]);
    assert!(progress.contains("keep-db-1  Recreated"), "{progress}");
    let (out, _) = compose_ok(&host, &dir, &["exec", "-T", "db", "cat", "/data/table"]);
    assert_eq!(out, "rows\n");
    assert_eq!(host.ok(&["volume", "ls", "-q"]).lines().count(), 1);
    compose_ok(&host, &dir, &["down", "-v"]);
    assert_eq!(host.ok(&["volume", "ls", "-q"]), "");
}
