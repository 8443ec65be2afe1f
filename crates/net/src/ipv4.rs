//! IPv4 networks (`172.17.0.0/16`): parsing and address arithmetic. Pure.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::NetError;

/// An IPv4 network: an address and a prefix length (e.g. `172.17.0.0/16`).
///
/// `addr` is kept as given, so `172.17.0.1/16` (an interface's address and its network)
/// round-trips; [`Ipv4Net::network`] is the address with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Net {
    /// The address as given.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// `addr/prefix`, refusing a prefix above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, NetError> {
        if prefix > 32 {
            return Err(NetError::InvalidNetwork {
                input: format!("{addr}/{prefix}"),
                reason: "the prefix length is above 32",
            });
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// Parses `a.b.c.d/n` (the form `docker network create --subnet` takes). The prefix is
    /// required, and is decimal without sign or leading zeros, as Go's `net.ParseCIDR`.
    pub fn parse(s: &str) -> Result<Ipv4Net, NetError> {
        let invalid = |reason| NetError::InvalidNetwork {
            input: s.to_owned(),
            reason,
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| invalid("no /prefix length"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| invalid("not an IPv4 address before the /"))?;
        let digits_only = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
        if !digits_only || prefix.len() > 2 || (prefix.len() == 2 && prefix.starts_with('0')) {
            return Err(invalid("the prefix length is not a number from 0 to 32"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix length is not a number from 0 to 32"))?;
        if prefix > 32 {
            return Err(invalid("the prefix length is above 32"));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    /// The netmask (`255.255.0.0` for a /16).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The network address: `addr` with the host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address: the last address of the network.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `a` is inside the network.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.network())
    }

    /// The network address plus `index` (0 is the network address, `size() - 1` the
    /// broadcast address); `None` past the broadcast address.
    pub fn host(&self, index: u32) -> Option<Ipv4Addr> {
        if u64::from(index) >= self.size_u64() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network()) + index))
    }

    /// How many addresses the network has, network and broadcast addresses included
    /// (65536 for a /16). A /0 has 2^32, which does not fit: it reports `u32::MAX`.
    pub fn size(&self) -> u32 {
        u32::try_from(self.size_u64()).unwrap_or(u32::MAX)
    }

    fn size_u64(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    fn mask(&self) -> u32 {
        // A shift by 32 overflows, so /0 is its own case.
        match self.prefix {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p)),
        }
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Ipv4Net, NetError> {
        Ipv4Net::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).expect(s)
    }

    #[test]
    fn parses_and_displays() {
        for s in ["172.17.0.0/16", "10.0.0.1/8", "0.0.0.0/0", "192.168.1.7/32"] {
            assert_eq!(net(s).to_string(), s);
        }
        assert_eq!(
            net("172.17.0.0/16"),
            Ipv4Net {
                addr: Ipv4Addr::new(172, 17, 0, 0),
                prefix: 16
            }
        );
        assert_eq!(
            "10.1.0.0/24".parse::<Ipv4Net>().unwrap(),
            net("10.1.0.0/24")
        );
    }

    #[test]
    fn refuses_bad_input() {
        for s in [
            "",
            "172.17.0.0",
            "172.17.0.0/",
            "172.17.0.0/33",
            "172.17.0.0/100",
            "172.17.0.0/+8",
            "172.17.0.0/-1",
            "172.17.0.0/08",
            "172.17.0.0/ 8",
            "172.17.0/16",
            "172.17.0.256/16",
            "172.017.0.0/16",
            "::1/128",
            "a.b.c.d/8",
            "1.2.3.4/8/9",
        ] {
            let err = Ipv4Net::parse(s).expect_err(s);
            assert!(
                err.to_string().starts_with("invalid IPv4 network"),
                "{s}: {err}"
            );
        }
        assert!(Ipv4Net::new(Ipv4Addr::LOCALHOST, 33).is_err());
    }

    #[test]
    fn arithmetic() {
        let n = net("172.17.5.9/16");
        assert_eq!(n.network(), Ipv4Addr::new(172, 17, 0, 0));
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(172, 17, 255, 255));
        assert_eq!(n.size(), 65536);
        assert_eq!(n.host(0), Some(Ipv4Addr::new(172, 17, 0, 0)));
        assert_eq!(n.host(1), Some(Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(n.host(258), Some(Ipv4Addr::new(172, 17, 1, 2)));
        assert_eq!(n.host(65535), Some(Ipv4Addr::new(172, 17, 255, 255)));
        assert_eq!(n.host(65536), None);
        assert_eq!(n.host(u32::MAX), None);
        assert!(n.contains(Ipv4Addr::new(172, 17, 200, 1)));
        assert!(!n.contains(Ipv4Addr::new(172, 18, 0, 1)));
    }

    #[test]
    fn edges() {
        let all = net("0.0.0.0/0");
        assert_eq!(all.size(), u32::MAX);
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(all.host(u32::MAX), Some(Ipv4Addr::BROADCAST));

        let one = net("10.213.0.7/32");
        assert_eq!(one.size(), 1);
        assert_eq!(one.network(), one.addr);
        assert_eq!(one.broadcast(), one.addr);
        assert_eq!(one.host(0), Some(one.addr));
        assert_eq!(one.host(1), None);
        assert!(one.contains(one.addr));
        assert!(!one.contains(Ipv4Addr::new(10, 213, 0, 8)));

        let p31 = net("10.0.0.1/31");
        assert_eq!(p31.size(), 2);
        assert_eq!(p31.network(), Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(p31.host(1), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p31.host(2), None);

        let top = net("255.255.255.0/24");
        assert_eq!(top.host(255), Some(Ipv4Addr::BROADCAST));
        assert_eq!(top.host(256), None);
    }

    #[test]
    fn serde_shape() {
        // Stored in the engine's network records: keep the field names stable.
        let n = net("172.17.0.0/16");
        let json = serde_json::to_string(&n).expect("serializes");
        assert_eq!(json, r#"{"addr":"172.17.0.0","prefix":16}"#);
        assert_eq!(serde_json::from_str::<Ipv4Net>(&json).expect("parses"), n);
    }
}
