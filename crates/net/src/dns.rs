//! The embedded DNS server of containers on user-defined networks (Docker's 127.0.0.11).
//!
//! Each such container gets its own server: a UDP socket and a TCP listener on
//! `127.0.0.11:53` made inside the container's network namespace (so its `resolv.conf` can
//! name a fixed address, as Docker's does), served by a thread of the process that looks
//! after the container. That thread stays in the host's namespace: queries it cannot answer
//! are relayed, as raw packets, to the host's resolvers from there, so resolvers on the
//! host's loopback (systemd-resolved's 127.0.0.53) work too.
//!
//! What a name means is the caller's business ([`Names`]): this module knows the wire format
//! (hickory-proto's messages) and the sockets, nothing of containers. [`answer`] is the pure
//! part, a query's bytes in and a reply or "forward it" out.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::{NetError, netns};

/// Where the server listens inside the container (Docker's address).
pub const DNS_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Docker's TTL for container names.
const TTL: u32 = 600;
/// How long one upstream server gets to answer a relayed query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Relayed queries in flight at once; more are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 64;

/// The names a container can resolve: answered from the caller's state on every query, so
/// containers that start or stop later are seen at once.
pub trait Names: Send {
    /// The addresses `name` (lowercase ASCII, no trailing dot) has for the container.
    fn addresses(&mut self, name: &str) -> Vec<Ipv4Addr>;
    /// The name (without trailing dot) that `address` has for the container, for PTR.
    fn name_of(&mut self, address: Ipv4Addr) -> Option<String>;
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Relay the query to the upstream servers.
    Forward,
    /// Not a query worth a reply (too short to carry an ID, or itself a response).
    Drop,
}

/// Answers `query` from `names` when it asks for a container's name (A, AAAA, PTR), says to
/// forward it otherwise. With `forward` false (a container only on internal networks), what
/// would be forwarded gets SERVFAIL instead.
pub fn answer(query: &[u8], names: &mut dyn Names, forward: bool) -> Answer {
    let message = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => {
            return match query {
                [hi, lo, ..] => error_reply(u16::from_be_bytes([*hi, *lo]), ResponseCode::FormErr),
                _ => Answer::Drop,
            };
        }
    };
    if message.metadata.message_type != MessageType::Query {
        return Answer::Drop;
    }
    let not_ours = || {
        if forward {
            Answer::Forward
        } else {
            reply(&message, ResponseCode::ServFail, Vec::new())
        }
    };
    let [query] = message.queries.as_slice() else {
        return not_ours();
    };
    if message.metadata.op_code != OpCode::Query {
        return not_ours();
    }
    let qname = query.name();
    let lower = qname.to_lowercase().to_ascii();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    match query.query_type() {
        RecordType::A => {
            let addresses = names.addresses(lower);
            if addresses.is_empty() {
                return not_ours();
            }
            let records = addresses
                .into_iter()
                .map(|a| Record::from_rdata(qname.clone(), TTL, RData::A(A(a))))
                .collect();
            reply(&message, ResponseCode::NoError, records)
        }
        // A container has no IPv6 address: the name exists, with no record of this type.
        RecordType::AAAA if !names.addresses(lower).is_empty() => {
            reply(&message, ResponseCode::NoError, Vec::new())
        }
        RecordType::PTR => match reverse_ipv4(lower).and_then(|a| names.name_of(a)) {
            Some(name) => match Name::from_ascii(format!("{name}.")) {
                Ok(target) => {
                    let record = Record::from_rdata(qname.clone(), TTL, RData::PTR(PTR(target)));
                    reply(&message, ResponseCode::NoError, vec![record])
                }
                Err(_) => not_ours(),
            },
            None => not_ours(),
        },
        _ => not_ours(),
    }
}

/// A reply to `query` with its question, `code` and `answers`.
fn reply(query: &Message, code: ResponseCode, answers: Vec<Record>) -> Answer {
    let mut out = Message::response(query.metadata.id, query.metadata.op_code);
    out.metadata.recursion_desired = query.metadata.recursion_desired;
    out.metadata.recursion_available = true;
    out.metadata.authoritative = code == ResponseCode::NoError;
    out.metadata.response_code = code;
    out.queries = query.queries.clone();
    out.answers = answers;
    match out.to_vec() {
        Ok(bytes) => Answer::Reply(bytes),
        Err(_) => error_reply(query.metadata.id, ResponseCode::ServFail),
    }
}

