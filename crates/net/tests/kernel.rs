//! berth-net against the real kernel (needs root): bridges, a veth pair into a fresh network
//! namespace checked from inside with iproute2's `ip` and a TCP connection, and the nftables
//! rules. Every name starts with `bnt<pid><test letter>`, every subnet is a /24 of
//! 10.213.0.0/16, and a guard removes what a test made even when it fails.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_net::{
    Endpoint, Ipv4Net, NetError, attach, detach, ensure_bridge, ensure_nat, link_exists,
    links_with_prefix, mac_for, nat_chains, remove_bridge, remove_nat,
};
use nix::sched::{CloneFlags, setns, unshare};
use serde_json::Value;

/// The prefix of every link test `letter` makes.
fn prefix(letter: char) -> String {
    format!("bnt{}{letter}", std::process::id())
}

/// A /24 of 10.213.0.0/16 for test `slot` (0-7), different for concurrent runs of the suite.
fn subnet(slot: u32) -> Ipv4Net {
    assert!(slot < 8);
    let third = (std::process::id() % 32) * 8 + slot;
    Ipv4Net::parse(&format!("10.213.{third}.0/24")).unwrap()
}

/// Removes the links and NAT chains a test made, whatever happened to it.
#[derive(Default)]
struct Cleanup {
    veths: Vec<String>,
    bridges: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for veth in &self.veths {
            let _ = detach(veth);
        }
        for bridge in &self.bridges {
            let _ = remove_nat(bridge);
            let _ = remove_bridge(bridge);
        }
    }
}

/// A new network namespace, as a container's: a thread unshares its own and hands back an
/// fd of it. The fd keeps the namespace alive after the thread ends; dropping it destroys
/// the namespace and every interface in it.
fn new_netns() -> OwnedFd {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        OwnedFd::from(File::open("/proc/thread-self/ns/net").expect("open own netns"))
    })
    .join()
    .expect("netns thread")
}

/// Runs `f` on a thread inside `netns` (processes it spawns start there too).
fn in_netns<T: Send>(netns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(netns, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    })
}

/// A one-connection TCP server on a thread inside a network namespace.
struct Server {
    port: u16,
    /// The peer address of the connection, or `None` when none came in time.
    thread: std::thread::JoinHandle<Option<SocketAddrV4>>,
}

