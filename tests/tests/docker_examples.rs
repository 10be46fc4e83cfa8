//! What a new user copies runs: the Bottle and Agent in README.md, then everything in
//! `examples/`, applied with `bbctl apply --wait` on a real Docker engine, reach Running. Only
//! what points at the author's machine is rewritten (`/home/me/src/...` workspaces and a host
//! skill directory); stand-ins answer as the example's forge so its route is exercised too.

use std::path::Path;
use std::process::Command;

use bb_e2e::harness::{AgentSessions, codex_login, harness_controller, start_stand_in};
use bb_e2e::{Cleanup, ensure_base_image, ok, remove_all_with, run, test_pki, workspace_root};

const CLAUDE_TOKEN: &str = "sk-ant-oat01-e2e-examples-3e1f";
const GITEA_TOKEN: &str = "gitea-e2e-examples-9a7c2d";
const OPENAI_KEY: &str = "sk-proj-e2e-examples-4d2b";

/// The first ```yaml block after "## A Bottle and an Agent" in README.md.
fn readme_manifest() -> String {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    let section = readme
        .split("## A Bottle and an Agent")
        .nth(1)
        .expect("README.md has a section '## A Bottle and an Agent'");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("that section holds a ```yaml block");
    block.to_string()
}

/// The stand-in Gitea deploy-key API on 127.0.0.1 (tests/fixtures/gitea_keys.py), and its URL.
struct KeyForge {
    child: std::process::Child,
    url: String,
}

impl Drop for KeyForge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_key_forge(log: &Path) -> KeyForge {
    use std::io::BufRead;
    let mut child = Command::new("python3")
        .arg("-u")
        .arg(workspace_root().join("tests/fixtures/gitea_keys.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 for the stand-in forge");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("forge port");
    let port = first
        .trim()
        .strip_prefix("PORT ")
        .expect("PORT line")
        .to_string();
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::File::create(&log).expect("forge log");
        let _ = std::io::copy(&mut out, &mut f);
    });
    KeyForge {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// `examples/` copied to `to`, workspace and skill paths pointed under `root`, the forge API
/// at `forge`.
fn copy_examples(to: &Path, root: &Path, forge: &str) {
    let src = workspace_root().join("examples");
    for sub in ["bottles", "agents"] {
        std::fs::create_dir_all(to.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(src.join(sub)).expect("read examples") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read example");
            let text = text
                .replace("/home/me/src/", &format!("{}/src/", root.display()))
                .replace("/opt/skills/", &format!("{}/opt-skills/", root.display()))
                .replace(
                    "apiUrl: https://gitea.example.com",
                    &format!("apiUrl: {forge}"),
                );
            std::fs::write(to.join(sub).join(path.file_name().expect("name")), text)
                .expect("write example");
        }
    }
}

#[test]
fn readme_and_examples_reach_running() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (ca, cert, key) = test_pki(&["gitea.example.com"]);
    let ca_path = root.join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    // The author's machine, as the examples expect it: two checkouts, a host skill, a skill
    // in the controller's home, and a Codex login.
    let app = root.join("src/app");
    std::fs::create_dir_all(&app).expect("mkdir app");
    std::fs::write(app.join("main.rs"), "fn main() {}\n").expect("write app");
    ok(Command::new("git").args(["init", "-q"]).current_dir(&app));
    std::fs::create_dir_all(root.join("src/engine")).expect("mkdir engine");
    std::fs::write(root.join("src/engine/lib.rs"), "// engine\n").expect("write engine");
    std::fs::create_dir_all(root.join("opt-skills/gitea-pr")).expect("mkdir skill");
    std::fs::write(root.join("opt-skills/gitea-pr/SKILL.md"), "# gitea-pr\n").expect("skill");
    let codex_home = codex_login(root, OPENAI_KEY);

    let cp = harness_controller(
        &ca_path,
        &[
            ("BOT_BOTTLE_CLAUDE_OAUTH_TOKEN", CLAUDE_TOKEN),
            ("CODEX_HOME", &codex_home.to_string_lossy()),
        ],
    );
    for label in [
        "bot-bottle.dev/agent=default/issue-42",
        "bot-bottle.dev/agent=default/reviewer",
    ] {
        remove_all_with(label);
    }
    let _cleanup = Cleanup("bot-bottle.dev/agent=default/issue-42".to_string());
    let _cleanup_reviewer = Cleanup("bot-bottle.dev/agent=default/reviewer".to_string());
    std::fs::create_dir_all(cp.home.path().join("skills/code-review")).expect("mkdir skill");
    std::fs::write(
        cp.home.path().join("skills/code-review/SKILL.md"),
        "# code-review\n",
    )
    .expect("skill");
    cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: gitea-token, namespace: bot-bottle-system}}
