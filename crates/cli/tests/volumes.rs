//! `berth volume`: create, ls, inspect, rm and prune through the real binary, with Docker's
//! output, error texts and exit codes.

mod common;

use std::{fs, path::PathBuf, process::Stdio};

use common::{Berth, assert_success, json, rootfs_tar};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of `s`, sorted (an anonymous volume's random name sorts anywhere).
fn sorted(s: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = s.lines().collect();
    lines.sort();
    lines
}

fn mountpoint(b: &Berth, name: &str) -> PathBuf {
    PathBuf::from(
        b.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", name])
            .trim(),
    )
}

/// A container whose record mounts `volume` at /data, as `run -v volume:/data` records it
/// (written into containers.db directly: this suite is about volumes, not `-v`).
fn container_using(b: &Berth, name: &str, volume: &str) -> String {
    assert_success(
        &b.run_stdin(&["import", "-", "img:1"], &rootfs_tar("v")),
        &["import"],
    );
    let id = b
        .ok(&["create", "--name", name, "img:1", "/bin/true"])
        .trim()
        .to_string();
    let mount = serde_json::json!([{
        "Type": "volume",
        "Name": volume,
        "Source": mountpoint(b, volume).display().to_string(),
        "Destination": "/data",
        "Driver": "local",
        "Mode": "z",
        "RW": true,
        "Propagation": "",
    }]);
    let db = rusqlite::Connection::open(b.root().join("containers.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let changed = db
        .execute(
            "UPDATE containers SET record = json_set(record, '$.Mounts', json(?2)) WHERE id = ?1",
            rusqlite::params![id, mount.to_string()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    id
}

#[test]
fn create_ls_inspect_rm_with_labels_and_options() {
    let b = Berth::new();
    assert_eq!(
        b.ok(&[
            "volume",
            "create",
            "--label",
            "tier=db",
            "--label",
            "bare",
            "-o",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "-o",
            "o=size=1m",
            "data1",
        ]),
        "data1\n"
    );
    // Creating it again returns it (Docker), also with other labels.
    assert_eq!(
        b.ok(&[
            "volume",
            "create",
            "-o",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "-o",
            "o=size=1m",
            "--label",
            "x=y",
            "data1"
        ]),
        "data1\n"
    );
    assert_eq!(b.ok(&["volume", "create", "data10"]), "data10\n");
    assert_eq!(b.ok(&["volume", "create", "--name", "data2"]), "data2\n");
    // Docker 28's columns; names in natural order (data2 before data10).
    assert_eq!(
        b.ok(&["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     data1\nlocal     data2\nlocal     data10\n"
    );
    assert_eq!(b.ok(&["volume", "list", "-q"]), "data1\ndata2\ndata10\n");
    assert_eq!(
        b.ok(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Labels}} {{.Scope}} {{.Size}}"
        ]),
        "data1 bare=,tier=db local N/A\ndata2  local N/A\ndata10  local N/A\n"
    );
    assert_eq!(
        b.ok(&[
            "volume",
            "ls",
            "--format",
            "table {{.Name}}\t{{.Mountpoint}}"
        ])
        .lines()
        .next(),
        Some("VOLUME NAME   MOUNTPOINT")
    );
    let line = b.ok(&["volume", "ls", "--format", "json", "-f", "name=data1$"]);
    let row = json(line.trim());
    assert_eq!(row["Name"], "data1");
    assert_eq!(row["Driver"], "local");
    assert_eq!(row["Links"], "N/A");

    let out = b.ok(&["volume", "inspect", "data1"]);
    assert!(
        out.starts_with("[\n    {\n        \"CreatedAt\": \""),
        "{out}"
    );
    let doc = json(&out);
    let v = &doc[0];
    assert_eq!(v["Name"], "data1");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"], serde_json::json!({"bare": "", "tier": "db"}));
    assert_eq!(
        v["Options"],
        serde_json::json!({"device": "tmpfs", "o": "size=1m", "type": "tmpfs"})
    );
    assert_eq!(
        v["Mountpoint"],
        b.root().join("volumes/data1/_data").display().to_string()
    );
    let created = v["CreatedAt"].as_str().unwrap();
    assert!(created.parse::<jiff::Timestamp>().is_ok() && created.ends_with('Z'));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "CreatedAt",
            "Driver",
            "Labels",
            "Mountpoint",
            "Name",
            "Options",
            "Scope"
        ]
    );
    assert_eq!(
        b.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{json .Labels}}",
            "data1",
            "data2"
        ]),
        "data1 {\"bare\":\"\",\"tier\":\"db\"}\ndata2 {}\n"
    );
    // The top-level inspect finds volumes too.
    assert_eq!(
        b.ok(&["inspect", "--type", "volume", "-f", "{{.Driver}}", "data2"]),
        "local\n"
    );
    assert_eq!(b.ok(&["inspect", "-f", "{{.Name}}", "data2"]), "data2\n");

    // Data written into the mount point stays until rm.
    let data = mountpoint(&b, "data2");
    assert!(data.starts_with(b.root()));
    fs::write(data.join("kept"), b"hello").unwrap();
    b.ok(&["volume", "create", "data2"]);
    b.ok(&["volume", "prune", "-f"]);
    assert_eq!(fs::read(data.join("kept")).unwrap(), b"hello");

    assert_eq!(
        b.ok(&["volume", "rm", "data2", "data10"]),
        "data2\ndata10\n"
    );
    assert!(!data.exists());
    assert!(!b.root().join("volumes/data10").exists());
    assert_eq!(b.ok(&["volume", "remove", "data1"]), "data1\n");
    assert_eq!(b.ok(&["volume", "ls"]), "DRIVER    VOLUME NAME\n");
    let left: Vec<_> = fs::read_dir(b.root().join("volumes")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn anonymous_volumes_and_the_dangling_filter() {
    let b = Berth::new();
    let anon = b.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64);
    assert_eq!(
        b.ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon]),
        "{\"com.docker.volume.anonymous\":\"\"}\n"
    );
    b.ok(&[
        "volume", "create", "--label", "app=web", "--label", "env=prod", "web",
    ]);
    b.ok(&["volume", "create", "--label", "app=db", "db"]);
    b.ok(&["volume", "create", "used"]);
    let id = container_using(&b, "user", "used");

    let ls = |filters: &[&str]| {
        let mut args = vec!["volume", "ls", "-q"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        b.ok(&args)
    };
    assert_eq!(ls(&["dangling=false"]), "used\n");
    assert_eq!(
        sorted(&ls(&["dangling=true"])),
        sorted(&format!("{anon}\ndb\nweb\n"))
    );
    assert_eq!(ls(&["dangling=1", "label=app"]), "db\nweb\n");
    assert_eq!(ls(&["label=app=web"]), "web\n");
    assert_eq!(ls(&["label=app", "label=env=prod"]), "web\n");
    // Regular expressions (the anonymous volume's hex name matches neither).
    assert_eq!(ls(&["name=^d[a-z]$"]), "db\n");
    assert_eq!(ls(&["name=^[uw]"]), "used\nweb\n");
    assert_eq!(ls(&["name=se", "name=^web$"]), "used\nweb\n");
    assert_eq!(ls(&["name=["]), "");
    assert_eq!(ls(&["driver=local", "name=used"]), "used\n");
    assert_eq!(ls(&["driver=other"]), "");

    // Bad filters: one line, exit 1, as Docker's daemon refuses them.
    let out = b.run(&["volume", "ls", "--filter", "dangling=maybe"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr_of(&out), "Error: invalid filter 'dangling=maybe'\n");
    let out = b.run(&["volume", "ls", "--filter", "until=1h"]);
    assert_eq!(stderr_of(&out), "Error: invalid filter 'until'\n");

    // In use: refused, even with -f, naming the container (Docker's wording).
    for args in [
        &["volume", "rm", "used"][..],
        &["volume", "rm", "-f", "used"],
    ] {
        let out = b.run(args);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr_of(&out),
            format!("Error: remove used: volume is in use - [{id}]\n")
        );
        assert_eq!(stdout_of(&out), "");
    }
    // Prune leaves it too, and with -a removes the unused named ones.
    let out = b.ok(&["volume", "prune", "-a", "-f", "--filter", "label!=app=web"]);
    let (deleted, total) = out.split_once("\n\n").unwrap();
    assert_eq!(
        sorted(deleted),
        sorted(&format!("Deleted Volumes:\n{anon}\ndb"))
    );
    assert_eq!(total, "Total reclaimed space: 0B\n");
    assert_eq!(ls(&[]), "used\nweb\n");
    b.ok(&["rm", "user"]);
    assert_eq!(ls(&["dangling=true"]), "used\nweb\n");
    assert_eq!(b.ok(&["volume", "rm", "used"]), "used\n");
}

