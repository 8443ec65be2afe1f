//! The registry client (`berth pull`, `push`, `login`, `logout`) against distribution
//! (docker-registry 2.8) on 127.0.0.1 over plain HTTP: no auth, htpasswd and token auth, a
//! download cut half-way, a corrupted blob, dead registries and bad references; over TLS (and
//! HTTP/2) with `certs.d` CAs, and on another of the host's addresses, where berth verifies
//! certificates unless `daemon.json` lists the registry as insecure; Docker Hub mirrors; a pull
//! killed half-way. skopeo checks what berth pushes and pushes what berth pulls.
//!
//! The `fixture_*` tests prove the harness itself (common/registry.rs) with skopeo and curl;
//! every other test runs berth's registry client. Each test starts its own registry (and token
//! server or proxy), all gone when the test ends.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{host::Host, registry::*, *};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Helpers

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// A berth that has no image yet, with a Host's cleanup of containers on Drop.
fn bare_host() -> Host {
    Host {
        berth: Berth::new(),
    }
}

/// Expects a failure with exit code 1 and exactly one line on stderr that mentions one of
/// `needles` (case-insensitive). Returns that line.
fn assert_error(out: &Output, what: &str, needles: &[&str]) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1, got {}\nstdout: {}\nstderr: {stderr}",
        out.status,
        text(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected one line on stderr, got:\n{stderr}"
    );
    let lower = lines[0].to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{what}: stderr should mention one of {needles:?}: {stderr}"
    );
    lines[0].to_string()
}

/// Expects exit code 1 and stderr mentioning one of `needles` (other lines allowed: `login -p`
/// warns about the password on the command line, as docker does).
fn assert_failed_mentioning(out: &Output, what: &str, needles: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit code 1, got {}\nstdout: {}\nstderr: {stderr}",
        out.status,
        text(&out.stdout)
    );
    let lower = stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{what}: stderr should mention one of {needles:?}: {stderr}"
    );
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Pulled {
    /// `Status: Downloaded newer image for REF`
    Downloaded,
    /// `Status: Image is up to date for REF`
    UpToDate,
}

/// `berth pull REF` printed docker's plain ending: `Digest: DIGEST`, the status line, and the
/// reference alone on the last line.
fn assert_pulled(out: &str, reference: &str, digest: &str, status: Pulled) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some(reference),
        "pull's last line is the reference:\n{out}"
    );
    assert!(
        lines.contains(&format!("Digest: {digest}").as_str()),
        "pull prints `Digest: {digest}`:\n{out}"
    );
    let want = match status {
        Pulled::Downloaded => format!("Status: Downloaded newer image for {reference}"),
        Pulled::UpToDate => format!("Status: Image is up to date for {reference}"),
    };
    assert!(
        lines.contains(&want.as_str()),
        "pull prints `{want}`:\n{out}"
    );
}

/// Which per-layer line a push may print.
fn is_layer_line(line: &str, allowed: &[&str]) -> bool {
    let Some((id, status)) = line.split_once(": ") else {
        return false;
    };
    id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && allowed.iter().any(|a| {
            if *a == "Mounted from" {
                status.starts_with("Mounted from ")
            } else {
                status == *a
            }
        })
}

/// `berth push` of `repo:tag` printed `The push refers to repository [repo]`, at least
/// `layers` per-layer lines with statuses in `allowed` and no other final status, and
/// `TAG: digest: sha256:... size: N` last. Returns the digest and the size.
fn assert_pushed(
    out: &str,
    repo: &str,
    tag: &str,
    layers: usize,
    allowed: &[&str],
) -> (String, usize) {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("The push refers to repository [{repo}]").as_str()),
        "push's first line:\n{out}"
    );
    let done = lines
        .iter()
        .filter(|l| is_layer_line(l, &["Pushed", "Layer already exists", "Mounted from"]))
        .collect::<Vec<_>>();
    assert!(
        done.len() >= layers,
        "push prints a final line per layer ({layers}):\n{out}"
    );
    for l in &done {
        assert!(
            is_layer_line(l, allowed),
            "push printed `{l}`, expected one of {allowed:?}:\n{out}"
        );
    }
    let last = lines.last().copied().unwrap_or_default();
    let rest = last
        .strip_prefix(&format!("{tag}: digest: "))
        .unwrap_or_else(|| panic!("push's last line is `{tag}: digest: ... size: N`:\n{out}"));
    let (digest, size) = rest
        .split_once(" size: ")
        .unwrap_or_else(|| panic!("push's last line has no size:\n{out}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "not a digest: {digest}"
    );
    (digest.to_string(), size.parse().expect("size is a number"))
}

/// `berth image inspect IMAGE` as JSON (the first element).
fn inspect(b: &Berth, image: &str) -> Value {
    json(&b.ok(&["image", "inspect", image]))[0].clone()
}

fn architecture(b: &Berth, image: &str) -> String {
    b.ok(&["image", "inspect", "--format", "{{.Architecture}}", image])
        .trim()
        .to_string()
}

