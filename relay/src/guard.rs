//! SSRF guard: the relay connects only to globally routable addresses, unless an operator
//! allows chosen networks (`--allow-network`). The check runs on the addresses the relay is
//! about to connect to — after DNS resolution, inside the connector — so a name that resolves
//! (or re-resolves, DNS rebinding) to an internal address is refused too.

use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A network in CIDR notation, e.g. `127.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{s}\" is not a network such as 10.0.0.0/8 or fd00::/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("\"{s}\": the prefix length must be 0–{max}"))?
        };
        Ok(Network { addr, prefix })
    }
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let (whole, rest) = ((prefix / 8) as usize, prefix % 8);
    net[..whole] == ip[..whole]
        && (rest == 0 || (net[whole] ^ ip[whole]) & (0xffu8 << (8 - rest)) == 0)
}

/// An IPv4 address hidden in an IPv6 form (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
/// is judged as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                IpAddr::V4(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

/// Is this an address on the public internet? Judged against IANA's IPv4 and IPv6
/// Special-Purpose Address Registries (checked entry by entry; the comments name each one) and
/// the multicast ranges.
pub fn is_global(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => is_global_v6(v6),
    }
}

/// IPv4 ranges refused. Deliberately allowed, as globally reachable public services: AS112
/// (192.31.196.0/24, 192.175.48.0/24) and AMT (192.52.193.0/24). Deliberately refused although
/// the registry calls them globally reachable: the PCP and TURN anycast addresses 192.0.0.9
/// and 192.0.0.10, inside 192.0.0.0/24 (no webhook receiver lives there).
const NOT_GLOBAL_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", and 0.0.0.0/32 "this host"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local (cloud metadata lives here)
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments (192.0.0.0/29 service
    //                    continuity, .8 dummy, .9 PCP, .10 TURN, .170/.171 NAT64 discovery)
    (0xc000_0200, 24), // 192.0.2.0/24 documentation (TEST-NET-1)
    (0xc058_6300, 24), // 192.88.99.0/24 deprecated 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation (TEST-NET-2)
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation (TEST-NET-3)
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, and 255.255.255.255/32 limited broadcast
];

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NOT_GLOBAL_V4
        .iter()
        .any(|(net, prefix)| bits >> (32 - prefix) == net >> (32 - prefix))
}

/// IPv6 is global only inside 2000::/3, the global unicast space; everything outside it is
/// refused, which covers, from the registry: ::/128 unspecified, ::1/128 loopback, the
/// deprecated IPv4-compatible ::/96, IPv4-translated ::ffff:0:0:0/96 (RFC 2765, e.g.
/// ::ffff:0:7f00:1, which is 127.0.0.1), 64:ff9b:1::/48 local-use translation, 100::/64
/// discard-only, 100:0:0:1::/64 dummy prefix, 5f00::/16 SRv6 SIDs, fc00::/7 unique local,
/// fe80::/10 link-local, fec0::/10 site-local and ff00::/8 multicast. (IPv4-mapped
/// ::ffff:0:0/96 and NAT64 64:ff9b::/96 never get here: `canonical` judges them as the IPv4
/// address they reach.) Inside 2000::/3, these ranges are refused. Deliberately allowed, as
/// globally reachable public services: AS112 (2001:4:112::/48, 2620:4f:8000::/48), AMT
/// (2001:3::/32), ORCHIDv2 (2001:20::/28) and Drone Remote ID (2001:30::/28) — except that
/// the first three of those lie inside 2001::/23, which is refused whole (see below).
const NOT_GLOBAL_V6: &[(u128, u8)] = &[
    // 2001::/23 IETF protocol assignments: Teredo 2001::/32 (hides an IPv4 address we cannot
    // check), benchmarking 2001:2::/48, ORCHID, and anycast services no receiver lives at. Its
    // globally reachable entries (PCP, TURN and DNS-SD anycast, AMT, AS112, ORCHIDv2, Drone
    // Remote ID) are refused with it, deliberately.
    (0x2001_0000 << 96, 23),
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x2002 << 112, 16),     // 2002::/16 6to4: reaches an IPv4 address we do not check
    (0x3fff << 112, 20),     // 3fff::/20 documentation
];

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    let global_unicast = bits >> 125 == 0b001;
    global_unicast
        && !NOT_GLOBAL_V6
            .iter()
            .any(|(net, prefix)| bits >> (128 - prefix) == net >> (128 - prefix))
}

/// What the relay may connect to.
#[derive(Debug, Default, Clone)]
pub struct NetworkPolicy {
    allowed: Vec<Network>,
}

/// Why a target was refused; recognisable in an error chain, so the attempt is recorded as a
/// permanent failure rather than retried.
#[derive(Debug)]
pub struct Blocked(pub String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Blocked {}

impl NetworkPolicy {
    pub fn new(allowed: Vec<Network>) -> Self {
        NetworkPolicy { allowed }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        is_global(ip) || self.allowed.iter().any(|n| n.contains(ip))
    }

    /// Refuse `ip` unless permitted, naming the address and the way out.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(Blocked(format!(
                "blocked by the SSRF guard: {host} is {ip}, not a public address (allow a network with --allow-network)"
            )))
        }
    }
}

/// The connector's resolver: system DNS, then only the addresses the policy permits.
#[derive(Clone)]
pub struct GuardedResolver {
    pub policy: Arc<NetworkPolicy>,
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match policy.check(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        refused.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match (permitted.is_empty(), refused) {
                (true, Some(blocked)) => Err(std::io::Error::other(blocked)),
                _ => Ok(permitted.into_iter()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_global_ipv4_is_refused() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.7",
            "198.18.0.1",
            "203.0.113.9",
            "192.0.0.9",
            "192.0.0.170",
            "192.88.99.1",
            "198.19.255.255",
            "198.51.100.1",
            "0.1.2.3",
        ] {
            assert!(!is_global(ip(s)), "{s} should not be global");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
            "198.20.0.1",
        ] {
            assert!(is_global(ip(s)), "{s} should be global");
        }
    }

    #[test]
    fn non_global_ipv6_and_hidden_ipv4_are_refused() {
        for s in [
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::127.0.0.1",
            "2002:7f00:1::",
            "2001::1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "100::1",
            "100:0:0:1::1",
            "5f00::1",
            "3fff::1",
            "3fff:fff::1",
            "fec0::1",
            "2001:2::1",
            "2001:1::1",
            "::808:808",
            "4000::1",
        ] {
            assert!(!is_global(ip(s)), "{s} should not be global");
        }
        for s in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2620:4f:8000::1",
            "2001:200::1",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert!(is_global(ip(s)), "{s} should be global");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_what_they_name() {
        let policy = NetworkPolicy::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "fd00::/8".parse().unwrap(),
        ]);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(policy.permits(ip("fd00::5")));
        assert!(!policy.permits(ip("10.0.0.1")));
        assert!(!policy.permits(ip("::1")));
        let err = policy
            .check("internal.example", ip("10.0.0.1"))
            .unwrap_err();
        assert!(err.0.contains("10.0.0.1") && err.0.contains("--allow-network"));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense/8".parse::<Network>().is_err());
        assert_eq!(
            "10.1.2.3".parse::<Network>().unwrap(),
            Network {
                addr: ip("10.1.2.3"),
                prefix: 32
            }
        );
    }
}
