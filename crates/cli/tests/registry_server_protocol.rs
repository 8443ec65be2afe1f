//! `berth registry serve` at the HTTP level: the distribution spec's protocol (uploads in
//! every form, ranges, mounts, manifests, tags, catalog, referrers) and bad input (names that
//! try to leave the root, manifests that lie, digests that do not match, chunks out of order,
//! bodies that break off, many clients at once, a server killed mid-upload). Each test starts
//! its own server and checks its storage with `berth registry check` at the end.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::registry::{Head, Response, http, random_bytes};
use common::registry_server::{BerthRegistry, registry_check, registry_gc};
use common::sha256_hex;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

// ---------------------------------------------------------------------------------------------
// Helpers

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// Every response of the registry API names its version.
fn assert_api_version(r: &Response, what: &str) {
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0"),
        "{what}: no API version header in {:?}",
        r.head
    );
}

/// One request on a fresh connection; the response must carry the API version header.
fn call(
    reg: &BerthRegistry,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let r = http(method, reg.host(), target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
    assert_api_version(&r, &format!("{method} {target}"));
    r
}

fn get(reg: &BerthRegistry, target: &str) -> Response {
    call(reg, "GET", target, &[], b"")
}

/// The error's code, after checking the body has the spec's shape:
/// `{"errors":[{"code":...,"message":...}]}`.
fn error_code(r: &Response) -> String {
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "error without a JSON Content-Type: {:?}",
        r.head
    );
    let v = r.json();
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {v}"));
    assert!(!errors.is_empty(), "empty errors array: {v}");
    for e in errors {
        assert!(
            e["code"].is_string() && e["message"].is_string(),
            "error without code and message: {v}"
        );
    }
    errors[0]["code"].as_str().unwrap().to_owned()
}

#[track_caller]
fn expect_error(r: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: expected {status} {code}, got {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(error_code(r), code, "{what}");
}

#[track_caller]
fn expect_status(r: &Response, status: u16, what: &str) {
    assert_eq!(
        r.status,
        status,
        "{what}: {:?} {}",
        r.head,
        String::from_utf8_lossy(&r.body)
    );
}

/// A Location header as a request target (the server may answer absolute URLs).
fn location(r: &Response) -> String {
    let loc = r
        .header("Location")
        .unwrap_or_else(|| panic!("no Location in {:?}", r.head));
    match loc.split_once("://") {
        Some((_, rest)) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => loc.to_owned(),
    }
}

/// `loc` with one more query parameter.
fn with_query(loc: &str, param: &str) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}{param}")
}

/// The upload ID: the last segment of an upload's location.
fn upload_id(loc: &str) -> String {
    let path = loc.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

/// `POST /v2/<repo>/blobs/uploads/`: 202, the new upload's location.
fn start_upload(reg: &BerthRegistry, repo: &str) -> String {
    let r = call(reg, "POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
    expect_status(&r, 202, "start an upload");
    assert_eq!(r.header("Range"), Some("0-0"), "{:?}", r.head);
    let loc = location(&r);
    assert_eq!(
        r.header("Docker-Upload-UUID").map(str::to_owned),
        Some(upload_id(&loc)),
        "{:?}",
        r.head
    );
    loc
}

/// A PATCH of `body` at `start` (with `Content-Range`) or streamed on (without).
fn patch(reg: &BerthRegistry, loc: &str, start: Option<u64>, body: &[u8]) -> Response {
    let range = start.map(|s| format!("{s}-{}", s + body.len() as u64 - 1));
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(range) = &range {
        headers.push(("Content-Range", range.as_str()));
    }
    call(reg, "PATCH", loc, &headers, body)
}

/// `PUT <upload>?digest=D` with no body: ends an upload.
fn finish_upload(reg: &BerthRegistry, loc: &str, digest: &str) -> Response {
    call(
        reg,
        "PUT",
        &with_query(loc, &format!("digest={digest}")),
        &[],
        b"",
    )
}

/// The `Range` an upload holding `len` bytes answers.
fn range_of(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

/// `GET` on an upload: 204 with its `Range`.
fn upload_range(reg: &BerthRegistry, loc: &str) -> String {
    let r = get(reg, loc);
    expect_status(&r, 204, "upload status");
    assert_eq!(location(&r), loc.split('?').next().unwrap());
    r.header("Range")
        .unwrap_or_else(|| panic!("no Range in {:?}", r.head))
        .to_owned()
}

/// Pushes a blob in one request (`POST ?digest=`); returns its digest.
fn push_blob(reg: &BerthRegistry, repo: &str, data: &[u8]) -> String {
    let digest = digest_of(data);
    let r = call(
        reg,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        data,
    );
    expect_status(&r, 201, "monolithic blob push");
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    digest
}

fn get_blob(reg: &BerthRegistry, repo: &str, digest: &str) -> Response {
    get(reg, &format!("/v2/{repo}/blobs/{digest}"))
}

#[track_caller]
fn assert_blob(reg: &BerthRegistry, repo: &str, data: &[u8]) {
    let r = get_blob(reg, repo, &digest_of(data));
    expect_status(&r, 200, "blob GET");
    assert!(
        r.body == data,
        "blob {} in {repo}: {} bytes back, {} pushed",
        digest_of(data),
        r.body.len(),
        data.len()
    );
}

/// An image manifest over a config and layers (digest, size).
fn image_manifest(config: (&str, usize), layers: &[(&str, usize)]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": layers.iter().map(|(d, s)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d,
            "size": s,
        })).collect::<Vec<_>>(),
    })
}

fn put_manifest(
    reg: &BerthRegistry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    call(
        reg,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", media_type)],
        body,
    )
}

/// Pushes a config, a layer and a manifest tagged `tag`; returns the manifest and its digest.
fn push_image(reg: &BerthRegistry, repo: &str, tag: &str, seed: u64) -> (Vec<u8>, String) {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let layer = random_bytes(3000, seed);
    let config_digest = push_blob(reg, repo, &config);
    let layer_digest = push_blob(reg, repo, &layer);
    let manifest = serde_json::to_vec(&image_manifest(
        (&config_digest, config.len()),
        &[(&layer_digest, layer.len())],
    ))
    .unwrap();
    let r = put_manifest(reg, repo, tag, OCI_MANIFEST, &manifest);
    expect_status(&r, 201, "manifest PUT");
    let digest = digest_of(&manifest);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    (manifest, digest)
}

/// Names below `dir`, relative, recursively, sorted.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.insert(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The stored blobs' digests.
fn stored_blobs(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

/// The uploads in progress on disk.
fn stored_uploads(root: &Path) -> BTreeSet<String> {
    fs::read_dir(root.join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[track_caller]
fn assert_check(reg: &BerthRegistry) {
    if let Err(problems) = reg.check() {
        panic!("berth registry check found problems:\n{problems}");
    }
}

/// Parses a response from a raw connection (heads, then a Content-Length body).
fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        if r.read_until(b'\n', &mut raw)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("EOF in the head: {:?}", String::from_utf8_lossy(&raw)),
            ));
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let head = Head { first, headers };
    let status = head
        .first
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    if let Some(n) = head.header("Content-Length").and_then(|n| n.parse().ok()) {
        r.take(n).read_to_end(&mut body)?;
    }
    Ok(Response { status, head, body })
}

/// Sends a raw request (head and body as given) from a second thread, so that a server
/// that answers before reading the body is heard, and reads the response.
fn raw_exchange(host: &str, head: &str, body: Vec<u8>) -> Response {
    let stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = head.to_owned();
    let sender = std::thread::spawn(move || {
        // The server may stop reading once it has answered: write errors are expected.
        let _ = writer.write_all(request.as_bytes());
        let _ = writer.write_all(&body);
    });
    let closer = stream.try_clone().unwrap();
    let response = read_response(&mut BufReader::new(stream));
    let _ = closer.shutdown(Shutdown::Both);
    sender.join().unwrap();
    let response = response.unwrap_or_else(|e| panic!("raw request {head:?}: {e}"));
    assert_api_version(&response, head.lines().next().unwrap_or(""));
    response
}

/// Sends a request head and part of its body, then closes the sending side, as a client
/// that dies mid-request; waits until the server has answered or closed.
fn send_truncated(host: &str, head: &str, partial: &[u8]) {
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(partial).unwrap();
    stream.flush().unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    if !rest.is_empty() {
        let text = String::from_utf8_lossy(&rest);
        assert!(
            !text.starts_with("HTTP/1.1 2"),
            "a truncated request succeeded: {text}"
        );
    }
}

