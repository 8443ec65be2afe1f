//! Bridges in the host's network namespace (the caller's), and link queries.

use std::net::Ipv4Addr;

use netlink_packet_route::link::InfoKind;

use crate::endpoint::mac_for;
use crate::link::{self, validate_ifname};
use crate::netlink::{Netlink, errno};
use crate::{Ipv4Net, NetError};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Creates the bridge `name` with `gateway/subnet.prefix` as its address and brings it up;
/// does nothing when it exists with that address and is up (and adds the address, or brings
/// it up, when that is what is missing). Also turns on `net.ipv4.ip_forward`, without which
/// containers cannot reach past the host.
///
/// Safe when several processes call it at once: a bridge or address that another created
/// meanwhile (`EEXIST`) counts as success. The bridge's MAC is [`mac_for`]`(gateway)`, fixed
/// so that it does not follow its ports (see `link::create_bridge`).
///
/// Fails with [`NetError::WrongKind`] when `name` is a link that is not a bridge, and
/// [`NetError::OutsideSubnet`] when the gateway is not in the subnet.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, subnet: Ipv4Net) -> Result<(), NetError> {
    validate_ifname(name)?;
    if !subnet.contains(gateway) {
        return Err(NetError::OutsideSubnet {
            address: gateway,
            subnet,
        });
    }
    let _span = tracing::debug_span!("ensure_bridge", bridge = name, %gateway, %subnet).entered();
    let mut nl = Netlink::open()?;
    let bridge = match link::get_link(&mut nl, name)? {
        Some(bridge) => bridge,
        None => {
            tracing::debug!(bridge = name, "creating bridge");
            match link::create_bridge(&mut nl, name, mac_for(gateway)) {
                Ok(()) => {}
                // Another process made it first.
                Err(e) if e.errno() == Some(errno::EEXIST) => {}
                Err(e) => return Err(e.into_net("creating bridge", name)),
            }
            link::get_link(&mut nl, name)?
                // Deleted again between our create and this lookup: a concurrent
                // remove_bridge won, and the caller's view is stale.
                .ok_or_else(|| NetError::LinkNotFound(name.to_owned()))?
        }
    };
    bridge.expect_kind(name, InfoKind::Bridge, "a bridge")?;

    let have = link::ipv4_addresses(&mut nl, bridge.index, name)?;
    if !have.contains(&(gateway, subnet.prefix)) {
        tracing::debug!(bridge = name, %gateway, "adding the gateway address");
        match link::add_ipv4_address(&mut nl, bridge.index, gateway, subnet.prefix) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(errno::EEXIST) => {}
            Err(e) => {
                return Err(e.into_net(
                    "adding address to bridge",
                    &format!("{name} ({gateway}/{})", subnet.prefix),
                ));
            }
        }
    }
    if !bridge.up {
        link::set_up(&mut nl, bridge.index, name)?;
    }
    enable_ip_forward()
}

/// Writes `1` to `net.ipv4.ip_forward` unless it is already on (a write is not free: it
/// resets every interface's forwarding setting to match).
fn enable_ip_forward() -> Result<(), NetError> {
    let io_err = |op: &str, source| NetError::Io {
        op: format!("{op} {IP_FORWARD}"),
        source,
    };
    let now = std::fs::read_to_string(IP_FORWARD).map_err(|e| io_err("reading", e))?;
    if now.trim() == "1" {
        return Ok(());
    }
    tracing::debug!("turning on net.ipv4.ip_forward");
    std::fs::write(IP_FORWARD, "1\n").map_err(|e| io_err("writing", e))
}

/// Deletes the bridge `name`; a missing one is fine. Its ports (containers' veths) are
/// released, not deleted: [`crate::detach`] them first. Fails with
/// [`NetError::WrongKind`] rather than delete a link that is not a bridge.
pub fn remove_bridge(name: &str) -> Result<(), NetError> {
    validate_ifname(name)?;
    let mut nl = Netlink::open()?;
    let Some(bridge) = link::get_link(&mut nl, name)? else {
        return Ok(());
    };
    bridge.expect_kind(name, InfoKind::Bridge, "a bridge")?;
    tracing::debug!(bridge = name, "deleting bridge");
    link::delete_link(&mut nl, bridge.index, name)
}

/// Whether a link called `name` exists in the caller's network namespace.
pub fn link_exists(name: &str) -> Result<bool, NetError> {
    validate_ifname(name)?;
    let mut nl = Netlink::open()?;
    Ok(link::get_link(&mut nl, name)?.is_some())
}

/// The names of the links in the caller's network namespace that start with `prefix`,
/// sorted: how the engine finds veths that a crashed berth left behind.
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>, NetError> {
    let mut nl = Netlink::open()?;
    let mut names: Vec<String> = link::link_names(&mut nl)?
        .into_iter()
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}
