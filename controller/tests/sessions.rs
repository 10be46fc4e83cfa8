//! The runner's session endpoint against the real control plane and the fake backend (whose
//! sessions are host processes): kube-rs's own exec and log clients work against it, secrets
//! are resolved by the runner, exit codes, stdin's end, resizes and both log forms arrive,
//! and every refusal (no token, wrong runner, not running, unknown Agent) is a Kubernetes
//! Status with the right code.

mod support;

use std::borrow::Cow;

use bb_backend::{LogSource, OutputStream};
use bb_crds::{Agent, AgentPhase};
use bb_runner::sessions::SessionServer;
use bb_runner::sessions::client;
use bb_runner::sessions::protocol::{self, Outcome};
use futures_util::AsyncBufReadExt;
use kube::api::{Api, AttachParams, LogParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{Harness, SECRET_VALUE, logs};

/// kube-rs offers exec, attach and logs only for types that say they have them: this one is an
/// Agent.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(transparent)]
struct AgentSessions(Agent);

impl kube::Resource for AgentSessions {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;
    fn kind(dt: &()) -> Cow<'_, str> {
        Agent::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Agent::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Agent::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Agent::plural(dt)
    }
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        self.0.meta_mut()
    }
}
impl kube::api::Execute for AgentSessions {}
impl kube::api::Attach for AgentSessions {}
impl kube::api::Log for AgentSessions {}

fn endpoint(h: &Harness) -> String {
    h.sessions
        .as_ref()
        .map(|s| s.endpoint().to_string())
        .expect("session endpoint")
}

/// A client for `url` with the control plane's CA and token (what bbctl builds).
async fn client_for(h: &Harness, url: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(&h.cp.kubeconfig).expect("kubeconfig");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    cfg.cluster_url = url.parse().expect("url");
    kube::Client::try_from(cfg).expect("client")
}

async fn running(h: &Harness) -> Agent {
    h.create().await;
    h.wait_for("Running", |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)
    })
    .await
}

fn sessions_api(c: kube::Client) -> Api<AgentSessions> {
    Api::namespaced(c, "default")
}

const AGENT_PATH: &str = "/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents/worker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_exec_gets_output_streams_secret_env_and_exit_code() {
    let h = Harness::start().await;
    let agent = running(&h).await;
    let status = agent.status.clone().unwrap_or_default();
    assert_eq!(
        status.session_endpoint.as_deref(),
        Some(endpoint(&h).as_str())
    );

    let api = sessions_api(client_for(&h, &endpoint(&h)).await);
    let mut p = api
        .exec(
            "worker",
            ["sh", "-c", "echo out:$API_TOKEN; echo err >&2; exit 3"],
            &AttachParams::default().stderr(true),
        )
        .await
        .expect("exec");
    let (mut out, mut err) = (String::new(), String::new());
    let (mut o, mut e) = (p.stdout().expect("stdout"), p.stderr().expect("stderr"));
    let status = p.take_status().expect("status");
    let (r1, r2) = tokio::join!(o.read_to_string(&mut out), e.read_to_string(&mut err));
    r1.expect("stdout");
    r2.expect("stderr");
    let status = status.await.expect("a status");
    // The runner resolved the secret env; the client never sent it.
    assert_eq!(out, format!("out:{SECRET_VALUE}\n"));
    assert_eq!(err, "err\n");
    assert_eq!(protocol::outcome(&status), Outcome::Exited(3));
    let spec = h.backend.opened_sessions().pop().expect("a session");
    assert_eq!(
        spec.user.as_deref(),
        Some("1000"),
        "the agent user by default"
    );
    assert!(!spec.tty);

    // stdin, ended with v5's close channel: `cat` sees EOF and exits 0.
    let mut p = api
        .exec("worker", ["cat"], &AttachParams::default().stdin(true))
        .await
        .expect("exec");
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = p.stdout().expect("stdout");
    let status = p.take_status().expect("status");
    stdin.write_all(b"through stdin\n").await.expect("write");
    stdin.shutdown().await.expect("end of stdin");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, "through stdin\n");
    assert_eq!(
        protocol::outcome(&status.await.expect("status")),
        Outcome::Exited(0)
    );

    // A TTY session gets the client's resizes.
    let mut p = api
        .exec("worker", ["sleep", "2"], &AttachParams::interactive_tty())
        .await
        .expect("exec");
    let mut sizes = p.terminal_size().expect("tty");
    use futures_util::SinkExt;
    sizes
        .send(kube::api::TerminalSize {
            width: 132,
            height: 43,
        })
        .await
        .expect("resize");
    let status = p.take_status().expect("status");
    assert_eq!(
        protocol::outcome(&status.await.expect("status")),
        Outcome::Exited(0)
    );
    assert!(
        h.backend
            .resizes()
            .iter()
            .any(|(_, w, hgt)| (*w, *hgt) == (132, 43)),
        "{:?}",
        h.backend.resizes()
    );

    let logged =
        String::from_utf8_lossy(&logs().lock().map(|l| l.clone()).unwrap_or_default()).into_owned();
    let leaks: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains(SECRET_VALUE))
        .collect();
    assert!(leaks.is_empty(), "a secret reached the log: {leaks:#?}");
}

