//! Cluster mode with three runner processes (fake backend) syncing from one control plane that
//! stands in for the cluster: 30 Agents spread so each runs exactly once, a killed runner's
//! Agents move within the Lease timeout, and a drained runner hands its Agents over one at a
//! time. "Runs once" is judged on the runners' own journals, not only on status.

use std::collections::BTreeMap;
use std::time::Duration;

use bb_e2e::cluster::{
    Cluster, RunnerProc, bottle_and_agents, now_ms, overlaps, read_journals, stints,
};
use bb_e2e::rbac::{Request, allows, grants, permissions};
use bb_e2e::wait_until;
use bb_e2e::{ok, run, workspace_root};

const AGENTS: usize = 30;

/// The suites that start runner processes take turns: their timings are about Leases, not
/// about two rigs sharing two cores.
static ONE_RIG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_rig() -> std::sync::MutexGuard<'static, ()> {
    ONE_RIG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Each Agent runs exactly once now, on the runner its status names, and never ran on two
/// runners at the same time.
fn assert_runs_once(
    cluster: &Cluster,
    journals: &[std::path::PathBuf],
    killed: &BTreeMap<String, i64>,
    count: usize,
) {
    let journals: Vec<&std::path::Path> = journals.iter().map(|j| j.as_path()).collect();
    let all = stints(&read_journals(&journals), killed);
    let twice = overlaps(&all);
    assert!(
        twice.is_empty(),
        "an Agent ran on two runners at once: {twice:#?}"
    );
    let agents = cluster.agents();
    assert_eq!(agents.len(), count);
    for (name, (phase, runner)) in &agents {
        let running: Vec<_> = all
            .iter()
            .filter(|s| s.agent == format!("default/{name}") && s.to.is_none())
            .collect();
        assert_eq!(
            running.len(),
            1,
            "{name} runs {} times: {running:?}",
            running.len()
        );
        assert_eq!(
            &running[0].runner, runner,
            "{name}: status says {runner}, the journals {}",
            running[0].runner
        );
        assert_eq!(phase, "Running", "{name}");
    }
}

