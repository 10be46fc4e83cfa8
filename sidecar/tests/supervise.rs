//! The supervise MCP server against the official MCP Python SDK: initialize, list tools, every
//! tool with valid and invalid input, proposals in the queue, decisions carried back, limits.

// Only the test CA and the listen file are used here.
#[allow(dead_code)]
mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

struct Sidecar {
    child: Child,
    supervise: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, queue: &Path) -> Sidecar {
    start_waiting(dir, queue, 3)
}

/// `start`, with tool calls waiting `wait` seconds for a decision.
fn start_waiting(dir: &Path, queue: &Path, wait: u64) -> Sidecar {
    let (ca, key) = common::tls::ca("bottle CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    std::fs::write(dir.join("ca.key"), key.serialize_pem()).expect("write");
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("api-token"), "tok").expect("write");
    std::fs::write(
        dir.join("policy.yaml"),
        "routes:\n  - host: api.test\n    auth: {scheme: Bearer, tokenFile: api-token}\n",
    )
    .expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_bb-sidecar"))
        .args(["egress", "--listen", "127.0.0.1:0", "--listen-file"])
        .arg(dir.join("listen"))
        .arg("--ca-cert")
        .arg(dir.join("ca.pem"))
        .arg("--ca-key")
        .arg(dir.join("ca.key"))
        .arg("--policy")
        .arg(dir.join("policy.yaml"))
        .arg("--secrets-dir")
        .arg(&secrets)
        .args([
            "--supervise-listen",
            "127.0.0.1:0",
            "--supervise-listen-file",
        ])
        .arg(dir.join("supervise"))
        .arg("--queue-dir")
        .arg(queue)
        .args(["--decision-wait", &wait.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bb-sidecar");
    let supervise = common::listen_addr(&dir.join("supervise"), "supervise").to_string();
    Sidecar { child, supervise }
}

/// The MCP SDK, installed once into the shared cache (PyPI is reachable; failing loudly if not).
fn python_with_mcp() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME");
    let dir = PathBuf::from(home).join(".cache/bot-bottle/pypi-mcp");
    let ok = |d: &Path| {
        Command::new("python3")
            .args(["-c", "import mcp.client.streamable_http"])
            .env("PYTHONPATH", d)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&dir) {
        let st = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--target",
            ])
            .arg(&dir)
            .arg("mcp>=1.20")
            .status()
            .expect("pip");
        assert!(
            st.success() && ok(&dir),
            "installing the MCP Python SDK failed"
        );
    }
    dir
}

