//! NAT and forwarding rules in nftables, in a table of berth's own: `ip berth`.
//!
//! Each bridge gets two *base* chains of its own, hooked into netfilter directly (what they
//! allow, and why another table's drop still wins, is on [`ensure_nat`]):
//!
//! ```text
//! table ip berth {
//!     chain nat-berth0 {                     # masquerade what leaves the host
//!         type nat hook postrouting priority srcnat; policy accept;
//!         ip saddr 172.17.0.0/16 oifname != "berth0" masquerade
//!     }
//!     chain fwd-berth0 {                     # what may cross the bridge's border
//!         type filter hook forward priority filter; policy accept;
//!         iifname "berth0" accept
//!         oifname "berth0" ct state established,related accept
//!         oifname "berth0" ct status dnat accept
//!         oifname "berth0" drop
//!     }
//! }
//! ```
//!
//! A chain per bridge (rather than rules for every bridge in shared chains) is what makes
//! the rules idempotent and safe under concurrency without reading the ruleset: the script
//! declares the table and chains with `add` (a no-op when they exist), flushes the bridge's
//! chains and fills them again, and nft applies the whole script as one kernel transaction.
//! Two berth processes running it at once leave one copy of the rules; nothing else in the
//! ruleset is listed, parsed or touched (foreign tables cannot break berth, the lesson of
//! netavark issue 942). Netfilter runs every base chain of a hook, so per-bridge chains cost
//! one chain traversal each.
//!
//! **Why `nft -f -` with a text script, not the `nftables` crate.** The crate's value is a
//! typed JSON model of whole rulesets; berth writes one fixed, small script per bridge and
//! never reads a ruleset back, and the crate would add schemars, strum and
//! serde_path_to_error to the build for it. Both go through the same `nft` binary, so the
//! runtime requirement (the nftables package) is the same. Names in the script are
//! restricted to `[A-Za-z0-9_.-]`, so a bridge name cannot inject nft syntax.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::link::validate_ifname;
use crate::{Ipv4Net, NetError};

/// The nftables family and table berth owns.
pub const NFT_TABLE: &str = "ip berth";

/// Where `nft` is looked for before `$PATH`: root's `PATH` may lack `/usr/sbin` (`su`
/// without `-`), and a fixed path is what a root program should run anyway.
const NFT_PATHS: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// Sets up NAT and forwarding for bridge `bridge` with `subnet` in the nftables table
/// `ip berth` (created on first use), in two base chains of the bridge's own:
///
/// - `nat-<bridge>` (postrouting, `srcnat`): traffic from the subnet that leaves through
///   another interface is masqueraded. Not made for an `internal` network.
/// - `fwd-<bridge>` (forward, `filter`), as Docker: containers may open connections out;
///   from outside, only replies and published ports (DNAT) come in, and other new
///   connections into the bridge are dropped (which also isolates bridges from each other).
///   An `internal` network drops everything between the bridge and other interfaces.
///
/// **Other tables still apply.** An accept here only ends this chain: a packet must pass
/// every base chain on the hook, so a `drop` policy or rule in another table (iptables'
/// `FORWARD` chain with policy `DROP`, as Docker leaves it, or a host firewall) still drops
/// containers' traffic. berth never edits those tables.
///
/// Idempotent and safe when run concurrently: the bridge's chains are flushed and filled
/// again in one nft transaction, so reruns leave one copy of the rules. Needs the `nft`
/// binary (package `nftables`); a failure carries nft's error line.
pub fn ensure_nat(bridge: &str, subnet: Ipv4Net, internal: bool) -> Result<(), NetError> {
    validate_nft_name(bridge)?;
    tracing::debug!(bridge, %subnet, internal, "setting up NAT");
    run_nft(
        &ensure_script(bridge, subnet, internal),
        &format!("setting up NAT for bridge {bridge}"),
    )
}

/// Removes bridge `bridge`'s chains from table `ip berth`; missing ones are fine. The table
/// itself stays (other bridges may use it; an empty table costs nothing).
pub fn remove_nat(bridge: &str) -> Result<(), NetError> {
    validate_nft_name(bridge)?;
    tracing::debug!(bridge, "removing NAT");
    run_nft(
        &remove_script(bridge),
        &format!("removing NAT for bridge {bridge}"),
    )
}

/// The names of bridge `bridge`'s chains in table `ip berth`: NAT, then forwarding.
pub fn nat_chains(bridge: &str) -> [String; 2] {
    [format!("nat-{bridge}"), format!("fwd-{bridge}")]
}

/// Interface names as berth uses them in scripts: a valid Linux name of `[A-Za-z0-9_.-]`.
/// Chain names and quoted strings both accept these without escaping.
fn validate_nft_name(name: &str) -> Result<(), NetError> {
    validate_ifname(name)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(NetError::InvalidName {
            name: name.to_owned(),
            reason: "NAT is set up only for names of letters, digits, '_', '.' and '-'",
        });
    }
    Ok(())
}

