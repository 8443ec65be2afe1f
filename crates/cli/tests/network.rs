//! Containers on the default bridge: an address each, published ports reached from the host
//! with a real HTTP client, containers reaching each other, `--network none`, and nothing
//! left behind (addresses, veths). User-defined networks: names and aliases through the
//! embedded DNS, `network connect` and `disconnect`.

mod common;

use std::{process::Command, thread, time::Duration};

use common::{eventually, host::Host, json};

/// `curl` of `url`: the body, or `None` when it did not answer.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "5", url])
        .output()
        .expect("curl (scripts/install-deps.sh installs it)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A busybox httpd serving `body` at / on port 80, with `flags` for `run -d`.
fn httpd(host: &Host, body: &str, flags: &[&str]) -> String {
    let www = host
        .berth
        .dir
        .path()
        .join(format!("www-{}", common::host::unique()));
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), body).unwrap();
    let bind = format!("{}:/www:ro", www.display());
    let mut args = vec!["run", "-d", "-v", &bind];
    args.extend_from_slice(flags);
    args.extend(["busybox", "httpd", "-f", "-p", "80", "-h", "/www"]);
    host.ok(&args).trim().to_string()
}

/// `wget` of `url` from a new container (with `flags`), retried while the server starts.
fn wget_from_container(host: &Host, flags: &[&str], url: &str) -> Option<String> {
    for _ in 0..50 {
        let mut args = vec!["--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "wget", "-qO-", url]);
        let ran = host.run(&args);
        if ran.code == 0 {
            return Some(ran.stdout);
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The veth pairs of a container that has exited go with its network namespace, which the
/// kernel tears down a moment after the container's end.
fn no_veths_soon(id: &str) {
    eventually(5, &format!("the veths of {id} to go"), || {
        veths_of(id).is_empty()
    });
}

fn veths_of(id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("veth{}", &id[..7])))
        .map(str::to_string)
        .collect()
}

/// Once its last container is gone, a (non-default) root's bridge and NAT rules are gone.
fn assert_no_bridge(host: &Host) {
    let root = host.berth.root();
    let bridge = format!(
        "br{}",
        &common::sha256_hex(root.to_str().unwrap().as_bytes())[..10]
    );
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&bridge),
        "bridge {bridge} left behind"
    );
    let rules = Command::new("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&rules.stdout).contains(&bridge),
        "NAT rules of {bridge} left behind"
    );
}

