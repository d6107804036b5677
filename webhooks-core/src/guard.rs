//! The address guard: webhooks go to the public internet only, unless the
//! host allows private targets.
//!
//! Endpoint URLs are typed in by customers, so without a guard a webhook
//! sender is a way into the host's own network (server-side request forgery).
//! The guard checks the addresses a name *resolves to*, at connect time, so
//! DNS rebinding and numeric tricks like `http://0x7f000001/` fail as well as
//! a plain `http://10.0.0.5/`.

#[cfg(feature = "dispatch")]
use std::net::SocketAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[cfg(feature = "dispatch")]
use ipnet::IpNet;
#[cfg(feature = "dispatch")]
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
#[cfg(feature = "dispatch")]
use url::{Host, Url};

/// Whether `ip` is a public unicast address a webhook may be sent to.
///
/// Refused: unspecified, loopback, private (RFC 1918), shared (RFC 6598),
/// link-local (including the 169.254.169.254 metadata service), multicast,
/// broadcast, documentation, benchmarking and reserved ranges; for IPv6 the
/// same plus unique-local, site-local and anything outside global unicast,
/// and IPv4 addresses embedded in IPv6 are judged as IPv4.
///
/// ```
/// use webhooks_core::is_public_address;
///
/// assert!(is_public_address("93.184.216.34".parse().unwrap()));
/// assert!(!is_public_address("169.254.169.254".parse().unwrap()));
/// assert!(!is_public_address("::ffff:127.0.0.1".parse().unwrap()));
/// ```
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0                                  // "this network", unspecified
        || a == 10                            // private
        || a == 127                           // loopback
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)             // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0)     // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)     // documentation
        || (a == 192 && b == 88 && c == 99)   // 6to4 relay anycast
        || (a == 192 && b == 168)             // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100)  // documentation
        || (a == 203 && b == 0 && c == 113)   // documentation
        || a >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let global_unicast = (segments[0] & 0xe000) == 0x2000; // 2000::/3
    global_unicast
        && !(segments[0] == 0x2001 && segments[1] < 0x0200) // IETF protocol assignments, Teredo
        && !(segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        && !(segments[0] == 0x3fff && segments[1] < 0x1000) // documentation
}

/// The IPv4 address inside an IPv4-mapped, IPv4-compatible, NAT64 or 6to4
/// IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(tail(hi, lo)),
        // IPv4-compatible, but not :: and ::1, which are judged as IPv6.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

/// Which addresses the dispatcher may reach: public ones, those of the
/// networks the host allowed, or every one when private targets are allowed.
#[cfg(feature = "dispatch")]
#[derive(Clone, Debug, Default)]
pub(crate) struct Guard {
    allow_all: bool,
    networks: Vec<IpNet>,
}

#[cfg(feature = "dispatch")]
impl Guard {
    pub(crate) fn new(allow_all: bool, networks: Vec<IpNet>) -> Self {
        Self { allow_all, networks }
    }

    /// Whether everything is allowed: no guard at all.
    pub(crate) fn allows_all(&self) -> bool {
        self.allow_all
    }

    /// Whether a request may go to `ip`.
    pub(crate) fn permits(&self, ip: IpAddr) -> bool {
        self.allow_all || is_public_address(ip) || self.networks.iter().any(|network| network.contains(&ip))
    }

    /// Refuses a URL whose host is an IP literal it does not permit; names
    /// are checked by [`GuardedResolver`] when they resolve.
    pub(crate) fn check_literal(&self, url: &Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.permits(ip) { Ok(()) } else { Err(refusal(&[ip])) }
    }
}

#[cfg(feature = "dispatch")]
fn refusal(ips: &[IpAddr]) -> String {
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    format!(
        "refused: the endpoint is not a public address ({}); allow its network to send there",
        list.join(", ")
    )
}

/// Resolves with the system resolver and keeps only the addresses the guard
/// permits; a name with none left is refused.
#[cfg(feature = "dispatch")]
#[derive(Debug, Default)]
pub(crate) struct GuardedResolver(pub(crate) std::sync::Arc<Guard>);

#[cfg(feature = "dispatch")]
impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let guard = std::sync::Arc::clone(&self.0);
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| guard.permits(a.ip())).collect();
            if public.is_empty() {
                let ips: Vec<IpAddr> = resolved.iter().map(SocketAddr::ip).collect();
                return Err(refusal(&ips).into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public_address(text.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]
        {
            assert!(public(ip), "{ip}");
        }
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[cfg(feature = "dispatch")]
    #[test]
    fn numeric_tricks_in_urls_are_seen_through() {
        for url in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
            "http://0177.0.0.1/",
        ] {
            let parsed = Url::parse(url).unwrap();
            assert!(Guard::default().check_literal(&parsed).is_err(), "{url} -> {parsed}");
        }
        assert!(Guard::default().check_literal(&Url::parse("https://93.184.216.34/").unwrap()).is_ok());
        assert!(Guard::default().check_literal(&Url::parse("https://example.com/").unwrap()).is_ok());
    }

    #[cfg(feature = "dispatch")]
    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused() {
        let error = match GuardedResolver::default().resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("not a public address"), "{error}");
    }

    #[cfg(feature = "dispatch")]
    #[test]
    fn an_allowed_network_is_reachable_and_no_other() {
        let guard = Guard::new(false, vec!["10.20.0.0/16".parse().unwrap(), "fd00:ab::/32".parse().unwrap()]);
        for ip in ["10.20.3.4", "fd00:ab::7", "93.184.216.34"] {
            assert!(guard.permits(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.21.0.1", "127.0.0.1", "169.254.169.254", "fd00:ac::1"] {
            assert!(!guard.permits(ip.parse().unwrap()), "{ip}");
        }
        assert!(guard.check_literal(&Url::parse("http://10.20.0.9/hooks").unwrap()).is_ok());
        assert!(guard.check_literal(&Url::parse("http://10.30.0.9/hooks").unwrap()).is_err());
        assert!(Guard::new(true, Vec::new()).permits("127.0.0.1".parse().unwrap()));
    }
}