/// The script that (re)declares bridge `bridge`'s chains and fills them.
fn ensure_script(bridge: &str, subnet: Ipv4Net, internal: bool) -> String {
    let [nat, fwd] = nat_chains(bridge);
    let net = format!("{}/{}", subnet.network(), subnet.prefix);
    let mut s = format!("add table {NFT_TABLE}\n");
    if internal {
        // No way out: and no masquerade chain left over from an earlier non-internal setup.
        s += &delete_chain_lines(&nat);
    } else {
        s += &format!(
            "add chain {NFT_TABLE} {nat} {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             flush chain {NFT_TABLE} {nat}\n\
             add rule {NFT_TABLE} {nat} ip saddr {net} oifname != \"{bridge}\" masquerade\n"
        );
    }
    s += &format!(
        "add chain {NFT_TABLE} {fwd} {{ type filter hook forward priority filter; policy accept; }}\n\
         flush chain {NFT_TABLE} {fwd}\n"
    );
    if internal {
        s += &format!(
            "add rule {NFT_TABLE} {fwd} iifname \"{bridge}\" oifname != \"{bridge}\" drop\n\
             add rule {NFT_TABLE} {fwd} oifname \"{bridge}\" iifname != \"{bridge}\" drop\n"
        );
    } else {
        s += &format!(
            "add rule {NFT_TABLE} {fwd} iifname \"{bridge}\" accept\n\
             add rule {NFT_TABLE} {fwd} oifname \"{bridge}\" ct state established,related accept\n\
             add rule {NFT_TABLE} {fwd} oifname \"{bridge}\" ct status dnat accept\n\
             add rule {NFT_TABLE} {fwd} oifname \"{bridge}\" drop\n"
        );
    }
    s
}

/// The script that deletes bridge `bridge`'s chains, whether or not they exist.
fn remove_script(bridge: &str) -> String {
    let [nat, fwd] = nat_chains(bridge);
    format!(
        "add table {NFT_TABLE}\n{}{}",
        delete_chain_lines(&nat),
        delete_chain_lines(&fwd)
    )
}

/// Deletes `chain` whether or not it exists: nft 1.0.6 (Debian 12) has no `destroy`, and a
/// `delete` of a missing chain fails the whole transaction, so the chain is declared first
/// (a no-op if it exists, an empty chain otherwise), in the same transaction.
fn delete_chain_lines(chain: &str) -> String {
    format!("add chain {NFT_TABLE} {chain}\ndelete chain {NFT_TABLE} {chain}\n")
}

/// Runs `nft -f -` with `script` on its standard input. On failure the error holds nft's
/// error lines (`Error: ...`), `op` says what berth was doing.
fn run_nft(script: &str, op: &str) -> Result<(), NetError> {
    let nft = NFT_PATHS
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nft");
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetError::NftSpawn)?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let written = stdin.write_all(script.as_bytes());
    drop(stdin);
    let output = child.wait_with_output().map_err(NetError::NftSpawn)?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut message = error_lines(&stderr);
    if message.is_empty() {
        message = match written {
            Err(e) => format!("could not write the script: {e}"),
            Ok(()) => format!("failed ({})", output.status),
        };
    }
    Err(NetError::Nft {
        op: op.to_owned(),
        stderr: message,
    })
}

/// nft's stderr on one line: its `Error:` lines (which name the script line), or everything
/// if there are none.
fn error_lines(stderr: &str) -> String {
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("Error:"))
        .collect();
    if errors.is_empty() {
        stderr.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        errors.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_script_masquerades_and_forwards() {
        let subnet = Ipv4Net::parse("10.213.7.1/24").unwrap();
        assert_eq!(
            ensure_script("br-x", subnet, false),
            "add table ip berth\n\
             add chain ip berth nat-br-x { type nat hook postrouting priority srcnat; policy accept; }\n\
             flush chain ip berth nat-br-x\n\
             add rule ip berth nat-br-x ip saddr 10.213.7.0/24 oifname != \"br-x\" masquerade\n\
             add chain ip berth fwd-br-x { type filter hook forward priority filter; policy accept; }\n\
             flush chain ip berth fwd-br-x\n\
             add rule ip berth fwd-br-x iifname \"br-x\" accept\n\
             add rule ip berth fwd-br-x oifname \"br-x\" ct state established,related accept\n\
             add rule ip berth fwd-br-x oifname \"br-x\" ct status dnat accept\n\
             add rule ip berth fwd-br-x oifname \"br-x\" drop\n"
        );
    }

    #[test]
    fn ensure_script_internal() {
        let subnet = Ipv4Net::parse("10.213.7.0/24").unwrap();
        assert_eq!(
            ensure_script("br-x", subnet, true),
            "add table ip berth\n\
             add chain ip berth nat-br-x\n\
             delete chain ip berth nat-br-x\n\
             add chain ip berth fwd-br-x { type filter hook forward priority filter; policy accept; }\n\
             flush chain ip berth fwd-br-x\n\
             add rule ip berth fwd-br-x iifname \"br-x\" oifname != \"br-x\" drop\n\
             add rule ip berth fwd-br-x oifname \"br-x\" iifname != \"br-x\" drop\n"
        );
    }

    #[test]
    fn remove_script_tolerates_missing_chains() {
        assert_eq!(
            remove_script("b0"),
            "add table ip berth\n\
             add chain ip berth nat-b0\n\
             delete chain ip berth nat-b0\n\
             add chain ip berth fwd-b0\n\
             delete chain ip berth fwd-b0\n"
        );
    }

    #[test]
    fn names_cannot_inject() {
        for bad in ["a\"b", "a;b", "a{b", "a$b", "a#b", "a\\b", "a'b"] {
            assert!(validate_nft_name(bad).is_err(), "{bad}");
        }
        for ok in ["berth0", "br-0123456789ab", "a_b.c"] {
            validate_nft_name(ok).expect(ok);
        }
    }

    #[test]
    fn nft_errors_on_one_line() {
        let stderr = "/dev/stdin:3:1-30: Error: Could not process rule: No such file or directory\n\
                      delete chain ip berth nat-x\n^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n";
        assert_eq!(
            error_lines(stderr),
            "/dev/stdin:3:1-30: Error: Could not process rule: No such file or directory"
        );
        assert_eq!(
            error_lines("nft: command not\n found\n"),
            "nft: command not found"
        );
    }
}
