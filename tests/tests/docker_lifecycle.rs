//! An Agent's lifecycle on a real Docker engine: suspend stops and keeps its containers (no
//! image commit), resume starts the same agent container with every file it wrote, and its
//! sidecar comes back with its policy; `spec.lifecycle` suspends an idle Agent on time (requests
//! through its sidecar keep it running), `bbctl attach` resumes it, and a ttl or an exited
//! attach deletes it leaving nothing behind but the snapshot it was asked to keep.

use std::time::Duration;

use bb_e2e::harness::one;
use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ok, remove_all_with, run, test_agent_bottle,
};

const LIMIT: Duration = Duration::from_secs(600);

fn bottle_and_agent(name: &str) -> String {
    bottle_and_agents(name, &[(name, "")])
}

/// A test-agent Bottle `bottle` and one Agent per (name, extra spec lines).
fn bottle_and_agents(bottle: &str, agents: &[(&str, &str)]) -> String {
    let mut yaml = test_agent_bottle(
        bottle,
        "  egress:\n    routes:\n      - host: api.example.test\n",
    );
    for (name, extra) in agents {
        yaml.push_str(&format!(
            "\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  bottleRef: {{name: {bottle}}}\n{extra}"
        ));
    }
    yaml
}

/// The reasons of the Agent's events, one a line.
fn event_reasons(cp: &Controller, name: &str) -> String {
    ok(&mut cp.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}",
    ]))
}

/// `bbctl attach` with no terminal and stdin closed: the test agent's `bash -l` ends at once.
fn attach(cp: &Controller, name: &str) -> std::process::Output {
    run(cp
        .bbctl(&["attach", &format!("agent/{name}")])
        .stdin(std::process::Stdio::null()))
}

fn phase(cp: &Controller, name: &str) -> String {
    cp.jsonpath(&["agent", name], "{.status.phase}")
}

/// The Agent's sidecar serves it the Bottle's route (`api.example.test`) on its allowlist.
fn assert_serves_its_route(cp: &Controller, name: &str) {
    let allowlist = cp.exec(
        name,
        &["curl", "-sS", "-m", "10", "http://_egress.local/allowlist"],
    );
    assert!(
        String::from_utf8_lossy(&allowlist.stdout).contains("api.example.test"),
        "{allowlist:?}"
    );
}

/// `docker inspect -f FORMAT` of one container.
fn inspect(container: &str, format: &str) -> String {
    ok(&mut docker(&["inspect", "-f", format, container]))
        .trim()
        .to_string()
}

/// The snapshot images carrying this Agent's label.
fn snapshot_ids(label: &str) -> Vec<String> {
    ok(&mut docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label={label}"),
        "--filter",
        "reference=bot-bottle/snapshot",
    ]))
    .split_whitespace()
    .map(String::from)
    .collect()
}

fn snapshot_images(label: &str) -> usize {
    snapshot_ids(label).len()
}

/// The label of Agent `name`'s resources, with whatever an earlier, failed run left under it
/// removed, and a guard that removes what this run leaves.
fn fresh_label(name: &str) -> (String, Cleanup) {
    let label = format!("bot-bottle.dev/agent=default/{name}");
    remove_leftovers(&label);
    (label.clone(), Cleanup(label))
}

/// The containers of role `role` (`agent`, `sidecar`) under `label`.
fn with_role(label: &str, role: &str) -> Vec<String> {
    containers_with(&format!("{label},bot-bottle.dev/role={role}"))
}

/// What an earlier, failed run left under `label`: containers, networks and snapshots.
fn remove_leftovers(label: &str) {
    remove_all_with(label);
    for image in snapshot_ids(label) {
        let _ = run(&mut docker(&["rmi", "-f", &image]));
    }
}

