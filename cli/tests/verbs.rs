//! bbctl's own API verbs against the real control plane: apply (server-side, trust boundary,
//! dry runs, created/configured/unchanged), get (table, -A, -o name/yaml) and delete.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{ControlPlane, path_str, repo};

/// Runs bbctl with `args`, feeding `stdin`; returns (exit code, stdout, stderr).
fn run_bbctl(args: &[std::ffi::OsString], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bbctl"))
        .args(args)
        .env("BBCTL_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bbctl");
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.unwrap_or_default().as_bytes())
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("bbctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os(args: &[&str]) -> Vec<std::ffi::OsString> {
    args.iter().map(std::ffi::OsString::from).collect()
}

/// Runs bbctl against `cp` (its kubeconfig and home).
fn bbctl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut all = os(args);
    all.extend([
        "--kubeconfig".into(),
        cp.kubeconfig().into_os_string(),
        "--home".into(),
        cp.home.path().as_os_str().to_owned(),
    ]);
    run_bbctl(&all, stdin)
}

#[test]
fn apply_get_delete_with_the_trust_boundary() {
    let cp = ControlPlane::start();
    let bottles = repo().join("examples/bottles");

    // Bottles from a git repository (this one) are refused without --trust-bottles.
    let (code, out, err) = bbctl(&cp, &["apply", "-f", path_str(&bottles)], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("refusing bottle/claude") && err.contains("--trust-bottles"),
        "{err}"
    );
    let (_, list, _) = bbctl(&cp, &["get", "bottles", "-o", "name"], None);
    assert!(list.trim().is_empty(), "nothing was applied: {list}");

    // Client dry run validates only; server dry run stores nothing.
    let (code, out, _) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "--dry-run",
            "client",
            "-f",
            path_str(&bottles),
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("bottle.bot-bottle.dev/claude created (dry run)"),
        "as kubectl: nothing exists yet: {out}"
    );
    let (code, out, err) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "--dry-run",
            "server",
            "-f",
            path_str(&bottles),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("bottle.bot-bottle.dev/claude created (server dry run)"),
        "{out}"
    );
    let (_, list, _) = bbctl(&cp, &["get", "bottles", "-o", "name"], None);
    assert!(
        list.trim().is_empty(),
        "a server dry run stored something: {list}"
    );

    let (code, out, err) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "--wait",
            "-f",
            path_str(&bottles),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("bottle.bot-bottle.dev/gitea-dev created"),
        "{out}"
    );
    assert!(
        err.contains("bottle.bot-bottle.dev/gitea-dev ready"),
        "--wait: {err}"
    );
    let (_, out, _) = bbctl(
        &cp,
        &["apply", "--trust-bottles", "-f", path_str(&bottles)],
        None,
    );
    assert!(
        out.contains("bottle.bot-bottle.dev/gitea-dev unchanged"),
        "{out}"
    );
    let (_, out, _) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "--dry-run=client",
            "-f",
            path_str(&bottles),
        ],
        None,
    );
    assert!(
        out.contains("bottle.bot-bottle.dev/gitea-dev configured (dry run)"),
        "{out}"
    );

    // Stdin is not a repository; an edit says configured.
    let edited = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: extra}\nspec:\n  extends: claude\n  egress: {routes: [{host: example.org}]}\n";
    let (code, out, err) = bbctl(&cp, &["apply", "-f", "-"], Some(edited));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bottle.bot-bottle.dev/extra created"), "{out}");
    let (_, out, _) = bbctl(
        &cp,
        &["apply", "-f", "-"],
        Some(&edited.replace("example.org", "example.net")),
    );
    assert!(
        out.contains("bottle.bot-bottle.dev/extra configured"),
        "{out}"
    );

    // Invalid input: every error, exit 6, nothing applied.
    let bad = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: bad}\nspec: {egress: {routes: [{host: 'HTTPS://X'}]}}\n";
    let (code, _, err) = bbctl(&cp, &["apply", "-f", "-"], Some(bad));
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("host"), "{err}");

    // Agents into a namespace; get as a table, across namespaces, by name.
    let agents = repo().join("examples/agents");
    let (code, _, err) = cp.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "-n",
            "team",
            "-f",
            path_str(&agents),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("agent.bot-bottle.dev/reviewer created"),
        "{out}"
    );
    let (code, table, _) = bbctl(&cp, &["get", "bottles"], None);
    assert_eq!(code, 0);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME ") && header.contains("PROVIDER") && header.contains("AGE"),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("gitea-dev ")),
        "{table}"
    );
    let (_, table, err) = bbctl(&cp, &["get", "agents", "-n", "kube-system"], None);
    assert!(
        table.is_empty() && err.contains("No resources found in kube-system namespace."),
        "{table}{err}"
    );
    let (_, table, _) = bbctl(&cp, &["get", "ag", "-A"], None);
    assert!(
        table.starts_with("NAMESPACE ") && table.lines().any(|l| l.starts_with("team ")),
        "{table}"
    );

    // A warm pool applies like any other kind, and lists with its own columns.
    let pools = repo().join("examples/pools");
    let (code, out, err) = bbctl(&cp, &["apply", "-n", "team", "-f", path_str(&pools)], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("agentpool.bot-bottle.dev/claude-warm created"),
        "{out}"
    );
    let (code, table, err) = bbctl(&cp, &["get", "pools", "-n", "team"], None);
    assert_eq!(code, 0, "{err}");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "BOTTLE", "SIZE", "READY", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("claude-warm ") && l.contains(" claude ") && l.contains(" 3 ")),
        "{table}"
    );
    // A size the runner cannot hold is refused with the field and the range.
    let big = "apiVersion: bot-bottle.dev/v1alpha1\nkind: AgentPool\nmetadata: {name: big}\nspec: {bottleRef: {name: claude}, size: 500}\n";
    let (code, _, err) = bbctl(&cp, &["apply", "-n", "team", "-f", "-"], Some(big));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("spec.size") && err.contains("between 0 and 50"),
        "{err}"
    );
    let (code, yaml, _) = bbctl(
        &cp,
        &["get", "agent", "reviewer", "-n", "team", "-o", "yaml"],
        None,
    );
    assert_eq!(code, 0);
    assert!(
        yaml.contains("kind: Agent") && yaml.contains("name: reviewer"),
        "{yaml}"
    );
    let (code, _, err) = bbctl(&cp, &["get", "bottle", "nope"], None);
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = bbctl(&cp, &["get", "pods"], None);
    assert_eq!(code, 2);
    assert!(err.contains("valid: bottle"), "{err}");

    // -o jsonpath, and -w following changes.
    let (code, out, err) = bbctl(
        &cp,
        &["get", "bottles", "-o", "jsonpath={.items[*].metadata.name}"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "claude codex extra gitea-dev pi-openrouter",
        "{out}"
    );
    let (code, _, err) = bbctl(&cp, &["get", "bottles", "-o", "xml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("jsonpath=TEMPLATE"), "{err}");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_bbctl"))
        .args(["get", "agents", "-n", "team", "-w", "--kubeconfig"])
        .arg(cp.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bbctl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line for {what}"))
    };
    assert!(next("the header").starts_with("NAME "));
    assert!(next("the listed agent").starts_with("reviewer "));
    cp.ok(&["label", "agent", "reviewer", "-n", "team", "seen=yes"]);
    assert!(
        next("the change").starts_with("reviewer "),
        "a row per change"
    );
    let _ = watch.kill();
    let _ = watch.wait();

    // describe: the resolved policy of a Bottle, the state of an Agent.
    let (code, text, err) = bbctl(&cp, &["describe", "bottle", "gitea-dev"], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("Chain:           claude -> gitea-dev"),
        "{text}"
    );
    assert!(text.contains("Egress (resolved):"), "{text}");
    assert!(
        text.contains("bottle/claude") && text.contains("bottle/gitea-dev"),
        "{text}"
    );
    assert!(text.contains("Conditions:"), "{text}");
    let (code, text, err) = bbctl(&cp, &["describe", "agent/reviewer", "-n", "team"], None);
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("Name:            reviewer\n"), "{text}");
    assert!(
        text.contains("Namespace:       team") && text.contains("Events:"),
        "{text}"
    );
    let (code, _, err) = bbctl(&cp, &["describe", "bottle", "nope"], None);
    assert_eq!(code, 3);
    assert!(
        err.contains("Bottle 'nope' not found; available: claude,"),
        "{err}"
    );

    // suspend / resume set spec.suspend and wait for the runner (this control plane has
    // none): the wait ends at --timeout, naming what it waited for.
    let (code, out, err) = bbctl(
        &cp,
        &["suspend", "agent/reviewer", "-n", "team", "--timeout", "1s"],
        None,
    );
    assert_eq!(code, 5, "{out}{err}");
    assert!(
        err.contains("timed out after 1s (--timeout) waiting for agent.bot-bottle.dev/reviewer to be Suspended; last seen: not reconciled yet"),
        "{err}"
    );
    let (code, out, err) = bbctl(
        &cp,
        &["suspend", "agent/reviewer", "-n", "team", "--wait=false"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("agent.bot-bottle.dev/reviewer suspend requested"),
        "{out}"
    );
    let spec = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.suspend}",
    ]);
    assert_eq!(spec.trim(), "true");
    let (code, _, _) = bbctl(
        &cp,
        &["resume", "reviewer", "-n", "team", "--wait=false"],
        None,
    );
    assert_eq!(code, 0);
    // Resume is also how a Failed Agent tries again: it marks the Agent changed.
    let retried = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "-n",
        "team",
        "-o",
        r"jsonpath={.metadata.annotations.bot-bottle\.dev/retried-at}",
    ]);
    assert!(retried.starts_with("20"), "{retried}");
    let spec = cp.ok(&[
        "get",
        "agent",
        "reviewer",
        "-n",
        "team",
        "-o",
        "jsonpath={.spec.suspend}",
    ]);
    assert_eq!(spec.trim(), "false");
    let (code, _, err) = bbctl(&cp, &["suspend", "ghost"], None);
    assert_eq!(code, 3, "{err}");

    // Delete by name and by manifest.
    let (code, out, err) = bbctl(
        &cp,
        &["delete", "-n", "team", "-f", path_str(&agents)],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("agent.bot-bottle.dev/reviewer deleted"),
        "{out}"
    );
    let (code, out, _) = bbctl(&cp, &["delete", "bottle/extra"], None);
    assert_eq!(code, 0);
    assert!(out.contains("bottle.bot-bottle.dev/extra deleted"));
    let (code, _, _) = bbctl(&cp, &["delete", "bottle", "extra"], None);
    assert_eq!(code, 3, "deleting what is gone is 'not found'");
    let (code, _, err) = bbctl(
        &cp,
        &["delete", "bottle", "extra", "--ignore-not-found"],
        None,
    );
    assert_eq!((code, err.as_str()), (0, ""), "--ignore-not-found");
    // A missing object does not stop the rest (kubectl's behaviour): reported, then exit 3.
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: spare}\nspec: {}\n",
        ),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bbctl(&cp, &["delete", "bottle", "gone", "spare"], None);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        err.contains("bottle.bot-bottle.dev/gone not found")
            && out.contains("bottle.bot-bottle.dev/spare deleted"),
        "{out}{err}"
    );
}

