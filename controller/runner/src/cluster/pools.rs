//! Warm pools across runners: which runner starts a pool's next member, and which members left
//! with a runner that is gone. Every runner computes the same from the same view, and a pool's
//! status write is conditional, so two runners never both add the member one place was for.

use std::collections::HashMap;

use bb_crds::pool::PoolMember;

use super::claims::room;
use super::runners::Runner;

/// Whether runner `r` may run members (any Agent of a pool's Bottle could claim one there).
fn takes_members(r: &Runner) -> bool {
    !r.draining && r.backend != "none"
}

/// How many of a pool's `missing` members runner `me` starts now. Each goes, one after
/// another, to the runner with room that holds the fewest of the pool's members (`in_pool`),
/// then the least loaded one (`load`: Agents and members of every pool), ties broken by a hash
/// of the pool and the runner; the counts are updated as it goes.
pub fn fill_share(
    me: &str,
    pool_uid: &str,
    live: &[Runner],
    load: &HashMap<String, u32>,
    in_pool: &[PoolMember],
    missing: usize,
) -> usize {
    let mut load = load.clone();
    let mut members: HashMap<&str, u32> = HashMap::new();
    for m in in_pool {
        if let Some(r) = &m.runner {
            *members.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut mine = 0;
    for _ in 0..missing {
        let best = live
            .iter()
            .filter(|r| takes_members(r) && room(r, &load))
            .min_by_key(|r| {
                (
                    members.get(r.id.as_str()).copied().unwrap_or(0),
                    load.get(&r.id).copied().unwrap_or(0),
                    super::claims::spread(pool_uid, &r.id),
                )
            });
        let Some(best) = best else { break };
        if best.id == me {
            mine += 1;
        }
        *members.entry(best.id.as_str()).or_default() += 1;
        *load.entry(best.id.clone()).or_default() += 1;
    }
    mine
}

/// Whether `m` runs on no live runner: its runner's Lease lapsed (that runner fenced it, and
/// removes it when it comes back) or it names none.
pub fn gone(live: &[Runner], m: &PoolMember) -> bool {
    m.runner
        .as_deref()
        .is_none_or(|id| !live.iter().any(|r| r.id == id))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cluster::runners::test_runner as runner;

    fn on(runner: &str) -> PoolMember {
        PoolMember {
            runner: Some(runner.into()),
            ..Default::default()
        }
    }

    fn shares(
        live: &[Runner],
        load: &HashMap<String, u32>,
        in_pool: &[PoolMember],
        missing: usize,
    ) -> Vec<usize> {
        live.iter()
            .map(|r| fill_share(&r.id, "pool-uid", live, load, in_pool, missing))
            .collect()
    }

    /// Every runner computes the same split: the members spread evenly whatever the runners'
    /// Agents, and their sum is what is missing.
    #[test]
    fn members_spread_over_the_runners_and_add_up() {
        let live = [runner("a", None), runner("b", None), runner("c", None)];
        let load: HashMap<String, u32> = [("a".into(), 7), ("b".into(), 0), ("c".into(), 2)].into();
        assert_eq!(shares(&live, &load, &[], 6), [2, 2, 2]);
        // Two already on a: the next four even it out.
        assert_eq!(shares(&live, &load, &[on("a"), on("a")], 4), [0, 2, 2]);
        // One left to place: the runner with fewest of the pool's, then the least loaded.
        assert_eq!(
            shares(&live, &load, &[on("a"), on("b"), on("c")], 1),
            [0, 1, 0]
        );
        assert_eq!(shares(&live, &load, &[], 0), [0, 0, 0]);
    }

    /// Capacity counts members, a draining runner or one without a backend takes none, and
    /// what fits nowhere is not started.
    #[test]
    fn capacity_drain_and_backendless_runners_are_honoured() {
        let mut live = vec![
            runner("a", Some(3)),
            runner("b", Some(1)),
            runner("c", None),
        ];
        live[2].draining = true;
        let load: HashMap<String, u32> = [("a".into(), 1), ("b".into(), 0)].into();
        assert_eq!(shares(&live, &load, &[], 5), [2, 1, 0]);
        live[1].backend = "none".into();
        assert_eq!(shares(&live, &load, &[], 5), [2, 0, 0]);
    }

    #[test]
    fn members_of_runners_no_longer_live_are_gone() {
        let live = [runner("a", None)];
        assert!(!gone(&live, &on("a")));
        assert!(gone(&live, &on("b")));
        assert!(gone(&live, &PoolMember::default()));
    }
}