#[test]
fn suspend_keeps_the_container_and_resume_starts_it_with_its_files() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    let name = "keep";
    let (label, _cleanup) = fresh_label(name);
    cp.apply(&bottle_and_agent(name));
    cp.wait_for("the Agent to be Running", LIMIT, || {
        phase(&cp, name) == "Running"
    });
    let agent = one(with_role(&label, "agent"), "agent container");
    let sidecar = one(with_role(&label, "sidecar"), "sidecar");
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
        with_role(&label, "agent"),
        vec![agent.clone()],
        "the agent container is kept"
    );
    assert_eq!(snapshot_images(&label), 0, "suspend committed an image");
    assert_eq!(cp.jsonpath(&["agent", name], "{.status.snapshot}"), "");

    ok(&mut cp.bbctl(&["resume", &format!("agent/{name}"), "--wait"]));
    assert_eq!(phase(&cp, name), "Running");
    // The same container, started again, with what the agent wrote.
    assert_eq!(with_role(&label, "agent"), vec![agent.clone()]);
    assert_eq!(inspect(&agent, "{{.State.Running}}"), "true");
    // Its sidecar too: started again and handed its policy anew (below, the proxy serves it).
    assert_eq!(with_role(&label, "sidecar"), vec![sidecar]);
    let read = cp.exec(name, &["cat", "/home/agent/notes.txt"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "work-in-progress\n");
    // Its sidecar is back with its policy: the proxy answers with the Bottle's route.
    assert_serves_its_route(&cp, name);
    let events = event_reasons(&cp, name);
    assert!(events.lines().any(|r| r == "Resumed"), "{events}");
    assert!(!events.lines().any(|r| r == "AgentRecreated"), "{events}");

    ok(&mut cp.kubectl(&["delete", "agent", name, "--wait=true", "--timeout=120s"]));
    assert!(containers_with(&label).is_empty(), "containers left behind");
    assert!(run(&mut docker(&["inspect", &agent])).status.code() != Some(0));
}

#[test]
fn an_idle_agent_suspends_on_time_and_attach_resumes_it_with_its_files() {
    bb_e2e::ensure_base_image();
    // The default resync (30 s): a suspension well before it comes from the lifecycle's own
    // wake-ups.
    let cp = Controller::start(&[]);
    let name = "idle";
    let (label, _cleanup) = fresh_label(name);
    cp.apply(&bottle_and_agents(
        name,
        &[(name, "  lifecycle: {idleSuspendAfter: 8s}\n")],
    ));
    cp.wait_for("the Agent to be Running", LIMIT, || {
        phase(&cp, name) == "Running"
    });
    let wrote = cp.exec(
        name,
        &["sh", "-c", "echo kept-across-idle > /home/agent/notes.txt"],
    );
    assert!(wrote.status.success(), "{wrote:?}");
    let agent = one(with_role(&label, "agent"), "agent container");
    // Requests through the sidecar (refused ones count too), made with docker exec so no
    // session is involved: 20 s of them, never 8 s apart, keep the Agent running.
    let busy = std::time::Instant::now();
    while busy.elapsed() < Duration::from_secs(20) {
        let _ = run(&mut docker(&[
            "exec",
            &agent,
            "curl",
            "-s",
            "-m",
            "3",
            "http://blocked.example.test/",
        ]));
        assert_eq!(phase(&cp, name), "Running", "suspended while in use");
        std::thread::sleep(Duration::from_secs(2));
    }
    let quiet = std::time::Instant::now();
    cp.wait_for(
        "the idle Agent to be Suspended",
        Duration::from_secs(60),
        || phase(&cp, name) == "Suspended",
    );
    let took = quiet.elapsed();
    // At least its 8 s of quiet, and (checks land every 8 s) at most about two of them: well
    // under the 30 s resync.
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(25),
        "suspended {took:?} after the last request"
    );
    assert_eq!(cp.jsonpath(&["agent", name], "{.spec.suspend}"), "true");
    assert!(
        event_reasons(&cp, name)
            .lines()
            .any(|r| r == "IdleSuspended")
    );
    assert_eq!(inspect(&agent, "{{.State.Running}}"), "false");

    // attach resumes it, waits, and runs its command in the same container.
    let out = attach(&cp, name);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is suspended: resuming it"),
        "{out:?}"
    );
    assert_eq!(phase(&cp, name), "Running");
    assert_eq!(cp.jsonpath(&["agent", name], "{.spec.suspend}"), "false");
    let read = cp.exec(name, &["cat", "/home/agent/notes.txt"]);
    assert_eq!(String::from_utf8_lossy(&read.stdout), "kept-across-idle\n");
    assert_eq!(with_role(&label, "agent"), vec![agent]);
}

