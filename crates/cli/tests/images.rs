//! Image commands end to end: the real binary on a temporary state root.

mod common;

use common::*;

#[test]
fn import_tag_save_load_keeps_the_image_id() {
    let a = Berth::new();
    let tarball = a.dir.path().join("rootfs.tar.gz");
    std::fs::write(&tarball, gzip(&rootfs_tar("one"))).unwrap();
    let id = a.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/tool\"]",
        "-c",
        "ENV A=1",
        "-m",
        "first",
        tarball.to_str().unwrap(),
        "demo:1",
    ]);
    let id = id.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "import prints the ID: {id}"
    );
    a.ok(&["tag", "demo:1", "example.com/team/demo"]);
    let list = a.ok(&["images"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY              TAG       IMAGE ID       CREATED"),
        "{list}"
    );
    assert!(list.contains("demo                    1 "), "{list}");
    assert!(list.contains("example.com/team/demo   latest "), "{list}");
    assert_eq!(
        a.ok(&["images", "-q"]),
        format!("{0}\n{0}\n", &id[7..19]),
        "one line per row"
    );

    let inspect = json(&a.ok(&["image", "inspect", "demo:1"]));
    assert_eq!(inspect[0]["Id"], id);
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "/bin/tool");
    assert_eq!(inspect[0]["Config"]["Env"][0], "A=1");
    assert_eq!(inspect[0]["Comment"], "first");

    let archive = a.dir.path().join("saved.tar");
    a.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "demo:1",
        "example.com/team/demo",
    ]);
    let b = Berth::new();
    let loaded = b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: demo:1"), "{loaded}");
    assert!(
        loaded.contains("Loaded image: example.com/team/demo:latest"),
        "{loaded}"
    );
    assert_eq!(b.image_id("demo:1"), id);
    assert_eq!(b.image_id("example.com/team/demo"), id);

    // The unpacked layer keeps what the tarball said.
    let layer = json(&b.ok(&["image", "inspect", "demo:1"]))[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .to_string();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let secret = std::fs::metadata(format!("{layer}/etc/secret")).unwrap();
    assert_eq!(
        (secret.uid(), secret.permissions().mode() & 0o7777),
        (1000, 0o600)
    );
    let tool = std::fs::metadata(format!("{layer}/bin/tool")).unwrap();
    assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(tool.nlink(), 2, "hard link preserved");
    assert_eq!(
        std::fs::read_link(format!("{layer}/bin/tool-link"))
            .unwrap()
            .to_str(),
        Some("/bin/tool")
    );
    assert_eq!(
        std::fs::read_to_string(format!("{layer}/etc/marker")).unwrap(),
        "one"
    );
    b.assert_blobs_verify();
}

#[test]
fn rmi_untags_then_deletes_and_collects() {
    let b = Berth::new();
    let out = b.run_stdin(&["import", "-", "one:latest"], &rootfs_tar("rmi"));
    assert_success(&out, &["import"]);
    b.ok(&["tag", "one", "two"]);
    assert_eq!(b.ok(&["rmi", "two"]), "Untagged: two:latest\n");
    let id = b.image_id("one");
    let out = b.ok(&["rmi", "one"]);
    assert!(
        out.starts_with(&format!("Untagged: one:latest\nDeleted: {id}\n")),
        "{out}"
    );
    assert_eq!(b.ok(&["images", "-q"]), "");
    let blobs = std::fs::read_dir(b.root().join("blobs/sha256"))
        .unwrap()
        .count();
    let layers = std::fs::read_dir(b.root().join("layers")).unwrap().count();
    assert_eq!(
        (blobs, layers),
        (0, 0),
        "nothing is left once the last image is gone"
    );
    let err = b.fails(&["rmi", "one"]);
    assert_eq!(err, "Error: No such image: one:latest\n");
}

#[test]
fn rmi_by_id_needs_force_when_several_repositories_use_it() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "a"], &rootfs_tar("f")),
        &["import"],
    );
    b.ok(&["tag", "a", "b"]);
    let id = b.image_id("a");
    let err = b.fails(&["rmi", &id[7..19]]);
    assert!(
        err.contains("must be forced") && err.lines().count() == 1,
        "{err}"
    );
    let out = b.ok(&["rmi", "-f", &id[7..19]]);
    assert!(
        out.contains("Untagged: a:latest")
            && out.contains("Untagged: b:latest")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
}

