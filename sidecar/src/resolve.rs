//! Names resolved by the sidecar itself, with the addresses a route may not reach removed:
//! loopback, private, link-local (cloud metadata), unspecified, multicast and the like, unless
//! the route allows private addresses. The connector dials exactly what was checked.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::policy::normalise_host;

/// Why a name was not resolved to anything the sidecar will dial.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("resolving {0}: {1}")]
    Lookup(String, std::io::Error),
    /// Every address of the name is one a route must opt in to reach.
    #[error(
        "{host} resolves only to private, loopback or link-local addresses ({addrs}); a route reaches those only with allowPrivateAddresses: true"
    )]
    Private { host: String, addrs: String },
}

/// An address no route reaches without `allowPrivateAddresses`.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return private_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7 (fd00:ec2::254 included)
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64 of any IPv4
        }
    }
}

fn private_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local() // 169.254/16: cloud metadata
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

/// The resolver the upstream connector uses: the live policy says which hosts may go private.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    pub policy: crate::live_policy::LivePolicy,
}

impl CheckedResolver {
    fn allows_private(&self, host: &str) -> bool {
        self.policy.current().allows_private(host)
    }
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = normalise_host(name.as_str());
        let private_ok = self.allows_private(&host);
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| ResolveError::Lookup(host.clone(), e))?
                .collect();
            if private_ok {
                return Ok(all.into_iter());
            }
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() {
                let addrs: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
                return Err(ResolveError::Private {
                    host,
                    addrs: addrs.join(", "),
                });
            }
            Ok(public.into_iter())
        })
    }
}

/// A `ResolveError::Private` anywhere in an error's chain.
pub fn private_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r @ ResolveError::Private { .. }) = err.downcast_ref::<ResolveError>() {
            return Some(r.to_string());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.17.0.2",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(a.parse().expect("ip")), "{a}");
        }
        for a in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(a.parse().expect("ip")), "{a}");
        }
    }
}