/// The length of an upload once it stops changing (a broken request may still be writing
/// what it received), checked against its data on disk: the `Range` covers exactly the
/// bytes stored, and they are a prefix of `sent`.
fn settled_upload(reg: &BerthRegistry, loc: &str, sent: &[u8]) -> usize {
    let data = reg.root().join("uploads").join(upload_id(loc)).join("data");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        let on_disk = fs::read(&data).unwrap();
        let range = upload_range(reg, loc);
        let again = fs::read(&data).unwrap();
        if on_disk == again && last.as_ref() == Some(&on_disk) {
            assert_eq!(range, range_of(on_disk.len()), "Range against the data");
            assert!(
                on_disk.len() <= sent.len() && on_disk[..] == sent[..on_disk.len()],
                "the upload's {} bytes are not a prefix of the {} sent",
                on_disk.len(),
                sent.len()
            );
            return on_disk.len();
        }
        assert!(Instant::now() < deadline, "the upload never settled");
        last = Some(again);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn request_head(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// The target of a `Link: <target>; rel="next"` header.
fn next_link(r: &Response) -> Option<String> {
    let link = r.header("Link")?;
    assert!(link.ends_with("; rel=\"next\""), "Link: {link}");
    let start = link.find('<').unwrap() + 1;
    let end = link.find('>').unwrap();
    Some(link[start..end].to_owned())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Names that try to leave the root

#[test]
fn names_that_leave_the_root_are_refused_and_nothing_is_written() {
    let reg = BerthRegistry::start_with(&["--delete"]);
    let sentinel = reg.dir().join("sentinel");
    fs::create_dir(&sentinel).unwrap();
    let before = tree(reg.dir());

    let long = "a".repeat(256);
    let long_path = format!("{}/x", "ab".repeat(127));
    let names = [
        "../../etc",
        "a/../b",
        "..",
        "../../sentinel/pwn",
        "../../../sentinel/pwn",
        "a/../../../sentinel/pwn",
        "%2e%2e/x",
        "%2e%2e/%2e%2e/sentinel/pwn",
        "a/%2e%2e/%2e%2e/%2e%2e/sentinel",
        "a%2f..%2f..%2fsentinel",
        "a//b",
        "/a",
        "a/",
        ".a",
        "a/.",
        "_a",
        "a/_manifests",
        "Upper",
        "a/B",
        "a%00b",
        long.as_str(),
        long_path.as_str(),
    ];
    let manifest = serde_json::to_vec(&image_manifest(
        (&digest_of(b"{}"), 2),
        &[(&digest_of(b"x"), 1)],
    ))
    .unwrap();
    let blob = b"traversal";
    let blob_digest = digest_of(blob);
    let id = "0123456789abcdef0123456789abcdef";
    for name in names {
        let (none, mf, bl): (&[u8], &[u8], &[u8]) = (b"", &manifest, blob);
        let manifest_digest = digest_of(&manifest);
        let requests = [
            ("GET", format!("/v2/{name}/manifests/latest"), none),
            ("HEAD", format!("/v2/{name}/manifests/latest"), none),
            ("PUT", format!("/v2/{name}/manifests/latest"), mf),
            ("PUT", format!("/v2/{name}/manifests/{manifest_digest}"), mf),
            ("DELETE", format!("/v2/{name}/manifests/latest"), none),
            ("GET", format!("/v2/{name}/blobs/{blob_digest}"), none),
            ("HEAD", format!("/v2/{name}/blobs/{blob_digest}"), none),
            ("DELETE", format!("/v2/{name}/blobs/{blob_digest}"), none),
            ("POST", format!("/v2/{name}/blobs/uploads/"), none),
            ("POST", format!("/v2/{name}/blobs/uploads"), none),
            (
                "POST",
                format!("/v2/{name}/blobs/uploads/?digest={blob_digest}"),
                bl,
            ),
            (
                "POST",
                format!("/v2/{name}/blobs/uploads/?mount={blob_digest}&from=ok"),
                none,
            ),
            ("GET", format!("/v2/{name}/blobs/uploads/{id}"), none),
            ("PATCH", format!("/v2/{name}/blobs/uploads/{id}"), bl),
            (
                "PUT",
                format!("/v2/{name}/blobs/uploads/{id}?digest={blob_digest}"),
                bl,
            ),
            ("DELETE", format!("/v2/{name}/blobs/uploads/{id}"), none),
            ("GET", format!("/v2/{name}/tags/list"), none),
            ("GET", format!("/v2/{name}/referrers/{blob_digest}"), none),
        ];
        for (method, target, body) in requests {
            let r = call(
                &reg,
                method,
                &target,
                &[("Content-Type", OCI_MANIFEST)],
                body,
            );
            let what = format!("{method} {target}");
            match r.status {
                400 | 404 if method == "HEAD" => {}
                400 => assert_eq!(error_code(&r), "NAME_INVALID", "{what}"),
                404 => assert_eq!(error_code(&r), "NOT_FOUND", "{what}"),
                s => panic!(
                    "{what}: {s} {}, expected 400 NAME_INVALID",
                    String::from_utf8_lossy(&r.body)
                ),
            }
        }
    }

    // A valid repository, with hostile names elsewhere: the mount source, the tag, the
    // digest, the upload ID.
    for from in [
        "../../etc",
        "..%2f..%2fsentinel",
        "%2e%2e%2f%2e%2e%2fsentinel",
        "A",
        "a//b",
    ] {
        let target = format!("/v2/ok/blobs/uploads/?mount={blob_digest}&from={from}");
        expect_error(
            &call(&reg, "POST", &target, &[], b""),
            400,
            "NAME_INVALID",
            &target,
        );
    }
    for tag in ["..", "%2e%2e", ".hidden", "-x", "a%2f..%2f..%2fx"] {
        let target = format!("/v2/ok/manifests/{tag}");
        let r = put_manifest(&reg, "ok", tag, OCI_MANIFEST, &manifest);
        assert!(
            matches!(r.status, 400 | 404),
            "PUT {target}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        error_code(&r);
    }
    for id in [
        "..",
        "..%2f..%2fsentinel",
        "%2e%2e",
        "0123456789ABCDEF0123456789ABCDEF",
    ] {
        for method in ["GET", "PATCH", "PUT", "DELETE"] {
            let target = format!("/v2/ok/blobs/uploads/{id}?digest={blob_digest}");
            let r = call(&reg, method, &target, &[], blob);
            expect_error(
                &r,
                404,
                "BLOB_UPLOAD_UNKNOWN",
                &format!("{method} {target}"),
            );
        }
    }
    assert!(
        fs::read_dir(&sentinel).unwrap().next().is_none(),
        "something was written next to the root: {:?}",
        tree(&sentinel)
    );
    let after = tree(reg.dir());
    let expected: BTreeSet<String> = before
        .iter()
        .cloned()
        .chain(
            ["root/blobs", "root/blobs/sha256", "root/repositories"]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    let stray: Vec<&String> = after
        .iter()
        .filter(|p| {
            !expected.contains(*p)
                && !p.starts_with("root/uploads")
                && !p.starts_with("root/tmp")
                && *p != "root/lock"
        })
        .collect();
    assert!(stray.is_empty(), "stray files: {stray:?}");
    assert!(
        stored_uploads(&reg.root()).is_empty(),
        "uploads were created: {:?}",
        stored_uploads(&reg.root())
    );
    assert!(stored_blobs(&reg.root()).is_empty());
    assert!(tree(&reg.root().join("repositories")).is_empty());
    assert_check(&reg);
}

#[test]
fn bad_digests_are_refused_and_leave_nothing_behind() {
    let reg = BerthRegistry::start();
    let blob = b"some blob";
    for digest in [
        "sha256:../../../sentinel",
        "sha256:..%2f..%2fsentinel",
        "sha256:ABCDEF",
        "md5:00",
        "sha256",
    ] {
        let target = format!("/v2/ok/blobs/{digest}");
        let r = get(&reg, &target);
        assert!(matches!(r.status, 400 | 404), "GET {target}: {}", r.status);
        error_code(&r);
        let target = format!("/v2/ok/blobs/uploads/?digest={digest}");
        let r = call(&reg, "POST", &target, &[], blob);
        expect_error(&r, 400, "DIGEST_INVALID", &target);
    }
    for digest in ["sha256:..", "sha256:ABCDEF", "sha512:00"] {
        let target = format!("/v2/ok/manifests/{digest}");
        let r = put_manifest(&reg, "ok", digest, OCI_MANIFEST, b"{}");
        expect_error(&r, 400, "DIGEST_INVALID", &target);
    }
    assert!(stored_blobs(&reg.root()).is_empty());
    assert!(
        stored_uploads(&reg.root()).is_empty(),
        "a request refused for its digest left uploads behind: {:?}",
        stored_uploads(&reg.root())
    );
    assert_check(&reg);
}

#[test]
fn an_upload_belongs_to_its_repository() {
    let reg = BerthRegistry::start();
    let loc = start_upload(&reg, "a");
    let id = upload_id(&loc);
    let data = b"only for a";
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let target = format!("/v2/b/blobs/uploads/{id}?digest={}", digest_of(data));
        let r = call(&reg, method, &target, &[], data);
        expect_error(
            &r,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            &format!("{method} {target}"),
        );
    }
    assert_eq!(upload_range(&reg, &loc), "0-0");
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(data))),
        &[],
        data,
    );
    expect_status(&r, 201, "finish in a");
    assert_blob(&reg, "a", data);
    expect_error(
        &get_blob(&reg, "b", &digest_of(data)),
        404,
        "BLOB_UNKNOWN",
        "blob in b",
    );
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 2. Manifests that lie

#[test]
fn a_manifest_with_missing_blobs_is_refused_and_not_stored() {
    let reg = BerthRegistry::start();
    let config = b"{\"config\":true}";
    let config_digest = push_blob(&reg, "r", config);
    let missing = random_bytes(100, 1);
    let manifest = serde_json::to_vec(&image_manifest(
        (&config_digest, config.len()),
        &[(&digest_of(&missing), missing.len())],
    ))
    .unwrap();
    let manifest_digest = digest_of(&manifest);
    let r = put_manifest(&reg, "r", "v1", OCI_MANIFEST, &manifest);
    expect_error(
        &r,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest with a missing layer",
    );
    let r = put_manifest(&reg, "r", &manifest_digest, OCI_MANIFEST, &manifest);
    expect_error(&r, 400, "MANIFEST_BLOB_UNKNOWN", "same, by digest");

    // A missing config.
    let layer = random_bytes(100, 2);
    let layer_digest = push_blob(&reg, "r", &layer);
    let no_config = serde_json::to_vec(&image_manifest(
        (&digest_of(b"{\"absent\":1}"), 12),
        &[(&layer_digest, layer.len())],
    ))
    .unwrap();
    let r = put_manifest(&reg, "r", "v1", OCI_MANIFEST, &no_config);
    expect_error(
        &r,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest with a missing config",
    );

    // A blob another repository holds is not this one's.
    push_blob(&reg, "other", &missing);
    let r = put_manifest(&reg, "r", "v1", OCI_MANIFEST, &manifest);
    expect_error(
        &r,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "manifest with a layer of another repository",
    );

    expect_error(&get(&reg, "/v2/r/tags/list"), 404, "NAME_UNKNOWN", "tags");
    let r = get(&reg, "/v2/r/manifests/v1");
    assert_eq!(r.status, 404);
    assert!(matches!(
        error_code(&r).as_str(),
        "NAME_UNKNOWN" | "MANIFEST_UNKNOWN"
    ));
    expect_error(
        &get(&reg, &format!("/v2/r/manifests/{manifest_digest}")),
        404,
        "MANIFEST_UNKNOWN",
        "manifest by digest",
    );
    assert!(!stored_blobs(&reg.root()).contains(&manifest_digest));
    assert_eq!(
        strings(&get(&reg, "/v2/_catalog").json()["repositories"]),
        Vec::<String>::new()
    );
    assert_check(&reg);
}

#[test]
fn an_index_with_a_missing_child_is_refused() {
    let reg = BerthRegistry::start();
    let (manifest, digest) = push_image(&reg, "r", "v1", 1);
    let absent = digest_of(b"no such manifest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": absent, "size": 100,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let r = put_manifest(&reg, "r", "multi", OCI_INDEX, &index);
    expect_error(
        &r,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "index with a missing child",
    );
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], absent.as_str());
    let r = get(&reg, "/v2/r/tags/list");
    expect_status(&r, 200, "tags");
    assert_eq!(strings(&r.json()["tags"]), ["v1"]);
    expect_error(
        &get(&reg, &format!("/v2/r/manifests/{}", digest_of(&index))),
        404,
        "MANIFEST_UNKNOWN",
        "index by digest",
    );
    assert!(!stored_blobs(&reg.root()).contains(&digest_of(&index)));

    // The same index without the missing child goes in.
    let good = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": manifest.len()}],
    }))
    .unwrap();
    expect_status(
        &put_manifest(&reg, "r", "multi", OCI_INDEX, &good),
        201,
        "good index",
    );
    let r = get(&reg, "/v2/r/manifests/multi");
    expect_status(&r, 200, "index GET");
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    assert_eq!(r.body, good);
    assert_check(&reg);
}

