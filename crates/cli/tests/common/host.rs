//! A berth root with busybox imported, and the checks that a container left nothing behind.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use super::{Berth, test_tmp};

/// The busybox rootfs tarball from scripts/make-busybox-image.sh, built once per test run.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let out = test_tmp().join(format!("busybox-{}.tar", std::process::id()));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .args(["--tar-only", "-o"])
            .arg(&out)
            .status()
            .expect("run make-busybox-image.sh");
        assert!(status.success(), "make-busybox-image.sh failed");
        out
    })
}

/// A berth root with `busybox:latest` imported.
pub struct Host {
    pub berth: Berth,
}

/// What one `berth run` did.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub id: String,
}

impl Drop for Host {
    /// A test that failed half-way leaves no container running (and so no monitor, veth or
    /// cgroup) behind it.
    fn drop(&mut self) {
        self.berth.remove_all_containers();
    }
}

impl Host {
    pub fn new() -> Host {
        let berth = Berth::new();
        let tar = busybox_tar().to_str().unwrap().to_string();
        berth.ok(&["import", "--change", "CMD [\"sh\"]", &tar, "busybox:latest"]);
        Host { berth }
    }

    /// `berth run ARGS`, with a cidfile so the test knows the container's ID.
    pub fn run(&self, args: &[&str]) -> Ran {
        let cid = self.berth.dir.path().join(format!("cid-{}", unique()));
        let out = self
            .berth
            .command()
            .arg("run")
            .arg("--cidfile")
            .arg(&cid)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run berth");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            id: std::fs::read_to_string(&cid).unwrap_or_default(),
        }
    }

    /// `berth run --rm ARGS`, expecting exit 0 and a clean host afterwards; returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let mut all = vec!["--rm"];
        all.extend_from_slice(args);
        let ran = self.run(&all);
        assert_eq!(
            ran.code, 0,
            "berth run {args:?}: {}{}",
            ran.stdout, ran.stderr
        );
        self.assert_gone(&ran.id);
        ran.stdout
    }

    /// Nothing of container `id` is left: directory, cgroups, processes, host mounts.
    pub fn assert_gone(&self, id: &str) {
        assert_eq!(id.len(), 64, "no container ID recorded");
        let dir = self.berth.root().join("containers").join(id);
        assert!(!dir.exists(), "{} is left behind", dir.display());
        let cgroups = cgroup_dirs_named(id);
        assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.berth.root();
        let root = root.to_str().unwrap();
        assert!(
            !mountinfo.lines().any(|l| l.contains(root)),
            "host mounts under {root} are left behind"
        );
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cg) = std::fs::read_to_string(entry.path().join("cgroup")) {
                assert!(
                    !cg.contains(id),
                    "process {:?} is left in the container's cgroup",
                    entry.file_name()
                );
            }
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.berth.ok(args)
    }
}

pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Every directory under /sys/fs/cgroup named `name` (at most a few levels down).
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == name {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 4, &mut out);
    out
}
