//! `bbctl attach`, `exec` and `logs`: sessions in a running Agent. The Agent and its Bottle come
//! from the API; the session itself goes straight to the backend's engine.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use bb_controller::backend::AgentId;
use bb_controller::backend::docker::session::{LogOutput, Output, SessionSpec, Which};
use bb_controller::backend::docker::{DockerBackend, DockerConfig};
use bb_crds::agent::Color;
use bb_crds::{Agent, AgentPhase, Bottle, ResolvedBottle};
use futures_util::StreamExt;
use kube::{Api, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A running Agent, its resolved Bottle, and the engine holding it.
struct Opened {
    backend: DockerBackend,
    id: AgentId,
    agent: Agent,
    client: kube::Client,
}

async fn open(target: &Target, arg: &str) -> Result<Opened, CliError> {
    let (client, agent, id) = running_agent(target, arg).await?;
    let backend = DockerBackend::connect(DockerConfig::for_home(&target.home_dir()?, ""))
        .await
        .map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))?;
    Ok(Opened {
        backend,
        id,
        agent,
        client,
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
        return Err(CliError::new(
            Kind::Conflict,
            format!(
                "Agent '{name}' is not running ({phase}{why}); `kubectl describe agent {name}` says more"
            ),
        ));
    }
    let id = bb_controller::reconcile::agent::agent_id(&agent);
    Ok((client, agent, id))
}

async fn resolve(o: &Opened) -> Result<ResolvedBottle, CliError> {
    let bottles: Api<Bottle> = Api::all(o.client.clone());
    let specs: BTreeMap<String, _> = bottles
        .list(&Default::default())
        .await
        .map_err(|e| CliError::api("API", e))?
        .items
        .into_iter()
        .map(|b| (b.name_any(), b.spec))
        .collect();
    bb_crds::resolve::validate_bottle(&o.agent.spec.bottle_ref.name, &specs)
        .map_err(|e| CliError::new(Kind::Validation, e.to_string()))
}

/// The Agent's provider and container plan (its secret env included), as the controller sees it.
async fn plan(
    o: &Opened,
) -> Result<
    (
        Box<dyn bb_controller::provider::Provider>,
        bb_controller::backend::AgentPlan,
    ),
    CliError,
> {
    let bottle = resolve(o).await?;
    let invalid =
        |e: bb_controller::plan::PlanError| CliError::new(Kind::Validation, e.to_string());
    let provider = bb_controller::plan::provider(&bottle).map_err(invalid)?;
    let plan = bb_controller::plan::agent(&o.client, &o.agent, &bottle, provider.as_ref())
        .await
        .map_err(invalid)?;
    Ok((provider, plan))
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

async fn copy_output(mut output: Output) -> Result<(), CliError> {
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    while let Some(chunk) = output.next().await {
        let w = match chunk.map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))? {
            LogOutput::StdErr { message } => err.write_all(&message).await.and(err.flush().await),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                out.write_all(&message).await.and(out.flush().await)
            }
            LogOutput::StdIn { .. } => Ok(()),
        };
        if w.is_err() {
            // The reader went away (a closed pipe): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}

/// Runs one session to its end and returns its exit code (255 when the engine lost it).
async fn run_session(o: &Opened, spec: SessionSpec, pass_stdin: bool) -> Result<u8, CliError> {
    let unavailable =
        |e: bb_controller::backend::BackendError| CliError::new(Kind::Unavailable, e.to_string());
    let mut session = o
        .backend
        .open_session(&o.id, &spec)
        .await
        .map_err(unavailable)?;
    let raw = if spec.tty && std::io::stdin().is_terminal() {
        RawMode::enable()
    } else {
        None
    };
    let mut input = session.input;
    let pump = tokio::spawn(async move {
        if pass_stdin {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if input.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        let _ = input.flush().await;
                    }
                }
            }
        }
        let _ = input.shutdown().await;
    });
    let resize = spec.tty.then(|| {
        let backend = o.backend.clone();
        let exec_id = session.exec_id.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut winch) = signal(SignalKind::window_change()) else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((w, h)) = term_size() {
                    backend.resize_session(&exec_id, w, h).await;
                }
            }
        })
    });
    let output = std::mem::replace(&mut session.output, Box::pin(futures_util::stream::empty()));
    let copied = copy_output(output).await;
    drop(raw);
    pump.abort();
    if let Some(r) = resize {
        r.abort();
    }
    copied?;
    let code = o
        .backend
        .session_exit_code(&session.exec_id)
        .await
        .map_err(unavailable)?;
    Ok(code.map_or(255, |c| u8::try_from(c).unwrap_or(255)))
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
    let o = open(target, agent).await?;
    let (provider, plan) = plan(&o).await?;
    let mut argv = provider.attach_command();
    if argv.is_empty() {
        argv = vec!["/bin/sh".into()];
    }
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
    let spec = SessionSpec {
        argv,
        env: plan.secret_env.into_iter().collect(),
        tty,
        user: Some("1000".into()),
        workdir: plan.workspace.as_ref().map(|_| "/workspace".to_string()),
        size: tty.then(term_size).flatten(),
    };
    run_session(&o, spec, true).await
}

/// `bbctl exec agent/NAME -- CMD...`: exits with the command's exit code.
pub fn exec(args: ExecArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let o = open(&args.target, &args.agent).await?;
        let (_, plan) = plan(&o).await?;
        let tty = args.tty && std::io::stdout().is_terminal();
        let spec = SessionSpec {
            argv: args.command.clone(),
            env: plan.secret_env.into_iter().collect(),
            tty,
            user: Some(args.user.clone()),
            workdir: None,
            size: tty.then(term_size).flatten(),
        };
        run_session(&o, spec, args.stdin).await
    });
    rt.shutdown_background();
    result.map(ExitCode::from)
}

/// `bbctl logs agent/NAME [-c agent|sidecar] [-f] [--egress]`.
pub fn logs(args: LogsArgs) -> Result<ExitCode, CliError> {
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let o = open(&args.target, &args.agent).await?;
        let output = if args.egress {
            o.backend
                .egress_log(&o.id, args.follow)
                .await
                .map_err(|e| CliError::new(Kind::Unavailable, e.to_string()))?
        } else {
            let which = if args.container == "sidecar" {
                Which::Sidecar
            } else {
                Which::Agent
            };
            o.backend
                .container_logs(&o.id, which, args.follow, args.tail)
        };
        copy_output(output).await
    });
    rt.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
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
