//! Published ports: `-p`/`--expose` parsed with Docker's rules, and the proxy that carries a
//! host port's traffic to the container.
//!
//! The proxy runs in whichever process looks after the container (its monitor, or a
//! foreground `run`): a listening socket per published port, bound before the container
//! starts (so a port in use fails the start with Docker's message) and kept across restarts;
//! each TCP connection is relayed to the container's address by two threads (`splice` through
//! a pipe each way), each UDP client gets its own upstream socket. A listener on `0.0.0.0` answers on the host's
//! loopback and on its other addresses alike, which NAT rules alone would not do for
//! loopback (Docker runs `docker-proxy` for the same reason).

use std::{
    collections::BTreeMap,
    io,
    net::{
        IpAddr, Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket,
    },
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use crate::{EngineError, PortBinding};

/// One `-p` mapping: the container's port (`80/tcp`) and the host side.
pub type PortMap = BTreeMap<String, Vec<PortBinding>>;

fn parse_port_range(s: &str, spec: &str) -> Result<(u16, u16), String> {
    let invalid = || format!("invalid port specification: \"{spec}\"");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| invalid())?;
    let b: u16 = b.parse().map_err(|_| invalid())?;
    if b < a {
        return Err(invalid());
    }
    Ok((a, b))
}

/// Parses `-p [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` (ports or equal-length ranges; an
/// empty host port means any free one) into `ports`.
pub fn parse_publish(spec: &str, ports: &mut PortMap) -> Result<(), String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, proto)) => (rest, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // An IPv6 address is written in brackets: [::1]:8080:80.
    let (ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, rest) = after
            .split_once("]:")
            .ok_or_else(|| format!("invalid port specification: \"{spec}\""))?;
        (ip.to_string(), rest.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [_] | [_, _] => (String::new(), rest.to_string()),
            [ip, host, container] => (ip.to_string(), format!("{host}:{container}")),
            _ => return Err(format!("invalid port specification: \"{spec}\"")),
        }
    };
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    let (c_start, c_end) = parse_port_range(container, spec)?;
    if c_start == 0 {
        return Err(format!("invalid port specification: \"{spec}\""));
    }
    let host_range = if host.is_empty() {
        None
    } else {
        Some(parse_port_range(host, spec)?)
    };
    let count = c_end - c_start;
    if let Some((h_start, h_end)) = host_range
        && h_end - h_start != count
        && h_start != h_end
    {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        ));
    }
    for i in 0..=count {
        let host_port = match host_range {
            // One host port for a range of container ports is Docker's "any of these".
            Some((h_start, h_end)) if h_start == h_end && count > 0 => {
                return Err(format!(
                    "invalid ranges specified for container and host Ports: {container} and {host}"
                ));
            }
            Some((h_start, _)) => (h_start + i).to_string(),
            None => String::new(),
        };
        ports
            .entry(format!("{}/{proto}", c_start + i))
            .or_default()
            .push(PortBinding {
                host_ip: ip.clone(),
                host_port,
            });
    }
    Ok(())
}

/// Parses `--expose PORT[-PORT][/PROTO]` into `80/tcp` keys.
/// (Also `EXPOSE`'s words, and `--change`'s.)
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let (a, b) = parse_port_range(ports, spec)?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// Where the proxy sends traffic: the container's address while it runs.
pub type Target = Arc<Mutex<Option<Ipv4Addr>>>;

enum Listener {
    Tcp(TcpListener, u16),
    Udp(UdpSocket, u16),
}

/// The host side of a container's published ports.
pub struct PortProxy {
    listeners: Vec<Listener>,
    /// The bindings with the host ports the kernel chose for empty ones.
    pub bound: PortMap,
    target: Target,
}

impl PortProxy {
    /// Binds every host port of `ports` (an empty host port gets a free one, an empty host
    /// address means all addresses). Fails with Docker's message when a port is taken.
    pub fn bind(ports: &PortMap) -> Result<PortProxy, EngineError> {
        let mut listeners = Vec::new();
        let mut bound = PortMap::new();
        for (key, bindings) in ports {
            let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
            let container_port: u16 = port
                .parse()
                .map_err(|_| EngineError::Invalid(format!("invalid port {key}")))?;
            for b in bindings {
                let ip: IpAddr = if b.host_ip.is_empty() {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                } else {
                    b.host_ip
                        .parse()
                        .map_err(|_| EngineError::Invalid(format!("invalid IP {}", b.host_ip)))?
                };
                let host_port: u16 = if b.host_port.is_empty() {
                    0
                } else {
                    b.host_port.parse().map_err(|_| {
                        EngineError::Invalid(format!("invalid host port {}", b.host_port))
                    })?
                };
                let addr = SocketAddr::new(ip, host_port);
                let taken = |e: io::Error| {
                    EngineError::Invalid(format!(
                        "driver failed programming external connectivity: Bind for {addr} failed: port is already allocated ({e})"
                    ))
                };
                let (listener, local) = match proto {
                    "udp" => {
                        let s = UdpSocket::bind(addr).map_err(taken)?;
                        let local = s.local_addr().map_err(taken)?;
                        (Listener::Udp(s, container_port), local)
                    }
                    _ => {
                        let s = TcpListener::bind(addr).map_err(taken)?;
                        let local = s.local_addr().map_err(taken)?;
                        (Listener::Tcp(s, container_port), local)
                    }
                };
                listeners.push(listener);
                bound.entry(key.clone()).or_default().push(PortBinding {
                    host_ip: ip.to_string(),
                    host_port: local.port().to_string(),
                });
            }
        }
        Ok(PortProxy {
            listeners,
            bound,
            target: Arc::new(Mutex::new(None)),
        })
    }