/// The human: approves egress-block, rejects capability-block, leaves allow pending.
fn decide(queue: &Path, stop: &std::sync::atomic::AtomicBool) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut done = std::collections::BTreeSet::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for e in std::fs::read_dir(queue).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".proposal.json") else {
                continue;
            };
            if !done.insert(id.to_string()) {
                continue;
            }
            let p: Value = serde_json::from_slice(&std::fs::read(e.path()).expect("read"))
                .expect("proposal json");
            let response = match p["tool"].as_str() {
                Some("egress-block") => Some(r#"{"status":"approved","reason":"docs are fine"}"#),
                Some("capability-block") => {
                    Some(r#"{"status":"rejected","reason":"use the stdlib"}"#)
                }
                _ => None,
            };
            if let Some(r) = response {
                std::fs::write(queue.join(format!("{id}.response.json")), r).expect("respond");
            }
            seen.push(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    seen
}

#[test]
fn the_python_sdk_drives_every_tool_and_decisions_come_back() {
    let py = python_with_mcp();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).expect("mkdir");
    let sc = start(dir.path(), &queue);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (lines, proposals) = std::thread::scope(|s| {
        let human = s.spawn(|| decide(&queue, &stop));
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/mcp_client.py"
            ))
            .arg(format!("http://{}/mcp", sc.supervise))
            .env("PYTHONPATH", &py)
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = child.stdout.take().expect("stdout");
        let lines: Vec<Value> = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        let status = child.wait().expect("wait");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(status.success(), "the client failed after {lines:#?}");
        (lines, human.join().expect("human"))
    });
    let step = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {lines:#?}"))
    };

    assert_eq!(step("initialize")["server"], "bot-bottle-supervise");
    assert_eq!(step("initialize")["tools"], true);
    assert_eq!(
        step("list_tools")["names"],
        serde_json::json!([
            "list-egress-routes",
            "allow",
            "egress-block",
            "capability-block"
        ])
    );
    assert_eq!(
        step("list_tools")["schemas"]["allow"]["required"],
        serde_json::json!(["routes_yaml", "justification"])
    );
    // The live routes, without the credential, in a form `allow` accepts back.
    let routes = step("list_routes")["text"].as_str().unwrap_or_default();
    assert!(routes.contains("host: api.test"), "{routes}");
    assert!(
        !routes.contains("api-token") && !routes.contains("tok\n"),
        "{routes}"
    );
    bb_policy::proposal::parse_proposed_routes(routes).expect("the listing parses as a proposal");

    for (name, want) in [
        ("list_routes_args", "takes no arguments"),
        ("allow_invalid", "allow: proposed routes.yaml is not valid"),
        ("allow_missing", "allow: justification is required"),
        ("unknown_tool", "unknown tool 'rm-rf'"),
        (
            "capability_empty",
            "capability-block: dockerfile must not be empty",
        ),
    ] {
        let s = step(name);
        assert_eq!(s["ok"], false, "{name}: {s}");
        assert_eq!(s["code"], -32602, "{name}: invalid params expected: {s}");
        assert!(
            s["message"].as_str().unwrap_or_default().contains(want),
            "{name}: {s}"
        );
    }
    let approved = step("egress_block");
    assert_eq!(approved["is_error"], false, "{approved}");
    assert!(
        approved["text"]
            .as_str()
            .unwrap_or_default()
            .contains("approved (docs are fine)"),
        "{approved}"
    );
    let rejected = step("capability");
    assert_eq!(rejected["is_error"], true, "{rejected}");
    assert!(
        rejected["text"]
            .as_str()
            .unwrap_or_default()
            .contains("rejected (use the stdlib)"),
        "{rejected}"
    );
    let pending = step("allow_pending");
    assert!(
        pending["text"]
            .as_str()
            .unwrap_or_default()
            .contains("waiting for a human decision"),
        "{pending}"
    );

    // Exactly the three valid proposals reached the queue, as the agent wrote them.
    let tools: Vec<_> = proposals
        .iter()
        .map(|p| p["tool"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        tools,
        ["egress-block", "capability-block", "allow"],
        "{proposals:#?}"
    );
    assert_eq!(proposals[0]["justification"], "I need docs.test");
    assert!(
        proposals[0]["proposedFile"]
            .as_str()
            .unwrap_or_default()
            .contains("docs.test"),
        "{proposals:#?}"
    );
    for p in &proposals {
        assert!(
            bb_policy::proposal::valid_id(p["id"].as_str().unwrap_or_default()),
            "{p}"
        );
    }
    // Decided proposals are consumed; the pending one stays for the human.
    let left: Vec<_> = std::fs::read_dir(&queue)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("allow-"), "{left:?}");
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--noproxy",
            "*",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn requests_over_a_mebibyte_and_other_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).expect("mkdir");
    let sc = start(dir.path(), &queue);
    let url = format!("http://{}/mcp", sc.supervise);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let headers = [
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
    ];
    // A legitimate request gets through first: the refusals below are the server's.
    let mut ok = vec!["-X", "POST", "--data", init];
    ok.extend(headers);
    ok.push(&url);
    assert_eq!(curl(&ok), "200");

    // A name that is not the sidecar's (DNS rebinding from a page the agent opened): refused.
    let mut rebound = vec![
        "-X",
        "POST",
        "--data",
        init,
        "-H",
        "Host: rebound.attacker.test",
    ];
    rebound.extend(headers);
    rebound.push(&url);
    assert_eq!(curl(&rebound), "403");
    let mut named = vec!["-X", "POST", "--data", init, "-H", "Host: bb-sidecar:9100"];
    named.extend(headers);
    named.push(&url);
    assert_eq!(curl(&named), "200");

    let big = dir.path().join("big.json");
    let pad = "x".repeat((1 << 20) + 1);
    std::fs::write(
        &big,
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{pad}"}}}}"#),
    )
    .expect("write");
    let data = format!("@{}", big.display());
    let mut over = vec!["-X", "POST", "--data-binary", &data];
    over.extend(headers);
    over.push(&url);
    assert_eq!(curl(&over), "413");

    let other = format!("http://{}/other", sc.supervise);
    assert_eq!(curl(&[&other]), "404");
    // Nothing reached the queue.
    assert_eq!(std::fs::read_dir(&queue).expect("ls").count(), 0);
}

/// Each agent gets a bounded share of the human's queue and of the server's memory: proposals
/// are size-limited, at most five wait at once, and MCP sessions are capped (each refusal a
/// clear answer, never a silent drop).
#[test]
fn proposals_and_sessions_are_bounded() {
    let py = python_with_mcp();
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = dir.path().join("queue");
    std::fs::create_dir(&queue).expect("mkdir");
    let sc = start_waiting(dir.path(), &queue, 0);
    let url = format!("http://{}/mcp", sc.supervise);
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mcp_limits.py"
        ))
        .arg(&url)
        .env("PYTHONPATH", &py)
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let step = |name: &str| -> &Value {
        lines
            .iter()
            .find(|l| l["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {lines:#?}"))
    };
    let said = |name: &str| {
        let s = step(name);
        format!(
            "{}{}",
            s["message"].as_str().unwrap_or_default(),
            s["text"].as_str().unwrap_or_default()
        )
    };
    assert!(
        said("oversized").contains("at most 65536 are read"),
        "{}",
        said("oversized")
    );
    assert!(
        said("long_justification").contains("justification is 5000 bytes"),
        "{}",
        said("long_justification")
    );
    // Five wait; the sixth and seventh are not queued, and say why.
    for i in 0..5 {
        assert!(
            said(&format!("proposal_{i}")).contains("waiting for a human decision"),
            "{i}: {}",
            said(&format!("proposal_{i}"))
        );
    }
    for i in 5..7 {
        assert!(
            said(&format!("proposal_{i}")).contains("5 of your proposals are waiting"),
            "{i}: {}",
            said(&format!("proposal_{i}"))
        );
    }
    let queued = std::fs::read_dir(&queue)
        .expect("queue")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".proposal.json"))
        .count();
    assert_eq!(queued, 5);

    // Sessions: each initialize without a session id opens one; past the cap, none.
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}"#;
    let codes: Vec<String> = (0..40)
        .map(|_| {
            curl(&[
                "-X",
                "POST",
                "--data",
                init,
                "-H",
                "content-type: application/json",
                "-H",
                "accept: application/json, text/event-stream",
                &url,
            ])
        })
        .collect();
    let opened = codes.iter().filter(|c| *c == "200").count();
    assert_eq!(opened, 32, "sessions opened: {codes:?}");
}