#[test]
fn malformed_mismatched_and_oversized_manifests_are_refused() {
    let reg = BerthRegistry::start_with(&["--delete"]);
    let (manifest, digest) = push_image(&reg, "r", "v1", 3);
    let blobs = stored_blobs(&reg.root());

    for (body, what) in [
        (&b"{\"schemaVersion\": 2,"[..], "truncated JSON"),
        (b"not json at all", "not JSON"),
        (b"", "empty"),
        (b"[]", "an array"),
        (b"{\"schemaVersion\": 2}", "no config or layers"),
        (
            b"{\"schemaVersion\": 1, \"config\": {\"digest\": \"sha256:00\"}, \"layers\": []}",
            "schema 1",
        ),
        (
            b"{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.index.v1+json\", \"config\": {\"digest\": \"x\"}, \"layers\": []}",
            "media type against Content-Type",
        ),
    ] {
        let r = put_manifest(&reg, "r", "bad", OCI_MANIFEST, body);
        expect_error(&r, 400, "MANIFEST_INVALID", what);
    }

    // By digest, with other content.
    let mut other: Value = serde_json::from_slice(&manifest).unwrap();
    other["annotations"] = json!({"changed": "yes"});
    let other = serde_json::to_vec(&other).unwrap();
    let r = put_manifest(&reg, "r", &digest, OCI_MANIFEST, &other);
    expect_error(&r, 400, "DIGEST_INVALID", "manifest under another digest");
    expect_error(
        &get(&reg, &format!("/v2/r/manifests/{}", digest_of(&other))),
        404,
        "MANIFEST_UNKNOWN",
        "the other content",
    );
    let r = get(&reg, &format!("/v2/r/manifests/{digest}"));
    expect_status(&r, 200, "the original");
    assert_eq!(r.body, manifest);

    // Exactly 4 MiB, the least the spec asks registries to take, goes in.
    let mut big: Value = serde_json::from_slice(&manifest).unwrap();
    big["annotations"] = json!({"padding": ""});
    let overhead = serde_json::to_vec(&big).unwrap().len();
    big["annotations"]["padding"] = "x".repeat((4 << 20) - overhead).into();
    let big = serde_json::to_vec(&big).unwrap();
    assert_eq!(big.len(), 4 << 20);
    let r = put_manifest(&reg, "r", "big", OCI_MANIFEST, &big);
    expect_status(&r, 201, "4 MiB manifest");
    let r = get(&reg, "/v2/r/manifests/big");
    assert!(r.body == big, "the 4 MiB manifest came back different");
    let r = call(&reg, "DELETE", "/v2/r/manifests/big", &[], b"");
    expect_status(&r, 202, "delete the 4 MiB manifest's tag");

    // 5 MiB, declared, and streamed without a length.
    let mut huge: Value = serde_json::from_slice(&manifest).unwrap();
    huge["annotations"] = json!({"padding": "x".repeat(5 << 20)});
    let huge = serde_json::to_vec(&huge).unwrap();
    let head = request_head(
        "PUT",
        reg.host(),
        "/v2/r/manifests/huge",
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Content-Length", &huge.len().to_string()),
        ],
    );
    let r = raw_exchange(reg.host(), &head, huge.clone());
    expect_status(&r, 413, "5 MiB manifest");
    error_code(&r);
    let head = request_head(
        "PUT",
        reg.host(),
        "/v2/r/manifests/huge",
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    let mut chunked = Vec::new();
    for part in huge.chunks(64 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw_exchange(reg.host(), &head, chunked);
    expect_status(&r, 413, "5 MiB manifest, chunked");
    error_code(&r);

    // A body shorter than its Content-Length.
    let head = request_head(
        "PUT",
        reg.host(),
        "/v2/r/manifests/short",
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Content-Length", &(manifest.len() + 100).to_string()),
        ],
    );
    send_truncated(reg.host(), &head, &manifest);

    let r = get(&reg, "/v2/r/tags/list");
    assert_eq!(strings(&r.json()["tags"]), ["v1"]);
    let mut blobs = blobs;
    blobs.insert(digest_of(&big));
    assert_eq!(stored_blobs(&reg.root()), blobs, "new blobs were stored");
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 3. Digests that do not match

#[test]
fn a_digest_mismatch_cancels_the_upload_and_stores_nothing() {
    let reg = BerthRegistry::start();
    let data = random_bytes(300_000, 5);
    let wrong = digest_of(b"something else");

    // Monolithic POST.
    let r = call(
        &reg,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={wrong}"),
        &[],
        &data,
    );
    expect_error(&r, 400, "DIGEST_INVALID", "POST ?digest= mismatch");
    assert!(stored_uploads(&reg.root()).is_empty());

    // POST, then PUT with the data.
    let loc = start_upload(&reg, "r");
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={wrong}")),
        &[],
        &data,
    );
    expect_error(&r, 400, "DIGEST_INVALID", "PUT mismatch");
    expect_error(
        &get(&reg, &loc),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "cancelled upload",
    );

    // Chunks, then an empty PUT.
    let loc = start_upload(&reg, "r");
    expect_status(
        &patch(&reg, &loc, Some(0), &data[..100_000]),
        202,
        "chunk 1",
    );
    expect_status(
        &patch(&reg, &loc, Some(100_000), &data[100_000..]),
        202,
        "chunk 2",
    );
    let r = finish_upload(&reg, &loc, &wrong);
    expect_error(&r, 400, "DIGEST_INVALID", "chunked mismatch");
    expect_error(
        &get(&reg, &loc),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "cancelled upload",
    );
    expect_error(
        &call(&reg, "PATCH", &loc, &[], b"more"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PATCH on the cancelled upload",
    );

    assert!(
        stored_blobs(&reg.root()).is_empty(),
        "blobs: {:?}",
        stored_blobs(&reg.root())
    );
    assert!(stored_uploads(&reg.root()).is_empty());
    expect_error(
        &get_blob(&reg, "r", &digest_of(&data)),
        404,
        "BLOB_UNKNOWN",
        "the data",
    );
    expect_error(
        &get_blob(&reg, "r", &wrong),
        404,
        "BLOB_UNKNOWN",
        "the claim",
    );

    // Claiming the digest of a stored blob does not overwrite it.
    let real = b"the real content";
    let real_digest = push_blob(&reg, "r", real);
    let r = call(
        &reg,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={real_digest}"),
        &[],
        b"an impostor",
    );
    expect_error(&r, 400, "DIGEST_INVALID", "impostor");
    assert_blob(&reg, "r", real);
    assert_eq!(stored_blobs(&reg.root()), BTreeSet::from([real_digest]));
    assert!(stored_uploads(&reg.root()).is_empty());
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 4. Chunks out of order

#[test]
fn chunks_out_of_order_are_refused_and_change_nothing() {
    let reg = BerthRegistry::start();
    let data = random_bytes(40, 6);
    let loc = start_upload(&reg, "r");
    let r = patch(&reg, &loc, Some(0), &data[..10]);
    expect_status(&r, 202, "first chunk");
    assert_eq!(r.header("Range"), Some("0-9"));
    let disk = reg
        .root()
        .join("uploads")
        .join(upload_id(&loc))
        .join("data");

    for (start, end, what) in [
        (20, 29, "past the end"),
        (11, 20, "one byte past the end"),
        (5, 14, "inside the upload"),
        (0, 9, "the same chunk again"),
        (9, 18, "one byte back"),
    ] {
        let r = call(
            &reg,
            "PATCH",
            &loc,
            &[("Content-Range", &format!("{start}-{end}"))],
            &data[10..20],
        );
        expect_error(&r, 416, "BLOB_UPLOAD_INVALID", what);
        assert_eq!(upload_range(&reg, &loc), "0-9", "after {what}");
        assert_eq!(fs::read(&disk).unwrap(), &data[..10], "after {what}");
    }
    // A Content-Range that does not match the body, or is not a range: refused, no change.
    for (range, what) in [("10-29", "longer than the body"), ("ten-twenty", "garbage")] {
        let r = call(
            &reg,
            "PATCH",
            &loc,
            &[("Content-Range", range)],
            &data[10..20],
        );
        assert!(
            matches!(r.status, 400 | 416),
            "{what}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        error_code(&r);
        assert_eq!(upload_range(&reg, &loc), "0-9", "after {what}");
    }
    // A PUT whose Content-Range does not continue the upload does not finish it.
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(&data))),
        &[("Content-Range", "30-39")],
        &data[30..],
    );
    expect_error(&r, 416, "BLOB_UPLOAD_INVALID", "PUT out of order");
    assert_eq!(upload_range(&reg, &loc), "0-9");

    let r = patch(&reg, &loc, Some(10), &data[10..30]);
    expect_status(&r, 202, "the right chunk");
    assert_eq!(r.header("Range"), Some("0-29"));
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(&data))),
        &[("Content-Range", "30-39")],
        &data[30..],
    );
    expect_status(&r, 201, "finish");
    assert_blob(&reg, "r", &data);
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 5. Bodies that break off

