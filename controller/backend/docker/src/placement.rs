//! Where an agent finds its sidecar: beside it on its internal network, or (for a micro-VM)
//! on one loopback address the sidecar's ports are published on and nowhere else.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::PortBinding;

use bb_backend::names;
use bb_backend::sidecar_command::{GIT_GATE_PORT, SUPERVISE_PORT};

/// Where the agent finds its sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the agent's internal network, as `bb-sidecar`: the agent is a container beside it.
    Internal,
    /// Its ports published on this host loopback address and nowhere else: the agent is a
    /// micro-VM whose only reachable address is this one.
    Loopback(Ipv4Addr),
}

/// The ports the agent uses, published on `alias` only (never on every address).
pub fn published_ports(alias: Ipv4Addr) -> HashMap<String, Option<Vec<PortBinding>>> {
    [names::PROXY_PORT, GIT_GATE_PORT, SUPERVISE_PORT]
        .into_iter()
        .map(|port| {
            (
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(alias.to_string()),
                    host_port: Some(port.to_string()),
                }]),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_sidecar_listens_on_its_loopback_address_only() {
        let alias = Ipv4Addr::new(127, 1, 2, 3);
        let ports = published_ports(alias);
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort();
        assert_eq!(keys, ["3128/tcp", "9100/tcp", "9420/tcp"]);
        for (port, bindings) in &ports {
            let bindings = bindings.as_ref().expect("bound");
            assert_eq!(bindings.len(), 1, "{port}");
            // An empty or 0.0.0.0 host address would publish the proxy to the whole network.
            assert_eq!(bindings[0].host_ip.as_deref(), Some("127.1.2.3"));
            assert_eq!(
                bindings[0].host_port.as_deref(),
                port.strip_suffix("/tcp"),
                "the same port on the alias"
            );
        }
    }
}
