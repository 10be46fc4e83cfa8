//! The Apple Container backend driven end to end through a stand-in `container` CLI
//! (`fake-container`: the backend's argv grammar, carried out on Docker, answered in the JSON
//! shapes the reference recorded from container 1.0). The reference's integration assertions
//! hold, and so do the full reconcile flow and sessions.

use std::time::{Duration, Instant};

use bb_e2e::harness::one;
use bb_e2e::integration;
use bb_e2e::{
    Cleanup, Controller, Tmux, UPSTREAM_PY, containers_with, docker, ensure_base_image, in_agent,
    networks_with, ok, remove_all_with, run, test_pki, workspace_root,
};

const TOKEN: &str = "e2e-Apple-T0ken-4d3c2b1a0f9e8d7c";
/// The Agent's secret env: given to its sessions only.
const SESSION_SECRET: &str = "e2e-Apple-Sess10n-7f6e5d4c3b2a";
const READY_LIMIT: Duration = Duration::from_secs(600);

fn manifest(name: &str, dockerfile: &std::path::Path, extra_routes: &str) -> String {
    integration::token_bottle(
        name,
        "apple-container",
        dockerfile,
        (TOKEN, SESSION_SECRET),
        "apple prompt",
        extra_routes,
    )
}

/// The test agent's Dockerfile with a label of this run: a new image, so this run builds it
/// through the fake's builder.
fn fresh_dockerfile(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::fs::read_to_string(workspace_root().join("images/test-agent/Dockerfile"))
        .expect("test-agent Dockerfile");
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = dir.join("Dockerfile");
    std::fs::write(
        &path,
        format!("{src}\nLABEL bot-bottle.e2e/run=\"{nonce}\"\n"),
    )
    .expect("write Dockerfile");
    path
}