/// Listens on `address` inside `netns`; the first connection gets "world" for its "hello".
fn listen_in(netns: &OwnedFd, address: Ipv4Addr, wait: Duration) -> Server {
    let netns = netns.try_clone().unwrap();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns");
        let listener = TcpListener::bind(SocketAddrV4::new(address, 0)).unwrap();
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + wait;
        loop {
            match listener.accept() {
                Ok((mut conn, peer)) => {
                    conn.set_nonblocking(false).unwrap();
                    let mut got = [0u8; 5];
                    conn.read_exact(&mut got).unwrap();
                    assert_eq!(&got, b"hello");
                    conn.write_all(b"world").unwrap();
                    let std::net::SocketAddr::V4(peer) = peer else {
                        panic!("IPv4 listener, IPv6 peer {peer}")
                    };
                    return Some(peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    let port = port_rx.recv().expect("the server started");
    Server { port, thread }
}

/// Connects to `to` from `netns` (the host's when `None`), says "hello" and expects "world".
fn exchange(netns: Option<&OwnedFd>, to: SocketAddrV4, timeout: Duration) -> std::io::Result<()> {
    let netns = netns.map(|fd| fd.try_clone().unwrap());
    std::thread::spawn(move || {
        if let Some(netns) = netns {
            setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns");
        }
        let mut conn = TcpStream::connect_timeout(&to.into(), timeout)?;
        conn.set_read_timeout(Some(timeout))?;
        conn.write_all(b"hello")?;
        let mut reply = [0u8; 5];
        conn.read_exact(&mut reply)?;
        assert_eq!(&reply, b"world");
        Ok(())
    })
    .join()
    .expect("client thread")
}

/// `ip -j ARGS` parsed; `None` when ip fails (a missing device).
fn ip_json(args: &[&str]) -> Option<Value> {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip (package iproute2; scripts/install-deps.sh installs it)");
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("ip -j prints JSON"))
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect()
}

/// The gateway addresses (`ADDR/PREFIX`) of link `name` in the current namespace.
fn ipv4_of(name: &str) -> Vec<String> {
    let v = ip_json(&["-4", "addr", "show", "dev", name]).expect("link exists");
    v[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn bridge_lifecycle() {
    let p = prefix('a');
    let name = format!("{p}br");
    let mut guard = Cleanup::default();
    guard.bridges.push(name.clone());
    let net = subnet(0);
    let gateway = net.host(1).unwrap();

    assert!(!link_exists(&name).unwrap());
    remove_bridge(&name).expect("removing a missing bridge is fine");

    // Concurrent creators all succeed and leave one bridge with one address.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| ensure_bridge(&name, gateway, net).expect("ensure_bridge"));
        }
    });
    ensure_bridge(&name, gateway, net).expect("again");
    assert!(link_exists(&name).unwrap());
    assert_eq!(ipv4_of(&name), vec![format!("{gateway}/24")]);
    let link = ip_json(&["-d", "link", "show", "dev", &name]).unwrap();
    assert_eq!(link[0]["linkinfo"]["info_kind"], "bridge");
    assert_eq!(link[0]["address"], mac_string(mac_for(gateway)));
    assert!(flags(&link[0]).contains(&"UP".to_owned()));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    // A missing address is added back, a bridge that is down brought up.
    assert!(
        Command::new("ip")
            .args(["addr", "flush", "dev", &name])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("ip")
            .args(["link", "set", "dev", &name, "down"])
            .status()
            .unwrap()
            .success()
    );
    ensure_bridge(&name, gateway, net).expect("repair");
    assert_eq!(ipv4_of(&name), vec![format!("{gateway}/24")]);
    let link = ip_json(&["link", "show", "dev", &name]).unwrap();
    assert!(flags(&link[0]).contains(&"UP".to_owned()));

    assert_eq!(links_with_prefix(&p).unwrap(), vec![name.clone()]);
    remove_bridge(&name).unwrap();
    remove_bridge(&name).unwrap();
    assert!(!link_exists(&name).unwrap());
    assert_eq!(links_with_prefix(&p).unwrap(), Vec::<String>::new());
}

#[test]
fn refuses_foreign_links_and_bad_input() {
    // Never change or delete a link berth did not make as that kind.
    let net = subnet(1);
    let err = ensure_bridge("lo", net.host(1).unwrap(), net).unwrap_err();
    assert!(matches!(err, NetError::WrongKind { .. }), "{err}");
    assert_eq!(err.to_string(), "link lo is device, not a bridge");
    assert!(matches!(
        remove_bridge("lo"),
        Err(NetError::WrongKind { .. })
    ));
    assert!(matches!(detach("lo"), Err(NetError::WrongKind { .. })));
    assert!(link_exists("lo").unwrap());

    let err = ensure_bridge(&prefix('b'), Ipv4Addr::new(10, 214, 0, 1), net).unwrap_err();
    assert!(matches!(err, NetError::OutsideSubnet { .. }), "{err}");
    assert!(matches!(
        ensure_bridge("name-longer-than-15", net.host(1).unwrap(), net),
        Err(NetError::InvalidName { .. })
    ));
    assert!(matches!(
        ensure_nat("bad\"name", net, false),
        Err(NetError::InvalidName { .. })
    ));
    detach(&format!("{}v", prefix('b'))).expect("detaching a missing veth is fine");
}

#[test]
fn attach_and_reach_a_container() {
    let p = prefix('c');
    let bridge = format!("{p}br");
    let host_ifname = format!("{p}v0");
    let mut guard = Cleanup::default();
    guard.bridges.push(bridge.clone());
    guard.veths.push(host_ifname.clone());
    let net = subnet(2);
    let gateway = net.host(1).unwrap();
    ensure_bridge(&bridge, gateway, net).unwrap();

    let netns = new_netns();
    let address = net.host(2).unwrap();
    let ep = Endpoint {
        bridge: bridge.clone(),
        host_ifname: host_ifname.clone(),
        container_ifname: "eth0".to_owned(),
        address,
        prefix: net.prefix,
        gateway,
        mac: mac_for(address),
        default_route: true,
    };
    attach(netns.as_fd(), &ep).expect("attach");

    // The host end: a port of the bridge, up.
    let host = ip_json(&["link", "show", "dev", &host_ifname]).expect("host end exists");
    assert_eq!(host[0]["master"], bridge.as_str());
    assert!(flags(&host[0]).contains(&"UP".to_owned()));
    let host_links = ip_json(&["link", "show"]).unwrap();
    assert!(
        !host_links
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["address"] == mac_string(ep.mac)),
        "the container end must not be on the host"
    );

    // Inside: eth0 with the address, MAC and default route; lo up.
    let (eth0, addrs, routes, lo) = in_netns(netns.as_fd(), || {
        (
            ip_json(&["link", "show", "dev", "eth0"]).expect("eth0 in the namespace"),
            ipv4_of("eth0"),
            ip_json(&["-4", "route", "show", "default"]).unwrap(),
            ip_json(&["link", "show", "dev", "lo"]).unwrap(),
        )
    });
    assert_eq!(eth0[0]["address"], mac_string(ep.mac));
    assert!(flags(&eth0[0]).contains(&"UP".to_owned()));
    assert_eq!(addrs, vec![format!("{address}/24")]);
    let routes = routes.as_array().unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["gateway"], gateway.to_string());
    assert_eq!(routes[0]["dev"], "eth0");
    assert!(flags(&lo[0]).contains(&"UP".to_owned()));

    // The host reaches a server listening on the container's address.
    let server = listen_in(&netns, address, Duration::from_secs(10));
    exchange(
        None,
        SocketAddrV4::new(address, server.port),
        Duration::from_secs(5),
    )
    .expect("connect from the host to the container");
    let peer = server
        .thread
        .join()
        .unwrap()
        .expect("the container saw the connection");
    assert_eq!(
        *peer.ip(),
        gateway,
        "the host talks to the container from its bridge address"
    );

    // A second endpoint with a taken name fails and leaves nothing.
    let second = Endpoint {
        host_ifname: format!("{p}v1"),
        address: net.host(3).unwrap(),
        mac: mac_for(net.host(3).unwrap()),
        ..ep.clone()
    };
    guard.veths.push(second.host_ifname.clone());
    let err = attach(netns.as_fd(), &second).unwrap_err();
    assert!(
        matches!(&err, NetError::LinkExists(n) if n.starts_with("eth0")),
        "{err}"
    );
    assert!(!link_exists(&second.host_ifname).unwrap());
    let err = attach(netns.as_fd(), &ep).unwrap_err();
    assert!(
        matches!(&err, NetError::LinkExists(n) if *n == host_ifname),
        "{err}"
    );

    detach(&host_ifname).unwrap();
    detach(&host_ifname).unwrap();
    assert!(!link_exists(&host_ifname).unwrap());
    assert!(
        in_netns(netns.as_fd(), || ip_json(&["link", "show", "dev", "eth0"])).is_none(),
        "the peer goes with the host end"
    );
    remove_bridge(&bridge).unwrap();
    assert_eq!(links_with_prefix(&p).unwrap(), Vec::<String>::new());
}

