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
        let check = b.ok(&["system", "check"]);
        assert!(check.contains(": no problems"), "{check}");
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
    assert!(b.ok(&["system", "check"]).contains(": no problems"));
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