fn repo_digests(b: &Berth, image: &str) -> Vec<String> {
    inspect(b, image)["RepoDigests"]
        .as_array()
        .expect("RepoDigests is a list")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Every image ID in the store (`images -a -q --no-trunc`).
fn image_ids(b: &Berth) -> Vec<String> {
    b.ok(&["images", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The ingest directory holds nothing (it may not exist).
fn assert_no_ingest(b: &Berth) {
    let dir = b.root().join("ingest");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
}

/// The store verifies: every blob hashes to its name and `berth system check` passes.
fn assert_store_sound(b: &Berth) {
    b.assert_blobs_verify();
    b.ok(&["system", "check"]);
    assert_no_ingest(b);
}

fn config_json(b: &Berth) -> Option<Value> {
    let path = b.docker_config().join("config.json");
    std::fs::read_to_string(path).ok().map(|s| json(&s))
}

/// The `auths` entry for `server` in this berth's config.json, if any.
fn auth_entry(b: &Berth, server: &str) -> Option<Value> {
    config_json(b)?
        .get("auths")?
        .get(server)
        .filter(|v| !v.is_null())
        .cloned()
}

/// `berth login -u USER --password-stdin SERVER` with `pass` on stdin.
fn login(b: &Berth, user: &str, pass: &str, server: &str) -> Output {
    b.run_stdin(
        &["login", "-u", user, "--password-stdin", server],
        format!("{pass}\n").as_bytes(),
    )
}

fn assert_logged_in(b: &Berth, user: &str, pass: &str, server: &str) {
    let out = login(b, user, pass, server);
    assert_success(&out, &["login", "-u", user, "--password-stdin", server]);
    assert!(
        text(&out.stdout).lines().any(|l| l == "Login Succeeded"),
        "login prints `Login Succeeded`: {}",
        text(&out.stdout)
    );
    let entry = auth_entry(b, server).unwrap_or_else(|| {
        panic!(
            "config.json has no auths entry for {server}: {:?}",
            config_json(b)
        )
    });
    assert_eq!(
        entry["auth"].as_str(),
        Some(base64(format!("{user}:{pass}").as_bytes()).as_str()),
        "docker's config.json keeps base64(user:pass) in auths.{server}.auth"
    );
}

fn logout(b: &Berth, server: &str) {
    let out = b.ok(&["logout", server]);
    assert!(
        out.lines()
            .any(|l| l == format!("Removing login credentials for {server}")),
        "logout says what it removes: {out}"
    );
    assert_eq!(
        auth_entry(b, server),
        None,
        "logout removes the auths entry"
    );
}

/// A directory that lives as long as `b`.
fn work_dir(b: &Berth, name: &str) -> PathBuf {
    let d = b.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Pushes `image` as `reg`'s `name:tag` with skopeo (from an OCI layout under `scratch`).
fn skopeo_push(reg: &Registry, scratch: &Path, image: &TestImage, name_tag: &str) -> String {
    let layout = scratch.join(format!("layout-{}", name_tag.replace(['/', ':'], "-")));
    image.write_layout(&layout, "t");
    let reference = reg.image(name_tag);
    skopeo_push_layout(&layout, "t", &reference, false, None);
    reference
}

/// `berth ARGS` with `env` set, and no proxy from the host's environment (a registry on a
/// non-loopback address would otherwise be reached through it).
fn run_env(b: &Berth, env: &[(&str, &Path)], args: &[&str]) -> Output {
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
    c.envs(env.iter().map(|(k, v)| (k, v)));
    c.args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run berth")
}

/// [`run_env`], expecting success; returns stdout.
fn ok_env(b: &Berth, env: &[(&str, &Path)], args: &[&str]) -> String {
    let out = run_env(b, env, args);
    assert_success(&out, args);
    text(&out.stdout)
}

/// The requests berth made (by its User-Agent) that `reg` logged, once `until` holds for
/// them (the registry writes a request's line after answering it).
fn berth_requests(reg: &Registry, until: impl Fn(&[AccessEntry]) -> bool) -> Vec<AccessEntry> {
    let mine = || -> Vec<AccessEntry> {
        reg.access_log()
            .into_iter()
            .filter(|e| e.user_agent.starts_with("berth/"))
            .collect()
    };
    eventually(
        10,
        "the registry to log berth's requests",
        || until(&mine()),
    );
    mine()
}

/// Whether a logged request is `method` on a target containing `part`.
fn logged(entries: &[AccessEntry], method: &str, part: &str) -> bool {
    entries
        .iter()
        .any(|e| e.method == method && e.target.contains(part) && e.status < 400)
}

/// A port on 127.0.0.1 that nothing listens on (bound and let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(args: &[&str]) -> Output {
    require_tool("curl");
    Command::new("curl").args(args).output().expect("run curl")
}

// ---------------------------------------------------------------------------------------------
// The harness, proven with skopeo and curl

#[test]
fn fixture_plain_registry_with_skopeo() {
    let reg = Registry::plain();
    let r = http("GET", &reg.host(), "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let img = multi_layer_image();
    let layout = reg.dir().join("layout");
    img.write_layout(&layout, "1");
    let reference = reg.image("test/multi:1");
    skopeo_push_layout(&layout, "1", &reference, false, None);
    assert_eq!(
        skopeo_raw(&reference, None),
        img.manifest,
        "skopeo pushes the layout's manifest byte for byte"
    );
    let inspect = json(&run_tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ],
    ));
    assert_eq!(inspect["Digest"].as_str(), Some(img.digest().as_str()));
    assert_eq!(inspect["Architecture"].as_str(), Some(berth_arch()));
    let layers: Vec<String> = serde_json::from_value(inspect["Layers"].clone()).unwrap();
    assert_eq!(layers, img.layer_digests());
    // blob_data_path is where distribution keeps the bytes.
    for (digest, blob) in img.layer_digests().iter().zip(&img.layers) {
        assert_eq!(&std::fs::read(reg.blob_data_path(digest)).unwrap(), blob);
    }
    assert_eq!(
        std::fs::read(reg.blob_data_path(&img.id())).unwrap(),
        img.config
    );
    // The same image as a layout tar loads into berth with the same ID.
    let b = Berth::new();
    assert_success(&b.run_stdin(&["load"], &img.layout_tar("1")), &["load"]);
    assert_eq!(image_ids(&b), vec![img.id()]);
    // Drop kills the registry and removes its storage.
    let (host, dir) = (reg.host(), reg.dir().to_path_buf());
    drop(reg);
    assert!(common::nothing_listens(&host), "{host} still answers");
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[test]
fn fixture_htpasswd_registry() {
    let reg = Registry::htpasswd("alice", "wonderland");
    let r = http("GET", &reg.host(), "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic ")),
        "{:?}",
        r.head
    );
    let good = format!("Basic {}", base64(b"alice:wonderland"));
    let bad = format!("Basic {}", base64(b"alice:queen"));
    let r = http("GET", &reg.host(), "/v2/", &[("Authorization", &good)], b"").unwrap();
    assert_eq!(r.status, 200);
    let r = http("GET", &reg.host(), "/v2/", &[("Authorization", &bad)], b"").unwrap();
    assert_eq!(r.status, 401);

    let img = TestImage::new(
        berth_arch(),
        &[layer_tar(&[("etc/", b""), ("etc/x", b"x\n")])],
    );
    let layout = reg.dir().join("layout");
    img.write_layout(&layout, "1");
    let reference = reg.image("test/img:1");
    let anonymous = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "an anonymous push must fail");
    skopeo_push_layout(&layout, "1", &reference, false, Some("alice:wonderland"));
    assert_eq!(
        skopeo_raw(&reference, Some("alice:wonderland")),
        img.manifest
    );
    let out = curl(&[
        "-sf",
        "-u",
        "alice:wonderland",
        &format!("http://{}/v2/_catalog", reg.host()),
    ]);
    assert!(out.status.success());
    assert_eq!(
        json(&text(&out.stdout))["repositories"],
        serde_json::json!(["test/img"])
    );
    let out = curl(&["-sf", &format!("http://{}/v2/_catalog", reg.host())]);
    assert!(!out.status.success(), "curl without credentials must fail");
}

#[test]
fn fixture_token_registry() {
    let reg = Registry::token(TokenPolicy::user("bob", "builder").anonymous_pull("public/"));
    let tokens = reg.tokens();
    let r = http("GET", &reg.host(), "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(
            format!(
                r#"Bearer realm="{}",service="{TOKEN_SERVICE}""#,
                tokens.realm()
            )
            .as_str()
        )
    );
    // The token's shape: RS256 with the certificate in x5c.
    let t = tokens.fetch(None, &[]).json();
    let token = t["token"].as_str().unwrap();
    assert_eq!(t["access_token"].as_str(), Some(token));
    assert_eq!(t["expires_in"], 300);
    assert!(t["issued_at"].as_str().unwrap().ends_with('Z'));
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = json(&text(&base64_decode(parts[0]).unwrap()));
    assert_eq!(header["alg"], "RS256");
    let claims = json(&text(&base64_decode(parts[1]).unwrap()));
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["iss"], TOKEN_ISSUER);
    // The registry accepts an anonymous token for /v2/.
    let bearer = format!("Bearer {token}");
    let r = http(
        "GET",
        &reg.host(),
        "/v2/",
        &[("Authorization", &bearer)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", text(&r.body));
    // A wrong password is refused by the token server.
    assert_eq!(tokens.fetch(Some(("bob", "nope")), &[]).status, 401);

    // skopeo pushes with credentials, to a private and a public repository.
    let img = TestImage::new(
        berth_arch(),
        &[layer_tar(&[("etc/", b""), ("etc/x", b"x\n")])],
    );
    let layout = reg.dir().join("layout");
    img.write_layout(&layout, "1");
    let private = reg.image("test/img:1");
    let public = reg.image("public/img:1");
    let before = tokens.count();
    skopeo_push_layout(&layout, "1", &private, false, Some("bob:builder"));
    skopeo_push_layout(&layout, "1", &public, false, Some("bob:builder"));
    let reqs = tokens.requests();
    assert!(tokens.count() > before);
    assert!(
        reqs.iter().any(|r| r.user.as_deref() == Some("bob")
            && r.granted.to_string().contains(r#""name":"test/img""#)
            && r.granted.to_string().contains("push")),
        "bob got push on test/img: {reqs:#?}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.service.as_deref() == Some(TOKEN_SERVICE))
    );
    // Anonymous skopeo: the public repository reads, the private one does not, nothing pushes.
    assert_eq!(skopeo_raw(&public, None), img.manifest);
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{private}"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "anonymous read of test/img must fail"
    );
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:1", layout.display()))
        .arg(format!("docker://{}", reg.image("public/other:1")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "anonymous push must fail");
    // curl with an anonymous token: pull is granted, push is not.
    let t = tokens
        .fetch(None, &["repository:public/img:pull,push"])
        .json();
    let token = t["token"].as_str().unwrap().to_string();
    let granted = tokens.requests().last().unwrap().granted.clone();
    assert_eq!(
        granted,
        serde_json::json!([{"type": "repository", "name": "public/img", "actions": ["pull"]}])
    );
    let out = curl(&[
        "-sf",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        &format!("Accept: {OCI_MANIFEST}"),
        &format!("http://{}/v2/public/img/manifests/1", reg.host()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, img.manifest);
    let out = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("http://{}/v2/public/img/blobs/uploads/", reg.host()),
    ]);
    assert_eq!(text(&out.stdout), "401", "an anonymous token cannot push");
    // And bob's token through the OAuth2 password grant (POST) works too.
    let r = http(
        "POST",
        &tokens.host(),
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!(
            "grant_type=password&username=bob&password=builder&service={TOKEN_SERVICE}\
             &scope=repository%3Atest%2Fimg%3Apull&client_id=test"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let bearer = format!("Bearer {}", r.json()["access_token"].as_str().unwrap());
    let r = http(
        "GET",
        &reg.host(),
        "/v2/test/img/manifests/1",
        &[("Authorization", &bearer), ("Accept", OCI_MANIFEST)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, img.manifest);
    let token_host = tokens.host();
    drop(reg);
    assert!(
        common::nothing_listens(&token_host),
        "the token server still listens"
    );
}

#[test]
fn fixture_cut_proxy_with_curl() {
    let reg = Registry::plain();
    let big = layer_tar(&[("big/", b""), ("big/random", &random_bytes(3 << 20, 1))]);
    let img = TestImage::new(berth_arch(), &[big]);
    let layout = reg.dir().join("layout");
    img.write_layout(&layout, "1");
    skopeo_push_layout(&layout, "1", &reg.image("test/big:1"), false, None);
    let proxy = CutProxy::new(&reg.host());
    let layer = &img.layer_digests()[0];
    let len = img.layers[0].len() as u64;
    let url = format!("http://{}/v2/test/big/blobs/{layer}", proxy.host());
    // Small responses pass: the manifest through the proxy.
    let out = curl(&[
        "-sf",
        "-H",
        &format!("Accept: {OCI_MANIFEST}"),
        &format!("http://{}/v2/test/big/manifests/1", proxy.host()),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, img.manifest);
    // The first big blob download stops half-way: curl exits 18 (partial file).
    let part = reg.dir().join("part");
    let out = curl(&["-s", "-o", part.to_str().unwrap(), &url]);
    assert_eq!(out.status.code(), Some(18), "{}", text(&out.stderr));
    let cut = proxy.cut().expect("the proxy cut the download");
    assert_eq!(cut.content_length, len);
    assert_eq!(cut.forwarded, len / 2);
    assert!(cut.target.ends_with(layer.as_str()));
    let mut data = std::fs::read(&part).unwrap();
    assert_eq!(data.len() as u64, cut.forwarded);
    // The rest, asked for with a Range, comes whole.
    let rest = reg.dir().join("rest");
    let out = curl(&[
        "-sf",
        "-r",
        &format!("{}-", cut.forwarded),
        "-o",
        rest.to_str().unwrap(),
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    data.extend(std::fs::read(&rest).unwrap());
    assert_eq!(&digest_of(&data), layer);
    let ranges = proxy.range_requests();
    assert_eq!(ranges.len(), 1, "{:#?}", proxy.requests());
    assert_eq!(ranges[0].range_start(), Some(cut.forwarded));
    assert_eq!(ranges[0].status, 206);
    // Once cut, it passes everything: skopeo copies the image through it.
    let copy = reg.dir().join("copy");
    run_tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{}/test/big:1", proxy.host()),
            &format!("oci:{}:1", copy.display()),
        ],
    );
    let proxy_host = proxy.host();
    drop(proxy);
    assert!(
        common::nothing_listens(&proxy_host),
        "the proxy still listens"
    );
}

#[test]
fn fixture_corrupted_blob_is_served() {
    // What corrupted_blob_is_refused relies on: the registry serves the overwritten bytes as
    // they are, and a client that checks digests refuses them.
    let reg = Registry::plain();
    let good = layer_tar(&[("data/", b""), ("data/file", &random_bytes(256 << 10, 7))]);
    let evil = layer_tar(&[("data/", b""), ("data/file", &random_bytes(256 << 10, 8))]);
    let img = TestImage::from_layers(berth_arch(), vec![ImageLayer::stored_gzip(&good)]);
    let layout = reg.dir().join("layout");
    img.write_layout(&layout, "1");
    let reference = reg.image("test/bad:1");
    skopeo_push_layout(&layout, "1", &reference, false, None);
    let layer = img.layer_digests()[0].clone();
    let replacement = ImageLayer::stored_gzip(&evil).blob;
    assert_eq!(replacement.len(), img.layers[0].len());
    assert_ne!(replacement, img.layers[0]);
    std::fs::write(reg.blob_data_path(&layer), &replacement).unwrap();
    let r = http(
        "GET",
        &reg.host(),
        &format!("/v2/test/bad/blobs/{layer}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(layer.as_str()));
    assert_eq!(r.body, replacement);
    let copy = reg.dir().join("copy");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:1", copy.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "skopeo must refuse the corrupted layer"
    );
    assert!(
        text(&out.stderr).contains(layer.strip_prefix("sha256:").unwrap()),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fixture_index_layout_with_skopeo() {
    let reg = Registry::plain();
    let (native, other) = two_platform_images();
    let layout = reg.dir().join("layout");
    let index_digest = write_index_layout(&layout, "1", &[&native, &other]);
    let reference = reg.image("test/multiarch:1");
    skopeo_push_layout(&layout, "1", &reference, true, None);
    let raw = skopeo_raw(&reference, None);
    assert_eq!(
        digest_of(&raw),
        index_digest,
        "skopeo pushes the index byte for byte"
    );
    let index = json(&text(&raw));
    assert_eq!(index["mediaType"], OCI_INDEX);
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, vec![berth_arch(), other_arch()]);
    for img in [&native, &other] {
        let by_digest = reg.image(&format!("test/multiarch@{}", img.digest()));
        assert_eq!(skopeo_raw(&by_digest, None), img.manifest);
        let inspect = json(&run_tool(
            "skopeo",
            &[
                "--override-arch",
                &img.arch,
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ],
        ));
        assert_eq!(inspect["Architecture"].as_str(), Some(img.arch.as_str()));
        // Digest is the index's; the layers are the platform's.
        assert_eq!(inspect["Digest"].as_str(), Some(index_digest.as_str()));
        let layers: Vec<String> = serde_json::from_value(inspect["Layers"].clone()).unwrap();
        assert_eq!(layers, img.layer_digests());
    }
}

// ---------------------------------------------------------------------------------------------
// The client

#[test]
fn push_to_plain_registry_then_skopeo_reads_it() {
    let reg = Registry::plain();
    let host = Host::new();
    let b = &host.berth;
    let image = reg.image("test/bb:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);

    let out = b.ok(&["push", &image]);
    let (digest, size) = assert_pushed(&out, &reg.image("test/bb"), "1", 1, &["Pushed"]);
    let raw = skopeo_raw(&image, None);
    assert_eq!(digest, digest_of(&raw), "push prints the manifest's digest");
    assert_eq!(size, raw.len(), "push prints the manifest's size");
    let manifest = json(&text(&raw));
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        Some(id.as_str()),
        "the pushed config is the image ID"
    );
    // skopeo verifies every digest as it copies.
    let copied = work_dir(b, "copied");
    run_tool(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{image}"),
            &format!("oci:{}:bb", copied.display()),
        ],
    );

    // Again: nothing to upload.
    let out = b.ok(&["push", &image]);
    let (again, _) = assert_pushed(
        &out,
        &reg.image("test/bb"),
        "1",
        1,
        &["Layer already exists"],
    );
    assert_eq!(again, digest);
    // To another repository of the same registry: uploaded or mounted, same manifest.
    let other = reg.image("test/other:2");
    b.ok(&["tag", "busybox:latest", &other]);
    let out = b.ok(&["push", &other]);
    let (other_digest, _) = assert_pushed(
        &out,
        &reg.image("test/other"),
        "2",
        1,
        &["Pushed", "Mounted from", "Layer already exists"],
    );
    assert_eq!(other_digest, digest);

    // And back.
    b.ok(&["rmi", &image, &other, "busybox:latest"]);
    assert_eq!(image_ids(b), Vec::<String>::new());
    let out = b.ok(&["pull", &image]);
    assert_pulled(&out, &image, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&image), id);
    let repo_digest = format!("{}@{digest}", reg.image("test/bb"));
    assert!(
        repo_digests(b, &image).contains(&repo_digest),
        "RepoDigests has {repo_digest}: {:?}",
        repo_digests(b, &image)
    );
    host.run_ok(&[&image, "true"]);
    assert_store_sound(b);
}

#[test]
fn skopeo_push_then_berth_pull_and_run() {
    let reg = Registry::plain();
    let host = bare_host();
    let b = &host.berth;
    let img = multi_layer_image();
    let reference = skopeo_push(&reg, &work_dir(b, "scratch"), &img, "test/multi:1");
    let digest = digest_of(&skopeo_raw(&reference, None));

    let out = b.ok(&["pull", &reference]);
    assert_pulled(&out, &reference, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&reference), img.id());
    assert_eq!(
        inspect(b, &reference)["RootFS"]["Layers"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let out = host.run_ok(&[
        &reference,
        "sh",
        "-c",
        "cat /layer2/marker /layer3/marker; test -e /layer2/gone || echo whited-out",
    ]);
    assert_eq!(out, "two\nthree\nwhited-out\n");

    // Again: nothing new.
    let out = b.ok(&["pull", &reference]);
    assert_pulled(&out, &reference, &digest, Pulled::UpToDate);
    // By digest: the digested reference is what it names.
    let by_digest = reg.image(&format!("test/multi@{digest}"));
    let out = b.ok(&["pull", &by_digest]);
    assert_eq!(out.lines().last(), Some(by_digest.as_str()), "{out}");
    assert_eq!(b.image_id(&by_digest), img.id());
    // -q: the reference only.
    assert_eq!(b.ok(&["pull", "-q", &reference]), format!("{reference}\n"));
    assert_eq!(image_ids(b), vec![img.id()]);
    assert_store_sound(b);
}

#[test]
fn index_with_two_platforms() {
    let reg = Registry::plain();
    let host = bare_host();
    let b = &host.berth;
    let (native, other) = two_platform_images();
    let layout = work_dir(b, "layout");
    write_index_layout(&layout, "1", &[&native, &other]);
    let reference = reg.image("test/multiarch:1");
    skopeo_push_layout(&layout, "1", &reference, true, None);
    let index_digest = digest_of(&skopeo_raw(&reference, None));
    let repo_digest = format!("{}@{index_digest}", reg.image("test/multiarch"));

    // The host's platform by default.
    let out = b.ok(&["pull", &reference]);
    assert_pulled(&out, &reference, &index_digest, Pulled::Downloaded);
    assert_eq!(architecture(b, &reference), berth_arch());
    assert_eq!(b.image_id(&reference), native.id());
    assert!(
        repo_digests(b, &reference).contains(&repo_digest),
        "the repo digest is the index's ({repo_digest}): {:?}",
        repo_digests(b, &reference)
    );
    let out = host.run_ok(&[&reference, "cat", "/etc/platform"]);
    assert_eq!(out, format!("{}\n", berth_arch()));

    // --platform picks the other manifest (not runnable here; inspected only).
    let platform = format!("linux/{}", other_arch());
    let out = b.ok(&["pull", "-q", "--platform", &platform, &reference]);
    assert_eq!(out, format!("{reference}\n"));
    assert_eq!(architecture(b, &reference), other_arch());
    assert_eq!(b.image_id(&reference), other.id());
    // `NAME@INDEX_DIGEST` names one image: docker 20.10 leaves it on the first platform pulled
    // (this one has none); moving it here is fine too. Never the platform manifest's digest.
    let digests = repo_digests(b, &reference);
    assert!(
        digests.iter().all(|d| *d == repo_digest),
        "the only repo digest may be the index's ({repo_digest}): {digests:?}"
    );
    assert_store_sound(b);
}

#[test]
fn htpasswd_login_push_pull_logout() {
    let reg = Registry::htpasswd("alice", "wonderland");
    let server = reg.host();
    let host = Host::new();
    let b = &host.berth;
    let image = reg.image("test/bb:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);

    let out = b.run(&["push", &image]);
    assert_error(&out, "push before login", &["login", "unauthorized"]);
    let out = b.run(&["login", "-u", "alice", "-p", "queen", &server]);
    assert_failed_mentioning(
        &out,
        "login with a wrong password",
        &["unauthorized", "incorrect", "invalid"],
    );
    assert_eq!(
        auth_entry(b, &server),
        None,
        "a failed login stores nothing"
    );

    assert_logged_in(b, "alice", "wonderland", &server);
    let out = b.ok(&["push", &image]);
    let (digest, _) = assert_pushed(&out, &reg.image("test/bb"), "1", 1, &["Pushed"]);
    // skopeo reads the credentials berth wrote.
    let authfile = b.docker_config().join("config.json");
    let raw = run_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--authfile",
            authfile.to_str().unwrap(),
            &format!("docker://{image}"),
        ],
    );
    assert_eq!(digest_of(raw.as_bytes()), digest);

    b.ok(&["rmi", &image, "busybox:latest"]);
    let out = b.ok(&["pull", &image]);
    assert_pulled(&out, &image, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&image), id);
    host.run_ok(&[&image, "true"]);

    logout(b, &server);
    let out = b.run(&["pull", &image]);
    assert_error(&out, "pull after logout", &["login", "unauthorized"]);
    assert_store_sound(b);
}

#[test]
fn token_server_flow() {
    let reg = Registry::token(TokenPolicy::user("bob", "builder").anonymous_pull("public/"));
    let tokens = reg.tokens();
    let server = reg.host();
    let host = Host::new();
    let b = &host.berth;
    let private = reg.image("test/bb:1");
    let public = reg.image("public/bb:1");
    b.ok(&["tag", "busybox:latest", &private]);
    b.ok(&["tag", "busybox:latest", &public]);
    let id = b.image_id(&private);

    // Anonymous users may not push.
    let out = b.run(&["push", &public]);
    assert_error(&out, "anonymous push", &["login", "unauthorized", "denied"]);
    // A wrong password is refused by the token server.
    let out = b.run(&["login", "-u", "bob", "-p", "nope", &server]);
    assert_failed_mentioning(
        &out,
        "login with a wrong password",
        &["unauthorized", "incorrect", "invalid"],
    );
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.sent_credentials && r.status == 401),
        "login asked the token server: {:#?}",
        tokens.requests()
    );
    assert_eq!(auth_entry(b, &server), None);

    assert_logged_in(b, "bob", "builder", &server);
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.user.as_deref() == Some("bob")),
        "login got a token as bob: {:#?}",
        tokens.requests()
    );

    // A push asks for its token once and reuses it (the upload alone is several requests).
    let before = tokens.count();
    let out = b.ok(&["push", &private]);
    let (digest, _) = assert_pushed(&out, &reg.image("test/bb"), "1", 1, &["Pushed"]);
    let asked = &tokens.requests()[before..];
    assert!(
        (1..=3).contains(&asked.len()),
        "a push reuses its token: {asked:#?}"
    );
    assert!(
        asked.iter().any(|r| r.user.as_deref() == Some("bob")
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:test/bb:") && s.contains("push"))),
        "the push asked for push on test/bb as bob: {asked:#?}"
    );
    b.ok(&["push", &public]);
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.service.as_deref() == Some(TOKEN_SERVICE)),
        "every token request names the service: {:#?}",
        tokens.requests()
    );

    // Logged out: the public repository pulls anonymously, the private one does not.
    logout(b, &server);
    b.ok(&["rmi", &private, &public, "busybox:latest"]);
    let before = tokens.count();
    let out = b.ok(&["pull", &public]);
    assert_pulled(&out, &public, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&public), id);
    let asked = &tokens.requests()[before..];
    assert!(
        !asked.is_empty() && asked.iter().all(|r| !r.sent_credentials),
        "an anonymous pull asks for an anonymous token: {asked:#?}"
    );
    let out = b.run(&["pull", &private]);
    assert_error(
        &out,
        "anonymous pull of a private repository",
        &["login", "unauthorized", "denied"],
    );

    // Logged in again, the private one pulls.
    assert_logged_in(b, "bob", "builder", &server);
    let out = b.ok(&["pull", &private]);
    assert_pulled(&out, &private, &digest, Pulled::Downloaded);
    host.run_ok(&[&private, "true"]);
    assert_store_sound(b);
}