#[test]
fn doctor_says_what_is_wrong_and_how_to_fix_it() {
    let cp = ControlPlane::start();
    let (_, out, _) = bbctl(&cp, &["doctor"], None);
    assert!(out.contains("ok    control plane: reachable"), "{out}");
    // A temporary directory is world-readable: doctor says so and how to fix it.
    assert!(
        out.contains("fail  home:") && out.contains("fix: chmod 700"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cp.home.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    let (_, out, _) = bbctl(&cp, &["doctor"], None);
    assert!(
        out.contains("ok    home:") && out.contains("(mode 700)"),
        "{out}"
    );

    // A fresh home with no control plane is normal: commands start it themselves.
    let cold = tempfile::tempdir().expect("tempdir");
    let (_, text, _) = bbctl_home(&cold.path().join("home"), &["doctor"]);
    assert!(
        text.contains("ok    control plane: not running; the first command that needs it"),
        "{text}"
    );
    assert!(!text.contains("fail  control plane"), "{text}");
    // A named cluster that does not answer is a failure: its fix, exit 5.
    let kubeconfig = cold.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .expect("kubeconfig");
    let (code, text, err) = bbctl_home(
        &cold.path().join("home"),
        &["doctor", "--kubeconfig", path_str(&kubeconfig)],
    );
    assert_eq!(code, 5, "{text}");
    assert!(
        text.contains("fail  control plane") && text.contains("fix: `bbctl controller start`"),
        "{text}"
    );
    assert!(err.contains("check(s) failed"));
}

#[test]
fn completion_scripts_load_in_their_shell() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completion bash) && complete -p bbctl",
            env!("CARGO_BIN_EXE_bbctl")
        ))
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("bbctl"), "{text}");
    for shell in ["zsh", "fish"] {
        let (code, out, _) = run_bbctl(&os(&["completion", shell]), None);
        assert!(code == 0 && !out.is_empty(), "{shell}");
    }
}

