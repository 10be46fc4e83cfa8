//! git-gate with real git on this host: `bb-sidecar git-gate` serving a mirror of a local bare
//! "upstream", driven by `git clone/fetch/push` over smart HTTP as an agent would. Clean pushes
//! land upstream with their push options; force pushes and deletions are forwarded; planted
//! secrets are refused with where they are, redacted, and never reach upstream; upstream's own
//! refusal reaches the pusher verbatim; gitleaks:allow waits for a human.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BOTTLE_SECRET: &str = "bottle-own-secret-5e1d9c44";
const WORKSPACE_SECRET: &str = "Wq8zpL3xRt7vN2bC-db";

struct Gate {
    child: Child,
    addr: String,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "agent")
        .env("GIT_AUTHOR_EMAIL", "agent@bottle.invalid")
        .env("GIT_COMMITTER_NAME", "agent")
        .env("GIT_COMMITTER_EMAIL", "agent@bottle.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn commit(work: &Path, file: &str, text: &str, msg: &str) -> String {
    let path = work.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
    ok(work, &["add", "-A"]);
    ok(work, &["commit", "-q", "-m", msg]);
    ok(work, &["rev-parse", "HEAD"])
}

fn upstream_ref(upstream: &Path, name: &str) -> Option<String> {
    let out = git(upstream, &["rev-parse", "--verify", "-q", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A bare upstream with one commit on main, whose own pre-receive records push options and
/// refuses `refs/heads/protected` as a forge would.
fn upstream(root: &Path) -> PathBuf {
    let up = root.join("upstream.git");
    ok(
        root,
        &["init", "-q", "--bare", "-b", "main", &up.to_string_lossy()],
    );
    ok(&up, &["config", "receive.advertisePushOptions", "true"]);
    let hook = up.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ni=0\nwhile [ \"$i\" -lt \"${{GIT_PUSH_OPTION_COUNT:-0}}\" ]; do\n  eval \"echo \\$GIT_PUSH_OPTION_$i\" >> {opts}\n  i=$((i+1))\ndone\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/protected ]; then echo \"forge: refs/heads/protected is a protected branch\" >&2; exit 1; fi\ndone\n",
            opts = root.join("push-options.log").display()
        ),
    )
    .expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let seed = root.join("seed");
    ok(
        root,
        &[
            "clone",
            "-q",
            &up.to_string_lossy(),
            &seed.to_string_lossy(),
        ],
    );
    commit(&seed, "README.md", "# app\n", "initial");
    ok(&seed, &["push", "-q", "origin", "HEAD:main"]);
    up
}

fn start_gate(root: &Path, upstream: &Path, queue: Option<&Path>, allow_timeout: u64) -> Gate {
    start_gate_limited(root, upstream, queue, allow_timeout, None)
}

/// `start_gate`, with the process's file-descriptor limit set to `nofile` when given.
fn start_gate_limited(
    root: &Path,
    upstream: &Path,
    queue: Option<&Path>,
    allow_timeout: u64,
    nofile: Option<u32>,
) -> Gate {
    let secrets = root.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(secrets.join("route-0-token"), BOTTLE_SECRET).expect("secret");
    // A secret the runner found in the workspace it copied in (see `guarded_secrets`).
    let hex: String = WORKSPACE_SECRET
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        secrets.join("guarded-secrets.json"),
        format!(r#"[{{"path":"/workspace/.env","line":4,"kind":"dotenv","value":"{hex}"}}]"#),
    )
    .expect("guarded secrets");
    let cfg = root.join("git-gate.yaml");
    std::fs::write(
        &cfg,
        format!("repos:\n  app:\n    url: {}\n", upstream.display()),
    )
    .expect("config");
    let listen_file = root.join("gate.addr");
    let mut cmd = match nofile {
        None => Command::new(env!("CARGO_BIN_EXE_bb-sidecar")),
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.args(["-c", &format!("ulimit -n {n}; exec \"$0\" \"$@\"")])
                .arg(env!("CARGO_BIN_EXE_bb-sidecar"));
            sh
        }
    };
    cmd.args(["git-gate", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--secrets-dir")
        .arg(&secrets)
        .arg("--listen-file")
        .arg(&listen_file)
        .args(["--allow-timeout", &allow_timeout.to_string()])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.join("gate.log")).expect("gate log"));
    if let Some(q) = queue {
        cmd.arg("--queue-dir").arg(q);
    }
    // Dropping the Gate kills and reaps the child, on every path.
    let mut gate = Gate {
        child: cmd.spawn().expect("spawn bb-sidecar git-gate"),
        addr: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(a) = std::fs::read_to_string(&listen_file) {
            gate.addr = a.trim().to_string();
            return gate;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("git-gate did not start");
}

fn push(work: &Path, args: &[&str]) -> (bool, String) {
    let mut a = vec!["push"];
    a.extend_from_slice(args);
    let out = git(work, &a);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn clean_pushes_land_secrets_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let up = upstream(root);
    let gate = start_gate(root, &up, None, 300);
    let url = format!("http://{}/app.git", gate.addr);
    let work = root.join("work");
    // A legitimate clone and push first: a gate that refuses everything proves nothing.
    ok(root, &["clone", "-q", &url, &work.to_string_lossy()]);
    assert!(
        work.join("README.md").is_file(),
        "the clone lacks upstream's history"
    );
    let clean = commit(
        &work,
        "src/lib.rs",
        "pub fn add(a: u8, b: u8) -> u8 { a + b }\n",
        "add",
    );
    let (pushed, err) = push(
        &work,
        &[
            "-o",
            "ci.skip",
            "-o",
            "note=from the bottle",
            "origin",
            "main",
        ],
    );
    assert!(pushed, "a clean push was refused:\n{err}");
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(clean.as_str()));
    let opts = std::fs::read_to_string(root.join("push-options.log")).unwrap_or_default();
    assert_eq!(
        opts, "ci.skip\nnote=from the bottle\n",
        "push options were not forwarded"
    );

    // Each planted secret is refused with where it is, and upstream stays where it was.
    /// (what, commits as (file, text), the rule that must be named)
    type Planted<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let planted: &[Planted] = &[
        (
            "aws key",
            &[("config/aws.env", "AWS_ACCESS_KEY_ID=AKIAQ3EGRUOPXNVZLM7K\n")],
            "aws-access-key-id",
        ),
        (
            "github token",
            &[(
                "ci.yml",
                "token: ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi\n",
            )],
            "github-token",
        ),
        (
            "jwt",
            &[(
                "t.txt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n",
            )],
            "jwt",
        ),
        (
            "generic",
            &[("settings.py", "DB_PASSWORD = \"Zq8LmT3pRx7vN2bC4dF6\"\n")],
            "generic-credential",
        ),
        (
            "bottle secret, base64",
            &[("blob.txt", "Ym90dGxlLW93bi1zZWNyZXQtNWUxZDljNDQ=\n")],
            "bottle-secret",
        ),
        (
            "12 characters of a workspace secret",
            &[("notes.txt", "the db password starts Wq8zpL3xRt7v\n")],
            "workspace-secret",
        ),
        (
            "only in an intermediate commit",
            &[
                ("tmp.env", "STRIPE=sk_live_4eC39HqLyjWDarjtT1zdp7dc\n"),
                ("tmp.env", "STRIPE=\n"),
            ],
            "stripe-live-key",
        ),
        (
            // No blob of the push holds the whole key: its first half is in one commit, and the
            // next commit replaces it with the second half.
            "a key split across two commits",
            &[
                (
                    "deploy/id",
                    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n",
                ),
                (
                    "deploy/id",
                    "BG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n",
                ),
            ],
            "private-key-block",
        ),
    ];
    for (what, commits, rule) in planted {
        let mut last = String::new();
        for (i, (file, text)) in commits.iter().enumerate() {
            last = commit(&work, file, text, &format!("{what} {i}"));
        }
        let (pushed, err) = push(&work, &["origin", "main"]);
        assert!(!pushed, "{what}: a push with a secret went through:\n{err}");
        assert!(err.contains(rule), "{what}: rule {rule} not named:\n{err}");
        assert!(err.contains("push refused"), "{what}:\n{err}");
        assert!(
            err.contains(&format!("{}:", commits[0].0)),
            "{what}: the file is not named:\n{err}"
        );
        for secret in [
            "AKIAQ3EGRUOPXNVZLM7K",
            "Zq8LmT3pRx7vN2bC4dF6",
            "sk_live_4eC39Hq",
            "ghp_4Tz9q",
            "Wq8zpL3xRt7v",
        ] {
            assert!(
                !err.contains(secret),
                "{what}: the secret is in the output:\n{err}"
            );
        }
        assert_eq!(
            upstream_ref(&up, "main").as_deref(),
            Some(clean.as_str()),
            "{what}: upstream moved"
        );
        let _ = last;
        ok(&work, &["reset", "-q", "--hard", &clean]);
    }

    // Force push and deletion are forwarded as such.
    let amended = {
        std::fs::write(
            work.join("src/lib.rs"),
            "pub fn add(a: u16, b: u16) -> u16 { a + b }\n",
        )
        .expect("write");
        ok(&work, &["commit", "-q", "-a", "--amend", "-m", "add (u16)"]);
        ok(&work, &["rev-parse", "HEAD"])
    };
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(
        !pushed,
        "a non-fast-forward went through without --force:\n{err}"
    );
    let (pushed, err) = push(&work, &["--force", "origin", "main"]);
    assert!(pushed, "force push refused:\n{err}");
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(amended.as_str()));
    let (pushed, err) = push(&work, &["origin", "main:refs/heads/feature"]);
    assert!(pushed, "{err}");
    assert!(upstream_ref(&up, "refs/heads/feature").is_some());
    let (pushed, err) = push(&work, &["origin", ":refs/heads/feature"]);
    assert!(pushed, "deletion refused:\n{err}");
    assert_eq!(upstream_ref(&up, "refs/heads/feature"), None);

    // Upstream's refusal reaches the pusher as upstream said it; the gate's mirror stays.
    let (pushed, err) = push(&work, &["origin", "main:refs/heads/protected"]);
    assert!(!pushed, "upstream's refusal was lost:\n{err}");
    assert!(
        err.contains("forge: refs/heads/protected is a protected branch"),
        "{err}"
    );
    assert!(
        upstream_ref(&root.join("state/app.git"), "refs/heads/protected").is_none(),
        "the mirror took a ref upstream refused"
    );

    // Someone else pushes upstream directly: the agent's fetch sees it.
    let other = root.join("other");
    ok(
        root,
        &[
            "clone",
            "-q",
            &up.to_string_lossy(),
            &other.to_string_lossy(),
        ],
    );
    let theirs = commit(&other, "NEWS", "upstream moved\n", "news");
    ok(&other, &["push", "-q", "origin", "main"]);
    ok(&work, &["fetch", "-q", "origin"]);
    assert_eq!(ok(&work, &["rev-parse", "origin/main"]), theirs);

    // Upstream moves again while the agent works on a stale base: upstream refuses the
    // non-fast-forward (the gate does not refresh on push), nothing is lost, and fetch,
    // rebase and push again works as with any remote.
    let theirs2 = commit(&other, "NEWS", "upstream moved again\n", "news 2");
    ok(&other, &["push", "-q", "origin", "main"]);
    ok(&work, &["reset", "-q", "--hard", "origin/main"]);
    commit(&work, "src/stale.rs", "// on a stale base\n", "stale");
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(!pushed, "a push on a stale base went through:\n{err}");
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(theirs2.as_str()));
    let (pushed, err) = push(&work, &["--force", "origin", "main"]);
    assert!(
        !pushed,
        "a force push over work it never saw went through:\n{err}"
    );
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(theirs2.as_str()));
    ok(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(pushed, "{err}");
    let theirs = ok(&work, &["rev-parse", "HEAD"]);

    // gitleaks:allow without a supervisor is refused at once, saying so.
    ok(&work, &["reset", "-q", "--hard", "origin/main"]);
    commit(
        &work,
        "fixtures/key.txt",
        "AKIAQ3EGRUOPXNVZLM7K # gitleaks:allow\n",
        "fixture",
    );
    let t = Instant::now();
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(!pushed, "gitleaks:allow let a secret through:\n{err}");
    assert!(
        err.contains("marked gitleaks:allow") && err.contains("no supervisor"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(theirs.as_str()));
}

/// A finding marked gitleaks:allow becomes a proposal; the push waits for its decision.
#[test]
fn gitleaks_allow_waits_for_a_human() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let up = upstream(root);
    let queue = root.join("queue");
    std::fs::create_dir_all(&queue).expect("mkdir");
    let gate = start_gate(root, &up, Some(&queue), 3);
    let url = format!("http://{}/app.git", gate.addr);
    let work = root.join("work");
    ok(root, &["clone", "-q", &url, &work.to_string_lossy()]);
    let base = ok(&work, &["rev-parse", "HEAD"]);

    // Nobody answers: refused after the timeout.
    commit(
        &work,
        "fixtures/a.txt",
        "AKIAQ3EGRUOPXNVZLM7K # gitleaks:allow\n",
        "fixture",
    );
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(!pushed && err.contains("no decision"), "{err}");
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(base.as_str()));

    // Rejected, then approved: a human answers the proposal the gate raised.
    for (status, should_land) in [("rejected", false), ("approved", true)] {
        let q = queue.clone();
        let answer = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                for e in std::fs::read_dir(&q).expect("queue").flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if let Some(id) = name.strip_suffix(".proposal.json") {
                        let mut text = String::new();
                        std::fs::File::open(e.path())
                            .and_then(|mut f| f.read_to_string(&mut text))
                            .expect("read proposal");
                        let resp = q.join(format!("{id}.response.json"));
                        let mut f = std::fs::File::create(&resp).expect("response");
                        write!(
                            f,
                            "{{\"status\": \"{status}\", \"reason\": \"test fixture\"}}"
                        )
                        .expect("write");
                        return text;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("no proposal appeared");
        });
        let (pushed, err) = push(&work, &["origin", "main"]);
        let proposal = answer.join().expect("answer");
        assert!(
            proposal.contains("gitleaks-allow") && proposal.contains("fixtures/a.txt"),
            "{proposal}"
        );
        assert!(
            !proposal.contains("AKIAQ3EGRUOPXNVZLM7K"),
            "the proposal holds the secret: {proposal}"
        );
        assert_eq!(pushed, should_land, "{status}:\n{err}");
        let head = ok(&work, &["rev-parse", "HEAD"]);
        assert_eq!(
            upstream_ref(&up, "main") == Some(head),
            should_land,
            "{status}: upstream is wrong"
        );
    }
}

