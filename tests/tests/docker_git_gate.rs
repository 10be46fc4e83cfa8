//! git-gate on a real Docker engine with a real forge: Debian's sshd serving bare repositories
//! on the bottle's egress network, a `static` push key on the controller host, and the agent
//! using the upstream's own URL. Clone and push go through the gate; a secret never reaches the
//! forge; a forge presenting another host key is refused; the agent never holds the key.

use std::time::Duration;

use bb_e2e::forge::{FORGE, forge_head, keygen, start_forge};
use bb_e2e::harness::{AgentSessions, one};
use bb_e2e::{
    Cleanup, Controller, containers_with, docker, ensure_base_image, ok, remove_all_with, run,
    scan_for, workspace_root,
};

#[test]
fn pushes_go_through_the_gate_and_secrets_stay_in() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("forge-keys");
    std::fs::create_dir(&keys).expect("mkdir");
    let host_key = keygen(&keys.join("host_ed25519"));
    let other_host_key = keygen(&dir.path().join("impostor_ed25519"));
    let push_key = dir.path().join("push_ed25519");
    let push_pub = keygen(&push_key);
    std::fs::write(keys.join("authorized_keys"), format!("{push_pub}\n")).expect("authorized_keys");
    let private = std::fs::read_to_string(&push_key).expect("private key");
    // One line of the key's body: what a leak would contain.
    let key_line = private
        .lines()
        .nth(2)
        .expect("a private key body line")
        .to_string();

    let cp = Controller::start(&["--resync-seconds", "5"]);
    let agent_label = "bot-bottle.dev/agent=default/gated";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: gated}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash]}}
  gitGate:
    user: {{name: gate-bottle, email: bottle@bot-bottle.invalid}}
    repos:
      app:
        url: git@{FORGE}:app.git
        hostKey: {host_key}
        key: {{provider: static, path: {push_key}}}
      other:
        url: git@{FORGE}:other.git
        hostKey: {other_host_key}
        key: {{provider: static, path: {push_key}}}
  egress: {{log: 1}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: gated, namespace: default}}
spec:
  bottleRef: {{name: gated}}
  gitUser: {{name: gate-agent}}