/// Runs bbctl with no kubeconfig flag: the default target is the home's control plane.
fn bbctl_home(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    // `--home` goes before any `--`, after which arguments belong to `controller run`.
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut all = os(&args[..split]);
    all.extend(["--home".into(), home.as_os_str().to_owned()]);
    all.extend(os(&args[split..]));
    run_bbctl(&all, None)
}

/// Stops a background control plane however the test ends.
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = bbctl_home(&self.0, &["controller", "stop"]);
    }
}

#[test]
fn a_cold_home_gets_a_control_plane_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let _stop = StopOnDrop(home.clone());
    let (code, _, err) = bbctl_home(&home, &["controller", "status"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("bbctl controller start"), "{err}");

    // A verb that needs the API starts it and says so.
    let (code, out, err) = bbctl_home(&home, &["get", "bottles"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("started the local control plane in the background"),
        "{err}"
    );
    assert!(err.contains("No resources found"), "{err}");
    let (code, out, _) = bbctl_home(&home, &["controller", "status"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("running (pid "), "{out}");
    // Running already: no second start.
    let (_, _, err) = bbctl_home(&home, &["get", "bottles"]);
    assert!(!err.contains("started the local control plane"), "{err}");

    let (code, out, _) = bbctl_home(&home, &["controller", "stop"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("control plane stopped"), "{out}");
    let (code, _, _) = bbctl_home(&home, &["controller", "status"]);
    assert_eq!(code, 5);
    // Explicit start with run flags after `--`.
    let (code, out, err) = bbctl_home(
        &home,
        &[
            "controller",
            "start",
            "--",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            "none",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("control plane started (pid ")
            && out.contains("with flags `--listen 127.0.0.1:0 --backend none`"),
        "{out}"
    );
    assert_eq!(
        run_flags(&home),
        ["--listen", "127.0.0.1:0", "--backend", "none"],
        "what the running control plane was given"
    );

    // A second start with other flags says it did not apply them, and saves them.
    let (code, out, err) = bbctl_home(
        &home,
        &[
            "controller",
            "start",
            "--",
            "--backend",
            "none",
            "--resync-seconds",
            "7",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("already running (pid ")
            && out.contains("with flags `--listen 127.0.0.1:0 --backend none`")
            && out.contains("saved flags `--backend none --resync-seconds 7` for the next start")
            && out.contains("bbctl controller stop && bbctl controller start"),
        "{out}"
    );
    // A start without flags reuses the saved ones and reports what runs.
    let (code, out, _) = bbctl_home(&home, &["controller", "start"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("already running (pid ")
            && out.contains("with flags `--listen 127.0.0.1:0 --backend none`")
            && !out.contains("saved"),
        "{out}"
    );
    // Flags `controller run` refuses are not saved.
    let (code, _, err) = bbctl_home(&home, &["controller", "start", "--", "--backend", "bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("flags after `--`") && err.contains("bogus"),
        "{err}"
    );

    // The automatic start of the next command uses the saved flags (on a free port).
    let (code, _, _) = bbctl_home(&home, &["controller", "stop"]);
    assert_eq!(code, 0);
    let (code, _, err) = bbctl_home(&home, &["get", "bottles"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("flags saved by `bbctl controller start`"),
        "{err}"
    );
    assert_eq!(
        run_flags(&home),
        [
            "--backend",
            "none",
            "--resync-seconds",
            "7",
            "--listen",
            "127.0.0.1:0"
        ]
    );
    // --default-flags forgets them.
    let (code, _, _) = bbctl_home(&home, &["controller", "stop"]);
    assert_eq!(code, 0);
    let (code, out, err) = bbctl_home(&home, &["controller", "start", "--default-flags"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("with the default flags"), "{out}");
    assert!(!home.join("controller-flags.json").exists());
}

/// The flags of the running control plane's process, read from the kernel (not from anything
/// bbctl wrote): after `controller run --home HOME`.
fn run_flags(home: &std::path::Path) -> Vec<String> {
    let (_, out, _) = bbctl_home(home, &["controller", "status"]);
    let pid = out
        .strip_prefix("running (pid ")
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no pid in {out}"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let at = args.iter().position(|a| a == "--home").expect("--home") + 2;
    args[at..].to_vec()
}

#[test]
fn diff_shows_changes_and_prune_removes_what_left_the_directory() {
    let cp = ControlPlane::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bottle = |name: &str, host: &str| {
        format!(
            "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata:\n  name: {name}\n  labels: {{app: review}}\nspec:\n  agentProvider: {{template: custom, image: 'agent:1', command: [bash]}}\n  egress: {{routes: [{{host: {host}}}]}}\n"
        )
    };
    std::fs::write(dir.path().join("a.yaml"), bottle("a", "a.example.com")).expect("write");
    std::fs::write(dir.path().join("b.yaml"), bottle("b", "b.example.com")).expect("write");
    let d = path_str(dir.path());

    // Not applied yet: everything differs.
    let (code, out, err) = bbctl(&cp, &["diff", "-f", d], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("+++ merged/bottle.bot-bottle.dev/a"), "{out}");
    let (code, _, err) = bbctl(&cp, &["apply", "-f", d], None);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bbctl(&cp, &["diff", "-f", d], None);
    assert_eq!(code, 0, "applied: no diff\n{out}{err}");
    assert!(out.is_empty(), "{out}");

    // An edit shows as a diff of just that line.
    std::fs::write(dir.path().join("a.yaml"), bottle("a", "a2.example.com")).expect("write");
    let (code, out, _) = bbctl(&cp, &["diff", "-f", d], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("-    - host: a.example.com\n+    - host: a2.example.com"),
        "{out}"
    );
    assert!(!out.contains("bottle.bot-bottle.dev/b"), "{out}");

    // b leaves the directory: apply --prune removes it, and only what matches the selector.
    std::fs::remove_file(dir.path().join("b.yaml")).expect("rm");
    let other = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: other}\nspec:\n  agentProvider: {template: custom, image: 'agent:1', command: [bash]}\n";
    let (code, _, err) = bbctl(&cp, &["apply", "-f", "-"], Some(other));
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = bbctl(
        &cp,
        &["apply", "-f", d, "--prune", "-l", "app=review"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bottle.bot-bottle.dev/a configured"), "{out}");
    assert!(out.contains("bottle.bot-bottle.dev/b pruned"), "{out}");
    let (_, names, _) = bbctl(&cp, &["get", "bottles", "-o", "name"], None);
    assert_eq!(
        names,
        "bottle.bot-bottle.dev/a\nbottle.bot-bottle.dev/other\n"
    );
    let (code, _, err) = bbctl(&cp, &["apply", "-f", d, "--prune"], None);
    assert_eq!(code, 2, "--prune needs a selector: {err}");
}

#[test]
fn apply_takes_the_reference_markdown_manifests() {
    let cp = ControlPlane::start();
    let fixture = repo().join("crds/tests/fixtures/reference");
    let (code, out, err) = bbctl(
        &cp,
        &["apply", "--trust-bottles", "-f", path_str(&fixture)],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("bottle.bot-bottle.dev/") && l.ends_with(" created")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("agent.bot-bottle.dev/") && l.ends_with(" created")),
        "{out}"
    );
    // An Agent from a repository that copies host directories in is refused too.
    let repo_dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo_dir.path().join(".git")).expect("mkdir");
    let agent = repo_dir.path().join("agent.yaml");
    std::fs::write(
        &agent,
        "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: sneaky}\nspec:\n  bottleRef: {name: x}\n  workspace: {hostPath: /root/.ssh}\n",
    )
    .expect("write");
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "--dry-run", "client", "-f", path_str(&agent)],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("refusing agent/sneaky") && err.contains("copy host directories"),
        "{err}"
    );

    // The same trust boundary applies to them.
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "--dry-run", "client", "-f", path_str(&fixture)],
        None,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--trust-bottles"), "{err}");
}

/// apply, diff, validate and delete share one -f/-R flag set; the verbs that need manifests
/// say so the same way, as a usage error (exit 2) naming the flag.
#[test]
fn manifest_verbs_share_the_filename_flags() {
    for verb in ["apply", "diff", "validate"] {
        let (code, _, err) = run_bbctl(&os(&[verb]), None);
        assert_eq!(code, 2, "{verb} without -f: {err}");
        assert!(err.contains("-f/--filename is required"), "{verb}: {err}");
        let (_, help, _) = run_bbctl(&os(&[verb, "--help"]), None);
        for flag in ["-f, --filename <FILE|DIR|->", "-R, --recursive"] {
            assert!(help.contains(flag), "{verb} --help lacks {flag}:\n{help}");
        }
    }
    let (_, help, _) = run_bbctl(&os(&["delete", "--help"]), None);
    assert!(help.contains("-f, --filename <FILE|DIR|->") && help.contains("-R, --recursive"));
}

/// Input that cannot be read is refused before anything happens: no local control plane is
/// started in the background for an `apply` or `diff` that was never going to run.
#[test]
fn bad_manifest_input_starts_nothing() {
    let home = tempfile::tempdir().expect("home");
    let h = home.path().to_string_lossy().into_owned();
    for verb in ["apply", "diff"] {
        let (code, _, err) = run_bbctl(&os(&[verb, "--home", &h]), None);
        assert_eq!(code, 2, "{verb} without -f: {err}");
        let (code, _, err) = run_bbctl(
            &os(&[verb, "-f", "/nonexistent/x.yaml", "--home", &h]),
            None,
        );
        assert_eq!(code, 3, "{verb} -f missing: {err}");
        assert!(err.contains("/nonexistent/x.yaml"), "{err}");
        for f in ["kubeconfig", "controller.lock", "state.db"] {
            assert!(
                !home.path().join(f).exists(),
                "{verb} with bad input started a control plane ({f} exists)"
            );
        }
    }
}

/// Cluster-mode flags are refused with the flag named before anything starts.
#[test]
fn runner_flags_say_what_is_wrong() {
    let home = tempfile::tempdir().expect("tempdir");
    let kc = home.path().join("kubeconfig");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\n").expect("kubeconfig");
    let kc = kc.to_string_lossy().into_owned();
    let h = home.path().to_string_lossy().into_owned();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--runner-label", "zone=a"],
            "--runner-label and --capacity apply to a runner that syncs from a cluster",
        ),
        (
            &["--kubeconfig", &kc, "--capacity", "0"],
            "--capacity must be at least 1",
        ),
        (
            &["--kubeconfig", &kc, "--runner-label", "zone"],
            "--runner-label 'zone': expected KEY=VALUE",
        ),
        (
            &["--kubeconfig", &kc, "--runner-label=-z=a"],
            "--runner-label: label key '-z'",
        ),
        (
            &[
                "--kubeconfig",
                &kc,
                "--runner-label",
                "bot-bottle.dev/runner=x",
            ],
            "the runner's own identity label",
        ),
        (
            &["--kubeconfig", &kc, "--backend", "fake"],
            "--backend fake needs --fake-journal FILE",
        ),
    ];
    for (flags, want) in cases {
        let mut args = os(&["controller", "run", "--home", &h]);
        args.extend(os(flags));
        let (code, _, err) = run_bbctl(&args, None);
        assert_eq!(code, 2, "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    let args = os(&[
        "controller",
        "run",
        "--home",
        &h,
        "--backend",
        "none",
        "--sync-from",
        "nowhere",
        "--kubeconfig",
        &kc,
    ]);
    let (code, _, err) = run_bbctl(&args, None);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("--sync-from: no context 'nowhere'"), "{err}");
}

#[test]
fn every_verb_has_help_naming_its_usage() {
    let verbs: &[&[&str]] = &[
        &["apply"],
        &["diff"],
        &["get"],
        &["describe"],
        &["delete"],
        &["run"],
        &["attach"],
        &["exec"],
        &["logs"],
        &["commit"],
        &["suspend"],
        &["resume"],
        &["doctor"],
        &["completion"],
        &["demo"],
        &["validate"],
        &["convert"],
        &["crds"],
        &["version"],
        &["controller", "run"],
        &["controller", "start"],
        &["controller", "stop"],
        &["controller", "status"],
        &["controller", "drain"],
    ];
    for verb in verbs {
        let out = Command::new(env!("CARGO_BIN_EXE_bbctl"))
            .args(*verb)
            .arg("--help")
            .output()
            .expect("bbctl --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{verb:?} --help failed");
        assert!(
            text.contains(&format!("Usage: bbctl {}", verb.join(" "))),
            "{verb:?}: {text}"
        );
        assert!(
            !text.lines().next().unwrap_or_default().is_empty(),
            "{verb:?} has no summary"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bbctl"))
        .arg("--help")
        .output()
        .expect("bbctl --help");
    let text = String::from_utf8_lossy(&out.stdout);
    for verb in verbs.iter().filter(|v| v.len() == 1) {
        assert!(
            text.contains(&format!("  {} ", verb[0])),
            "top-level help lists {}",
            verb[0]
        );
    }
}

/// Compares with `tests/golden/NAME` (AGE values masked); `BB_UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let masked: String = actual
        .lines()
        .map(|l| {
            // The AGE column is the last one in every table bbctl prints.
            if l.ends_with('s') || l.ends_with('m') {
                match l.rsplit_once("   ") {
                    Some((head, tail))
                        if tail
                            .trim()
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_digit()) =>
                    {
                        format!("{head}   <age>")
                    }
                    _ => l.to_string(),
                }
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let path = repo().join("cli/tests/golden").join(name);
    if std::env::var_os("BB_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &masked).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(masked, want, "output differs from {}", path.display());
}

#[test]
fn golden_outputs_of_get_describe_and_errors() {
    let cp = ControlPlane::start();
    let bottles = repo().join("examples/bottles");
    let (code, out, err) = bbctl(
        &cp,
        &[
            "apply",
            "--trust-bottles",
            "--wait",
            "-f",
            path_str(&bottles),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    golden("apply-bottles.txt", &out);
    let (_, out, _) = bbctl(&cp, &["get", "bottles"], None);
    golden("get-bottles.txt", &out);
    let (_, out, _) = bbctl(&cp, &["describe", "bottle", "gitea-dev"], None);
    golden("describe-bottle.txt", &out);
    let (code, _, err) = bbctl(&cp, &["describe", "bottle", "nope"], None);
    assert_eq!(code, 3);
    golden("error-unknown-bottle.txt", &err);
    let (code, _, err) = bbctl(&cp, &["get", "pods"], None);
    assert_eq!(code, 2);
    golden("error-unknown-type.txt", &err);
}

/// The kubectl flags people type from habit: `get --show-labels` / `-L`, `delete --wait[=bool]`,
/// `--timeout`, several names at once, and a suggestion for a mistyped flag.
#[test]
fn get_and_delete_take_kubectls_flags() {
    let cp = ControlPlane::start();
    let bottles = repo().join("examples/bottles");
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "-f", path_str(&bottles), "--trust-bottles"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    cp.ok(&[
        "label",
        "bottle",
        "claude",
        "tier=base",
        "app.kubernetes.io/name=claude",
    ]);

    let (code, out, err) = bbctl(
        &cp,
        &[
            "get",
            "bottles",
            "--show-labels",
            "-L",
            "tier,app.kubernetes.io/name",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "PROVIDER", "ROUTES", "READY", "AGE", "TIER", "NAME", "LABELS"
        ]
    );
    let claude = out.lines().find(|l| l.starts_with("claude ")).unwrap_or("");
    assert!(
        claude.ends_with("base   claude   app.kubernetes.io/name=claude,tier=base"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("codex ") && l.ends_with("<none>")),
        "{out}"
    );
    let (code, _, err) = bbctl(
        &cp,
        &["get", "bottles", "-o", "name", "--show-labels"],
        None,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("--show-labels and -L add table columns"),
        "{err}"
    );

    let (code, out, err) = bbctl(
        &cp,
        &[
            "delete",
            "bottle",
            "codex",
            "pi-openrouter",
            "--wait",
            "--timeout=1h30m",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "bottle.bot-bottle.dev/codex deleted\nbottle.bot-bottle.dev/pi-openrouter deleted\n"
    );
    let (code, out, err) = bbctl(&cp, &["delete", "bottle/gitea-dev", "--wait=false"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "bottle.bot-bottle.dev/gitea-dev deleted\n");
    assert_eq!(
        cp.ok(&["get", "bottles", "-o", "name"]),
        "bottle.bot-bottle.dev/claude\n"
    );

    let (code, _, err) = bbctl(&cp, &["delete", "bottle", "claude", "--timeout=soon"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("'soon' is not a duration; use for example 90s, 5m, 1h30m or 7d"),
        "{err}"
    );
    let (code, _, err) = bbctl(&cp, &["delete", "bottle", "claude", "--wiat"], None);
    assert_eq!(code, 2);
    assert!(err.contains("a similar argument exists: '--wait'"), "{err}");
}

#[test]
fn runtime_flags_say_what_is_wrong() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path().join("home");
    // (the flags after `controller run`, a usage error (2) or a runner that cannot start,
    // what the error must say)
    let cases: &[(&[&str], bool, &[&str])] = &[
        (
            &["--backend", "docker", "--container-cli", "/bin/true"],
            true,
            &["--container-cli and --container-dns apply only to --backend apple-container"],
        ),
        (
            &[
                "--backend",
                "apple-container",
                "--container-dns",
                "dns.example",
            ],
            true,
            &["--container-dns"],
        ),
        (
            &["--backend", "docker", "--smolvm-cli", "/bin/true"],
            true,
            &["--smolvm-cli applies only to --backend smolvm"],
        ),
        // A runtime that is not there: the runner refuses to start and says how to fix it.
        (
            &[
                "--backend",
                "apple-container",
                "--container-cli",
                "/nonexistent/container",
            ],
            false,
            &["/nonexistent/container not found", "--container-cli"],
        ),
        (
            &[
                "--backend",
                "apple-container",
                "--container-cli",
                "/bin/false",
            ],
            false,
            &["service is not running; start it with `container system start`"],
        ),
        (
            &["--backend", "smolvm", "--smolvm-cli", "/nonexistent/smolvm"],
            false,
            &["/nonexistent/smolvm not found", "--smolvm-cli"],
        ),
    ];
    for (flags, usage, needles) in cases {
        let mut args = vec!["controller", "run", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let (code, _, err) = bbctl_home(&h, &args);
        if *usage {
            assert_eq!(code, 2, "{flags:?}: {err}");
        } else {
            assert_ne!(code, 0, "{flags:?}: {err}");
        }
        for needle in *needles {
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }
}

/// kubectl's output habits, against bbctl and kubectl on the same objects: the same bytes.
#[test]
fn kubectl_idioms_print_what_kubectl_prints() {
    let cp = ControlPlane::start();
    let agent = |name: &str, bottle: &str, suspend: bool| {
        format!(
            "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: team, annotations: {{bot-bottle.dev/note: '{name} note'}}}}\nspec: {{bottleRef: {{name: {bottle}}}, suspend: {suspend}}}\n---\n"
        )
    };
    let manifests = [
        agent("a1", "alpha", false),
        agent("a2", "beta", true),
        agent("a3", "alpha", false),
    ]
    .concat();
    cp.ok(&["create", "namespace", "team"]);
    let (code, _, err) = bbctl(&cp, &["apply", "-f", "-"], Some(&manifests));
    assert_eq!(code, 0, "{err}");
    // Phases as a runner would write them (this control plane runs none).
    for (name, phase) in [("a1", "Pending"), ("a2", "Running"), ("a3", "Pending")] {
        cp.patch_status(
            "agent",
            name,
            "team",
            &format!("{{\"status\":{{\"phase\":\"{phase}\"}}}}"),
        );
    }
    let list: &[&str] = &["get", "agents", "-n", "team", "-o"];
    let one: &[&str] = &["get", "agent", "a1", "-n", "team", "-o"];
    for (args, output) in [
        (list, "name"),
        (list, "jsonpath={.items[*].metadata.name}"),
        (
            list,
            r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\n"}{end}"#,
        ),
        (
            list,
            r#"jsonpath={.items[?(@.status.phase=="Pending")].metadata.name}"#,
        ),
        (
            list,
            "jsonpath={.items[?(@.spec.suspend==true)].metadata.name}",
        ),
        (
            list,
            r#"jsonpath={.items[?(@.spec.bottleRef.name!="alpha")].metadata.name}"#,
        ),
        (list, "jsonpath={.items[-1:].metadata.name}"),
        (list, "jsonpath={.items[0].spec}"),
        (one, r#"jsonpath={.metadata.name}{"\n"}"#),
        (
            one,
            r"jsonpath={.metadata.annotations.bot-bottle\.dev/note}",
        ),
        (one, "jsonpath={.status.nothing}"),
    ] {
        let mut argv = args.to_vec();
        argv.push(output);
        let from_kubectl = cp.ok(&argv);
        let (code, from_bbctl, err) = bbctl(&cp, &argv, None);
        assert_eq!(code, 0, "{output}: {err}");
        assert_eq!(from_bbctl, from_kubectl, "-o {output}");
        assert!(
            !from_kubectl.is_empty() || output.contains("nothing"),
            "{output} printed nothing"
        );
    }
    // What `-o name` prints is what the verbs take.
    let name = cp.ok(&["get", "agent", "a1", "-n", "team", "-o", "name"]);
    let (code, out, err) = bbctl(&cp, &["describe", name.trim(), "-n", "team"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Name:            a1\n"), "{out}");
}

/// `describe agent` of a Running, a Suspended and a Failed Agent, on the fake backend (one
/// image of which never builds), against golden files; values that differ per run (the
/// session port, the keyed credentials hash) are masked. And a wait that cannot succeed ends
/// at --timeout naming what it waited for.
#[test]
fn golden_describe_of_running_suspended_and_failed_agents() {
    let journal = tempfile::NamedTempFile::new().expect("journal");
    let cp = ControlPlane::start_with_backend(&[
        "--backend",
        "fake",
        "--fake-journal",
        path_str(journal.path()),
        "--fake-failing-image",
        "broken:1",
    ]);
    let manifests = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: good}\nspec: {agentProvider: {template: custom, image: 'agent:1', command: [bash]}}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: broken}\nspec: {agentProvider: {template: custom, image: 'broken:1', command: [bash]}}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: runner}\nspec: {bottleRef: {name: good}}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: stuck}\nspec: {bottleRef: {name: broken}}\n";
    let (code, _, err) = bbctl(&cp, &["apply", "-f", "-"], Some(manifests));
    assert_eq!(code, 0, "{err}");
    let describe = |name: &str| {
        let (code, out, err) = bbctl(&cp, &["describe", "agent", name], None);
        assert_eq!(code, 0, "{err}");
        masked_describe(&out)
    };

    // apply --wait on the one that builds: Running; on the one that never does: Failed, at
    // once when it gives up, with its message and exit 1.
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "--wait", "-f", "-", "--timeout", "60s"],
        Some(manifests),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("agent.bot-bottle.dev/runner running")
            && err.contains("agent.bot-bottle.dev/stuck failed: image: building broken:1")
            && err.contains("(attempt 4 of 5, next in 8s)")
            && err.contains("gave up after 5 attempts"),
        "{err}"
    );
    golden("describe-agent-running.txt", &describe("runner"));
    golden("describe-agent-failed.txt", &describe("stuck"));
    let (code, out, err) = bbctl(&cp, &["suspend", "agent/runner"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "agent.bot-bottle.dev/runner suspended\n");
    // Events are published just after the status that announces them.
    let mut text = describe("runner");
    for _ in 0..50 {
        if text.contains("phase is now Suspended") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        text = describe("runner");
    }
    golden("describe-agent-suspended.txt", &text);

    // An Agent that cannot start: the wait ends at --timeout, naming the condition.
    let lost = "apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: lost}\nspec: {bottleRef: {name: nowhere}}\n";
    let started = std::time::Instant::now();
    let (code, _, err) = bbctl(
        &cp,
        &["apply", "--wait", "--timeout", "3s", "-f", "-"],
        Some(lost),
    );
    let took = started.elapsed();
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("timed out after 3s (--timeout) waiting for agent.bot-bottle.dev/lost to be Running; last seen: Pending: Ready=False BottleNotFound: Bottle 'nowhere' not found"),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}

/// Masks what differs between runs in `describe agent`: the session endpoint's port and the
/// credentials hash (keyed by the bottle's own CA key).
fn masked_describe(text: &str) -> String {
    text.lines()
        .map(|l| {
            for key in ["Sessions:", "Credentials hash:"] {
                if let Some(rest) = l.strip_prefix(key) {
                    let pad = rest.len() - rest.trim_start().len();
                    return format!("{key}{}<masked>\n", " ".repeat(pad));
                }
            }
            format!("{l}\n")
        })
        .collect()
}
