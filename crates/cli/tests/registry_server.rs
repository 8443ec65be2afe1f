//! `berth registry serve` driven by clients we did not write (skopeo, podman, docker through
//! dockerd) and by berth's own client: images go in and come out with the same digests.
//!
//! - skopeo copies OCI manifests, OCI indexes (one platform and `--all`), Docker schema 2
//!   manifests and Docker manifest lists in and out, byte for byte (`--preserve-digests`);
//! - podman pushes from one private store and pulls into another; docker (CLI 28 against a
//!   private dockerd 20.10) pushes, pulls back, and trades images with berth;
//! - htpasswd auth (`htpasswd -B`) with and without `--anonymous-pull`, seen by berth, skopeo
//!   and raw HTTP; TLS from a test CA, with HTTP/2 by ALPN (curl);
//! - `--read-only`, DELETE with and without `--delete`, then `berth registry gc` and
//!   `berth registry check`, and gc refused while a writable server holds the root.
//!
//! Status and error codes are the OCI distribution spec's (as Docker's registry sends them).
//! Each test starts its own server (and dockerd or podman store), all gone when it ends; a
//! missing tool fails the test.

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use common::{
    dockerd::RunningDockerd,
    host::{Host, busybox_tar},
    registry::*,
    registry_server::*,
    *,
};

// ---------------------------------------------------------------------------------------------
// Helpers

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a client that takes every manifest kind asks for.
const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A scratch directory for one test: layouts, copies, and the (empty) credential files the
/// clients are pointed at, so that no credential of the host's is ever used.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("registry-server-")
        .tempdir_in(test_tmp())
        .expect("temp dir")
}

/// `skopeo ARGS` with no credentials but those on its command line.
fn skopeo(scratch: &Path, args: &[&str]) -> Output {
    require_tool("skopeo");
    Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", scratch.join("no-auth.json"))
        .env("DOCKER_CONFIG", scratch.join("no-docker-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo")
}

/// [`skopeo`], expecting success; returns stdout.
fn skopeo_ok(scratch: &Path, args: &[&str]) -> String {
    let out = skopeo(scratch, args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `skopeo copy --preserve-digests [--all] SRC DST` over plain HTTP both ways: skopeo fails
/// rather than change a manifest.
fn skopeo_copy(scratch: &Path, all: bool, src: &str, dst: &str) {
    let mut args = vec![
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if all {
        args.push("--all");
    }
    args.extend([src, dst]);
    skopeo_ok(scratch, &args);
}

/// `skopeo inspect --raw docker://REF`: the manifest as the registry serves it.
fn skopeo_raw_manifest(scratch: &Path, reference: &str, creds: Option<&str>) -> Vec<u8> {
    let r = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&r);
    skopeo_ok(scratch, &args).into_bytes()
}

/// GET `/v2/<name>/manifests/<reference>` with every manifest kind accepted.
fn get_manifest(reg: &BerthRegistry, name: &str, reference: &str) -> Response {
    http(
        "GET",
        reg.host(),
        &format!("/v2/{name}/manifests/{reference}"),
        &[("Accept", ACCEPT_ALL)],
        b"",
    )
    .expect("GET the manifest")
}

/// The registry serves `bytes` as `name:reference`, byte for byte, with its media type and
/// its digest in Docker-Content-Digest.
fn assert_served(reg: &BerthRegistry, name: &str, reference: &str, bytes: &[u8], media_type: &str) {
    let r = get_manifest(reg, name, reference);
    assert_eq!(r.status, 200, "GET {name}:{reference}: {}", text(&r.body));
    assert_eq!(
        r.body,
        bytes,
        "{name}:{reference} is served as pushed:\n{}\n{}",
        text(&r.body),
        text(bytes)
    );
    assert_eq!(r.header("content-type"), Some(media_type));
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_of(bytes).as_str())
    );
}

/// A response is the spec's error: `status`, and `code` among `{"errors":[{"code":…}]}`.
fn assert_spec_error(r: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status} {code}, got {} {}",
        r.status,
        text(&r.body)
    );
    let body = r.json();
    let codes: Vec<&str> = body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        codes.contains(&code),
        "{what}: expected error code {code}: {}",
        text(&r.body)
    );
}

/// The files of a directory (not recursive), by name.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The blobs of an OCI layout, by digest.
fn layout_blobs(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    files_of(&layout.join("blobs/sha256"))
        .into_iter()
        .map(|(hex, data)| (format!("sha256:{hex}"), data))
        .collect()
}

/// The digest `index.json` of an OCI layout gives for `tag`.
fn layout_tag_digest(layout: &Path, tag: &str) -> String {
    let index = json(&std::fs::read_to_string(layout.join("index.json")).unwrap());
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("{} has no tag {tag}: {index}", layout.display()))
        .to_string()
}

/// A small image for `arch` whose one layer holds `/etc/name`.
fn small_image(arch: &str, name: &str) -> TestImage {
    TestImage::new(
        arch,
        &[layer_tar(&[
            ("etc/", b""),
            ("etc/name", format!("{name}\n").as_bytes()),
        ])],
    )
}

