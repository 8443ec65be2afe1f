//! One module per object kind; each command is a function taking the state root and its
//! parsed arguments.

pub mod build;
pub mod compose;
pub mod container;
pub mod contents;
pub mod exec;
pub mod image;
pub mod lifecycle;
pub mod network;
pub mod procs;
pub mod registry;
pub mod registry_server;
pub mod serve;
pub mod system;
pub mod volume;

use std::path::Path;

use anyhow::Context;
use berth_store::Store;

/// An error already reported to the user; the process exits with this status.
#[derive(Debug)]
pub struct Status(pub u8);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Status {}

/// Prints `e` as berth's one-line error (`Error: ...`, as the docker CLI) and returns the
/// status to exit with.
pub fn fail(code: u8, e: impl std::fmt::Display) -> anyhow::Error {
    eprintln!("Error: {e}");
    Status(code).into()
}

/// Prints each error on its own line and returns exit status 1 when there was any (commands
/// that go on past a failing argument, as `rm A B`).
pub fn report(errors: &[String]) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    for e in errors {
        eprintln!("Error: {e}");
    }
    Err(Status(1).into())
}

pub use crate::error_line::one_line;

/// Opens the store under `root`.
pub fn open_store(root: &Path) -> anyhow::Result<Store> {
    Store::open(root).with_context(|| format!("opening the berth store at {}", root.display()))
}

/// Writes JSON indented like the docker CLI does (four spaces).
pub fn print_json_indented(value: &serde_json::Value) -> anyhow::Result<()> {
    use serde::Serialize;
    use std::io::Write;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value.serialize(&mut ser)?;
    buf.push(b'\n');
    std::io::stdout().lock().write_all(&buf)?;
    Ok(())
}

/// `KEY=VALUE` (or `KEY`, an empty value) arguments as a map, the last of a key winning.
pub fn key_values(
    values: &[String],
    flag: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for value in values {
        let (k, v) = value.split_once('=').unwrap_or((value, ""));
        if flag == "label" && k.trim().is_empty() {
            // A bad flag value, as Docker's flag parser reports it.
            eprintln!(
                "invalid argument {value:?} for \"--label\" flag: invalid label '{value}': empty name"
            );
            return Err(Status(crate::EXIT_USAGE).into());
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}