/// `attach` through a client that is not bbctl's: kube-rs's own, as for a Pod. It reaches the
/// Agent's command (the Bottle's `command: [bash]`, run by the fake as a host process) as the
/// agent user, with stdin in and stdout and the exit code out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_attach_reaches_the_agents_command() {
    let h = Harness::start().await;
    running(&h).await;
    let api = sessions_api(client_for(&h, &endpoint(&h)).await);
    let mut p = api
        .attach(
            "worker",
            &AttachParams::default()
                .stdin(true)
                .stdout(true)
                .stderr(false),
        )
        .await
        .expect("attach");
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = p.stdout().expect("stdout");
    let status = p.take_status().expect("status");
    stdin
        .write_all(b"echo attached-$((6*7)) as $API_TOKEN; exit 5\n")
        .await
        .expect("write");
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.expect("read");
    assert_eq!(out, format!("attached-42 as {SECRET_VALUE}\n"));
    assert_eq!(
        protocol::outcome(&status.await.expect("status")),
        Outcome::Exited(5)
    );
    let spec = h.backend.opened_sessions().pop().expect("a session");
    assert_eq!(spec.argv, ["bash"], "attach runs the Agent's command");
    assert_eq!(spec.user.as_deref(), Some("1000"), "as the agent user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bbctl_client_passes_user_and_keeps_log_streams_apart() {
    let h = Harness::start().await;
    running(&h).await;
    let rc = client_for(&h, &endpoint(&h)).await;
    let got = client::collect(
        &rc,
        &format!("{AGENT_PATH}/exec?command=sh&command=-c&command=echo%20hi%3B%20exit%207&user=0&stdout=true&stderr=true"),
    )
    .await
    .expect("exec");
    assert_eq!(got.outcome, Outcome::Exited(7));
    assert_eq!(got.stdout, b"hi\n");
    let spec = h.backend.opened_sessions().pop().expect("a session");
    assert_eq!(spec.user.as_deref(), Some("0"));

    h.backend.write_log(
        "worker",
        LogSource::Sidecar,
        OutputStream::Stdout,
        "line one\n",
    );
    h.backend.write_log(
        "worker",
        LogSource::Sidecar,
        OutputStream::Stderr,
        "egress proxy ready\n",
    );
    h.backend.write_log(
        "worker",
        LogSource::Egress,
        OutputStream::Stdout,
        "{\"host\":\"x\"}\n",
    );
    // Over WebSocket, stdout and stderr stay apart (what `bbctl logs` shows).
    let got = client::collect(&rc, &format!("{AGENT_PATH}/log?container=sidecar"))
        .await
        .expect("logs");
    assert_eq!(got.outcome, Outcome::Exited(0));
    assert_eq!(String::from_utf8_lossy(&got.stdout), "line one\n");
    assert_eq!(String::from_utf8_lossy(&got.stderr), "egress proxy ready\n");

    // Over plain HTTP, kube-rs's log client gets them merged, as from the Kubernetes API.
    let api = sessions_api(rc.clone());
    let lines: Vec<String> = {
        use futures_util::TryStreamExt;
        api.log_stream(
            "worker",
            &LogParams {
                container: Some("sidecar".into()),
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("log stream")
        .lines()
        .try_collect()
        .await
        .expect("lines")
    };
    assert_eq!(lines, ["egress proxy ready"]);
    let egress = api
        .logs(
            "worker",
            &LogParams {
                container: Some("egress".into()),
                ..Default::default()
            },
        )
        .await
        .expect("egress log");
    assert_eq!(egress, "{\"host\":\"x\"}\n");
}

fn curl(url: &str, ca: &std::path::Path, token: Option<&str>) -> (String, String) {
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(url);
    if let Some(t) = token {
        c.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

fn api_error(e: client::ClientError) -> (u16, String) {
    match e {
        client::ClientError::Connect(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected an API refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_statuses_with_the_right_code() {
    let mut h = Harness::start().await;
    running(&h).await;
    let url = endpoint(&h);
    let ca = h.cp.home.path("ca.crt");
    let token = std::fs::read_to_string(h.cp.home.path("token")).expect("token");
    let exec = format!("{url}{AGENT_PATH}/exec?command=true&stdout=true");
    let (ca2, exec2, token2) = (ca.clone(), exec.clone(), token.clone());
    let results = tokio::task::spawn_blocking(move || {
        (
            curl(&exec2, &ca2, None),
            curl(&exec2, &ca2, Some("not-the-token")),
            curl(&exec2, &ca2, Some(token2.trim())),
        )
    })
    .await
    .expect("curl");
    assert_eq!(results.0.0, "401", "no token: {results:?}");
    assert_eq!(results.1.0, "401", "wrong token: {results:?}");
    assert_eq!(results.2.0, "400", "exec without an upgrade: {results:?}");
    assert!(results.2.1.contains("v5.channel.k8s.io"), "{results:?}");

    let rc = client_for(&h, &url).await;
    let e = client::connect(
        &rc,
        "/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents/nobody/exec?command=true&stdout=true",
    )
    .await
    .expect_err("unknown agent");
    assert_eq!(api_error(e).0, 404);

    // Another runner's endpoint refuses the Agent this one runs.
    let other = SessionServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        &h.cp.creds,
        h.client.clone(),
        std::sync::Arc::new(h.backend.clone()),
        Default::default(),
    )
    .await
    .expect("second runner");
    let oc = client_for(&h, other.endpoint()).await;
    let (code, message) = api_error(
        client::connect(&oc, &format!("{AGENT_PATH}/exec?command=true&stdout=true"))
            .await
            .expect_err("other runner"),
    );
    assert_eq!(code, 409);
    assert!(message.contains(&url), "{message}");
    other.shutdown().await;

    // A suspended Agent has no sessions.
    let agents: Api<Agent> = Api::namespaced(h.client.clone(), "default");
    agents
        .patch(
            "worker",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspend");
    h.wait_for("Suspended", |a| {
        a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Suspended)
    })
    .await;
    let (code, message) = api_error(
        client::connect(&rc, &format!("{AGENT_PATH}/exec?command=true&stdout=true"))
            .await
            .expect_err("suspended"),
    );
    assert_eq!(code, 409);
    assert!(message.contains("not running (Suspended)"), "{message}");
    h.kill_controller();
}
