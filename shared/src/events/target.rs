//! Where a merchant's events may go, and the HTTP client that takes them
//! there without reaching anything it must not (server-side request
//! forgery): `https://` only; a host that resolves only to public
//! addresses, checked when the endpoint is registered and again at every
//! delivery, and the connection made only to the addresses checked (the
//! client's resolver is the check, so a name that later resolves to
//! 10.0.0.1 or 169.254.169.254 is refused then); no redirects followed; at
//! most 1 KiB of an answer read; 15 s for the whole of it.
//!
//! A local paygate (`make dev`, the tests) also takes `http://` and
//! loopback addresses, as for a payment's `return_url`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

/// How long a delivery may take, connection to last byte (API.md: a 2xx
/// within 15 s).
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer read and kept.
pub const ANSWER_LIMIT: usize = 1024;
/// How long a name may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest URL taken.
pub const MAX_URL: usize = 2048;

/// Why a URL cannot take events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url is not an absolute URL")]
    NotAUrl,
    #[error("url must use https")]
    NotHttps,
    #[error("url must not carry a user name or password")]
    Credentials,
    #[error("url is longer than {MAX_URL} characters")]
    TooLong,
    #[error("url's host {0} could not be resolved")]
    Unresolvable(String),
    #[error("url's host {host} resolves to {address}, which is not a public address")]
    NotPublic { host: String, address: IpAddr },
}

/// What a paygate takes: `local` (paygate itself on loopback) adds
/// `http://` and loopback addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    pub local: bool,
}

impl Targets {
    /// The URL's form: absolute, https (or, locally, http to a loopback
    /// address: [`Targets::check`] sees the addresses), no credentials.
    pub fn parse(&self, text: &str) -> Result<Url, TargetError> {
        if text.len() > MAX_URL {
            return Err(TargetError::TooLong);
        }
        let url = Url::parse(text).map_err(|_| TargetError::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.local => {}
            _ => return Err(TargetError::NotHttps),
        }
        if url.host().is_none() {
            return Err(TargetError::NotAUrl);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Credentials);
        }
        Ok(url)
    }

    /// Whether events may be sent to `address`.
    pub fn allows(&self, address: IpAddr) -> bool {
        public(address) || (self.local && address.is_loopback())
    }

    /// The URL's form, then every address its host resolves to (or the
    /// address it names): all must be allowed.
    pub async fn check(&self, text: &str) -> Result<Url, TargetError> {
        let url = self.parse(text)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses = self.resolve(&host, port).await?;
        // Plain http only to this machine (a local paygate's receivers).
        if url.scheme() == "http" && addresses.iter().any(|a| !a.ip().is_loopback()) {
            return Err(TargetError::NotHttps);
        }
        Ok(url)
    }

    /// Every address of `host` (a name, or an address in URL form), each
    /// checked.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, TargetError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            // A resolver that does not answer is an unresolvable name, not a
            // request that hangs.
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| TargetError::Unresolvable(host.to_string()))?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(TargetError::Unresolvable(host.to_string()));
        }
        if let Some(bad) = addresses.iter().find(|a| !self.allows(a.ip())) {
            return Err(TargetError::NotPublic {
                host: host.to_string(),
                address: bad.ip(),
            });
        }
        Ok(addresses)
    }

    /// The client deliveries go through: this check as its resolver, no
    /// redirects, no proxy from the environment, the delivery timeout. A
    /// URL that names an address is not resolved: check it
    /// ([`Targets::check`]) before each delivery too.
    pub fn client(&self) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(Checked(*self)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .user_agent("paygate-webhooks/1")
            .build()
    }
}

/// The resolver of the delivery client: a name resolves only if every one
/// of its addresses is allowed.
struct Checked(Targets);

impl reqwest::dns::Resolve for Checked {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = targets
                .resolve(&host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an address is on the public internet: not loopback, private,
/// shared (CGNAT), link-local (cloud metadata), unspecified, broadcast,
/// multicast, documentation, benchmarking or reserved, nor an IPv6 form of
/// one of those.
pub fn public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other ::/96
}

#[cfg(test)]
mod tests {
    use super::*;

    const AWAY: Targets = Targets { local: false };
    const HERE: Targets = Targets { local: true };

    #[test]
    fn only_public_addresses_take_events() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
            "fd00:ec2::254",
        ] {
            let ip: IpAddr = private.parse().unwrap();
            assert!(!public(ip), "{private}");
            assert!(!AWAY.allows(ip), "{private}");
        }
        for open in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(public(open.parse().unwrap()), "{open}");
        }
        assert!(HERE.allows("127.0.0.1".parse().unwrap()));
        assert!(!HERE.allows("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn urls_are_https_absolute_and_without_credentials() {
        assert!(AWAY.parse("https://shop.example.com/paygate").is_ok());
        assert_eq!(
            AWAY.parse("http://shop.example.com/"),
            Err(TargetError::NotHttps)
        );
        assert!(HERE.parse("http://127.0.0.1:9/x").is_ok());
        assert_eq!(
            AWAY.parse("ftp://shop.example.com/"),
            Err(TargetError::NotHttps)
        );
        assert_eq!(AWAY.parse("/relative"), Err(TargetError::NotAUrl));
        assert_eq!(
            AWAY.parse("https://u:p@shop.example.com/"),
            Err(TargetError::Credentials)
        );
        let long = format!("https://shop.example.com/{}", "a".repeat(MAX_URL));
        assert_eq!(AWAY.parse(&long), Err(TargetError::TooLong));
    }

    #[tokio::test]
    async fn a_name_or_address_that_reaches_inside_is_refused() {
        assert!(matches!(
            AWAY.check("https://169.254.169.254/latest/meta-data").await,
            Err(TargetError::NotPublic { .. })
        ));
        assert!(matches!(
            AWAY.check("https://[::ffff:127.0.0.1]/").await,
            Err(TargetError::NotPublic { .. })
        ));
        // `localhost` is a name that resolves to loopback.
        assert!(matches!(
            AWAY.check("https://localhost/").await,
            Err(TargetError::NotPublic { .. })
        ));
        assert!(HERE.check("http://localhost:9/").await.is_ok());
        // A local paygate takes plain http to this machine only.
        assert_eq!(
            HERE.check("http://93.184.216.34/").await,
            Err(TargetError::NotHttps)
        );
    }

    #[tokio::test]
    async fn the_delivery_client_will_not_connect_inside() {
        // A listener on loopback: the client of a deployed paygate refuses to
        // resolve its name, so nothing reaches it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = AWAY
            .client()
            .unwrap()
            .post(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the client connected");
    }
}
