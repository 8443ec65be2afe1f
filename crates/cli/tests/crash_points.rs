//! SIGKILL at every named point (`BERTH_CRASH_AT`, `berth_store::crash`) of load, pull, build,
//! commit, create, rm and rmi. After each: `system check` finds no problem, the command
//! succeeds when run again, and what a crash left behind (debris) goes with the next prune.
//! Each crash must be a real SIGKILL at the point, so a point the command no longer reaches
//! fails the test instead of passing it quietly.

mod common;

use std::os::unix::process::ExitStatusExt;

use common::{host::Host, registry::Registry, *};

/// Runs `berth ARGS` (with `stdin`) until it kills itself at `point`.
fn crash(b: &Berth, point: &str, args: &[&str], stdin: Option<&[u8]>) {
    let mut cmd = b.command();
    cmd.env("BERTH_CRASH_AT", point).args(args);
    let out = output_with_input(cmd, stdin);
    assert_eq!(
        out.status.signal(),
        Some(9),
        "berth {args:?} was to die at {point}, but ended with {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`crash`], then `system check` passes and the same command succeeds.
fn crash_then_retry(b: &Berth, point: &str, args: &[&str], stdin: Option<&[u8]>) {
    crash(b, point, args, stdin);
    b.assert_sound(point);
    let again = match stdin {
        Some(input) => b.run_stdin(args, input),
        None => b.run(args),
    };
    assert_success(&again, &[args, &[point]].concat());
}

fn loadable_image(name: &str) -> Vec<u8> {
    oci_layout(
        &rootfs_tar(name),
        &LayoutOptions {
            gzip_layer: true,
            name: Some(format!("docker.io/library/{name}:1")),
            ..Default::default()
        },
    )
}

#[test]
fn load_killed_at_each_point() {
    let b = Berth::new();
    let archive = loadable_image("loaded");
    for point in [
        "blob.written",
        "blob.published",
        "layer.unpacked",
        "layer.published",
        "blob.published@3",
        "image.registering",
        "image.registered",
    ] {
        crash_then_retry(&b, point, &["load"], Some(&archive));
        let dir =
            json(&b.ok(&["image", "inspect", "loaded:1"]))[0]["GraphDriver"]["Data"]["UpperDir"]
                .as_str()
                .unwrap()
                .to_string();
        assert_eq!(
            std::fs::read_to_string(std::path::Path::new(&dir).join("etc/marker")).unwrap(),
            "loaded",
            "{point}"
        );
        b.ok(&["rmi", "loaded:1"]);
        b.ok(&["image", "prune", "-f"]);
        b.assert_clean(point);
        assert_eq!(b.ok(&["images", "-q"]), "", "{point}");
    }
}

#[test]
fn rmi_killed_at_each_point() {
    let b = Berth::new();
    let archive = loadable_image("doomed");
    for point in [
        "rmi.untagged",
        "rmi.deleted",
        "layer.removing",
        "gc.layer-removed",
        "gc.blob-removed",
        "gc.blob-removed@2",
    ] {
        assert_success(&b.run_stdin(&["load"], &archive), &["load"]);
        let id = b.image_id("doomed:1");
        crash(&b, point, &["rmi", "doomed:1"], None);
        b.assert_sound(point);
        // Untagged but kept, or gone: never half there.
        let images = b.ok(&["images", "-a", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(!images.contains("doomed"), "{point}: {images}");
        // What is left is dangling at most, and a prune takes it and the leftovers.
        let _ = b.run(&["rmi", &id]);
        b.ok(&["image", "prune", "-f"]);
        b.assert_clean(point);
        assert_eq!(
            std::fs::read_dir(b.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0,
            "{point}"
        );
    }
}

#[test]
fn pull_killed_at_each_point() {
    let registry = Registry::plain();
    let source = Berth::new();
    assert_success(
        &source.run_stdin(&["load"], &loadable_image("pulled")),
        &["load"],
    );
    let image = registry.image("pulled:1");
    source.ok(&["tag", "pulled:1", &image]);
    source.ok(&["push", &image]);

    let b = Berth::new();
    for point in [
        "blob.written",
        "blob.published",
        "layer.unpacked",
        "layer.published",
        "blob.published@2",
        "image.registering",
        "image.registered",
    ] {
        crash_then_retry(&b, point, &["pull", "-q", &image], None);
        assert_eq!(b.image_id(&image), source.image_id("pulled:1"), "{point}");
        b.ok(&["rmi", &image]);
        b.assert_clean(point);
    }
}

#[test]
fn build_killed_at_each_point() {
    let host = Host::new();
    let b = &host.berth;
    let context = b.dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("file"), "copied\n").unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM busybox\nRUN echo ran > /ran\nCOPY file /file\nENV STAGE=done\n",
    )
    .unwrap();
    let ctx = context.to_str().unwrap();
    for point in [
        "layer.unpacked",
        "layer.published",
        "image.registered",
        "layer.published@2",
        "image.registered@3",
        "build.promoting",
    ] {
        crash_then_retry(b, point, &["build", "-q", "-t", "built:1", ctx], None);
        assert_eq!(
            host.run_ok(&["built:1", "sh", "-c", "cat /ran /file; echo $STAGE"]),
            "ran\ncopied\ndone\n",
            "{point}"
        );
        b.ok(&["rmi", "built:1"]);
        b.ok(&["builder", "prune", "-f"]);
        b.ok(&["image", "prune", "-f"]);
        b.assert_clean(point);
    }
}

#[test]
fn commit_killed_at_each_point() {
    let host = Host::new();
    let b = &host.berth;
    let ran = host.run(&[
        "--name",
        "changed",
        "busybox",
        "sh",
        "-c",
        "echo kept > /kept",
    ]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for point in [
        "layer.unpacked",
        "layer.published",
        "blob.published@2",
        "image.registering",
        "image.registered",
    ] {
        crash_then_retry(b, point, &["commit", "changed", "committed:1"], None);
        assert_eq!(
            host.run_ok(&["committed:1", "cat", "/kept"]),
            "kept\n",
            "{point}"
        );
        b.ok(&["rmi", "committed:1"]);
        b.ok(&["image", "prune", "-f"]);
        b.assert_clean(point);
    }
}

#[test]
fn create_and_rm_killed_at_each_point() {
    let host = Host::new();
    let b = &host.berth;

    crash(
        b,
        "create.held",
        &["create", "--name", "half", "busybox"],
        None,
    );
    let report = b.assert_sound("create.held");
    assert!(
        report.contains("leftovers of interrupted container"),
        "{report}"
    );
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    b.ok(&["container", "prune", "-f"]);
    b.assert_clean("create.held");
    // The name was never taken.
    b.ok(&["create", "--name", "half", "busybox"]);
    b.ok(&["rm", "half"]);

    for point in ["rm.record-deleted", "rm.released"] {
        // A stopped container, and a running one removed with -f.
        let stopped = b.ok(&["create", "busybox", "true"]).trim().to_string();
        crash(b, point, &["rm", &stopped], None);
        let running = b
            .ok(&["run", "-d", "busybox", "sleep", "300"])
            .trim()
            .to_string();
        crash(b, point, &["rm", "-f", &running], None);
        let report = b.assert_sound(point);
        assert!(
            report.contains("leftovers of interrupted container"),
            "{report}"
        );
        assert_eq!(b.ok(&["ps", "-aq"]), "", "{point}");
        b.ok(&["container", "prune", "-f"]);
        b.assert_clean(point);
        host.assert_gone(&stopped);
        host.assert_gone(&running);
    }
    // No hold is left on the image: it can go.
    b.ok(&["rmi", "busybox"]);
}

#[test]
fn system_check_finds_what_a_crash_must_not_leave() {
    let host = Host::new();
    let b = &host.berth;
    let id = b.ok(&["create", "busybox"]).trim().to_string();
    b.assert_clean("create");
    // A record whose files are half gone is a problem, not debris.
    let upper = b.root().join("containers").join(&id).join("upper");
    std::fs::remove_dir(&upper).unwrap();
    let out = b.run(&["system", "check"]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(&format!(
            "problem: container {id}: its layer directory {} is missing",
            upper.display()
        )),
        "{report}"
    );
    assert!(report.contains(", 1 containers: 1 problems"), "{report}");
    b.ok(&["rm", &id]);
    b.assert_clean("rm");
    // A directory without a record is debris, until a prune.
    let orphan = b.root().join("containers").join("ab".repeat(32));
    std::fs::create_dir_all(orphan.join("upper")).unwrap();
    let report = b.assert_sound("an orphan directory");
    assert!(
        report.contains("1 leftovers of interrupted container creates or removals"),
        "{report}"
    );
    b.ok(&["container", "prune", "-f"]);
    assert!(!orphan.exists());
    b.assert_clean("prune");
}
