//! The bottle holds on a real Docker engine: a Bottle and an Agent applied with kubectl become an
//! agent container whose only way out is its sidecar, and everything it owns goes on delete.
//! The test's "internet" is an HTTPS container it starts on the sidecar's egress network.

use std::time::{Duration, Instant};

use bb_e2e::harness::one;
use bb_e2e::{
    Cleanup, Controller, UPSTREAM_PY, Upstream, containers_with, docker, ensure_base_image,
    in_agent, networks_with, ok, remove_all_with, run, scan_for, test_pki, volumes_with,
    workspace_root,
};

const TOKEN: &str = "e2e-T0ken-9f8a7b6c5d4e3f2a1b0c";
const ROTATED: &str = "e2e-R0tated-1a2b3c4d5e6f7a8b9c0d";
const READY_LIMIT: Duration = Duration::from_secs(600);

fn manifest(name: &str, extra_routes: &str) -> String {
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: {name}-token, namespace: bot-bottle-system}}
stringData: {{token: {TOKEN}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: {name}}}
spec:
  agentProvider:
    template: custom
    dockerfile: {dockerfile}
    command: [bash, -l]
  runtime: {{pids: 256, memory: 512Mi, cpu: 500m}}
  egress:
    log: 1
    routes:
      - host: api.example.test
        auth:
          scheme: Bearer
          secretKeyRef: {{name: {name}-token, key: token}}
{extra_routes}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: {name}, namespace: default}}
spec:
  bottleRef: {{name: {name}}}
  prompt: "e2e prompt"
"#,
        dockerfile = dockerfile.display()
    )
}

/// The HTTPS upstream, reachable from the sidecar's egress network as api/other.example.test.
fn start_upstream(name: &str, network: &str, cert: &str, key: &str) -> Upstream {
    bb_e2e::start_upstream(
        name,
        network,
        &["api.example.test", "other.example.test"],
        UPSTREAM_PY,
        (cert, key),
    )
}