/// The path of a blob in the server's storage.
fn stored_blob(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// `berth login -u USER --password-stdin SERVER`.
fn berth_login(b: &Berth, user: &str, pass: &str, server: &str) -> Output {
    b.run_stdin(
        &["login", "-u", user, "--password-stdin", server],
        format!("{pass}\n").as_bytes(),
    )
}

/// `berth ARGS` with `env` set (BERTH_CERTS_DIR, BERTH_DAEMON_CONFIG).
fn berth_env(b: &Berth, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut c = b.command();
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

/// The `Digest: sha256:…` line of a docker or berth pull.
fn pulled_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no `Digest:` line in:\n{out}"))
        .to_string()
}

/// The digest in the last line of a docker or berth push (`TAG: digest: D size: N`).
fn pushed_digest(out: &str) -> String {
    out.lines()
        .filter_map(|l| l.split_once(": digest: "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .next_back()
        .unwrap_or_else(|| panic!("no `TAG: digest: …` line in:\n{out}"))
        .to_string()
}

fn berth_repo_digests(b: &Berth, image: &str) -> Vec<String> {
    let v = json(&b.ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        image,
    ]));
    serde_json::from_value(v).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// berth's own client

#[test]
fn berth_push_then_pull_round_trip() {
    let registry = BerthRegistry::start();
    let host = Host::new();
    let berth = &host.berth;
    let image = registry.image("team/rt:1");
    berth.ok(&["tag", "busybox:latest", &image]);
    let id = berth.image_id(&image);
    berth.ok(&["push", &image]);
    berth.ok(&["rmi", &image, "busybox:latest"]);
    berth.ok(&["pull", &image]);
    assert_eq!(berth.image_id(&image), id);
    assert!(registry.check().is_ok(), "{:?}", registry.check());
}

#[test]
fn serve_runs_the_server_executable_or_serves_in_berth() {
    let ping = |registry: &BerthRegistry| {
        let r = http("GET", registry.host(), "/v2/", &[], b"").expect("GET /v2/");
        assert_eq!(r.status, 200, "{}", registry.log());
    };
    let one_arena = |environ: &[String]| {
        environ
            .iter()
            .any(|v| v == "GLIBC_TUNABLES=glibc.malloc.arena_max=1")
    };
    // Beside berth (cargo builds both): the process becomes berth-registry.
    let registry = BerthRegistry::start();
    let (exe, environ) = registry.process();
    assert_eq!(exe.file_name().unwrap(), "berth-registry", "{exe:?}");
    assert!(one_arena(&environ), "{environ:?}");
    ping(&registry);
    // A berth with no berth-registry beside it serves in its own process.
    let alone = scratch();
    let berth = alone.path().join("berth");
    if std::fs::hard_link(berth_bin(), &berth).is_err() {
        std::fs::copy(berth_bin(), &berth).expect("copy berth");
    }
    let registry = BerthRegistry::start_by(&berth);
    let (exe, environ) = registry.process();
    assert_eq!(exe, berth);
    assert!(one_arena(&environ), "{environ:?}");
    ping(&registry);
}

// ---------------------------------------------------------------------------------------------
// skopeo: every manifest kind in and out, byte for byte

#[test]
fn skopeo_oci_manifest_in_and_out() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let img = small_image(berth_arch(), "oci");
    let src = s.join("src");
    img.write_layout(&src, "t");

    let reference = reg.image("interop/oci:1");
    skopeo_copy(
        s,
        false,
        &format!("oci:{}:t", src.display()),
        &format!("docker://{reference}"),
    );
    assert_eq!(
        skopeo_raw_manifest(s, &reference, None),
        img.manifest,
        "skopeo reads back the manifest it pushed, byte for byte"
    );
    assert_served(&reg, "interop/oci", "1", &img.manifest, OCI_MANIFEST);
    assert_served(
        &reg,
        "interop/oci",
        &img.digest(),
        &img.manifest,
        OCI_MANIFEST,
    );
    let tags = json(&skopeo_ok(
        s,
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{}", reg.image("interop/oci")),
        ],
    ));
    assert_eq!(tags["Tags"], serde_json::json!(["1"]));

    // Out again into an OCI layout: the same manifest, config and layer.
    let out = s.join("out");
    skopeo_copy(
        s,
        false,
        &format!("docker://{reference}"),
        &format!("oci:{}:t", out.display()),
    );
    assert_eq!(layout_tag_digest(&out, "t"), img.digest());
    assert_eq!(layout_blobs(&out), layout_blobs(&src));
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn skopeo_oci_index_in_and_out() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let native = small_image(berth_arch(), "native");
    let other = small_image(other_arch(), "other");
    let src = s.join("src");
    let index_digest = write_index_layout(&src, "t", &[&native, &other]);
    let index = image_index(&[&native, &other]);

    let reference = reg.image("interop/index:1");
    skopeo_copy(
        s,
        true,
        &format!("oci:{}:t", src.display()),
        &format!("docker://{reference}"),
    );
    let raw = skopeo_raw_manifest(s, &reference, None);
    assert_eq!(digest_of(&raw), index_digest);
    assert_eq!(raw, index, "the index is served byte for byte");
    assert_served(&reg, "interop/index", "1", &index, OCI_INDEX);
    for img in [&native, &other] {
        assert_served(
            &reg,
            "interop/index",
            &img.digest(),
            &img.manifest,
            OCI_MANIFEST,
        );
    }

    // `--all` out: the index and both platforms, every blob as it went in.
    let all = s.join("all");
    skopeo_copy(
        s,
        true,
        &format!("docker://{reference}"),
        &format!("oci:{}:t", all.display()),
    );
    assert_eq!(layout_tag_digest(&all, "t"), index_digest);
    assert_eq!(layout_blobs(&all), layout_blobs(&src));

    // Without `--all`: this host's platform only, its manifest unchanged.
    let one = s.join("one");
    skopeo_copy(
        s,
        false,
        &format!("docker://{reference}"),
        &format!("oci:{}:t", one.display()),
    );
    assert_eq!(layout_tag_digest(&one, "t"), native.digest());
    let blobs = layout_blobs(&one);
    assert_eq!(blobs.get(&native.digest()), Some(&native.manifest));
    assert_eq!(blobs.get(&native.id()), Some(&native.config));
    assert!(!blobs.contains_key(&other.digest()));
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn skopeo_docker_v2s2_manifest_in_and_out() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let img = small_image(berth_arch(), "v2s2");
    let layout = s.join("layout");
    img.write_layout(&layout, "t");
    // skopeo converts to Docker's schema 2 here, before the registry sees anything, so the
    // bytes to expect back are known.
    let src = s.join("src");
    skopeo_ok(
        s,
        &[
            "copy",
            "--quiet",
            "--format",
            "v2s2",
            &format!("oci:{}:t", layout.display()),
            &format!("dir:{}", src.display()),
        ],
    );
    let manifest = std::fs::read(src.join("manifest.json")).unwrap();
    assert_eq!(
        json(&text(&manifest))["mediaType"].as_str(),
        Some(DOCKER_MANIFEST)
    );

    let reference = reg.image("interop/v2s2:1");
    skopeo_copy(
        s,
        false,
        &format!("dir:{}", src.display()),
        &format!("docker://{reference}"),
    );
    assert_eq!(skopeo_raw_manifest(s, &reference, None), manifest);
    assert_served(&reg, "interop/v2s2", "1", &manifest, DOCKER_MANIFEST);
    assert_served(
        &reg,
        "interop/v2s2",
        &digest_of(&manifest),
        &manifest,
        DOCKER_MANIFEST,
    );

    let out = s.join("out");
    skopeo_copy(
        s,
        false,
        &format!("docker://{reference}"),
        &format!("dir:{}", out.display()),
    );
    assert_eq!(
        files_of(&out),
        files_of(&src),
        "the same manifest and blobs"
    );
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn skopeo_docker_manifest_list_in_and_out() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let native = small_image(berth_arch(), "list-native");
    let other = small_image(other_arch(), "list-other");
    let layout = s.join("layout");
    write_index_layout(&layout, "t", &[&native, &other]);
    // `--all --format v2s2` turns the OCI index into a Docker manifest list of schema 2
    // manifests (skopeo 1.9 does), in a dir: first.
    let src = s.join("src");
    skopeo_ok(
        s,
        &[
            "copy",
            "--quiet",
            "--all",
            "--format",
            "v2s2",
            &format!("oci:{}:t", layout.display()),
            &format!("dir:{}", src.display()),
        ],
    );
    let list = std::fs::read(src.join("manifest.json")).unwrap();
    let list_json = json(&text(&list));
    assert_eq!(list_json["mediaType"].as_str(), Some(DOCKER_LIST));
    let children: Vec<String> = list_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(children.len(), 2);

    let reference = reg.image("interop/list:1");
    skopeo_copy(
        s,
        true,
        &format!("dir:{}", src.display()),
        &format!("docker://{reference}"),
    );
    assert_eq!(skopeo_raw_manifest(s, &reference, None), list);
    assert_served(&reg, "interop/list", "1", &list, DOCKER_LIST);
    for child in &children {
        let bytes = std::fs::read(src.join(format!(
            "{}.manifest.json",
            child.strip_prefix("sha256:").unwrap()
        )))
        .unwrap();
        assert_eq!(&digest_of(&bytes), child);
        assert_served(&reg, "interop/list", child, &bytes, DOCKER_MANIFEST);
    }

    let out = s.join("out");
    skopeo_copy(
        s,
        true,
        &format!("docker://{reference}"),
        &format!("dir:{}", out.display()),
    );
    assert_eq!(
        files_of(&out),
        files_of(&src),
        "the same list, manifests and blobs"
    );
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

// ---------------------------------------------------------------------------------------------
// podman and docker

#[test]
fn podman_push_then_pull_into_a_fresh_store() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let first = PodmanStore::new();
    let tar = busybox_tar().to_str().unwrap();
    first.ok(&["import", tar, "bb:latest"]);
    let id = first
        .ok(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "localhost/bb:latest",
        ])
        .trim()
        .to_string();

    let image = reg.image("podman/bb:1");
    let digest_file = s.join("digest");
    first.ok(&[
        "push",
        "--quiet",
        "--tls-verify=false",
        "--digestfile",
        digest_file.to_str().unwrap(),
        "localhost/bb:latest",
        &image,
    ]);
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    let digest = digest.trim();
    assert_eq!(
        digest_of(&skopeo_raw_manifest(s, &image, None)),
        digest,
        "the registry serves the manifest podman pushed"
    );

    let second = PodmanStore::new();
    second.ok(&["pull", "--quiet", "--tls-verify=false", &image]);
    let seen = second.ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Digest}}",
        &image,
    ]);
    assert_eq!(
        seen.trim(),
        format!("{id} {digest}"),
        "the same image ID and manifest digest in a fresh store"
    );

    // berth pulls what podman pushed: the same image.
    let b = Berth::new();
    let out = b.ok(&["pull", &image]);
    assert_eq!(pulled_digest(&out), digest);
    assert_eq!(b.image_id(&image), format!("sha256:{id}"));
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn docker_push_pull_through_a_private_dockerd() {
    let reg = BerthRegistry::start();
    let work = scratch();
    let s = work.path();
    let docker = RunningDockerd::start();
    let image = reg.image("docker/bb:1");
    let tar = busybox_tar().to_str().unwrap();
    docker.ok(&["import", tar, &image]);
    let id = docker
        .ok(&["image", "inspect", "--format", "{{.Id}}", &image])
        .trim()
        .to_string();
    let repo_digests = |image: &str| -> Vec<String> {
        serde_json::from_value(json(&docker.ok(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            image,
        ])))
        .unwrap_or_default()
    };

    // docker push: the digest it prints is what the registry serves.
    let out = docker.ok(&["push", &image]);
    let digest = pushed_digest(&out);
    assert_eq!(
        digest_of(&skopeo_raw_manifest(s, &image, None)),
        digest,
        "docker push printed the served manifest's digest:\n{out}"
    );
    let repo_digest = format!("{}@{digest}", reg.image("docker/bb"));
    assert_eq!(repo_digests(&image), vec![repo_digest.clone()]);

    // Removed, and pulled back: the same image and repo digest.
    docker.ok(&["rmi", &image]);
    assert!(
        !docker
            .docker(&["image", "inspect", &image])
            .status
            .success(),
        "the image is gone from dockerd"
    );
    let out = docker.ok(&["pull", &image]);
    assert_eq!(pulled_digest(&out), digest, "{out}");
    assert_eq!(
        docker
            .ok(&["image", "inspect", "--format", "{{.Id}}", &image])
            .trim(),
        id
    );
    assert_eq!(repo_digests(&image), vec![repo_digest.clone()]);

    // berth pulls what docker pushed.
    let host = Host::new();
    let b = &host.berth;
    let out = b.ok(&["pull", &image]);
    assert_eq!(pulled_digest(&out), digest);
    assert_eq!(b.image_id(&image), id);
    assert!(
        berth_repo_digests(b, &image).contains(&repo_digest),
        "{:?}",
        berth_repo_digests(b, &image)
    );

    // The same image into another repository: docker mounts the layer from the first one
    // (POST ?mount=&from=), and the manifest is the same.
    let copy = reg.image("docker/copy:1");
    docker.ok(&["tag", &image, &copy]);
    let out = docker.ok(&["push", &copy]);
    assert!(
        out.contains("Mounted from docker/bb"),
        "docker mounted the layer across repositories:\n{out}"
    );
    assert_eq!(pushed_digest(&out), digest);

    // docker pulls what berth pushed.
    let from_berth = reg.image("berth/bb:1");
    b.ok(&["tag", "busybox:latest", &from_berth]);
    let berth_id = b.image_id(&from_berth);
    let berth_digest = pushed_digest(&b.ok(&["push", &from_berth]));
    let out = docker.ok(&["pull", &from_berth]);
    assert_eq!(pulled_digest(&out), berth_digest, "{out}");
    assert_eq!(
        docker
            .ok(&["image", "inspect", "--format", "{{.Id}}", &from_berth])
            .trim(),
        berth_id
    );
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

