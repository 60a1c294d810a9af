//! `--provider-networks`: which addresses the send executor may connect to.
//!
//! A connector's URLs come from its config, which an admin key sets (and `/test` takes
//! unsaved): with `any` (the default, for providers on a private network such as a Kannel
//! beside the host) the host connects wherever the config says. `public-only` refuses every
//! address that is not on the public internet: loopback, private (RFC 1918, unique-local
//! `fc00::/7`), link-local (`169.254/16` with the cloud metadata service, `fe80::/10`), shared
//! CGNAT `100.64/10`, unspecified, multicast, broadcast, documentation and benchmarking
//! ranges, and IPv4 addresses embedded in IPv6 (mapped, NAT64, 6to4) that are one of those.
//!
//! The check is on the addresses actually connected to: a host name is resolved by
//! [`PublicOnlyResolver`], which hands reqwest only the public addresses (a name resolving to
//! `127.0.0.1` is refused, and so is one that resolves to a private address on a second
//! lookup: there is no second lookup), and a literal IP host, which reqwest connects to
//! without resolving, is checked before the request ([`check_literal_host`]). A refusal is a
//! connector error naming the address and the reason, never retried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// `--provider-networks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderNetworks {
    /// Any address the config names.
    #[default]
    Any,
    /// Public internet addresses only.
    PublicOnly,
}

/// Why an address is not on the public internet; `None` when it is.
pub fn non_public_reason(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = address.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private (RFC 1918)",
        (172, 16..=31, _) => "private (RFC 1918)",
        (169, 254, _) => "link-local (169.254.0.0/16, cloud metadata services)",
        (100, 64..=127, _) => "shared address space (CGNAT 100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(address: Ipv6Addr) -> Option<&'static str> {
    if address.is_unspecified() {
        return Some("unspecified");
    }
    if address.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = address.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let segments = address.segments();
    let embedded_v4 = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    Some(match segments[0] {
        // NAT64's well-known prefix 64:ff9b::/96 carries an IPv4 address in its last 32 bits.
        0x0064 if segments[1] == 0xff9b && segments[2..6] == [0; 4] => {
            return non_public_v4(embedded_v4(segments[6], segments[7]))
        }
        // 6to4 (2002::/16) carries one in bits 16 to 48.
        0x2002 => return non_public_v4(embedded_v4(segments[1], segments[2])),
        0x2001 if segments[1] == 0x0db8 => "documentation (2001:db8::/32)",
        first if first & 0xfe00 == 0xfc00 => "private (unique local fc00::/7)",
        first if first & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        first if first & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        first if first & 0xff00 == 0xff00 => "multicast",
        // ::/96, IPv4-compatible addresses (deprecated) and the rest of the reserved ::/8.
        first if first & 0xff00 == 0 => "reserved (::/8)",
        _ => return None,
    })
}

/// A destination `public-only` refuses; an error type of its own so the executor can tell
/// it from a connection failure (which it retries) inside reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("the provider address {address} of {host} is refused by --provider-networks public-only: {reason}")]
pub struct DestinationRefused {
    host: String,
    address: IpAddr,
    reason: &'static str,
}

