//! Links, addresses and routes: the rtnetlink requests berth makes, each on a [`Netlink`]
//! of the namespace it is about. Errors name the operation and the interface.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NlasIterator};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::netlink::{Failure, Netlink, errno};
use crate::{Ipv4Net, NetError};

/// The longest interface name Linux takes (`IFNAMSIZ` less the NUL).
pub(crate) const IFNAME_MAX: usize = 15;

/// What berth needs to know of an existing link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) index: u32,
    /// `None` for links without a kind (physical devices, `lo`).
    pub(crate) kind: Option<InfoKind>,
    pub(crate) up: bool,
    /// The index of the bridge it is a port of (`IFLA_MASTER`).
    pub(crate) controller: Option<u32>,
}

impl Link {
    /// The kind as `ip -d link` names it, `device` for none.
    pub(crate) fn kind_name(&self) -> String {
        self.kind
            .as_ref()
            .map_or_else(|| "device".to_owned(), ToString::to_string)
    }

    /// Fails unless the link is of `kind` (`name` is the link's, for the message).
    pub(crate) fn expect_kind(
        &self,
        name: &str,
        kind: InfoKind,
        expected: &'static str,
    ) -> Result<(), NetError> {
        if self.kind.as_ref() == Some(&kind) {
            Ok(())
        } else {
            Err(NetError::WrongKind {
                name: name.to_owned(),
                expected,
                found: self.kind_name(),
            })
        }
    }
}

/// Checks `name` as the kernel's `dev_valid_name` does, so a bad name fails here with the
/// reason rather than as a bare `EINVAL`.
pub(crate) fn validate_ifname(name: &str) -> Result<(), NetError> {
    let invalid = |reason| NetError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(invalid("longer than 15 bytes"));
    }
    if name == "." || name == ".." {
        return Err(invalid("reserved"));
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(invalid("contains '/', ':', a NUL or white space"));
    }
    Ok(())
}

/// The link called `name`, or `None`.
pub(crate) fn get_link(nl: &mut Netlink, name: &str) -> Result<Option<Link>, NetError> {
    let mut request = LinkMessage::default();
    request
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    match nl.get(RouteNetlinkMessage::GetLink(request)) {
        Ok(Some(RouteNetlinkMessage::NewLink(message))) => Ok(Some(link_of(&message))),
        Ok(Some(other)) => Err(NetError::Decode {
            op: "looking up link",
            name: name.to_owned(),
            detail: format!("unexpected answer {other:?}"),
        }),
        Ok(None) => Ok(None),
        Err(e) => Err(e.into_net("looking up link", name)),
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        kind: None,
        up: message.header.flags.contains(LinkFlags::Up),
        controller: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.clone()),
                    _ => None,
                });
            }
            LinkAttribute::Controller(index) => link.controller = Some(*index),
            _ => {}
        }
    }
    link
}

/// The names of all links of the namespace.
pub(crate) fn link_names(nl: &mut Netlink) -> Result<Vec<String>, NetError> {
    nl.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        |reply| match reply.message {
            Ok(RouteNetlinkMessage::NewLink(message)) => {
                Ok(message.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name),
                    _ => None,
                }))
            }
            Ok(_) => Ok(None),
            // A link whose attributes the packet crate cannot parse (a kind newer than it)
            // still has a name: read IFLA_IFNAME by hand rather than fail the whole list.
            Err(_) => Ok(raw_link_name(reply.payload)),
        },
    )
    .map_err(|e| e.into_net("listing links", "of the namespace"))
}

/// `IFLA_IFNAME` from a raw `RTM_NEWLINK` payload (a 16-byte `ifinfomsg`, then attributes).
fn raw_link_name(payload: &[u8]) -> Option<String> {
    const IFLA_IFNAME: u16 = 3;
    let attributes = payload.get(16..)?;
    NlasIterator::new(attributes)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == IFLA_IFNAME)
        .map(|nla| {
            let value = nla.value();
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            String::from_utf8_lossy(&value[..end]).into_owned()
        })
}

/// Creates bridge `name` with hardware address `mac`, up. Fails with `EEXIST` (as a
/// [`Failure`], so the caller decides) when the name is taken.
pub(crate) fn create_bridge(nl: &mut Netlink, name: &str, mac: [u8; 6]) -> Result<(), Failure> {
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![
        LinkAttribute::IfName(name.to_owned()),
        // A bridge without an address of its own takes the lowest of its ports' and changes
        // it as containers come and go, which breaks the gateway's ARP entries in every
        // container on it. An address set here stays (NET_ADDR_SET).
        LinkAttribute::Address(mac.to_vec()),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
    ];
    nl.request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// What a new veth pair looks like.
pub(crate) struct VethPair<'a> {
    pub(crate) host_ifname: &'a str,
    pub(crate) bridge_index: u32,
    pub(crate) peer_ifname: &'a str,
    pub(crate) peer_mac: [u8; 6],
    pub(crate) peer_netns: BorrowedFd<'a>,
}