/// Every `container` argv the backend ran, in order.
fn argvs(state: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(state.join("argv.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn role(agent_label: &str, role: &str) -> String {
    one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role={role}")),
        role,
    )
}

#[test]
fn apple_container_backend_runs_the_full_flow_through_its_cli() {
    ensure_base_image();
    let fake = env!("CARGO_BIN_EXE_fake-container");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("fake-state");
    let (ca, cert, key) = test_pki(&["api.example.test", "other.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let state_arg = state.display().to_string();
    let build_dir = dir.path().join("agent-image");
    std::fs::create_dir_all(&build_dir).expect("mkdir");
    let dockerfile = fresh_dockerfile(&build_dir);
    // Earlier runs' agent images (each run builds its own).
    let prune = || {
        let _ = run(&mut docker(&[
            "image",
            "prune",
            "-af",
            "--filter",
            "label=bot-bottle.e2e/run",
        ]));
    };
    prune();
    let mut cp = Controller::start_with_env(
        &[
            "--backend",
            "apple-container",
            "--container-cli",
            fake,
            // The sidecar's resolver is its own loopback: names the test's network does not
            // answer go nowhere.
            "--container-dns",
            "127.0.0.1",
            "--upstream-ca",
            &ca_path.display().to_string(),
            "--resync-seconds",
            "2",
        ],
        &[("FAKE_CONTAINER_STATE", &state_arg)],
    );
    let agent_label = "bot-bottle.dev/agent=default/apple";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());

    // 1. apply -> Running, on the apple-container backend.
    let started = Instant::now();
    cp.apply(&manifest("apple", &dockerfile, ""));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "apple"], "{.status.phase}") == "Running"
    });
    println!(
        "apply -> Running in {:.1}s through the fake CLI",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        cp.jsonpath(&["agent", "apple"], "{.status.backend}"),
        "apple-container"
    );
    let agent = role(agent_label, "agent");
    let sidecar = role(agent_label, "sidecar");
    let internal = one(
        networks_with(&format!(
            "{agent_label},bot-bottle.dev/role=internal-network"
        )),
        "internal network",
    );
    let egress_net = one(
        networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let internal_name = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &internal,
    ]));
    let egress_name = ok(&mut docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Name}}",
        &egress_net,
    ]));
    let (internal_name, egress_name) = (internal_name.trim(), egress_name.trim());
    let upstream = bb_e2e::start_upstream(
        "bb-e2e-upstream-apple",
        &egress_net,
        &["api.example.test", "other.example.test"],
        UPSTREAM_PY,
        (&cert, &key),
    );

    // 2. The argv the backend ran: the reference's shape, secrets by name only.
    let calls = argvs(&state);
    let runs: Vec<&Vec<String>> = calls
        .iter()
        .filter(|a| a.first().is_some_and(|c| c == "run"))
        .collect();
    let sidecar_run = runs
        .iter()
        .find(|a| a.iter().any(|x| x == "bot-bottle.dev/role=sidecar"))
        .expect("a sidecar run");
    let nets: Vec<&String> = sidecar_run
        .windows(2)
        .filter(|w| w[0] == "--network")
        .map(|w| &w[1])
        .collect();
    assert_eq!(
        nets,
        [egress_name, internal_name],
        "NAT first: {sidecar_run:?}"
    );
    let dns_at = sidecar_run
        .iter()
        .position(|x| x == "--dns")
        .expect("--dns");
    assert_eq!(sidecar_run[dns_at + 1], "127.0.0.1");
    assert!(
        sidecar_run
            .windows(2)
            .any(|w| w == ["--tmpfs", "/run/bot-bottle"]),
        "the sidecar keeps its secrets in memory: {sidecar_run:?}"
    );
    let agent_run = runs
        .iter()
        .find(|a| a.iter().any(|x| x == "bot-bottle.dev/role=agent"))
        .unwrap_or_else(|| panic!("no agent run among {calls:?}"));
    let agent_nets: Vec<&String> = agent_run
        .windows(2)
        .filter(|w| w[0] == "--network")
        .map(|w| &w[1])
        .collect();
    assert_eq!(
        agent_nets,
        [internal_name],
        "the agent is on the internal network only"
    );
    assert!(!agent_run.iter().any(|x| x == "--dns"), "{agent_run:?}");
    assert_eq!(
        agent_run[agent_run.len() - 2..],
        ["sleep".to_string(), "2147483647".to_string()]
    );
    assert!(
        calls
            .iter()
            .any(|a| a.first().is_some_and(|c| c == "network")
                && a.contains(&"--internal".to_string())
                && a.last().map(String::as_str) == Some(internal_name)),
        "the agent's network is --internal"
    );
    assert!(
        calls.iter().any(|a| a.first().is_some_and(|c| c == "cp")),
        "provisioning copies with cp"
    );
    let builds: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, a)| a.first().is_some_and(|c| c == "build"))
        .map(|(i, _)| i)
        .collect();
    assert!(!builds.is_empty(), "this run's agent image was not built");
    for i in builds {
        assert!(
            calls[..i]
                .iter()
                .rev()
                .take_while(|a| a.first().is_none_or(|c| c != "build"))
                .any(|a| a[..] == ["builder", "status", "--format", "json"]),
            "a build without the builder's resolver checked first: {:?}",
            calls[i]
        );
        let dns_at = calls[i].iter().position(|x| x == "--dns").expect("--dns");
        assert_eq!(calls[i][dns_at + 1], "127.0.0.1", "the builder's resolver");
    }
    let all = std::fs::read_to_string(state.join("argv.jsonl")).unwrap_or_default();
    assert!(!all.contains(TOKEN), "a token reached a container argv");

    // 3. The reference's integration assertions, the sidecar named by its address.
    let sidecar_ip = ok(&mut docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{internal_name}\").IPAddress}}}}"),
        &sidecar,
    ]));
    let sidecar_ip = sidecar_ip.trim();
    integration::assert_reference_checks(&cp, &agent, sidecar_ip, &upstream, TOKEN);

    // 4. Policy change: the new host is allowed without a new agent container.
    cp.apply(&manifest(
        "apple",
        &dockerfile,
        "      - host: other.example.test\n",
    ));
    cp.wait_for(
        "the second host to be allowed",
        Duration::from_secs(60),
        || in_agent(&agent, "curl -sS -m 5 https://other.example.test/").0,
    );
    assert_eq!(
        role(agent_label, "agent"),
        agent,
        "a policy edit recreated the agent"
    );

    // 5. Sessions through the runner: exec with exit codes and output, attach under a terminal.
    let bbctl = bb_e2e::workspace_bin("bbctl");
    let home = cp.home.path().to_path_buf();
    let exec = |cmd: &[&str]| cp.exec("apple", cmd);
    integration::assert_exec_basics(&cp, "apple", "apple prompt");
    // The secret env reaches the session, by name on the CLI's argv, never by value, and
    // stays out of the container's configuration.
    let out = exec(&["sh", "-c", "echo \"$SESSION_TOKEN\""]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), SESSION_SECRET);
    let argv_log = std::fs::read_to_string(state.join("argv.jsonl")).unwrap_or_default();
    assert!(
        argv_log.contains("\"--env\",\"SESSION_TOKEN\"") && !argv_log.contains(SESSION_SECRET),
        "the session's secret env on a container argv"
    );
    assert!(
        !ok(&mut docker(&["inspect", &agent])).contains(SESSION_SECRET),
        "the session's secret env is in the agent's configuration"
    );
    let out = exec(&["sh", "-c", "id -u; getent hosts bb-sidecar"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("1000\n") && text.contains(sidecar_ip),
        "{text}"
    );
    let result = dir.path().join("attach-exit");
    let tmux = Tmux::start(
        "apple",
        &format!(
            "{} attach agent/apple --home {}; echo EXIT=$? > {}; sleep 120",
            bbctl.display(),
            home.display(),
            result.display()
        ),
        (100, 30),
    );
    cp.wait_for(
        "the attached shell's prompt",
        Duration::from_secs(30),
        || tmux.pane().contains('$'),
    );
    tmux.send("tty; echo hi-$((6*7))");
    cp.wait_for("the shell to answer", Duration::from_secs(15), || {
        tmux.pane().contains("hi-42")
    });
    assert!(
        tmux.pane().contains("/dev/pts/"),
        "no terminal: {}",
        tmux.pane()
    );
    tmux.resize(90, 20);
    cp.wait_for(
        "the resize to reach the agent's terminal",
        Duration::from_secs(15),
        || {
            tmux.send("stty size");
            std::thread::sleep(Duration::from_millis(300));
            tmux.pane().contains("20 90")
        },
    );
    tmux.send("exit 7");
    cp.wait_for("attach to exit", Duration::from_secs(15), || {
        std::fs::read_to_string(&result).is_ok_and(|s| s.contains("EXIT="))
    });
    drop(tmux);
    assert_eq!(
        std::fs::read_to_string(&result).unwrap_or_default().trim(),
        "EXIT=7",
        "attach's exit code"
    );
    let audit = ok(&mut cp.bbctl(&["logs", "agent/apple", "--egress"]));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("other.example.test") && l.contains("block")),
        "the refused request is in the egress log: {audit}"
    );

    // 6. Drift: the agent removed out of band comes back, provisioned, egress working.
    ok(&mut docker(&["rm", "-f", &agent]));
    cp.wait_for(
        "the agent to be recreated",
        Duration::from_secs(120),
        || {
            let now = containers_with(&format!("{agent_label},bot-bottle.dev/role=agent"));
            now.len() == 1
                && now[0] != agent
                && cp.jsonpath(&["agent", "apple"], "{.status.phase}") == "Running"
        },
    );
    let agent = role(agent_label, "agent");
    cp.wait_for("egress from the new agent", Duration::from_secs(30), || {
        in_agent(&agent, "curl -sS -m 5 https://api.example.test/again").0
    });

    // 7. Suspend / resume: the agent's files survive in a tar-streamed snapshot, even when the
    // stopped container is gone by the time it resumes.
    let (wrote, out) = in_agent(&agent, "echo kept-across-suspend > /home/agent/state.txt");
    assert!(wrote, "{out}");
    let snapshot = integration::suspend(&cp, "apple");
    assert!(
        snapshot.starts_with("bot-bottle/snapshot:bb-default-apple-"),
        "{snapshot}"
    );
    ok(&mut docker(&["image", "inspect", &snapshot]));
    ok(&mut docker(&["rm", "-f", &agent]));
    integration::resume(&cp, "apple");
    let agent = role(agent_label, "agent");
    let (_, kept) = in_agent(&agent, "cat /home/agent/state.txt");
    assert!(
        kept.contains("kept-across-suspend"),
        "lost across suspend: {kept}"
    );

    // 8. Start-up sweep: what this instance made for an Agent that no longer exists goes when
    // the controller starts.
    let instance = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"bot-bottle.dev/controller\"}}",
        &agent,
    ]));
    let ghost = "bb-default-ghost-0000dead-internal";
    let made = run(std::process::Command::new(fake)
        .env("FAKE_CONTAINER_STATE", &state)
        .args(["network", "create"])
        .args(["--label", "bot-bottle.dev/managed-by=bot-bottle"])
        .args([
            "--label",
            &format!("bot-bottle.dev/controller={}", instance.trim()),
        ])
        .args(["--label", "bot-bottle.dev/agent=default/ghost"])
        .args([
            "--label",
            "bot-bottle.dev/agent-uid=0000dead-0000-4000-8000-000000000000",
        ])
        .args([
            "--label",
            "bot-bottle.dev/role=internal-network",
            "--internal",
            ghost,
        ]));
    assert!(made.status.success(), "{made:?}");
    let _ghost = Cleanup("bot-bottle.dev/agent=default/ghost".into());
    cp.kill();
    cp.spawn();
    cp.wait_for("the orphan to be swept", Duration::from_secs(60), || {
        networks_with("bot-bottle.dev/agent=default/ghost").is_empty()
    });
    cp.wait_for(
        "the Agent to run after the restart",
        Duration::from_secs(120),
        || cp.jsonpath(&["agent", "apple"], "{.status.phase}") == "Running",
    );
    assert_eq!(
        role(agent_label, "agent"),
        agent,
        "a restart recreated the agent"
    );

    // 9. doctor names the runtime and says auto would not pick it off a Mac.
    let report =
        String::from_utf8_lossy(&run(&mut cp.bbctl(&["doctor", "--container-cli", fake])).stdout)
            .into_owned();
    assert!(report.contains("ok    apple-container:"), "{report}");
    assert!(
        report.contains("usable: apple-container, docker"),
        "{report}"
    );

    // 10. Delete: containers, networks and snapshots all go.
    // (Apple's CLI cannot detach a container from a network: the test's upstream goes first.)
    drop(upstream);
    let out = run(&mut cp.kubectl(&[
        "delete",
        "agent",
        "apple",
        "-n",
        "default",
        "--timeout=120s",
    ]));
    assert!(out.status.success(), "delete: {out:?}\n{}", cp.log());
    assert!(
        containers_with(agent_label).is_empty(),
        "containers left behind"
    );
    assert!(
        networks_with(agent_label).is_empty(),
        "networks left behind"
    );
    assert!(
        !run(&mut docker(&["image", "inspect", &snapshot]))
            .status
            .success(),
        "the snapshot outlived its Agent"
    );
    prune();
}

