//! hack/prove-red.sh's patches stay applicable: each protection-removal patch listed in
//! hack/prove-red/TESTS exists and applies to this checkout, so the table in
//! docs/security-model.md can be reproduced at any commit (a patch that no longer fits would
//! otherwise only show up as BROKEN when someone runs the script).

use bb_e2e::workspace_root;

#[test]
fn every_prove_red_patch_is_listed_and_applies() {
    let root = workspace_root();
    let tests = std::fs::read_to_string(root.join("hack/prove-red/TESTS")).expect("TESTS");
    let listed: Vec<&str> = tests
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("hack/prove-red"))
        .expect("hack/prove-red")
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".patch")
                .map(str::to_string)
        })
        .collect();
    on_disk.sort();
    let mut names: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    names.sort();
    assert_eq!(names, on_disk, "every patch has exactly one TESTS line");
    for name in &listed {
        let out = std::process::Command::new("git")
            .args(["apply", "--check"])
            .arg(root.join(format!("hack/prove-red/{name}.patch")))
            .current_dir(&root)
            .output()
            .expect("git is required for this test");
        assert!(
            out.status.success(),
            "hack/prove-red/{name}.patch no longer applies (regenerate it against the code):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