fn error_reply(id: u16, code: ResponseCode) -> Answer {
    match Message::error_msg(id, OpCode::Query, code).to_vec() {
        Ok(bytes) => Answer::Reply(bytes),
        Err(_) => Answer::Drop,
    }
}

/// The address of `d.c.b.a.in-addr.arpa`.
fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let digits = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = digits.split('.');
    for slot in octets.iter_mut().rev() {
        *slot = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A running embedded DNS server; dropping it stops the server and closes its sockets
/// (which would otherwise keep the container's network namespace alive).
pub struct DnsServer {
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Listens on [`DNS_ADDRESS`]:53 (UDP and TCP) inside the network namespace `netns` and
    /// serves from `names`; what they do not know goes to `upstream`, tried in order (none:
    /// such queries get SERVFAIL).
    pub fn start(
        netns: BorrowedFd<'_>,
        names: Box<dyn Names>,
        upstream: Vec<SocketAddr>,
    ) -> Result<DnsServer, NetError> {
        let io_error = |op: &str| {
            let op = op.to_owned();
            move |source| NetError::Io { op, source }
        };
        let listen = SocketAddr::from((DNS_ADDRESS, 53));
        let (udp, tcp) = netns::run_in(netns, || {
            let udp = UdpSocket::bind(listen).map_err(io_error("binding the DNS server (UDP)"))?;
            let tcp =
                TcpListener::bind(listen).map_err(io_error("binding the DNS server (TCP)"))?;
            Ok((udp, tcp))
        })?;
        let (wake_read, wake_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| NetError::Io {
                op: "creating the DNS server's wake pipe".into(),
                source: e.into(),
            })?;
        let server = Server {
            udp: Arc::new(udp),
            tcp,
            upstream: Arc::new(upstream),
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let thread = std::thread::Builder::new()
            .name("berth-dns".into())
            .spawn(move || server.serve(names, wake_read))
            .map_err(io_error("starting the DNS server's thread"))?;
        Ok(DnsServer {
            wake: Some(wake_write),
            thread: Some(thread),
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        // Closing the pipe's write end wakes the server's poll.
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Server {
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
    upstream: Arc<Vec<SocketAddr>>,
    in_flight: Arc<AtomicUsize>,
}

impl Server {
    fn serve(self, mut names: Box<dyn Names>, wake: OwnedFd) {
        use rustix::event::{PollFd, PollFlags, poll};
        let forward = !self.upstream.is_empty();
        let mut buf = vec![0u8; 65535];
        loop {
            let mut fds = [
                PollFd::new(&wake, PollFlags::IN),
                PollFd::new(&*self.udp, PollFlags::IN),
                PollFd::new(&self.tcp, PollFlags::IN),
            ];
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::warn!("embedded DNS server stops: poll: {e}");
                    return;
                }
            }
            let [wake_ready, udp_ready, tcp_ready] = fds.map(|f| !f.revents().is_empty());
            if wake_ready {
                return;
            }
            if udp_ready && let Ok((len, client)) = self.udp.recv_from(&mut buf) {
                match answer(&buf[..len], names.as_mut(), forward) {
                    Answer::Reply(bytes) => {
                        let _ = self.udp.send_to(&bytes, client);
                    }
                    Answer::Forward => self.relay_udp(buf[..len].to_vec(), client),
                    Answer::Drop => {}
                }
            }
            if tcp_ready && let Ok((conn, _)) = self.tcp.accept() {
                // Answered on this thread, one connection at a time: TCP is the rare
                // fallback for truncated replies, and a slow client only delays others
                // by the read timeout.
                self.serve_tcp(conn, names.as_mut(), forward);
            }
        }
    }

    /// Relays a UDP query on a thread of its own, so a slow upstream holds up nobody.
    fn relay_udp(&self, query: Vec<u8>, client: SocketAddr) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let udp = self.udp.clone();
        let upstream = self.upstream.clone();
        let in_flight = self.in_flight.clone();
        let spawned = std::thread::Builder::new()
            .name("berth-dns-relay".into())
            .spawn(move || {
                if let Some(reply) = upstream.iter().find_map(|s| ask_udp(*s, &query).ok()) {
                    let _ = udp.send_to(&reply, client);
                }
                in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn serve_tcp(&self, mut conn: TcpStream, names: &mut dyn Names, forward: bool) {
        let _ = conn.set_read_timeout(Some(UPSTREAM_TIMEOUT));
        let _ = conn.set_write_timeout(Some(UPSTREAM_TIMEOUT));
        while let Ok(query) = read_tcp_message(&mut conn) {
            let reply = match answer(&query, names, forward) {
                Answer::Reply(bytes) => bytes,
                Answer::Forward => {
                    match self.upstream.iter().find_map(|s| ask_tcp(*s, &query).ok()) {
                        Some(bytes) => bytes,
                        None => return,
                    }
                }
                Answer::Drop => return,
            };
            if write_tcp_message(&mut conn, &reply).is_err() {
                return;
            }
        }
    }
}

fn ask_udp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    socket.send(query)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf)?;
        // Only the reply to this query (same ID) counts.
        if len >= 2 && buf[..2] == query[..2] {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

fn ask_tcp(server: SocketAddr, query: &[u8]) -> io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect_timeout(&server, UPSTREAM_TIMEOUT)?;
    conn.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    write_tcp_message(&mut conn, query)?;
    read_tcp_message(&mut conn)
}

/// One DNS message over TCP: a big-endian length, then the message.
fn read_tcp_message(conn: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    conn.read_exact(&mut len)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    conn.read_exact(&mut message)?;
    Ok(message)
}

fn write_tcp_message(conn: &mut impl Write, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DNS message over 64 KiB"))?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    conn.write_all(&framed)
}

/// The nameservers of a `resolv.conf` text, on port 53.
pub fn resolv_conf_servers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    struct Fake;
    impl Names for Fake {
        fn addresses(&mut self, name: &str) -> Vec<Ipv4Addr> {
            match name {
                "web" | "web.net1" => vec![Ipv4Addr::new(10, 0, 0, 2)],
                "db" => vec![Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 4)],
                _ => Vec::new(),
            }
        }
        fn name_of(&mut self, address: Ipv4Addr) -> Option<String> {
            (address == Ipv4Addr::new(10, 0, 0, 2)).then(|| "web.net1".to_string())
        }
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    fn reply_of(a: Answer) -> Message {
        match a {
            Answer::Reply(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn container_names_get_a_records() {
        let r = reply_of(answer(&query("WEB.", RecordType::A), &mut Fake, true));
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.queries.len(), 1);
        let ips: Vec<_> = r
            .answers
            .iter()
            .map(|rec| match rec.data {
                RData::A(A(ip)) => ip,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ips, [Ipv4Addr::new(10, 0, 0, 2)]);
        let r = reply_of(answer(&query("db", RecordType::A), &mut Fake, true));
        assert_eq!(r.answers.len(), 2);
    }

    #[test]
    fn known_names_have_no_ipv6_and_others_are_forwarded() {
        let r = reply_of(answer(&query("web", RecordType::AAAA), &mut Fake, true));
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.answers.is_empty());
        assert_eq!(
            answer(&query("example.org", RecordType::A), &mut Fake, true),
            Answer::Forward
        );
        assert_eq!(
            answer(&query("web", RecordType::MX), &mut Fake, true),
            Answer::Forward
        );
        let r = reply_of(answer(
            &query("example.org", RecordType::A),
            &mut Fake,
            false,
        ));
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn reverse_lookups() {
        let r = reply_of(answer(
            &query("2.0.0.10.in-addr.arpa.", RecordType::PTR),
            &mut Fake,
            true,
        ));
        match &r.answers[0].data {
            RData::PTR(PTR(name)) => assert_eq!(name.to_ascii(), "web.net1."),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            answer(
                &query("9.0.0.10.in-addr.arpa.", RecordType::PTR),
                &mut Fake,
                true
            ),
            Answer::Forward
        );
        assert_eq!(
            reverse_ipv4("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(reverse_ipv4("3.2.1.in-addr.arpa"), None);
        assert_eq!(reverse_ipv4("5.4.3.2.1.in-addr.arpa"), None);
    }

    #[test]
    fn garbage_gets_formerr_or_nothing() {
        let r = reply_of(answer(&[0xab, 0xcd, 0xff], &mut Fake, true));
        assert_eq!(r.metadata.id, 0xabcd);
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(answer(&[1], &mut Fake, true), Answer::Drop);
        assert_eq!(answer(&[], &mut Fake, true), Answer::Drop);
    }

    #[test]
    fn nameservers_from_resolv_conf() {
        let servers = resolv_conf_servers(
            "# x\nsearch a\nnameserver 10.0.0.1\nnameserver ::1\nnameserver bogus\noptions ndots:1\n",
        );
        assert_eq!(
            servers,
            [
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
    }
}
