//! The runtime in a user namespace: the container's root is an unprivileged uid on the host.
//! This test binary is its own container init (`<binary> init`), as berth is.

use std::{
    fs,
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    path::Path,
};

use berth_runtime::{CreateOptions, InitConfig, Rootfs, Stdio};
use serde_json::json;

fn main() {
    if std::env::args().nth(1).as_deref() == Some(berth_runtime::INIT_ARG) {
        berth_runtime::init_main();
    }
    container_root_is_an_unprivileged_host_uid();
    println!("test container_root_is_an_unprivileged_host_uid ... ok");
}

/// A minimal busybox root, readable by anyone (the container's root is nobody on the host).
fn busybox_root(dir: &Path) {
    for d in ["bin", "proc", "dev", "tmp", "etc"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("/bin/busybox (Debian's busybox-static, installed by scripts/install-deps.sh)");
    for applet in ["sh", "cat", "id", "touch", "stat"] {
        symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

fn container_root_is_an_unprivileged_host_uid() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    busybox_root(&root);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();

    let caps = ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID"];
    let spec = json!({
        "ociVersion": "1.2.0",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/sh", "-c", "cat /proc/self/uid_map; id -u; touch /tmp/made; stat -c %u /tmp/made"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}
        },
        "root": {"path": root},
        "hostname": "userns",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "user"}, {"type": "pid"}, {"type": "mount"},
                {"type": "uts"}, {"type": "ipc"}, {"type": "network"}
            ],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]
        }
    });
    let (mut reader, writer) = std::io::pipe().unwrap();
    let writer = std::os::fd::OwnedFd::from(writer);
    let mut container = berth_runtime::create(CreateOptions {
        config: InitConfig {
            spec: serde_json::from_value(spec).unwrap(),
            rootfs: Rootfs::Dir(root.clone()),
            user: None,
            group_add: Vec::new(),
            init: false,
            create_cwd: false,
            seccomp: None,
        },
        stdio: Stdio {
            stdin: fs::File::open("/dev/null").unwrap().into(),
            stdout: writer.try_clone().unwrap(),
            stderr: writer,
        },
        cgroup_path: None,
        console_size: None,
    })
    .expect("create a container in a user namespace");
    container.start().expect("start it");
    let mut out = String::new();
    reader.read_to_string(&mut out).unwrap();
    let exit = container.wait().unwrap();
    container.delete().unwrap();
    assert_eq!(exit.code, 0, "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], "0", "root inside: {out}");
    assert_eq!(lines[2], "0", "owned by the container's root: {out}");
    // The container's /tmp was its own tmpfs; the host's rootfs is untouched and still root's.
    assert!(!root.join("tmp/made").exists());
    assert_eq!(fs::metadata(root.join("bin")).unwrap().uid(), 0);
}