#[test]
fn resume_after_cut() {
    let reg = Registry::plain();
    let b = Berth::new();
    let big = layer_tar(&[("big/", b""), ("big/random", &random_bytes(8 << 20, 42))]);
    let small = layer_tar(&[("etc/", b""), ("etc/marker", b"small\n")]);
    let img = TestImage::new(berth_arch(), &[small, big]);
    skopeo_push(&reg, &work_dir(&b, "scratch"), &img, "test/big:1");
    let big_digest = img.layer_digests()[1].clone();

    let proxy = CutProxy::new(&reg.host());
    let reference = format!("{}/test/big:1", proxy.host());
    let out = b.run(&["pull", &reference]);
    assert_success(&out, &["pull", &reference]);
    let cut = proxy.cut().expect("the proxy cut a download");
    assert!(
        cut.target.ends_with(&big_digest),
        "the big layer was cut: {cut:?}"
    );
    let resumed: Vec<_> = proxy
        .range_requests()
        .into_iter()
        .filter(|r| r.target == cut.target)
        .collect();
    assert!(
        !resumed.is_empty(),
        "after the cut at {} the client asked for `Range: bytes=N-`: {:#?}",
        cut.forwarded,
        proxy.requests()
    );
    let start = resumed[0].range_start().expect("Range: bytes=N-");
    assert!(
        start > 0 && start <= cut.forwarded,
        "resumed at {start}, {} bytes had come",
        cut.forwarded
    );
    assert_eq!(b.image_id(&reference), img.id());
    assert_store_sound(&b);
}