#[test]
fn failed_attach_leaves_nothing() {
    let p = prefix('d');
    let bridge = format!("{p}br");
    let host_ifname = format!("{p}v0");
    let mut guard = Cleanup::default();
    guard.bridges.push(bridge.clone());
    guard.veths.push(host_ifname.clone());
    let net = subnet(3);
    let gateway = net.host(1).unwrap();
    let netns = new_netns();
    let address = net.host(2).unwrap();
    let ep = Endpoint {
        bridge: bridge.clone(),
        host_ifname: host_ifname.clone(),
        container_ifname: "eth0".to_owned(),
        address,
        prefix: net.prefix,
        gateway,
        mac: mac_for(address),
        default_route: true,
    };

    // No bridge yet.
    let err = attach(netns.as_fd(), &ep).unwrap_err();
    assert!(
        matches!(&err, NetError::LinkNotFound(b) if *b == bridge),
        "{err}"
    );

    // The kernel refuses the route (the gateway is the subnet's broadcast address) after the
    // pair exists: the pair is deleted again, on the host and inside.
    ensure_bridge(&bridge, gateway, net).unwrap();
    let bad = Endpoint {
        gateway: net.broadcast(),
        ..ep.clone()
    };
    let err = attach(netns.as_fd(), &bad).unwrap_err();
    assert!(matches!(err, NetError::Netlink { .. }), "{err}");
    assert!(err.to_string().contains("default route"), "{err}");
    eprintln!("as expected: {:?}", anyhow_like(&err));
    assert!(!link_exists(&host_ifname).unwrap());
    assert!(in_netns(netns.as_fd(), || ip_json(&["link", "show", "dev", "eth0"])).is_none());

    // And the same endpoint with the right gateway then works.
    attach(netns.as_fd(), &ep).expect("attach after a failed one");
    detach(&host_ifname).unwrap();
    remove_bridge(&bridge).unwrap();
    assert_eq!(links_with_prefix(&p).unwrap(), Vec::<String>::new());
}

