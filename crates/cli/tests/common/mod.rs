//! Shared helpers for the integration tests: a berth on a temporary state root, and builders
//! for rootfs tarballs and image archives (good and malicious).

#![allow(dead_code)]

pub mod api;
pub mod dockerd;
pub mod host;
pub mod registry;
pub mod registry_server;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::{Value, json};

/// The berth binary under test.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// A berth with its own state root, removed at the end of the test.
pub struct Berth {
    pub dir: tempfile::TempDir,
}

impl Berth {
    pub fn new() -> Berth {
        Berth {
            dir: tempfile::Builder::new()
                .prefix("berth-test-")
                .tempdir_in(test_tmp())
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root());
        c.env_remove("BERTH_ROOT");
        // Registry credentials: this berth's own, never the host's ~/.docker/config.json.
        c.env("DOCKER_CONFIG", self.docker_config());
        c
    }

    /// The Docker config directory (`config.json`: registry credentials) this berth uses; the
    /// client creates it on `login`, as docker does.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth")
    }

    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut cmd = self.command();
        cmd.args(args);
        output_with_input(cmd, Some(input))
    }

    /// `system check` passes; returns its report.
    pub fn assert_sound(&self, after: &str) -> String {
        let out = self.run(&["system", "check"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && text.contains(": no problems"),
            "system check after {after}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// `system check` passes and reports nothing left over.
    pub fn assert_clean(&self, after: &str) {
        let report = self.assert_sound(after);
        assert!(!report.contains("leftovers"), "after {after}: {report}");
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "berth {args:?} should fail but succeeded"
        );
        String::from_utf8(out.stderr).expect("utf-8 stderr")
    }

    /// The image ID `name` resolves to.
    pub fn image_id(&self, name: &str) -> String {
        self.ok(&["image", "inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    /// Removes every container of this root, running or not, with its anonymous volumes
    /// (a test's cleanup: no monitor, veth or cgroup left behind).
    pub fn remove_all_containers(&self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.run(&args);
        }
    }

    /// A fingerprint of everything in the store that must not change when a command fails.
    pub fn snapshot(&self) -> Vec<String> {
        let mut out = vec![self.ok(&[
            "images",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Repository}}:{{.Tag}}",
        ])];
        for sub in ["blobs/sha256", "layers", "ingest"] {
            let dir = self.root().join(sub);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy()))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            out.extend(names);
        }
        out
    }

    /// Every blob still hashes to its name.
    pub fn assert_blobs_verify(&self) {
        let dir = self.root().join("blobs/sha256");
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let data = std::fs::read(e.path()).unwrap();
            assert_eq!(
                sha256_hex(&data),
                e.file_name().to_string_lossy(),
                "blob {} does not match its digest",
                e.path().display()
            );
        }
    }
}

pub fn assert_success(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where tests put their files: beside the build, not in a tmpfs that may lack xattrs.
pub fn test_tmp() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("berth-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn sha256_hex(data: &[u8]) -> String {
    berth_reference::Digest::sha256_of(data)
        .encoded()
        .to_string()
}

/// Runs `cmd` with `input` on its stdin (none: /dev/null) and its output captured. The
/// writer may see EPIPE when the command stops reading early; that is fine.
pub fn output_with_input(mut cmd: Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn berth");
    if let Some(input) = input {
        let _ = child.stdin.take().expect("stdin").write_all(input);
    }
    child.wait_with_output().expect("wait berth")
}

/// Requires an external tool; a missing one fails the test with the fix, never skips it.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/install-deps.sh"
    );
}

