//! Benchmark: cluster mode with three runner processes (fake backend) against one control plane
//! standing in for the cluster. (a) Claim throughput: 300 Agents applied at once until every
//! one runs; (b) hand-over: a runner holding a third of them is killed (-9) until its Agents
//! run elsewhere (the Lease lapsing as the others see it, then claim and start). Prints a table.
//! Run with `hack/bench-cluster.sh` (or `cargo bench -p bb-e2e --bench cluster`).

use std::time::{Duration, Instant};

fn wait(what: &str, limit: Duration, cond: impl FnMut() -> bool) -> Duration {
    wait_until(what, limit, cond, String::new)
}

use bb_e2e::cluster::{Cluster, RunnerProc, bottle_and_agents};
use bb_e2e::wait_until;

const N: usize = 300;

fn main() {
    let cluster = Cluster::start();
    let mut runners: Vec<RunnerProc> = (0..3).map(|_| RunnerProc::start(&cluster, &[])).collect();
    wait("three runner Leases", Duration::from_secs(30), || {
        let out = bb_e2e::run(&mut cluster.bbctl(&["get", "runners"]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        runners.iter().all(|r| text.contains(&r.id))
    });
    let started = Instant::now();
    cluster.apply(&bottle_and_agents(N));
    let applied = started.elapsed();
    let running = |c: &Cluster| {
        let a = c.agents();
        a.len() == N && a.values().all(|(p, r)| p == "Running" && !r.is_empty())
    };
    wait("300 Agents running", Duration::from_secs(600), || {
        running(&cluster)
    });
    let all = started.elapsed();
    let held: Vec<usize> = runners
        .iter()
        .map(|r| {
            cluster
                .agents()
                .values()
                .filter(|(_, h)| *h == r.id)
                .count()
        })
        .collect();

    let victim = runners[0].id.clone();
    let moving = cluster.held_by(&victim);
    runners[0].kill();
    let handover = wait(
        "the killed runner's Agents elsewhere",
        Duration::from_secs(300),
        || cluster.running_elsewhere(&moving, &victim),
    );

    println!("| cluster mode, 3 runners, fake backend (2 cores) | value |");
    println!("|---|---|");
    println!(
        "| {N} Agents applied (one kubectl apply) | {:.1} s |",
        applied.as_secs_f64()
    );
    println!(
        "| {N} Agents claimed and running, from the apply | {:.1} s ({:.0} Agents/s) |",
        all.as_secs_f64(),
        N as f64 / all.as_secs_f64()
    );
    println!(
        "| Agents per runner | {} |",
        held.iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "| hand-over of {} Agents after kill -9 (Lease 15 s) | {:.1} s |",
        moving.len(),
        handover.as_secs_f64()
    );
}