#[test]
fn three_runners_share_move_and_drain_agents_running_each_exactly_once() {
    let _rig = one_rig();
    let cluster = Cluster::start();
    let mut runners: Vec<RunnerProc> = (0..3).map(|_| RunnerProc::start(&cluster, &[])).collect();
    let logs = |rs: &[RunnerProc]| {
        rs.iter()
            .map(|r| format!("--- runner {} ---\n{}", r.id, r.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The runners announce themselves before any Agent exists.
    wait_until(
        "three ready runners",
        Duration::from_secs(30),
        || {
            let out = String::from_utf8_lossy(&run(&mut cluster.bbctl(&["get", "runners"])).stdout)
                .into_owned();
            runners.iter().all(|r| {
                out.lines()
                    .any(|l| l.starts_with(&r.id) && l.contains(" Ready "))
            })
        },
        || logs(&runners),
    );

    // A warm pool of a Bottle no Agent uses rides along: its members take places on the
    // runners, move off a killed or drained one, and leave with a stopping one.
    cluster.apply(&format!("{}{SPARE_POOL}", bottle_and_agents(AGENTS)));
    let all_running = |c: &Cluster| {
        let a = c.agents();
        a.len() == AGENTS
            && a.values()
                .all(|(phase, runner)| phase == "Running" && !runner.is_empty())
    };
    wait_until(
        "30 Agents running",
        Duration::from_secs(90),
        || all_running(&cluster),
        || logs(&runners),
    );
    let journals: Vec<std::path::PathBuf> = runners.iter().map(|r| r.journal.clone()).collect();
    let ids: Vec<String> = runners.iter().map(|r| r.id.clone()).collect();
    wait_until(
        "a spare member on each runner",
        Duration::from_secs(60),
        || spare_members_on(&cluster, &ids),
        || logs(&runners),
    );
    assert_runs_once(&cluster, &journals, &BTreeMap::new(), AGENTS);
    let held = |c: &Cluster, id: &str| c.agents().values().filter(|(_, r)| r == id).count();
    for r in &runners {
        let n = held(&cluster, &r.id);
        assert!(
            (5..=15).contains(&n),
            "runner {} holds {n} of {AGENTS}: not spread",
            r.id
        );
    }
    let table = ok(&mut cluster.bbctl(&["get", "runners"]));
    for r in &runners {
        let row = table
            .lines()
            .find(|l| l.starts_with(&r.id))
            .unwrap_or_else(|| panic!("{} not in\n{table}", r.id));
        assert!(
            row.contains(&format!(" {} ", held(&cluster, &r.id))),
            "AGENTS column wrong: {row}"
        );
    }

    // kill -9: the runner records nothing more; its Agents move once its Lease has lapsed.
    let victim = runners[0].id.clone();
    let moved = cluster.held_by(&victim);
    runners[0].kill();
    let took = wait_until(
        "the killed runner's Agents running elsewhere",
        Duration::from_secs(45),
        || {
            let journals: Vec<&std::path::Path> = journals.iter().map(|j| j.as_path()).collect();
            cluster.started_elsewhere(&journals, &moved, &victim)
        },
        || logs(&runners),
    );
    assert!(
        took < Duration::from_secs(15 + 10),
        "hand-over took {took:?}: more than the Lease duration plus a start"
    );
    eprintln!(
        "hand-over of {} Agents after kill -9: {took:?}",
        moved.len()
    );
    // The fence came first: the killed runner's hold on each moved Agent's sidecar ended (its
    // last deadline passed) before the Agent started anywhere else.
    let uids = cluster.uids();
    let records = read_journals(&journals.iter().map(|j| j.as_path()).collect::<Vec<_>>());
    let mut margins = Vec::new();
    let mut fenced_at = 0;
    for n in &moved {
        let file = runners[0]
            .home
            .path()
            .join("holds")
            .join(&uids[n])
            .join("deadline");
        let deadline: i64 = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{n}: no hold was kept ({}: {e})", file.display()))
            .trim()
            .parse()
            .expect("a deadline in ms");
        let agent = format!("default/{n}");
        let started = records
            .iter()
            .find(|r| r.agent == agent && r.start && r.runner != victim)
            .unwrap_or_else(|| panic!("{n} never started elsewhere"))
            .at_ms;
        assert!(
            deadline < started,
            "{n} started elsewhere at {started} while the killed runner's hold ran until {deadline}"
        );
        margins.push(started - deadline);
        fenced_at = fenced_at.max(deadline);
    }
    eprintln!(
        "fence before hand-over: {} ms at least",
        margins.iter().min().copied().unwrap_or_default()
    );
    // The killed runner's copies count as running until their holds ended, not until the kill:
    // that is when a real copy stops acting.
    let killed = BTreeMap::from([(victim.clone(), fenced_at)]);
    assert_runs_once(&cluster, &journals, &killed, AGENTS);
    wait_until(
        "the killed runner's spare member replaced",
        Duration::from_secs(60),
        || spare_members_on(&cluster, &ids[1..]),
        || logs(&runners),
    );

    // Drain: the runner releases its Agents one at a time; the last runner takes them all.
    let (drained, last) = (runners[1].id.clone(), runners[2].id.clone());
    let draining = cluster.held_by(&drained);
    assert!(!draining.is_empty());
    let out = ok(&mut cluster.bbctl(&[
        "controller",
        "drain",
        &drained,
        "--wait",
        "--timeout",
        "120",
    ]));
    assert!(out.contains("holds no Agent"), "{out}");
    wait_until(
        "the spare members on the last runner alone",
        Duration::from_secs(60),
        || spare_members_on(&cluster, &ids[2..]),
        || logs(&runners),
    );
    wait_until(
        "every Agent on the last runner",
        Duration::from_secs(30),
        || {
            let a = cluster.agents();
            a.values().all(|(p, r)| p == "Running" && *r == last)
        },
        || logs(&runners),
    );
    let table = ok(&mut cluster.bbctl(&["get", "runners"]));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&drained) && l.contains("Draining")),
        "{table}"
    );
    assert_runs_once(&cluster, &journals, &killed, AGENTS);
    // One at a time: no two of the drained Agents were down at once, and none for long.
    let records = read_journals(&[runners[1].journal.as_path(), runners[2].journal.as_path()]);
    let mut gaps: Vec<(i64, i64)> = draining
        .iter()
        .map(|n| {
            let agent = format!("default/{n}");
            let stop = records
                .iter()
                .rfind(|r| r.agent == agent && !r.start && r.runner == drained)
                .unwrap_or_else(|| panic!("{n} never stopped on the drained runner"))
                .at_ms;
            let start = records
                .iter()
                .find(|r| r.agent == agent && r.start && r.runner == last && r.at_ms >= stop)
                .unwrap_or_else(|| panic!("{n} never started on the last runner after it stopped"))
                .at_ms;
            (stop, start)
        })
        .collect();
    gaps.sort();
    for w in gaps.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two drained Agents were down at once: {w:?}"
        );
    }
    let longest = gaps.iter().map(|(a, b)| b - a).max().unwrap_or(0);
    assert!(
        longest < 5_000,
        "an Agent was down {longest} ms during the drain"
    );
    eprintln!(
        "drain moved {} Agents; longest gap {longest} ms",
        gaps.len()
    );

    // Sessions reach an Agent on its runner with the cluster's credentials: the runner asks
    // the cluster who the caller is and whether it may exec (TokenReview, SubjectAccessReview).
    let mut exec = std::process::Command::new(bb_e2e::workspace_bin("bbctl"));
    exec.args(["exec", "agent/agent-001", "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .args(["--", "echo", "hello-through-the-runner"]);
    let said = ok(&mut exec);
    assert_eq!(said.trim(), "hello-through-the-runner");
    let endpoint = ok(&mut cluster.kubectl(&[
        "get",
        "agent",
        "agent-001",
        "-o",
        "jsonpath={.status.sessionEndpoint}",
    ]));
    let ca_file = runners[2].home.path().join("published-session-ca.pem");
    let ca = ok(&mut cluster.kubectl(&[
        "get",
        "lease",
        &format!("runner-{last}"),
        "-n",
        "bot-bottle-system",
        "-o",
        "jsonpath={.metadata.annotations.bot-bottle\\.dev/session-ca}",
    ]));
    // The Lease is readable by anyone who may list runners: it carries the certificate only.
    assert!(
        ca.contains("BEGIN CERTIFICATE") && !ca.contains("PRIVATE KEY"),
        "the published session CA: {ca}"
    );
    std::fs::write(&ca_file, ca).expect("write the CA");
    let log_url = format!(
        "{}/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents/agent-001/log",
        endpoint.trim()
    );
    let code_with = |token: &str| {
        let out = run(std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca_file)
            .args(["-H", &format!("Authorization: Bearer {token}"), &log_url]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cluster_token = std::fs::read_to_string(cluster.home.path().join("token")).expect("token");
    assert_eq!(
        code_with(cluster_token.trim()),
        "200",
        "the cluster's own credentials"
    );
    assert_eq!(
        code_with("not-a-token-the-cluster-knows"),
        "401",
        "an unknown token"
    );

    // A proposal raised in the last runner's Agent becomes a Proposal; a rejection is answered;
    // deleting the Agent removes its copy and its Proposals (the runner's cleanup).
    let uid = ok(&mut cluster.kubectl(&[
        "get",
        "agent",
        "agent-000",
        "-o",
        "jsonpath={.metadata.uid}",
    ]));
    let queue = std::env::temp_dir()
        .join(format!(
            "bb-fake-queue-{}",
            runners[2].pid().expect("running")
        ))
        .join(uid.trim())
        .join("queue");
    std::fs::create_dir_all(&queue).expect("queue dir");
    let proposal = serde_json::json!({
        "id": "allow-1", "tool": "allow", "proposedFile": "routes:\n- host: example.org\n",
        "justification": "docs", "arrivalTimestamp": "2026-11-30T00:00:00Z",
    });
    std::fs::write(queue.join("allow-1.proposal.json"), proposal.to_string()).expect("proposal");
    wait_until(
        "the Proposal",
        Duration::from_secs(30),
        || {
            run(&mut cluster.kubectl(&["get", "proposal", "agent-000-allow-1"]))
                .status
                .success()
        },
        || runners[2].log(),
    );
    ok(&mut cluster.bbctl(&[
        "reject",
        "proposal/agent-000-allow-1",
        "--reason",
        "not now",
    ]));
    wait_until(
        "the rejection answered in the queue",
        Duration::from_secs(30),
        || queue.join("allow-1.response.json").exists(),
        || runners[2].log(),
    );
    ok(&mut cluster.kubectl(&["delete", "agent", "agent-000", "--timeout=60s"]));
    assert!(
        !run(&mut cluster.kubectl(&["get", "proposal", "agent-000-allow-1"]))
            .status
            .success(),
        "the deleted Agent's Proposal is still there"
    );
    let journal = read_journals(&[runners[2].journal.as_path()]);
    assert!(
        journal.last().is_some_and(|r| !r.start),
        "the deleted Agent's copy was not stopped"
    );

    // spec.lifecycle.ttl: the runner that holds the Agent deletes it (the role's `delete
    // agents`), and its copy goes with it.
    cluster.apply(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: expiring}\nspec: {bottleRef: {name: tools}, lifecycle: {ttl: 4s}}\n",
    );
    wait_until(
        "the ttl to delete its Agent",
        Duration::from_secs(60),
        || {
            !run(&mut cluster.kubectl(&["get", "agent", "expiring"]))
                .status
                .success()
        },
        || runners[2].log(),
    );

    // Deleting the pool removes its members from the runner running them before it is gone.
    ok(&mut cluster.kubectl(&["delete", "agentpool", "spare", "--timeout=60s"]));
    let open_spares = stints(
        &read_journals(&[runners[2].journal.as_path()]),
        &BTreeMap::new(),
    )
    .into_iter()
    .filter(|s| s.to.is_none() && s.agent.starts_with("default/spare-"))
    .count();
    assert_eq!(open_spares, 0, "the deleted pool left members running");

    // SIGTERM: the last runner releases everything on its way out, claims none of it back,
    // and its journal closes every stint (nothing is left running behind it).
    runners[2].stop();
    let agents = cluster.agents();
    assert!(
        agents.values().all(|(p, r)| r.is_empty() && p == "Pending"),
        "after SIGTERM some Agents are still held: {agents:?}\n{}",
        runners[2].log()
    );
    let records = read_journals(&[runners[2].journal.as_path()]);
    let open = stints(&records, &BTreeMap::new())
        .into_iter()
        .filter(|s| s.to.is_none())
        .count();
    assert_eq!(open, 0, "a stopped runner left {open} Agents running");

    assert_runner_role_is_exactly_what_runners_used(&cluster);
    // The request log names who asked for what, never a credential: not the token the reviews
    // carried in their bodies, not the Secret the runners read.
    let audit =
        std::fs::read_to_string(cluster.home.path().join("audit.jsonl")).expect("audit log");
    assert!(
        audit.contains("tokenreviews"),
        "the reviews were not logged"
    );
    for secret in [cluster_token.trim(), "s3cret-value"] {
        assert!(!audit.contains(secret), "the audit log holds a credential");
    }
}

/// A Bottle like `tools` and a pool of 3 of it.
const SPARE_POOL: &str = "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: spare}\nspec:\n  agentProvider: {template: custom, image: 'agent:1', command: [bash]}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: AgentPool\nmetadata: {name: spare}\nspec: {bottleRef: {name: spare}, size: 3}\n";

/// The spare pool is full, spread over `runners` alone as evenly as 3 goes.
fn spare_members_on(cluster: &Cluster, runners: &[String]) -> bool {
    let ms = cluster.pool_members("spare");
    let each: Vec<usize> = runners
        .iter()
        .map(|id| ms.iter().filter(|(_, r, _)| r == id).count())
        .collect();
    ms.len() == 3
        && ms.iter().all(|(_, r, ready)| *ready && runners.contains(r))
        && each
            .iter()
            .max()
            .zip(each.iter().min())
            .is_some_and(|(hi, lo)| hi - lo <= 1)
}

/// The chart's objects rendered with its default values; each must parse into its type.
fn chart_objects() -> Vec<serde_json::Value> {
    let rendered = bb_e2e::chart::render(&workspace_root().join("charts/bot-bottle"))
        .expect("render the chart");
    for r in &rendered {
        if let Err(e) = bb_e2e::chart::check_typed(&r.object) {
            panic!("{}: {e}", r.template);
        }
    }
    rendered.into_iter().map(|r| r.object).collect()
}

/// Least privilege, both ways: the runner role allows every request the runners made, and
/// each permission it grants was used by some request.
fn assert_runner_role_is_exactly_what_runners_used(cluster: &Cluster) {
    let objects = chart_objects();
    let grants = grants(&objects, "bot-bottle-runner", "bot-bottle-system");
    assert!(
        !grants.is_empty(),
        "nothing is bound to the runner ServiceAccount"
    );
    let requests: std::collections::BTreeSet<Request> = cluster
        .runner_requests()
        .iter()
        .map(Request::from_audit)
        .collect();
    assert!(
        requests.len() > 10,
        "too few runner requests recorded: {requests:?}"
    );
    let denied: Vec<&Request> = requests
        .iter()
        .filter(|r| !grants.iter().any(|g| allows(g, r)))
        .collect();
    assert!(
        denied.is_empty(),
        "the runner role denies requests runners made: {denied:#?}"
    );
    let unused: Vec<String> = grants
        .iter()
        .flat_map(permissions)
        .filter(|(_, p)| {
            !requests.iter().any(|r| {
                r.verb == p.verb
                    && r.api_group == p.api_group
                    && r.resource == p.resource
                    && r.subresource == p.subresource
                    && (p.namespace.is_none() || r.namespace == p.namespace)
            })
        })
        .map(|(label, _)| label)
        .collect();
    assert!(
        unused.is_empty(),
        "the runner role grants what no runner used: {unused:#?}"
    );
}

#[test]
fn the_chart_renders_typed_objects_and_a_token_for_the_runner() {
    let objects = chart_objects();
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "ServiceAccount",
        "Secret",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ] {
        assert!(kinds.contains(&k), "no {k} in {kinds:?}");
    }
    let token = objects
        .iter()
        .find(|o| o["kind"] == "Secret")
        .expect("token Secret");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "bot-bottle-runner"
    );
    assert_eq!(token["metadata"]["namespace"], "bot-bottle-system");
    // Nothing that could touch workloads or read Secrets cluster-wide.
    for g in grants(&objects, "bot-bottle-runner", "bot-bottle-system") {
        for (label, p) in permissions(&g) {
            assert!(
                !(p.resource == "secrets" && p.namespace.is_none()),
                "cluster-wide Secrets access: {label}"
            );
            assert!(
                ![&p.verb, &p.api_group, &p.resource]
                    .iter()
                    .any(|f| f.contains('*')),
                "a wildcard: {label}"
            );
        }
    }
}