// ---------------------------------------------------------------------------------------------
// Auth

#[test]
fn htpasswd_auth_with_berth_and_skopeo() {
    let work = scratch();
    let s = work.path();
    let htpasswd = htpasswd_file(s, "alice", "wonderland");
    let reg = BerthRegistry::start_with(&["--htpasswd", htpasswd.to_str().unwrap()]);
    let server = reg.host().to_string();

    // No credentials: 401, a Basic challenge, UNAUTHORIZED.
    for (method, target) in [
        ("GET", "/v2/"),
        ("GET", "/v2/auth/bb/manifests/1"),
        ("POST", "/v2/auth/bb/blobs/uploads/"),
    ] {
        let r = http(method, &server, target, &[], b"").unwrap();
        assert_spec_error(&r, 401, "UNAUTHORIZED", &format!("{method} {target}"));
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Basic "),
            "{method} {target}: WWW-Authenticate: {challenge}"
        );
    }
    let basic =
        |user: &str, pass: &str| format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()));
    let r = http(
        "GET",
        &server,
        "/v2/",
        &[("Authorization", &basic("alice", "queen"))],
        b"",
    )
    .unwrap();
    assert_spec_error(&r, 401, "UNAUTHORIZED", "a wrong password");
    let r = http(
        "GET",
        &server,
        "/v2/",
        &[("Authorization", &basic("alice", "wonderland"))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "the right password: {}", text(&r.body));

    // berth: login fails with a wrong password and stores nothing; then works.
    let host = Host::new();
    let b = &host.berth;
    let image = reg.image("auth/bb:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);
    let out = b.run(&["push", &image]);
    assert!(!out.status.success(), "push before login succeeded");
    let out = berth_login(b, "alice", "queen", &server);
    assert!(
        !out.status.success(),
        "login with a wrong password succeeded: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).to_lowercase().contains("unauthorized")
            || text(&out.stderr).to_lowercase().contains("incorrect"),
        "{}",
        text(&out.stderr)
    );
    let config = b.docker_config().join("config.json");
    assert!(
        std::fs::read_to_string(&config).map_or(true, |c| !c.contains(&server)),
        "a failed login stores nothing"
    );
    let out = berth_login(b, "alice", "wonderland", &server);
    assert_success(&out, &["login", &server]);
    assert!(text(&out.stdout).contains("Login Succeeded"));
    let digest = pushed_digest(&b.ok(&["push", &image]));
    b.ok(&["rmi", &image, "busybox:latest"]);
    let out = b.ok(&["pull", &image]);
    assert_eq!(pulled_digest(&out), digest);
    assert_eq!(b.image_id(&image), id);

    // skopeo: with --creds it reads and writes, without it is refused both.
    let raw = skopeo_raw_manifest(s, &image, Some("alice:wonderland"));
    assert_eq!(digest_of(&raw), digest);
    let r = format!("docker://{image}");
    let out = skopeo(s, &["inspect", "--raw", "--tls-verify=false", &r]);
    assert!(!out.status.success(), "skopeo read without credentials");
    assert!(
        text(&out.stderr).to_lowercase().contains("unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let out = skopeo(
        s,
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:queen",
            &r,
        ],
    );
    assert!(!out.status.success(), "skopeo read with a wrong password");
    let img = small_image(berth_arch(), "auth");
    let layout = s.join("layout");
    img.write_layout(&layout, "t");
    let src = format!("oci:{}:t", layout.display());
    let dst = format!("docker://{}", reg.image("auth/skopeo:1"));
    let out = skopeo(
        s,
        &["copy", "--quiet", "--dest-tls-verify=false", &src, &dst],
    );
    assert!(!out.status.success(), "skopeo pushed without credentials");
    skopeo_ok(
        s,
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wonderland",
            &src,
            &dst,
        ],
    );
    assert_eq!(
        skopeo_raw_manifest(s, &reg.image("auth/skopeo:1"), Some("alice:wonderland")),
        img.manifest
    );
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn anonymous_pull_but_authenticated_push() {
    let work = scratch();
    let s = work.path();
    let htpasswd = htpasswd_file(s, "alice", "wonderland");
    let reg =
        BerthRegistry::start_with(&["--htpasswd", htpasswd.to_str().unwrap(), "--anonymous-pull"]);
    let server = reg.host().to_string();
    let img = small_image(berth_arch(), "anonymous");
    let layout = s.join("layout");
    img.write_layout(&layout, "t");
    let src = format!("oci:{}:t", layout.display());
    let image = reg.image("anon/img:1");
    let dst = format!("docker://{image}");

    // Pushing still takes credentials.
    let r = http("POST", &server, "/v2/anon/img/blobs/uploads/", &[], b"").unwrap();
    assert_spec_error(&r, 401, "UNAUTHORIZED", "an anonymous upload");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic ")),
        "{:?}",
        r.head
    );
    let out = skopeo(
        s,
        &["copy", "--quiet", "--dest-tls-verify=false", &src, &dst],
    );
    assert!(!out.status.success(), "skopeo pushed anonymously");
    skopeo_ok(
        s,
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:wonderland",
            &src,
            &dst,
        ],
    );
    let r = http(
        "PUT",
        &server,
        "/v2/anon/img/manifests/2",
        &[("Content-Type", OCI_MANIFEST)],
        &img.manifest,
    )
    .unwrap();
    assert_spec_error(&r, 401, "UNAUTHORIZED", "an anonymous manifest PUT");

    // Pulling does not.
    assert_served(&reg, "anon/img", "1", &img.manifest, OCI_MANIFEST);
    let r = http(
        "GET",
        &server,
        &format!("/v2/anon/img/blobs/{}", img.layer_digests()[0]),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, img.layers[0]);
    assert_eq!(skopeo_raw_manifest(s, &image, None), img.manifest);
    let out = s.join("out");
    skopeo_copy(s, false, &dst, &format!("oci:{}:t", out.display()));
    assert_eq!(layout_blobs(&out), layout_blobs(&layout));
    // berth too, with no login.
    let b = Berth::new();
    let pulled = b.ok(&["pull", &image]);
    assert_eq!(pulled_digest(&pulled), img.digest());
    assert_eq!(b.image_id(&image), img.id());
    // Wrong credentials are still refused, even for a pull.
    let r = http(
        "GET",
        &server,
        "/v2/anon/img/manifests/1",
        &[(
            "Authorization",
            &format!("Basic {}", base64(b"alice:queen")),
        )],
        b"",
    )
    .unwrap();
    assert_spec_error(&r, 401, "UNAUTHORIZED", "a pull with a wrong password");
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