"#,
        dockerfile = dockerfile.display(),
        push_key = push_key.display(),
    ));
    cp.wait_for(
        "the gated Agent to be Running",
        Duration::from_secs(600),
        || cp.jsonpath(&["agent", "gated"], "{.status.phase}") == "Running",
    );
    assert_eq!(
        cp.jsonpath(&["agent", "gated"], "{.status.endpoints.gitGate}"),
        "http://bb-sidecar:9420"
    );
    let egress_net = one(
        bb_e2e::networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let forge = start_forge(&egress_net, &keys);
    let agent = AgentSessions::new(&cp, "gated");
    let sh = |script: &str| {
        let out = agent.exec(&["bash", "-c", script]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    // The upstream URL as the agent knows it, cloned through the gate: a legitimate request
    // first, so every refusal below means something.
    let (cloned, out) = sh(&format!(
        "cd ~ && git clone -q git@{FORGE}:app.git app && cat app/README.md && git -C app config user.name"
    ));
    assert!(cloned, "clone through the gate failed:\n{out}");
    assert!(out.contains("# app") && out.contains("gate-agent"), "{out}");
    let (pushed, out) = sh(
        "cd ~/app && echo 'fn main() {}' > main.rs && git add main.rs && git commit -q -m main \
         && git push -q origin main && git rev-parse HEAD",
    );
    assert!(pushed, "a clean push failed:\n{out}");
    let head = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(
        forge_head(&forge.name, "app"),
        head,
        "the forge lacks the push"
    );

    // A secret is refused with where it is, and the forge stays where it was.
    let (pushed, out) = sh(
        "cd ~/app && echo 'AWS_ACCESS_KEY_ID=AKIAQ3EGRUOPXNVZLM7K' > aws.env && git add aws.env \
         && git commit -q -m creds && git push origin main",
    );
    assert!(!pushed, "a push with a secret went through:\n{out}");
    assert!(
        out.contains("aws-access-key-id")
            && out.contains("aws.env:1")
            && !out.contains("AKIAQ3EGRUOPXNVZLM7K"),
        "{out}"
    );
    assert_eq!(
        forge_head(&forge.name, "app"),
        head,
        "the secret reached the forge"
    );
    // More families, one only in an intermediate commit, and a key split across two
    // commits, each from a clean base: all refused, none on the forge.
    let planted: &[(&str, &str)] = &[
        (
            "github-token",
            "echo 'token: ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi' > ci.yml && git add ci.yml && git commit -q -m ci",
        ),
        (
            "stripe-live-key",
            "echo 'STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc' > s.env && git add s.env && git commit -q -m s1 \
             && echo 'STRIPE=' > s.env && git commit -q -am s2",
        ),
        (
            "private-key-block",
            "mkdir -p deploy && echo '-----BEGIN OPENSSH PRIVATE KEY-----' > deploy/id && git add deploy && git commit -q -m k1 \
             && echo 'b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ' >> deploy/id && git commit -q -am k2",
        ),
    ];
    sh("cd ~/app && git tag secret-top");
    for (rule, script) in planted {
        let (pushed, out) = sh(&format!(
            "cd ~/app && git reset -q --hard secret-top~1 && {script} && git push origin main"
        ));
        assert!(!pushed && out.contains(rule), "{rule}: not refused:\n{out}");
        assert_eq!(
            forge_head(&forge.name, "app"),
            head,
            "{rule} reached the forge"
        );
    }
    sh("cd ~/app && git reset -q --hard secret-top");

    // A force push and a branch deletion reach the forge as such (the secret commit dropped).
    let (pushed, out) = sh(
        "cd ~/app && git reset -q --hard HEAD~1 && git commit -q --amend -m 'main, amended' \
         && git push -q --force origin main && git push -q origin main:refs/heads/feature \
         && git push -q origin :refs/heads/feature && git rev-parse HEAD",
    );
    assert!(pushed, "force push or deletion failed:\n{out}");
    let amended = out.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(
        forge_head(&forge.name, "app"),
        amended,
        "the force push did not land"
    );
    let branches = ok(&mut docker(&[
        "exec",
        "-u",
        "git",
        &forge.name,
        "git",
        "--git-dir",
        "/home/git/app.git",
        "branch",
    ]));
    assert!(
        !branches.contains("feature"),
        "the deletion did not land: {branches}"
    );

    // A forge that presents another host key than the pinned one gets nothing.
    let (cloned, out) = sh(&format!("cd ~ && git clone -q git@{FORGE}:other.git other"));
    assert!(
        !cloned,
        "the gate talked to a forge with the wrong host key:\n{out}"
    );
    let sidecar = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    let logs = String::from_utf8_lossy(&run(&mut docker(&["logs", &sidecar])).stderr).into_owned();
    assert!(
        logs.contains("Host key verification failed"),
        "the refusal is not the host key's:\n{logs}"
    );

    // A finding marked gitleaks:allow holds the push for a human: a Proposal appears, a
    // rejection refuses the push, an approval (which needs a reason) releases it.
    let marked = |file: &str| {
        format!(
            "cd ~/app && git fetch -q origin && git reset -q --hard origin/main \
             && echo 'AWS_ACCESS_KEY_ID=AKIAQ3EGRUOPXNVZLM7K # gitleaks:allow' > {file} \
             && git add {file} && git commit -q -m {file} && git push origin main"
        )
    };
    let decided_push = |file: &str, known: &[String], decide: &dyn Fn(&str)| {
        std::thread::scope(|s| {
            let push = s.spawn(|| sh(&marked(file)));
            let mut name = String::new();
            cp.wait_for("a gitleaks-allow Proposal", Duration::from_secs(30), || {
                name = cp
                    .jsonpath(
                        &["proposals", "-n", "default"],
                        "{range .items[?(@.spec.tool==\"gitleaks-allow\")]}{.metadata.name}{\"\\n\"}{end}",
                    )
                    .lines()
                    .find(|n| !known.iter().any(|k| k == n))
                    .unwrap_or_default()
                    .to_string();
                !name.is_empty()
            });
            let content = cp.jsonpath(&["proposal", &name, "-n", "default"], "{.spec.content}");
            assert!(
                content.contains(&format!("{file}:1")) && !content.contains("AKIAQ3EGRUOPXNVZLM7K"),
                "{content}"
            );
            decide(&name);
            let (pushed, out) = push.join().expect("push thread");
            (name, pushed, out)
        })
    };
    let before = forge_head(&forge.name, "app");
    let (rejected, pushed, out) = decided_push("rejected.env", &[], &|name| {
        ok(&mut cp.bbctl(&["reject", name, "--reason", "not a fixture", "--wait"]));
    });
    assert!(!pushed && out.contains("not a fixture"), "{out}");
    assert_eq!(
        forge_head(&forge.name, "app"),
        before,
        "a rejected push landed"
    );
    let (_, pushed, out) = decided_push("fixture.env", &[rejected], &|name| {
        let no_reason = run(&mut cp.bbctl(&["approve", name, "--reason", " "]));
        assert_eq!(
            no_reason.status.code(),
            Some(2),
            "an approval without a reason"
        );
        ok(&mut cp.bbctl(&[
            "approve",
            name,
            "--reason",
            "a dummy test fixture",
            "--wait",
        ]));
    });
    assert!(pushed, "the approved push failed:\n{out}");
    assert_ne!(
        forge_head(&forge.name, "app"),
        before,
        "the approved push did not land"
    );

    // Around the gate there is no way to push: egress refuses receive-pack on every route
    // (sidecar/tests/egress.rs), and the agent has no key to push with.
    // The push key is nowhere in the agent: not in a file, an env or an argv.
    let agent_container = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let found = scan_for(&agent_container, &key_line);
    assert_eq!(
        found.lines().collect::<Vec<_>>(),
        ["0"],
        "the push key is readable in the agent: {found}"
    );
}