/// A runner cut off from the cluster (its own network namespace, the route to the API
/// blackholed) stops its Agents within the fence, before its Lease can lapse for the others;
/// they then start them, so no Agent ever runs twice (judged on the runners' journals); healed,
/// it rejoins holding nothing.
#[test]
fn a_partitioned_runner_fences_before_its_agents_move() {
    const N: usize = 12;
    let _rig = one_rig();
    let net = bb_e2e::cluster::Netns::create();
    let cluster = Cluster::start_on(&format!("{}:0", net.host_ip));
    let runners = [
        RunnerProc::start(&cluster, &[]),
        RunnerProc::start(&cluster, &[]),
        RunnerProc::start_in(&cluster, Some(&net.name), &[]),
    ];
    let logs = || {
        runners
            .iter()
            .map(|r| format!("--- runner {} ---\n{}", r.id, r.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ready = |id: &str| {
        let out = String::from_utf8_lossy(&run(&mut cluster.bbctl(&["get", "runners"])).stdout)
            .into_owned();
        out.lines()
            .any(|l| l.starts_with(id) && l.contains(" Ready "))
    };
    wait_until(
        "three ready runners",
        Duration::from_secs(30),
        || runners.iter().all(|r| ready(&r.id)),
        logs,
    );
    cluster.apply(&bottle_and_agents(N));
    wait_until(
        "the Agents running",
        Duration::from_secs(60),
        || {
            let a = cluster.agents();
            a.len() == N && a.values().all(|(p, r)| p == "Running" && !r.is_empty())
        },
        logs,
    );
    let journals: Vec<std::path::PathBuf> = runners.iter().map(|r| r.journal.clone()).collect();
    assert_runs_once(&cluster, &journals, &BTreeMap::new(), N);
    let cut_off = runners[2].id.clone();
    let stranded = cluster.held_by(&cut_off);
    assert!(!stranded.is_empty(), "the runner to cut off holds nothing");

    net.cut();
    let cut_at = now_ms();
    let took = wait_until(
        "the cut-off runner's Agents running elsewhere",
        Duration::from_secs(45),
        || {
            let journals: Vec<&std::path::Path> = journals.iter().map(|j| j.as_path()).collect();
            cluster.started_elsewhere(&journals, &stranded, &cut_off)
        },
        logs,
    );
    eprintln!(
        "hand-over of {} Agents from a partitioned runner: {took:?}",
        stranded.len()
    );
    // The cut-off runner stopped each of them itself, within the fence, with no API to ask.
    let records = read_journals(&[runners[2].journal.as_path()]);
    for n in &stranded {
        let stop = records
            .iter()
            .rfind(|r| r.agent == format!("default/{n}") && !r.start)
            .unwrap_or_else(|| {
                panic!("the cut-off runner never stopped {n}\n{}", runners[2].log())
            });
        assert!(
            stop.at_ms - cut_at < 13_000,
            "{n} stopped {} ms after the cut: later than the fence",
            stop.at_ms - cut_at
        );
    }
    assert_runs_once(&cluster, &journals, &BTreeMap::new(), N);

    net.heal();
    wait_until(
        "the healed runner renewing again",
        Duration::from_secs(30),
        || ready(&cut_off),
        logs,
    );
    // Back, it claims again (a new Agent goes to the runner holding fewest: it), and of the
    // Agents that moved away none comes back or runs twice.
    cluster.apply(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: late}\nspec: {bottleRef: {name: tools}}\n",
    );
    wait_until(
        "the healed runner running a new Agent",
        Duration::from_secs(30),
        || {
            cluster
                .agents()
                .get("late")
                .is_some_and(|(p, r)| p == "Running" && *r == cut_off)
        },
        logs,
    );
    assert_eq!(
        cluster.held_by(&cut_off),
        ["late"],
        "the healed runner holds more"
    );
    let open: Vec<String> = stints(
        &read_journals(&[runners[2].journal.as_path()]),
        &BTreeMap::new(),
    )
    .into_iter()
    .filter(|s| s.to.is_none())
    .map(|s| s.agent)
    .collect();
    assert_eq!(open, ["default/late"], "the healed runner runs more");
    assert_runs_once(&cluster, &journals, &BTreeMap::new(), N + 1);
}

/// A runner takes only Agents whose `spec.runnerSelector` its labels match, and never more than
/// its `--capacity`; an Agent no runner may take stays unclaimed, and says so nowhere else.
#[test]
fn selectors_and_capacity_decide_who_runs_what() {
    let _rig = one_rig();
    let cluster = Cluster::start();
    let a = RunnerProc::start(&cluster, &["--runner-label", "zone=a", "--capacity", "2"]);
    let b = RunnerProc::start(
        &cluster,
        &["--runner-label", "zone=b", "--runner-label", "gpu=yes"],
    );
    let logs = || format!("--- a ---\n{}\n--- b ---\n{}", a.log(), b.log());
    let mut y = bottle_and_agents(0);
    for (name, selector) in [
        ("za-1", "{zone: a}"),
        ("za-2", "{zone: a}"),
        ("za-3", "{zone: a}"),
        ("zb-gpu", "{zone: b, gpu: 'yes'}"),
        ("nowhere", "{zone: c}"),
    ] {
        y.push_str(&format!(
            "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {name}}}\nspec: {{bottleRef: {{name: tools}}, runnerSelector: {selector}}}\n"
        ));
    }
    cluster.apply(&y);
    wait_until(
        "two zone-a Agents on a and the gpu one on b",
        Duration::from_secs(60),
        || {
            let ag = cluster.agents();
            let on = |id: &str| {
                ag.iter()
                    .filter(|(_, (p, r))| r == id && p == "Running")
                    .count()
            };
            on(&a.id) == 2
                && ag
                    .get("zb-gpu")
                    .is_some_and(|(p, r)| p == "Running" && *r == b.id)
        },
        logs,
    );
    // Give a wrong claim time to happen before judging that none did.
    std::thread::sleep(Duration::from_secs(5));
    let ag = cluster.agents();
    let za: Vec<String> = ["za-1", "za-2", "za-3"]
        .iter()
        .map(|n| ag[*n].1.clone())
        .collect();
    assert_eq!(
        za.iter().filter(|r| **r == a.id).count(),
        2,
        "capacity 2: {ag:?}"
    );
    assert_eq!(
        za.iter().filter(|r| r.is_empty()).count(),
        1,
        "the third zone-a Agent waits: {ag:?}"
    );
    assert!(
        !za.iter().any(|r| **r == b.id),
        "b ran a zone-a Agent: {ag:?}"
    );
    assert_eq!(
        ag["nowhere"].1, "",
        "an Agent no runner matches was claimed: {ag:?}"
    );
    let wide = ok(&mut cluster.bbctl(&["get", "runners", "-o", "wide"]));
    let row = |id: &str| {
        wide.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row(&a.id).contains(" 2 ") && row(&a.id).contains("zone=a"),
        "{wide}"
    );
    assert!(row(&b.id).contains("gpu=yes,zone=b"), "{wide}");
}

/// Open stints (what runs now, by the journals) of `runner`, by runtime name.
fn running_on(journals: &[&std::path::Path], runner: &str) -> Vec<String> {
    let mut names: Vec<String> = stints(&read_journals(journals), &BTreeMap::new())
        .into_iter()
        .filter(|s| s.to.is_none() && s.runner == runner)
        .map(|s| s.agent.trim_start_matches("default/").to_string())
        .collect();
    names.sort();
    names
}

/// Warm pools across runners: members spread over the runners, each started only by its own
/// runner (as its journal says); a new Agent runs where a ready member of its Bottle runs, in
/// that member; a killed runner's members are replaced on the others and the Agent that ran in
/// one starts its own bottle there; a stopping runner takes its members with it.
#[test]
fn warm_pool_members_spread_over_runners_and_agents_claim_where_theirs_run() {
    let _rig = one_rig();
    let cluster = Cluster::start();
    let mut a = RunnerProc::start(&cluster, &[]);
    let mut b = RunnerProc::start(&cluster, &[]);
    let logs =
        |a: &RunnerProc, b: &RunnerProc| format!("--- a ---\n{}\n--- b ---\n{}", a.log(), b.log());
    let journals = [a.journal.clone(), b.journal.clone()];
    let journals: Vec<&std::path::Path> = journals.iter().map(|j| j.as_path()).collect();
    cluster.apply(&format!(
        "{}---\napiVersion: bot-bottle.dev/v1alpha1\nkind: AgentPool\nmetadata: {{name: warm}}\nspec: {{bottleRef: {{name: tools}}, size: 4}}\n",
        bottle_and_agents(0)
    ));
    let full_on = |runners: &[&str]| {
        let ms = cluster.pool_members("warm");
        ms.len() == 4
            && ms
                .iter()
                .all(|(_, r, ready)| *ready && runners.contains(&r.as_str()))
            && runners
                .iter()
                .all(|id| ms.iter().filter(|(_, r, _)| r == id).count() == 4 / runners.len())
    };
    wait_until(
        "4 ready members, 2 on each runner",
        Duration::from_secs(60),
        || full_on(&[&a.id, &b.id]),
        || logs(&a, &b),
    );
    // Each member runs exactly where the pool says, and nothing else runs.
    let members = cluster.pool_members("warm");
    for id in [&a.id, &b.id] {
        let said: Vec<String> = members
            .iter()
            .filter(|(_, r, _)| r == id)
            .map(|(n, _, _)| n.clone())
            .collect();
        assert_eq!(running_on(&journals, id), said, "runner {id}");
    }

    // Two Agents of the Bottle: each runs in a member, held by the member's runner.
    cluster.apply(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: p-1}\nspec: {bottleRef: {name: tools}}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: p-2}\nspec: {bottleRef: {name: tools}}\n",
    );
    wait_until(
        "both Agents running in members",
        Duration::from_secs(60),
        || {
            let ag = cluster.agents();
            ["p-1", "p-2"].iter().all(|n| {
                ag.get(*n).is_some_and(|(p, _)| p == "Running") && cluster.bottle_copy(n).is_some()
            })
        },
        || logs(&a, &b),
    );
    let ag = cluster.agents();
    let mut copies = Vec::new();
    for n in ["p-1", "p-2"] {
        let copy = cluster.bottle_copy(n).expect("a member");
        let (_, was_on, _) = members
            .iter()
            .find(|(m, _, _)| *m == copy)
            .unwrap_or_else(|| panic!("{n} runs in {copy}, not a member of {members:?}"));
        assert_eq!(&ag[n].1, was_on, "{n} is held where its member ran");
        assert!(
            running_on(&journals, was_on).contains(&copy),
            "{n}'s member {copy} is not running on {was_on}"
        );
        copies.push(copy);
    }
    assert_ne!(copies[0], copies[1], "two Agents in one member");
    for n in ["p-1", "p-2"] {
        assert!(
            !read_journals(&journals)
                .iter()
                .any(|r| r.agent == format!("default/{n}")),
            "{n} started a bottle of its own"
        );
    }
    wait_until(
        "the pool refilled",
        Duration::from_secs(60),
        || full_on(&[&a.id, &b.id]),
        || logs(&a, &b),
    );

    // kill -9 a: once its Lease lapses, its members are replaced on b, and an Agent it held
    // runs its own bottle on b.
    let held_by_a: Vec<String> = ["p-1", "p-2"]
        .iter()
        .filter(|n| cluster.agents()[**n].1 == a.id)
        .map(|n| n.to_string())
        .collect();
    a.kill();
    wait_until(
        "the pool full on b alone",
        Duration::from_secs(60),
        || full_on(&[&b.id]),
        || logs(&a, &b),
    );
    wait_until(
        "a's Agents running on b",
        Duration::from_secs(60),
        || {
            cluster.started_elsewhere(&journals, &held_by_a, &a.id)
                && held_by_a.iter().all(|n| cluster.bottle_copy(n).is_none())
        },
        || {
            let y = String::from_utf8_lossy(
                &run(&mut cluster.kubectl(&[
                    "get",
                    "agents",
                    "-o",
                    "yaml",
                    "--show-managed-fields",
                ]))
                .stdout,
            )
            .into_owned();
            format!("{y}\n{}", logs(&a, &b))
        },
    );
    let on_b = running_on(&journals, &b.id);
    for n in &held_by_a {
        assert!(
            on_b.contains(n),
            "{n} has no bottle of its own on b: {on_b:?}"
        );
    }
    let kept: Vec<String> = cluster
        .pool_members("warm")
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    for m in &kept {
        assert!(on_b.contains(m), "member {m} is not running on b: {on_b:?}");
    }

    // SIGTERM: b releases its Agents and takes its members out of the pool with it.
    b.stop();
    assert_eq!(cluster.pool_members("warm"), vec![], "{}", b.log());
    assert_eq!(running_on(&journals[1..], &b.id), Vec::<String>::new());
}