#[test]
fn ttl_and_an_exited_attach_delete_the_agent_keeping_only_what_was_asked() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    let (ttl, once) = ("expiring", "one-shot");
    let (labels, _cleanup): (Vec<String>, Vec<Cleanup>) =
        [ttl, once].map(fresh_label).into_iter().unzip();
    let kept_label = format!("bot-bottle.dev/kept-from=default/{ttl}");
    let remove_kept = || {
        for image in ok(&mut docker(&[
            "images",
            "-q",
            "--filter",
            &format!("label={kept_label}"),
        ]))
        .split_whitespace()
        {
            let _ = run(&mut docker(&["rmi", "-f", image]));
        }
    };
    remove_kept();
    cp.apply(&bottle_and_agents(
        "lifecycle",
        &[
            (ttl, "  lifecycle: {ttl: 40s, keepSnapshot: true}\n"),
            (once, "  lifecycle: {deleteAfterExit: true}\n"),
        ],
    ));
    for n in [ttl, once] {
        cp.wait_for("the Agents to be Running", LIMIT, || {
            phase(&cp, n) == "Running"
        });
    }
    let wrote = cp.exec(
        ttl,
        &[
            "sh",
            "-c",
            "echo outlives-the-agent > /home/agent/result.txt",
        ],
    );
    assert!(wrote.status.success(), "{wrote:?}");
    // An exec ending is not an exit of the attached command: the one-shot Agent stays.
    assert_eq!(phase(&cp, once), "Running");
    let gone = |n: &str| {
        run(&mut cp.kubectl(&["get", "agent", n, "-o", "name"]))
            .status
            .code()
            != Some(0)
    };
    assert!(!gone(once));

    let out = attach(&cp, once);
    assert!(out.status.success(), "{out:?}");
    cp.wait_for(
        "the one-shot Agent to be deleted",
        Duration::from_secs(60),
        || gone(once),
    );
    cp.wait_for(
        "the ttl to delete its Agent",
        Duration::from_secs(120),
        || gone(ttl),
    );
    for l in &labels {
        assert!(
            containers_with(l).is_empty(),
            "containers of {l} left behind"
        );
        assert!(
            bb_e2e::networks_with(l).is_empty(),
            "networks of {l} left behind"
        );
        assert_eq!(snapshot_images(l), 0, "snapshots of {l} left behind");
    }
    // Only the ttl Agent asked to keep a snapshot: it holds what the agent wrote.
    let kept: Vec<String> = ok(&mut docker(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        &format!("label={kept_label}"),
    ]))
    .split_whitespace()
    .map(String::from)
    .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let inside = ok(&mut docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        &kept[0],
        "/home/agent/result.txt",
    ]));
    assert_eq!(inside, "outlives-the-agent\n");
    assert!(
        ok(&mut docker(&[
            "images",
            "-q",
            "--filter",
            "label=bot-bottle.dev/kept-from=default/one-shot"
        ]))
        .trim()
        .is_empty(),
        "the one-shot Agent kept a snapshot it was not asked for"
    );
    remove_kept();
}

