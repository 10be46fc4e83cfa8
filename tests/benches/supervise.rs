//! Benchmark: supervise latencies on Docker, 50 proposals each. (a) A proposal's arrival in the
//! sidecar's queue until the API serves its Proposal (what `kubectl get proposals` sees);
//! (b) a decision written to the API until the agent's request to the granted host succeeds.
//! Prints a table. Run with `hack/bench-supervise.sh` (or `cargo bench -p bb-e2e --bench
//! supervise`); needs Docker, the base image and built binaries.

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use bb_e2e::harness::one;
use bb_e2e::{
    Cleanup, Controller, UPSTREAM_PY, containers_with, docker, ensure_base_image, networks_with,
    ok, remove_all_with, run, test_pki, workspace_root,
};

const N: usize = 50;

fn host(i: usize) -> String {
    format!("h{i}.bench.test")
}

/// `curl` against the local API with its CA and token; returns the HTTP status.
fn api(cp: &Controller, method: &str, path: &str, body: Option<&str>) -> String {
    let home = cp.home.path();
    let token = std::fs::read_to_string(home.join("token")).expect("token");
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .arg("--cacert")
        .arg(home.join("ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {}", token.trim())]);
    if let Some(b) = body {
        c.args([
            "-H",
            "Content-Type: application/merge-patch+json",
            "--data",
            b,
        ]);
    }
    c.arg(format!("https://{}{path}", cp.listen));
    String::from_utf8_lossy(&c.output().expect("curl").stdout).into_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, mut v: Vec<Duration>, target: &str) -> String {
    v.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    format!(
        "| {name} | {} | {} | {} | {} | {target} |",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.95)),
        ms(*v.last().unwrap_or(&Duration::ZERO))
    )
}

fn main() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts: Vec<String> = (0..N).map(host).collect();
    let names: Vec<&str> = hosts.iter().map(String::as_str).collect();
    let (ca, cert, key) = test_pki(&names);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let ca_arg = ca_path.to_string_lossy().into_owned();
    let cp = Controller::start(&["--upstream-ca", &ca_arg, "--resync-seconds", "300"]);
    let label = "bot-bottle.dev/agent=default/bench";
    remove_all_with(label);
    let _cleanup = Cleanup(label.to_string());
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {{name: bench}}\nspec:\n  agentProvider: {{template: custom, dockerfile: {}, command: [bash]}}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: bench, namespace: default}}\nspec: {{bottleRef: {{name: bench}}}}\n",
        dockerfile.display()
    ));
    cp.wait_for("the Agent to be Running", Duration::from_secs(600), || {
        cp.jsonpath(&["agent", "bench"], "{.status.phase}") == "Running"
    });
    let uid = cp.jsonpath(&["agent", "bench"], "{.metadata.uid}");
    let queue = cp.home.path().join(format!("agents/{uid}/supervise/queue"));
    let agent = one(
        containers_with(&format!("{label},bot-bottle.dev/role=agent")),
        "agent",
    );
    let net = one(
        networks_with(&format!("{label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let _upstream = bb_e2e::start_upstream(
        "bb-bench-upstream",
        &net,
        &names,
        UPSTREAM_PY,
        (&cert, &key),
    );

    // (a) arrival -> visible: the proposal written to the queue as the sidecar writes it.
    let mut visible = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let id = format!("egress-block-bench{i}");
        let proposal = serde_json::json!({
            "id": id, "tool": "egress-block",
            "proposedFile": format!("routes:\n  - host: {h}\n"),
            "justification": "bench",
            "arrivalTimestamp": jiff_now(),
        });
        let tmp = queue.join(format!(".{id}.tmp"));
        std::fs::write(&tmp, proposal.to_string()).expect("write proposal");
        let t0 = Instant::now();
        std::fs::rename(&tmp, queue.join(format!("{id}.proposal.json"))).expect("rename");
        let path = format!("/apis/bot-bottle.dev/v1alpha1/namespaces/default/proposals/bench-{id}");
        while api(&cp, "GET", &path, None) != "200" {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{id} never appeared"
            );
        }
        visible.push(t0.elapsed());
    }

    // (b) decision -> enforced: the agent retries the new host until the sidecar lets it by.
    let mut enforced = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let poller = docker(&[
            "exec",
            "-u",
            "1000",
            &agent,
            "sh",
            "-c",
            &format!("while ! curl -sf -m 2 -o /dev/null https://{h}/; do :; done; date +%s.%N"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("poller");
        std::thread::sleep(Duration::from_millis(300));
        let decided = SystemTime::now();
        let patch = r#"{"spec":{"decision":{"verdict":"Approved","reason":"bench"}}}"#;
        let path = format!(
            "/apis/bot-bottle.dev/v1alpha1/namespaces/default/proposals/bench-egress-block-bench{i}"
        );
        assert_eq!(api(&cp, "PATCH", &path, Some(patch)), "200");
        let out = poller.wait_with_output().expect("poller");
        let done: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a time");
        let start = decided
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        enforced.push(Duration::from_secs_f64((done - start).max(0.0)));
    }
    let _ = run(&mut docker(&["ps"]));
    println!("| measure | n | p50 | p95 | max | target |");
    println!("|---|---|---|---|---|---|");
    println!(
        "{}",
        row(
            "proposal queued -> Proposal served by the API",
            visible,
            "p95 < 500 ms"
        )
    );
    println!(
        "{}",
        row(
            "decision written -> agent's request allowed",
            enforced,
            "p95 < 1 s"
        )
    );
    let _ = ok(&mut cp.kubectl(&["get", "agents"]));
}

fn jiff_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