/// The request limits, before any git runs.
#[test]
fn oversized_and_unframed_bodies_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let up = upstream(root);
    let gate = start_gate(root, &up, None, 300);
    let ask = |head: &str| -> String {
        let mut s = std::net::TcpStream::connect(&gate.addr).expect("connect");
        s.write_all(head.as_bytes()).expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let post = "POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\nContent-Type: application/x-git-receive-pack-request\r\n";
    let r = ask(&format!("{post}Content-Length: 104857601\r\n\r\n"));
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    let r = ask(&format!("{post}\r\n"));
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = ask(&format!("{post}Content-Length: -5\r\n\r\n"));
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = ask("GET /nope.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: g\r\n\r\n");
    assert!(
        r.starts_with("HTTP/1.1 404") && r.contains("declared: app"),
        "{r}"
    );
}

/// Every object of upstream (and its push-options log), as one string: the witness that a
/// secret never arrived, wherever in a push it was.
fn everything_in(repo: &Path, root: &Path) -> String {
    let out = Command::new("git")
        .args(["cat-file", "--batch-all-objects", "--batch", "--unordered"])
        .current_dir(repo)
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .output()
        .expect("cat-file");
    let refs = git(repo, &["for-each-ref", "--format=%(refname)"]);
    let opts = std::fs::read(root.join("push-options.log")).unwrap_or_default();
    // UTF-16 content reads as text once NULs are dropped.
    let text: Vec<u8> = [out.stdout, refs.stdout, opts]
        .concat()
        .into_iter()
        .filter(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&text).into_owned()
}

