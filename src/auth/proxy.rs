//! Which client address and scheme to believe when gatehouse sits behind a
//! reverse proxy.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are trivially forged. They are
//! believed only when the socket peer is a configured trusted proxy;
//! otherwise an attacker could pick a fresh "client IP" for every guess and
//! walk straight past the per-IP login throttle.

use std::net::IpAddr;
use std::str::FromStr;

/// An address range such as `10.0.0.0/8` or `::1/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a bad prefix length"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` lies in this range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The client address and scheme of a request, after applying trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The address to throttle and log.
    pub ip: IpAddr,
    /// Whether the client's connection was HTTPS.
    pub https: bool,
}

impl Client {
    /// The scheme the client used, `"https"` or `"http"`: worked out once
    /// here, for every URL and header that names it.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

/// Works out the real client from the socket peer and the forwarding
/// headers, believing the headers only from `trusted` peers.
///
/// `X-Forwarded-For` is read right to left, skipping trusted hops, so a
/// client cannot prepend a fake address of its own.
pub fn client(
    peer: IpAddr,
    direct_https: bool,
    forwarded_for: Option<&str>,
    forwarded_proto: Option<&str>,
    trusted: &[IpNet],
) -> Client {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return Client {
            ip: peer,
            https: direct_https,
        };
    }
    let mut ip = peer;
    if let Some(chain) = forwarded_for {
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(hop) => {
                    ip = hop;
                    if !is_trusted(hop) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    let https = match forwarded_proto {
        Some(p) => p
            .split(',')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")),
        None => direct_https,
    };
    Client { ip, https }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("net")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let n: IpNet = "10.0.0.0/8".parse().expect("net");
        assert!(n.contains(ip("10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        let all: IpNet = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains(ip("1.2.3.4")));
        let one: IpNet = "::1".parse().expect("net");
        assert!(one.contains(ip("::1")));
        assert!(!one.contains(ip("::2")));
        for bad in ["", "10.0.0.0/33", "x", "::/129", "1.2.3.4/-1"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_scheme_is_the_one_the_client_used() {
        let mut c = client(ip("127.0.0.1"), false, None, None, &[]);
        assert_eq!(c.scheme(), "http");
        c.https = true;
        assert_eq!(c.scheme(), "https");
        let trusted = nets(&["127.0.0.1"]);
        let behind = client(ip("127.0.0.1"), false, None, Some("https"), &trusted);
        assert_eq!(behind.scheme(), "https");
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        let c = client(
            ip("203.0.113.9"),
            false,
            Some("1.2.3.4"),
            Some("https"),
            &[],
        );
        assert_eq!(
            c,
            Client {
                ip: ip("203.0.113.9"),
                https: false
            }
        );
    }

    #[test]
    fn a_trusted_proxy_is_believed_and_spoofed_hops_are_skipped() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let c = client(
            ip("127.0.0.1"),
            false,
            Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            Some("https"),
            &trusted,
        );
        assert_eq!(
            c,
            Client {
                ip: ip("198.51.100.7"),
                https: true
            }
        );
    }

    #[test]
    fn garbage_in_the_chain_stops_at_the_last_good_hop() {
        let trusted = nets(&["127.0.0.1"]);
        let c = client(
            ip("127.0.0.1"),
            false,
            Some("junk, 192.0.2.1"),
            None,
            &trusted,
        );
        assert_eq!(c.ip, ip("192.0.2.1"));
        let c = client(ip("127.0.0.1"), false, Some("junk"), None, &trusted);
        assert_eq!(c.ip, ip("127.0.0.1"));
    }
}
