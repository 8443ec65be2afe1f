//! The crate's error type.

use std::io;
use std::net::Ipv4Addr;

use crate::Ipv4Net;

/// Why a networking operation failed. Each variant names the interface, network or command
/// it is about; kernel and `nft` details come after it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A string that is not `a.b.c.d/n`.
    #[error("invalid IPv4 network {input:?}: {reason}")]
    InvalidNetwork {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A gateway or address that is not inside the network it is used with.
    #[error("{address} is not in {subnet}")]
    OutsideSubnet {
        /// The address.
        address: Ipv4Addr,
        /// The network it should be in.
        subnet: Ipv4Net,
    },
    /// An interface name the kernel would refuse (or that cannot go into an nft script).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A link that must be created exists already.
    #[error("link {0} already exists")]
    LinkExists(String),
    /// A link that must exist does not.
    #[error("link {0} not found")]
    LinkNotFound(String),
    /// A link exists under the name but is of another kind (say, a bridge name that belongs
    /// to a physical interface). berth never changes or deletes such a link.
    #[error("link {name} is {found}, not {expected}")]
    WrongKind {
        /// The link.
        name: String,
        /// The kind berth wanted (`bridge`, `veth`).
        expected: &'static str,
        /// The kind it has (`device` when it has none, as physical interfaces).
        found: String,
    },
    /// The kernel refused a netlink request.
    #[error("{op} {name}")]
    Netlink {
        /// What was being done (`creating bridge`).
        op: &'static str,
        /// The interface, address or route it was done to.
        name: String,
        /// The kernel's answer.
        #[source]
        source: KernelError,
    },
    /// The kernel answered with something this crate could not read.
    #[error("{op} {name}: unreadable netlink reply: {detail}")]
    Decode {
        /// What was being done.
        op: &'static str,
        /// The interface it was done to.
        name: String,
        /// What could not be read.
        detail: String,
    },
    /// A system call outside netlink failed (socket, setns, thread, sysctl).
    #[error("{op}")]
    Io {
        /// What was being done (`entering the container's network namespace`).
        op: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `nft` could not be started.
    #[error("running nft (from the nftables package)")]
    NftSpawn(#[source] io::Error),
    /// `nft` rejected berth's script; `stderr` holds its error lines.
    #[error("{op}: nft: {stderr}")]
    Nft {
        /// What was being done (`setting up NAT for bridge berth0`).
        op: String,
        /// nft's error output, on one line.
        stderr: String,
    },
}

/// An error answer from the kernel to a netlink request: the errno and, where the kernel
/// gave one (extended ACK, Linux 4.12+), its own message, which often says which attribute
/// it did not like.
#[derive(Debug)]
pub struct KernelError {
    /// The positive errno (`libc::EEXIST`, ...).
    pub errno: i32,
    /// The kernel's extended-ACK message, if it sent one.
    pub message: Option<String>,
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", io::Error::from_raw_os_error(self.errno))?;
        if let Some(message) = &self.message {
            write!(f, " ({message})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

impl NetError {
    /// The errno of a refused netlink request, for callers that branch on one (`EPERM`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetError::Netlink { source, .. } => Some(source.errno),
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
