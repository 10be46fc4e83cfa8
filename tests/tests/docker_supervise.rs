//! Supervise end to end on Docker: an agent refused a host asks through the sidecar's MCP server,
//! a Proposal appears, `bbctl approve` makes the running bottle allow exactly that (no restart),
//! `bbctl reject` answers the agent, and a time-limited grant is withdrawn when it expires.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bb_e2e::harness::one;
use bb_e2e::{
    Cleanup, Controller, UPSTREAM_PY, containers_with, docker, ensure_base_image, networks_with,
    ok, remove_all_with, run, test_agent_bottle, test_pki,
};

const READY_LIMIT: Duration = Duration::from_secs(600);
const HOSTS: [&str; 4] = [
    "api.example.test",
    "docs.example.test",
    "other.example.test",
    "more.example.test",
];
const MCP_CALL: &str = include_str!("../fixtures/mcp_call.py");

/// A control plane trusting the test's upstream CA (with a long resync: whatever changes comes
/// from a decision, not a periodic pass), `manifest` applied, `agents` Running, and the test's
/// "internet" serving HOSTS on the first agent's egress network.
struct Rig {
    cp: Controller,
    /// The first agent's container.
    agent: String,
    _upstream: bb_e2e::Upstream,
    _cleanups: Vec<Cleanup>,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start(manifest: &str, agents: &[&str]) -> Rig {
        ensure_base_image();
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = test_pki(&HOSTS);
        let ca_path = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_path, &ca).expect("write ca");
        let ca_arg = ca_path.to_string_lossy().into_owned();
        let cp = Controller::start(&["--upstream-ca", &ca_arg, "--resync-seconds", "300"]);
        let labels: Vec<String> = agents
            .iter()
            .map(|a| format!("bot-bottle.dev/agent=default/{a}"))
            .collect();
        let cleanups = labels
            .iter()
            .map(|l| {
                remove_all_with(l);
                Cleanup(l.clone())
            })
            .collect();
        cp.apply(manifest);
        cp.wait_for("the Agents to be Running", READY_LIMIT, || {
            agents
                .iter()
                .all(|a| cp.jsonpath(&["agent", a], "{.status.phase}") == "Running")
        });
        let agent = one(
            containers_with(&format!("{},bot-bottle.dev/role=agent", labels[0])),
            "agent",
        );
        let egress_net = one(
            networks_with(&format!("{},bot-bottle.dev/role=egress-network", labels[0])),
            "egress network",
        );
        let upstream = bb_e2e::start_upstream(
            &format!("bb-e2e-upstream-{}", agents[0]),
            &egress_net,
            &HOSTS,
            UPSTREAM_PY,
            (&cert, &key),
        );
        Rig {
            cp,
            agent,
            _upstream: upstream,
            _cleanups: cleanups,
            _dir: dir,
        }
    }
}

fn manifest() -> String {
    test_agent_bottle(
        "sup",
        "  egress:\n    log: 1\n    routes:\n      - host: api.example.test\n",
    ) + r#"---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: sup, namespace: default}
spec:
  bottleRef: {name: sup}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: sup-peer, namespace: default}
spec:
  bottleRef: {name: sup}
"#
}

