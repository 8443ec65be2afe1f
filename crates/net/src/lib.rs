//! berth-net: container networking on Linux, the kernel side.
//!
//! What it owns: bridges in the host's network namespace ([`ensure_bridge`],
//! [`remove_bridge`]), a container's veth pair with its address, MAC and default route
//! ([`attach`], [`detach`]), and NAT and forwarding rules in an nftables table of berth's
//! own ([`ensure_nat`], [`remove_nat`]). [`Ipv4Net`] does the address arithmetic.
//!
//! What it does not own: which networks exist, which addresses are taken, and which
//! container is on which network (that is `berth-engine`'s state); it knows nothing of
//! containers beyond a namespace fd and an [`Endpoint`]. Like `berth-runtime`, it depends
//! on no berth crate.
//!
//! How it talks to the kernel: rtnetlink through a small synchronous client (`netlink.rs`,
//! messages from `netlink-packet-route`), and `nft -f -` for nftables (`nat.rs` says why not
//! the `nftables` crate). Work inside a container's namespace happens on a dedicated thread
//! that enters it (`netns.rs`), never on the caller's thread, and the netlink socket it uses
//! is created there, so it belongs to that namespace. There is no `unsafe` code.
//!
//! Everything here needs `CAP_NET_ADMIN` in the namespaces it touches (root, in practice).

#![warn(missing_docs)]

mod bridge;
mod dns;
mod endpoint;
mod error;
mod ipv4;
mod link;
mod nat;
mod netlink;
mod netns;

pub use bridge::{ensure_bridge, link_exists, links_with_prefix, remove_bridge};
pub use dns::{Answer, DNS_ADDRESS, DnsServer, Names, answer, resolv_conf_servers};
pub use endpoint::{Endpoint, attach, attach_replacing, detach, host_ifname, mac_for};
pub use error::{KernelError, NetError};
pub use ipv4::Ipv4Net;
pub use nat::{NFT_TABLE, ensure_nat, nat_chains, remove_nat};
