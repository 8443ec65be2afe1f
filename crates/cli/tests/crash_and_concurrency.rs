//! `kill -9` in the middle of a load, and several berth processes at once: the store stays
//! consistent, and the next command works.

mod common;

use std::{io::Write, process::Stdio, thread, time::Duration};

use common::*;

/// A layer big enough that a load takes a while: many files of incompressible-ish data.
fn big_layer(seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for dir in 0..20 {
        for file in 0..100 {
            let mut data = vec![0u8; 4096 + (file * 37) % 8192];
            for chunk in data.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let bytes = x.to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, format!("d{dir}/f{file}"), &data[..])
                .unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn kill_9_during_load_leaves_a_consistent_store() {
    let opts = LayoutOptions {
        gzip_layer: true,
        name: Some("docker.io/library/big:1".into()),
        ..Default::default()
    };
    let archive = oci_layout(&big_layer(7), &opts);
    let b = Berth::new();
    assert_success(
        &b.run_stdin(&["import", "-", "keep:1"], &rootfs_tar("keep")),
        &["import"],
    );
    for fraction in [10, 50, 90, 100] {
        let mut child = b
            .command()
            .args(["load"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let cut = archive.len() * fraction / 100;
        let _ = stdin.write_all(&archive[..cut]);
        // Give it a moment to work on what it has (at 100% it is unpacking), then kill.
        thread::sleep(Duration::from_millis(30));
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin);

        // The next commands see either no `big` image or a complete one, never a broken one.
        let list = b.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        assert!(list.contains("keep:1"), "{list}");
        if list.contains("big:1") {
            let dir =
                json(&b.ok(&["image", "inspect", "big:1"]))[0]["GraphDriver"]["Data"]["UpperDir"]
                    .as_str()
                    .unwrap()
                    .to_string();
            assert_eq!(
                std::fs::read_dir(format!("{dir}/d19")).unwrap().count(),
                100
            );
            b.ok(&["rmi", "big:1"]);
        }
        b.assert_blobs_verify();
        b.assert_sound("a killed load");
        // A retry succeeds, and a collection leaves no debris.
        assert_success(&b.run_stdin(&["load"], &archive), &["load"]);
        b.ok(&["rmi", "big:1"]);
        b.ok(&["image", "prune", "-f"]);
        assert_eq!(
            std::fs::read_dir(b.root().join("ingest")).unwrap().count(),
            0
        );
        let debris: Vec<_> = std::fs::read_dir(b.root().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(debris.is_empty(), "{debris:?}");
        assert_eq!(b.ok(&["images", "--format", "{{.Repository}}"]), "keep\n");
    }
}

#[test]
fn concurrent_loads_tags_and_prunes() {
    let b = std::sync::Arc::new(Berth::new());
    let archives: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let opts = LayoutOptions {
                name: Some(format!("docker.io/library/par{i}:1")),
                ..Default::default()
            };
            oci_layout(&big_layer(i), &opts)
        })
        .collect();
    let archives = std::sync::Arc::new(archives);
    let mut workers = Vec::new();
    // Two processes load each archive at the same time; others tag and prune meanwhile.
    for n in 0..6 {
        let (b, archives) = (b.clone(), archives.clone());
        workers.push(thread::spawn(move || {
            let out = b.run_stdin(&["load"], &archives[n % 3]);
            assert_success(&out, &["load"]);
        }));
    }
    for n in 0..3 {
        let b = b.clone();
        workers.push(thread::spawn(move || {
            for _ in 0..5 {
                assert_success(&b.run(&["image", "prune", "-f"]), &["image", "prune"]);
                let _ = b.run(&["tag", &format!("par{n}:1"), &format!("alias{n}")]);
            }
        }));
    }
    for w in workers {
        w.join().unwrap();
    }
    for n in 0..3 {
        let dir = json(&b.ok(&["image", "inspect", &format!("par{n}:1")]))[0]["GraphDriver"]["Data"]["UpperDir"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(std::fs::read_dir(format!("{dir}/d0")).unwrap().count(), 100);
    }
    b.assert_blobs_verify();
    b.assert_sound("the loads");
    assert_eq!(
        std::fs::read_dir(b.root().join("layers")).unwrap().count(),
        3,
        "each layer unpacked once"
    );
}

#[test]
fn many_processes_open_a_fresh_store_at_once() {
    for _round in 0..4 {
        fresh_store_stampede();
    }
}

fn fresh_store_stampede() {
    let b = std::sync::Arc::new(Berth::new());
    let workers: Vec<_> = (0..24)
        .map(|i| {
            let b = b.clone();
            thread::spawn(move || {
                if i % 6 == 0 {
                    let out = b.run_stdin(&["import", "-", &format!("fresh{i}")], &rootfs_tar("f"));
                    assert_success(&out, &["import"]);
                } else {
                    assert_success(&b.run(&["images"]), &["images"]);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(
        b.ok(&["images", "--format", "{{.Repository}}"])
            .lines()
            .count(),
        4
    );
}

/// What one worker of the stampede does, by its number.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// `run --rm busybox true`: must succeed.
    RunRm,
    /// `run -d` a sleeper, then `rm -f` it: both must succeed.
    DetachAndRemove,
    /// `create` then `rm`: both must succeed.
    CreateAndRemove,
    /// `pull` the registry's image: must succeed.
    Pull,
    /// `tag` busybox under a name of its own, then `rmi` that name: both must succeed.
    TagAndRmi,
    /// `rmi` the pulled image: may find it gone or in use, never anything else.
    RmiPulled,
    /// `container prune` with a filter nothing matches: only the sweep of orphans, which
    /// must take no create or removal in progress for one.
    Sweep,
}

const STAMPEDE: [Work; 7] = [
    Work::RunRm,
    Work::DetachAndRemove,
    Work::CreateAndRemove,
    Work::Pull,
    Work::TagAndRmi,
    Work::RmiPulled,
    Work::Sweep,
];

/// 50 berth processes at once, for a bounded time, running, removing, pulling, tagging and
/// deleting on one root. Afterwards the store is sound and nothing of any container is left
/// on the host: no record, directory, cgroup, process, mount, veth, bridge or monitor.
#[test]
fn fifty_processes_run_rm_pull_tag_rmi_at_once() {
    use common::{host::Host, registry::Registry};
    let host = std::sync::Arc::new(Host::new());
    let registry = Registry::plain();
    // An image of its own (not busybox under another name), so that `rmi` deletes it and
    // its layers while other processes pull it again.
    let source = Berth::new();
    let pulled = registry.image("stampede:1");
    let layout = oci_layout(
        &big_layer(9),
        &LayoutOptions {
            gzip_layer: true,
            name: Some(pulled.clone()),
            ..Default::default()
        },
    );
    assert_success(&source.run_stdin(&["load"], &layout), &["load"]);
    source.ok(&["push", &pulled]);
    let bridge = host
        .ok(&[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"com.docker.network.bridge.name\"}}",
            "bridge",
        ])
        .trim()
        .to_string();

    // 20 s in the suite; `BERTH_STAMPEDE_SECS` for the long run (docs/reliability.md).
    let secs = std::env::var("BERTH_STAMPEDE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..50)
        .map(|n| {
            let (host, ids, pulled) = (host.clone(), ids.clone(), pulled.clone());
            thread::spawn(move || {
                let work = STAMPEDE[n % STAMPEDE.len()];
                let mut rounds = 0;
                while rounds == 0 || std::time::Instant::now() < deadline {
                    stampede_round(&host, work, n, rounds, &pulled, &ids);
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    // Every worker ends before any failure is reported: the Host's cleanup (`rm -f` of every
    // container) must not run under workers that still start containers.
    let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
    let rounds: usize = results
        .into_iter()
        .map(|r| r.expect("a worker failed (its message is above)"))
        .sum();
    eprintln!("stampede: {rounds} rounds of 50 workers");

    let b = &host.berth;
    b.assert_clean("the stampede");
    assert_eq!(b.ok(&["ps", "-aq"]), "");
    let ids = ids.lock().unwrap();
    for id in ids.iter() {
        host.assert_gone(id);
    }
    let root = b.root().display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !(cmdline.contains(&root) && cmdline.contains("container-monitor")),
            "a monitor is left: {cmdline}"
        );
    }
    // The root's bridge goes with its last container, and its veths with their containers.
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!(" {bridge}:")) && !links.contains(&format!("master {bridge} ")),
        "{bridge} or a port of it is left:\n{links}"
    );
    let containers_dir = b.root().join("containers");
    let left: Vec<_> = std::fs::read_dir(&containers_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in containers/: {left:?}");
}

fn stampede_round(
    host: &common::host::Host,
    work: Work,
    worker: usize,
    round: usize,
    pulled: &str,
    ids: &std::sync::Mutex<Vec<String>>,
) {
    let b = &host.berth;
    let must = |args: &[&str]| b.ok(args).trim().to_string();
    match work {
        Work::RunRm => {
            let ran = host.run(&["--rm", "busybox", "true"]);
            assert_eq!(ran.code, 0, "run --rm: {}", ran.stderr);
            ids.lock().unwrap().push(ran.id);
        }
        Work::DetachAndRemove => {
            let name = format!("w{worker}-{round}");
            let id = must(&["run", "-d", "--name", &name, "busybox", "sleep", "60"]);
            must(&["rm", "-f", &name]);
            ids.lock().unwrap().push(id);
        }
        Work::CreateAndRemove => {
            let id = must(&["create", "busybox"]);
            must(&["rm", &id]);
            ids.lock().unwrap().push(id);
        }
        Work::Pull => {
            must(&["pull", "-q", pulled]);
        }
        Work::TagAndRmi => {
            let tag = format!("mine{worker}:{round}");
            must(&["tag", "busybox", &tag]);
            must(&["rmi", &tag]);
        }
        Work::RmiPulled => {
            let out = b.run(&["rmi", pulled]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() || stderr.contains("No such image"),
                "rmi {pulled}: {:?} {stderr}",
                out.status
            );
            thread::sleep(Duration::from_millis(200));
        }
        Work::Sweep => {
            must(&[
                "container",
                "prune",
                "-f",
                "--filter",
                "label=nothing.has.this",
            ]);
            thread::sleep(Duration::from_millis(100));
        }
    }
}
