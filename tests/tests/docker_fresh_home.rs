//! A new user's first apply: a fresh home, no flags, a machine whose only base image is the
//! hermetic one (no registry). The background control plane the verb starts chooses the base
//! `doctor` and `demo` choose, so the README's `apply --wait` reaches Running as it is.

use std::path::Path;
use std::process::Command;

use bb_e2e::{
    BASE_IMAGE, docker, ensure_base_image, ok, require_docker, run, test_agent_bottle,
    workspace_bin,
};

/// Deletes the Agent and stops the background control plane however the test ends.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = bbctl(self.0, &["delete", "agent", "first", "--timeout", "60s"]).output();
        let _ = bbctl(self.0, &["controller", "stop"]).output();
    }
}

fn bbctl(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(workspace_bin("bbctl"));
    c.args(args).arg("--home").arg(home).env("NO_COLOR", "1");
    c
}

/// The first layer of an image: which base it was built on.
fn first_layer(image: &str) -> String {
    ok(&mut docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        image,
    ]))
    .trim()
    .to_string()
}

#[test]
fn a_fresh_home_applies_and_runs_with_no_flags() {
    require_docker();
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let _cleanup = Cleanup(&home);
    let manifest = dir.path().join("first.yaml");
    std::fs::write(
        &manifest,
        format!(
            "{}---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: first}}\nspec: {{bottleRef: {{name: first}}}}\n",
            test_agent_bottle("first", "")
        ),
    )
    .expect("manifest");

    // doctor on the fresh home: nothing fails (the control plane is started by the verbs).
    let out = run(&mut bbctl(&home, &["doctor"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ok    control plane: not running") && !text.contains("fail  control plane"),
        "{text}"
    );
    assert!(
        text.contains(&format!("ok    base image: {BASE_IMAGE} present")),
        "{text}"
    );

    // At info, so the background control plane's log says which base it chose.
    let out = run(bbctl(
        &home,
        &[
            "apply",
            "--wait",
            "--timeout",
            "10m",
            "-f",
            manifest.to_str().expect("utf-8"),
        ],
    )
    .env("BBCTL_LOG", "info"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "apply --wait on a fresh home failed:\n{stderr}\n{}",
        std::fs::read_to_string(home.join("controller.log")).unwrap_or_default()
    );
    assert!(
        stderr.contains("started the local control plane in the background")
            && stderr.contains("agent.bot-bottle.dev/first running"),
        "{stderr}"
    );
    // What it built on is the hermetic base, not an image it would have had to pull.
    let images = ok(&mut bbctl(
        &home,
        &[
            "get",
            "agent",
            "first",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="ImagesReady")].message}"#,
        ],
    ));
    let agent_image = images.trim().strip_prefix("image ").expect("an image");
    assert_eq!(first_layer(agent_image), first_layer(BASE_IMAGE));
    // The background control plane's log says so, in plain text.
    let log = std::fs::read_to_string(home.join("controller.log")).expect("controller.log");
    assert!(
        log.lines()
            .any(|l| l.contains("no --base-image given") && l.contains(BASE_IMAGE)),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour escapes in controller.log:\n{log}"
    );
}