/// git-gate on Apple Container: the push key travels like the tokens (exec stdin into the
/// sidecar's tmpfs, never a mount or an argv), and the agent reaches the gate by the sidecar's
/// name through the hosts entry provisioning writes. Clone and push reach a real forge.
#[test]
fn git_gate_works_on_apple_container() {
    use bb_e2e::forge::{FORGE, forge_head, keygen, start_forge};
    ensure_base_image();
    let fake = env!("CARGO_BIN_EXE_fake-container");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("fake-state");
    let keys = dir.path().join("forge-keys");
    std::fs::create_dir(&keys).expect("mkdir");
    let host_key = keygen(&keys.join("host_ed25519"));
    let push_key = dir.path().join("push_ed25519");
    let push_pub = keygen(&push_key);
    std::fs::write(keys.join("authorized_keys"), format!("{push_pub}\n")).expect("authorized_keys");
    let private = std::fs::read_to_string(&push_key).expect("private key");
    let key_line = private.lines().nth(2).expect("a key body line").to_string();
    let state_arg = state.display().to_string();
    let cp = Controller::start_with_env(
        &[
            "--backend",
            "apple-container",
            "--container-cli",
            fake,
            "--container-dns",
            "127.0.0.1",
            "--resync-seconds",
            "5",
        ],
        &[("FAKE_CONTAINER_STATE", &state_arg)],
    );
    let agent_label = "bot-bottle.dev/agent=default/apple-gated";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    cp.apply(&format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: apple-gated}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash]}}
  gitGate:
    user: {{name: gate-bottle, email: bottle@bot-bottle.invalid}}
    repos:
      app:
        url: git@{FORGE}:app.git
        hostKey: {host_key}
        key: {{provider: static, path: {push_key}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: apple-gated, namespace: default}}
