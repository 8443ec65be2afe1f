//! Archives and layouts exchanged with tools we did not write: skopeo and umoci.

mod common;

use std::{path::Path, process::Command};

use common::*;

fn tool(cmd: &str, args: &[&str]) -> String {
    require_tool(cmd);
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn untar(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    tool(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-xf",
            archive.to_str().unwrap(),
        ],
    );
}

fn tar_dir(dir: &Path, archive: &Path) {
    tool(
        "tar",
        &[
            "-C",
            dir.to_str().unwrap(),
            "-cf",
            archive.to_str().unwrap(),
            ".",
        ],
    );
}

/// A berth with one two-layer-free test image tagged `interop:1`.
fn seeded() -> (Berth, String) {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(
            &["import", "-c", "CMD [\"/bin/tool\"]", "-", "interop:1"],
            &rootfs_tar("interop"),
        ),
        &["import"],
    );
    let id = b.image_id("interop:1");
    (b, id)
}

/// `berth save --format oci` of `interop:1`, unpacked into a layout directory.
fn saved_oci_layout(b: &Berth) -> std::path::PathBuf {
    let archive = b.dir.path().join("oci.tar");
    b.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        archive.to_str().unwrap(),
        "interop:1",
    ]);
    let layout = b.dir.path().join("layout");
    untar(&archive, &layout);
    layout
}

#[test]
fn skopeo_reads_berth_docker_archives() {
    let (b, id) = seeded();
    let archive = b.dir.path().join("docker.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), "interop:1"]);
    let inspect = json(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", archive.display())],
    ));
    let config = json(&tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", archive.display()),
        ],
    ));
    let ours = json(&b.ok(&["image", "inspect", "interop:1"]));
    assert_eq!(inspect["Layers"], ours[0]["RootFS"]["Layers"]);
    assert_eq!(config["config"]["Cmd"][0], "/bin/tool");
    // skopeo's view of the config hashes to our image ID.
    let raw_config = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--config",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    assert_eq!(format!("sha256:{}", sha256_hex(raw_config.as_bytes())), id);
    // And skopeo can copy it onward.
    let layout = b.dir.path().join("copied");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", archive.display()),
            &format!("oci:{}:copied", layout.display()),
        ],
    );
}

#[test]
fn skopeo_and_umoci_read_berth_oci_layouts() {
    let (b, _) = seeded();
    let layout = saved_oci_layout(&b);
    let ours = json(&b.ok(&["image", "inspect", "interop:1"]));
    let inspect = json(&tool(
        "skopeo",
        &["inspect", &format!("oci:{}:1", layout.display())],
    ));
    assert_eq!(
        inspect["Digest"], ours[0]["Descriptor"]["digest"],
        "the manifest is saved byte for byte"
    );
    let bundle = b.dir.path().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:1", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/marker")).unwrap(),
        "interop"
    );
    assert_eq!(
        std::fs::read_link(bundle.join("rootfs/bin/tool-link"))
            .unwrap()
            .to_str(),
        Some("/bin/tool")
    );
}

#[test]
fn berth_loads_what_skopeo_writes() {
    let (b, id) = seeded();
    let layout = saved_oci_layout(&b);
    let src = format!("oci:{}:1", layout.display());

    // A docker-archive written by skopeo.
    let docker_archive = b.dir.path().join("skopeo-docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &src,
            &format!("docker-archive:{}:skopeo/img:v1", docker_archive.display()),
        ],
    );
    let fresh = Berth::new();
    let out = fresh.ok(&["load", "-i", docker_archive.to_str().unwrap()]);
    assert_eq!(out, "Loaded image: skopeo/img:v1\n");
    assert_eq!(fresh.image_id("skopeo/img:v1"), id);

    // An OCI layout written by skopeo with gzip-compressed layers.
    let sk_layout = b.dir.path().join("skopeo-oci");
    tool(
        "skopeo",
        &[
            "copy",
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
            &src,
            &format!("oci:{}:v2", sk_layout.display()),
        ],
    );
    let sk_digest = json(&tool(
        "skopeo",
        &["inspect", &format!("oci:{}:v2", sk_layout.display())],
    ))["Digest"]
        .clone();
    let sk_tar = b.dir.path().join("skopeo-oci.tar");
    tar_dir(&sk_layout, &sk_tar);
    let fresh = Berth::new();
    let out = fresh.ok(&["load", "-i", sk_tar.to_str().unwrap()]);
    assert_eq!(out, format!("Loaded image ID: {id}\n"));
    let ours = json(&fresh.ok(&["image", "inspect", &id]));
    assert_eq!(
        ours[0]["Descriptor"]["digest"], sk_digest,
        "the manifest digest survives"
    );
    fresh.assert_blobs_verify();
    // And berth saves it again in both formats with the same image ID.
    let again = fresh.dir.path().join("again.tar");
    fresh.ok(&["save", "-o", again.to_str().unwrap(), &id]);
    let third = Berth::new();
    assert_eq!(
        third.ok(&["load", "-i", again.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
}
