//! Where a bottle's networks get addresses once the engine's own pools run out. A stock engine
//! hands each network a /16 or /20 from its default pools and has 30 of them: 15 bottles (two
//! networks each). Past that, each network gets a /28 of its own from RFC 2544's benchmarking
//! range, which nothing routes, chosen clear of every subnet the engine already uses.

use std::net::Ipv4Addr;

/// The range fallback subnets come from: 198.18.0.0/15 (RFC 2544), 8192 networks of /28.
const POOL: (u32, u32) = (u32::from_be_bytes([198, 18, 0, 0]), 15);
/// A /28: the gateway, the agent and the sidecar, with room to spare.
const PREFIX: u32 = 28;

/// Whether the engine refused a network for want of an address pool.
pub fn pools_exhausted(message: &str) -> bool {
    message.contains("non-overlapping IPv4 address pool")
}

/// `a.b.c.d/n` as (network address, prefix); `None` for anything else (IPv6 included).
fn parse(cidr: &str) -> Option<(u32, u32)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(addr) & mask(prefix), prefix))
}

fn mask(prefix: u32) -> u32 {
    u32::MAX.checked_shl(32 - prefix).unwrap_or(0)
}

fn overlaps((a, pa): (u32, u32), (b, pb): (u32, u32)) -> bool {
    let p = pa.min(pb);
    a & mask(p) == b & mask(p)
}

/// The free /28s of the pool, in order, none overlapping a subnet in `used` (what the engine's
/// networks hold, as `a.b.c.d/n`).
pub fn free(used: &[String]) -> impl Iterator<Item = String> + '_ {
    let used: Vec<(u32, u32)> = used.iter().filter_map(|c| parse(c)).collect();
    let count = 1u32 << (PREFIX - POOL.1);
    (0..count)
        .map(|i| (POOL.0 + (i << (32 - PREFIX)), PREFIX))
        .filter(move |s| !used.iter().any(|u| overlaps(*s, *u)))
        .map(|(net, p)| format!("{}/{p}", Ipv4Addr::from(net)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnets_skip_every_overlap_and_stay_in_the_pool() {
        let none: Vec<String> = vec![];
        let first: Vec<String> = free(&none).take(2).collect();
        assert_eq!(first, ["198.18.0.0/28", "198.18.0.16/28"]);
        assert_eq!(free(&none).count(), 8192);
        assert_eq!(free(&none).last().as_deref(), Some("198.19.255.240/28"));
        // A used /28, a wider network covering the next ones, an IPv6 subnet and junk.
        let used = [
            "198.18.0.0/28",
            "198.18.0.32/27",
            "fd00::/64",
            "nonsense",
            "172.17.0.0/16",
        ]
        .map(String::from);
        let next: Vec<String> = free(&used).take(2).collect();
        assert_eq!(next, ["198.18.0.16/28", "198.18.0.64/28"]);
        // A network spanning the whole pool leaves nothing.
        assert_eq!(free(&["198.16.0.0/12".to_string()]).count(), 0);
    }

    #[test]
    fn the_engines_refusal_is_recognised() {
        assert!(pools_exhausted(
            "Error response from daemon: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
        ));
        assert!(!pools_exhausted("network with name x already exists"));
    }
}