#[test]
fn bottle_holds_on_docker() {
    ensure_base_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = test_pki(&["api.example.test", "other.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let ca_arg = ca_path.to_string_lossy().into_owned();
    let cp = Controller::start(&["--upstream-ca", &ca_arg, "--resync-seconds", "2"]);
    let agent_label = "bot-bottle.dev/agent=default/holds";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());

    // 1. apply -> Running.
    let started = Instant::now();
    cp.apply(&manifest("holds", ""));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "holds"], "{.status.phase}") == "Running"
    });
    println!(
        "apply -> Running in {:.1}s (includes image builds on a cold engine)",
        started.elapsed().as_secs_f64()
    );
    let conditions = cp.jsonpath(
        &["agent", "holds"],
        "{range .status.conditions[*]}{.type}={.status} {end}",
    );
    for c in [
        "ImagesReady=True",
        "SidecarReady=True",
        "PolicyApplied=True",
        "Provisioned=True",
        "Ready=True",
    ] {
        assert!(conditions.contains(c), "{c} missing from {conditions}");
    }

    let agent = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let sidecar = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    let egress_net = one(
        networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    let upstream = start_upstream("bb-e2e-upstream-holds", &egress_net, &cert, &key);

    // Hardening from the Bottle's runtime and the backend's defaults.
    let host = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.SecurityOpt}} {{.HostConfig.CapDrop}} {{.HostConfig.Dns}}",
        &agent,
    ]));
    // The DNS server pinned to the agent's own loopback is what keeps names from resolving on
    // engines whose internal networks still forward queries; this engine alone would not tell.
    assert_eq!(
        host.trim(),
        "256 536870912 500000000 [no-new-privileges:true] [ALL] [127.0.0.1]",
        "agent HostConfig"
    );
    let (_, status) = in_agent(&agent, "grep -E '^(NoNewPrivs|CapEff)' /proc/self/status");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(
        status.contains("CapEff:\t0000000000000000"),
        "the agent user holds capabilities: {status}"
    );

    // The agent sits on the internal network only.
    let nets = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &agent,
    ]));
    assert_eq!(nets.split_whitespace().count(), 1, "agent networks: {nets}");
    assert!(nets.trim().ends_with("-internal"), "agent networks: {nets}");

    // 2. Allowed host through the proxy succeeds (the sidecar may need a moment to see the
    // upstream's DNS alias).
    let mut body = String::new();
    cp.wait_for(
        "the allowed host to answer through the proxy",
        Duration::from_secs(20),
        || {
            let (ok, out) = in_agent(&agent, "curl -sS -m 5 https://api.example.test/hello");
            body = out;
            ok
        },
    );
    assert!(body.contains("hello from upstream"), "{body}");
    // A host outside the policy gets the proxy's 403.
    let (_, code) = in_agent(
        &agent,
        "curl -s -m 5 -o /dev/null -w '%{http_connect}' https://blocked.example.test/",
    );
    assert_eq!(code.trim(), "403", "CONNECT to a blocked host");
    // No way around the proxy: a direct connection to the upstream fails, by name or address.
    let upstream_ip = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &upstream.name,
    ]));
    let (direct_ok, direct_out) = in_agent(
        &agent,
        &format!(
            "curl -sS -k -m 5 --noproxy '*' https://api.example.test/; curl -sS -k -m 5 --noproxy '*' https://{}/",
            upstream_ip.trim()
        ),
    );
    assert!(
        !direct_ok && !direct_out.contains("hello from upstream"),
        "direct egress worked: {direct_out}"
    );
    // Resolving any name fails inside the agent.
    let (resolved, out) = in_agent(
        &agent,
        "getent hosts api.example.test || getent hosts example.com || python3 -c \"import socket; socket.gethostbyname('localhost.example.test')\"",
    );
    assert!(!resolved, "a name resolved inside the agent: {out}");

    // 3. Token injection: the upstream saw the real token; the agent holds it nowhere.
    let (ok_auth, _) = in_agent(
        &agent,
        "curl -sS -m 5 -H 'Authorization: Bearer egress-placeholder' https://api.example.test/auth",
    );
    assert!(ok_auth);
    let seen = ok(&mut docker(&["logs", &upstream.name]));
    let auth_line = seen
        .lines()
        .find(|l| l.contains("\"/auth\""))
        .unwrap_or_else(|| panic!("upstream never saw /auth: {seen}"));
    assert!(
        auth_line.contains(&format!("Bearer {TOKEN}")),
        "upstream did not get the injected token: {auth_line}"
    );
    assert_eq!(
        scan_for(&agent, TOKEN).trim(),
        "0",
        "the token is visible inside the agent"
    );
    // The scan itself must be able to fail: a planted canary is found.
    let canary = "canary-7f3e9b1d2c4a";
    ok(&mut docker(&[
        "exec",
        &agent,
        "sh",
        "-c",
        &format!("printf %s {canary} > /home/agent/.canary"),
    ]));
    let found = scan_for(&agent, canary);
    assert!(
        found.contains("/home/agent/.canary"),
        "scan missed a planted canary: {found}"
    );
    // The sidecar: an unprivileged user, no capabilities, a read-only root filesystem that
    // holds nothing but bb-sidecar, git, ssh and the C runtime (no shell to run), nothing
    // written to it.
    let hardening = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}",
        &sidecar,
    ]));
    assert_eq!(
        hardening.trim(),
        "65532:65532 true [ALL] [no-new-privileges:true]",
        "sidecar HostConfig"
    );
    let uids = ok(&mut docker(&["top", &sidecar, "-eo", "pid,uid,comm"]));
    assert!(
        uids.lines()
            .skip(1)
            .all(|l| l.split_whitespace().nth(1) == Some("65532")),
        "a sidecar process runs as another user: {uids}"
    );
    let shell = run(&mut docker(&["exec", &sidecar, "/bin/sh", "-c", "true"]));
    assert!(!shell.status.success(), "the sidecar image has a shell");
    let written = ok(&mut docker(&["diff", &sidecar]));
    // The only additions are the engine's mount points: its init binary (`init: true`) and
    // the supervise queue the runner mounts.
    let written: Vec<&str> = written
        .lines()
        .filter(|l| {
            ![
                "A /sbin",
                "A /sbin/docker-init",
                "C /run",
                "A /run/bot-bottle-queue",
            ]
            .contains(l)
        })
        .collect();
    assert!(
        written.is_empty(),
        "the sidecar wrote outside its tmpfs: {written:?}"
    );
    let image = ok(&mut docker(&["inspect", "-f", "{{.Image}}", &sidecar]));
    let image_size: u64 = ok(&mut docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Size}}",
        image.trim(),
    ]))
    .trim()
    .parse()
    .expect("image size");
    let binary = std::fs::metadata(bb_e2e::workspace_bin("bb-sidecar"))
        .expect("bb-sidecar")
        .len();
    // Everything beside bb-sidecar itself stays under 16 MB: libc and the loader, the CA
    // bundle, and git-gate's git (3.7 MB) and ssh (1.1 MB) with the libraries they link
    // (libcrypto 4.6 MB, Kerberos, pcre2, zlib). The release image's total is measured by
    // hack/bench-egress.sh.
    assert!(
        image_size.saturating_sub(binary) < 16_000_000,
        "the sidecar image holds {} bytes beside its binary",
        image_size - binary
    );

    // In the sidecar the token exists only in its tmpfs: in no process's argv or environment
    // and in no file elsewhere (an image layer or a bind mount would show here).
    let found = bb_e2e::scan_sidecar(&sidecar, TOKEN);
    let mut lines = found.lines();
    assert_eq!(
        lines.next(),
        Some("0"),
        "the token is in a sidecar process's argv or env: {found}"
    );
    let files: Vec<&str> = lines.collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("/run/bot-bottle/secrets/")),
        "the scan did not find the sidecar's own token file: {found}"
    );
    assert!(
        files.iter().all(|f| f.starts_with("/run/bot-bottle/")),
        "the token is stored outside the sidecar's tmpfs: {found}"
    );
    let tmpfs = ok(&mut docker(&[
        "inspect",
        "-f",
        "{{json .HostConfig.Tmpfs}}",
        &sidecar,
    ]));
    assert!(
        tmpfs.contains("\"/run/bot-bottle\""),
        "the sidecar's secrets are not on a tmpfs: {tmpfs}"
    );
    for c in [&agent, &sidecar] {
        let inspect = ok(&mut docker(&["inspect", c]));
        assert!(
            !inspect.contains(TOKEN),
            "docker inspect {c} shows the token"
        );
    }
    for obj in [["agent", "holds"], ["bottle", "holds"]] {
        let text = ok(&mut cp.kubectl(&["get", obj[0], obj[1], "-o", "yaml"]));
        assert!(!text.contains(TOKEN), "{} shows the token", obj[0]);
    }

    // 4. DLP: the bottle's own secret in a request body is refused before it leaves.
    let (_, out) = in_agent(
        &agent,
        &format!(
            "curl -s -m 5 -o /dev/null -w '%{{http_code}}' -X POST --data 'note={TOKEN}' https://api.example.test/upload"
        ),
    );
    assert_eq!(
        out.trim(),
        "403",
        "a request carrying the secret was not refused"
    );
    let seen = ok(&mut docker(&["logs", &upstream.name]));
    assert!(
        !seen.contains("/upload"),
        "the upstream received the secret: {seen}"
    );

    // 4b. Rotation: a new value in the Secret reaches the running sidecar within the resync
    // bound, for injection and DLP alike; the applied hash moves, the agent container stays,
    // and the old value leaves the sidecar.
    let hash_before = cp.jsonpath(&["agent", "holds"], "{.status.appliedCredentialsHash}");
    let policy_before = cp.jsonpath(&["agent", "holds"], "{.status.appliedPolicyHash}");
    assert_eq!(
        policy_before,
        cp.jsonpath(&["bottle", "holds"], "{.status.resolvedPolicyHash}"),
        "the applied policy is not the one the Bottle resolved to"
    );
    cp.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: holds-token, namespace: bot-bottle-system}}\nstringData: {{token: {ROTATED}}}\n"
    ));
    let took = cp.wait_for(
        "the rotated token to reach the upstream",
        Duration::from_secs(30),
        || {
            let _ = in_agent(&agent, "curl -sS -m 5 https://api.example.test/rotated");
            let seen = ok(&mut docker(&["logs", &upstream.name]));
            seen.lines()
                .any(|l| l.contains("\"/rotated\"") && l.contains(&format!("Bearer {ROTATED}")))
        },
    );
    println!("secret rotation -> injected in {:.1}s", took.as_secs_f64());
    let hash_after = cp.jsonpath(&["agent", "holds"], "{.status.appliedCredentialsHash}");
    assert!(
        !hash_after.is_empty() && hash_after != hash_before,
        "appliedCredentialsHash did not follow the rotation: {hash_before} -> {hash_after}"
    );
    assert_eq!(
        cp.jsonpath(&["agent", "holds"], "{.status.appliedPolicyHash}"),
        policy_before,
        "a credential rotation changed the policy hash"
    );
    let (_, out) = in_agent(
        &agent,
        &format!(
            "curl -s -m 5 -o /dev/null -w '%{{http_code}}' -X POST --data 'note={ROTATED}' https://api.example.test/upload-rotated"
        ),
    );
    assert_eq!(out.trim(), "403", "DLP does not know the rotated value");
    assert!(
        !ok(&mut docker(&["logs", &upstream.name])).contains("/upload-rotated"),
        "the upstream received the rotated secret"
    );
    assert_eq!(
        bb_e2e::scan_sidecar(&sidecar, TOKEN).trim(),
        "0",
        "the old token is still in the sidecar"
    );
    assert_eq!(
        one(
            containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
            "agent container",
        ),
        agent,
        "a rotation recreated the agent container"
    );

    // 5. Live policy: allow a second host; the agent reaches it without being recreated.
    let (_, before) = in_agent(
        &agent,
        "curl -s -m 5 -o /dev/null -w '%{http_connect}' https://other.example.test/",
    );
    assert_eq!(before.trim(), "403");
    ok(&mut cp.kubectl(&[
        "patch",
        "bottle",
        "holds",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/egress/routes/-","value":{"host":"other.example.test"}}]"#,
    ]));
    let took = cp.wait_for(
        "the second host to be allowed",
        Duration::from_secs(30),
        || in_agent(&agent, "curl -sS -m 5 https://other.example.test/").0,
    );
    println!("policy edit -> enforced in {:.1}s", took.as_secs_f64());
    let agent_now = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    assert_eq!(
        agent_now, agent,
        "a policy edit recreated the agent container"
    );

    // 6. Drift: the sidecar removed out of band comes back, egress works, an event says so.
    ok(&mut docker(&["rm", "-f", &sidecar]));
    cp.wait_for(
        "the sidecar to be recreated",
        Duration::from_secs(60),
        || {
            let now = containers_with(&format!("{agent_label},bot-bottle.dev/role=sidecar"));
            now.len() == 1 && now[0] != sidecar
        },
    );
    cp.wait_for(
        "egress through the new sidecar",
        Duration::from_secs(30),
        || in_agent(&agent, "curl -sS -m 5 https://api.example.test/again").0,
    );
    cp.wait_for("a SidecarRecreated event", Duration::from_secs(30), || {
        let ev = run(&mut cp.kubectl(&[
            "get",
            "events",
            "-n",
            "default",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.name}/{.reason} {end}",
        ]));
        String::from_utf8_lossy(&ev.stdout).contains("holds/SidecarRecreated")
    });

    // 7. Delete: nothing with the Agent's labels remains.
    ok(&mut cp.kubectl(&[
        "delete",
        "agent",
        "holds",
        "-n",
        "default",
        "--timeout=120s",
    ]));
    assert!(
        containers_with(agent_label).is_empty(),
        "containers left behind"
    );
    assert!(
        networks_with(agent_label).is_empty(),
        "networks left behind"
    );
    assert!(volumes_with(agent_label).is_empty(), "volumes left behind");
    let images = ok(&mut docker(&[
        "images",
        "-q",
        "--filter",
        &format!("label={agent_label}"),
    ]));
    assert!(
        images.trim().is_empty(),
        "snapshot images left behind: {images}"
    );
}