stringData: {{token: {GITEA_TOKEN}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: dev-secrets, namespace: bot-bottle-system}}
stringData: {{sentry-dsn: https://e2e@sentry.invalid/1}}
"#
    ));

    // README.md first, as a reader would try it.
    let readme = readme_manifest().replace("/home/me/src/app", &app.to_string_lossy());
    let readme_path = root.join("readme.yaml");
    std::fs::write(&readme_path, readme).expect("write readme manifest");
    let out = run(&mut cp.bbctl(&["apply", "-f", &readme_path.to_string_lossy(), "--wait"]));
    assert!(
        out.status.success(),
        "applying README.md's manifest failed:\n{}\n{}\ncontroller log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        cp.log()
    );
    assert_eq!(
        cp.jsonpath(&["agent", "issue-42"], "{.status.phase}"),
        "Running"
    );
    let generation = cp.jsonpath(&["agent", "issue-42"], "{.metadata.generation}");

    // Then examples/, which redefines the same Bottles and issue-42 with more: `--wait` must
    // wait for the new generation, not return on the old one's Running.
    let forge_log = root.join("forge.log");
    let forge = start_key_forge(&forge_log);
    let examples = root.join("examples");
    copy_examples(&examples, root, &forge.url);
    let out = run(&mut cp.bbctl(&["apply", "-f", &examples.to_string_lossy(), "-R", "--wait"]));
    assert!(
        out.status.success(),
        "applying examples/ failed:\n{}\n{}\ncontroller log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        cp.log()
    );
    for agent in ["issue-42", "reviewer"] {
        assert_eq!(
            cp.jsonpath(&["agent", agent], "{.status.phase}"),
            "Running",
            "{agent}: {}\ncontroller log:\n{}",
            cp.jsonpath(&["agent", agent], "{.status}"),
            cp.log()
        );
        assert_eq!(
            cp.jsonpath(&["agent", agent], "{.status.observedGeneration}"),
            cp.jsonpath(&["agent", agent], "{.metadata.generation}"),
            "{agent} is Running, but not at the applied generation"
        );
    }
    assert_ne!(
        cp.jsonpath(&["agent", "issue-42"], "{.metadata.generation}"),
        generation,
        "examples/ did not change issue-42's spec, so the re-apply proves nothing"
    );

    // What examples/ added is in the running container, not just in the spec.
    let issue42 = AgentSessions::new(&cp, "issue-42");
    let out = issue42.exec(&[
        "sh",
        "-c",
        "ls ~/.claude/skills; echo \"$GITEA_URL $SENTRY_DSN\"; test -d /workspace/.git && echo git",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "code-review",
        "gitea-pr",
        "https://gitea.example.com https://e2e@sentry.invalid/1",
        "git",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing in issue-42: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let reviewer = AgentSessions::new(&cp, "reviewer");
    let out = reviewer.exec(&["cat", "/workspace/lib.rs"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "// engine\n");

    // gitea-dev's repository got a deploy key minted with the forge token, delivered to the
    // sidecar only; the agent's git maps the repository's URL to the gate.
    let minted = std::fs::read_to_string(&forge_log).unwrap_or_default();
    assert!(
        minted.lines().any(|l| l.contains("\"POST\"")
            && l.contains("/api/v1/repos/team/app/keys")
            && l.contains(&format!("token {GITEA_TOKEN}"))),
        "no deploy key was minted:\n{minted}"
    );
    let out = issue42.exec(&["git", "config", "--get-regexp", "url\\..*insteadof"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("git@gitea.example.com:team/app.git"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        cp.jsonpath(&["agent", "issue-42"], "{.status.endpoints.gitGate}"),
        "http://bb-sidecar:9420"
    );

    // The forge route of gitea-dev works as written: a stand-in forge gets the token the
    // sidecar injects, on the path the example allows.
    let forge = start_stand_in(
        "bot-bottle.dev/agent=default/issue-42",
        "bb-e2e-examples-gitea",
        &["gitea.example.com"],
        include_str!("../fixtures/anthropic_api.py"),
        (&cert, &key),
    );
    let out = issue42.exec(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do \
           code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' \
             https://gitea.example.com/api/v1/user); \
           [ \"$code\" = 404 ] && break; sleep 0.5; done; echo $code; \
         curl -s -o /dev/null -w '%{http_code}' https://gitea.example.com/api/v1/admin/users",
    ]);
    let codes = String::from_utf8_lossy(&out.stdout);
    // 404: the stand-in answered (it serves no forge); 403: the sidecar refused a path the
    // example does not allow.
    assert_eq!(codes.trim(), "404\n403", "forge route: {codes}");
    let seen = ok(&mut bb_e2e::docker(&["logs", &forge.name]));
    assert!(
        seen.lines()
            .any(|l| l.contains("/api/v1/user") && l.contains(&format!("token {GITEA_TOKEN}"))),
        "the stand-in forge never got the injected token:\n{seen}"
    );
    assert!(
        !seen.contains("/api/v1/admin"),
        "a refused path reached the forge:\n{seen}"
    );
}
