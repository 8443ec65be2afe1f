//! Containers with volumes, bind mounts and tmpfs mounts: `-v`, `--mount`, `--volumes-from`,
//! the image's `VOLUME`s, and what `rm -v` and `--rm` take with them.

mod common;

use common::{host::Host, json};

fn volume_names(host: &Host) -> Vec<String> {
    host.ok(&["volume", "ls", "-q"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn named_volumes_outlive_containers_and_are_filled_from_the_image() {
    let host = Host::new();
    // A new volume at a path the image has is filled with the image's files (copy-up).
    let out = host.run_ok(&[
        "-v",
        "etcvol:/etc",
        "busybox",
        "sh",
        "-c",
        "cat /etc/passwd | head -1; echo kept > /etc/mine",
    ]);
    assert!(out.starts_with("root:"), "{out}");
    // The data outlives the container and the next one sees it.
    let out = host.run_ok(&["-v", "etcvol:/data", "busybox", "cat", "/data/mine"]);
    assert_eq!(out, "kept\n");
    // nocopy: an empty new volume stays empty.
    let out = host.run_ok(&["-v", "empty:/etc:nocopy", "busybox", "ls", "-A", "/etc"]);
    assert_eq!(out, "");
    // A volume in use cannot be removed; a read-only mount refuses writes.
    let id = host.ok(&[
        "run",
        "-d",
        "-v",
        "etcvol:/data:ro",
        "busybox",
        "sleep",
        "300",
    ]);
    let id = id.trim();
    let out = host
        .berth
        .run(&["exec", id, "sh", "-c", "echo x > /data/new"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"));
    let err = host.berth.fails(&["volume", "rm", "etcvol"]);
    assert!(err.contains("volume is in use"), "{err}");
    let doc = json(&host.ok(&["inspect", id]));
    let mount = &doc[0]["Mounts"][0];
    assert_eq!(mount["Type"], "volume");
    assert_eq!(mount["Name"], "etcvol");
    assert_eq!(mount["Destination"], "/data");
    assert_eq!(mount["RW"], false);
    host.ok(&["rm", "-f", id]);
    host.assert_gone(id);
    host.ok(&["volume", "rm", "etcvol", "empty"]);
    assert!(volume_names(&host).is_empty());
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_run_rm() {
    let host = Host::new();
    let tar = common::host::busybox_tar().to_str().unwrap().to_string();
    host.ok(&[
        "import",
        "--change",
        "VOLUME /cache",
        "--change",
        "CMD [\"sh\"]",
        &tar,
        "withvol:1",
    ]);
    // The image's VOLUME gets an anonymous volume; -v /path makes another.
    let id = host.ok(&["create", "-v", "/scratch", "withvol:1", "true"]);
    let id = id.trim();
    let doc = json(&host.ok(&["inspect", id]));
    let mounts = doc[0]["Mounts"].as_array().unwrap().clone();
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(volume_names(&host).len(), 2);
    // rm without -v keeps them (dangling); rm -v would have removed them.
    host.ok(&["rm", id]);
    assert_eq!(
        host.ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .lines()
            .count(),
        2
    );
    host.ok(&["volume", "prune", "-f"]);
    assert!(volume_names(&host).is_empty());
    let id = host.ok(&[
        "create",
        "-v",
        "/scratch",
        "-v",
        "named:/named",
        "withvol:1",
        "true",
    ]);
    host.ok(&["rm", "-v", id.trim()]);
    assert_eq!(volume_names(&host), vec!["named".to_string()]);
    // --rm takes the anonymous ones with it, and leaves named ones.
    host.run_ok(&["-v", "/scratch", "-v", "named:/named", "withvol:1", "true"]);
    assert_eq!(volume_names(&host), vec!["named".to_string()]);
    host.ok(&["volume", "rm", "named"]);
}

#[test]
fn bind_and_tmpfs_mounts() {
    let host = Host::new();
    let dir = host.berth.dir.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("dataset.csv"), "a,b\n1,2\n").unwrap();
    let bind = format!("{}:/data", dir.display());
    let out = host.run_ok(&[
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /data/dataset.csv; echo out > /data/result",
    ]);
    assert_eq!(out, "a,b\n1,2\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("result")).unwrap(),
        "out\n"
    );
    // Read-only bind mounts refuse writes, with -v and with --mount.
    for flags in [
        vec!["-v".to_string(), format!("{bind}:ro")],
        vec![
            "--mount".to_string(),
            format!("type=bind,source={},target=/data,readonly", dir.display()),
        ],
    ] {
        let mut args: Vec<&str> = vec!["--rm"];
        args.extend(flags.iter().map(String::as_str));
        args.extend([
            "busybox",
            "sh",
            "-c",
            "touch /data/x 2>&1; cat /proc/self/mountinfo | grep ' /data '",
        ]);
        let ran = host.run(&args);
        assert!(
            ran.stdout.contains("Read-only file system"),
            "{}",
            ran.stdout
        );
        assert!(ran.stdout.contains(" ro"), "{}", ran.stdout);
    }
    assert!(!dir.join("x").exists());
    // -v makes a missing host directory; --mount refuses it.
    let missing = host.berth.dir.path().join("made-by-v");
    host.run_ok(&[
        "-v",
        &format!("{}:/m", missing.display()),
        "busybox",
        "true",
    ]);
    assert!(missing.is_dir());
    let ran = host.run(&[
        "--rm",
        "--mount",
        &format!("type=bind,src={}/nope,dst=/m", dir.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("bind source path does not exist"),
        "{}",
        ran.stderr
    );
    // A tmpfs through --mount, with its size.
    let out = host.run_ok(&[
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=8m",
        "busybox",
        "sh",
        "-c",
        "grep ' /scratch ' /proc/self/mountinfo",
    ]);
    assert!(out.contains("tmpfs") && out.contains("size=8192k"), "{out}");
    // --volumes-from shares another container's mounts.
    let src = host.ok(&[
        "create",
        "-v",
        &bind,
        "-v",
        "shared:/vol",
        "busybox",
        "sh",
        "-c",
        "echo hi > /vol/greeting",
    ]);
    let src = src.trim();
    host.ok(&["start", "-a", src]);
    let out = host.run_ok(&[
        "--volumes-from",
        src,
        "busybox",
        "sh",
        "-c",
        "cat /vol/greeting /data/dataset.csv",
    ]);
    assert_eq!(out, "hi\na,b\n1,2\n");
    // Bad specifications fail before anything is made.
    for bad in [
        ["-v", "data:relative"],
        ["--mount", "type=nfs,target=/x"],
        ["-v", "/a:/b:bogus"],
    ] {
        let ran = host.run(&["--rm", bad[0], bad[1], "busybox", "true"]);
        assert_eq!(ran.code, 125, "{bad:?}");
    }
    host.ok(&["rm", "-f", src]);
    host.ok(&["volume", "rm", "shared"]);
}

#[test]
fn volumes_with_driver_options_mount_as_they_say() {
    let host = Host::new();
    host.ok(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=10m",
        "scratch",
    ]);
    let out = host.run_ok(&[
        "-v",
        "scratch:/s",
        "busybox",
        "sh",
        "-c",
        "grep ' /s ' /proc/self/mountinfo",
    ]);
    assert!(
        out.contains("tmpfs") && out.contains("size=10240k"),
        "{out}"
    );
    let dir = host.berth.dir.path().join("device");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("file"), "from the device\n").unwrap();
    host.ok(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        &format!("device={}", dir.display()),
        "--opt",
        "o=bind",
        "bound",
    ]);
    let out = host.run_ok(&[
        "-v",
        "bound:/b:ro",
        "busybox",
        "sh",
        "-c",
        "cat /b/file; touch /b/x 2>&1 || true",
    ]);
    assert!(out.starts_with("from the device\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    // Copy-up fills the device of a new volume with options, not its unused _data.
    let empty = host.berth.dir.path().join("empty-device");
    std::fs::create_dir(&empty).unwrap();
    host.ok(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        &format!("device={}", empty.display()),
        "--opt",
        "o=bind",
        "filled",
    ]);
    host.run_ok(&["-v", "filled:/etc", "busybox", "true"]);
    assert!(
        empty.join("passwd").exists(),
        "copy-up did not reach the device"
    );
    let data = host.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", "filled"]);
    assert_eq!(
        std::fs::read_dir(data.trim()).unwrap().count(),
        0,
        "copy-up went to _data"
    );
    host.ok(&["volume", "rm", "scratch", "bound", "filled"]);
    assert!(
        dir.join("file").exists(),
        "removing the volume removed the device's files"
    );
}