/// Creates a veth pair in one request: the host end up and a port of the bridge, the peer
/// made directly in the container's namespace with its final name and MAC. Nothing of the
/// peer ever appears on the host, so there is no temporary name to clash or to leak.
pub(crate) fn create_veth(nl: &mut Netlink, pair: &VethPair<'_>) -> Result<(), Failure> {
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(pair.peer_ifname.to_owned()),
        LinkAttribute::Address(pair.peer_mac.to_vec()),
        // The kernel only reads the fd during this request; the caller's BorrowedFd keeps
        // it open until then.
        LinkAttribute::NetNsFd(pair.peer_netns.as_raw_fd()),
    ];
    let mut message = LinkMessage::default();
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes = vec![
        LinkAttribute::IfName(pair.host_ifname.to_owned()),
        LinkAttribute::Controller(pair.bridge_index),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ];
    nl.request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Brings link `index` (called `name`) up.
pub(crate) fn set_up(nl: &mut Netlink, index: u32, name: &str) -> Result<(), NetError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    nl.request(RouteNetlinkMessage::SetLink(message), 0)
        .map_err(|e| e.into_net("bringing up", name))
}

/// Deletes link `index` (called `name`); one that is already gone is fine.
pub(crate) fn delete_link(nl: &mut Netlink, index: u32, name: &str) -> Result<(), NetError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    match nl.request(RouteNetlinkMessage::DelLink(message), 0) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(errno::ENODEV) => Ok(()),
        Err(e) => Err(e.into_net("deleting link", name)),
    }
}

/// The IPv4 addresses (address, prefix length) of link `index`.
pub(crate) fn ipv4_addresses(
    nl: &mut Netlink,
    index: u32,
    name: &str,
) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    nl.dump(RouteNetlinkMessage::GetAddress(request), |reply| {
        let Ok(RouteNetlinkMessage::NewAddress(message)) = reply.message else {
            return Ok(None);
        };
        if message.header.index != index || message.header.family != AddressFamily::Inet {
            return Ok(None);
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
        // point-to-point links, the same otherwise).
        let local = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(a)) => Some(*a),
            _ => None,
        });
        let address = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(a)) => Some(*a),
            _ => None,
        });
        Ok(local.or(address).map(|a| (a, message.header.prefix_len)))
    })
    .map_err(|e| e.into_net("listing addresses of", name))
}

/// Adds `address/prefix` to link `index`, with the subnet's broadcast address as
/// `ip addr add ... brd +` would. Fails with `EEXIST` when it is there already.
pub(crate) fn add_ipv4_address(
    nl: &mut Netlink,
    index: u32,
    address: Ipv4Addr,
    prefix: u8,
) -> Result<(), Failure> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = prefix;
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    message.attributes = vec![
        AddressAttribute::Local(IpAddr::V4(address)),
        AddressAttribute::Address(IpAddr::V4(address)),
    ];
    // /31 and /32 have no broadcast address (RFC 3021).
    if prefix < 31 {
        let net = Ipv4Net {
            addr: address,
            prefix,
        };
        message
            .attributes
            .push(AddressAttribute::Broadcast(net.broadcast()));
    }
    nl.request(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Adds the default route via `gateway` out of link `index` (called `name`) to the main table.
pub(crate) fn add_default_route(
    nl: &mut Netlink,
    index: u32,
    name: &str,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    // `boot` is what `ip route add` records for a route an administrator (here: berth)
    // configured, as opposed to `kernel` routes from addresses.
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message.attributes = vec![
        RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
        RouteAttribute::Oif(index),
    ];
    nl.request(
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map_err(|e| {
        e.into_net(
            "adding the default route via",
            &format!("{gateway} dev {name}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for ok in ["eth0", "berth0", "br-0123456789ab", "veth1234567.0", "a"] {
            validate_ifname(ok).expect(ok);
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "tab\tname",
            "nul\0",
            "sixteen-chars-xx",
        ] {
            let err = validate_ifname(bad).expect_err(bad);
            assert!(err.to_string().starts_with("invalid interface name"));
        }
    }

    #[test]
    fn raw_name_fallback() {
        // ifinfomsg (16 bytes) then IFLA_MTU (4, u32) and IFLA_IFNAME (3, "br0\0").
        let mut payload = vec![0u8; 16];
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&4u16.to_ne_bytes());
        payload.extend_from_slice(&1500u32.to_ne_bytes());
        payload.extend_from_slice(&8u16.to_ne_bytes());
        payload.extend_from_slice(&3u16.to_ne_bytes());
        payload.extend_from_slice(b"br0\0");
        assert_eq!(raw_link_name(&payload).as_deref(), Some("br0"));
        assert_eq!(raw_link_name(&payload[..16]), None);
        assert_eq!(raw_link_name(&[]), None);
    }
}