#[test]
fn corrupted_blob_is_refused() {
    let reg = Registry::plain();
    let b = Berth::new();
    // Stored-deflate gzip: the corrupted blob is valid gzip and a valid tar of the same length,
    // so only the digest can tell.
    let good = layer_tar(&[("data/", b""), ("data/file", &random_bytes(256 << 10, 7))]);
    let evil = layer_tar(&[("data/", b""), ("data/file", &random_bytes(256 << 10, 8))]);
    let layer = ImageLayer::stored_gzip(&good);
    let diff_id = layer.diff_id.clone();
    let img = TestImage::from_layers(berth_arch(), vec![layer]);
    let reference = skopeo_push(&reg, &work_dir(&b, "scratch"), &img, "test/bad:1");
    let layer_digest = img.layer_digests()[0].clone();
    let replacement = ImageLayer::stored_gzip(&evil).blob;
    let path = reg.blob_data_path(&layer_digest);
    assert_eq!(std::fs::read(&path).unwrap().len(), replacement.len());
    std::fs::write(&path, &replacement).unwrap();

    let out = b.run(&["pull", &reference]);
    assert_error(
        &out,
        "pull of a corrupted layer",
        &[
            layer_digest.strip_prefix("sha256:").unwrap(),
            diff_id.strip_prefix("sha256:").unwrap(),
        ],
    );
    assert_eq!(image_ids(&b), Vec::<String>::new(), "no image is made");
    let out = b.run(&["image", "inspect", &reference]);
    assert!(!out.status.success());
    assert_store_sound(&b);
}

