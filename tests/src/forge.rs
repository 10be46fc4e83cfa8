//! A real git forge for the git-gate suites: Debian's sshd serving bare repositories (built from
//! `tests/fixtures/git-upstream`) on a network the test names, and the ssh keys it trusts.

use std::path::Path;
use std::process::Command;

use crate::{BASE_IMAGE, Upstream, docker, ok, run, workspace_root};

/// The forge's name on the network it joins.
pub const FORGE: &str = "git.upstream.test";

/// Makes an ed25519 key at `path` (no passphrase); returns its public half (`type key`).
pub fn keygen(path: &Path) -> String {
    ok(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bb-e2e", "-f"])
        .arg(path));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The forge: sshd with `app.git` and `other.git` (one commit each) for the user `git`.
pub fn start_forge(network: &str, keys: &Path) -> Upstream {
    let image = "bb-e2e/git-upstream:1";
    ok(&mut docker(&[
        "build",
        "-q",
        "-t",
        image,
        "--build-arg",
        &format!("BASE={BASE_IMAGE}"),
        &workspace_root()
            .join("tests/fixtures/git-upstream")
            .to_string_lossy(),
    ]));
    let name = "bb-e2e-git-forge";
    let _ = run(&mut docker(&["rm", "-f", name]));
    ok(&mut docker(&[
        "create",
        "--name",
        name,
        "--label",
        "bot-bottle.e2e=upstream",
        "--network",
        network,
        "--network-alias",
        FORGE,
        image,
    ]));
    let upstream = Upstream {
        name: name.to_string(),
    };
    ok(&mut docker(&[
        "cp",
        &format!("{}/.", keys.display()),
        &format!("{name}:/keys/"),
    ]));
    ok(&mut docker(&["start", name]));
    for repo in ["app", "other"] {
        ok(&mut docker(&[
            "exec",
            "-u",
            "git",
            name,
            "sh",
            "-c",
            &format!(
                "set -e; git init -q --bare -b main ~/{repo}.git; d=$(mktemp -d); cd $d; git init -q -b main; \
                 echo '# {repo}' > README.md; git add README.md; \
                 git -c user.name=forge -c user.email=f@forge.invalid commit -q -m initial; \
                 git push -q ~/{repo}.git main"
            ),
        ]));
    }
    upstream
}

pub fn forge_head(forge: &str, repo: &str) -> String {
    ok(&mut docker(&[
        "exec",
        "-u",
        "git",
        forge,
        "git",
        "--git-dir",
        &format!("/home/git/{repo}.git"),
        "rev-parse",
        "main",
    ]))
    .trim()
    .to_string()
}
