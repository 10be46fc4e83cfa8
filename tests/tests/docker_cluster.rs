//! Cluster mode on a real Docker engine: two runners sync from one control plane standing in for
//! the cluster; draining the one that runs an Agent hands the Agent to the other with its
//! snapshot, so what the agent wrote survives the move, and nothing is left on the first.

use std::time::Duration;

use bb_e2e::cluster::{Cluster, RunnerProc};
use bb_e2e::wait_until;
use bb_e2e::{containers_with, docker, ensure_base_image, ok, remove_all_with, run};

fn instance(r: &RunnerProc) -> String {
    format!("bot-bottle.dev/controller={}", r.id)
}

/// Removes what each runner labelled, even when the test fails half-way.
struct Leftovers(Vec<String>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for label in &self.0 {
            remove_all_with(label);
        }
    }
}

#[test]
fn draining_a_docker_runner_hands_its_agent_over_with_its_snapshot() {
    ensure_base_image();
    let cluster = Cluster::start();
    let runners = [RunnerProc::docker(&cluster), RunnerProc::docker(&cluster)];
    let _leftovers = Leftovers(runners.iter().map(instance).collect());
    let logs = || {
        runners
            .iter()
            .map(|r| format!("--- runner {} ---\n{}", r.id, r.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    cluster.apply(&(bb_e2e::test_agent_bottle("movers", "") + "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: mover}\nspec: {bottleRef: {name: movers}}\n"));
    let running_on = |c: &Cluster| {
        c.agents()
            .get("mover")
            .filter(|(p, _)| p == "Running")
            .map(|(_, r)| r.clone())
    };
    wait_until(
        "the Agent running on a runner",
        Duration::from_secs(600),
        || running_on(&cluster).is_some_and(|r| !r.is_empty()),
        logs,
    );
    let first = running_on(&cluster).unwrap_or_default();
    let (from, to) = if runners[0].id == first {
        (&runners[0], &runners[1])
    } else {
        (&runners[1], &runners[0])
    };
    let agent_of = |r: &RunnerProc| {
        containers_with(&format!("{},bot-bottle.dev/role=agent", instance(r)))
            .into_iter()
            .next()
    };
    let container = agent_of(from).expect("the first runner's agent container");
    assert!(agent_of(to).is_none(), "the other runner runs it too");
    // State the agent made: it must survive the move.
    ok(&mut docker(&[
        "exec",
        &container,
        "sh",
        "-c",
        "echo carried-over > /home/agent-state-marker || echo carried-over > /var/tmp/agent-state-marker",
    ]));

    let out = ok(&mut cluster.bbctl(&[
        "controller",
        "drain",
        &from.id,
        "--wait",
        "--timeout",
        "300",
    ]));
    assert!(out.contains("holds no Agent"), "{out}");
    wait_until(
        "the Agent running on the other runner",
        Duration::from_secs(600),
        || running_on(&cluster).is_some_and(|r| r == to.id),
        logs,
    );
    let snapshot =
        ok(&mut cluster.kubectl(&["get", "agent", "mover", "-o", "jsonpath={.status.snapshot}"]));
    assert!(
        !snapshot.trim().is_empty(),
        "the release recorded no snapshot"
    );
    assert!(
        containers_with(&instance(from)).is_empty(),
        "the drained runner left containers: {:?}",
        containers_with(&instance(from))
    );
    let moved = agent_of(to).expect("the second runner's agent container");
    let image = ok(&mut docker(&["inspect", "-f", "{{.Config.Image}}", &moved]));
    assert_eq!(
        image.trim(),
        snapshot.trim(),
        "the new container did not start from the snapshot"
    );
    let marker = run(&mut docker(&[
        "exec",
        &moved,
        "sh",
        "-c",
        "cat /home/agent-state-marker 2>/dev/null || cat /var/tmp/agent-state-marker",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&marker.stdout).trim(),
        "carried-over",
        "what the agent wrote did not move with it"
    );

    // Deleting it on its new runner removes the copy and the snapshot.
    ok(&mut cluster.kubectl(&["delete", "agent", "mover", "--timeout=120s"]));
    assert!(
        containers_with(&instance(to)).is_empty(),
        "containers left after delete"
    );
    assert!(
        !run(&mut docker(&["image", "inspect", snapshot.trim()]))
            .status
            .success(),
        "the snapshot outlived its Agent"
    );
}