#[test]
fn a_truncated_patch_keeps_a_consistent_prefix_and_can_be_resumed() {
    let reg = BerthRegistry::start();
    let data = random_bytes(1 << 20, 7);
    let digest = digest_of(&data);
    let loc = start_upload(&reg, "r");
    let half = data.len() / 2;
    let head = request_head(
        "PATCH",
        reg.host(),
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", &data.len().to_string()),
        ],
    );
    send_truncated(reg.host(), &head, &data[..half]);
    let n = settled_upload(&reg, &loc, &data[..half]);
    assert!(stored_blobs(&reg.root()).is_empty(), "a blob was published");
    expect_error(&get_blob(&reg, "r", &digest), 404, "BLOB_UNKNOWN", "blob");

    let r = patch(&reg, &loc, Some(n as u64), &data[n..]);
    expect_status(&r, 202, "resume");
    assert_eq!(
        r.header("Range").map(str::to_owned),
        Some(range_of(data.len()))
    );
    let r = finish_upload(&reg, &loc, &digest);
    expect_status(&r, 201, "finish");
    assert_blob(&reg, "r", &data);
    assert!(stored_uploads(&reg.root()).is_empty());
    assert_check(&reg);
}

#[test]
fn a_truncated_monolithic_upload_publishes_nothing() {
    let reg = BerthRegistry::start();
    let data = random_bytes(600_000, 8);
    let digest = digest_of(&data);
    let half = data.len() / 2;
    let length = data.len().to_string();
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", length.as_str()),
    ];

    // POST ?digest=.
    let target = format!("/v2/r/blobs/uploads/?digest={digest}");
    send_truncated(
        reg.host(),
        &request_head("POST", reg.host(), &target, &headers),
        &data[..half],
    );
    // POST, then PUT ?digest=.
    let loc = start_upload(&reg, "r");
    let target = with_query(&loc, &format!("digest={digest}"));
    send_truncated(
        reg.host(),
        &request_head("PUT", reg.host(), &target, &headers),
        &data[..half],
    );
    let n = settled_upload(&reg, &loc, &data[..half]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(stored_blobs(&reg.root()).is_empty(), "a blob was published");
    expect_error(&get_blob(&reg, "r", &digest), 404, "BLOB_UNKNOWN", "blob");
    let r = call(&reg, "HEAD", &format!("/v2/r/blobs/{digest}"), &[], b"");
    expect_status(&r, 404, "blob HEAD");
    assert_check(&reg);

    // What arrived of the PUT can be completed.
    let r = call(
        &reg,
        "PUT",
        &target,
        &[("Content-Range", &format!("{n}-{}", data.len() - 1))],
        &data[n..],
    );
    expect_status(&r, 201, "finish the upload");
    assert_blob(&reg, "r", &data);
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 6. The upload protocol

#[test]
fn monolithic_and_two_step_uploads() {
    let reg = BerthRegistry::start();
    let r = get(&reg, "/v2/");
    expect_status(&r, 200, "ping");

    // POST ?digest=.
    let data = random_bytes(70_000, 9);
    let digest = digest_of(&data);
    let r = call(
        &reg,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    expect_status(&r, 201, "monolithic POST");
    assert_eq!(location(&r), format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob(&reg, "team/app", &data);

    // POST, then PUT with everything.
    let data = random_bytes(50_000, 10);
    let digest = digest_of(&data);
    let loc = start_upload(&reg, "team/app");
    assert!(loc.starts_with("/v2/team/app/blobs/uploads/"), "{loc}");
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={digest}")),
        &[("Content-Type", "application/octet-stream")],
        &data,
    );
    expect_status(&r, 201, "POST + PUT");
    assert_eq!(location(&r), format!("/v2/team/app/blobs/{digest}"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob(&reg, "team/app", &data);
    expect_error(
        &get(&reg, &loc),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "finished upload",
    );

    // Bigger than any default body limit, in one PUT.
    let data = random_bytes(9 << 20, 17);
    let digest = digest_of(&data);
    let loc = start_upload(&reg, "team/app");
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={digest}")),
        &[],
        &data,
    );
    expect_status(&r, 201, "9 MiB PUT");
    assert_blob(&reg, "team/app", &data);

    // An empty blob.
    let digest = push_blob(&reg, "team/app", b"");
    let r = get_blob(&reg, "team/app", &digest);
    expect_status(&r, 200, "empty blob");
    assert_eq!(r.header("Content-Length"), Some("0"));

    // PUT without a digest, or with a bad one.
    let loc = start_upload(&reg, "team/app");
    expect_error(
        &call(&reg, "PUT", &loc, &[], b"x"),
        400,
        "DIGEST_INVALID",
        "PUT without digest",
    );
    assert_check(&reg);
}

#[test]
fn chunked_uploads_with_and_without_content_range() {
    let reg = BerthRegistry::start();
    let data = random_bytes(700_000, 11);
    let digest = digest_of(&data);
    let loc = start_upload(&reg, "r");
    let mut at = 0;
    for size in [100_000, 1, 299_999, 300_000] {
        let r = patch(&reg, &loc, Some(at as u64), &data[at..at + size]);
        at += size;
        expect_status(&r, 202, "PATCH");
        assert_eq!(r.header("Range").map(str::to_owned), Some(range_of(at)));
        assert_eq!(location(&r), loc);
        assert_eq!(
            r.header("Docker-Upload-UUID").map(str::to_owned),
            Some(upload_id(&loc))
        );
        assert_eq!(upload_range(&reg, &loc), range_of(at));
    }
    let r = finish_upload(&reg, &loc, &digest);
    expect_status(&r, 201, "PUT");
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob(&reg, "r", &data);

    // Streamed: PATCHes without Content-Range, the first with Transfer-Encoding: chunked.
    let data = random_bytes(500_000, 12);
    let digest = digest_of(&data);
    let loc = start_upload(&reg, "r");
    let mut body = Vec::new();
    for part in data[..400_000].chunks(33_333) {
        body.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = request_head(
        "PATCH",
        reg.host(),
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    let r = raw_exchange(reg.host(), &head, body);
    expect_status(&r, 202, "streamed PATCH");
    assert_eq!(r.header("Range"), Some("0-399999"));
    let r = patch(&reg, &loc, None, &data[400_000..]);
    expect_status(&r, 202, "second streamed PATCH");
    assert_eq!(r.header("Range"), Some("0-499999"));
    let r = finish_upload(&reg, &loc, &digest);
    expect_status(&r, 201, "PUT");
    assert_blob(&reg, "r", &data);
    assert_check(&reg);
}

#[test]
fn an_upload_can_be_cancelled() {
    let reg = BerthRegistry::start();
    let loc = start_upload(&reg, "r");
    expect_status(&patch(&reg, &loc, Some(0), b"some data"), 202, "PATCH");
    assert_eq!(upload_range(&reg, &loc), "0-8");
    let r = call(&reg, "DELETE", &loc, &[], b"");
    expect_status(&r, 204, "DELETE upload");
    expect_error(
        &get(&reg, &loc),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "GET after DELETE",
    );
    expect_error(
        &call(&reg, "DELETE", &loc, &[], b""),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "DELETE again",
    );
    expect_error(
        &patch(&reg, &loc, Some(9), b"more"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PATCH after DELETE",
    );
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(b"some data"))),
        &[],
        b"",
    );
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "PUT after DELETE");
    assert!(stored_uploads(&reg.root()).is_empty());
    assert!(stored_blobs(&reg.root()).is_empty());
    assert_check(&reg);
}

#[test]
fn blob_reads_heads_and_ranges() {
    let reg = BerthRegistry::start();
    let data = random_bytes(1000, 13);
    let digest = push_blob(&reg, "r", &data);
    let target = format!("/v2/r/blobs/{digest}");

    let r = call(&reg, "HEAD", &target, &[], b"");
    expect_status(&r, 200, "HEAD");
    assert!(r.body.is_empty());
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));

    let r = get(&reg, &target);
    expect_status(&r, 200, "GET");
    assert_eq!(r.body, data);
    assert_eq!(r.header("Content-Length"), Some("1000"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));

    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=-5", 995, 999),
        ("bytes=990-", 990, 999),
        ("bytes=500-2000", 500, 999),
        ("bytes=999-999", 999, 999),
    ] {
        let r = call(&reg, "GET", &target, &[("Range", range)], b"");
        expect_status(&r, 206, range);
        assert_eq!(
            r.header("Content-Range").map(str::to_owned),
            Some(format!("bytes {start}-{end}/1000")),
            "{range}"
        );
        assert_eq!(
            r.header("Content-Length").map(str::to_owned),
            Some((end - start + 1).to_string()),
            "{range}"
        );
        assert_eq!(r.body, &data[start..=end], "{range}");
    }
    for range in ["bytes=1000-", "bytes=5000-6000"] {
        let r = call(&reg, "GET", &target, &[("Range", range)], b"");
        expect_status(&r, 416, range);
        assert_eq!(r.header("Content-Range"), Some("bytes */1000"), "{range}");
    }

    // Unknown blobs, in known and unknown repositories.
    let absent = digest_of(b"absent");
    expect_error(&get_blob(&reg, "r", &absent), 404, "BLOB_UNKNOWN", "absent");
    expect_error(
        &get_blob(&reg, "nope", &digest),
        404,
        "BLOB_UNKNOWN",
        "absent repo",
    );
    let r = call(&reg, "HEAD", &format!("/v2/r/blobs/{absent}"), &[], b"");
    expect_status(&r, 404, "HEAD absent");
    // Unknown routes and methods.
    let r = get(&reg, "/v2/r/nothing/here");
    expect_error(&r, 404, "NOT_FOUND", "unknown route");
    let r = call(&reg, "POST", &target, &[], b"");
    assert_eq!(r.status, 405, "POST on a blob");
    error_code(&r);
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 7. Cross-repository mounts

