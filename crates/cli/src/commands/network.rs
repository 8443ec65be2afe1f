//! Network commands: `network create`, `ls`, `inspect`, `rm`, `prune`, `connect`,
//! `disconnect`.

use std::{
    io::{self, Write},
    path::Path,
};

use anyhow::Result;
use berth_engine::{
    Engine, EngineError,
    networks::{NETWORK_FILTERS, NetworkOptions, parse_gateway, parse_subnet},
};
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::{fail, print_json_indented, report};
use crate::{filters::Filters, format};

/// `berth network ...`.
#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

/// Runs one `network` command.
pub fn dispatch(root: &Path, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(args) => create(root, args),
        NetworkCommand::Ls(args) => list(root, args),
        NetworkCommand::Inspect(args) => inspect(root, args),
        NetworkCommand::Rm(args) => remove(root, args),
        NetworkCommand::Prune(args) => prune(root, args),
        NetworkCommand::Connect(args) => connect(root, args),
        NetworkCommand::Disconnect(args) => disconnect(root, args),
    }
}

/// `berth network create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge", value_name = "string")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long, value_name = "strings")]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long, value_name = "strings")]
    gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long, value_name = "list")]
    label: Vec<String>,
    /// NETWORK
    name: String,
}

/// `berth network create`: prints the new network's ID.
pub fn create(root: &Path, args: CreateArgs) -> Result<()> {
    let subnet = args.subnet.as_deref().map(parse_subnet).transpose()?;
    let gateway = args.gateway.as_deref().map(parse_gateway).transpose()?;
    let mut engine = Engine::open(root)?;
    let network = engine.network_create(&NetworkOptions {
        name: args.name.clone(),
        driver: args.driver.clone(),
        subnet,
        gateway,
        internal: args.internal,
        labels: super::key_values(&args.label, "label")?,
    })?;
    println!("{}", network.id);
    Ok(())
}

/// `berth network ls` flags.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Only display network IDs
    #[arg(short, long)]
    quiet: bool,
}

/// One row of `network ls`, with Docker's template field names.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkRow {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    driver: String,
    scope: String,
    #[serde(rename = "IPv6")]
    ipv6: bool,
    internal: bool,
    labels: String,
    created_at: String,
}

/// `berth network ls`: NETWORK ID, NAME, DRIVER, SCOPE.
pub fn list(root: &Path, args: ListArgs) -> Result<()> {
    let filters = Filters::parse(&args.filter, NETWORK_FILTERS)?;
    let mut engine = Engine::open(root)?;
    let mut rows = Vec::new();
    for n in engine.network_entries(&filters)? {
        rows.push(NetworkRow {
            id: if args.no_trunc {
                n.id.clone()
            } else {
                n.id[..12].to_string()
            },
            name: n.name,
            driver: n.driver.into(),
            scope: "local".into(),
            ipv6: false,
            internal: n.internal,
            labels: n
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            created_at: n.created,
        });
    }
    format::print_list(
        &rows,
        args.quiet,
        |r| &r.id,
        args.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
        &[
            ("ID", "NETWORK ID"),
            ("Name", "NAME"),
            ("Driver", "DRIVER"),
            ("Scope", "SCOPE"),
            ("IPv6", "IPV6"),
            ("Internal", "INTERNAL"),
            ("Labels", "LABELS"),
            ("CreatedAt", "CREATED AT"),
        ],
    )
}

/// `berth network inspect` flags.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// NETWORK...
    #[arg(required = true)]
    networks: Vec<String>,
}

/// The `inspect` document of the network `key`, `None` when there is none (for the
/// top-level `inspect`).
pub fn inspect_document(root: &Path, key: &str) -> Result<Option<Value>> {
    let mut engine = Engine::open(root)?;
    match engine.network_entry(key) {
        Ok(n) => Ok(Some(engine.network_document(&n, true)?)),
        Err(EngineError::NoSuchNetwork(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `berth network inspect`.
pub fn inspect(root: &Path, args: InspectArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for key in &args.networks {
        match engine.network_entry(key) {
            Ok(n) => docs.push(engine.network_document(&n, true)?),
            Err(e) => errors.push(e.to_string()),
        }
    }
    match args.format.as_deref() {
        Some(tmpl) if !tmpl.is_empty() && tmpl != "json" => {
            let mut out = io::stdout().lock();
            for d in &docs {
                writeln!(out, "{}", format::render_one(tmpl, d)?)?;
            }
        }
        _ => print_json_indented(&Value::Array(docs))?,
    }
    report(&errors)
}

/// `berth network rm` flags.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    force: bool,
    /// NETWORK...
    #[arg(required = true)]
    networks: Vec<String>,
}

/// `berth network rm`: prints each removed network's name as given.
pub fn remove(root: &Path, args: RemoveArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    let mut errors = Vec::new();
    for key in &args.networks {
        match engine.network_remove(key) {
            Ok(_) => println!("{key}"),
            Err(EngineError::NoSuchNetwork(_)) if args.force => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    report(&errors)
}

/// `berth network prune` flags.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
}

/// `berth network prune`: every user-defined network no container uses.
pub fn prune(root: &Path, args: PruneArgs) -> Result<()> {
    let filters = Filters::parse(&args.filter, berth_engine::networks::NETWORK_PRUNE_FILTERS)?;
    if !args.force {
        print!(
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        );
        io::stdout().flush()?;
        let mut answer = String::new();
        io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y") {
            return Ok(());
        }
    }
    let mut engine = Engine::open(root)?;
    let removed = engine.network_prune(&filters)?;
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for name in removed {
            println!("{name}");
        }
    }
    Ok(())
}

/// `berth network connect` flags.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long, value_name = "strings")]
    alias: Vec<String>,
    /// NETWORK
    network: String,
    /// CONTAINER
    container: String,
}

/// `berth network connect`: prints nothing, as Docker.
pub fn connect(root: &Path, args: ConnectArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    engine
        .network_connect(&args.network, &args.container, &args.alias)
        .map_err(|e| fail(1, e))
}

/// `berth network disconnect` flags.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    force: bool,
    /// NETWORK
    network: String,
    /// CONTAINER
    container: String,
}

/// `berth network disconnect`.
pub fn disconnect(root: &Path, args: DisconnectArgs) -> Result<()> {
    let mut engine = Engine::open(root)?;
    engine
        .network_disconnect(&args.network, &args.container, args.force)
        .map_err(|e| fail(1, e))
}
