//! Warm pools on a real Docker engine: a pool of three fills; three Agents claim members and run
//! in the members' own containers, each holding only its own prompt and workspace; the pool
//! refills; a Bottle edit replaces the pooled members and leaves the claimed ones running; and
//! deleting the Agents and the pool leaves nothing behind.

use std::collections::BTreeSet;
use std::time::Duration;

use bb_e2e::harness::one;
use bb_e2e::{Controller, containers_with, docker, ok, test_agent_bottle};

const LIMIT: Duration = Duration::from_secs(600);
const AGENTS: [&str; 3] = ["pa", "pb", "pc"];

fn bottle(extra_route: bool) -> String {
    let mut routes = String::from("      - host: api.example.test\n");
    if extra_route {
        routes.push_str("      - host: docs.example.test\n");
    }
    test_agent_bottle("pooled", &format!("  egress:\n    routes:\n{routes}"))
}

const POOL: &str = "apiVersion: bot-bottle.dev/v1alpha1\nkind: AgentPool\nmetadata: {name: pooled, namespace: default}\nspec:\n  bottleRef: {name: pooled}\n  size: 3\n";

/// The pool's members as (name, ready), from its status.
fn members(cp: &Controller) -> Vec<(String, bool)> {
    cp.jsonpath(
        &["agentpool", "pooled"],
        "{range .status.members[*]}{.name} {.ready}{\"\\n\"}{end}",
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(n, r)| (n.to_string(), r == "true"))
    .collect()
}

fn full(cp: &Controller) -> bool {
    let m = members(cp);
    m.len() == 3 && m.iter().all(|(_, ready)| *ready)
}

/// The container of `role` of the runtime copy named `name` (a member's or an Agent's).
fn container_of(name: &str, role: &str) -> String {
    one(
        containers_with(&format!(
            "bot-bottle.dev/agent=default/{name},bot-bottle.dev/role={role}"
        )),
        &format!("{role} of {name}"),
    )
}

fn running(container: &str) -> bool {
    ok(&mut docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        container,
    ]))
    .trim()
        == "true"
}

fn agent_yaml(name: &str, workspace: &std::path::Path) -> String {
    format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  bottleRef: {{name: pooled}}\n  prompt: the task of {name} only\n  workspace: {{hostPath: {}}}\n",
        workspace.display()
    )
}