/// Killed with SIGKILL while the Agent is still coming up, the controller restarts and
/// converges: one agent container, one sidecar, two networks, nothing duplicated.
#[test]
fn controller_killed_while_starting_converges() {
    ensure_base_image();
    let mut cp = Controller::start(&["--resync-seconds", "2"]);
    let agent_label = "bot-bottle.dev/agent=default/crashy";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    cp.apply(&manifest("crashy", ""));
    cp.wait_for("the Agent to start coming up", READY_LIMIT, || {
        !containers_with(agent_label).is_empty() || !networks_with(agent_label).is_empty()
    });
    cp.kill();
    cp.spawn();
    cp.wait_for(
        "the Agent to be Running after the restart",
        READY_LIMIT,
        || cp.jsonpath(&["agent", "crashy"], "{.status.phase}") == "Running",
    );
    one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    assert_eq!(networks_with(agent_label).len(), 2, "networks");
    ok(&mut cp.kubectl(&[
        "delete",
        "agent",
        "crashy",
        "-n",
        "default",
        "--timeout=120s",
    ]));
    assert!(
        containers_with(agent_label).is_empty(),
        "containers left behind"
    );
    assert!(
        networks_with(agent_label).is_empty(),
        "networks left behind"
    );
}

/// `bbctl exec`, `logs` and `attach` (under tmux, as a person would use it) against a running
/// Agent: exit codes reach the caller, secret env reaches only the session, the workspace is
/// copied without `.git`, and the egress audit log shows the agent's requests.
#[test]
fn sessions_exec_logs_and_attach_under_tmux() {
    ensure_base_image();
    // Known to the controller's process only: a session that shows it was resolved by the
    // runner, never by bbctl.
    let runner_only = "runner-only-7e1f";
    let cp = Controller::start_with_env(
        &["--resync-seconds", "5"],
        &[("BB_E2E_RUNNER_ONLY", runner_only)],
    );
    assert!(std::env::var_os("BB_E2E_RUNNER_ONLY").is_none());
    let agent_label = "bot-bottle.dev/agent=default/sessions";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    let ws = tempfile::tempdir().expect("workspace");
    std::fs::write(ws.path().join("hello.txt"), "hello workspace\n").expect("write");
    std::fs::create_dir(ws.path().join(".git")).expect("mkdir");
    std::fs::write(ws.path().join(".git/HEAD"), "ref: refs/heads/main\n").expect("write");
    let skill = tempfile::tempdir().expect("skill");
    std::fs::write(skill.path().join("SKILL.md"), "# e2e skill\n").expect("write");
    let session_secret = "sess-5ecret-0a1b2c3d4e5f";
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: sessions-env, namespace: bot-bottle-system}}
stringData: {{value: {session_secret}}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: sessions}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash, --norc, -i]}}
  env:
    - {{name: SESSION_TOKEN, valueFrom: {{secretKeyRef: {{name: sessions-env, key: value}}}}}}
    - {{name: RUNNER_ONLY, valueFrom: {{hostEnv: {{name: BB_E2E_RUNNER_ONLY}}}}}}
  egress: {{log: 1, routes: [{{host: api.example.test}}]}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: sessions, namespace: default}}
