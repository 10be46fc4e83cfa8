//! Schemathesis (from PyPI) against every API group the control plane serves, from the OpenAPI
//! v3 documents it publishes: whatever it generates for any path, method, parameter and body,
//! the answer is a Kubernetes response (never a 5xx, never a dropped connection).

mod support;

use support::{ControlPlane, python_with};

#[test]
fn generated_requests_to_every_served_operation_get_an_answer() {
    let cp = ControlPlane::start();
    let token = std::fs::read_to_string(cp.home.path().join("token")).expect("token");
    let index: serde_json::Value =
        serde_json::from_str(&cp.ok(&["get", "--raw", "/openapi/v3"])).expect("index");
    let groups: Vec<String> = index["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert!(
        groups.iter().any(|g| g == "apis/bot-bottle.dev/v1alpha1") && groups.len() >= 4,
        "{groups:?}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let bottles = dir.path().join("positive-control.json");
    std::fs::write(
        &bottles,
        cp.ok(&["get", "--raw", "/openapi/v3/apis/bot-bottle.dev/v1alpha1"]),
    )
    .expect("write");
    positive_control(&bottles);
    for group in &groups {
        let doc = cp.ok(&["get", "--raw", &format!("/openapi/v3/{group}")]);
        let file = dir.path().join(format!("{}.json", group.replace('/', "_")));
        std::fs::write(&file, doc).expect("write");
        // The project's own kinds get the most examples; a fixed seed keeps CI repeatable.
        let examples = if group.contains("bot-bottle") {
            "10"
        } else {
            "5"
        };
        let out = python_with("schemathesis", "schemathesis")
            .args(["-m", "schemathesis.cli", "run"])
            .arg(&file)
            .args(["--url", &cp.url, "--tls-verify", "false", "--no-color"])
            .args(["-H", &format!("Authorization: Bearer {}", token.trim())])
            .args(["--checks", "not_a_server_error", "--max-examples", examples])
            .args(["--seed", "20261206"])
            // Its own cache directory goes where it runs: not into the checkout.
            .current_dir(dir.path())
            .output()
            .expect("schemathesis");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{group}: schemathesis found failures:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Not vacuous: it generated requests for every operation of the group.
        assert!(
            text.contains(" passed") && text.contains("Tested:"),
            "{group}: {text}"
        );
    }
}

/// The checker reports what it is asked to find: pointed at a stand-in on loopback that answers
/// every request with a 500, with the same document, it fails.
fn positive_control(doc: &std::path::Path) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n{}",
            );
        }
    });
    let out = python_with("schemathesis", "schemathesis")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(doc)
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--no-color"])
        .args(["--checks", "not_a_server_error", "--max-examples", "1"])
        .args(["--seed", "20261206"])
        .current_dir(doc.parent().unwrap_or(std::path::Path::new("/tmp")))
        .output()
        .expect("schemathesis");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("Server error"),
        "schemathesis did not report a server answering 500:\n{text}"
    );
}
