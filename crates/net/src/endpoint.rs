//! A container's interface on a bridge: a veth pair from the bridge into its namespace.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;

use netlink_packet_route::link::InfoKind;
use serde::{Deserialize, Serialize};

use crate::link::{self, VethPair, validate_ifname};
use crate::netlink::{Netlink, errno};
use crate::{Ipv4Net, NetError, netns};

/// A container's interface on a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The bridge the host end is a port of.
    pub bridge: String,
    /// The host end's name, at most 15 bytes (see [`host_ifname`]).
    pub host_ifname: String,
    /// The container end's name inside its namespace (`eth0`).
    pub container_ifname: String,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The prefix length of the network (16 for a /16).
    pub prefix: u8,
    /// The network's gateway: the bridge's address.
    pub gateway: Ipv4Addr,
    /// Route the container's default traffic through `gateway` (its first network does;
    /// the others only reach their own subnet, as Docker's).
    pub default_route: bool,
    /// The container end's MAC ([`mac_for`] the address, as Docker).
    pub mac: [u8; 6],
}

/// Docker's MAC for an address: `02:42` (locally administered, unicast) followed by the four
/// bytes of the IPv4 address, so a MAC never clashes within a network and survives restarts.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

/// A host-side veth name for a container's `index`th network: `veth`, seven hex digits of
/// the container ID and the index (`veth0123abc0`), within Linux's 15 bytes for any index
/// below 10^4. `links_with_prefix("veth0123abc")` finds them again.
pub fn host_ifname(container_id: &str, index: u32) -> String {
    let short: String = container_id.chars().take(7).collect();
    format!("veth{short}{index}")
}

/// Makes a veth pair, attaches the host end to the bridge and brings it up, puts the other
/// end into the network namespace `netns` (an fd of `/proc/<pid>/ns/net` or of a bind mount
/// of one), and inside it: names it `container_ifname`, sets the MAC, the address and prefix,
/// brings it and `lo` up, and adds the default route via `gateway`.
///
/// The peer is created directly in the namespace with its name and MAC (one request), so it
/// never appears on the host. The work inside the namespace runs on a dedicated thread that
/// enters it first, never on the caller's thread. On failure nothing is left: the pair is
/// deleted (its peer goes with it). Fails with [`NetError::LinkExists`] when `host_ifname`
/// is taken and [`NetError::LinkNotFound`] when the bridge is missing.
pub fn attach(netns: BorrowedFd<'_>, ep: &Endpoint) -> Result<(), NetError> {
    validate_ifname(&ep.bridge)?;
    validate_ifname(&ep.host_ifname)?;
    validate_ifname(&ep.container_ifname)?;
    let subnet = Ipv4Net::new(ep.address, ep.prefix)?;
    if !subnet.contains(ep.gateway) {
        return Err(NetError::OutsideSubnet {
            address: ep.gateway,
            subnet,
        });
    }
    let _span = tracing::debug_span!(
        "attach",
        bridge = %ep.bridge,
        host = %ep.host_ifname,
        address = %ep.address,
    )
    .entered();

    let mut nl = Netlink::open()?;
    let bridge = link::get_link(&mut nl, &ep.bridge)?
        .ok_or_else(|| NetError::LinkNotFound(ep.bridge.clone()))?;
    bridge.expect_kind(&ep.bridge, InfoKind::Bridge, "a bridge")?;

    tracing::debug!("creating veth pair");
    let pair = VethPair {
        host_ifname: &ep.host_ifname,
        bridge_index: bridge.index,
        peer_ifname: &ep.container_ifname,
        peer_mac: ep.mac,
        peer_netns: netns,
    };
    if let Err(e) = link::create_veth(&mut nl, &pair) {
        if e.errno() == Some(errno::EEXIST) {
            // Either end's name can be the one taken; say which.
            if link::get_link(&mut nl, &ep.host_ifname)?.is_some() {
                return Err(NetError::LinkExists(ep.host_ifname.clone()));
            }
            return Err(NetError::LinkExists(format!(
                "{} in the container's network namespace",
                ep.container_ifname
            )));
        }
        return Err(e.into_net(
            "creating veth pair",
            &format!("{} (peer {})", ep.host_ifname, ep.container_ifname),
        ));
    }

    let inside = netns::run_in(netns, || configure_inside(ep));
    if let Err(e) = inside {
        // Deleting the host end takes the peer with it, wherever it is.
        let cleanup = match link::get_link(&mut nl, &ep.host_ifname) {
            Ok(Some(host)) => link::delete_link(&mut nl, host.index, &ep.host_ifname),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(cleanup) = cleanup {
            tracing::warn!(host = %ep.host_ifname, error = %cleanup, "could not delete the veth pair of a failed attach");
        }
        return Err(e);
    }
    Ok(())
}

/// [`attach`] for an interface that is not attached now (a container starting, or a new
/// interface of a running one): a veth already under the host name is left from an earlier
/// run of the container, which the kernel deletes with that run's network namespace but had
/// not yet (the engine leaves exited containers' pairs to it); it is deleted first.
pub fn attach_replacing(netns: BorrowedFd<'_>, ep: &Endpoint) -> Result<(), NetError> {
    detach(&ep.host_ifname)?;
    attach(netns, ep)
}

/// The container side of [`attach`], on a thread inside the container's namespace.
fn configure_inside(ep: &Endpoint) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    let lo = link::get_link(&mut nl, "lo")?.ok_or_else(|| NetError::LinkNotFound("lo".into()))?;
    if !lo.up {
        link::set_up(&mut nl, lo.index, "lo")?;
    }
    let name = &ep.container_ifname;
    let eth = link::get_link(&mut nl, name)?.ok_or_else(|| NetError::LinkNotFound(name.clone()))?;
    link::add_ipv4_address(&mut nl, eth.index, ep.address, ep.prefix).map_err(|e| {
        e.into_net(
            "adding address to",
            &format!("{name} ({}/{})", ep.address, ep.prefix),
        )
    })?;
    // Up before the route: the kernel refuses a gateway on a link that is down.
    link::set_up(&mut nl, eth.index, name)?;
    if ep.default_route {
        link::add_default_route(&mut nl, eth.index, name, ep.gateway)?;
    }
    Ok(())
}

/// Deletes the host end `host_ifname` of a container's veth pair (its peer goes with it); a
/// missing one is fine (the kernel deletes the pair itself when the container's namespace
/// goes away). Fails with [`NetError::WrongKind`] rather than delete a link that is not a
/// veth.
pub fn detach(host_ifname: &str) -> Result<(), NetError> {
    validate_ifname(host_ifname)?;
    let mut nl = Netlink::open()?;
    let Some(host) = link::get_link(&mut nl, host_ifname)? else {
        return Ok(());
    };
    host.expect_kind(host_ifname, InfoKind::Veth, "a veth")?;
    tracing::debug!(host = host_ifname, "deleting veth pair");
    link::delete_link(&mut nl, host.index, host_ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_mac() {
        assert_eq!(
            mac_for(Ipv4Addr::new(172, 17, 0, 2)),
            [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]
        );
    }

    #[test]
    fn host_names_fit() {
        let id = "0123abcdef0123abcdef0123abcdef0123abcdef0123abcdef0123abcdef0123";
        assert_eq!(host_ifname(id, 0), "veth0123abc0");
        assert_eq!(host_ifname(id, 9999), "veth0123abc9999");
        assert!(validate_ifname(&host_ifname(id, 9999)).is_ok());
    }
}
