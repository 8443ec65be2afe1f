//! A small synchronous rtnetlink client: one request at a time, read until its ACK, error
//! or end of dump.
//!
//! A netlink socket talks to the network namespace it was *created* in, whatever thread
//! uses it later; so code that works inside a container's namespace opens its [`Netlink`]
//! on the thread that has entered it (see `netns.rs`).
//!
//! Messages are built and parsed with `netlink-packet-route`; the socket is `netlink-sys`'s
//! (close-on-exec). rtnetlink's own crate is async (tokio), which berth's callers are not.

use std::io;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::error::{KernelError, NetError};

/// Why a request failed, before the caller names the operation and interface.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The kernel answered with an error.
    Kernel(KernelError),
    /// The socket failed.
    Io(io::Error),
    /// A reply could not be parsed.
    Decode(String),
}

impl Failure {
    /// The kernel's errno, if the kernel refused.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            Failure::Kernel(e) => Some(e.errno),
            _ => None,
        }
    }

    /// The error callers see: `op` (`creating bridge`) and `name` (`berth0`) say what failed.
    pub(crate) fn into_net(self, op: &'static str, name: &str) -> NetError {
        match self {
            Failure::Kernel(source) => NetError::Netlink {
                op,
                name: name.to_owned(),
                source,
            },
            Failure::Io(source) => NetError::Io {
                op: format!("{op} {name}: netlink socket"),
                source,
            },
            Failure::Decode(detail) => NetError::Decode {
                op,
                name: name.to_owned(),
                detail,
            },
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// One message of a reply, as `dump` hands it over.
pub(crate) struct Reply<'a> {
    /// The parsed message, or why `netlink-packet-route` could not parse it (a kernel newer
    /// than the crate can add attributes it chokes on).
    pub(crate) message: Result<RouteNetlinkMessage, DecodeError>,
    /// The raw payload (after the netlink header), for a fallback parse.
    pub(crate) payload: &'a [u8],
}

/// A NETLINK_ROUTE socket in the namespace of the thread that opened it.
pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
}

/// How many times a dump that the kernel flags as interrupted (the table changed while it
/// was read, `NLM_F_DUMP_INTR`) is started again before its result is used anyway.
const DUMP_RETRIES: usize = 5;