#[test]
fn a_warm_pool_fills_agents_claim_members_in_place_and_a_bottle_edit_replaces_only_the_pooled() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    cp.apply(&bottle(false));
    cp.apply(POOL);
    cp.wait_for("the pool to hold 3 ready members", LIMIT, || full(&cp));
    let first: Vec<String> = members(&cp).into_iter().map(|(n, _)| n).collect();
    let described = ok(&mut cp.bbctl(&["describe", "agentpool", "pooled"]));
    assert!(described.contains("3 of 3"), "{described}");
    for m in &first {
        assert!(
            described
                .lines()
                .any(|l| l.trim_start().starts_with(m.as_str()) && l.contains("true")),
            "{m} missing: {described}"
        );
    }
    let mut pooled_agent = std::collections::BTreeMap::new();
    for m in &first {
        let agent = container_of(m, "agent");
        let sidecar = container_of(m, "sidecar");
        assert!(running(&agent) && running(&sidecar), "member {m} is not up");
        let marker = ok(&mut docker(&[
            "exec",
            &agent,
            "cat",
            "/etc/bot-bottle/provisioned",
        ]));
        assert_eq!(
            marker.trim(),
            "pool-member",
            "member {m} was not provisioned as one"
        );
        let prompt = bb_e2e::run(&mut docker(&[
            "exec",
            &agent,
            "test",
            "-e",
            "/etc/bot-bottle/prompt.md",
        ]));
        assert!(
            !prompt.status.success(),
            "member {m} holds a prompt before any Agent claimed it"
        );
        pooled_agent.insert(m.clone(), agent);
    }

    // Three Agents, each with its own prompt and workspace, claim the three members.
    let dirs: Vec<tempfile::TempDir> = AGENTS
        .iter()
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    for (name, dir) in AGENTS.iter().zip(&dirs) {
        std::fs::write(dir.path().join(format!("only-{name}.txt")), name).expect("workspace file");
    } // One claimant brings a secret: discovery runs on a claim as on any start, and that
    // member's sidecar guards what was copied in.
    std::fs::write(
        dirs[0].path().join(".env"),
        "DB_PASSWORD=Wq8z-pL3x_Rt7vN2bC4d\n",
    )
    .expect(".env");

    let manifest: Vec<String> = AGENTS
        .iter()
        .zip(&dirs)
        .map(|(name, dir)| agent_yaml(name, dir.path()))
        .collect();
    cp.apply(&manifest.join("---\n"));
    cp.wait_for("the three Agents to be Running", LIMIT, || {
        AGENTS
            .iter()
            .all(|a| cp.jsonpath(&["agent", a], "{.status.phase}") == "Running")
    });
    let mut claimed = BTreeSet::new();
    for name in AGENTS {
        let copy = cp.jsonpath(&["agent", name], "{.status.bottleCopy.name}");
        assert!(
            first.contains(&copy),
            "{name} runs in {copy:?}, not a member of {first:?}"
        );
        assert!(claimed.insert(copy.clone()), "two Agents claimed {copy}");
        // The member's own container: no new one was made for the Agent.
        assert_eq!(
            container_of(&copy, "agent"),
            pooled_agent[&copy],
            "{name} got a new container"
        );
        assert!(
            containers_with(&format!("bot-bottle.dev/agent=default/{name}")).is_empty(),
            "{name} started a bottle of its own as well"
        );
        let prompt = cp.exec(name, &["cat", "/etc/bot-bottle/prompt.md"]);
        assert_eq!(
            String::from_utf8_lossy(&prompt.stdout).trim(),
            format!("the task of {name} only"),
            "{prompt:?}"
        );
        let listing = cp.exec(name, &["ls", "/workspace"]);
        let files = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert_eq!(
            files.split_whitespace().collect::<Vec<_>>(),
            [format!("only-{name}.txt")],
            "{listing:?}"
        );
        let guarded = cp.jsonpath(
            &["agent", name],
            "{range .status.guardedSecrets.found[*]}{.path}:{.line} ({.kind}){\"\\n\"}{end}",
        );
        match name {
            "pa" => assert_eq!(guarded.trim(), "/workspace/.env:1 (dotenv)", "{name}"),
            _ => assert_eq!(guarded.trim(), "", "{name} guards another's secret"),
        }
        // The marker that lets a member take new inputs in place is the runner's alone: the
        // agent cannot turn its used container back into a "pool member" (it can write its
        // home: the positive control).
        let home = cp.exec(name, &["sh", "-c", "echo x > /home/agent/mine"]);
        assert!(home.status.success(), "{home:?}");
        let forge = cp.exec(
            name,
            &[
                "sh",
                "-c",
                "printf pool-member > /etc/bot-bottle/provisioned",
            ],
        );
        assert!(
            !forge.status.success(),
            "{name} rewrote its marker: {forge:?}"
        );
        let marker = cp.exec(name, &["cat", "/etc/bot-bottle/provisioned"]);
        let marker = String::from_utf8_lossy(&marker.stdout).into_owned();
        assert!(
            !marker.is_empty() && marker.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}'s marker is {marker:?}, not its inputs hash"
        );
        // Positive control for the search below: its own prompt is found.
        let own = cp.exec(
            name,
            &[
                "grep",
                "-rl",
                &format!("the task of {name} only"),
                "/etc/bot-bottle",
                "/workspace",
            ],
        );
        assert!(own.status.success(), "{own:?}");
        for other in AGENTS.iter().filter(|o| **o != name) {
            let seen = cp.exec(
                name,
                &[
                    "grep",
                    "-rl",
                    &format!("the task of {other} only"),
                    "/etc/bot-bottle",
                    "/workspace",
                    "/home",
                ],
            );
            assert!(
                !seen.status.success(),
                "{name} can read {other}'s prompt: {seen:?}"
            );
        }
    }

    // The pool refills with new members.
    cp.wait_for("the pool to refill", LIMIT, || {
        full(&cp) && members(&cp).iter().all(|(n, _)| !claimed.contains(n))
    });
    let refilled: Vec<String> = members(&cp).into_iter().map(|(n, _)| n).collect();

    // A Bottle edit replaces the pooled members; the claimed ones keep running, same containers.
    cp.apply(&bottle(true));
    cp.wait_for(
        "the pool to hold members of the edited Bottle",
        LIMIT,
        || full(&cp) && members(&cp).iter().all(|(n, _)| !refilled.contains(n)),
    );
    for m in &refilled {
        assert!(
            containers_with(&format!("bot-bottle.dev/agent=default/{m}")).is_empty(),
            "stale member {m} was left running"
        );
    }
    for name in AGENTS {
        let copy = cp.jsonpath(&["agent", name], "{.status.bottleCopy.name}");
        let agent = container_of(&copy, "agent");
        assert_eq!(
            agent, pooled_agent[&copy],
            "the Bottle edit replaced {name}'s container"
        );
        assert!(running(&agent));
        cp.wait_for(
            "the claimed Agent's sidecar to take the new route",
            LIMIT,
            || {
                cp.jsonpath(&["agent", name], "{.status.appliedPolicyHash}")
                    == cp.jsonpath(&["bottle", "pooled"], "{.status.resolvedPolicyHash}")
            },
        );
    }

    // Deleting the Agents and the pool leaves nothing of them.
    let last: Vec<String> = members(&cp).into_iter().map(|(n, _)| n).collect();
    ok(&mut cp.kubectl(&["delete", "agent", "pa", "pb", "pc", "--wait=true"]));
    let deleted = ok(&mut cp.bbctl(&["delete", "agentpool/pooled"]));
    assert!(
        deleted.contains("agentpool.bot-bottle.dev/pooled deleted"),
        "{deleted}"
    );
    for name in claimed.iter().chain(&first).chain(&refilled).chain(&last) {
        assert!(
            containers_with(&format!("bot-bottle.dev/agent=default/{name}")).is_empty(),
            "{name} was left behind"
        );
    }
}