#[test]
fn bad_references_and_dead_registry() {
    let reg = Registry::plain();
    let b = Berth::new();
    let img = TestImage::new(
        berth_arch(),
        &[layer_tar(&[("etc/", b""), ("etc/x", b"x\n")])],
    );
    skopeo_push(&reg, &work_dir(&b, "scratch"), &img, "test/bb:1");

    for missing in ["test/bb:nope", "test/nothing:1"] {
        let reference = reg.image(missing);
        let out = b.run(&["pull", &reference]);
        let line = assert_error(
            &out,
            &format!("pull {reference}"),
            &["not found", "manifest unknown"],
        );
        assert!(line.contains(missing), "the error names {missing}: {line}");
    }
    let zero = format!("sha256:{}", "0".repeat(64));
    let out = b.run(&["pull", &reg.image(&format!("test/bb@{zero}"))]);
    assert_error(
        &out,
        "pull of a missing digest",
        &["not found", "manifest unknown"],
    );

    // Nothing listens on port 1: a connection error, and soon.
    let start = Instant::now();
    let out = b.run(&["pull", "127.0.0.1:1/test/bb:1"]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "pull from a dead registry took {took:?}"
    );
    let line = assert_error(&out, "pull from a dead registry", &["connect", "refused"]);
    assert!(
        line.contains("127.0.0.1:1"),
        "the error names the registry: {line}"
    );

    let out = b.run(&["pull", "Test/BB:1"]);
    assert_error(&out, "pull of an invalid reference", &["invalid reference"]);
    let absent = reg.image("test/absent:1");
    let out = b.run(&["push", &absent]);
    assert_error(
        &out,
        "push of an image berth does not have",
        &["test/absent", "does not exist", "no such image"],
    );

    assert_eq!(image_ids(&b), Vec::<String>::new());
    assert_no_ingest(&b);
}

