//! Networks as containers see them: the default bridge (`bridge`, Docker's name; the host
//! interface `berth0`), addresses handed out from its subnet, and a container's endpoint on
//! it, made while the container is created and waits to start.
//!
//! Address management lives in `containers.db` (table `ip_allocations`, one row per address
//! in use, its primary key the network and the address): an address is taken in the same
//! transaction that checks it is free, so two berth processes never hand out one address
//! twice; a container's rows go when it stops or is removed, and `reconcile` frees those of a
//! container whose monitor died.
//!
//! Each state root has its own bridge (`berth0` for the default root `/var/lib/berth`,
//! `br<hash of the root>` for others, such as the tests' temporary roots) and subnet, since
//! its addresses are its own: two roots on one bridge would hand out the same address. A
//! host-wide lock (`/run/lock/berth-network.lock`) orders choosing a subnet and making or
//! removing a bridge, so that concurrent roots never pick one subnet and a bridge is never
//! removed under a container being attached. The default root's bridge stays, as Docker's
//! `docker0` does; another root's goes with its last container.

use std::{
    fs,
    net::Ipv4Addr,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
};

use berth_net::{Endpoint, Ipv4Net};
use berth_store::events::Event;
use rustix::fs::{Mode, OFlags};

use crate::{ContainerRecord, EndpointSettings, Engine, EngineError, NetworkSettings, io_err};

/// Docker's name of the default network.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default root's bridge.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The state root that gets [`DEFAULT_BRIDGE`] and [`DEFAULT_SUBNETS`].
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
const HOST_LOCK: &str = "/run/lock/berth-network.lock";

/// Subnets the default root's bridge may take, in order: the first that no route of the host
/// overlaps (Docker's 172.17.0.0/16 is often taken by a Docker on the same host).
const DEFAULT_SUBNETS: &[&str] = &[
    "172.17.0.0/16",
    "172.18.0.0/16",
    "172.19.0.0/16",
    "172.20.0.0/16",
    "10.89.0.0/16",
    "10.90.0.0/16",
    "192.168.240.0/20",
];

/// A network's settings as recorded.
#[derive(Debug, Clone)]
pub struct Network {
    /// Its name (`bridge`).
    pub name: String,
    /// Its 64-hex ID.
    pub id: String,
    /// The host's bridge interface.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// The bridge's address, the containers' gateway.
    pub gateway: Ipv4Addr,
    /// No NAT to the outside.
    pub internal: bool,
    /// When it was created (RFC 3339).
    pub created: String,
    /// `--label`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// What `network create` takes.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// Its name.
    pub name: String,
    /// `-d`: empty or `bridge`, the only driver berth has.
    pub driver: String,
    /// `--subnet` (a free /16 of 172.18-31, or a /24 of 10.128/9, when absent).
    pub subnet: Option<Ipv4Net>,
    /// `--gateway` (the subnet's first address when absent).
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A subnet as `network create --subnet` (or the API's IPAM config) gives it: an IPv4
/// network address in CIDR form.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, EngineError> {
    let net =
        Ipv4Net::parse(s).map_err(|e| EngineError::Invalid(format!("invalid subnet {s}: {e}")))?;
    if net.addr != net.network() {
        return Err(EngineError::Invalid(format!(
            "invalid subnet {s}: it should be {}/{}",
            net.network(),
            net.prefix
        )));
    }
    Ok(net)
}

/// A gateway as `network create --gateway` gives it.
pub fn parse_gateway(s: &str) -> Result<Ipv4Addr, EngineError> {
    s.parse()
        .map_err(|_| EngineError::Invalid(format!("invalid gateway {s}")))
}

/// The networks every berth has (Docker's predefined ones).
pub const PREDEFINED: &[&str] = &["bridge", "host", "none"];

/// A container attached to a network.
#[derive(Debug, Clone)]
pub struct Attached {
    /// Its address on its first network (`None`: every network was disconnected).
    pub address: Option<Ipv4Addr>,
    /// What `inspect` shows.
    pub settings: NetworkSettings,
}

impl Engine {
    /// The default network, its bridge and subnet chosen (and recorded) on first use.
    pub fn default_network(&mut self) -> Result<Network, EngineError> {
        if let Some(n) = self.db.network(DEFAULT_NETWORK)? {
            return Ok(n);
        }
        let _host = host_lock()?;
        if let Some(n) = self.db.network(DEFAULT_NETWORK)? {
            return Ok(n);
        }
        let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
        let taken = host_routes(&routes);
        let free = |s: &Ipv4Net| !taken.iter().any(|t| overlaps(s, t));
        let root = self.root().display().to_string();
        let (bridge, subnet) = if root == DEFAULT_ROOT {
            let subnet = DEFAULT_SUBNETS
                .iter()
                .filter_map(|s| Ipv4Net::parse(s).ok())
                .find(free);
            (DEFAULT_BRIDGE.to_string(), subnet)
        } else {
            // A /24 of 10.128.0.0/9, starting at a slot the root's path picks.
            let digest = berth_reference::Digest::sha256_of(root.as_bytes());
            let hex = digest.encoded();
            let start = u32::from_str_radix(&hex[..8], 16).unwrap_or(0);
            let slots = 1u32 << 15;
            let subnet = (0..slots)
                .map(|i| (start.wrapping_add(i)) % slots)
                .map(|slot| Ipv4Net {
                    addr: Ipv4Addr::from((10u32 << 24) | (1 << 23) | (slot << 8)),
                    prefix: 24,
                })
                .find(free);
            (format!("br{}", &hex[..10]), subnet)
        };
        let subnet = subnet.ok_or_else(|| {
            EngineError::Invalid(
                "no free subnet for the default bridge: every candidate overlaps a route of the host"
                    .into(),
            )
        })?;
        let network = Network {
            name: DEFAULT_NETWORK.into(),
            id: self.default_network_id(),
            bridge,
            gateway: subnet.host(1).expect("a subnet has a first host"),
            subnet,
            internal: false,
            created: jiff::Timestamp::now().to_string(),
            labels: Default::default(),
        };
        let network = self.db.insert_network(&network)?;
        // Made while the lock is held: the next root to choose sees its route.
        self.ensure_bridge(&network)?;
        Ok(network)
    }

