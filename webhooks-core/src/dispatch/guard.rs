//! The address guard: webhooks go to the public internet only, unless the
//! host allows private targets.
//!
//! Endpoint URLs are typed in by customers, so without a guard a webhook
//! sender is a way into the host's own network (server-side request forgery).
//! The guard checks the addresses a name *resolves to*, at connect time, so
//! DNS rebinding and numeric tricks like `http://0x7f000001/` fail as well as
//! a plain `http://10.0.0.5/`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::address::is_public_address;

/// Which addresses the dispatcher may reach: public ones, those of the
/// networks the host allowed, or every one when private targets are allowed.
#[derive(Clone, Debug, Default)]
pub(super) struct Guard {
    allow_all: bool,
    networks: Vec<IpNet>,
}

impl Guard {
    pub(super) fn new(allow_all: bool, networks: Vec<IpNet>) -> Self {
        Self { allow_all, networks }
    }

    /// Whether everything is allowed: no guard at all.
    pub(super) fn allows_all(&self) -> bool {
        self.allow_all
    }

    /// Whether a request may go to `ip`.
    pub(super) fn permits(&self, ip: IpAddr) -> bool {
        self.allow_all || is_public_address(ip) || self.networks.iter().any(|network| network.contains(&ip))
    }

    /// Refuses a URL whose host is an IP literal it does not permit; names
    /// are checked by [`GuardedResolver`] when they resolve.
    pub(super) fn check_literal(&self, url: &Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if self.permits(ip) { Ok(()) } else { Err(refusal(&[ip])) }
    }
}

fn refusal(ips: &[IpAddr]) -> String {
    let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    format!(
        "refused: the endpoint is not a public address ({}); allow its network to send there",
        list.join(", ")
    )
}

/// Resolves with the system resolver and keeps only the addresses the guard
/// permits; a name with none left is refused.
#[derive(Debug, Default)]
pub(super) struct GuardedResolver(pub(super) Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let guard = Arc::clone(&self.0);
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

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused() {
        let error = match GuardedResolver::default().resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("not a public address"), "{error}");
    }

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