/// Resolves host names as the system does, then keeps only public addresses; a name with
/// none is an error ([`DestinationRefused`] for the first address refused).
#[derive(Debug, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let first_refused = resolved.iter().find_map(|address| {
                non_public_reason(address.ip()).map(|reason| (address.ip(), reason))
            });
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| non_public_reason(address.ip()).is_none())
                .collect();
            match (public.is_empty(), first_refused) {
                (true, Some((address, reason))) => Err(Box::new(DestinationRefused {
                    host,
                    address,
                    reason,
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The client builder with the resolver `networks` needs.
pub fn configure(
    builder: reqwest::ClientBuilder,
    networks: ProviderNetworks,
) -> reqwest::ClientBuilder {
    match networks {
        ProviderNetworks::Any => builder,
        // Through a proxy the resolver would see the proxy's address, not the provider's:
        // the environment's HTTP(S)_PROXY is not used, so the check is on the provider.
        ProviderNetworks::PublicOnly => builder
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnlyResolver)),
    }
}

/// Refuses a URL whose host is a literal IP address `networks` does not allow (reqwest
/// connects to those without asking the resolver).
pub fn check_literal_host(url: &reqwest::Url, networks: ProviderNetworks) -> Result<(), String> {
    if networks == ProviderNetworks::Any {
        return Ok(());
    }
    // An IPv6 literal is bracketed in the URL; a name does not parse as an address.
    let literal = url
        .host_str()
        .map(|host| host.trim_start_matches('[').trim_end_matches(']'));
    let Some(address) = literal.and_then(|host| host.parse::<IpAddr>().ok()) else {
        return Ok(());
    };
    match non_public_reason(address) {
        Some(reason) => Err(DestinationRefused {
            host: address.to_string(),
            address,
            reason,
        }
        .to_string()),
        None => Ok(()),
    }
}

/// The refusal inside a request's error, if that is why it failed.
pub fn refusal_in(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<DestinationRefused>() {
            return Some(refused.to_string());
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(address: &str) -> Option<&'static str> {
        non_public_reason(address.parse().unwrap())
    }

    #[test]
    fn addresses_off_the_public_internet_are_named() {
        for (address, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private (RFC 1918)"),
            ("172.16.0.1", "private (RFC 1918)"),
            ("172.31.255.255", "private (RFC 1918)"),
            ("192.168.1.1", "private (RFC 1918)"),
            (
                "169.254.169.254",
                "link-local (169.254.0.0/16, cloud metadata services)",
            ),
            ("100.64.0.1", "shared address space (CGNAT 100.64.0.0/10)"),
            (
                "100.127.255.255",
                "shared address space (CGNAT 100.64.0.0/10)",
            ),
            ("0.0.0.0", "unspecified (0.0.0.0/8)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved or broadcast (240.0.0.0/4)"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.7", "documentation"),
            ("198.18.0.1", "benchmarking (198.18.0.0/15)"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private (unique local fc00::/7)"),
            ("fd12:3456::1", "private (unique local fc00::/7)"),
            ("fe80::1", "link-local (fe80::/10)"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation (2001:db8::/32)"),
            ("::ffff:127.0.0.1", "loopback"),
            (
                "::ffff:169.254.169.254",
                "link-local (169.254.0.0/16, cloud metadata services)",
            ),
            ("::ffff:10.0.0.1", "private (RFC 1918)"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:c0a8:0101::1", "private (RFC 1918)"),
            ("::127.0.0.1", "reserved (::/8)"),
        ] {
            assert_eq!(reason(address), Some(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.0.3.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(reason(address), None, "{address}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_and_names_left_to_the_resolver() {
        let check =
            |url: &str, networks| check_literal_host(&reqwest::Url::parse(url).unwrap(), networks);
        let refused = check("http://127.0.0.1:8080/sms", ProviderNetworks::PublicOnly).unwrap_err();
        assert!(
            refused.contains("127.0.0.1") && refused.contains("loopback"),
            "{refused}"
        );
        assert!(check("http://[::ffff:7f00:1]/sms", ProviderNetworks::PublicOnly).is_err());
        assert!(check("http://127.0.0.1/sms", ProviderNetworks::Any).is_ok());
        assert!(check("https://8.8.8.8/sms", ProviderNetworks::PublicOnly).is_ok());
        assert!(check("http://localhost/sms", ProviderNetworks::PublicOnly).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let refused = match PublicOnlyResolver.resolve(name).await {
            Ok(addresses) => panic!("resolved to {:?}", addresses.collect::<Vec<_>>()),
            Err(error) => error.to_string(),
        };
        assert!(
            refused.contains("localhost") && refused.contains("loopback"),
            "{refused}"
        );
    }
}