    fn ensure_bridge(&self, network: &Network) -> Result<(), EngineError> {
        let net_err = |e: berth_net::NetError| EngineError::Invalid(e.to_string());
        if !berth_net::link_exists(&network.bridge).map_err(net_err)? {
            berth_net::ensure_bridge(&network.bridge, network.gateway, network.subnet)
                .map_err(net_err)?;
            berth_net::ensure_nat(&network.bridge, network.subnet, network.internal)
                .map_err(net_err)?;
        }
        Ok(())
    }

    /// `network create`: a bridge of its own with NAT (unless internal), made at once.
    pub fn network_create(&mut self, opts: &NetworkOptions) -> Result<Network, EngineError> {
        if !matches!(opts.driver.as_str(), "" | "bridge") {
            return Err(EngineError::Invalid(format!(
                "plugin \"{}\" not found (berth has the bridge driver)",
                opts.driver
            )));
        }
        let name = &opts.name;
        let valid = !name.is_empty()
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(EngineError::Invalid(format!(
                "invalid network name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if name == "default" {
            return Err(EngineError::Invalid(
                "default is a pre-defined network name and cannot be created".into(),
            ));
        }
        if PREDEFINED.contains(&name.as_str()) || self.db.network(name)?.is_some() {
            return Err(EngineError::NetworkExists(name.clone()));
        }
        let _host = host_lock()?;
        let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
        let mut taken = host_routes(&routes);
        taken.extend(self.db.networks()?.iter().map(|n| n.subnet));
        let subnet = match opts.subnet {
            Some(s) => {
                if let Some(t) = taken.iter().find(|t| overlaps(&s, t)) {
                    return Err(EngineError::Invalid(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({s} and {t})"
                    )));
                }
                s
            }
            None => (18..32)
                .map(|b| Ipv4Net {
                    addr: Ipv4Addr::new(172, b, 0, 0),
                    prefix: 16,
                })
                .find(|s| !taken.iter().any(|t| overlaps(s, t)))
                .ok_or_else(|| {
                    EngineError::Invalid(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?,
        };
        let gateway = match opts.gateway {
            Some(g) if !subnet.contains(g) => {
                return Err(EngineError::Invalid(format!(
                    "no matching subnet for gateway {g}"
                )));
            }
            Some(g) => g,
            None => subnet.host(1).ok_or_else(|| {
                EngineError::Invalid(format!("subnet {subnet} has no room for a gateway"))
            })?,
        };
        let id = crate::new_id()?;
        let network = Network {
            name: name.clone(),
            bridge: format!("br-{}", &id[..12]),
            id,
            subnet,
            gateway,
            internal: opts.internal,
            created: jiff::Timestamp::now().to_string(),
            labels: opts.labels.clone(),
        };
        let net_err = |e: berth_net::NetError| EngineError::Invalid(e.to_string());
        berth_net::ensure_bridge(&network.bridge, network.gateway, network.subnet)
            .map_err(net_err)?;
        berth_net::ensure_nat(&network.bridge, network.subnet, network.internal)
            .map_err(net_err)?;
        let recorded = self.db.insert_network(&network);
        match &recorded {
            Ok(network) => self.network_event(&network.id, &network.name, "create", None),
            Err(_) => {
                let _ = berth_net::remove_nat(&network.bridge);
                let _ = berth_net::remove_bridge(&network.bridge);
            }
        }
        recorded
    }

    /// A container's `connect` or `disconnect` on the network called `name`.
    fn endpoint_event(&self, name: &str, action: &str, container: &str) {
        let id = match self.db.network(name) {
            Ok(Some(network)) => network.id,
            _ => name.to_string(),
        };
        self.network_event(&id, name, action, Some(container));
    }

    /// Tells the event log of `action` on a network (Docker's attributes: its name and
    /// type, and the container connected or disconnected).
    fn network_event(&self, id: &str, name: &str, action: &str, container: Option<&str>) {
        let mut event = Event::now("network", action, id)
            .with("name", name)
            .with("type", "bridge");
        if let Some(container) = container {
            event = event.with("container", container);
        }
        self.store.record_event(event);
    }

    /// The network named `key`, or whose ID starts with it.
    pub fn network(&mut self, key: &str) -> Result<Network, EngineError> {
        // `default` is Docker's other name of the default bridge (as `create` maps it).
        if key == DEFAULT_NETWORK || key == "default" {
            return self.default_network();
        }
        if let Some(n) = self.db.network(key)? {
            return Ok(n);
        }
        let matches: Vec<Network> = self
            .db
            .networks()?
            .into_iter()
            .filter(|n| n.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(EngineError::NoSuchNetwork(key.to_string())),
            _ => Err(EngineError::Invalid(format!(
                "network {key} is ambiguous ({} matches found on name)",
                matches.len()
            ))),
        }
    }

    /// Every network. The default one is listed before its first use too, without making
    /// its bridge (its subnet shows as 0.0.0.0/0 until then).
    pub fn networks(&mut self) -> Result<Vec<Network>, EngineError> {
        let mut all = self.db.networks()?;
        if !all.iter().any(|n| n.name == DEFAULT_NETWORK) {
            all.push(Network {
                name: DEFAULT_NETWORK.into(),
                id: self.default_network_id(),
                bridge: String::new(),
                subnet: Ipv4Net {
                    addr: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                },
                gateway: Ipv4Addr::UNSPECIFIED,
                internal: false,
                // A network not made yet (`host`, `none`, the default bridge before its
                // first use): Go's zero time, which clients parse where they refuse "".
                created: crate::ZERO_TIME.into(),
                labels: Default::default(),
            });
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(all)
    }

    /// The default network's ID: the same before and after it is first used.
    fn default_network_id(&self) -> String {
        let seed = format!("berth network bridge {}", self.root().display());
        berth_reference::Digest::sha256_of(seed.as_bytes())
            .encoded()
            .to_string()
    }

    /// The containers on `network` (their records), running or not.
    pub fn network_containers(
        &mut self,
        network: &str,
    ) -> Result<Vec<ContainerRecord>, EngineError> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| c.network_settings.networks.contains_key(network))
            .collect())
    }

    /// `network rm`: refused for the predefined networks and while a container is on it.
    pub fn network_remove(&mut self, key: &str) -> Result<Network, EngineError> {
        if PREDEFINED.contains(&key) {
            return Err(EngineError::Invalid(format!(
                "{key} is a pre-defined network and cannot be removed"
            )));
        }
        let network = self.network(key)?;
        // Reconciled first: a container whose monitor died must not hold the network.
        self.containers()?;
        let users = self.db.delete_network_if_unused(&network.name)?;
        if !users.is_empty() {
            return Err(EngineError::Invalid(format!(
                "error while removing network: network {} id {} has active endpoints",
                network.name, network.id
            )));
        }
        let _host = host_lock()?;
        let net_err = |e: berth_net::NetError| EngineError::Invalid(e.to_string());
        berth_net::remove_nat(&network.bridge).map_err(net_err)?;
        berth_net::remove_bridge(&network.bridge).map_err(net_err)?;
        self.network_event(&network.id, &network.name, "destroy", None);
        Ok(network)
    }

    /// Connects the created (not yet started) container `rec`, whose init is `pid`, to each
    /// network its record names: the bridge and its NAT when missing, an address, a veth
    /// pair. Its first network (`--network`) is `eth0` and carries the default route. On
    /// failure nothing is left attached.
    pub(crate) fn attach_networks(
        &mut self,
        rec: &ContainerRecord,
        pid: i32,
    ) -> Result<Attached, EngineError> {
        let primary = match rec.host_config.network_mode.as_str() {
            "default" => DEFAULT_NETWORK,
            name => name,
        };
        let mut order: Vec<&String> = rec.network_settings.networks.keys().collect();
        order.sort_by_key(|name| name.as_str() != primary);
        let netns = open_netns(pid)?;
        let mut settings = NetworkSettings {
            sandbox_key: format!("/proc/{pid}/ns/net"),
            ports: rec.network_settings.ports.clone(),
            ..Default::default()
        };
        let mut address = None;
        for (i, name) in order.into_iter().enumerate() {
            let requested = &rec.network_settings.networks[name];
            match self.attach_endpoint(rec, name, netns.as_fd(), i == 0, requested) {
                Ok(ep) => {
                    if i == 0 {
                        address = ep.ip_address.parse().ok();
                        if name == DEFAULT_NETWORK {
                            // Docker keeps these top-level fields for the default bridge.
                            settings.ip_address = ep.ip_address.clone();
                            settings.gateway = ep.gateway.clone();
                            settings.mac_address = ep.mac_address.clone();
                        }
                    }
                    settings.networks.insert(name.clone(), ep);
                    self.endpoint_event(name, "connect", &rec.id);
                }
                Err(e) => {
                    self.detach_networks(&rec.id, Links::Delete);
                    return Err(e);
                }
            }
        }
        Ok(Attached { address, settings })
    }

    /// Attaches `rec` to the network `name` inside `netns`: an address (and DNS names on a
    /// user-defined network), a veth pair. `requested` carries its `--network-alias`es.
    fn attach_endpoint(
        &mut self,
        rec: &ContainerRecord,
        name: &str,
        netns: BorrowedFd<'_>,
        default_route: bool,
        requested: &EndpointSettings,
    ) -> Result<EndpointSettings, EngineError> {
        let network = self.network(name)?;
        let user_defined = !PREDEFINED.contains(&network.name.as_str());
        let aliases = requested.aliases.clone().unwrap_or_default();
        let dns_names: Vec<String> = if user_defined {
            let mut names = vec![rec.name.trim_start_matches('/').to_string()];
            names.extend(aliases.iter().cloned());
            names.push(rec.id[..12].to_string());
            names.dedup();
            names
        } else {
            Vec::new()
        };
        let lowercase: Vec<String> = dns_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let net_err = |e: berth_net::NetError| EngineError::Invalid(e.to_string());
        let (address, iface) = {
            // The bridge exists and the address is taken under the host lock, so that the
            // last container of the root stopping meanwhile does not remove the bridge.
            let _host = host_lock()?;
            self.ensure_bridge(&network)?;
            self.db.allocate_ip(
                &network.name,
                network.subnet,
                network.gateway,
                &rec.id,
                &lowercase,
            )?
        };
        let endpoint = Endpoint {
            bridge: network.bridge.clone(),
            host_ifname: berth_net::host_ifname(&rec.id, iface),
            container_ifname: format!("eth{iface}"),
            address,
            prefix: network.subnet.prefix,
            gateway: network.gateway,
            default_route,
            mac: berth_net::mac_for(address),
        };
        if let Err(e) = berth_net::attach_replacing(netns, &endpoint) {
            let _ = self.db.release_ip(&rec.id, &network.name);
            return Err(net_err(e));
        }
        let mac = endpoint
            .mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        Ok(EndpointSettings {
            aliases: user_defined.then_some(aliases),
            network_id: network.id.clone(),
            endpoint_id: crate::new_id()?,
            gateway: network.gateway.to_string(),
            ip_address: address.to_string(),
            ip_prefix_len: network.subnet.prefix,
            mac_address: mac,
            dns_names: user_defined.then_some(dns_names),
        })
    }

    /// `network connect`: a running container gets an interface on `network` at once, a
    /// stopped or created one when it starts next. `aliases` are more DNS names for it there.
    pub fn network_connect(
        &mut self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), EngineError> {
        if matches!(network, "host" | "none") {
            return Err(EngineError::Invalid(format!(
                "container cannot be disconnected from host network or connected to {network} network"
            )));
        }
        let network = self.network(network)?;
        let rec = self.container(container)?;
        let mode = rec.host_config.network_mode.as_str();
        if matches!(mode, "none" | "host") || mode.starts_with("container:") {
            return Err(EngineError::Invalid(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if rec.network_settings.networks.contains_key(&network.name) {
            return Err(EngineError::Invalid(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, network.name
            )));
        }
        if !aliases.is_empty() && PREDEFINED.contains(&network.name.as_str()) {
            return Err(EngineError::Invalid(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        let requested = EndpointSettings {
            aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
            ..Default::default()
        };
        let settings = if rec.state.running && rec.state.pid > 0 {
            let netns = open_netns(rec.state.pid)?;
            let default_route = rec.network_settings.networks.is_empty();
            self.attach_endpoint(
                &rec,
                &network.name,
                netns.as_fd(),
                default_route,
                &requested,
            )?
        } else {
            requested
        };
        self.db.set_field(
            &rec.id,
            &format!("NetworkSettings.Networks.{}", json_key(&network.name)),
            &settings,
        )?;
        self.network_event(&network.id, &network.name, "connect", Some(&rec.id));
        Ok(())
    }

    /// `network disconnect`: a running container loses its interface on `network` at once.
    /// With `force`, a network that no longer exists is let go of by its name.
    pub fn network_disconnect(
        &mut self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<(), EngineError> {
        let rec = self.container(container)?;
        let (id, name) = match self.network(network) {
            Ok(n) => (n.id, n.name),
            Err(EngineError::NoSuchNetwork(_))
                if force && rec.network_settings.networks.contains_key(network) =>
            {
                (network.to_string(), network.to_string())
            }
            Err(e) => return Err(e),
        };
        if !rec.network_settings.networks.contains_key(&name) {
            return Err(EngineError::Invalid(format!(
                "container {} is not connected to network {name}",
                rec.id
            )));
        }
        if let Some((_, iface)) = self
            .db
            .endpoints_of(&rec.id)?
            .into_iter()
            .find(|(n, _)| *n == name)
        {
            let _ = berth_net::detach(&berth_net::host_ifname(&rec.id, iface));
            self.db.release_ip(&rec.id, &name)?;
        }
        let mut networks = rec.network_settings.networks.clone();
        networks.remove(&name);
        self.db
            .set_field(&rec.id, "NetworkSettings.Networks", &networks)?;
        self.network_event(&id, &name, "disconnect", Some(&rec.id));
        Ok(())
    }

    /// Starts the embedded DNS server of `rec` (whose init is `pid`) when it uses one: names
    /// of containers on its networks, the rest relayed to its `--dns` servers or the host's.
    /// `host_resolv` is the host's `/etc/resolv.conf`, as the start read it.
    pub(crate) fn start_dns(
        &mut self,
        rec: &ContainerRecord,
        pid: i32,
        host_resolv: &str,
    ) -> Result<Option<berth_net::DnsServer>, EngineError> {
        if !uses_embedded_dns(rec) {
            return Ok(None);
        }
        // A container only on internal networks reaches nothing outside, names included.
        let mut external = false;
        for name in rec.network_settings.networks.keys() {
            external |= self.network(name).is_ok_and(|n| !n.internal);
        }
        let upstream = if external {
            external_dns_servers(rec, host_resolv)
        } else {
            Vec::new()
        };
        let names = ContainerNames {
            db: None,
            path: self.root().join("containers.db"),
            id: rec.id.clone(),
        };
        let netns = open_netns(pid)?;
        berth_net::DnsServer::start(netns.as_fd(), Box::new(names), upstream)
            .map(Some)
            .map_err(|e| EngineError::Invalid(format!("embedded DNS server: {e}")))
    }

    /// Frees what a container held on its networks once it stopped: its addresses, and its
    /// veth pairs when `links` says so. A container whose processes have all exited needs
    /// [`Links::GoWithNamespace`]: its network namespace is gone or going, and the kernel
    /// deletes both ends of each pair with it, without the RCU grace periods (tens of
    /// milliseconds) an explicit delete waits for; a later start of the same container finds
    /// a pair still being deleted and replaces it (`berth_net::attach_replacing`).
    pub(crate) fn detach_networks(&mut self, id: &str, links: Links) {
        match self.db.endpoints_of(id) {
            Ok(endpoints) => {
                for (name, iface) in endpoints {
                    if links == Links::Delete {
                        let _ = berth_net::detach(&berth_net::host_ifname(id, iface));
                    }
                    self.endpoint_event(&name, "disconnect", id);
                }
            }
            Err(e) => tracing::warn!("listing the interfaces of container {id}: {e}"),
        }
        if let Err(e) = self.db.release_ips(id) {
            tracing::warn!("freeing the addresses of container {id}: {e}");
        }
        if self.root() != std::path::Path::new(DEFAULT_ROOT)
            && let Err(e) = self.remove_unused_default_bridge()
        {
            tracing::warn!("removing the bridge of {}: {e}", self.root().display());
        }
    }

    /// Removes this root's default bridge and its NAT once no container has an address on
    /// it (user-defined networks stay until `network rm`).
    fn remove_unused_default_bridge(&mut self) -> Result<(), EngineError> {
        let Some(network) = self.db.network(DEFAULT_NETWORK)? else {
            return Ok(());
        };
        let _host = host_lock()?;
        if self.db.ips_in_use(&network.name)? > 0 {
            return Ok(());
        }
        let net_err = |e: berth_net::NetError| EngineError::Invalid(e.to_string());
        berth_net::remove_nat(&network.bridge).map_err(net_err)?;
        berth_net::remove_bridge(&network.bridge).map_err(net_err)
    }
}

/// What [`Engine::detach_networks`] does with a container's veth pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Deletes them: the container's network namespace may live on.
    Delete,
    /// Leaves them to the kernel, which deletes them with the container's network
    /// namespace: every process of the container has exited.
    GoWithNamespace,
}

/// The host-wide lock on choosing subnets and making and removing bridges.
fn host_lock() -> Result<std::fs::File, EngineError> {
    let path = std::path::Path::new(HOST_LOCK);
    if let Some(dir) = path.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("open {HOST_LOCK}")))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(format!("lock {HOST_LOCK}"))(e.into()))?;
    Ok(file)
}

/// Docker's servers when neither `--dns` nor the host names one.
pub(crate) const FALLBACK_DNS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// Whether `rec` resolves names through an embedded DNS server: Docker's rule, a container
/// with an endpoint on a user-defined network does (the default bridge has no names): its
/// `--network`, or one it was connected to before it started.
pub(crate) fn uses_embedded_dns(rec: &ContainerRecord) -> bool {
    uses_embedded_dns_on(&rec.host_config.network_mode)
        || (!matches!(rec.host_config.network_mode.as_str(), "none" | "host")
            && rec
                .network_settings
                .networks
                .keys()
                .any(|n| uses_embedded_dns_on(n)))
}

/// [`uses_embedded_dns`] for the network mode `mode`.
pub(crate) fn uses_embedded_dns_on(mode: &str) -> bool {
    !PREDEFINED.contains(&mode) && mode != "default" && !mode.starts_with("container:")
}

/// Where the embedded DNS relays what it does not know: `--dns`, or the resolvers of the
/// host's resolv.conf (`host_resolv`; loopback ones included: the relay runs in the host's
/// namespace), or Docker's fallback when that names none.
pub(crate) fn external_dns_servers(
    rec: &ContainerRecord,
    host_resolv: &str,
) -> Vec<std::net::SocketAddr> {
    let servers: Vec<std::net::SocketAddr> = if rec.host_config.dns.is_empty() {
        berth_net::resolv_conf_servers(host_resolv)
    } else {
        rec.host_config
            .dns
            .iter()
            .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect()
    };
    if !servers.is_empty() {
        return servers;
    }
    FALLBACK_DNS
        .iter()
        .map(|a| std::net::SocketAddr::new(a.parse().expect("an address"), 53))
        .collect()
}

/// What a container's embedded DNS answers from: the `ip_allocations` rows of the networks
/// it is on, read on every query through a second connection to `containers.db`, of the DNS
/// server's thread, opened at the first query (not on the container's start path).
struct ContainerNames {
    db: Option<crate::db::Db>,
    path: std::path::PathBuf,
    id: String,
}

impl ContainerNames {
    fn lookup<T: Default>(
        &mut self,
        what: &dyn std::fmt::Display,
        query: impl FnOnce(&crate::db::Db, &str) -> Result<T, EngineError>,
    ) -> T {
        if self.db.is_none() {
            match crate::db::Db::open(&self.path) {
                Ok(db) => self.db = Some(db),
                Err(e) => {
                    tracing::warn!("embedded DNS: opening {}: {e}", self.path.display());
                    return T::default();
                }
            }
        }
        let db = self.db.as_ref().expect("opened above");
        query(db, &self.id).unwrap_or_else(|e| {
            tracing::warn!("embedded DNS: looking up {what}: {e}");
            T::default()
        })
    }
}

impl berth_net::Names for ContainerNames {
    fn addresses(&mut self, name: &str) -> Vec<Ipv4Addr> {
        self.lookup(&name, |db, id| db.dns_addresses(id, name))
    }

    fn name_of(&mut self, address: Ipv4Addr) -> Option<String> {
        self.lookup(&address, |db, id| db.dns_name_of(id, address))
    }
}

/// The network namespace of the process `pid`.
fn open_netns(pid: i32) -> Result<OwnedFd, EngineError> {
    let path = format!("/proc/{pid}/ns/net");
    rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io_err(format!("open {path}"))(e.into()))
}

/// A JSON path key for a map entry whose name may hold dots (`"my.net"`); network names
/// hold no quotes or backslashes.
fn json_key(name: &str) -> String {
    format!("\"{name}\"")
}

/// The destinations of the host's IPv4 routes (`/proc/net/route`), the default route left
/// out.
fn host_routes(table: &str) -> Vec<Ipv4Net> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // Little-endian hex of the network-order address.
            let addr = Ipv4Addr::from(dest.swap_bytes());
            let prefix = mask.swap_bytes().leading_ones() as u8;
            (prefix > 0).then_some(Ipv4Net { addr, prefix })
        })
        .collect()
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_routes_are_read_from_proc() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let routes = host_routes(table);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].to_string(), "192.168.0.0/24");
        assert_eq!(routes[1].to_string(), "172.17.0.0/16");
        let docker = Ipv4Net::parse("172.17.0.0/16").unwrap();
        assert!(overlaps(&docker, &routes[1]));
        assert!(!overlaps(
            &Ipv4Net::parse("172.18.0.0/16").unwrap(),
            &routes[1]
        ));
    }
}

