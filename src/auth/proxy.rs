//! Which client address and scheme to believe when gatehouse sits behind a
//! reverse proxy.
//!
//! `X-Forwarded-For` and `X-Forwarded-Proto` are trivially forged. They are
//! believed only when the socket peer is a configured trusted proxy;
//! otherwise an attacker could pick a fresh "client IP" for every guess and
//! walk straight past the per-IP login throttle.

use std::net::IpAddr;

/// An address range such as `10.0.0.0/8` or `::1/128` (the `ipnet`
/// crate's, rather than masks worked out by hand).
pub use ipnet::IpNet;

/// An address range (`10.0.0.0/8`, `fd00::/8`) or one address (`::1`,
/// read as `::1/128`), as `trusted_proxies` and a rule's `networks` take
/// them.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

/// Whether `ip` lies in `net`; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
/// as a dual-stack socket reports an IPv4 peer) counts as the IPv4
/// address it carries, so `10.0.0.0/8` holds it.
pub fn contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip.to_canonical())
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

/// One hop of `X-Forwarded-For`: an address, or (as some proxies write
/// it: Azure's Application Gateway) an address with its port, `1.2.3.4:5`
/// or `[2001:db8::1]:80`, or a bracketed IPv6 address. Anything else is
/// no address.
fn hop_address(hop: &str) -> Result<IpAddr, ()> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(with_port) = hop.parse::<std::net::SocketAddr>() {
        return Ok(with_port.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
        .ok_or(())
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
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| contains(net, ip));
    if !is_trusted(peer) {
        return Client {
            ip: peer,
            https: direct_https,
        };
    }
    let mut ip = peer;
    if let Some(chain) = forwarded_for {
        for hop in chain.rsplit(',') {
            match hop_address(hop.trim()) {
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
        s.iter().map(|n| parse_network(n).expect("net")).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let n = parse_network("10.0.0.0/8").expect("net");
        assert!(contains(&n, ip("10.1.2.3")));
        assert!(!contains(&n, ip("11.0.0.1")));
        assert!(contains(&n, ip("::ffff:10.0.0.1")), "IPv4-mapped");
        let all = parse_network("0.0.0.0/0").expect("net");
        assert!(contains(&all, ip("1.2.3.4")));
        let one = parse_network("::1").expect("net");
        assert_eq!(one.to_string(), "::1/128");
        assert!(contains(&one, ip("::1")));
        assert!(!contains(&one, ip("::2")));
        for bad in ["", "10.0.0.0/33", "x", "::/129", "1.2.3.4/-1", "10.0.0.0/"] {
            assert!(parse_network(bad).is_err(), "{bad:?}");
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

    #[test]
    fn a_hop_with_a_port_or_brackets_is_its_address() {
        let trusted = nets(&["127.0.0.1"]);
        for (chain, want) in [
            ("1.2.3.4:5", "1.2.3.4"),
            ("[2001:db8::1]:80", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("9.9.9.9, 1.2.3.4:443", "1.2.3.4"),
            ("1.2.3.4, 127.0.0.1:80", "1.2.3.4"),
        ] {
            let c = client(ip("127.0.0.1"), false, Some(chain), None, &trusted);
            assert_eq!(c.ip, ip(want), "{chain}");
        }
        // Garbage is no address: the trusted peer stands.
        for chain in ["unknown", "1.2.3.4:x", "[1.2.3.4]", ""] {
            let c = client(ip("127.0.0.1"), false, Some(chain), None, &trusted);
            assert_eq!(c.ip, ip("127.0.0.1"), "{chain}");
        }
    }
}