#[test]
fn published_ports_reach_a_container_from_the_host() {
    let host = Host::new();
    let id = httpd(
        &host,
        "hello from berth\n",
        &["-p", "127.0.0.1::80", "-p", "0:80"],
    );
    // `port` shows where 80/tcp went; curl gets the page there.
    let ports = host.ok(&["port", &id, "80"]);
    let loopback = ports
        .lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no loopback binding: {ports}"))
        .to_string();
    eventually(10, "httpd to answer", || {
        curl(&format!("http://{loopback}/")).is_some()
    });
    assert_eq!(
        curl(&format!("http://{loopback}/")).unwrap(),
        "hello from berth\n"
    );
    // The all-addresses binding answers on another address of the host too: the bridge's.
    let doc = json(&host.ok(&["inspect", &id]));
    let settings = &doc[0]["NetworkSettings"];
    let gateway = settings["Gateway"].as_str().unwrap().to_string();
    let any = ports
        .lines()
        .find(|l| l.starts_with("0.0.0.0:"))
        .unwrap_or_else(|| panic!("no 0.0.0.0 binding: {ports}"));
    let port = any.rsplit(':').next().unwrap();
    assert_eq!(
        curl(&format!("http://{gateway}:{port}/")).as_deref(),
        Some("hello from berth\n")
    );
    // inspect: an address on the bridge, the MAC derived from it, the published ports.
    let address = settings["IPAddress"].as_str().unwrap().to_string();
    assert!(!address.is_empty(), "{settings}");
    let octets: Vec<u8> = address.split('.').map(|o| o.parse().unwrap()).collect();
    let mac = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    assert_eq!(settings["MacAddress"], mac.as_str());
    assert_eq!(
        settings["Networks"]["bridge"]["IPAddress"],
        address.as_str()
    );
    assert!(
        settings["Ports"]["80/tcp"]
            .as_array()
            .is_some_and(|b| b.len() == 2)
    );
    let column = host.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(column.contains(&format!("{loopback}->80/tcp")), "{column}");
    // The container's own view: eth0 with that address, a default route.
    let inside = host.ok(&["exec", &id, "sh", "-c", "ip -4 addr show eth0; ip route"]);
    assert!(inside.contains(&format!("inet {address}/")), "{inside}");
    assert!(
        inside.contains(&format!("default via {gateway}")),
        "{inside}"
    );
    // A taken port fails the start with Docker's words.
    let taken = loopback.rsplit(':').next().unwrap().to_string();
    let ran = host.run(&[
        "--rm",
        "-p",
        &format!("127.0.0.1:{taken}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("port is already allocated"),
        "{}",
        ran.stderr
    );
    // Stopped: no address, connections refused; removed: no veth left.
    host.ok(&["stop", "-t", "1", &id]);
    assert!(curl(&format!("http://{loopback}/")).is_none());
    let doc = json(&host.ok(&["inspect", &id]));
    assert_eq!(doc[0]["NetworkSettings"]["IPAddress"], "");
    host.ok(&["rm", &id]);
    no_veths_soon(&id);
    assert_no_bridge(&host);
}

#[test]
fn containers_reach_each_other_and_get_distinct_addresses() {
    let host = Host::new();
    let server = httpd(&host, "from the server\n", &[]);
    let address = host
        .ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", &server])
        .trim()
        .to_string();
    let got = wget_from_container(&host, &[], &format!("http://{address}/"));
    assert_eq!(got.as_deref(), Some("from the server\n"));
    // Ten at once: ten different addresses, all freed afterwards.
    let children: Vec<_> = (0..10)
        .map(|_| {
            host.berth
                .command()
                .args(["run", "-d", "busybox", "sleep", "60"])
                .output()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .collect();
    let mut addresses: Vec<String> = ids
        .iter()
        .map(|id| {
            host.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", id])
                .trim()
                .to_string()
        })
        .collect();
    addresses.push(address);
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 11, "{addresses:?}");
    let mut all = vec!["rm", "-f", &server];
    all.extend(ids.iter().map(String::as_str));
    host.ok(&all);
    for id in ids.iter().chain([&server]) {
        no_veths_soon(id);
    }
    assert_no_bridge(&host);
}

#[test]
fn network_none_has_only_loopback_and_expose_with_publish_all() {
    let host = Host::new();
    let out = host.run_ok(&["--network", "none", "busybox", "ls", "/sys/class/net"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    // --add-host and --dns reach the container's files.
    let out = host.run_ok(&[
        "--add-host",
        "db.internal:10.1.2.3",
        "--dns",
        "10.9.9.9",
        "busybox",
        "sh",
        "-c",
        "grep db.internal /etc/hosts; grep nameserver /etc/resolv.conf",
    ]);
    assert!(out.contains("10.1.2.3\tdb.internal"), "{out}");
    assert!(out.contains("nameserver 10.9.9.9"), "{out}");
    // -P publishes every exposed port on a free host port.
    let id = httpd(&host, "any port\n", &["--expose", "80", "-P"]);
    let ports = host.ok(&["port", &id]);
    let line = ports
        .lines()
        .find(|l| l.starts_with("80/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("{ports}"));
    let port = line.rsplit(':').next().unwrap();
    eventually(10, "httpd to answer", || {
        curl(&format!("http://127.0.0.1:{port}/")).as_deref() == Some("any port\n")
    });
    host.ok(&["rm", "-f", &id]);
    assert_no_bridge(&host);
}

#[test]
fn user_defined_networks() {
    let host = Host::new();
    // A subnet of its own, picked from what this test run's process ID leaves free.
    let third = 100 + std::process::id() % 100;
    let subnet = format!("10.214.{third}.0/24");
    let id = host.ok(&[
        "network", "create", "--subnet", &subnet, "--label", "team=ml", "mlnet",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ls = host.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert_eq!(ls, "bridge bridge\nhost host\nmlnet bridge\nnone null\n");
    let custom = host.ok(&[
        "network",
        "ls",
        "-q",
        "--filter",
        "label=team=ml",
        "--no-trunc",
    ]);
    assert_eq!(custom.trim(), id.trim());
    let err = host.berth.fails(&["network", "create", "mlnet"]);
    assert!(err.contains("already exists"), "{err}");

    let server = httpd(&host, "on mlnet\n", &["--network", "mlnet"]);
    let address = host
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.mlnet.IPAddress}}",
            &server,
        ])
        .trim()
        .to_string();
    assert!(
        address.starts_with(&format!("10.214.{third}.")),
        "{address}"
    );
    let got = wget_from_container(
        &host,
        &["--network", "mlnet"],
        &format!("http://{address}/"),
    );
    assert_eq!(got.as_deref(), Some("on mlnet\n"));
    let doc = json(&host.ok(&["network", "inspect", "mlnet"]));
    assert_eq!(doc[0]["IPAM"]["Config"][0]["Subnet"], subnet.as_str());
    assert_eq!(doc[0]["Labels"]["team"], "ml");
    assert!(doc[0]["Containers"][&server].is_object(), "{doc}");
    let same = json(&host.ok(&["inspect", "--type", "network", "mlnet"]));
    assert_eq!(same[0]["Id"], doc[0]["Id"]);
    assert_eq!(host.ok(&["inspect", "-f", "{{.Name}}", "mlnet"]), "mlnet\n");

    // In use: not removed; predefined: never; missing network: the run fails with 125.
    let err = host.berth.fails(&["network", "rm", "mlnet"]);
    assert!(err.contains("has active endpoints"), "{err}");
    let err = host.berth.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("pre-defined"), "{err}");
    let ran = host.run(&["--rm", "--network", "nosuch", "busybox", "true"]);
    assert_eq!(ran.code, 125);
    assert!(
        ran.stderr.contains("network nosuch not found"),
        "{}",
        ran.stderr
    );

    host.ok(&["rm", "-f", &server]);
    host.ok(&["network", "create", "spare"]);
    let pruned = host.ok(&["network", "prune", "-f"]);
    assert_eq!(pruned, "Deleted Networks:\nmlnet\nspare\n");
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let bridge = format!("br-{}", &id.trim()[..12]);
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains(&bridge),
        "{bridge} left behind"
    );
    assert_no_bridge(&host);
}

/// A stand-in for the host's resolver on a loopback address, so that what the embedded DNS
/// relays stays on this host: `outside.test` is 192.0.2.7, every other name NXDOMAIN. It
/// answers until the test ends and counts the queries it saw.
struct FakeUpstream {
    address: std::net::Ipv4Addr,
    queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeUpstream {
    fn start() -> FakeUpstream {
        let address = std::net::Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8, 1);
        let socket = std::net::UdpSocket::bind((address, 53)).expect("bind a loopback :53");
        let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = queries.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((len, client)) = socket.recv_from(&mut buf) {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let query = &buf[..len];
                if len < 12 {
                    continue;
                }
                // The question: labels up to the root, then type and class.
                let mut end = 12;
                let mut labels = Vec::new();
                while end < len && query[end] != 0 {
                    let n = usize::from(query[end]);
                    labels.push(String::from_utf8_lossy(&query[end + 1..end + 1 + n]).to_string());
                    end += n + 1;
                }
                let question_end = end + 5;
                let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
                let known = labels.join(".").eq_ignore_ascii_case("outside.test");
                let mut reply = query[..question_end].to_vec();
                reply[2] = 0x81; // a response, recursion desired
                reply[3] = if known { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN
                reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
                if known && qtype == 1 {
                    reply[7] = 1;
                    reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    reply.extend_from_slice(&[192, 0, 2, 7]);
                }
                let _ = socket.send_to(&reply, client);
            }
        });
        FakeUpstream { address, queries }
    }
}

/// `nslookup name` in the container `id`: the addresses it printed for the name.
fn nslookup(host: &Host, id: &str, name: &str) -> Vec<String> {
    let out = host.berth.run(&["exec", id, "nslookup", name]);
    let text = String::from_utf8_lossy(&out.stdout);
    // Busybox prints the server first, then `Name:` and its `Address:` lines.
    text.split_once("Name:")
        .map(|(_, answer)| {
            answer
                .lines()
                .filter_map(|l| l.strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn containers_find_each_other_by_name_and_alias() {
    let host = Host::new();
    let upstream = FakeUpstream::start();
    let dns = upstream.address.to_string();
    let third = 100 + std::process::id() % 100;
    host.ok(&[
        "network",
        "create",
        "--subnet",
        &format!("10.215.{third}.0/24"),
        "dnsnet",
    ]);
    let server = httpd(
        &host,
        "by name\n",
        &[
            "--name",
            "web",
            "--network",
            "dnsnet",
            "--network-alias",
            "model",
            "--dns",
            &dns,
        ],
    );
    let web_ip = host
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.dnsnet.IPAddress}}",
            &server,
        ])
        .trim()
        .to_string();
    let names = host.ok(&[
        "inspect",
        "-f",
        "{{json .NetworkSettings.Networks.dnsnet.Aliases}} {{json .NetworkSettings.Networks.dnsnet.DNSNames}}",
        &server,
    ]);
    assert_eq!(
        names.trim(),
        format!("[\"model\"] [\"web\",\"model\",\"{}\"]", &server[..12])
    );

    // A client on the network reaches the server by name, alias and name.network.
    let client = &["--network", "dnsnet", "--dns", &dns];
    for url in [
        "http://web/",
        "http://model/",
        "http://web.dnsnet/",
        "http://WEB/",
    ] {
        assert_eq!(
            wget_from_container(&host, client, url).as_deref(),
            Some("by name\n"),
            "{url}"
        );
    }
    let resolv = host.ok(&[
        "run",
        "--rm",
        "--network",
        "dnsnet",
        "--dns",
        &dns,
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    assert!(
        resolv.contains(&format!("ExtServers: [host({dns})]")),
        "{resolv}"
    );

    // Names it does not know go to the upstream (a loopback one: relayed from the host).
    let before = upstream.queries.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(nslookup(&host, &server, "outside.test"), ["192.0.2.7"]);
    assert!(upstream.queries.load(std::sync::atomic::Ordering::SeqCst) > before);
    assert!(nslookup(&host, &server, "nosuch.test").is_empty());
    // Reverse lookups of container addresses name the container on the network.
    let reverse = host.ok(&["exec", &server, "nslookup", &web_ip]);
    assert!(reverse.contains("web.dnsnet"), "{reverse}");

    // The default bridge has no names: its containers keep the host's resolvers.
    let resolv = host.ok(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
    let err = host
        .berth
        .fails(&["create", "--network-alias", "x", "busybox"]);
    assert!(
        err.contains("only for containers in user defined networks"),
        "{err}"
    );

    // network connect: a running container on the default bridge gets eth1 on dnsnet at
    // once, and its name and alias resolve there; disconnect takes both away.
    let other = host.ok(&["run", "-d", "--name", "other", "busybox", "sleep", "300"]);
    let other = other.trim();
    host.ok(&["network", "connect", "--alias", "extra", "dnsnet", "other"]);
    let addrs = host.ok(&["exec", other, "ip", "-o", "-4", "addr", "show", "eth1"]);
    assert!(addrs.contains(&format!("10.215.{third}.")), "{addrs}");
    let other_ip = host
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.dnsnet.IPAddress}}",
            other,
        ])
        .trim()
        .to_string();
    assert_eq!(
        nslookup(&host, &server, "extra"),
        std::slice::from_ref(&other_ip)
    );
    assert_eq!(nslookup(&host, &server, "other"), [other_ip]);
    let route = host.ok(&["exec", other, "ip", "route", "show", "default"]);
    assert!(
        route.contains("dev eth0"),
        "the first network keeps the default route: {route}"
    );
    assert_eq!(
        host.ok(&["ps", "--filter", "name=other", "--format", "{{.Networks}}"]),
        "bridge,dnsnet\n"
    );
    let err = host.berth.fails(&["network", "connect", "dnsnet", "other"]);
    assert!(err.contains("already exists in network dnsnet"), "{err}");
    host.ok(&["network", "disconnect", "dnsnet", "other"]);
    let links = host.ok(&["exec", other, "ip", "-o", "link"]);
    assert!(!links.contains("eth1"), "{links}");
    assert!(nslookup(&host, &server, "extra").is_empty());
    assert_eq!(veths_of(other).len(), 1, "{:?}", veths_of(other));

    // A created container connected before it starts comes up on both networks.
    host.ok(&["create", "--name", "later", "busybox", "sleep", "300"]);
    host.ok(&["network", "connect", "dnsnet", "later"]);
    host.ok(&["start", "later"]);
    let later = host.ok(&["exec", "later", "ip", "-o", "-4", "addr"]);
    assert!(later.contains("eth0") && later.contains("eth1"), "{later}");
    assert!(!nslookup(&host, &server, "later").is_empty());
    // A rename renames its DNS name too.
    host.ok(&["rename", "later", "renamed"]);
    assert!(!nslookup(&host, &server, "renamed").is_empty());
    assert!(nslookup(&host, &server, "later").is_empty());
    let err = host.berth.fails(&["network", "rm", "dnsnet"]);
    assert!(err.contains("has active endpoints"), "{err}");

    for id in [server.as_str(), other, "renamed"] {
        host.ok(&["rm", "-f", id]);
    }
    host.ok(&["network", "rm", "dnsnet"]);
    no_veths_soon(&server);
    no_veths_soon(other);
    assert_no_bridge(&host);
}