/// Everything a push makes reachable is judged, not only the lines `git log -p` shows: commit
/// messages and identities, annotated tags, blobs and trees behind tags, binary and UTF-16
/// files, file names, ref names, push options; replace refs are refused and cannot make the
/// scan read a look-alike. Upstream's own objects are the witness.
#[test]
fn every_object_of_a_push_is_judged() {
    const KEY: &str = "AKIAQ3EGRUOPXNVZLM7K";
    const TOKEN: &str = "ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi";
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let up = upstream(root);
    let gate = start_gate(root, &up, None, 300);
    let url = format!("http://{}/app.git", gate.addr);
    let work = root.join("work");
    ok(root, &["clone", "-q", &url, &work.to_string_lossy()]);
    // Controls: a clean commit with a message, a tag and an option lands.
    let clean = commit(&work, "src/ok.rs", "fn ok() {}\n", "a clean change");
    ok(&work, &["tag", "-a", "v0.1", "-m", "first release"]);
    let (pushed, err) = push(&work, &["-o", "ci.skip", "origin", "main", "v0.1"]);
    assert!(pushed, "a clean push was refused:\n{err}");
    assert_eq!(upstream_ref(&up, "main").as_deref(), Some(clean.as_str()));
    assert!(upstream_ref(&up, "refs/tags/v0.1").is_some());

    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(
            format!("token = {TOKEN}\n")
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    std::fs::write(root.join("utf16.txt"), &utf16).expect("write");
    let utf16_path = root.join("utf16.txt").display().to_string();
    // (what, shell run in the work tree, what to push, the secret that must not arrive)
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "key only in a commit message",
            format!("git commit -q --allow-empty -m 'deploy with {KEY}'"),
            "main",
            KEY,
        ),
        (
            "the bottle's own secret in a commit message",
            format!("git commit -q --allow-empty -m 'fix: {BOTTLE_SECRET}'"),
            "main",
            BOTTLE_SECRET,
        ),
        (
            "key as the author's name",
            format!("git commit -q --allow-empty -m x --author='{KEY} <a@b.invalid>'"),
            "main",
            KEY,
        ),
        (
            "token in an annotated tag's message",
            format!("git tag -a v9 -m 'release {TOKEN}'"),
            "v9",
            TOKEN,
        ),
        (
            "a lightweight tag pointing at a blob",
            format!("git tag blobtag $(printf 'k={KEY}\\n' | git hash-object -w --stdin)"),
            "blobtag",
            KEY,
        ),
        (
            "an annotated tag pointing at a tree",
            format!(
                "git tag -a treetag -m tree $(printf '100644 blob %s\\tcreds.txt\\n' $(printf 'k={KEY}\\n' | git hash-object -w --stdin) | git mktree)"
            ),
            "treetag",
            KEY,
        ),
        (
            "a text file with one NUL byte",
            format!(
                "printf 'data\\0\\nkey={KEY}\\n' > nul.bin && git add nul.bin && git commit -q -m nul"
            ),
            "main",
            KEY,
        ),
        (
            "a file git is told not to diff",
            format!(
                "printf '* -diff\\n' > .gitattributes && echo 'key={KEY}' > plain.txt && git add -A && git commit -q -m attrs"
            ),
            "main",
            KEY,
        ),
        (
            "a UTF-16 file",
            format!("cp {utf16_path} u16.txt && git add u16.txt && git commit -q -m u16"),
            "main",
            TOKEN,
        ),
        (
            "the token as a file name",
            format!("touch '{TOKEN}' && git add -A && git commit -q -m name"),
            "main",
            TOKEN,
        ),
        (
            "a token in a branch name",
            format!("git branch 'fix-{TOKEN}'"),
            "fix-ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi",
            TOKEN,
        ),
    ];
    for (what, script, target, secret) in cases {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(&work)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "agent")
            .env("GIT_AUTHOR_EMAIL", "agent@bottle.invalid")
            .env("GIT_COMMITTER_NAME", "agent")
            .env("GIT_COMMITTER_EMAIL", "agent@bottle.invalid")
            .output()
            .expect("sh");
        assert!(out.status.success(), "{what}: setup failed: {out:?}");
        // Positive control: the secret is in what the agent is about to push.
        let local = everything_in(&work.join(".git"), &work);
        assert!(local.contains(secret), "{what}: the setup did not plant it");
        let (pushed, err) = push(&work, &["origin", target]);
        assert!(!pushed, "{what}: the push went through:\n{err}");
        assert!(err.contains("push refused"), "{what}:\n{err}");
        // What the gate says (git's own lines name the refs the agent pushed).
        let said: String = err.lines().filter(|l| l.starts_with("remote:")).collect();
        assert!(!said.contains(secret), "{what}: the gate shows it:\n{err}");
        assert!(
            !everything_in(&up, root).contains(secret),
            "{what}: it reached upstream"
        );
        ok(&work, &["reset", "-q", "--hard", &clean]);
        let _ = git(&work, &["tag", "-d", "v9", "blobtag", "treetag"]);
        let _ = git(&work, &["branch", "-D", &format!("fix-{TOKEN}")]);
    }

    // A push option carrying the token is refused, and upstream's hook never sees it.
    let next = commit(&work, "src/next.rs", "fn next() {}\n", "next");
    let (pushed, err) = push(&work, &["-o", &format!("note={TOKEN}"), "origin", "main"]);
    assert!(!pushed && err.contains("push option"), "{err}");
    assert!(!everything_in(&up, root).contains(TOKEN));

    // Replace refs are refused; one planted in the gate's own mirror does not change what the
    // scan reads: the real commit with the key is judged, not its clean look-alike.
    let (pushed, err) = push(&work, &["origin", &format!("{next}:refs/replace/{clean}")]);
    assert!(!pushed && err.contains("replace ref"), "{err}");
    let dirty = commit(&work, "leak.env", &format!("K={KEY}\n"), "leak");
    ok(&work, &["reset", "-q", "--hard", &clean]);
    let look_alike = commit(&work, "leak.env", "K=nothing\n", "leak");
    let mirror = root.join("state/app.git");
    // Planted as another writer to the mirror would (the refresh from upstream prunes only
    // heads and tags): the look-alike, as the replacement of the real commit.
    ok(
        &mirror,
        &[
            "fetch",
            "-q",
            &work.to_string_lossy(),
            &format!("{look_alike}:refs/replace/{dirty}"),
        ],
    );
    ok(&work, &["reset", "-q", "--hard", &dirty]);
    let (pushed, err) = push(&work, &["origin", "main"]);
    assert!(!pushed && err.contains("aws-access-key-id"), "{err}");
    assert!(
        !everything_in(&up, root).contains(KEY),
        "the key reached upstream"
    );
}