#[test]
fn images_filters_and_formats() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(
            &["import", "-c", "LABEL team=ml", "-", "labelled:1"],
            &rootfs_tar("x"),
        ),
        &["import"],
    );
    assert_success(
        &b.run_stdin(&["import", "-"], &rootfs_tar("dangling")),
        &["import"],
    );
    assert_eq!(
        b.ok(&[
            "images",
            "--filter",
            "label=team=ml",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ]),
        "labelled:1\n"
    );
    assert_eq!(
        b.ok(&[
            "images",
            "--filter",
            "dangling=true",
            "--format",
            "{{.Repository}}:{{.Tag}}"
        ]),
        "<none>:<none>\n"
    );
    assert_eq!(
        b.ok(&[
            "images",
            "--filter",
            "reference=label*",
            "--format",
            "{{.Tag}}"
        ]),
        "1\n"
    );
    assert_eq!(b.ok(&["images", "labelled", "--format", "{{.Tag}}"]), "1\n");
    let line = b.ok(&["images", "--format", "json", "labelled"]);
    let row = json(line.trim());
    assert_eq!(row["Repository"], "labelled");
    assert_eq!(row["Containers"], "N/A");
    let err = b.fails(&["images", "--filter", "bogus=1"]);
    assert_eq!(err, "Error: invalid filter 'bogus'\n");
    let pruned = b.ok(&["image", "prune", "-f"]);
    assert!(
        pruned.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{pruned}"
    );
    assert!(pruned.contains("Total reclaimed space: "), "{pruned}");
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}"]),
        "labelled\n"
    );
    let hist = b.ok(&["history", "labelled:1"]);
    assert!(hist.starts_with("IMAGE          CREATED"), "{hist}");
    assert!(hist.contains("Imported from -"), "{hist}");
    let df = b.ok(&["system", "df"]);
    assert!(
        df.lines()
            .nth(1)
            .unwrap()
            .starts_with("Images          1         0"),
        "{df}"
    );
}

#[test]
fn usage_errors_exit_125() {
    let b = Berth::new();
    let out = b.run(&["images", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(125));
    let out = b.run(&["tag", "a", "UPPER"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be lowercase") || err.contains("No such image"),
        "{err}"
    );
}

#[test]
fn prune_all_with_label_filters() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(
            &["import", "-c", "LABEL keep=yes", "-", "kept:1"],
            &rootfs_tar("k"),
        ),
        &["import"],
    );
    assert_success(
        &b.run_stdin(
            &["import", "-c", "LABEL keep=no", "-", "gone:1"],
            &rootfs_tar("g"),
        ),
        &["import"],
    );
    let out = b.ok(&["image", "prune", "-a", "-f", "--filter", "label!=keep=yes"]);
    assert!(
        out.contains("untagged: gone:1") && !out.contains("kept"),
        "{out}"
    );
    assert_eq!(b.ok(&["images", "--format", "{{.Repository}}"]), "kept\n");
    let out = b.ok(&[
        "image",
        "prune",
        "-a",
        "-f",
        "--filter",
        "until=2000-01-01T00:00:00Z",
    ]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
    let df = b.ok(&["system", "df", "-v"]);
    assert!(
        df.starts_with("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID"),
        "{df}"
    );
}

#[test]
fn two_tags_of_one_repository_need_force_to_remove_by_id() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "repo:1"], &rootfs_tar("r")),
        &["import"],
    );
    b.ok(&["tag", "repo:1", "repo:2"]);
    let id = b.image_id("repo:1");
    let err = b.fails(&["rmi", &id]);
    assert!(err.contains("must be forced"), "{err}");
    // Saving the bare repository name takes every tag of it.
    let archive = b.dir.path().join("repo.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), "repo"]);
    let c = Berth::new();
    let loaded = c.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        loaded.contains("repo:1") && loaded.contains("repo:2"),
        "{loaded}"
    );
    // history takes -H without a value.
    assert!(b.ok(&["history", "-H", "repo:1"]).starts_with("IMAGE"));
    assert!(
        b.ok(&["history", "-H=false", "repo:1"])
            .contains("Imported from -")
    );
}