#[test]
fn prune_asks_and_counts_the_space() {
    let b = Berth::new();
    let anon = b.ok(&["volume", "create"]).trim().to_string();
    b.ok(&["volume", "create", "named"]);
    fs::write(mountpoint(&b, &anon).join("blob"), vec![7u8; 1_234_567]).unwrap();
    fs::create_dir(mountpoint(&b, &anon).join("d")).unwrap();
    fs::write(mountpoint(&b, &anon).join("d/x"), b"12345").unwrap();

    // No answer, or "n": nothing happens.
    let out = b.run_stdin(&["volume", "prune"], b"n\n");
    assert_success(&out, &["volume", "prune"]);
    assert_eq!(
        stderr_of(&out),
        "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
    );
    assert_eq!(stdout_of(&out), "");
    assert_eq!(b.ok(&["volume", "ls", "-q"]).lines().count(), 2);

    // "y": only the anonymous volume goes; its bytes counted, as go-units' HumanSize.
    let out = b.run_stdin(&["volume", "prune"], b"y\n");
    assert_success(&out, &["volume", "prune"]);
    assert_eq!(
        stdout_of(&out),
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 1.235MB\n")
    );
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "named\n");

    let out = b.run_stdin(&["volume", "prune", "--all"], b"y\n");
    assert_success(&out, &["volume", "prune", "--all"]);
    assert!(stderr_of(&out).starts_with(
        "WARNING! This will remove all local volumes not used by at least one container.\n"
    ));
    assert_eq!(
        stdout_of(&out),
        "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(
        b.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );

    // --filter all=... is Docker's other spelling of --all; both at once is refused.
    b.ok(&["volume", "create", "again"]);
    assert_eq!(
        b.fails(&["volume", "prune", "-a", "-f", "--filter", "all=1"]),
        "Error: conflicting options: cannot specify both --all and --filter all=1\n"
    );
    assert_eq!(
        b.fails(&["volume", "prune", "-f", "--filter", "until=1h"]),
        "Error: invalid filter 'until'\n"
    );
    assert_eq!(
        b.ok(&["volume", "prune", "-f", "--filter", "all=true"]),
        "Deleted Volumes:\nagain\n\nTotal reclaimed space: 0B\n"
    );
}