#[test]
fn cross_repository_mount() {
    let reg = BerthRegistry::start();
    let data = random_bytes(10_000, 14);
    let digest = push_blob(&reg, "a", &data);
    expect_error(&get_blob(&reg, "b", &digest), 404, "BLOB_UNKNOWN", "before");

    let r = call(
        &reg,
        "POST",
        &format!("/v2/b/blobs/uploads/?mount={digest}&from=a"),
        &[],
        b"",
    );
    expect_status(&r, 201, "mount");
    assert_eq!(location(&r), format!("/v2/b/blobs/{digest}"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_blob(&reg, "b", &data);

    // From a repository that lacks it: an upload session instead.
    let r = call(
        &reg,
        "POST",
        &format!("/v2/c/blobs/uploads/?mount={digest}&from=empty"),
        &[],
        b"",
    );
    expect_status(&r, 202, "mount from a repository without the blob");
    let loc = location(&r);
    assert!(loc.starts_with("/v2/c/blobs/uploads/"), "{loc}");
    assert_eq!(upload_range(&reg, &loc), "0-0");
    expect_error(
        &get_blob(&reg, "c", &digest),
        404,
        "BLOB_UNKNOWN",
        "not mounted",
    );
    // The session works.
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={digest}")),
        &[],
        &data,
    );
    expect_status(&r, 201, "upload instead");
    assert_blob(&reg, "c", &data);

    // An unknown digest: an upload session too.
    let r = call(
        &reg,
        "POST",
        &format!(
            "/v2/b/blobs/uploads/?mount={}&from=a",
            digest_of(b"unknown")
        ),
        &[],
        b"",
    );
    expect_status(&r, 202, "mount of an unknown blob");
    assert_eq!(stored_blobs(&reg.root()), BTreeSet::from([digest]));
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 8. Manifests, tags, catalog, deletes

#[test]
fn manifests_by_tag_and_digest() {
    let reg = BerthRegistry::start_with(&["--delete"]);
    let (manifest, digest) = push_image(&reg, "r", "v1", 15);

    let r = put_manifest(&reg, "r", "v1", OCI_MANIFEST, &manifest);
    expect_status(&r, 201, "PUT again");
    assert_eq!(location(&r), format!("/v2/r/manifests/{digest}"));
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));

    for reference in ["v1", digest.as_str()] {
        let target = format!("/v2/r/manifests/{reference}");
        let r = call(&reg, "GET", &target, &[("Accept", OCI_MANIFEST)], b"");
        expect_status(&r, 200, &target);
        assert_eq!(r.body, manifest);
        assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
        let r = call(&reg, "HEAD", &target, &[], b"");
        expect_status(&r, 200, &target);
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("Content-Length").map(str::to_owned),
            Some(manifest.len().to_string())
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }

    // A Docker manifest keeps its media type; by digest, no tag.
    let config: Value = serde_json::from_slice(&manifest).unwrap();
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": config["config"]["digest"],
            "size": config["config"]["size"],
        },
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "digest": config["layers"][0]["digest"],
            "size": config["layers"][0]["size"],
        }],
    }))
    .unwrap();
    let docker_digest = digest_of(&docker);
    let r = put_manifest(&reg, "r", &docker_digest, DOCKER_MANIFEST, &docker);
    expect_status(&r, 201, "Docker manifest by digest");
    assert_eq!(location(&r), format!("/v2/r/manifests/{docker_digest}"));
    let r = get(&reg, &format!("/v2/r/manifests/{docker_digest}"));
    assert_eq!(r.header("Content-Type"), Some(DOCKER_MANIFEST));
    assert_eq!(r.body, docker);
    let r = get(&reg, "/v2/r/tags/list");
    assert_eq!(strings(&r.json()["tags"]), ["v1"]);

    // Manifests belong to their repository.
    expect_error(
        &get(&reg, &format!("/v2/other/manifests/{digest}")),
        404,
        "MANIFEST_UNKNOWN",
        "the manifest from another repository",
    );

    // Unknown references.
    expect_error(
        &get(&reg, "/v2/r/manifests/v2"),
        404,
        "MANIFEST_UNKNOWN",
        "unknown tag",
    );
    expect_error(
        &get(&reg, &format!("/v2/r/manifests/{}", digest_of(b"nothing"))),
        404,
        "MANIFEST_UNKNOWN",
        "unknown digest",
    );
    assert_check(&reg);
}