    /// Where traffic goes: set to the container's address once it runs, `None` between runs
    /// (connections are refused then).
    pub fn target(&self) -> Target {
        self.target.clone()
    }

    /// Serves every listener on its own thread, for as long as this process lives.
    pub fn serve(self) {
        for listener in self.listeners {
            let target = self.target.clone();
            match listener {
                Listener::Tcp(l, port) => {
                    thread::spawn(move || serve_tcp(l, port, &target));
                }
                Listener::Udp(s, port) => {
                    thread::spawn(move || serve_udp(s, port, &target));
                }
            }
        }
    }
}

fn serve_tcp(listener: TcpListener, port: u16, target: &Target) {
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Some(ip) = *target.lock().expect("lock") else {
            continue; // dropped: the container does not run
        };
        thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect_timeout(
                &SocketAddr::V4(SocketAddrV4::new(ip, port)),
                Duration::from_secs(10),
            ) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            relay(client, upstream);
        });
    }
}

/// Copies both ways until each side has closed its half.
fn relay(client: TcpStream, upstream: TcpStream) {
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || pipe_half(u2, c2));
    pipe_half(client, upstream);
    let _ = back.join();
}

/// Copies `from` to `to` until `from` ends, then closes `to` for writing; an error ends it
/// quietly. The bytes go through a pipe with `splice(2)`, never through user space (as
/// docker-proxy does); a kernel that cannot splice these gets the read/write loop.
fn pipe_half(from: TcpStream, to: TcpStream) {
    if splice_half(&from, &to).is_err() {
        copy_half(&from, &to);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Pipe capacity asked for: fewer, larger splices. The kernel may refuse (pipe-max-size,
/// the per-user pipe quota); the default 64 KiB still works.
const PIPE_SIZE: usize = 1 << 20;

/// Splices `from` into a pipe and the pipe into `to` until `from` ends or fails. `Err` only
/// when splicing is unsupported, before anything was taken from `from`.
fn splice_half(from: &TcpStream, to: &TcpStream) -> Result<(), ()> {
    use rustix::{
        io::Errno,
        pipe::{SpliceFlags, fcntl_setpipe_size, pipe_with, splice},
    };
    let Ok((pr, pw)) = pipe_with(rustix::pipe::PipeFlags::CLOEXEC) else {
        return Err(());
    };
    let _ = fcntl_setpipe_size(&pw, PIPE_SIZE);
    let mut first = true;
    loop {
        // The pipe is empty here (drained below), so this blocks only on the socket.
        let n = match splice(from, None, &pw, None, PIPE_SIZE, SpliceFlags::MOVE) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(Errno::INVAL | Errno::NOSYS) if first => return Err(()),
            Err(_) => return Ok(()),
        };
        first = false;
        let mut left = n;
        while left > 0 {
            match splice(&pr, None, to, None, left, SpliceFlags::MOVE) {
                Ok(0) => return Ok(()),
                Ok(m) => left -= m,
                Err(Errno::INTR) => {}
                Err(_) => return Ok(()),
            }
        }
    }
}

/// The plain relay: 256 KiB reads (`io::copy` between sockets uses 8 KiB).
fn copy_half(mut from: &TcpStream, mut to: &TcpStream) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

fn serve_udp(socket: UdpSocket, port: u16, target: &Target) {
    let socket = Arc::new(socket);
    let mut upstreams: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Some(ip) = *target.lock().expect("lock") else {
            continue;
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
                    continue;
                };
                if u.connect(SocketAddrV4::new(ip, port)).is_err() {
                    continue;
                }
                let u = Arc::new(u);
                let (replies, to) = (u.clone(), socket.clone());
                thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    // A client quiet for a minute has gone; its socket is dropped.
                    let _ = replies.set_read_timeout(Some(Duration::from_secs(60)));
                    while let Ok(n) = replies.recv(&mut buf) {
                        let _ = to.send_to(&buf[..n], client);
                    }
                });
                upstreams.insert(client, u.clone());
                u
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse_like_docker() {
        let mut p = PortMap::new();
        parse_publish("8080:80", &mut p).unwrap();
        parse_publish("127.0.0.1:5353:53/udp", &mut p).unwrap();
        parse_publish("9000-9001:90-91", &mut p).unwrap();
        parse_publish("443", &mut p).unwrap();
        parse_publish("127.0.0.1::22", &mut p).unwrap();
        parse_publish("[::1]:6000:60", &mut p).unwrap();
        assert_eq!(p["80/tcp"][0].host_port, "8080");
        assert_eq!(p["80/tcp"][0].host_ip, "");
        assert_eq!(p["53/udp"][0].host_ip, "127.0.0.1");
        assert_eq!(p["91/tcp"][0].host_port, "9001");
        assert_eq!(p["443/tcp"][0].host_port, "");
        assert_eq!(p["22/tcp"][0].host_port, "");
        assert_eq!(p["60/tcp"][0].host_ip, "::1");
        for bad in [
            "",
            "abc",
            "80/xyz",
            "1:2:3:4",
            "9000-9002:90-91",
            "nope:80:80",
            "0",
        ] {
            assert!(parse_publish(bad, &mut PortMap::new()).is_err(), "{bad}");
        }
        assert_eq!(
            parse_expose("7000-7001/udp").unwrap(),
            ["7000/udp", "7001/udp"]
        );
    }

    /// Relays a few MiB each way at once through `half` (one per direction, as `relay`),
    /// the client's half-close included, and checks every byte.
    fn relays_bulk_both_ways(half: fn(TcpStream, TcpStream)) {
        use std::io::{Read, Write};
        let pair = || {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            (a, l.accept().unwrap().0)
        };
        let (mut client, proxy_in) = pair();
        let (proxy_out, mut server) = pair();
        let (i2, o2) = (
            proxy_in.try_clone().unwrap(),
            proxy_out.try_clone().unwrap(),
        );
        let up = thread::spawn(move || half(proxy_in, proxy_out));
        let down = thread::spawn(move || half(o2, i2));
        let data = |len: usize, seed: u32| -> Vec<u8> {
            (0..len as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13 ^ seed) as u8)
                .collect()
        };
        let (sent_up, sent_down) = (data(5 << 20, 1), data(3 << 20, 7));
        // The server sends while it receives, then answers the client's EOF with a trailer.
        let expect_up = sent_up.clone();
        let mut reply = sent_down.clone();
        let srv = thread::spawn(move || {
            let mut w = server.try_clone().unwrap();
            let writer = thread::spawn(move || w.write_all(&reply).map(|_| w));
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            assert!(got == expect_up, "upload corrupted ({} bytes)", got.len());
            let mut w = writer.join().unwrap().unwrap();
            reply = b"after EOF".to_vec();
            w.write_all(&reply).unwrap();
        });
        let mut w = client.try_clone().unwrap();
        let uploader = thread::spawn(move || {
            w.write_all(&sent_up).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        uploader.join().unwrap();
        srv.join().unwrap();
        up.join().unwrap();
        down.join().unwrap();
        let mut want = sent_down;
        want.extend_from_slice(b"after EOF");
        assert!(got == want, "download corrupted ({} bytes)", got.len());
    }

    #[test]
    fn the_relay_carries_megabytes_both_ways_with_a_half_close() {
        relays_bulk_both_ways(pipe_half);
        // The read/write fallback, for kernels that cannot splice sockets.
        relays_bulk_both_ways(|from, to| {
            copy_half(&from, &to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }

    #[test]
    fn the_proxy_relays_tcp_to_its_target_and_refuses_without_one() {
        use std::io::{Read, Write};
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = upstream.local_addr().unwrap().port();
        let mut ports = PortMap::new();
        ports.insert(
            format!("{port}/tcp"),
            vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: String::new(),
            }],
        );
        let proxy = PortProxy::bind(&ports).unwrap();
        let host_port: u16 = proxy.bound[&format!("{port}/tcp")][0]
            .host_port
            .parse()
            .unwrap();
        assert_ne!(host_port, 0);
        let target = proxy.target();
        proxy.serve();
        // No target yet: the connection is closed without data.
        let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
        let mut buf = Vec::new();
        assert_eq!(c.read_to_end(&mut buf).unwrap_or(0), 0);
        *target.lock().unwrap() = Some(Ipv4Addr::LOCALHOST);
        let echo = thread::spawn(move || {
            let (mut s, _) = upstream.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(&got).unwrap();
        });
        let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
        c.write_all(b"ping").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ping");
        echo.join().unwrap();
        // A taken port fails with Docker's words.
        let mut again = PortMap::new();
        again.insert(
            "1/tcp".into(),
            vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: host_port.to_string(),
            }],
        );
        let err = PortProxy::bind(&again).err().unwrap().to_string();
        assert!(err.contains("port is already allocated"), "{err}");
    }
}