/// `nft ARGS` stdout (or its stderr, for a table that does not exist), to compare. Lists
/// are stateless (`-s`): counters move with every packet.
fn nft(args: &[&str]) -> String {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("run nft (package nftables; scripts/install-deps.sh installs it)");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

/// The chains of table `ip berth` named in `chains` and the number of rules in each, with
/// each chain's hook.
fn berth_chains(chains: &[String]) -> Vec<(String, Option<String>, usize)> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "ip", "berth"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = v["nftables"].as_array().unwrap();
    let mut found = Vec::new();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        let name = chain["name"].as_str().unwrap();
        if chains.iter().any(|c| c == name) {
            let rules = items
                .iter()
                .filter_map(|i| i.get("rule"))
                .filter(|r| r["chain"] == name)
                .count();
            let hook = chain
                .get("hook")
                .and_then(|h| h.as_str())
                .map(str::to_owned);
            found.push((name.to_owned(), hook, rules));
        }
    }
    found.sort();
    found
}

#[test]
fn nat_rules_are_idempotent_and_confined() {
    let bridge = format!("{}br", prefix('e'));
    let mut guard = Cleanup::default();
    guard.bridges.push(bridge.clone());
    let net = subnet(0);
    let [nat, fwd] = nat_chains(&bridge);
    let chains = [nat.clone(), fwd.clone()];
    let foreign_before = (
        nft(&["-s", "list", "table", "ip", "nat"]),
        nft(&["-s", "list", "table", "ip", "filter"]),
    );

    ensure_nat(&bridge, net, false).unwrap();
    ensure_nat(&bridge, net, false).unwrap();
    let full = vec![
        (fwd.clone(), Some("forward".to_owned()), 4),
        (nat.clone(), Some("postrouting".to_owned()), 1),
    ];
    assert_eq!(berth_chains(&chains), full);
    let listing = nft(&["list", "chain", "ip", "berth", &nat]);
    assert!(
        listing.contains(&format!(
            "ip saddr {} oifname != \"{bridge}\" masquerade",
            net
        )),
        "{listing}"
    );

    // Concurrent reruns still leave one set.
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| ensure_nat(&bridge, net, false).expect("concurrent ensure_nat"));
        }
    });
    assert_eq!(berth_chains(&chains), full);

    // Internal: no masquerade, two drops; and back.
    ensure_nat(&bridge, net, true).unwrap();
    assert_eq!(
        berth_chains(&chains),
        vec![(fwd.clone(), Some("forward".to_owned()), 2)]
    );
    ensure_nat(&bridge, net, false).unwrap();
    assert_eq!(berth_chains(&chains), full);

    remove_nat(&bridge).unwrap();
    assert_eq!(berth_chains(&chains), vec![]);
    remove_nat(&bridge).expect("removing missing rules is fine");

    let foreign_after = (
        nft(&["-s", "list", "table", "ip", "nat"]),
        nft(&["-s", "list", "table", "ip", "filter"]),
    );
    assert_eq!(
        foreign_before, foreign_after,
        "tables outside ip berth changed"
    );
}