#[test]
fn tags_and_catalog_paginate() {
    let reg = BerthRegistry::start();
    let (manifest, _) = push_image(&reg, "r", "t0", 16);
    for tag in ["t1", "t2", "t3", "t4"] {
        expect_status(
            &put_manifest(&reg, "r", tag, OCI_MANIFEST, &manifest),
            201,
            tag,
        );
    }
    let r = get(&reg, "/v2/r/tags/list");
    expect_status(&r, 200, "tags");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.json()["name"], "r");
    assert_eq!(strings(&r.json()["tags"]), ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(r.header("Link"), None);

    // Pages of two, following the Link header.
    let mut target = "/v2/r/tags/list?n=2".to_owned();
    let mut pages = Vec::new();
    loop {
        let r = get(&reg, &target);
        expect_status(&r, 200, &target);
        pages.push(strings(&r.json()["tags"]));
        match next_link(&r) {
            Some(next) => {
                assert!(next.starts_with("/v2/r/tags/list?"), "{next}");
                target = next;
            }
            None => break,
        }
        assert!(pages.len() < 10, "endless pages");
    }
    assert_eq!(
        pages,
        [vec!["t0", "t1"], vec!["t2", "t3"], vec!["t4"]]
            .map(|p| p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
    let r = get(&reg, "/v2/r/tags/list?n=2");
    assert_eq!(
        next_link(&r).as_deref(),
        Some("/v2/r/tags/list?n=2&last=t1")
    );
    let r = get(&reg, "/v2/r/tags/list?last=t2");
    assert_eq!(strings(&r.json()["tags"]), ["t3", "t4"]);
    let r = get(&reg, "/v2/r/tags/list?n=10&last=t4");
    assert_eq!(strings(&r.json()["tags"]), Vec::<String>::new());
    assert_eq!(r.header("Link"), None);
    let r = get(&reg, "/v2/r/tags/list?n=0");
    assert_eq!(strings(&r.json()["tags"]), Vec::<String>::new());
    expect_error(
        &get(&reg, "/v2/r/tags/list?n=many"),
        400,
        "PAGINATION_NUMBER_INVALID",
        "n=many",
    );
    expect_error(
        &get(&reg, "/v2/nope/tags/list"),
        404,
        "NAME_UNKNOWN",
        "unknown repo",
    );

    // The catalog, nested names included; a repository with blobs only is not listed.
    for (i, repo) in ["b/c", "a", "d", "b"].iter().enumerate() {
        push_image(&reg, repo, "latest", 20 + i as u64);
    }
    push_blob(&reg, "blobs-only", b"x");
    let r = get(&reg, "/v2/_catalog");
    expect_status(&r, 200, "catalog");
    assert_eq!(
        strings(&r.json()["repositories"]),
        ["a", "b", "b/c", "d", "r"]
    );
    let mut target = "/v2/_catalog?n=2".to_owned();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let r = get(&reg, &target);
        expect_status(&r, 200, &target);
        let page = strings(&r.json()["repositories"]);
        assert!(page.len() <= 2, "{target}: {page:?}");
        all.extend(page);
        pages += 1;
        match next_link(&r) {
            Some(next) => {
                assert!(next.starts_with("/v2/_catalog?"), "{next}");
                target = next;
            }
            None => break,
        }
        assert!(pages < 10, "endless pages");
    }
    assert_eq!(pages, 3);
    assert_eq!(all, ["a", "b", "b/c", "d", "r"]);
    let r = get(&reg, "/v2/_catalog?n=3");
    assert_eq!(strings(&r.json()["repositories"]), ["a", "b", "b/c"]);
    let next = next_link(&r).expect("a next page");
    let r = get(&reg, &next);
    assert_eq!(strings(&r.json()["repositories"]), ["d", "r"], "{next}");
    let r = get(&reg, "/v2/_catalog?n=3&last=b");
    assert_eq!(strings(&r.json()["repositories"]), ["b/c", "d", "r"]);
    assert_eq!(r.header("Link"), None);
    assert_check(&reg);
}

#[test]
fn deletes_of_manifests_and_blobs() {
    let reg = BerthRegistry::start_with(&["--delete"]);
    let (manifest, digest) = push_image(&reg, "r", "v1", 30);
    expect_status(
        &put_manifest(&reg, "r", "v2", OCI_MANIFEST, &manifest),
        201,
        "v2",
    );
    expect_status(
        &put_manifest(&reg, "r", "v3", OCI_MANIFEST, &manifest),
        201,
        "v3",
    );

    // By tag: the tag goes, the manifest stays.
    let r = call(&reg, "DELETE", "/v2/r/manifests/v1", &[], b"");
    expect_status(&r, 202, "DELETE by tag");
    expect_error(
        &get(&reg, "/v2/r/manifests/v1"),
        404,
        "MANIFEST_UNKNOWN",
        "v1",
    );
    expect_error(
        &call(&reg, "DELETE", "/v2/r/manifests/v1", &[], b""),
        404,
        "MANIFEST_UNKNOWN",
        "DELETE v1 again",
    );
    expect_status(&get(&reg, "/v2/r/manifests/v2"), 200, "v2");
    expect_status(
        &get(&reg, &format!("/v2/r/manifests/{digest}")),
        200,
        "by digest",
    );

    // By digest: the manifest goes with the tags that name it.
    let target = format!("/v2/r/manifests/{digest}");
    let r = call(&reg, "DELETE", &target, &[], b"");
    expect_status(&r, 202, "DELETE by digest");
    expect_error(&get(&reg, &target), 404, "MANIFEST_UNKNOWN", "by digest");
    let r = call(&reg, "HEAD", &target, &[], b"");
    expect_status(&r, 404, "HEAD by digest");
    expect_error(
        &get(&reg, "/v2/r/manifests/v2"),
        404,
        "MANIFEST_UNKNOWN",
        "v2",
    );
    expect_error(
        &get(&reg, "/v2/r/manifests/v3"),
        404,
        "MANIFEST_UNKNOWN",
        "v3",
    );
    assert_eq!(
        strings(&get(&reg, "/v2/r/tags/list").json()["tags"]),
        Vec::<String>::new()
    );
    expect_error(
        &call(&reg, "DELETE", &target, &[], b""),
        404,
        "MANIFEST_UNKNOWN",
        "DELETE by digest again",
    );

    // Blobs.
    let doc: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = doc["layers"][0]["digest"].as_str().unwrap().to_owned();
    let target = format!("/v2/r/blobs/{layer}");
    let r = call(&reg, "DELETE", &target, &[], b"");
    expect_status(&r, 202, "DELETE blob");
    expect_error(&get(&reg, &target), 404, "BLOB_UNKNOWN", "deleted blob");
    expect_error(
        &call(&reg, "DELETE", &target, &[], b""),
        404,
        "BLOB_UNKNOWN",
        "DELETE blob again",
    );
    assert_check(&reg);
}

#[test]
fn deletes_need_the_delete_flag() {
    let reg = BerthRegistry::start();
    let (manifest, digest) = push_image(&reg, "r", "v1", 31);
    let doc: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = doc["layers"][0]["digest"].as_str().unwrap().to_owned();
    for target in [
        "/v2/r/manifests/v1".to_owned(),
        format!("/v2/r/manifests/{digest}"),
        format!("/v2/r/blobs/{layer}"),
    ] {
        let r = call(&reg, "DELETE", &target, &[], b"");
        expect_error(&r, 405, "UNSUPPORTED", &target);
    }
    expect_status(&get(&reg, "/v2/r/manifests/v1"), 200, "v1 stays");
    expect_status(&get_blob(&reg, "r", &layer), 200, "layer stays");
    // Cancelling an upload is no delete.
    let loc = start_upload(&reg, "r");
    expect_status(&call(&reg, "DELETE", &loc, &[], b""), 204, "cancel upload");
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 9. Referrers

#[test]
fn referrers_list_and_filter_artifacts() {
    let reg = BerthRegistry::start_with(&["--delete"]);
    let (image, image_digest) = push_image(&reg, "r", "v1", 40);
    let empty = push_blob(&reg, "r", b"{}");
    let sbom_layer = push_blob(&reg, "r", b"{\"sbom\":true}");
    let sig_config = push_blob(&reg, "r", b"{\"sig\":1}");
    let subject = json!({"mediaType": OCI_MANIFEST, "digest": image_digest, "size": image.len()});

    let sbom = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/json", "digest": sbom_layer, "size": 13}],
        "subject": subject,
        "annotations": {"org.example.kind": "sbom", "org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }))
    .unwrap();
    let sbom_digest = digest_of(&sbom);
    let r = put_manifest(&reg, "r", &sbom_digest, OCI_MANIFEST, &sbom);
    expect_status(&r, 201, "artifact PUT");
    assert_eq!(r.header("OCI-Subject"), Some(image_digest.as_str()));
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(sbom_digest.as_str())
    );

    // A second artifact whose type is its config's media type.
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.example.signature.config", "digest": sig_config, "size": 9},
        "layers": [],
        "subject": subject,
    }))
    .unwrap();
    let sig_digest = digest_of(&sig);
    let r = put_manifest(&reg, "r", "sig", OCI_MANIFEST, &sig);
    expect_status(&r, 201, "signature PUT");
    assert_eq!(r.header("OCI-Subject"), Some(image_digest.as_str()));

    // A manifest without a subject answers no OCI-Subject.
    let r = put_manifest(&reg, "r", "v1", OCI_MANIFEST, &image);
    assert_eq!(r.header("OCI-Subject"), None);

    let r = get(&reg, &format!("/v2/r/referrers/{image_digest}"));
    expect_status(&r, 200, "referrers");
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    assert_eq!(r.header("OCI-Filters-Applied"), None);
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{index}");
    let find = |d: &str| {
        manifests
            .iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not in {index}"))
    };
    let m = find(&sbom_digest);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["size"], sbom.len());
    assert_eq!(m["artifactType"], "application/vnd.example.sbom.v1+json");
    assert_eq!(m["annotations"]["org.example.kind"], "sbom");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2024-01-01T00:00:00Z"
    );
    let m = find(&sig_digest);
    assert_eq!(m["size"], sig.len());
    assert_eq!(
        m["artifactType"],
        "application/vnd.example.signature.config"
    );

    // Filtered.
    let r = get(
        &reg,
        &format!(
            "/v2/r/referrers/{image_digest}?artifactType=application/vnd.example.sbom.v1%2Bjson"
        ),
    );
    expect_status(&r, 200, "filtered referrers");
    assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let manifests = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert_eq!(manifests[0]["digest"], sbom_digest.as_str());
    let r = get(
        &reg,
        &format!("/v2/r/referrers/{image_digest}?artifactType=application/none"),
    );
    expect_status(&r, 200, "filter matching nothing");
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"], json!([]));

    // A subject without referrers, and one that does not exist at all.
    let nowhere = digest_of(b"no such subject");
    for subject in [&sbom_digest, &nowhere] {
        let r = get(&reg, &format!("/v2/r/referrers/{subject}"));
        expect_status(&r, 200, "no referrers");
        assert_eq!(r.header("Content-Type"), Some(OCI_INDEX));
        assert_eq!(r.json()["manifests"], json!([]));
    }
    expect_error(
        &get(&reg, "/v2/r/referrers/sha256:nothex"),
        400,
        "DIGEST_INVALID",
        "bad digest",
    );

    // An artifact may be pushed before its subject.
    let later = digest_of(b"a subject pushed later");
    let early = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.early",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": later, "size": 22},
    }))
    .unwrap();
    let r = put_manifest(&reg, "r", &digest_of(&early), OCI_MANIFEST, &early);
    expect_status(&r, 201, "artifact before its subject");
    assert_eq!(r.header("OCI-Subject"), Some(later.as_str()));
    let r = get(&reg, &format!("/v2/r/referrers/{later}"));
    assert_eq!(
        r.json()["manifests"][0]["digest"],
        digest_of(&early).as_str()
    );

    // A deleted referrer is no longer listed.
    let r = call(
        &reg,
        "DELETE",
        &format!("/v2/r/manifests/{sig_digest}"),
        &[],
        b"",
    );
    expect_status(&r, 202, "delete the signature");
    let r = get(&reg, &format!("/v2/r/referrers/{image_digest}"));
    let listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, [sbom_digest]);
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 10. Concurrency