/// The extended-ACK attribute that carries the kernel's message (`NLMSGERR_ATTR_MSG`).
const NLMSGERR_ATTR_MSG: u16 = 1;

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Netlink, NetError> {
        let io_err = |source| NetError::Io {
            op: "opening a netlink socket".to_owned(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io_err)?;
        socket.bind_auto().map_err(io_err)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io_err)?;
        // Extended ACKs carry the kernel's reason in words; capped ACKs leave out the echo of
        // our request. Kernels before 4.12 refuse both, and then only the errno comes back.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends `message` with `NLM_F_REQUEST | NLM_F_ACK | flags` and waits for the ACK.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), Failure> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        self.receive(seq, |_| Ok(()))?;
        Ok(())
    }

    /// Sends a get request for one object and returns the answer, or `None` when the kernel
    /// says there is no such object (`ENODEV`, `ENOENT`).
    pub(crate) fn get(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Option<RouteNetlinkMessage>, Failure> {
        let seq = self.send(message, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut answer = None;
        let result = self.receive(seq, |reply| {
            let message = reply.message.map_err(|e| Failure::Decode(e.to_string()))?;
            answer.get_or_insert(message);
            Ok(())
        });
        match result {
            Ok(_) => Ok(answer),
            Err(e) if matches!(e.errno(), Some(errno::ENODEV | errno::ENOENT)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Dumps a table (links, addresses, routes), handing each message to `each`. An
    /// interrupted dump (the table changed meanwhile) is read again from the start.
    pub(crate) fn dump<T>(
        &mut self,
        message: RouteNetlinkMessage,
        mut each: impl FnMut(Reply<'_>) -> Result<Option<T>, Failure>,
    ) -> Result<Vec<T>, Failure> {
        let mut attempt = 0;
        loop {
            let mut out = Vec::new();
            let seq = self.send(message.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            let interrupted = self.receive(seq, |reply| {
                if let Some(item) = each(reply)? {
                    out.push(item);
                }
                Ok(())
            })?;
            attempt += 1;
            if !interrupted || attempt > DUMP_RETRIES {
                return Ok(out);
            }
            tracing::debug!(attempt, "netlink dump interrupted, reading it again");
        }
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, Failure> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        loop {
            match self.socket.send(&buf, 0) {
                Ok(_) => return Ok(self.seq),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }

    /// Reads the replies to request `seq` until its ACK, error or end of dump, handing each
    /// data message to `each`. Returns whether any message was flagged `NLM_F_DUMP_INTR`.
    fn receive(
        &mut self,
        seq: u32,
        mut each: impl FnMut(Reply<'_>) -> Result<(), Failure>,
    ) -> Result<bool, Failure> {
        let mut interrupted = false;
        loop {
            let buf = loop {
                match self.socket.recv_from_full() {
                    Ok((buf, _)) => break buf,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Failure::Io(e)),
                }
            };
            // One datagram may carry several messages, each padded to 4 bytes.
            let mut offset = 0;
            while offset < buf.len() {
                let bytes = &buf[offset..];
                let frame = NetlinkBuffer::new_checked(bytes)
                    .map_err(|e| Failure::Decode(format!("netlink header: {e}")))?;
                let len = frame.length() as usize;
                offset += len.next_multiple_of(4).max(4);
                if frame.sequence_number() != seq {
                    // An answer to an earlier request that was abandoned half-read.
                    continue;
                }
                let flags = frame.flags();
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                let bytes = &bytes[..len];
                let payload = NetlinkBuffer::new(bytes).payload();
                match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                    Ok(message) => match message.payload {
                        NetlinkPayload::Error(error) => match error.code {
                            None => return Ok(interrupted),
                            Some(code) => {
                                return Err(Failure::Kernel(KernelError {
                                    errno: code.get().saturating_abs(),
                                    message: ext_ack_message(flags, &error.header),
                                }));
                            }
                        },
                        NetlinkPayload::Done(_) => return Ok(interrupted),
                        NetlinkPayload::InnerMessage(m) => each(Reply {
                            message: Ok(m),
                            payload,
                        })?,
                        // Noop, Overrun and future kinds carry nothing for us.
                        _ => {}
                    },
                    Err(e) => each(Reply {
                        message: Err(e),
                        payload,
                    })?,
                }
            }
        }
    }
}

/// The kernel's extended-ACK message from an error's payload (after the errno): the echoed
/// request (its header only when `NLM_F_CAPPED`) followed by attributes.
fn ext_ack_message(flags: u16, after_code: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        let len = after_code.get(..4)?;
        u32::from_ne_bytes(len.try_into().ok()?) as usize
    };
    let attributes = after_code.get(echoed.next_multiple_of(4)..)?;
    NlasIterator::new(attributes)
        .filter_map(Result::ok)
        .find(|nla| nla.kind() == NLMSGERR_ATTR_MSG)
        .map(|nla| {
            let value = nla.value();
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            String::from_utf8_lossy(&value[..end]).into_owned()
        })
        .filter(|m| !m.is_empty())
}

/// The errnos this crate branches on, positive as in [`KernelError`].
pub(crate) mod errno {
    use rustix::io::Errno;

    pub(crate) const ENOENT: i32 = Errno::NOENT.raw_os_error();
    pub(crate) const EEXIST: i32 = Errno::EXIST.raw_os_error();
    pub(crate) const ENODEV: i32 = Errno::NODEV.raw_os_error();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_message_capped() {
        // errno payload after the code: 16-byte echoed header, then NLMSGERR_ATTR_MSG.
        let mut payload = vec![0u8; 16];
        let text = b"Nexthop has invalid gateway\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.resize(payload.len().next_multiple_of(4), 0);
        assert_eq!(
            ext_ack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload).as_deref(),
            Some("Nexthop has invalid gateway")
        );
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &payload), None);
        assert_eq!(ext_ack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &[]), None);
    }
}
