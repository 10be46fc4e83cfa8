//! An Agent's lifecycle on a real Docker engine: suspend stops and keeps its containers (no
//! image commit), resume starts the same agent container with every file it wrote, and its
//! sidecar comes back with its policy.

use std::time::Duration;

use bb_e2e::harness::one;
use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ok, remove_all_with, run, test_agent_bottle,
};

const LIMIT: Duration = Duration::from_secs(600);

fn bottle_and_agent(name: &str) -> String {
    format!(
        "{}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  bottleRef: {{name: {name}}}\n",
        test_agent_bottle(
            name,
            "  egress:\n    routes:\n      - host: api.example.test\n"
        )
    )
}

fn phase(cp: &Controller, name: &str) -> String {
    cp.jsonpath(&["agent", name], "{.status.phase}")
}

/// `docker inspect -f FORMAT` of one container.
fn inspect(container: &str, format: &str) -> String {
    ok(&mut docker(&["inspect", "-f", format, container]))
        .trim()
        .to_string()
}

/// How many snapshot images carry this Agent's label.
fn snapshot_images(label: &str) -> usize {
    ok(&mut docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label={label}"),
        "--filter",
        "reference=bot-bottle/snapshot",
    ]))
    .split_whitespace()
    .count()
}

#[test]
fn suspend_keeps_the_container_and_resume_starts_it_with_its_files() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    let name = "keep";
    let label = format!("bot-bottle.dev/agent=default/{name}");
    remove_all_with(&label);
    let _cleanup = Cleanup(label.clone());
    cp.apply(&bottle_and_agent(name));
    cp.wait_for("the Agent to be Running", LIMIT, || {
        phase(&cp, name) == "Running"
    });
    let agent = one(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let wrote = cp.exec(
        name,
        &["sh", "-c", "echo work-in-progress > /home/agent/notes.txt"],
    );
    assert!(wrote.status.success(), "{wrote:?}");

    ok(&mut cp.bbctl(&["suspend", &format!("agent/{name}"), "--wait"]));
    assert_eq!(phase(&cp, name), "Suspended");
    // Both containers are stopped, and kept: nothing was committed to an image.
    for c in containers_with(&label) {
        assert_eq!(inspect(&c, "{{.State.Running}}"), "false", "{c} still runs");
    }
    assert_eq!(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        vec![agent.clone()],
        "the agent container is kept"
    );
    assert_eq!(snapshot_images(&label), 0, "suspend committed an image");
    assert_eq!(cp.jsonpath(&["agent", name], "{.status.snapshot}"), "");

    ok(&mut cp.bbctl(&["resume", &format!("agent/{name}"), "--wait"]));
    assert_eq!(phase(&cp, name), "Running");
    // The same container, started again, with what the agent wrote.
    assert_eq!(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        vec![agent.clone()]
    );
    assert_eq!(inspect(&agent, "{{.State.Running}}"), "true");
    let read = cp.exec(name, &["cat", "/home/agent/notes.txt"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "work-in-progress\n");
    // Its sidecar is back with its policy: the proxy answers with the Bottle's route.
    let allowlist = cp.exec(
        name,
        &["curl", "-sS", "-m", "10", "http://_egress.local/allowlist"],
    );
    assert!(
        String::from_utf8_lossy(&allowlist.stdout).contains("api.example.test"),
        "{allowlist:?}"
    );
    let events = ok(&mut cp.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]));
    assert!(events.lines().any(|r| r == "Resumed"), "{events}");
    assert!(!events.lines().any(|r| r == "AgentRecreated"), "{events}");

    ok(&mut cp.kubectl(&["delete", "agent", name, "--wait=true", "--timeout=120s"]));
    assert!(containers_with(&label).is_empty(), "containers left behind");
    assert!(run(&mut docker(&["inspect", &agent])).status.code() != Some(0));
}