#[test]
fn eight_clients_push_the_same_blob_at_once() {
    let reg = BerthRegistry::start();
    let data = random_bytes(1 << 20, 50);
    let digest = digest_of(&data);
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (reg, data, digest, barrier) = (&reg, &data, &digest, &barrier);
                s.spawn(move || {
                    let loc = start_upload(reg, "r");
                    barrier.wait();
                    let half = data.len() / 2;
                    // Half the clients in one PUT, half in a PATCH and a PUT.
                    let r = if i % 2 == 0 {
                        call(
                            reg,
                            "PUT",
                            &with_query(&loc, &format!("digest={digest}")),
                            &[],
                            data,
                        )
                    } else {
                        expect_status(&patch(reg, &loc, Some(0), &data[..half]), 202, "PATCH");
                        call(
                            reg,
                            "PUT",
                            &with_query(&loc, &format!("digest={digest}")),
                            &[("Content-Range", &format!("{half}-{}", data.len() - 1))],
                            &data[half..],
                        )
                    };
                    (r.status, String::from_utf8_lossy(&r.body).into_owned())
                })
            })
            .collect();
        for h in handles {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 201, "{body}");
        }
    });
    assert_eq!(stored_blobs(&reg.root()), BTreeSet::from([digest]));
    assert!(stored_uploads(&reg.root()).is_empty());
    assert!(
        tree(&reg.root().join("tmp")).is_empty(),
        "{:?}",
        tree(&reg.root().join("tmp"))
    );
    assert_blob(&reg, "r", &data);
    assert_check(&reg);
}

#[test]
fn concurrent_patches_to_different_uploads() {
    let reg = BerthRegistry::start();
    let blobs = [random_bytes(1 << 20, 51), random_bytes(1 << 20, 52)];
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        for (i, data) in blobs.iter().enumerate() {
            let (reg, barrier) = (&reg, &barrier);
            s.spawn(move || {
                let repo = format!("r{i}");
                let loc = start_upload(reg, &repo);
                barrier.wait();
                for (n, chunk) in data.chunks(128 << 10).enumerate() {
                    let at = n * (128 << 10);
                    let r = patch(reg, &loc, Some(at as u64), chunk);
                    expect_status(&r, 202, "PATCH");
                    assert_eq!(
                        r.header("Range").map(str::to_owned),
                        Some(range_of(at + chunk.len()))
                    );
                }
                let target = with_query(&loc, &format!("digest={}", digest_of(data)));
                expect_status(&call(reg, "PUT", &target, &[], b""), 201, "PUT");
            });
        }
    });
    assert_blob(&reg, "r0", &blobs[0]);
    assert_blob(&reg, "r1", &blobs[1]);
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// 11. A server killed mid-upload

#[test]
fn a_killed_server_restarts_with_its_storage_and_uploads() {
    let reg = BerthRegistry::start();
    let (manifest, digest) = push_image(&reg, "r", "v1", 60);
    let data = random_bytes(800_000, 61);
    let blob_digest = digest_of(&data);
    let loc = start_upload(&reg, "r");
    let half = data.len() / 2;
    let r = patch(&reg, &loc, Some(0), &data[..half]);
    expect_status(&r, 202, "half");

    let dir = reg.kill();
    if let Err(problems) = registry_check(&dir.path().join("root")) {
        panic!("check after the kill:\n{problems}");
    }
    let reg = BerthRegistry::start_in(dir, &[]);
    let r = get(&reg, "/v2/r/manifests/v1");
    expect_status(&r, 200, "manifest after restart");
    assert_eq!(r.body, manifest);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    let doc: Value = serde_json::from_slice(&manifest).unwrap();
    for blob in [&doc["config"], &doc["layers"][0]] {
        let r = get_blob(&reg, "r", blob["digest"].as_str().unwrap());
        expect_status(&r, 200, "blob after restart");
        assert_eq!(r.body.len() as u64, blob["size"].as_u64().unwrap());
    }
    assert_check(&reg);

    assert_eq!(upload_range(&reg, &loc), range_of(half));
    let r = patch(&reg, &loc, Some(half as u64), &data[half..]);
    expect_status(&r, 202, "the rest");
    assert_eq!(
        r.header("Range").map(str::to_owned),
        Some(range_of(data.len()))
    );
    let r = finish_upload(&reg, &loc, &blob_digest);
    expect_status(&r, 201, "finish after restart");
    assert_blob(&reg, "r", &data);

    // A wrong digest after a restart is still caught (the hash is recomputed).
    let loc = start_upload(&reg, "r");
    expect_status(&patch(&reg, &loc, Some(0), b"before"), 202, "PATCH");
    let dir = reg.kill();
    let reg = BerthRegistry::start_in(dir, &[]);
    expect_status(
        &patch(&reg, &loc, Some(6), b" after"),
        202,
        "PATCH after restart",
    );
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(b"before"))),
        &[],
        b"",
    );
    expect_error(&r, 400, "DIGEST_INVALID", "wrong digest after restart");
    let r = call(
        &reg,
        "POST",
        &format!("/v2/r/blobs/uploads/?digest={}", digest_of(b"before after")),
        &[],
        b"before after",
    );
    expect_status(&r, 201, "the right one");
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// Keep-alive: a refused request's body is never taken for the next request

#[test]
fn a_refused_body_is_not_read_as_a_request() {
    let reg = BerthRegistry::start();
    let loc = start_upload(&reg, "r");
    let smuggled = format!(
        "GET /v2/smuggled/tags/list HTTP/1.1\r\nHost: {}\r\n\r\n",
        reg.host()
    );
    let cases = [
        (
            "PATCH out of order",
            request_head(
                "PATCH",
                reg.host(),
                &loc,
                &[
                    ("Connection", "keep-alive"),
                    ("Content-Range", &format!("100-{}", 99 + smuggled.len())),
                    ("Content-Length", &smuggled.len().to_string()),
                ],
            ),
        ),
        (
            "manifest with a bad name",
            request_head(
                "PUT",
                reg.host(),
                "/v2/Bad/manifests/latest",
                &[
                    ("Connection", "keep-alive"),
                    ("Content-Length", &smuggled.len().to_string()),
                ],
            ),
        ),
        (
            "blob POST with a bad digest",
            request_head(
                "POST",
                reg.host(),
                "/v2/r/blobs/uploads/?digest=sha256:00",
                &[
                    ("Connection", "keep-alive"),
                    ("Content-Length", &smuggled.len().to_string()),
                ],
            ),
        ),
    ];
    for (what, head) in cases {
        let head = head.replace("Connection: close\r\n", "");
        let mut stream = TcpStream::connect(reg.host()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut pipeline = head.into_bytes();
        pipeline.extend_from_slice(smuggled.as_bytes());
        pipeline.extend_from_slice(
            format!(
                "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                reg.host()
            )
            .as_bytes(),
        );
        stream.write_all(&pipeline).unwrap();
        let mut r = BufReader::new(stream);
        let first = read_response(&mut r).unwrap();
        assert!(
            (400..500).contains(&first.status),
            "{what}: {}",
            first.status
        );
        // The connection either closes or answers the ping next; never the smuggled GET.
        if let Ok(second) = read_response(&mut r) {
            assert_eq!(
                second.status,
                200,
                "{what}: the body was taken for a request: {:?} {}",
                second.head,
                String::from_utf8_lossy(&second.body)
            );
            assert_eq!(second.body, b"{}", "{what}");
        }
    }
    assert_eq!(upload_range(&reg, &loc), "0-0");
}

#[test]
fn concurrent_manifest_pushes_to_one_tag() {
    let reg = BerthRegistry::start();
    let (manifest, _) = push_image(&reg, "r", "v0", 70);
    let variants: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let mut m: Value = serde_json::from_slice(&manifest).unwrap();
            m["annotations"] = json!({"variant": i.to_string()});
            serde_json::to_vec(&m).unwrap()
        })
        .collect();
    let barrier = Barrier::new(variants.len());
    std::thread::scope(|s| {
        for variant in &variants {
            let (reg, barrier) = (&reg, &barrier);
            s.spawn(move || {
                barrier.wait();
                for _ in 0..5 {
                    let r = put_manifest(reg, "r", "latest", OCI_MANIFEST, variant);
                    expect_status(&r, 201, "concurrent PUT");
                }
            });
        }
    });
    let r = get(&reg, "/v2/r/manifests/latest");
    expect_status(&r, 200, "latest");
    assert!(variants.contains(&r.body), "latest is none of the variants");
    assert_eq!(
        r.header("Docker-Content-Digest").map(str::to_owned),
        Some(digest_of(&r.body))
    );
    assert!(tree(&reg.root().join("tmp")).is_empty());
    assert_check(&reg);
}