/// A push whose body stalls holds no lock (a clone of the same repository goes on), and a gate
/// that runs out of file descriptors sheds the connections it cannot take and keeps serving.
#[test]
fn stalls_and_descriptor_exhaustion_do_not_stop_the_gate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let up = upstream(root);
    let gate = start_gate_limited(root, &up, None, 300, Some(48));
    let url = format!("http://{}/app.git", gate.addr);
    let clone = |into: &str| {
        let out = Command::new("timeout")
            .args(["20", "git", "clone", "-q", &url, into])
            .current_dir(root)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("git clone");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (cloned, err) = clone("first");
    assert!(cloned, "control clone failed: {err}");

    // A push that sends its head and 10 of its 1,000 body bytes, then nothing.
    let mut stalled = std::net::TcpStream::connect(&gate.addr).expect("connect");
    stalled
        .write_all(
            b"POST /app.git/git-receive-pack HTTP/1.1\r\nHost: gate\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .expect("write");
    let (cloned, err) = clone("during-stall");
    assert!(cloned, "a stalled push blocked the repository: {err}");
    drop(stalled);

    // More connections than descriptors: the gate accepts what it can, the rest wait.
    let held: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(&gate.addr).ok())
        .collect();
    assert!(held.len() >= 60, "only {} connections opened", held.len());
    // Positive control: the gate really ran out (its log says it shed load).
    let log = || std::fs::read_to_string(root.join("gate.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log().contains("accept failed") {
        assert!(
            Instant::now() < deadline,
            "the gate never ran out of descriptors:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let (cloned, err) = clone(&format!("after-{attempt}"));
        if cloned {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gate stopped serving after running out of descriptors: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
