//! Cluster mode on a real Docker engine: two runners sync from one control plane standing in for
//! the cluster. Draining the one that runs an Agent hands the Agent to the other with its
//! snapshot, so what the agent wrote survives the move, and nothing is left on the first; killing
//! it outright leaves its copy running, fenced by its own sidecar before the Agent runs elsewhere.

use std::time::Duration;

use bb_e2e::cluster::{Cluster, RunnerProc};
use bb_e2e::wait_until;
use bb_e2e::{
    UPSTREAM_PY, containers_with, docker, ensure_base_image, ok, remove_all_with, run, test_pki,
};

fn instance(r: &RunnerProc) -> String {
    format!("bot-bottle.dev/controller={}", r.id)
}

/// The runner the Agent `name` is Running on, if it is Running.
fn running_on(c: &Cluster, name: &str) -> Option<String> {
    c.agents()
        .get(name)
        .filter(|(p, _)| p == "Running")
        .map(|(_, r)| r.clone())
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
    let running_on = |c: &Cluster| running_on(c, "mover");
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

/// What the agent's loop wrote per request: its number, when it was sent (ms since the epoch),
/// the final status, the CONNECT status and the refusal rule (empty when none).
#[derive(Debug)]
struct Try {
    sent_ms: i64,
    code: String,
    rule: String,
}

/// Tries the upstream every 100 ms from inside the agent, forever, logging each outcome.
const TRY_FOREVER: &str = r#"n=0
while :; do
  n=$((n+1)); t=$(date +%s%3N)
  r=$(curl -s -m 3 -o /dev/null -D - -w 'CODE %{http_code} %{http_connect}\n' \
      -H 'Authorization: Bearer egress-placeholder' "https://api.example.test/fence?n=$n" 2>/dev/null \
      | tr -d '\r' | awk 'tolower($1)=="x-bot-bottle-egress-rule:"{rule=$2} $1=="CODE"{code=$2"/"$3} END{print code" "rule}')
  echo "$n $t $r" >> /tmp/fence.log
  sleep 0.1
done"#;

fn tries(container: &str) -> Vec<Try> {
    let out = run(&mut docker(&["exec", container, "cat", "/tmp/fence.log"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, sent, code) = (f.next()?, f.next()?, f.next()?);
            Some(Try {
                sent_ms: sent.parse().ok()?,
                code: code.to_string(),
                rule: f.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The last tries, for a failure message.
fn last_tries(container: &str) -> String {
    let all = tries(container);
    format!("{:?}", &all[all.len().saturating_sub(10)..])
}

/// When the upstream received each request (the engine's timestamp of its log line), in ms.
fn arrivals(upstream: &str) -> Vec<i64> {
    let out = ok(&mut docker(&["logs", "--timestamps", upstream]));
    out.lines()
        .filter(|l| l.contains("/fence?n="))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond())
        .collect()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The runner holding an Agent is killed outright on a shared engine: its copy keeps running,
/// with its sidecar. From inside that orphan, requests keep being tried; the sidecar refuses them
/// on its own (`runner-lost`) once the dead runner's hold lapses, before the other runner runs
/// the Agent, so no request of the orphan reaches the upstream after that. The runner, restarted,
/// removes the orphan before it claims anything, and touches nothing of the other runner's.
#[test]
fn a_killed_runners_copy_is_fenced_before_its_agent_runs_elsewhere() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let ca_arg = ca_path.to_string_lossy().into_owned();
    let cluster = Cluster::start();
    let mut runners = [
        RunnerProc::docker_with(&cluster, &["--upstream-ca", &ca_arg]),
        RunnerProc::docker_with(&cluster, &["--upstream-ca", &ca_arg]),
    ];
    let _leftovers = Leftovers(runners.iter().map(instance).collect());
    let logs = |runners: &[RunnerProc]| {
        runners
            .iter()
            .map(|r| format!("--- runner {} ---\n{}", r.id, r.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    cluster.apply(&(bb_e2e::test_agent_bottle(
        "fenced",
        "  egress:\n    log: 1\n    routes:\n      - host: api.example.test\n",
    ) + "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: fenced}\nspec: {bottleRef: {name: fenced}}\n"));
    let running_on = |c: &Cluster| running_on(c, "fenced");
    wait_until(
        "the Agent running on a runner",
        Duration::from_secs(600),
        || running_on(&cluster).is_some_and(|r| !r.is_empty()),
        || logs(&runners),
    );
    let holder = running_on(&cluster).unwrap_or_default();
    let (victim, survivor) = if runners[0].id == holder {
        (0, 1)
    } else {
        (1, 0)
    };
    let of = |r: &RunnerProc, role: &str| {
        containers_with(&format!("{},bot-bottle.dev/role={role}", instance(r)))
    };
    let orphan = of(&runners[victim], "agent")
        .into_iter()
        .next()
        .expect("the holder's agent container");
    let sidecar = of(&runners[victim], "sidecar")
        .into_iter()
        .next()
        .expect("the holder's sidecar");
    assert!(
        of(&runners[survivor], "agent").is_empty(),
        "both runners run it"
    );
    // The hold is the runner's: read-only in the sidecar, absent from the agent.
    let mounts = |c: &str| {
        ok(&mut docker(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}",
            c,
        ]))
    };
    assert!(
        mounts(&sidecar).contains("/run/bot-bottle-hold:false"),
        "the sidecar's hold mount: {}",
        mounts(&sidecar)
    );
    assert!(
        !mounts(&orphan).contains("bot-bottle-hold"),
        "the agent sees the hold: {}",
        mounts(&orphan)
    );
    let egress = bb_e2e::networks_with(&format!(
        "{},bot-bottle.dev/role=egress-network",
        instance(&runners[victim])
    ));
    let upstream = bb_e2e::start_upstream(
        &format!("bb-e2e-upstream-fence-{}", std::process::id()),
        &egress[0],
        &["api.example.test"],
        UPSTREAM_PY,
        (&cert, &key),
    );
    ok(&mut docker(&[
        "exec",
        "-d",
        "-u",
        "1000",
        &orphan,
        "bash",
        "-c",
        TRY_FOREVER,
    ]));
    // Legitimate traffic first: the loop reaches the upstream while its runner holds it.
    wait_until(
        "requests reaching the upstream while the runner holds the Agent",
        Duration::from_secs(60),
        || {
            tries(&orphan)
                .iter()
                .filter(|t| t.code == "200/200")
                .count()
                >= 3
        },
        || format!("{}\n{}", last_tries(&orphan), logs(&runners)),
    );
    assert!(arrivals(&upstream.name).len() >= 3, "the upstream saw none");

    // kill -9: the runner's containers stay; its hold on the sidecar does not.
    let started = |c: &str| ok(&mut docker(&["inspect", "-f", "{{.State.StartedAt}}", c]));
    let sidecar_started = started(&sidecar);
    runners[victim].kill();
    let killed_ms = now_ms();
    wait_until(
        "the orphan's sidecar refusing with runner-lost",
        Duration::from_secs(30),
        || tries(&orphan).iter().any(|t| t.rule == "runner-lost"),
        || last_tries(&orphan),
    );
    wait_until(
        "the Agent running on the other runner",
        Duration::from_secs(120),
        || running_on(&cluster).is_some_and(|r| r == runners[survivor].id),
        || logs(&runners),
    );
    let running_ms = now_ms();
    // The orphan keeps trying after the hand-over (so its refusals are seen, not its silence).
    wait_until(
        "the orphan still trying after the hand-over",
        Duration::from_secs(30),
        || {
            tries(&orphan)
                .iter()
                .filter(|t| t.sent_ms > running_ms)
                .count()
                >= 5
        },
        || last_tries(&orphan),
    );
    let log = tries(&orphan);
    let first_refused = log
        .iter()
        .find(|t| t.rule == "runner-lost")
        .map(|t| t.sent_ms)
        .unwrap_or_default();
    let last_through = log
        .iter()
        .filter(|t| t.code == "200/200")
        .map(|t| t.sent_ms)
        .max()
        .unwrap_or_default();
    let last_arrival = arrivals(&upstream.name)
        .into_iter()
        .max()
        .unwrap_or_default();
    eprintln!(
        "fence: first refusal {} ms after kill -9; last request through sent {} ms after; last arrival upstream {} ms after; Running elsewhere {} ms after",
        first_refused - killed_ms,
        last_through - killed_ms,
        last_arrival - killed_ms,
        running_ms - killed_ms
    );
    assert!(
        log.iter()
            .filter(|t| t.sent_ms >= first_refused)
            .all(|t| t.rule == "runner-lost"),
        "a request got through after the fence: {log:?}"
    );
    assert!(
        last_arrival < running_ms && first_refused < running_ms,
        "the orphan reached the upstream after the Agent ran elsewhere: {log:?}"
    );
    // The sidecar that refused is the one that was running: not a restarted one.
    assert_eq!(
        started(&sidecar),
        sidecar_started,
        "the orphan's sidecar restarted"
    );

    // Restarted, the killed runner removes its orphan, and nothing of the other runner's.
    let survivor_agent = of(&runners[survivor], "agent");
    assert_eq!(survivor_agent.len(), 1, "the survivor's copy");
    runners[victim].spawn();
    wait_until(
        "the restarted runner removing its orphan",
        Duration::from_secs(60),
        || containers_with(&instance(&runners[victim])).is_empty(),
        || logs(&runners),
    );
    assert_eq!(
        of(&runners[survivor], "agent"),
        survivor_agent,
        "the survivor's copy was touched"
    );
    assert_eq!(
        running_on(&cluster).as_deref(),
        Some(runners[survivor].id.as_str())
    );
    drop(upstream);
    ok(&mut cluster.kubectl(&["delete", "agent", "fenced", "--timeout=120s"]));
}

/// The deadline (ms) in a hold file, 0 when there is none.
fn deadline(file: &std::path::Path) -> i64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A warm pool on a Docker runner in cluster mode: its member's sidecar is held like an Agent's
/// (the runner renews its hold file from the heartbeat), an Agent claims the member in its
/// running container, and a stopping runner leaves nothing: the Agent released, the member
/// started in the claimed one's place withdrawn.
#[test]
fn a_docker_runners_warm_member_is_held_claimed_in_place_and_withdrawn() {
    ensure_base_image();
    let cluster = Cluster::start();
    let mut runner = RunnerProc::docker(&cluster);
    let _leftovers = Leftovers(vec![instance(&runner)]);
    let log_path = runner.log_path();
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();
    cluster.apply(&(bb_e2e::test_agent_bottle("warmers", "") + "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: AgentPool\nmetadata: {name: warm}\nspec: {bottleRef: {name: warmers}, size: 1}\n"));
    wait_until(
        "a ready member on the runner",
        Duration::from_secs(600),
        || {
            let ms = cluster.pool_members("warm");
            ms.len() == 1 && ms[0].2 && ms[0].1 == runner.id
        },
        logs,
    );
    let member = cluster.pool_members("warm")[0].0.clone();
    let uid = ok(&mut cluster.kubectl(&[
        "get",
        "agentpool",
        "warm",
        "-o",
        "jsonpath={.status.members[0].uid}",
    ]));
    let hold = runner
        .home
        .path()
        .join("holds")
        .join(uid.trim())
        .join("deadline");
    let first = deadline(&hold);
    assert!(
        first > 0,
        "the member's sidecar has no hold: {}",
        hold.display()
    );
    wait_until(
        "the member's hold renewed",
        Duration::from_secs(30),
        || deadline(&hold) > first,
        logs,
    );
    let agent_of_member = || {
        containers_with(&format!(
            "{},bot-bottle.dev/agent-uid={},bot-bottle.dev/role=agent",
            instance(&runner),
            uid.trim()
        ))
    };
    let container = agent_of_member();
    assert_eq!(container.len(), 1, "the member's agent container");

    cluster.apply("apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: claimer}\nspec: {bottleRef: {name: warmers}}\n");
    wait_until(
        "the Agent running in the member",
        Duration::from_secs(120),
        || {
            running_on(&cluster, "claimer").is_some_and(|r| r == runner.id)
                && cluster.bottle_copy("claimer").as_deref() == Some(member.as_str())
        },
        logs,
    );
    assert_eq!(
        agent_of_member(),
        container,
        "the claim made a new container"
    );
    let renewed = deadline(&hold);
    wait_until(
        "the claimed member's hold renewed",
        Duration::from_secs(30),
        || deadline(&hold) > renewed,
        logs,
    );
    wait_until(
        "a new member in the claimed one's place",
        Duration::from_secs(600),
        || {
            let ms = cluster.pool_members("warm");
            ms.len() == 1 && ms[0].2 && ms[0].0 != member
        },
        logs,
    );

    runner.stop();
    assert_eq!(
        cluster.pool_members("warm"),
        vec![],
        "the stopped runner's member is still in the pool"
    );
    assert!(
        containers_with(&instance(&runner)).is_empty(),
        "the stopped runner left containers: {:?}",
        containers_with(&instance(&runner))
    );
}