// ---------------------------------------------------------------------------------------------
// Review findings: each a request sequence that once went wrong

/// BuildKit's registry cache is an index whose `manifests` are plain blobs (layers and a
/// cache config): accepted when the repository holds them, kept by gc, passed by check.
#[test]
fn an_index_listing_plain_blobs_is_accepted_and_kept_by_gc() {
    let reg = BerthRegistry::start();
    let layer = random_bytes(2048, 41);
    let cache_config = br#"{"layers":[]}"#.to_vec();
    let layer_digest = push_blob(&reg, "cache", &layer);
    let config_digest = push_blob(&reg, "cache", &cache_config);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()},
            {"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": config_digest, "size": cache_config.len()},
        ],
    }))
    .unwrap();
    let r = put_manifest(&reg, "cache", "buildcache", OCI_INDEX, &index);
    expect_status(&r, 201, "cache index PUT");
    // A plain blob the repository lacks is still refused.
    let missing = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": "application/vnd.buildkit.cacheconfig.v0", "digest": digest_of(b"nope"), "size": 4}],
    }))
    .unwrap();
    let r = put_manifest(&reg, "cache", "other", OCI_INDEX, &missing);
    expect_error(
        &r,
        400,
        "MANIFEST_BLOB_UNKNOWN",
        "cache index with a missing blob",
    );
    assert_check(&reg);
    let dir = reg.kill();
    let root = dir.path().join("root");
    let out = std::process::Command::new(common::berth_bin())
        .args(["registry", "gc", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let blobs = stored_blobs(&root);
    for d in [&layer_digest, &config_digest] {
        assert!(blobs.contains(d.as_str()), "gc must keep {d}: {blobs:?}");
    }
    registry_check(&root).unwrap();
}

/// A body longer or shorter than its `Content-Range` (here a chunked body, which has no
/// Content-Length to compare) is refused with 416 and leaves the upload as it was; a range
/// whose end would overflow is refused too.
#[test]
fn a_body_that_does_not_fill_its_content_range_is_undone() {
    let reg = BerthRegistry::start();
    let loc = start_upload(&reg, "ranges");
    expect_status(
        &patch(&reg, &loc, Some(0), b"0123456789"),
        202,
        "first chunk",
    );
    let target = loc.clone();
    let head = request_head(
        "PATCH",
        reg.host(),
        &target,
        &[("Content-Range", "10-14"), ("Transfer-Encoding", "chunked")],
    );
    // 20 bytes in chunks where the range says 5.
    let body = b"14\r\nabcdefghijklmnopqrst\r\n0\r\n\r\n".to_vec();
    let r = raw_exchange(reg.host(), &head, body);
    expect_error(
        &r,
        416,
        "BLOB_UPLOAD_INVALID",
        "chunk longer than its range",
    );
    assert_eq!(upload_range(&reg, &loc), range_of(10));
    let r = call(
        &reg,
        "PATCH",
        &loc,
        &[
            ("Content-Range", "10-18446744073709551615"),
            ("Content-Length", "0"),
        ],
        b"",
    );
    assert!(matches!(r.status, 400 | 416), "{:?}", r.head);
    assert_eq!(upload_range(&reg, &loc), range_of(10));
    let r = call(
        &reg,
        "PUT",
        &with_query(&loc, &format!("digest={}", digest_of(b"0123456789"))),
        &[],
        b"",
    );
    expect_status(&r, 201, "finish");
    assert_blob(&reg, "ranges", b"0123456789");
    assert_check(&reg);
}

/// Digests of another algorithm name nothing here: reads answer 404 (and referrers an
/// empty list), a POST asking for sha512 is refused before any byte is sent, and a
/// reversed range is unsatisfiable.
#[test]
fn other_digest_algorithms_and_reversed_ranges() {
    let reg = BerthRegistry::start();
    let data = random_bytes(1000, 7);
    let digest = push_blob(&reg, "algos", &data);
    let sha512 = format!("sha512:{}", "a".repeat(128));
    expect_error(
        &get(&reg, &format!("/v2/algos/blobs/{sha512}")),
        404,
        "BLOB_UNKNOWN",
        "sha512 blob",
    );
    expect_error(
        &get(&reg, &format!("/v2/algos/manifests/{sha512}")),
        404,
        "MANIFEST_UNKNOWN",
        "sha512 manifest",
    );
    let r = get(&reg, &format!("/v2/algos/referrers/{sha512}"));
    expect_status(&r, 200, "sha512 referrers");
    assert_eq!(r.json()["manifests"], json!([]));
    let r = call(
        &reg,
        "POST",
        "/v2/algos/blobs/uploads/?digest-algorithm=sha512",
        &[],
        b"",
    );
    expect_error(&r, 400, "DIGEST_INVALID", "POST for sha512");
    assert!(stored_uploads(&reg.root()).is_empty());
    // `%3A` for the colon, as some clients send it.
    let encoded = digest.replace(':', "%3A");
    expect_status(
        &get(&reg, &format!("/v2/algos/blobs/{encoded}")),
        200,
        "percent-encoded digest",
    );
    let r = call(
        &reg,
        "GET",
        &format!("/v2/algos/blobs/{digest}"),
        &[("Range", "bytes=500-0")],
        b"",
    );
    assert_eq!(r.status, 416, "{:?}", r.head);
    assert_eq!(r.header("Content-Range"), Some("bytes */1000"));
    assert_check(&reg);
}

/// `gc` and `check` name a registry that must exist: a mistyped root is an error, not an
/// empty registry created on the spot.
#[test]
fn maintenance_commands_refuse_a_missing_root() {
    let dir = tempfile::tempdir_in(common::test_tmp()).unwrap();
    let missing = dir.path().join("typo");
    for command in ["gc", "check"] {
        let out = std::process::Command::new(common::berth_bin())
            .args(["registry", command, "--root"])
            .arg(&missing)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{command}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("not a registry root"),
            "{command}: {stderr}"
        );
        assert!(!missing.exists(), "{command} created the root");
    }
}

/// A PATCH racing the PUT that ends the same upload can never add bytes to the published
/// blob: the upload stays locked until it is published, and a blob is never replaced.
#[test]
fn a_patch_racing_the_final_put_cannot_change_the_blob() {
    let reg = BerthRegistry::start();
    let data = random_bytes(4 << 20, 99);
    let digest = digest_of(&data);
    for round in 0..12 {
        let loc = start_upload(&reg, "race");
        expect_status(&patch(&reg, &loc, None, &data), 202, "the blob's bytes");
        let barrier = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                let r = finish_upload(&reg, &loc, &digest);
                // 400 when the junk landed first: the digest no longer matches.
                assert!(matches!(r.status, 201 | 400), "round {round}: {:?}", r.head);
            });
            s.spawn(|| {
                barrier.wait();
                let r = patch(&reg, &loc, None, b"junk");
                // Before the PUT (which then refuses the digest) or after it (the upload
                // is gone by then).
                assert!(matches!(r.status, 202 | 404), "round {round}: {:?}", r.head);
            });
        });
        let r = get_blob(&reg, "race", &digest);
        if r.status == 404 {
            // The junk landed first and the PUT was refused; nothing was published.
            continue;
        }
        expect_status(&r, 200, "the published blob");
        assert!(r.body == data, "round {round}: the blob changed");
    }
    assert_check(&reg);
}

/// Two server processes on one root (as `--read-only` views or several writers behind a
/// balancer run): a blob pushed through both at once is stored once, what one stores the
/// other serves, and `gc` is refused while either writes.
#[test]
fn two_server_processes_share_one_root() {
    let first = BerthRegistry::start();
    let second = BerthRegistry::start_sharing(&first, &[]);
    let viewer = BerthRegistry::start_sharing(&first, &["--read-only"]);
    let layer = random_bytes(200_000, 77);
    std::thread::scope(|scope| {
        for reg in [&first, &second, &first, &second] {
            let layer = &layer;
            scope.spawn(move || push_blob(reg, "team/shared", layer));
        }
    });
    assert_eq!(
        stored_blobs(&first.root()),
        BTreeSet::from([digest_of(&layer)])
    );
    let (manifest, digest) = push_image(&second, "team/shared", "v1", 78);
    for reg in [&first, &second, &viewer] {
        assert_blob(reg, "team/shared", &layer);
        let r = get(reg, "/v2/team/shared/manifests/v1");
        expect_status(&r, 200, "manifest GET from a sibling server");
        assert!(
            r.body == manifest,
            "the manifest pushed through the other server"
        );
        assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    }
    let r = call(
        &viewer,
        "POST",
        "/v2/team/shared/blobs/uploads/",
        &[("Content-Length", "0")],
        b"",
    );
    assert!(
        r.status >= 400,
        "a read-only view took an upload: {}",
        r.status
    );
    let gc = registry_gc(&first.root(), &[]);
    assert!(!gc.status.success(), "gc ran beside two writable servers");
    let stderr = String::from_utf8_lossy(&gc.stderr);
    assert!(
        stderr.contains("in use by a writable"),
        "gc's refusal: {stderr}"
    );
    assert_check(&first);
    drop(second);
    drop(viewer);
    let root = first.root();
    let _dir = first.kill(); // the root stays until the end of the test
    let gc = registry_gc(&root, &[]);
    assert!(gc.status.success(), "gc after the servers stopped: {gc:?}");
    assert_eq!(stored_uploads(&root), BTreeSet::new());
}