/// `err` and its sources on one line, as the CLI prints it.
fn anyhow_like(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s = format!("{s}: {e}");
        source = e.source();
    }
    s
}

#[test]
fn nat_and_forwarding_in_traffic() {
    // A container on bridge A talks to a server in an "outside" namespace on bridge B, the
    // way it would reach the internet through the host's uplink.
    let p = prefix('f');
    let (bridge_a, bridge_b) = (format!("{p}a"), format!("{p}b"));
    let (veth_c, veth_o) = (format!("{p}vc"), format!("{p}vo"));
    let mut guard = Cleanup::default();
    guard.bridges.extend([bridge_a.clone(), bridge_b.clone()]);
    guard.veths.extend([veth_c.clone(), veth_o.clone()]);
    let (net_a, net_b) = (subnet(4), subnet(5));
    let (gw_a, gw_b) = (net_a.host(1).unwrap(), net_b.host(1).unwrap());
    ensure_bridge(&bridge_a, gw_a, net_a).unwrap();
    ensure_bridge(&bridge_b, gw_b, net_b).unwrap();
    let endpoint = |bridge: &str, host_ifname: &str, net: Ipv4Net, gateway| Endpoint {
        bridge: bridge.to_owned(),
        host_ifname: host_ifname.to_owned(),
        container_ifname: "eth0".to_owned(),
        address: net.host(2).unwrap(),
        prefix: net.prefix,
        gateway,
        mac: mac_for(net.host(2).unwrap()),
        default_route: true,
    };
    let (container, outside) = (new_netns(), new_netns());
    let ep_c = endpoint(&bridge_a, &veth_c, net_a, gw_a);
    let ep_o = endpoint(&bridge_b, &veth_o, net_b, gw_b);
    attach(container.as_fd(), &ep_c).unwrap();
    attach(outside.as_fd(), &ep_o).unwrap();
    let wait = Duration::from_secs(5);

    // Without berth's rules the host routes between the bridges and the outside sees the
    // container's own address (unless this host's firewall drops forwarding: see nat.rs).
    let server = listen_in(&outside, ep_o.address, wait);
    exchange(
        Some(&container),
        SocketAddrV4::new(ep_o.address, server.port),
        wait,
    )
    .expect("routed without NAT");
    assert_eq!(*server.thread.join().unwrap().unwrap().ip(), ep_c.address);

    // With them, the container's traffic leaves masqueraded as the host's address on B.
    ensure_nat(&bridge_a, net_a, false).unwrap();
    let server = listen_in(&outside, ep_o.address, wait);
    exchange(
        Some(&container),
        SocketAddrV4::new(ep_o.address, server.port),
        wait,
    )
    .expect("out through NAT");
    assert_eq!(*server.thread.join().unwrap().unwrap().ip(), gw_b);

    // New connections from outside into the bridge are dropped, as Docker's.
    let short = Duration::from_millis(700);
    let server = listen_in(&container, ep_c.address, short);
    let err = exchange(
        Some(&outside),
        SocketAddrV4::new(ep_c.address, server.port),
        short,
    )
    .expect_err("an unsolicited connection into the bridge");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(server.thread.join().unwrap().is_none());

    // An internal network reaches nothing outside its bridge.
    ensure_nat(&bridge_a, net_a, true).unwrap();
    let server = listen_in(&outside, ep_o.address, short);
    let err = exchange(
        Some(&container),
        SocketAddrV4::new(ep_o.address, server.port),
        short,
    )
    .expect_err("out of an internal network");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(server.thread.join().unwrap().is_none());

    // The host itself still reaches the container (that is not forwarding).
    let server = listen_in(&container, ep_c.address, wait);
    exchange(None, SocketAddrV4::new(ep_c.address, server.port), wait).expect("host to container");
    assert!(server.thread.join().unwrap().is_some());

    remove_nat(&bridge_a).unwrap();
    detach(&veth_c).unwrap();
    detach(&veth_o).unwrap();
    remove_bridge(&bridge_a).unwrap();
    remove_bridge(&bridge_b).unwrap();
    assert_eq!(links_with_prefix(&p).unwrap(), Vec::<String>::new());
}
