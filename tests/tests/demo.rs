//! The README's main job: `bbctl demo` runs an agent in a bottle on Docker, shows an allowed
//! request (with the credential injected) and a refused one, and leaves nothing behind.

use bb_e2e::{containers_with, ensure_base_image, networks_with, run, workspace_bin};

#[test]
fn demo_runs_an_agent_shows_allow_and_block_and_cleans_up() {
    ensure_base_image();
    let out = run(std::process::Command::new(workspace_bin("bbctl"))
        .arg("demo")
        .env("NO_COLOR", "1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bbctl demo failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("hello from upstream"), "{stdout}");
    assert!(stdout.contains("HTTP/1.1 403"), "{stdout}");
    assert!(
        stdout.contains("x-bot-bottle-egress-rule: host-not-allowed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "the upstream received the real credential: yes; the agent's environment holds it: no"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("agent/demo: Running"), "{stderr}");
    assert!(containers_with("bot-bottle.dev/agent=default/demo").is_empty());
    assert!(networks_with("bot-bottle.dev/agent=default/demo").is_empty());
    assert!(containers_with("bot-bottle.dev/demo=upstream").is_empty());
}
