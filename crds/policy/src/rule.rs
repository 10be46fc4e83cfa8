//! The rules a request can be refused under: one vocabulary for the proxy's refusals, the
//! `X-Bot-Bottle-Egress-Rule` header, its counters, the audit log and `egress.mode: report`.

use std::fmt;

/// Declares `Rule`, its wire names and `Rule::ALL` from one list, so no rule can be missing
/// from the list every counter and document is made from.
macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why the egress proxy refused a request or closed a tunnel.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Rule {
            $( $(#[$doc])* $variant, )*
        }

        impl Rule {
            /// Every rule, in declaration order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The rule's name on the wire, in counters and in the audit log.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Rule::$variant => $name, )*
                }
            }
        }
    };
}

rules! {
    /// An IP literal with no route of its own.
    IpLiteral => "ip-literal",
    HostNotAllowed => "host-not-allowed",
    PortNotAllowed => "port-not-allowed",
    PlainHttpNotAllowed => "plain-http-not-allowed",
    /// A name resolving to (or a literal of) a private, loopback or link-local address.
    PrivateAddress => "private-address",
    /// A credential route reached over plain HTTP.
    PlaintextCredential => "plaintext-credential",
    DnsOverHttps => "dns-over-https",
    /// None of a route's `matches` matched.
    NoMatch => "no-match",
    GitPush => "git-push",
    GitFetch => "git-fetch",
    /// A path whose segments decode to something else.
    AmbiguousPath => "ambiguous-path",
    /// TRACE and TRACK, which echo the request (and an injected credential) back.
    EchoMethod => "echo-method",
    /// A request whose `Host` names another host than its tunnel's.
    HostMismatch => "host-mismatch",
    DlpOutbound => "dlp-outbound",
    DlpInbound => "dlp-inbound",
    /// A tunnel whose first bytes are not a TLS ClientHello.
    NotTls => "not-tls",
    /// A TLS ClientHello naming another host than the CONNECT line.
    SniMismatch => "sni-mismatch",
    /// Cluster mode: the runner's hold on this bottle lapsed (the runner died, was cut off, or
    /// lost the Agent), so nothing may leave until a runner that holds it starts it again.
    RunnerLost => "runner-lost",
}

impl Rule {
    /// Whether `egress.mode: report` lets a request refused under it through (and records it):
    /// what a routes document can allow.
    pub fn reportable(self) -> bool {
        matches!(
            self,
            Rule::HostNotAllowed
                | Rule::PortNotAllowed
                | Rule::PlainHttpNotAllowed
                | Rule::NoMatch
                | Rule::GitFetch
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_one_distinct_lowercase_name() {
        let names: std::collections::BTreeSet<&str> =
            Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), Rule::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        );
        assert!(Rule::NoMatch.reportable() && !Rule::DlpOutbound.reportable());
    }
}