#[test]
fn two_layer_image_with_whiteouts() {
    use serde_json::json;
    let lower = rootfs_tar("lower");
    let upper = {
        let mut b = tar::Builder::new(Vec::new());
        raw_entry(&mut b, "etc/.wh.marker", tar::EntryType::Regular, b"", None);
        raw_entry(
            &mut b,
            "bin/.wh..wh..opq",
            tar::EntryType::Regular,
            b"",
            None,
        );
        raw_entry(&mut b, "etc/new", tar::EntryType::Regular, b"upper", None);
        b.into_inner().unwrap()
    };
    let layers = [gzip(&lower), upper.clone()];
    let config = serde_json::to_vec(&json!({
        "architecture": berth_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [
            format!("sha256:{}", sha256_hex(&lower)), format!("sha256:{}", sha256_hex(&upper))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": format!("sha256:{}", sha256_hex(&layers[0])), "size": layers[0].len()},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar",
             "digest": format!("sha256:{}", sha256_hex(&layers[1])), "size": layers[1].len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/two:1"}}]}))
    .unwrap();
    let mut files = vec![
        ("index.json".to_string(), index),
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
    ];
    for blob in [manifest, config, layers[0].clone(), layers[1].clone()] {
        files.push((format!("blobs/sha256/{}", sha256_hex(&blob)), blob));
    }
    let b = Berth::new();
    assert_success(&b.run_stdin(&["load"], &tar_of(&files)), &["load"]);
    let doc = json(&b.ok(&["image", "inspect", "two:1"]));
    let data = &doc[0]["GraphDriver"]["Data"];
    let (upper_dir, lower_dir) = (
        data["UpperDir"].as_str().unwrap(),
        data["LowerDir"].as_str().unwrap(),
    );
    assert_eq!(
        std::fs::read_to_string(format!("{lower_dir}/etc/marker")).unwrap(),
        "lower"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{upper_dir}/etc/new")).unwrap(),
        "upper"
    );
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let whiteout = std::fs::symlink_metadata(format!("{upper_dir}/etc/marker")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "overlay whiteout"
    );
    assert!(!std::path::Path::new(&format!("{upper_dir}/etc/.wh.marker")).exists());
    let mut value = [0u8; 8];
    let n = rustix::fs::getxattr(
        format!("{upper_dir}/bin").as_str(),
        "trusted.overlay.opaque",
        &mut value[..],
    )
    .expect("opaque directory xattr");
    assert_eq!(&value[..n], b"y", "opaque directory");
    // And it saves and loads back to the same ID.
    let archive = b.dir.path().join("two.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), "two:1"]);
    let c = Berth::new();
    c.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(c.image_id("two:1"), b.image_id("two:1"));
}

#[test]
fn system_check_finds_corruption() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "c:1"], &rootfs_tar("c")),
        &["import"],
    );
    assert!(
        b.ok(&["system", "check"])
            .ends_with("1 images, 1 layers, 0 containers: no problems\n")
    );
    // Damage the layer blob behind berth's back.
    let layer = json(&b.ok(&["image", "inspect", "c:1"]))[0]["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let path = b.root().join("blobs/sha256").join(&layer);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&path, b"damaged").unwrap();
    let out = b.run(&["system", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "problem: blob sha256:{layer} does not hash to its name"
        )),
        "{text}"
    );
}

#[test]
fn load_over_an_existing_tag_says_it_renames_the_old_image() {
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "moved:1"], &rootfs_tar("old")),
        &["import"],
    );
    let archive = b.dir.path().join("old.tar");
    b.ok(&["save", "-o", archive.to_str().unwrap(), "moved:1"]);
    let old_id = b.image_id("moved:1");
    assert_success(
        &b.run_stdin(&["import", "-", "moved:1"], &rootfs_tar("new")),
        &["import"],
    );
    let new_id = b.image_id("moved:1");
    let out = b.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "The image moved:1 already exists, renaming the old one with ID {new_id} to empty string\nLoaded image: moved:1\n"
        )
    );
    assert_eq!(b.image_id("moved:1"), old_id);
}