spec:
  bottleRef: {{name: sessions}}
  label: e2e-session
  color: green
  workspace: {{hostPath: {ws}}}
  skills: [{skill}]
"#,
        skill = skill.path().display(),
        dockerfile = dockerfile.display(),
        ws = ws.path().display()
    ));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "sessions"], "{.status.phase}") == "Running"
    });
    let bbctl = bb_e2e::workspace_bin("bbctl");
    let home = cp.home.path().to_path_buf();
    let exec = |cmd: &[&str]| cp.exec("sessions", cmd);

    let skill_name = skill
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = exec(&[
        "cat",
        &format!("/etc/bot-bottle/skills/{skill_name}/SKILL.md"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "# e2e skill\n",
        "skill copied in"
    );
    let out = exec(&["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "exec exit code");
    let out = exec(&[
        "sh",
        "-c",
        "id -u; cat /workspace/hello.txt; test -e /workspace/.git || echo no-git; echo \"$SESSION_TOKEN\"; echo \"$RUNNER_ONLY\"",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "1000",
            "hello workspace",
            "no-git",
            session_secret,
            runner_only
        ],
        "exec output"
    );
    // The session went through the runner's endpoint, which the Agent names.
    let endpoint = cp.jsonpath(&["agent", "sessions"], "{.status.sessionEndpoint}");
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let out = exec(&["sh", "-c", "id -u"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
    let mut c = std::process::Command::new(&bbctl);
    c.args(["exec", "-u", "0", "agent/sessions", "--home"])
        .arg(&home)
        .args(["--", "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&run(&mut c).stdout).trim(),
        "0",
        "exec -u reaches the runner"
    );
    let agent = one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
        "agent container",
    );
    let inspect = ok(&mut docker(&["inspect", &agent]));
    assert!(
        !inspect.contains(session_secret),
        "the secret env is in the container's config"
    );

    // The egress log records what the agent asked for.
    let _ = exec(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "https://blocked.example.test/",
    ]);
    let mut c = std::process::Command::new(&bbctl);
    c.args(["logs", "agent/sessions", "--egress", "--home"])
        .arg(&home);
    let audit = ok(&mut c);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("blocked.example.test") && l.contains("block")),
        "audit log: {audit}"
    );
    // --tail applies to the audit log as to container output: its last line only.
    let mut c = std::process::Command::new(&bbctl);
    c.args([
        "logs",
        "agent/sessions",
        "--egress",
        "--tail",
        "1",
        "--home",
    ])
    .arg(&home);
    let last = ok(&mut c);
    assert_eq!(
        last.lines().collect::<Vec<_>>(),
        audit.lines().last().into_iter().collect::<Vec<_>>(),
        "--tail 1 of the audit log"
    );
    let mut c = std::process::Command::new(&bbctl);
    c.args(["logs", "agent/sessions", "-c", "sidecar", "--home"])
        .arg(&home);
    // Like `docker logs`, the container's stderr stays on stderr.
    let out = run(&mut c);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("egress proxy ready"),
        "sidecar log: {out:?}"
    );
    let mut c = std::process::Command::new(&bbctl);
    c.args(["exec", "agent/nope", "--home"])
        .arg(&home)
        .args(["--", "true"]);
    let out = run(&mut c);
    assert_eq!(out.status.code(), Some(3), "unknown agent is 'not found'");
    assert!(String::from_utf8_lossy(&out.stderr).contains("available: sessions"));

    // attach: a real terminal (tmux), a shell, and its exit code back to the caller.
    let result = ws.path().join("attach-exit");
    let tmux = bb_e2e::Tmux::start(
        "sessions",
        &format!(
            "{} attach agent/sessions --home {}; echo EXIT=$? > {}; sleep 120",
            bbctl.display(),
            home.display(),
            result.display()
        ),
        (120, 30),
    );
    cp.wait_for(
        "the attached shell's prompt",
        Duration::from_secs(30),
        || tmux.pane().contains('$'),
    );
    tmux.send("echo hi-$((6*7))");
    cp.wait_for("the shell to answer", Duration::from_secs(15), || {
        tmux.pane().contains("hi-42")
    });
    assert!(
        tmux.pane().contains("e2e-session"),
        "the label banner: {}",
        tmux.pane()
    );
    tmux.send("exit 7");
    cp.wait_for("attach to exit", Duration::from_secs(15), || {
        std::fs::read_to_string(&result).is_ok_and(|s| s.contains("EXIT="))
    });
    drop(tmux);
    assert_eq!(
        std::fs::read_to_string(&result).unwrap_or_default().trim(),
        "EXIT=7",
        "attach's exit code"
    );

    // apply --wait returns once the Agent runs; delete waits until its containers are gone.
    let mut c = std::process::Command::new(&bbctl);
    c.args(["apply", "--wait", "-f", "-", "--home"]).arg(&home);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("bbctl apply");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"apiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {name: waiter}\nspec: {bottleRef: {name: sessions}}\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("bbctl apply");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("agent.bot-bottle.dev/waiter running"), "{err}");
    assert_eq!(
        cp.jsonpath(&["agent", "waiter"], "{.status.phase}"),
        "Running"
    );
    let mut c = std::process::Command::new(&bbctl);
    c.args(["delete", "agent", "waiter", "--home"]).arg(&home);
    ok(&mut c);
    assert!(containers_with("bot-bottle.dev/agent=default/waiter").is_empty());

    // run --attach --rm: a second Agent in the same Bottle, its session fed from stdin (no
    // terminal), its exit code passed through, and the Agent gone afterwards.
    let mut child = std::process::Command::new(&bbctl)
        .args([
            "run", "quick", "--bottle", "sessions", "--attach", "--rm", "--home",
        ])
        .arg(&home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bbctl run");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo from-run-$((40+2)); exit 4\n")
            .expect("write");
    }
    let out = child.wait_with_output().expect("bbctl run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "run --attach exit code\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("from-run-42"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("agent.bot-bottle.dev/quick deleted"),
        "{stderr}"
    );
    assert!(containers_with("bot-bottle.dev/agent=default/quick").is_empty());

    // commit: an image recorded in status.snapshot, removed with the Agent.
    let mut c = std::process::Command::new(&bbctl);
    c.args(["commit", "agent/sessions", "--home"]).arg(&home);
    let said = ok(&mut c);
    let snapshot = cp.jsonpath(&["agent", "sessions"], "{.status.snapshot}");
    assert!(
        snapshot.starts_with("bot-bottle/snapshot:") && said.contains(&snapshot),
        "status.snapshot {snapshot:?}, bbctl said {said:?}"
    );
    ok(&mut docker(&["image", "inspect", &snapshot]));
    // The CLI asked in the spec; the controller answered in status, and only it wrote status.
    let handled = cp.jsonpath(&["agent", "sessions"], "{.status.snapshotRequestHandled}");
    assert!(!handled.is_empty(), "no snapshot request was answered");
    assert_eq!(
        handled,
        cp.jsonpath(&["agent", "sessions"], "{.spec.snapshotRequest}"),
    );
    let status_writers = cp.jsonpath(
        &["agent", "sessions"],
        "{.metadata.managedFields[?(@.subresource==\"status\")].manager}",
    );
    assert_eq!(
        status_writers.trim(),
        "bb-controller",
        "status written by others"
    );
    ok(&mut cp.kubectl(&["delete", "agent", "sessions", "--timeout=120s"]));
    assert!(
        !run(&mut docker(&["image", "inspect", &snapshot]))
            .status
            .success(),
        "the snapshot outlived its Agent"
    );
}

/// `runtime.gvisor: required` on an engine without gVisor fails clearly and creates no agent
/// container; on an engine with it, the agent runs under runsc.
#[test]
fn gvisor_required_is_enforced() {
    ensure_base_image();
    let cp = Controller::start(&[]);
    let agent_label = "bot-bottle.dev/agent=default/gvisor";
    remove_all_with(agent_label);
    let _cleanup = Cleanup(agent_label.to_string());
    let has_runsc = ok(&mut docker(&["info", "-f", "{{json .Runtimes}}"])).contains("runsc");
    let dockerfile = workspace_root().join("images/test-agent/Dockerfile");
    cp.apply(&format!(
        r#"apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {{name: gvisor}}
spec:
  agentProvider: {{template: custom, dockerfile: {dockerfile}, command: [bash]}}
  runtime: {{gvisor: required}}
---
apiVersion: bot-bottle.dev/v1alpha1
kind: Agent
metadata: {{name: gvisor, namespace: default}}
spec: {{bottleRef: {{name: gvisor}}}}
"#,
        dockerfile = dockerfile.display()
    ));
    if has_runsc {
        cp.wait_for("the Agent to be Running", READY_LIMIT, || {
            cp.jsonpath(&["agent", "gvisor"], "{.status.phase}") == "Running"
        });
        let agent = one(
            containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")),
            "agent container",
        );
        let rt = ok(&mut docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.Runtime}}",
            &agent,
        ]));
        assert_eq!(rt.trim(), "runsc");
    } else {
        cp.wait_for("a message naming runsc", READY_LIMIT, || {
            cp.jsonpath(&["agent", "gvisor"], "{.status.message}")
                .contains("runsc")
        });
        assert!(
            containers_with(&format!("{agent_label},bot-bottle.dev/role=agent")).is_empty(),
            "an agent container started without the required gVisor"
        );
    }
}