// ---------------------------------------------------------------------------------------------
// TLS

fn curl(args: &[&str]) -> Output {
    require_tool("curl");
    Command::new("curl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl")
}

#[test]
fn tls_with_a_test_ca_and_http2() {
    let ca = TestCa::new();
    let work = scratch();
    let s = work.path();
    let remote_ip = non_loopback_ipv4();
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    ips.extend(remote_ip.map(IpAddr::V4));
    let (cert, key) = ca.issue(s, &ips);
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let reg = BerthRegistry::start_with(&tls);
    assert!(reg.url().starts_with("https://"), "{}", reg.url());
    let ping = format!("{}/v2/", reg.url());
    let cacert = ca.cert_path();
    let cacert = cacert.to_str().unwrap();

    // curl verifies the certificate against the CA, and ALPN picks HTTP/2 (or 1.1 if asked).
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = curl(&[
            "-sS",
            flag,
            "--cacert",
            cacert,
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            &ping,
        ]);
        assert!(out.status.success(), "curl {flag}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{version} 200"), "curl {flag}");
    }
    let out = curl(&["-sS", "-o", "/dev/null", &ping]);
    assert!(
        !out.status.success(),
        "curl trusted the test CA's certificate without --cacert"
    );
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        http("GET", reg.host(), "/v2/", &[], b"").map_or(true, |r| r.status != 200),
        "the TLS port answered plain HTTP"
    );

    // berth with the CA in its certs.d pushes and pulls.
    let host = Host::new();
    let b = &host.berth;
    let certs = s.join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    let no_config = s.join("no-daemon.json");
    let env = [
        ("BERTH_CERTS_DIR", certs.as_path()),
        ("BERTH_DAEMON_CONFIG", no_config.as_path()),
    ];
    ca.install(&certs, reg.host());
    let image = reg.image("tls/bb:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);
    let out = berth_env(b, &env, &["push", &image]);
    assert_success(&out, &["push", &image]);
    let digest = pushed_digest(&text(&out.stdout));
    let fresh = Berth::new();
    let out = berth_env(&fresh, &env, &["pull", &image]);
    assert_success(&out, &["pull", &image]);
    assert_eq!(pulled_digest(&text(&out.stdout)), digest);
    assert_eq!(fresh.image_id(&image), id);
    // skopeo verifies it too, with the CA as its cert dir.
    let skopeo_certs = certs.join(reg.host());
    let raw = skopeo_ok(
        s,
        &[
            "inspect",
            "--raw",
            "--cert-dir",
            skopeo_certs.to_str().unwrap(),
            &format!("docker://{image}"),
        ],
    );
    assert_eq!(digest_of(raw.as_bytes()), digest);

    // On an address that is not loopback the registry is remote to berth: the certificate
    // must verify, so the pull fails without the CA and works with it.
    let Some(ip) = remote_ip else {
        eprintln!("no non-loopback IPv4 address here: verified TLS by berth is not exercised");
        return;
    };
    let remote = BerthRegistry::start_on(IpAddr::V4(ip), &tls);
    let rimage = remote.image("tls/bb:1");
    b.ok(&["tag", &image, &rimage]);
    let bare_certs = s.join("bare-certs.d");
    std::fs::create_dir_all(&bare_certs).unwrap();
    let bare_env = [
        ("BERTH_CERTS_DIR", bare_certs.as_path()),
        ("BERTH_DAEMON_CONFIG", no_config.as_path()),
    ];
    let out = berth_env(b, &bare_env, &["push", &rimage]);
    assert!(!out.status.success(), "push without the CA succeeded");
    assert!(
        text(&out.stderr).to_lowercase().contains("certificate"),
        "{}",
        text(&out.stderr)
    );
    ca.install(&certs, remote.host());
    let out = berth_env(b, &env, &["push", &rimage]);
    assert_success(&out, &["push", &rimage]);
    assert_eq!(pushed_digest(&text(&out.stdout)), digest);
    let out = berth_env(&fresh, &bare_env, &["pull", &rimage]);
    assert!(!out.status.success(), "pull without the CA succeeded");
    let out = berth_env(&fresh, &env, &["pull", &rimage]);
    assert_success(&out, &["pull", &rimage]);
    assert_eq!(pulled_digest(&text(&out.stdout)), digest);
    let out = curl(&[
        "-sS",
        "--http2",
        "--cacert",
        cacert,
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &format!("{}/v2/", remote.url()),
    ]);
    assert_eq!(text(&out.stdout), "2", "{}", text(&out.stderr));
    assert!(reg.check().is_ok(), "{:?}", reg.check());
    assert!(remote.check().is_ok(), "{:?}", remote.check());
}