/// A small root filesystem tar: directories, files, a symlink, a hard link, modes, owners.
pub fn rootfs_tar(marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add =
        |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>, uid: u64| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, path, data).unwrap();
        };
    add("bin/", tar::EntryType::Directory, 0o755, b"", None, 0);
    add("etc/", tar::EntryType::Directory, 0o755, b"", None, 0);
    add(
        "etc/marker",
        tar::EntryType::Regular,
        0o644,
        marker.as_bytes(),
        None,
        0,
    );
    add(
        "etc/secret",
        tar::EntryType::Regular,
        0o600,
        b"s3cret\n",
        None,
        1000,
    );
    add(
        "bin/tool",
        tar::EntryType::Regular,
        0o4755,
        b"#!/bin/sh\necho tool\n",
        None,
        0,
    );
    add(
        "bin/tool-link",
        tar::EntryType::Symlink,
        0o777,
        b"",
        Some("/bin/tool"),
        0,
    );
    add(
        "bin/tool-hard",
        tar::EntryType::Link,
        0o755,
        b"",
        Some("bin/tool"),
        0,
    );
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar entry with a raw name (tar::Builder refuses `..`, which attacks need).
pub fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_old();
    {
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            bytes[157..157 + l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// Knobs for [`oci_layout`] to make broken archives.
#[derive(Default, Clone)]
pub struct LayoutOptions {
    /// Override a layer's media type.
    pub layer_media_type: Option<String>,
    /// Leave the layer blob out of the archive.
    pub omit_layer: bool,
    /// Store other bytes under the layer's digest name.
    pub corrupt_layer: bool,
    /// Tag annotation (`io.containerd.image.name`).
    pub name: Option<String>,
    /// Gzip the layer.
    pub gzip_layer: bool,
    /// Compress the layer with zstd.
    pub zstd_layer: bool,
    /// Claim this diff ID (hex) in the config instead of the layer's real one.
    pub claimed_diff_id: Option<String>,
}

/// An OCI image layout tar holding one image made of `layer_tar`.
pub fn oci_layout(layer_tar: &[u8], opts: &LayoutOptions) -> Vec<u8> {
    let diff_id = opts
        .claimed_diff_id
        .clone()
        .unwrap_or_else(|| sha256_hex(layer_tar));
    let layer_blob = if opts.gzip_layer {
        gzip(layer_tar)
    } else if opts.zstd_layer {
        zstd::encode_all(layer_tar, 3).unwrap()
    } else {
        layer_tar.to_vec()
    };
    let layer_digest = sha256_hex(&layer_blob);
    let config = serde_json::to_vec(&json!({
        "architecture": berth_arch(), "os": "linux",
        "config": {"Cmd": ["/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "test layer"}],
    }))
    .unwrap();
    let config_digest = sha256_hex(&config);
    let media_type = opts.layer_media_type.clone().unwrap_or_else(|| {
        if opts.gzip_layer {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        } else if opts.zstd_layer {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        } else {
            "application/vnd.oci.image.layer.v1.tar"
        }
        .into()
    });
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": format!("sha256:{layer_digest}"), "size": layer_blob.len()}],
    }))
    .unwrap();
    let manifest_digest = sha256_hex(&manifest);
    let mut desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_digest}"), "size": manifest.len()});
    if let Some(n) = &opts.name {
        desc["annotations"] = json!({"io.containerd.image.name": n});
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [desc]})).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
        (format!("blobs/sha256/{manifest_digest}"), manifest),
        (format!("blobs/sha256/{config_digest}"), config),
    ];
    if !opts.omit_layer {
        let bytes = if opts.corrupt_layer {
            b"not the layer".to_vec()
        } else {
            layer_blob
        };
        files.push((format!("blobs/sha256/{layer_digest}"), bytes));
    }
    tar_of(&files)
}

pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn berth_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn json(s: &str) -> Value {
    serde_json::from_str(s).expect("valid JSON")
}

/// Polls `f` until it is true or `secs` pass.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Now as `events --since/--until` take it: Unix seconds with nanoseconds.
pub fn unix_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// Whether nothing listens on `addr` (`HOST:PORT`). A connect that succeeds to itself does
/// not count: Linux lets a socket whose ephemeral port is the one just freed connect to
/// itself (TCP simultaneous open), which made "the server stopped" checks flaky.
pub fn nothing_listens(addr: impl std::net::ToSocketAddrs) -> bool {
    match std::net::TcpStream::connect(addr) {
        Err(_) => true,
        Ok(s) => s.local_addr().ok() == s.peer_addr().ok(),
    }
}