#[test]
fn errors_have_dockers_text_and_exit_codes() {
    let b = Berth::new();
    let cases: [(&[&str], &str); 6] = [
        (
            &["volume", "create", "x"],
            "Error: volume name is too short, names should be at least two alphanumeric characters\n",
        ),
        (
            &["volume", "create", "x/y"],
            "Error: \"x/y\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path\n",
        ),
        (
            &["volume", "create", "-d", "nfs", "vol"],
            "Error: plugin \"nfs\" not found\n",
        ),
        (
            &["volume", "create", "-o", "x=1", "vol"],
            "Error: invalid option key: \"x\"\n",
        ),
        (
            &["volume", "create", "--name", "a1", "b1"],
            "Error: conflicting options: cannot specify a volume-name through both --name and as a positional arg\n",
        ),
        (
            &["volume", "rm", "nope"],
            "Error: get nope: no such volume\n",
        ),
    ];
    for (args, want) in cases {
        let out = b.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr_of(&out), want, "{args:?}");
        assert_eq!(stdout_of(&out), "", "{args:?}");
    }
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "");

    // A bad --label is a bad command line (125).
    let out = b.run(&["volume", "create", "--label", "=v", "vol"]);
    assert_eq!(out.status.code(), Some(125));

    b.ok(&["volume", "create", "v1"]);
    b.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "v2",
    ]);
    let out = b.run(&["volume", "create", "v2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("already exists with other options"));

    // inspect prints what it found, then one line per name it did not.
    let out = b.run(&["volume", "inspect", "v1", "nope", "v2", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&stdout_of(&out));
    assert_eq!(doc.as_array().unwrap().len(), 2);
    assert_eq!(
        stderr_of(&out),
        "Error: No such volume: nope\nError: No such volume: gone\n"
    );
    let out = b.run(&["volume", "inspect", "nope"]);
    assert_eq!(stdout_of(&out), "[]\n");
    assert_eq!(out.status.code(), Some(1));

    // rm: the names removed, then the errors, exit 1; -f makes a missing volume no error.
    let out = b.run(&["volume", "rm", "nope", "v1", "gone"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout_of(&out), "v1\n");
    assert_eq!(
        stderr_of(&out),
        "Error: get nope: no such volume\nError: get gone: no such volume\n"
    );
    assert_eq!(b.ok(&["volume", "rm", "-f", "nope", "v2"]), "nope\nv2\n");
    let out = b.run(&["volume", "inspect", "--format", "{{.Name}}"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn concurrent_creates_of_one_name_all_succeed() {
    let b = Berth::new();
    let children: Vec<_> = (0..8)
        .map(|_| {
            b.command()
                .args(["volume", "create", "shared"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_success(&out, &["volume", "create", "shared"]);
        assert_eq!(stdout_of(&out), "shared\n");
    }
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "shared\n");
    let entries: Vec<_> = fs::read_dir(b.root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["shared"]);
}

#[test]
fn a_crash_leftover_is_replaced_by_the_next_create() {
    let b = Berth::new();
    b.ok(&["volume", "create", "seed"]);
    // What a create killed between its mkdir and its row leaves: a directory, no volume.
    let stale = b.root().join("volumes/left/_data");
    fs::create_dir_all(&stale).unwrap();
    fs::write(stale.join("old"), b"x").unwrap();
    assert_eq!(b.ok(&["volume", "ls", "-q"]), "seed\n");
    assert_eq!(
        b.fails(&["volume", "inspect", "left"]),
        "Error: No such volume: left\n"
    );
    b.ok(&["volume", "create", "left"]);
    assert!(stale.is_dir());
    assert!(!stale.join("old").exists());
    // And what a removal killed after its row went: prune removes it, reporting nothing.
    fs::create_dir_all(b.root().join("volumes/orphan/_data")).unwrap();
    fs::create_dir_all(b.root().join("volumes/.removing-x/_data")).unwrap();
    assert_eq!(
        b.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    let mut left: Vec<_> = fs::read_dir(b.root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["left", "seed"]);
}