// ---------------------------------------------------------------------------------------------
// Read-only, delete, gc

#[test]
fn read_only_serves_pulls_and_refuses_pushes() {
    let work = scratch();
    let s = work.path();
    let img = small_image(berth_arch(), "read-only");
    let layout = s.join("layout");
    img.write_layout(&layout, "t");
    let src = format!("oci:{}:t", layout.display());
    let writable = BerthRegistry::start();
    skopeo_copy(
        s,
        false,
        &src,
        &format!("docker://{}", writable.image("ro/img:1")),
    );
    let reg = BerthRegistry::start_in(writable.kill(), &["--read-only"]);
    let server = reg.host().to_string();
    let image = reg.image("ro/img:1");

    // Pulls are served.
    assert_served(&reg, "ro/img", "1", &img.manifest, OCI_MANIFEST);
    assert_eq!(skopeo_raw_manifest(s, &image, None), img.manifest);
    let out = s.join("out");
    skopeo_copy(
        s,
        false,
        &format!("docker://{image}"),
        &format!("oci:{}:t", out.display()),
    );
    assert_eq!(layout_blobs(&out), layout_blobs(&layout));
    let b = Berth::new();
    assert_eq!(pulled_digest(&b.ok(&["pull", &image])), img.digest());

    // Writes are refused: 405 UNSUPPORTED.
    let r = http("POST", &server, "/v2/ro/img/blobs/uploads/", &[], b"").unwrap();
    assert_spec_error(&r, 405, "UNSUPPORTED", "an upload to a read-only registry");
    let r = http(
        "PUT",
        &server,
        "/v2/ro/img/manifests/2",
        &[("Content-Type", OCI_MANIFEST)],
        &img.manifest,
    )
    .unwrap();
    assert_spec_error(
        &r,
        405,
        "UNSUPPORTED",
        "a manifest PUT to a read-only registry",
    );
    let r = http(
        "DELETE",
        &server,
        &format!("/v2/ro/img/manifests/{}", img.digest()),
        &[],
        b"",
    )
    .unwrap();
    assert_spec_error(&r, 405, "UNSUPPORTED", "a DELETE on a read-only registry");
    let other = small_image(berth_arch(), "refused");
    let other_layout = s.join("other");
    other.write_layout(&other_layout, "t");
    let out = skopeo(
        s,
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:t", other_layout.display()),
            &format!("docker://{}", reg.image("ro/other:1")),
        ],
    );
    assert!(
        !out.status.success(),
        "skopeo pushed to a read-only registry"
    );
    let out = b.run(&["push", &image]);
    assert!(
        !out.status.success(),
        "berth pushed to a read-only registry"
    );
    assert_served(&reg, "ro/img", "1", &img.manifest, OCI_MANIFEST);
    // A read-only server does not hold gc off.
    let out = registry_gc(&reg.root(), &["--dry-run"]);
    assert!(
        out.status.success(),
        "gc beside a read-only server: {}",
        text(&out.stderr)
    );
    assert!(reg.check().is_ok(), "{:?}", reg.check());
}

