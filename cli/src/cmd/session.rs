//! `bbctl attach`, `exec`, `logs` and `commit`: sessions in a running Agent. The Agent comes
//! from the API; the session goes to the runner named in its `status.sessionEndpoint`, which
//! alone touches the runtime and resolves the Agent's secrets.

use std::io::IsTerminal;
use std::process::ExitCode;

use bb_crds::agent::Color;
use bb_crds::{Agent, AgentPhase};
use bb_runner::AgentId;
use bb_runner::sessions::client::{self, ClientError, Input};
use bb_runner::sessions::protocol::{Outcome, TerminalSize};
use kube::{Api, ResourceExt};

use super::target::{Target, agent_name};
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The Agent: agent/NAME or NAME.
    agent: String,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The Agent: agent/NAME or NAME.
    agent: String,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Allocate a TTY (with -i for an interactive program).
    #[arg(short = 't', long)]
    tty: bool,
    /// Run as this uid[:gid] (default: 1000, the agent user).
    #[arg(short = 'u', long, value_name = "UID[:GID]", default_value = "1000")]
    user: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The Agent: agent/NAME or NAME.
    agent: String,
    /// Which container: agent or sidecar.
    #[arg(short = 'c', long, value_name = "NAME", default_value = "agent", value_parser = ["agent", "sidecar"])]
    container: String,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The sidecar's egress audit log (JSON lines) instead of container output.
    #[arg(long, conflicts_with = "container")]
    egress: bool,
    /// Only the last N lines (container output only).
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    #[command(flatten)]
    target: Target,
}

/// A running Agent and a client for the runner that runs it.
pub(super) struct Opened {
    pub agent: Agent,
    pub runner: kube::Client,
    /// `/apis/bot-bottle.dev/v1alpha1/namespaces/NS/agents/NAME`
    pub path: String,
}

pub(super) async fn open(target: &Target, arg: &str) -> Result<Opened, CliError> {
    let (_, agent, id) = running_agent(target, arg).await?;
    let Some(endpoint) = agent
        .status
        .as_ref()
        .and_then(|s| s.session_endpoint.clone())
    else {
        return Err(CliError::new(
            Kind::Unavailable,
            format!(
                "agent/{} names no session endpoint yet: its runner has not reconciled it since starting (`bbctl describe agent {}`)",
                id.name, id.name
            ),
        ));
    };
    let runner = target.runner_client(&agent, &endpoint).await?;
    Ok(Opened {
        path: format!(
            "/apis/{}/namespaces/{}/agents/{}",
            bb_crds::API_VERSION,
            id.namespace,
            id.name
        ),
        agent,
        runner,
    })
}

