//! A controller upgraded under running Agents: when its sidecar image differs from the one an
//! Agent's sidecar runs (a new bb-sidecar), the sidecar is replaced and its delivery restored,
//! while the agent container keeps running untouched.

use std::time::Duration;

use bb_e2e::harness::{AgentSessions, one};
use bb_e2e::{
    Cleanup, Controller, containers_with, ensure_base_image, remove_all_with, workspace_bin,
    workspace_root,
};

#[test]
fn a_new_sidecar_image_replaces_the_sidecar_not_the_agent() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    // The "old" release: the same binary with one byte more, so its image differs.
    let old = dir.path().join("bb-sidecar-old");
    let mut bytes = std::fs::read(workspace_bin("bb-sidecar")).expect("bb-sidecar");
    bytes.push(0);
    std::fs::write(&old, bytes).expect("write old sidecar");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut cp = Controller::start(&["--resync-seconds", "2"]);
    cp.stop();
    cp.sidecar_binary = old;
    cp.spawn();
    let label = "bot-bottle.dev/agent=default/upgraded";
    remove_all_with(label);
    let _cleanup = Cleanup(label.to_string());
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: upgraded}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash]}}
  egress: {{log: 1}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: upgraded, namespace: default}}
spec:
  bottleRef: {{name: upgraded}}
"#,
        dockerfile = dockerfile.display()
    ));
    cp.wait_for("Running", Duration::from_secs(600), || {
        cp.jsonpath(&["agent", "upgraded"], "{.status.phase}") == "Running"
    });
    let sidecar_of = || {
        one(
            containers_with(&format!("{label},bot-bottle.dev/role=sidecar")),
            "sidecar",
        )
    };
    let agent_of = || {
        one(
            containers_with(&format!("{label},bot-bottle.dev/role=agent")),
            "agent",
        )
    };
    let (old_sidecar, agent) = (sidecar_of(), agent_of());
    let old_endpoint = cp.jsonpath(&["agent", "upgraded"], "{.status.sessionEndpoint}");

    // The upgrade: the controller restarts with the current bb-sidecar.
    cp.stop();
    cp.sidecar_binary = workspace_bin("bb-sidecar");
    cp.spawn();
    cp.wait_for(
        "the sidecar to be replaced",
        Duration::from_secs(120),
        || {
            containers_with(&format!("{label},bot-bottle.dev/role=sidecar"))
                .first()
                .is_some_and(|s| *s != old_sidecar)
                && cp.jsonpath(&["agent", "upgraded"], "{.status.phase}") == "Running"
                // Reconciled by the new runner: its session endpoint is another port.
                && cp.jsonpath(&["agent", "upgraded"], "{.status.sessionEndpoint}") != old_endpoint
        },
    );
    assert_eq!(agent_of(), agent, "the agent container was replaced");
    // The new sidecar has its delivery back: it serves git-gate's port and the proxy.
    let out = AgentSessions::new(&cp, "upgraded").exec(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do c=$(curl -s -o /dev/null -w '%{http_code}' 'http://bb-sidecar:9420/x.git/info/refs?service=git-upload-pack'); [ \"$c\" = 404 ] && break; sleep 0.5; done; echo $c; \
         curl -s -o /dev/null -w '%{http_connect}' https://blocked.example.test/",
    ]);
    let codes = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        codes.trim(),
        "404\n403",
        "after the upgrade: {codes}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