#[test]
fn delete_then_gc_removes_unreferenced_blobs() {
    let work = scratch();
    let s = work.path();
    // Two images sharing their first layer.
    let shared = layer_tar(&[("etc/", b""), ("etc/shared", b"both\n")]);
    let one = TestImage::new(
        berth_arch(),
        &[
            shared.clone(),
            layer_tar(&[("etc/", b""), ("etc/one", b"1\n")]),
        ],
    );
    let two = TestImage::new(
        berth_arch(),
        &[shared, layer_tar(&[("etc/", b""), ("etc/two", b"2\n")])],
    );
    // And one that skopeo deletes.
    let three = small_image(berth_arch(), "three");
    let reg = BerthRegistry::start();
    for (img, tag) in [(&one, "1"), (&two, "2"), (&three, "3")] {
        let layout = s.join(format!("layout-{tag}"));
        img.write_layout(&layout, "t");
        skopeo_copy(
            s,
            false,
            &format!("oci:{}:t", layout.display()),
            &format!("docker://{}", reg.image(&format!("gc/img:{tag}"))),
        );
    }
    let manifest_one = format!("/v2/gc/img/manifests/{}", one.digest());

    // Without --delete: 405 UNSUPPORTED, for manifests and blobs.
    let r = http("DELETE", reg.host(), &manifest_one, &[], b"").unwrap();
    assert_spec_error(&r, 405, "UNSUPPORTED", "DELETE without --delete");
    let r = http(
        "DELETE",
        reg.host(),
        &format!("/v2/gc/img/blobs/{}", one.layer_digests()[1]),
        &[],
        b"",
    )
    .unwrap();
    assert_spec_error(&r, 405, "UNSUPPORTED", "a blob DELETE without --delete");
    assert_served(&reg, "gc/img", "1", &one.manifest, OCI_MANIFEST);

    // With --delete: 202, and the manifest is gone by digest and by tag.
    let reg = BerthRegistry::start_in(reg.kill(), &["--delete"]);
    let r = http("DELETE", reg.host(), &manifest_one, &[], b"").unwrap();
    assert_eq!(r.status, 202, "DELETE by digest: {}", text(&r.body));
    assert_spec_error(
        &get_manifest(&reg, "gc/img", &one.digest()),
        404,
        "MANIFEST_UNKNOWN",
        "the deleted manifest by digest",
    );
    assert_spec_error(
        &get_manifest(&reg, "gc/img", "1"),
        404,
        "MANIFEST_UNKNOWN",
        "the deleted manifest's tag",
    );
    let r = http("DELETE", reg.host(), &manifest_one, &[], b"").unwrap();
    assert_spec_error(&r, 404, "MANIFEST_UNKNOWN", "a second DELETE");
    // skopeo delete: resolves the tag, then DELETEs by digest.
    skopeo_ok(
        s,
        &[
            "delete",
            "--tls-verify=false",
            &format!("docker://{}", reg.image("gc/img:3")),
        ],
    );
    assert_spec_error(
        &get_manifest(&reg, "gc/img", "3"),
        404,
        "MANIFEST_UNKNOWN",
        "the manifest skopeo deleted",
    );
    assert_served(&reg, "gc/img", "2", &two.manifest, OCI_MANIFEST);
    let tags = http("GET", reg.host(), "/v2/gc/img/tags/list", &[], b"").unwrap();
    assert_eq!(tags.json()["tags"], serde_json::json!(["2"]));

    // gc is refused while a writable server holds the root.
    let root = reg.root();
    let out = registry_gc(&root, &[]);
    assert!(
        !out.status.success(),
        "gc ran beside a writable server: {}",
        text(&out.stdout)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains(root.to_str().unwrap()),
        "gc says why: {stderr}"
    );
    let gone = [
        one.digest(),
        one.id(),
        one.layer_digests()[1].clone(),
        three.digest(),
        three.id(),
        three.layer_digests()[0].clone(),
    ];
    let kept = [
        two.digest(),
        two.id(),
        two.layer_digests()[0].clone(),
        two.layer_digests()[1].clone(),
    ];
    for d in gone.iter().chain(&kept) {
        assert!(stored_blob(&root, d).exists(), "{d} is still stored");
    }

    // Stopped: a dry run lists what goes and deletes nothing; then gc deletes exactly that.
    let dir = reg.kill();
    let root = dir.path().join("root");
    let out = registry_gc(&root, &["--dry-run"]);
    assert!(out.status.success(), "gc --dry-run: {}", text(&out.stderr));
    let listed = text(&out.stdout);
    for d in &gone {
        assert!(
            listed.contains(&format!("would delete blob {d}")),
            "the dry run lists {d}:\n{listed}"
        );
        assert!(stored_blob(&root, d).exists(), "the dry run deleted {d}");
    }
    let out = registry_gc(&root, &[]);
    assert!(out.status.success(), "gc: {}", text(&out.stderr));
    let report = text(&out.stdout);
    for d in &gone {
        assert!(
            report.contains(&format!("deleted blob {d}")),
            "gc reports {d}:\n{report}"
        );
        assert!(!stored_blob(&root, d).exists(), "gc left {d} behind");
    }
    for d in &kept {
        assert!(
            stored_blob(&root, d).exists(),
            "gc deleted {d}, which tag 2 uses:\n{report}"
        );
        assert!(!report.contains(d.as_str()), "gc reports {d}:\n{report}");
    }
    let check = registry_check(&root);
    assert!(check.is_ok(), "{check:?}");

    // Served again: tag 2 copies out whole, the collected layer is unknown.
    let reg = BerthRegistry::start_in(dir, &[]);
    let out = s.join("out");
    skopeo_copy(
        s,
        false,
        &format!("docker://{}", reg.image("gc/img:2")),
        &format!("oci:{}:t", out.display()),
    );
    assert_eq!(layout_tag_digest(&out, "t"), two.digest());
    let r = http(
        "GET",
        reg.host(),
        &format!("/v2/gc/img/blobs/{}", one.layer_digests()[1]),
        &[],
        b"",
    )
    .unwrap();
    assert_spec_error(&r, 404, "BLOB_UNKNOWN", "a collected blob");
}