/// The Agent named by `arg`, which must be Running, through the API alone.
async fn running_agent(
    target: &Target,
    arg: &str,
) -> Result<(kube::Client, Agent, AgentId), CliError> {
    let name = agent_name(arg)?;
    let ns = target.namespace();
    let client = target.client().await?;
    let api: Api<Agent> = Api::namespaced(client.clone(), &ns);
    let unreachable = |e: kube::Error| CliError::api("API", e);
    let Some(agent) = api.get_opt(&name).await.map_err(unreachable)? else {
        let names: Vec<String> = api
            .list(&Default::default())
            .await
            .map_err(unreachable)?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        return Err(CliError::new(
            Kind::NotFound,
            format!(
                "Agent '{name}' not found in namespace '{ns}'; available: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    };
    let status = agent.status.clone().unwrap_or_default();
    if status.phase != Some(AgentPhase::Running) {
        let phase = status
            .phase
            .map_or("not yet reconciled".to_string(), |p| p.to_string());
        let why = status.message.map(|m| format!(": {m}")).unwrap_or_default();
        let hint = match status.phase {
            Some(AgentPhase::Suspended) => format!("`bbctl resume agent/{name}` starts it again"),
            Some(AgentPhase::Failed) => format!(
                "`bbctl describe agent/{name}` says why; `bbctl resume agent/{name}` tries again"
            ),
            _ => format!("`bbctl describe agent/{name}` says more"),
        };
        return Err(CliError::new(
            Kind::Conflict,
            format!("Agent '{name}' is not running ({phase}{why}); {hint}"),
        ));
    }
    // The API object's identity: the runner maps it to the runtime copy (a claimed pool
    // member's has another name) itself.
    let id = AgentId::from(&agent);
    Ok((client, agent, id))
}

/// Raw mode on the terminal for the life of the guard.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn term_size() -> Option<(u16, u16)> {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| (w.ws_col, w.ws_row))
        .filter(|&(w, h)| w > 0 && h > 0)
}

/// What a session asks the runner for, as query parameters.
struct Query(form_urlencoded::Serializer<'static, String>);

impl Query {
    fn new() -> Query {
        Query(form_urlencoded::Serializer::new(String::new()))
    }
    fn set(mut self, key: &str, value: impl AsRef<str>) -> Query {
        self.0.append_pair(key, value.as_ref());
        self
    }
    fn flag(self, key: &str, on: bool) -> Query {
        self.set(key, if on { "true" } else { "false" })
    }
}

pub(super) fn session_error(e: ClientError) -> CliError {
    match e {
        ClientError::Connect(e) => CliError::api("the Agent's runner", e),
        other => CliError::new(Kind::Unavailable, other.to_string()),
    }
}

/// Runs one session on the Agent's runner to its end and returns its exit code.
async fn run_session(
    o: &Opened,
    verb: &str,
    query: Query,
    pass_stdin: bool,
    tty: bool,
) -> Result<u8, CliError> {
    let mut query = query;
    let url = format!("{}/{verb}?{}", o.path, query.0.finish());
    let connected = client::connect(&o.runner, &url)
        .await
        .map_err(session_error)?;
    let raw = if tty && std::io::stdin().is_terminal() {
        RawMode::enable()
    } else {
        None
    };
    let (sizes, resize) = tokio::sync::mpsc::channel::<TerminalSize>(4);
    let winch = tty.then(|| {
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let send = |s: &tokio::sync::mpsc::Sender<TerminalSize>| {
                term_size().map(|(width, height)| s.try_send(TerminalSize { width, height }))
            };
            send(&sizes);
            let Ok(mut winch) = signal(SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                send(&sizes);
            }
        })
    });
    let input = if pass_stdin {
        Input::Reader(tokio::io::stdin())
    } else {
        Input::None
    };
    let outcome = client::run(
        connected,
        input,
        tokio::io::stdout(),
        tokio::io::stderr(),
        resize,
    )
    .await;
    drop(raw);
    if let Some(w) = winch {
        w.abort();
    }
    match outcome.map_err(session_error)? {
        Outcome::Exited(code) => Ok(u8::try_from(code).unwrap_or(255)),
        Outcome::Failed(message) => Err(CliError::new(
            Kind::Unavailable,
            format!("agent/{}: {message}", o.agent.name_any()),
        )),
    }
}

fn ansi(color: Color) -> &'static str {
    match color {
        Color::Red => "31",
        Color::Green => "32",
        Color::Yellow => "33",
        Color::Blue => "34",
        Color::Magenta => "35",
    }
}

/// `bbctl attach agent/NAME`: the provider's command on a TTY; exits with its exit code.
pub fn attach(args: AttachArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(attach_to(&args.target, &args.agent));
    // A blocking stdin read may still be parked on a thread: do not wait for it.
    rt.shutdown_background();
    result.map(ExitCode::from)
}

/// Runs the Agent's provider command attached to this terminal (or to plain stdin/stdout when
/// there is none) and returns its exit code.
pub async fn attach_to(target: &Target, agent: &str) -> Result<u8, CliError> {
    resume_if_suspended(target, agent).await?;
    let o = open(target, agent).await?;
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if tty {
        let label = o
            .agent
            .spec
            .label
            .clone()
            .unwrap_or_else(|| o.agent.name_any());
        // The terminal title names the bottle; colour only when asked and allowed.
        print!("\x1b]0;{label}\x07");
        if let Some(c) = o
            .agent
            .spec
            .color
            .filter(|_| std::env::var_os("NO_COLOR").is_none())
        {
            println!("\x1b[{}m── {label} ──\x1b[0m", ansi(c));
        }
    }
    // With a TTY the remote side has one output stream, so stderr is not asked for.
    let query = Query::new()
        .flag("stdin", true)
        .flag("stdout", true)
        .flag("stderr", !tty)
        .flag("tty", tty);
    run_session(&o, "attach", query, true, tty).await
}

/// Attaching to a suspended Agent (by hand, or by `spec.lifecycle.idleSuspendAfter`) resumes
/// it and waits until it runs, as `bbctl resume` does.
async fn resume_if_suspended(target: &Target, arg: &str) -> Result<(), CliError> {
    let name = agent_name(arg)?;
    let api: Api<Agent> = Api::namespaced(target.client().await?, &target.namespace());
    let Some(agent) = api
        .get_opt(&name)
        .await
        .map_err(|e| CliError::api("API", e))?
    else {
        // `open` names the Agents there are.
        return Ok(());
    };
    let phase = agent.status.as_ref().and_then(|s| s.phase);
    if agent.spec.suspend != Some(true) && phase != Some(AgentPhase::Suspended) {
        return Ok(());
    }
    eprintln!("agent/{name} is suspended: resuming it");
    super::apply::request_suspend(&api, &name, false).await?;
    let deadline = super::apply::Deadline::new(std::time::Duration::from_secs(300));
    super::apply::wait_running(&api, &name, deadline).await
}

/// `bbctl exec agent/NAME -- CMD...`: exits with the command's exit code.
pub fn exec(args: ExecArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let o = open(&args.target, &args.agent).await?;
        let tty = args.tty && std::io::stdout().is_terminal();
        let mut query = Query::new()
            .flag("stdin", args.stdin)
            .flag("stdout", true)
            .flag("stderr", !tty)
            .flag("tty", tty)
            .set("user", &args.user);
        for c in &args.command {
            query = query.set("command", c);
        }
        run_session(&o, "exec", query, args.stdin, tty).await
    });
    rt.shutdown_background();
    result.map(ExitCode::from)
}