spec:
  bottleRef: {{name: apple-gated}}
  backend: apple-container
  gitUser: {{name: gate-agent}}
"#,
        dockerfile = workspace_root()
            .join("images/test-agent/Dockerfile")
            .display(),
        push_key = push_key.display(),
    ));
    cp.wait_for("the gated Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "apple-gated"], "{.status.phase}") == "Running"
    });
    assert_eq!(
        cp.jsonpath(&["agent", "apple-gated"], "{.status.endpoints.gitGate}"),
        "http://bb-sidecar:9420"
    );
    let egress_net = one(
        networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let forge = start_forge(&egress_net, &keys);
    let agent = bb_e2e::harness::AgentSessions::new(&cp, "apple-gated");
    let out = agent.exec(&[
        "bash",
        "-c",
        &format!(
            "cd ~ && git clone -q git@{FORGE}:app.git app && cd app && echo 'fn main() {{}}' > main.rs \
             && git add main.rs && git commit -q -m main && git push -q origin main && git rev-parse HEAD"
        ),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "clone and push through the gate failed:\n{text}"
    );
    let head = text.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(
        forge_head(&forge.name, "app"),
        head,
        "the forge lacks the push"
    );
    let all = std::fs::read_to_string(state.join("argv.jsonl")).unwrap_or_default();
    assert!(
        !all.contains(&key_line),
        "the push key reached a container argv"
    );
    let agent_container = role(agent_label, "agent");
    let (_, found) = in_agent(
        &agent_container,
        &format!("grep -rlF -- '{key_line}' /home /etc /tmp 2>/dev/null | head -1"),
    );
    assert!(
        found.trim().is_empty(),
        "the agent holds the push key: {found}"
    );

    // (Apple's CLI cannot detach a container from a network: the forge goes first.)
    drop(forge);
    let out = run(&mut cp.kubectl(&["delete", "agent", "apple-gated", "--timeout=120s"]));
    assert!(out.status.success(), "delete: {out:?}\n{}", cp.log());
    assert!(
        containers_with(agent_label).is_empty(),
        "containers left behind"
    );
}