/// The HTTP status of `URL` from inside the agent, as `CONNECT-status status`.
fn status_of_url(agent: &str, url: &str) -> String {
    let out = run(&mut docker(&[
        "exec",
        "-u",
        "1000",
        agent,
        "sh",
        "-c",
        &format!("curl -s -m 5 -o /dev/null -w '%{{http_connect}} %{{http_code}}' {url}"),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a `status_of_url` answer is the proxy's refusal, of the CONNECT or of the request.
fn refused(statuses: &str) -> bool {
    statuses.split_whitespace().any(|c| c == "403")
}

/// The HTTP status of `https://HOST/` from inside the agent (000: refused before a response).
fn status_from_agent(agent: &str, host: &str) -> String {
    let out = run(&mut docker(&[
        "exec",
        "-u",
        "1000",
        agent,
        "sh",
        "-c",
        &format!("curl -s -m 5 -o /dev/null -w '%{{http_connect}} %{{http_code}}' https://{host}/"),
    ]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn allowed(agent: &str, host: &str) -> bool {
    status_from_agent(agent, host).ends_with(" 200")
}

/// Calls a supervise tool from inside the agent, in the background (the call waits for the
/// human); `finish` returns what the tool answered.
fn call_tool(agent: &str, tool: &str, args: serde_json::Value) -> Child {
    let mut child = docker(&[
        "exec",
        "-i",
        "-u",
        "1000",
        agent,
        "sh",
        "-c",
        &format!(
            "cat > /tmp/mcp_call.py && python3 /tmp/mcp_call.py {tool} '{}'",
            args.to_string().replace('\'', "'\\''")
        ),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("docker exec");
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(MCP_CALL.as_bytes()).expect("script");
    drop(stdin);
    child
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The name of the one pending Proposal of the agent `sup` for `tool`, once it appears.
fn pending_proposal(cp: &Controller, tool: &str, known: &[String]) -> String {
    let mut name = String::new();
    cp.wait_for("a Proposal to appear", Duration::from_secs(20), || {
        let list = cp.jsonpath(
            &["proposals", "-n", "default"],
            "{range .items[*]}{.metadata.name} {.spec.tool} {.status.phase}{\"\\n\"}{end}",
        );
        name = list
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (n, t, phase) = (f.next()?, f.next()?, f.next()?);
                (t == tool && phase == "Pending" && !known.iter().any(|k| k == n))
                    .then(|| n.to_string())
            })
            .next()
            .unwrap_or_default();
        !name.is_empty()
    });
    name
}

fn routes(hosts: &[&str]) -> String {
    let mut s = String::from("routes:\n");
    for h in hosts {
        s.push_str(&format!("  - host: {h}\n"));
    }
    s
}

#[test]
fn an_agent_asks_a_human_decides_and_the_running_bottle_changes() {
    let rig = Rig::start(&manifest(), &["sup", "sup-peer"]);
    let (cp, agent) = (&rig.cp, rig.agent.clone());
    let label = "bot-bottle.dev/agent=default/sup";
    let peer_label = "bot-bottle.dev/agent=default/sup-peer";
    let sidecar = one(
        containers_with(&format!("{label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    assert_eq!(
        cp.jsonpath(&["agent", "sup"], "{.status.endpoints.supervise}"),
        "http://bb-sidecar:9100/mcp"
    );
    // The sidecar raises proposals without any API credential: the control plane's token is
    // in none of its processes' argv or environment and in no file it can read.
    let api_token = std::fs::read_to_string(cp.home.path().join("token")).expect("token");
    let found = bb_e2e::scan_sidecar(&sidecar, api_token.trim());
    assert_eq!(
        found.lines().next(),
        Some("0"),
        "the sidecar holds the API token: {found}"
    );
    assert_eq!(
        found.lines().count(),
        1,
        "the sidecar holds the API token: {found}"
    );

    // The legitimate request gets through first: the refusals below are the policy's.
    cp.wait_for(
        "the allowed host to answer",
        Duration::from_secs(20),
        || allowed(&agent, "api.example.test"),
    );
    assert_eq!(status_from_agent(&agent, "docs.example.test"), "403 000");

    // The agent sees its live routes and asks for docs.example.test.
    let listed = finish(call_tool(
        &agent,
        "list-egress-routes",
        serde_json::json!({}),
    ));
    assert!(
        listed.starts_with("OK routes:") && listed.contains("api.example.test"),
        "{listed}"
    );
    let invalid = finish(call_tool(
        &agent,
        "egress-block",
        serde_json::json!({"routes_yaml": "routes: [{host: 'https://x'}]", "justification": "x"}),
    ));
    assert!(
        invalid.contains("ERROR -32602 egress-block: proposed routes.yaml is not valid"),
        "{invalid}"
    );

    let asked = Instant::now();
    let call = call_tool(
        &agent,
        "egress-block",
        serde_json::json!({
            "routes_yaml": routes(&["api.example.test", "docs.example.test"]),
            "justification": "the build reads the docs site",
        }),
    );
    let first = pending_proposal(cp, "egress-block", &[]);
    let visible = asked.elapsed();
    let table = ok(&mut cp.kubectl(&["get", "proposals", "-n", "default"]));
    assert!(
        table.contains("AGENT") && table.contains("TOOL") && table.contains("egress-block"),
        "{table}"
    );
    assert_eq!(
        cp.jsonpath(&["proposal", &first, "-n", "default"], "{.status.reach[0]}"),
        "new host docs.example.test on port(s) 443: any path, any method"
    );
    assert!(
        cp.jsonpath(&["proposal", &first, "-n", "default"], "{.status.diff}")
            .contains("+ host: docs.example.test")
    );

    let approved_at = Instant::now();
    let out = ok(&mut cp.bbctl(&[
        "approve",
        &format!("proposal/{first}"),
        "--reason",
        "docs are public",
        "--wait",
    ]));
    assert!(out.contains("approved: the sidecar enforces it"), "{out}");
    let answer = finish(call);
    assert!(
        answer.contains("OK Proposal") && answer.contains("approved (docs are public)"),
        "{answer}"
    );
    cp.wait_for(
        "the approved host to answer",
        Duration::from_secs(5),
        || allowed(&agent, "docs.example.test"),
    );
    println!(
        "proposal visible after {:.0} ms; approval enforced after {:.0} ms",
        visible.as_secs_f64() * 1000.0,
        approved_at.elapsed().as_secs_f64() * 1000.0
    );
    // Exactly what was approved: other hosts are still refused; the Bottle is untouched (another
    // Agent of it is still refused the granted host, through its own sidecar on its own upstream
    // network); the agent and its sidecar were not restarted.
    assert_eq!(status_from_agent(&agent, "other.example.test"), "403 000");
    // The peer reconciles at its next change: give it one, and wait until it ran.
    ok(&mut cp.kubectl(&[
        "patch",
        "agent",
        "sup-peer",
        "-n",
        "default",
        "--type=merge",
        "-p",
        r#"{"spec":{"prompt":"reconcile me"}}"#,
    ]));
    cp.wait_for(
        "the peer to reconcile its change",
        Duration::from_secs(60),
        || {
            cp.jsonpath(&["agent", "sup-peer"], "{.status.observedGeneration}")
                == cp.jsonpath(&["agent", "sup-peer"], "{.metadata.generation}")
                && cp.jsonpath(&["agent", "sup-peer"], "{.status.phase}") == "Running"
        },
    );
    let peer = one(
        containers_with(&format!("{peer_label},bot-bottle.dev/role=agent")),
        "peer agent",
    );
    assert_eq!(cp.jsonpath(&["agent", "sup-peer"], "{.status.grants}"), "");
    assert_eq!(status_from_agent(&peer, "docs.example.test"), "403 000");
    assert_eq!(
        cp.jsonpath(&["bottle", "sup"], "{.spec.egress.routes[*].host}"),
        "api.example.test"
    );
    assert_eq!(cp.jsonpath(&["agent", "sup"], "{.status.grants[0]}"), first);
    assert_eq!(
        one(
            containers_with(&format!("{label},bot-bottle.dev/role=agent")),
            "agent"
        ),
        agent
    );
    assert_eq!(
        one(
            containers_with(&format!("{label},bot-bottle.dev/role=sidecar")),
            "sidecar"
        ),
        sidecar
    );
    let again = run(&mut cp.bbctl(&["reject", &first, "--reason", "changed my mind"]));
    assert_eq!(
        again.status.code(),
        Some(4),
        "a decided proposal is not decided again"
    );

    // Rejected: the agent reads why, and nothing changes.
    let call = call_tool(
        &agent,
        "allow",
        serde_json::json!({"routes_yaml": routes(&["other.example.test"]), "justification": "curious"}),
    );
    let second = pending_proposal(cp, "allow", std::slice::from_ref(&first));
    ok(&mut cp.bbctl(&[
        "reject",
        &second,
        "--reason",
        "not needed for this task",
        "--wait",
    ]));
    let answer = finish(call);
    assert!(
        answer.contains("ISERROR") && answer.contains("rejected (not needed for this task)"),
        "{answer}"
    );
    assert_eq!(status_from_agent(&agent, "other.example.test"), "403 000");
    assert_eq!(
        cp.jsonpath(&["proposal", &second, "-n", "default"], "{.status.phase}"),
        "Rejected"
    );

    // A time-limited grant: allowed, then withdrawn on time.
    let call = call_tool(
        &agent,
        "egress-block",
        serde_json::json!({"routes_yaml": routes(&["other.example.test"]), "justification": "one download"}),
    );
    let third = pending_proposal(cp, "egress-block", &[first.clone(), second.clone()]);
    let bad = run(&mut cp.bbctl(&[
        "approve",
        &third,
        "--reason",
        "x",
        "--expires-after",
        "soon",
    ]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--expires-after: 'soon' is not a duration")
    );
    ok(&mut cp.bbctl(&[
        "approve",
        &third,
        "--reason",
        "one download",
        "--expires-after",
        "20s",
        "--wait",
    ]));
    assert!(finish(call).contains("approved (one download)"));
    assert!(allowed(&agent, "other.example.test"));

    // While it is in force, the agent sends back the whole document it lists (the time-limited
    // grant included) with one host more. The Proposal holds, and the human approves, only that
    // host: the time-limited grant is not carried past its expiry.
    let listed = finish(call_tool(
        &agent,
        "list-egress-routes",
        serde_json::json!({}),
    ));
    assert!(listed.contains("other.example.test"), "{listed}");
    let call = call_tool(
        &agent,
        "egress-block",
        serde_json::json!({
            "routes_yaml": routes(&["api.example.test", "docs.example.test", "other.example.test", "more.example.test"]),
            "justification": "one more host",
        }),
    );
    let fourth = pending_proposal(
        cp,
        "egress-block",
        &[first.clone(), second.clone(), third.clone()],
    );
    let content = cp.jsonpath(&["proposal", &fourth, "-n", "default"], "{.spec.content}");
    assert!(
        content.contains("more.example.test") && !content.contains("other.example.test"),
        "the proposal holds more than its change:\n{content}"
    );
    assert_eq!(
        cp.jsonpath(&["proposal", &fourth, "-n", "default"], "{.spec.adds[*]}"),
        "more.example.test"
    );
    ok(&mut cp.bbctl(&["approve", &fourth, "--reason", "fine", "--wait"]));
    assert!(finish(call).contains("approved (fine)"));
    assert!(allowed(&agent, "more.example.test"));
    cp.wait_for("the grant to expire", Duration::from_secs(40), || {
        cp.jsonpath(&["proposal", &third, "-n", "default"], "{.status.phase}") == "Expired"
    });
    assert_eq!(
        status_from_agent(&agent, "other.example.test"),
        "403 000",
        "the expired grant lives on through a later one"
    );
    assert!(allowed(&agent, "more.example.test"));
    // The first grant did not expire with it.
    assert!(allowed(&agent, "docs.example.test"));

    // Deleting an applied grant withdraws it.
    ok(&mut cp.kubectl(&["delete", "proposal", &first, "-n", "default"]));
    cp.wait_for(
        "the deleted grant to be withdrawn",
        Duration::from_secs(10),
        || status_from_agent(&agent, "docs.example.test") == "403 000",
    );
    let events = ok(&mut cp.kubectl(&[
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        "involvedObject.name=sup",
        "-o",
        "jsonpath={range .items[*]}{.reason} {end}",
    ]));
    // The audit trail: every proposal and decision, who, and why, through the runner.
    let described = ok(&mut cp.bbctl(&["describe", "agent", "sup"]));
    let audit = described
        .split("Supervise:")
        .nth(1)
        .and_then(|s| s.split("Events:").next())
        .unwrap_or_default();
    for (action, proposal, why) in [
        ("raised", first.as_str(), "the build reads the docs site"),
        ("approved", first.as_str(), "docs are public"),
        ("rejected", second.as_str(), "not needed for this task"),
        ("approved", third.as_str(), "one download"),
        ("expired", third.as_str(), ""),
        ("withdrawn", first.as_str(), "the Proposal was deleted"),
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(action) && l.contains(proposal) && l.contains(why)),
            "no {action} of {proposal} in the audit:\n{described}"
        );
    }
    for reason in [
        "ProposalRaised",
        "ProposalApplied",
        "ProposalRejected",
        "ProposalExpired",
        "ProposalWithdrawn",
    ] {
        assert!(events.contains(reason), "{reason} missing: {events}");
    }

    // Promoted: the grant goes into the Bottle, so its other Agent gets it too.
    let call = call_tool(
        &agent,
        "allow",
        serde_json::json!({"routes_yaml": routes(&["other.example.test"]), "justification": "for everyone"}),
    );
    let fourth = pending_proposal(cp, "allow", std::slice::from_ref(&second));
    let bad = run(&mut cp.bbctl(&[
        "approve",
        &fourth,
        "--reason",
        "x",
        "--promote",
        "--expires-after",
        "1h",
    ]));
    assert_eq!(bad.status.code(), Some(2), "a promoted grant cannot expire");
    let out = ok(&mut cp.bbctl(&[
        "approve",
        &fourth,
        "--reason",
        "everyone needs it",
        "--promote",
        "--wait",
    ]));
    assert!(
        out.contains("bottle.bot-bottle.dev/sup now allows"),
        "{out}"
    );
    assert!(finish(call).contains("approved (everyone needs it)"));
    assert_eq!(
        cp.jsonpath(&["bottle", "sup"], "{.spec.egress.routes[*].host}"),
        "api.example.test other.example.test"
    );
    cp.wait_for(
        "the peer to get the promoted route",
        Duration::from_secs(30),
        || {
            let peer = containers_with(&format!("{peer_label},bot-bottle.dev/role=agent"));
            // The peer has no upstream on its network: its CONNECT is admitted, nothing answers.
            peer.first()
                .is_some_and(|p| !refused(&status_from_agent(p, "other.example.test")))
        },
    );
    assert!(allowed(&agent, "other.example.test"));

    // A capability: a Dockerfile on the agent's image that does not build fails its proposal
    // and the agent keeps running; one that builds, approved with --restart, replaces it.
    let call = call_tool(
        &agent,
        "capability-block",
        serde_json::json!({"dockerfile": "ARG AGENT_IMAGE\nFROM ${AGENT_IMAGE}\nRUN false\n", "justification": "broken"}),
    );
    let broken = pending_proposal(cp, "capability-block", &[]);
    ok(&mut cp.bbctl(&["approve", &broken, "--reason", "try it", "--restart"]));
    assert!(finish(call).contains("did not build"));
    cp.wait_for(
        "the broken capability to fail",
        Duration::from_secs(60),
        || cp.jsonpath(&["proposal", &broken, "-n", "default"], "{.status.phase}") == "Failed",
    );
    assert_eq!(
        one(
            containers_with(&format!("{label},bot-bottle.dev/role=agent")),
            "agent"
        ),
        agent,
        "a capability that did not build replaced the agent"
    );
    let call = call_tool(
        &agent,
        "capability-block",
        serde_json::json!({"dockerfile": "ARG AGENT_IMAGE\nFROM ${AGENT_IMAGE}\nUSER root\nRUN touch /etc/bb-capability\nUSER agent\n", "justification": "need the marker"}),
    );
    let good = pending_proposal(cp, "capability-block", std::slice::from_ref(&broken));
    let out = ok(&mut cp.bbctl(&["approve", &good, "--reason", "fine", "--restart", "--wait"]));
    assert!(out.contains("restarted on the new image"), "{out}");
    let _ = finish(call);
    cp.wait_for(
        "the agent to run the new image",
        Duration::from_secs(60),
        || {
            cp.jsonpath(&["agent", "sup"], "{.status.phase}") == "Running"
                && containers_with(&format!("{label},bot-bottle.dev/role=agent"))
                    .first()
                    .is_some_and(|c| *c != agent)
        },
    );
    let restarted = one(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        "agent",
    );
    let marker = run(&mut docker(&[
        "exec",
        &restarted,
        "test",
        "-f",
        "/etc/bb-capability",
    ]));
    assert!(
        marker.status.success(),
        "the new image lacks what the Dockerfile added"
    );
    let wrong = run(&mut cp.bbctl(&["approve", "does-not-matter", "--reason", "x", "--restart"]));
    assert_ne!(wrong.status.code(), Some(0));

    // Deleting the Agent deletes its proposals (the local control plane has no garbage
    // collector) and leaves its peer's alone.
    ok(&mut cp.kubectl(&["delete", "agent", "sup", "-n", "default", "--timeout=120s"]));
    assert_eq!(
        cp.jsonpath(
            &[
                "proposals",
                "-n",
                "default",
                "-l",
                "bot-bottle.dev/agent=sup"
            ],
            "{.items[*].metadata.name}"
        ),
        ""
    );
}

fn learn_manifest(mode: &str, routes: &str) -> String {
    let routes: String = routes.lines().map(|l| format!("      {l}\n")).collect();
    test_agent_bottle(
        "learn",
        &format!("  supervise: false\n  egress:\n    mode: {mode}\n    routes:\n{routes}"),
    ) + r#"---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {name: learn, namespace: default}
spec:
  bottleRef: {name: learn}
"#
}

#[test]
fn report_mode_learns_a_policy_that_then_allows_exactly_it() {
    let declared =
        "- host: api.example.test\n  matches: [{paths: [{type: prefix, value: /v1/}]}]\n";
    let rig = Rig::start(&learn_manifest("report", declared), &["learn"]);
    let (cp, agent) = (&rig.cp, rig.agent.clone());
    let used = [
        "https://api.example.test/v1/ok",
        "https://docs.example.test/guide",
        "https://api.example.test/v2/items",
    ];
    // The declared route works first; then what the routes would refuse flows too.
    cp.wait_for(
        "the declared route to answer",
        Duration::from_secs(20),
        || status_of_url(&agent, used[0]).ends_with(" 200"),
    );
    for url in &used[1..] {
        assert!(
            status_of_url(&agent, url).ends_with(" 200"),
            "{url} was refused in report mode"
        );
    }

    let suggested = ok(&mut cp.bbctl(&["policy", "suggest", "agent/learn"]));
    assert!(
        suggested.contains("# docs.example.test: new route"),
        "{suggested}"
    );
    assert!(
        suggested.contains("# api.example.test: extends the declared route"),
        "{suggested}"
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&suggested).expect("yaml");
    let routes = serde_yaml::to_string(&doc["routes"]).expect("routes");

    // Applied with enforcement on, the suggestion allows exactly what was used.
    cp.apply(&learn_manifest("enforce", &routes));
    cp.wait_for(
        "the learned policy to be applied",
        Duration::from_secs(30),
        || {
            let resolved = cp.jsonpath(&["bottle", "learn"], "{.status.resolvedPolicyHash}");
            !resolved.is_empty()
                && cp.jsonpath(&["agent", "learn"], "{.status.appliedPolicyHash}") == resolved
                && refused(&status_of_url(&agent, "https://docs.example.test/other"))
        },
    );
    for url in used {
        assert!(
            status_of_url(&agent, url).ends_with(" 200"),
            "{url} is refused by the learned policy"
        );
    }
    for url in [
        "https://docs.example.test/other",
        "https://api.example.test/v2/other",
        "https://other.example.test/",
    ] {
        assert!(
            refused(&status_of_url(&agent, url)),
            "{url} is allowed by the learned policy"
        );
    }
}
