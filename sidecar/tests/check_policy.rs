//! The sidecar binary reads its policy with the shared schema: a valid resolved policy passes,
//! and a Bottle-only credential source (never resolved by the controller) is refused.

use std::process::Command;

fn run(policy: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_bb-sidecar"))
        .args(["check-policy", "--policy"])
        .arg(&path)
        .output()
        .expect("run bb-sidecar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn accepts_a_resolved_policy() {
    let (code, out, err) = run(
        "log: 1\nroutes:\n  - host: api.example.com\n    auth: {scheme: Bearer, tokenFile: api}\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok: 1 route(s), log level 1"), "{out}");
}

#[test]
fn refuses_unresolved_sources_and_unknown_fields() {
    let (code, _, err) =
        run("routes:\n  - host: a.com\n    auth: {scheme: Bearer, hostEnv: TOKEN}\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("routes[0].auth: the sidecar policy names tokens by tokenFile only"),
        "{err}"
    );
    let (code, _, err) = run("routes:\n  - host: a.com\n    auth_scheme: Bearer\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("routes[0].auth_scheme: unknown field"),
        "{err}"
    );
}