#[test]
fn a_fork_starts_from_its_sources_files_guards_its_secrets_and_diverges() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    let (src, copy) = ("fork-src", "fork-copy");
    let (labels, _cleanup): (Vec<String>, Vec<Cleanup>) =
        [src, copy].map(fresh_label).into_iter().unzip();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(".env"),
        "DB_PASSWORD=Fk7-qLz2_Wp9xR4mT8vB\nPORT=8080\n",
    )
    .expect("write .env");
    cp.apply(&bottle_and_agents(
        "forks",
        &[(
            src,
            &format!("  workspace: {{hostPath: {}}}\n", dir.path().display()),
        )],
    ));
    cp.wait_for("the source to be Running", LIMIT, || {
        phase(&cp, src) == "Running"
    });
    let source = one(with_role(&labels[0], "agent"), "source agent container");
    let wrote = cp.exec(
        src,
        &["sh", "-c", "echo before-fork > /workspace/shared.txt"],
    );
    assert!(wrote.status.success(), "{wrote:?}");
    // A process of the source's that must live through the fork.
    ok(&mut docker(&["exec", "-d", &source, "sleep", "4242"]));
    let started = inspect(&source, "{{.State.StartedAt}}");

    let out = ok(&mut cp.bbctl(&["fork", &format!("agent/{src}"), "--name", copy]));
    assert!(out.contains("forked from"), "{out}");
    assert_eq!(phase(&cp, copy), "Running");
    // The source was paused for the commit, never stopped.
    assert_eq!(inspect(&source, "{{.State.Running}}"), "true");
    assert_eq!(inspect(&source, "{{.State.StartedAt}}"), started);
    let alive = run(&mut docker(&[
        "exec",
        &source,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done | grep -q '^sleep 4242'",
    ]));
    assert!(
        alive.status.success(),
        "the source's process died: {alive:?}"
    );

    let read = |agent: &str, file: &str| {
        String::from_utf8_lossy(&cp.exec(agent, &["cat", file]).stdout).to_string()
    };
    assert_eq!(read(copy, "/workspace/shared.txt"), "before-fork\n");
    // The secret the source's sidecar guards is guarded by the fork's too: same files.
    let guarded = |agent: &str| cp.jsonpath(&["agent", agent], "{.status.guardedSecrets.count}");
    assert_eq!(guarded(src), "1");
    assert_eq!(
        guarded(copy),
        "1",
        "the fork does not guard its source's secret"
    );
    // From here on they diverge.
    for (agent, text) in [(src, "src-only"), (copy, "copy-only")] {
        let w = cp.exec(
            agent,
            &[
                "sh",
                "-c",
                &format!(
                    "echo {text} > /workspace/{text}.txt && echo {text} > /workspace/shared.txt"
                ),
            ],
        );
        assert!(w.status.success(), "{w:?}");
    }
    assert_eq!(read(src, "/workspace/shared.txt"), "src-only\n");
    assert_eq!(read(copy, "/workspace/shared.txt"), "copy-only\n");
    for (agent, other) in [(src, "copy-only"), (copy, "src-only")] {
        let seen = cp.exec(agent, &["test", "-e", &format!("/workspace/{other}.txt")]);
        assert!(!seen.status.success(), "{agent} sees {other}.txt");
    }

    for n in [copy, src] {
        ok(&mut cp.kubectl(&["delete", "agent", n, "--wait=true", "--timeout=120s"]));
    }
    for l in &labels {
        assert!(
            containers_with(l).is_empty(),
            "containers of {l} left behind"
        );
        assert_eq!(snapshot_images(l), 0, "snapshots of {l} left behind");
    }
}

/// Networks that use up the engine's default address pools, removed when dropped (a failed
/// test must not leave the engine unable to make networks).
struct ExhaustedPools(Vec<String>);

impl ExhaustedPools {
    fn take_all() -> ExhaustedPools {
        let mut made = Vec::new();
        for i in 0..64 {
            let name = format!("bb-e2e-exhaust-{}-{i}", std::process::id());
            let out = run(&mut docker(&[
                "network",
                "create",
                "--label",
                "bot-bottle.e2e=exhaust",
                &name,
            ]));
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(err.contains("non-overlapping IPv4 address pool"), "{err}");
                return ExhaustedPools(made);
            }
            made.push(name);
        }
        panic!("the engine made 64 networks from its default pools: nothing to exhaust");
    }
}

impl Drop for ExhaustedPools {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = run(&mut docker(&["network", "rm", n]));
        }
    }
}

#[test]
fn past_the_engines_address_pools_a_bottle_gets_subnets_of_its_own() {
    bb_e2e::ensure_base_image();
    let cp = Controller::start(&[]);
    let name = "crowded";
    let (label, _cleanup) = fresh_label(name);
    // Positive control: with the default pools used up, a plain network cannot be made.
    let mut exhausted = ExhaustedPools::take_all();
    let plain = run(&mut docker(&[
        "network",
        "create",
        "bb-e2e-exhaust-control",
    ]));
    if plain.status.success() {
        // Made after all: removed with the rest.
        exhausted.0.push("bb-e2e-exhaust-control".into());
    }
    assert!(!plain.status.success(), "the pools were not used up");

    cp.apply(&bottle_and_agent(name));
    cp.wait_for("the Agent to be Running", LIMIT, || {
        phase(&cp, name) == "Running"
    });
    for n in bb_e2e::networks_with(&label) {
        let subnet = ok(&mut docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &n,
        ]));
        assert!(
            subnet.trim().starts_with("198.18.") && subnet.trim().ends_with("/28"),
            "{n}: {subnet}"
        );
    }
    // The agent reaches its sidecar over the internal network.
    assert_serves_its_route(&cp, name);
    ok(&mut cp.kubectl(&["delete", "agent", name, "--wait=true", "--timeout=120s"]));
    assert!(bb_e2e::networks_with(&label).is_empty());
    drop(exhausted);
}