#[test]
fn all_tags_push_and_pull() {
    let reg = Registry::plain();
    let host = Host::new();
    let b = &host.berth;
    let repo = reg.image("test/tags");
    for tag in ["1", "2"] {
        b.ok(&["tag", "busybox:latest", &format!("{repo}:{tag}")]);
    }
    let out = b.ok(&["push", "-a", &repo]);
    for tag in ["1", "2"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{tag}: digest: sha256:"))),
            "push -a pushes tag {tag}:\n{out}"
        );
    }
    let listed = json(&run_tool(
        "skopeo",
        &[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{repo}"),
        ],
    ));
    let mut tags: Vec<String> = serde_json::from_value(listed["Tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, vec!["1", "2"]);

    let fresh = Berth::new();
    let out = fresh.ok(&["pull", "-a", &repo]);
    assert_eq!(
        out.lines().last(),
        Some(repo.as_str()),
        "pull -a ends with the repository, as docker's does:\n{out}"
    );
    let id = b.image_id("busybox:latest");
    for tag in ["1", "2"] {
        assert_eq!(fresh.image_id(&format!("{repo}:{tag}")), id);
    }
    assert_store_sound(&fresh);
}

// ---------------------------------------------------------------------------------------------
// TLS, daemon.json, mirrors, and a pull killed half-way

#[test]
fn tls_registry_over_http2_with_certs_d() {
    let ca = TestCa::new();
    let host = Host::new();
    let b = &host.berth;
    let certs = work_dir(b, "certs.d");
    // No daemon.json (a host's /etc/berth/daemon.json must not make these registries insecure).
    let no_config = b.dir.path().join("no-daemon.json");
    let env = [
        ("BERTH_CERTS_DIR", certs.as_path()),
        ("BERTH_DAEMON_CONFIG", no_config.as_path()),
    ];

    // (a) On loopback: berth tries HTTPS first (unverified there, as Docker treats local
    // registries as insecure), and speaks HTTP/2 to it.
    let reg = Registry::plain_with(RegistryOptions {
        tls: Some(&ca),
        access_log: true,
        ..Default::default()
    });
    let r = http("GET", &reg.host(), "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 400, "the registry serves HTTPS only");
    ca.install(&certs, &reg.host());
    let image = reg.image("test/tls:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);
    let out = ok_env(b, &env, &["push", &image]);
    let (digest, _) = assert_pushed(&out, &reg.image("test/tls"), "1", 1, &["Pushed"]);
    b.ok(&["rmi", &image, "busybox:latest"]);
    let out = ok_env(b, &env, &["pull", &image]);
    assert_pulled(&out, &image, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&image), id);
    host.run_ok(&[&image, "true"]);
    let seen = berth_requests(&reg, |e| {
        logged(e, "PUT", "/manifests/1") && logged(e, "GET", "/blobs/sha256:")
    });
    assert!(
        seen.iter().all(|e| e.protocol == "HTTP/2.0"),
        "berth spoke HTTP/2 to the TLS registry: {seen:#?}"
    );

    // (b) On another address of this host the registry is remote: its certificate must verify.
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("no non-loopback IPv4 address here: verified TLS is not exercised");
        return;
    };
    let remote = Registry::plain_with(RegistryOptions {
        ip: ip.into(),
        tls: Some(&ca),
        access_log: true,
    });
    let rimage = remote.image("test/tls:1");
    b.ok(&["tag", &image, &rimage]);
    let out = run_env(b, &env, &["push", &rimage]);
    let line = assert_error(
        &out,
        "push to a registry whose CA is not in certs.d",
        &["certificate"],
    );
    assert!(line.contains(&remote.host()), "names the registry: {line}");
    // A CA for another port of the same address is not this registry's.
    ca.install(&certs, &format!("{ip}:1"));
    let out = run_env(b, &env, &["push", &rimage]);
    assert_error(
        &out,
        "push with the CA under another host:port",
        &["certificate"],
    );
    assert!(
        berth_requests(&remote, |_| true).is_empty(),
        "nothing got past the TLS handshake, and nothing went over plain HTTP"
    );
    ca.install(&certs, &remote.host());
    let out = ok_env(b, &env, &["push", &rimage]);
    let (rdigest, _) = assert_pushed(&out, &remote.image("test/tls"), "1", 1, &["Pushed"]);
    assert_eq!(rdigest, digest);

    // A berth without the CA cannot pull; with it, it does.
    let fresh = Berth::new();
    let bare_certs = work_dir(&fresh, "certs.d");
    let out = run_env(
        &fresh,
        &[
            ("BERTH_CERTS_DIR", bare_certs.as_path()),
            ("BERTH_DAEMON_CONFIG", no_config.as_path()),
        ],
        &["pull", &rimage],
    );
    assert_error(&out, "pull without the CA", &["certificate"]);
    assert_eq!(image_ids(&fresh), Vec::<String>::new());
    let out = ok_env(&fresh, &env, &["pull", &rimage]);
    assert_pulled(&out, &rimage, &digest, Pulled::Downloaded);
    assert_eq!(fresh.image_id(&rimage), id);
    let seen = berth_requests(&remote, |e| {
        logged(e, "PUT", "/manifests/1") && logged(e, "GET", "/blobs/sha256:")
    });
    assert!(
        seen.iter().all(|e| e.protocol == "HTTP/2.0"),
        "berth spoke HTTP/2 over verified TLS: {seen:#?}"
    );
    assert_store_sound(&fresh);
    assert_store_sound(b);
}

#[test]
fn insecure_registry_from_daemon_json() {
    let host = Host::new();
    let b = &host.berth;
    let config = b.dir.path().join("daemon.json");
    let certs = work_dir(b, "certs.d");
    let env = [
        ("BERTH_DAEMON_CONFIG", config.as_path()),
        ("BERTH_CERTS_DIR", certs.as_path()),
    ];

    // A malformed daemon.json: one line that names the file, exit 1, the store left alone.
    let before = b.snapshot();
    let path = config.to_str().unwrap();
    for bad in [
        r#"{"insecure-registries": ["#,
        r#"{"insecure-registries": "10.1.2.3:5000"}"#,
        r#"{"registry-mirrors": ["mirror.example"]}"#,
    ] {
        std::fs::write(&config, bad).unwrap();
        for args in [
            ["pull", "127.0.0.1:1/test/x:1"],
            ["push", "busybox:latest"],
            ["login", "127.0.0.1:1"],
        ] {
            let out = run_env(b, &env, &args);
            assert_error(&out, &format!("{args:?} with daemon.json {bad}"), &[path]);
        }
    }
    assert_eq!(b.snapshot(), before, "a bad daemon.json changes nothing");

    // insecure-registries only matters for registries that are not local.
    let Some(ip) = non_loopback_ipv4() else {
        eprintln!("no non-loopback IPv4 address here: insecure-registries is not exercised");
        return;
    };
    let reg = Registry::plain_with(RegistryOptions {
        ip: ip.into(),
        access_log: true,
        ..Default::default()
    });
    let image = reg.image("test/insecure:1");
    b.ok(&["tag", "busybox:latest", &image]);
    let id = b.image_id(&image);

    // Not listed (or listed with another port): HTTPS only, which this registry does not speak.
    for listed in ["[]", &format!(r#"["{ip}:1"]"#), r#"["10.0.0.0/8"]"#] {
        std::fs::write(&config, format!(r#"{{"insecure-registries": {listed}}}"#)).unwrap();
        let out = run_env(b, &env, &["push", &image]);
        let line = assert_error(
            &out,
            &format!("push to a plain-HTTP registry with insecure-registries {listed}"),
            &[&reg.host()],
        );
        assert!(line.contains("https://"), "only HTTPS was tried: {line}");
    }
    assert!(
        berth_requests(&reg, |_| true).is_empty(),
        "nothing went over plain HTTP"
    );

    // Listed as host:port: HTTPS fails, plain HTTP is next.
    std::fs::write(
        &config,
        format!(r#"{{"insecure-registries": ["{}"]}}"#, reg.host()),
    )
    .unwrap();
    let out = ok_env(b, &env, &["push", &image]);
    let (digest, _) = assert_pushed(&out, &reg.image("test/insecure"), "1", 1, &["Pushed"]);
    // The registry logged the push (so it came over plain HTTP, all it speaks), as HTTP/1.1.
    let seen = berth_requests(&reg, |e| logged(e, "PUT", "/manifests/1"));
    assert!(
        seen.iter().all(|e| e.protocol == "HTTP/1.1"),
        "plain HTTP is HTTP/1.1: {seen:#?}"
    );
    // As a bare address and as a CIDR: any port of it.
    for listed in [ip.to_string(), format!("{ip}/32")] {
        std::fs::write(
            &config,
            format!(r#"{{"insecure-registries": ["{listed}"]}}"#),
        )
        .unwrap();
        let fresh = Berth::new();
        let out = ok_env(&fresh, &env, &["pull", &image]);
        assert_pulled(&out, &image, &digest, Pulled::Downloaded);
        assert_eq!(fresh.image_id(&image), id);
        assert_store_sound(&fresh);
    }
}

#[test]
fn docker_hub_mirror() {
    let reg = Registry::plain_with(RegistryOptions {
        access_log: true,
        ..Default::default()
    });
    let host = bare_host();
    let b = &host.berth;
    let img = multi_layer_image();
    let pushed = skopeo_push(&reg, &work_dir(b, "scratch"), &img, "library/bbmirror:1");
    let digest = digest_of(&skopeo_raw(&pushed, None));
    let config = b.dir.path().join("daemon.json");
    let certs = work_dir(b, "certs.d");
    let env = [
        ("BERTH_DAEMON_CONFIG", config.as_path()),
        ("BERTH_CERTS_DIR", certs.as_path()),
    ];
    let mirror = format!("http://{}", reg.host());
    let dead = format!("http://127.0.0.1:{}", dead_port());

    // docker.io/library/bbmirror:1 comes from the mirror (this host has no way to Docker Hub).
    // A dead mirror listed first is passed over.
    std::fs::write(
        &config,
        format!(r#"{{"registry-mirrors": ["{dead}", "{mirror}/"]}}"#),
    )
    .unwrap();
    let out = ok_env(b, &env, &["pull", "bbmirror:1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("docker.io/library/bbmirror:1"),
        "docker names the image in full last:\n{out}"
    );
    assert!(
        lines.contains(&format!("Digest: {digest}").as_str()),
        "{out}"
    );
    assert!(
        lines.contains(&"Status: Downloaded newer image for bbmirror:1"),
        "{out}"
    );
    let seen = berth_requests(&reg, |e| {
        logged(e, "GET", "/v2/library/bbmirror/manifests/1")
    });
    assert!(
        logged(&seen, "GET", "/v2/library/bbmirror/blobs/sha256:"),
        "the blobs came from the mirror: {seen:#?}"
    );
    // Recorded under Docker Hub's name, as docker does.
    let listed = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["bbmirror:1"]);
    let inspected = inspect(b, "bbmirror:1");
    assert_eq!(inspected["Id"].as_str(), Some(img.id().as_str()));
    assert_eq!(inspected["RepoTags"], serde_json::json!(["bbmirror:1"]));
    assert_eq!(
        inspected["RepoDigests"],
        serde_json::json!([format!("bbmirror@{digest}")])
    );
    assert_eq!(b.image_id("docker.io/library/bbmirror:1"), img.id());
    let out = host.run_ok(&["bbmirror:1", "cat", "/layer3/marker"]);
    assert_eq!(out, "three\n");
    let out = ok_env(b, &env, &["pull", "docker.io/library/bbmirror:1"]);
    assert!(
        out.contains("Status: Image is up to date for bbmirror:1"),
        "{out}"
    );
    assert_store_sound(b);

    // Only a dead mirror: on to Docker Hub, unreachable here (or without this repository):
    // one error line, soon.
    std::fs::write(&config, format!(r#"{{"registry-mirrors": ["{dead}"]}}"#)).unwrap();
    let fresh = Berth::new();
    let start = Instant::now();
    let out = run_env(&fresh, &env, &["pull", "bbmirror:1"]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(60),
        "a pull past a dead mirror took {took:?}"
    );
    assert_error(&out, "pull with a dead mirror", &["docker.io"]);
    assert_eq!(image_ids(&fresh), Vec::<String>::new());
    assert_no_ingest(&fresh);
}

#[test]
fn kill_9_mid_pull_leaves_store_consistent() {
    let reg = Registry::plain();
    let host = bare_host();
    let b = &host.berth;
    // busybox and three layers of 16 MiB that do not compress: about 50 MB.
    let mut layers = vec![busybox_layer()];
    for seed in 1..=3u64 {
        layers.push(layer_tar(&[
            ("data/", b""),
            (
                &format!("data/random{seed}"),
                &random_bytes(16 << 20, seed * 1000),
            ),
        ]));
    }
    let img = TestImage::from_layers(
        berth_arch(),
        layers.iter().map(|t| ImageLayer::stored_gzip(t)).collect(),
    );
    let total: usize = img.layers.iter().map(Vec::len).sum();
    assert!(total > 48 << 20, "{total} bytes");
    skopeo_push(&reg, &work_dir(b, "scratch"), &img, "test/heavy:1");

    // Through a proxy that sends each blob at 2 MiB/s: the pull takes seconds, and it is
    // killed once a big layer is well under way.
    let proxy = CutProxy::throttled(&reg.host(), 2 << 20);
    let reference = format!("{}/test/heavy:1", proxy.host());
    let ingest = b.root().join("ingest");
    let log = b.dir.path().join("killed-pull.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = b
        .command()
        .args(["pull", &reference])
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("spawn berth pull");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let big_ingest = std::fs::read_dir(&ingest).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.len() >= 1 << 20))
        });
        if big_ingest {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the pull ended ({status}) before it was killed:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no ingest file reached 1 MiB in 30 s; the pull said:\n{}\nthe proxy saw: {:#?}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                proxy.requests()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9 the pull");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "the pull was killed: {status}");

    // No image, and a sound store: the leftovers are only ingest files (and half-unpacked
    // layers), which check counts but does not call problems.
    let left: Vec<PathBuf> = std::fs::read_dir(&ingest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!left.is_empty(), "the pull was killed mid-download");
    assert_eq!(image_ids(b), Vec::<String>::new());
    assert!(!b.run(&["image", "inspect", &reference]).status.success());
    b.assert_blobs_verify();
    let check = b.ok(&["system", "check"]);
    assert!(
        check.contains("leftovers of interrupted writes"),
        "check reports the leftovers:\n{check}"
    );

    // Again, at full speed: the pull completes and the image runs.
    proxy.set_rate(0);
    let out = b.ok(&["pull", &reference]);
    let digest = img.digest();
    assert_pulled(&out, &reference, &digest, Pulled::Downloaded);
    assert_eq!(b.image_id(&reference), img.id());
    host.run_ok(&[&reference, "true"]);
    b.ok(&["system", "check"]);

    // The killed pull's files stay until a collection: `image prune` (or `rmi`) removes them.
    let still: Vec<&PathBuf> = left.iter().filter(|p| p.exists()).collect();
    eprintln!(
        "after the second pull, {} of {} leftover ingest files remain",
        still.len(),
        left.len()
    );
    b.ok(&["image", "prune", "-f"]);
    assert_store_sound(b);
    let layer_tmp: Vec<_> = std::fs::read_dir(b.root().join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .map(|e| e.path())
        .collect();
    assert!(
        layer_tmp.is_empty(),
        "half-unpacked layers left: {layer_tmp:?}"
    );
    let check = b.ok(&["system", "check"]);
    assert!(!check.contains("leftovers"), "{check}");
    assert_eq!(
        b.image_id(&reference),
        img.id(),
        "prune keeps the tagged image"
    );
    host.run_ok(&[&reference, "true"]);
}

/// A registry that stops sending a blob, or never stops: the pull gives up with one clear
/// line, and the store keeps nothing of it.
#[test]
fn a_stalled_or_endless_blob_fails_the_pull_clearly() {
    let reg = Registry::plain();
    let b = Berth::new();
    let big = layer_tar(&[("big/", b""), ("big/random", &random_bytes(4 << 20, 5))]);
    let img = TestImage::new(berth_arch(), &[big]);
    skopeo_push(&reg, &work_dir(&b, "scratch"), &img, "test/stall:1");
    let digest = img.layer_digests()[0].clone();

    let stalling = CutProxy::stalling(&reg.host());
    let reference = format!("{}/test/stall:1", stalling.host());
    let out = b
        .command()
        .env("BERTH_BLOB_REQUEST_TIMEOUT", "2")
        .args(["pull", &reference])
        .output()
        .unwrap();
    let cut = stalling.cut().expect("the proxy stalled a download");
    let gave_up = format!(
        "gave up after 5 attempts to resume at byte {}",
        cut.forwarded
    );
    let line = assert_error(&out, "pull of a stalled blob", &[&gave_up]);
    assert!(line.contains(&digest), "{line}");
    assert_store_sound(&b);
    assert_eq!(b.ok(&["images", "-q"]), "");

    let endless = CutProxy::endless(&reg.host());
    let reference = format!("{}/test/stall:1", endless.host());
    let out = b.run(&["pull", &reference]);
    let line = assert_error(
        &out,
        "pull of an endless blob",
        &["the registry sent more than the"],
    );
    assert!(line.contains(&digest), "{line}");
    assert_store_sound(&b);
    assert_eq!(b.ok(&["images", "-q"]), "");
}