/// The filters `network prune` takes.
pub const NETWORK_PRUNE_FILTERS: &[&str] = &["label", "label!", "until"];

/// The filters `network ls` takes.
pub const NETWORK_FILTERS: &[&str] = &["driver", "id", "label", "name", "scope", "type"];

/// A network as Docker lists it: a recorded one, or `host` or `none`, which need no record
/// (their IDs derive from their names, so they stay the same).
#[derive(Debug, Clone)]
pub struct NetworkEntry {
    /// Its name.
    pub name: String,
    /// Its 64-hex ID.
    pub id: String,
    /// `bridge`, `host` or `null`.
    pub driver: &'static str,
    /// `--internal`.
    pub internal: bool,
    /// `--label`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// RFC 3339; Go's zero time for `host` and `none`.
    pub created: String,
    /// The record of a bridge network.
    pub network: Option<Network>,
}

impl From<Network> for NetworkEntry {
    fn from(n: Network) -> NetworkEntry {
        NetworkEntry {
            name: n.name.clone(),
            id: n.id.clone(),
            driver: "bridge",
            internal: n.internal,
            labels: n.labels.clone(),
            created: n.created.clone(),
            network: Some(n),
        }
    }
}

impl Engine {
    /// `network ls`: the networks that pass `filters` (keys of [`NETWORK_FILTERS`]), by
    /// name.
    pub fn network_entries(
        &mut self,
        filters: &berth_store::Filters,
    ) -> Result<Vec<NetworkEntry>, EngineError> {
        let mut all: Vec<NetworkEntry> = self
            .networks()?
            .into_iter()
            .map(NetworkEntry::from)
            .collect();
        for (name, driver) in [("host", "host"), ("none", "null")] {
            all.push(NetworkEntry {
                name: name.into(),
                id: berth_reference::Digest::sha256_of(format!("berth network {name}").as_bytes())
                    .encoded()
                    .to_string(),
                driver,
                internal: false,
                labels: Default::default(),
                // A network not made yet (`host`, `none`, the default bridge before its
                // first use): Go's zero time, which clients parse where they refuse "".
                created: crate::ZERO_TIME.into(),
                network: None,
            });
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.retain(|n| {
            let keep = |key: &str, value: &str, exact: bool| {
                let want = filters.get(key);
                want.is_empty()
                    || want.iter().any(|w| {
                        if exact {
                            w == value
                        } else {
                            value.contains(w.as_str())
                        }
                    })
            };
            let kind = if PREDEFINED.contains(&n.name.as_str()) {
                "builtin"
            } else {
                "custom"
            };
            let ids = filters.get("id");
            keep("driver", n.driver, true)
                && keep("name", &n.name, false)
                && keep("scope", "local", true)
                && keep("type", kind, true)
                && (ids.is_empty() || ids.iter().any(|p| n.id.starts_with(p.as_str())))
                && filters.labels_match(Some(&n.labels))
        });
        Ok(all)
    }

    /// The network `key` as `network ls` lists it (`host` and `none` too).
    pub fn network_entry(&mut self, key: &str) -> Result<NetworkEntry, EngineError> {
        if let Ok(n) = self.network(key) {
            return Ok(n.into());
        }
        let all = self.network_entries(&berth_store::Filters::default())?;
        all.into_iter()
            .find(|n| n.name == key || (key.len() >= 3 && n.id.starts_with(key)))
            .ok_or_else(|| EngineError::NoSuchNetwork(key.to_string()))
    }

    /// Docker's `network inspect` document (the Engine API's `NetworkResource`), with the
    /// containers on it when `with_containers`.
    pub fn network_document(
        &mut self,
        entry: &NetworkEntry,
        with_containers: bool,
    ) -> Result<serde_json::Value, EngineError> {
        let mut containers = serde_json::Map::new();
        if with_containers && entry.network.is_some() {
            for c in self.network_containers(&entry.name)? {
                let Some(ep) = c
                    .network_settings
                    .networks
                    .get(&entry.name)
                    .filter(|ep| !ep.ip_address.is_empty())
                else {
                    continue;
                };
                containers.insert(
                    c.id.clone(),
                    serde_json::json!({
                        "Name": c.name,
                        "EndpointID": ep.endpoint_id,
                        "MacAddress": ep.mac_address,
                        "IPv4Address": format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
                        "IPv6Address": "",
                    }),
                );
            }
        }
        let mut options = serde_json::Map::new();
        let mut config = Vec::new();
        if let Some(n) = &entry.network {
            options.insert(
                "com.docker.network.bridge.name".into(),
                n.bridge.clone().into(),
            );
            config.push(serde_json::json!({
                "Subnet": n.subnet.to_string(),
                "Gateway": n.gateway.to_string(),
            }));
        }
        Ok(serde_json::json!({
            "Name": entry.name,
            "Id": entry.id,
            "Created": entry.created,
            "Scope": "local",
            "Driver": entry.driver,
            "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Options": {}, "Config": config },
            "Internal": entry.internal,
            "Attachable": false,
            "Ingress": false,
            "ConfigFrom": { "Network": "" },
            "ConfigOnly": false,
            "Containers": containers,
            "Options": options,
            "Labels": entry.labels,
        }))
    }

    /// `network prune`: removes every user-defined network no container uses whose labels
    /// pass `filters` (`label`, `label!`); their names.
    pub fn network_prune(
        &mut self,
        filters: &berth_store::Filters,
    ) -> Result<Vec<String>, EngineError> {
        let until = filters.until()?;
        let mut removed = Vec::new();
        for n in self.networks()? {
            if PREDEFINED.contains(&n.name.as_str()) || !filters.labels_match(Some(&n.labels)) {
                continue;
            }
            if until.is_some_and(|u| n.created.parse::<jiff::Timestamp>().is_ok_and(|c| c >= u)) {
                continue;
            }
            if self.network_containers(&n.name)?.is_empty() && self.network_remove(&n.name).is_ok()
            {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }
}