/// `bbctl logs agent/NAME [-c agent|sidecar] [-f] [--egress]`.
pub fn logs(args: LogsArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let o = open(&args.target, &args.agent).await?;
        let container = if args.egress {
            "egress"
        } else {
            args.container.as_str()
        };
        let mut query = Query::new()
            .set("container", container)
            .flag("follow", args.follow);
        if let Some(n) = args.tail {
            query = query.set("tailLines", n.to_string());
        }
        run_session(&o, "log", query, false, false).await
    });
    rt.shutdown_background();
    result.map(ExitCode::from)
}

#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// The Agent: agent/NAME or NAME.
    agent: String,
    /// How long to wait for the controller to take the snapshot (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = super::apply::parse_timeout)]
    timeout: std::time::Duration,
    #[command(flatten)]
    target: Target,
}

/// `bbctl commit agent/NAME`: asks for a snapshot by writing a new `spec.snapshotRequest`, then
/// waits for the controller that runs the Agent to answer it in status. The CLI never touches
/// the runtime or the status itself.
pub fn commit(args: CommitArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let (client, _, id) = running_agent(&args.target, &args.agent).await?;
        let api: Api<Agent> = Api::namespaced(client, &id.namespace);
        let request = jiff::Timestamp::now().to_string();
        let patch = serde_json::json!({"spec": {"snapshotRequest": request}});
        api.patch(
            &id.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| CliError::api("requesting the snapshot", e))?;
        let deadline = std::time::Instant::now() + args.timeout;
        loop {
            let agent = api
                .get(&id.name)
                .await
                .map_err(|e| CliError::api(&format!("reading agent/{}", id.name), e))?;
            let status = agent.status.unwrap_or_default();
            if status.snapshot_request_handled.as_deref() == Some(request.as_str())
                && let Some(image) = status.snapshot
            {
                println!("agent/{} committed as {image}", id.name);
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(CliError::new(
                    Kind::Unavailable,
                    format!(
                        "timed out after {:?} waiting for the controller to snapshot agent/{} (request {request}); `bbctl describe agent {}` shows its events",
                        args.timeout, id.name, id.name
                    ),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    });
    rt.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}
