//! Bad input gets one clear error line and leaves the store exactly as it was.

mod common;

use common::*;

/// A store holding one good image, and its fingerprint.
fn seeded() -> (Berth, Vec<String>) {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "good:1"], &rootfs_tar("good")),
        &["import"],
    );
    let snap = b.snapshot();
    (b, snap)
}

/// Feeds `input` to `berth ARGS`, expects a one-line error containing `needle`, and checks
/// that nothing in the store changed.
fn refused(args: &[&str], input: &[u8], needle: &str) {
    let (b, before) = seeded();
    let out = b.run_stdin(args, input);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "berth {args:?} accepted bad input");
    assert_eq!(err.lines().count(), 1, "one error line, got:\n{err}");
    assert!(err.starts_with("Error: "), "{err}");
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err}"
    );
    assert_eq!(
        b.snapshot(),
        before,
        "the store changed after a refused {args:?}"
    );
    b.assert_blobs_verify();
}

fn layer_with(entries: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    entries(&mut b);
    b.into_inner().unwrap()
}

#[test]
fn truncated_gzip_import() {
    let gz = gzip(&rootfs_tar("t"));
    refused(
        &["import", "-", "bad:1"],
        &gz[..gz.len() / 2],
        "importing -",
    );
}

#[test]
fn truncated_gzip_archive() {
    let gz = gzip(&oci_layout(&rootfs_tar("t"), &LayoutOptions::default()));
    refused(&["load"], &gz[..gz.len() - 100], "archive");
}

#[test]
fn blob_digest_mismatch() {
    let opts = LayoutOptions {
        corrupt_layer: true,
        ..Default::default()
    };
    refused(&["load"], &oci_layout(&rootfs_tar("t"), &opts), "hashed to");
}

#[test]
fn layer_with_dotdot_escape() {
    let layer =
        layer_with(|b| raw_entry(b, "../../escaped", tar::EntryType::Regular, b"pwned", None));
    refused(
        &["load"],
        &oci_layout(&layer, &LayoutOptions::default()),
        "escapes",
    );
    refused(&["import", "-"], &layer, "escapes");
}

#[test]
fn layer_with_absolute_symlink_escape() {
    let outside = test_tmp().join("symlink-target");
    std::fs::create_dir_all(&outside).unwrap();
    let layer = layer_with(|b| {
        raw_entry(
            b,
            "evil",
            tar::EntryType::Symlink,
            b"",
            Some(outside.to_str().unwrap()),
        );
        raw_entry(b, "evil/pwned", tar::EntryType::Regular, b"pwned", None);
    });
    refused(
        &["load"],
        &oci_layout(&layer, &LayoutOptions::default()),
        "escapes",
    );
    assert!(
        !outside.join("pwned").exists(),
        "a file was written through the symlink"
    );
}

#[test]
fn layer_with_hardlink_escape() {
    let layer = layer_with(|b| {
        raw_entry(
            b,
            "passwd",
            tar::EntryType::Link,
            b"",
            Some("../../../../etc/passwd"),
        )
    });
    refused(
        &["load"],
        &oci_layout(&layer, &LayoutOptions::default()),
        "escapes",
    );
    let layer =
        layer_with(|b| raw_entry(b, "shadow", tar::EntryType::Link, b"", Some("/etc/shadow")));
    refused(
        &["load"],
        &oci_layout(&layer, &LayoutOptions::default()),
        "shadow",
    );
}

#[test]
fn unknown_layer_media_type() {
    let opts = LayoutOptions {
        layer_media_type: Some("application/x-mystery".into()),
        ..Default::default()
    };
    refused(
        &["load"],
        &oci_layout(&rootfs_tar("t"), &opts),
        "unsupported media type application/x-mystery",
    );
}

#[test]
fn manifest_names_a_missing_blob() {
    let opts = LayoutOptions {
        omit_layer: true,
        ..Default::default()
    };
    refused(
        &["load"],
        &oci_layout(&rootfs_tar("t"), &opts),
        "archive is missing layer sha256:",
    );
}

#[test]
fn not_an_archive() {
    refused(
        &["load"],
        &tar_of(&[("hello.txt".into(), b"hi".to_vec())]),
        "not a docker save archive",
    );
    refused(&["load"], b"\x42\x5a\x68garbage", "bzip2");
}

#[test]
fn bad_references_and_changes() {
    let (b, before) = seeded();
    for (args, needle) in [
        (vec!["tag", "good:1", "Bad/Name"], "must be lowercase"),
        (
            vec!["tag", "good:1", "x:bad tag"],
            "invalid reference format",
        ),
        (vec!["tag", "nope", "x"], "No such image: nope"),
        (
            vec!["import", "-c", "RUN rm -rf /", "/dev/null"],
            "RUN is not a valid change command",
        ),
    ] {
        let err = b.fails(&args);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(b.snapshot(), before);
}

#[test]
fn gzipped_oci_layout_with_gzipped_layer_loads() {
    let b = Berth::new();
    let opts = LayoutOptions {
        gzip_layer: true,
        name: Some("docker.io/library/zipped:2".into()),
        ..Default::default()
    };
    let out = b.run_stdin(&["load"], &gzip(&oci_layout(&rootfs_tar("z"), &opts)));
    assert_success(&out, &["load"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: zipped:2\n"
    );
}

#[test]
fn zstd_layers_load_and_save_back_uncompressed() {
    let b = Berth::new();
    let opts = LayoutOptions {
        zstd_layer: true,
        name: Some("docker.io/library/zst:1".into()),
        ..Default::default()
    };
    assert_success(
        &b.run_stdin(&["load"], &oci_layout(&rootfs_tar("zstd"), &opts)),
        &["load"],
    );
    let id = b.image_id("zst:1");
    let archive = b.dir.path().join("zst.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), "zst:1"]);
    let c = Berth::new();
    c.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(c.image_id("zst:1"), id);
}

#[test]
fn a_blob_claiming_an_unpacked_layer_is_checked() {
    // The store has layer L unpacked; a second archive names L's diff ID for other bytes.
    let real = rootfs_tar("real");
    let (b, _) = seeded();
    let opts = LayoutOptions {
        name: Some("docker.io/library/real:1".into()),
        ..Default::default()
    };
    assert_success(
        &b.run_stdin(&["load"], &oci_layout(&real, &opts)),
        &["load"],
    );
    let before = b.snapshot();
    let liar = LayoutOptions {
        gzip_layer: true,
        claimed_diff_id: Some(sha256_hex(&real)),
        name: Some("docker.io/library/liar:1".into()),
        ..Default::default()
    };
    let out = b.run_stdin(&["load"], &oci_layout(&rootfs_tar("evil"), &liar));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a lying layer blob was accepted");
    assert!(err.contains("but the config says"), "{err}");
    assert_eq!(b.snapshot(), before);
}
