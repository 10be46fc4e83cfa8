//! `bbctl`: the bot-bottle command line. Parses arguments, dispatches to one module per verb,
//! and maps failures to the documented exit codes (docs/cli.md).

mod cmd;
mod exit;
mod input;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bbctl",
    version,
    about = "Run coding agents in bottles: declare Bottles and Agents, bbctl drives them",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every bot-bottle CustomResourceDefinition as YAML.
    Crds(cmd::crds::Args),
    /// Convert the reference system's Markdown bottles and agents into Bottle and Agent YAML.
    Convert(cmd::convert::Args),
    /// Check Bottle and Agent manifests without applying them; prints every error at once.
    Validate(cmd::validate::Args),
    /// Walk through the example bottles: validate them and show the resolved policy.
    Demo(cmd::demo::Args),
    /// Create or update Bottles and Agents from manifests (server-side apply).
    Apply(cmd::apply::ApplyArgs),
    /// Show what `apply -f` would change; exits 1 when something differs.
    Diff(cmd::diff::DiffArgs),
    /// List Bottles or Agents, or show one (table, wide, yaml, json or name).
    Get(cmd::get::GetArgs),
    /// Show one Bottle (with its resolved policy) or Agent (with conditions and events).
    Describe(cmd::describe::DescribeArgs),
    /// Delete Bottles or Agents by TYPE NAME or by the manifests that declare them.
    Delete(cmd::apply::DeleteArgs),
    /// Run or manage the local control plane.
    Controller(cmd::controller::Args),
    /// Learn a policy: `policy suggest agent/NAME` prints the routes covering what the Agent's
    /// egress let through in report mode.
    Policy(cmd::policy::Args),
    /// Create an Agent in a Bottle, wait for it, and optionally attach (`--attach --rm`).
    Run(cmd::run::RunArgs),
    /// Open an interactive session running the Agent's provider command; exits with its code.
    Attach(cmd::session::AttachArgs),
    /// Run a command in a running Agent; exits with the command's exit code.
    Exec(cmd::session::ExecArgs),
    /// Print an Agent's container output or its sidecar's egress audit log.
    Logs(cmd::session::LogsArgs),
    /// Stop an Agent, keeping its files (spec.suspend: true).
    Suspend(cmd::apply::SuspendArgs),
    /// Start a suspended Agent again with its files (spec.suspend: false).
    Resume(cmd::apply::SuspendArgs),
    /// Start a new Agent from a copy of a running Agent's files; the source keeps running.
    Fork(cmd::fork::ForkArgs),
    /// Snapshot an Agent's container as an image and record it in status.snapshot.
    Commit(cmd::session::CommitArgs),
    /// A terminal UI over pending Proposals: approve, modify then approve, or reject.
    Supervise(cmd::supervise::SuperviseArgs),
    /// Approve a Proposal (an agent's request for access) with a reason, optionally for a time.
    Approve(cmd::decide::ApproveArgs),
    /// Reject a Proposal with a reason; the agent reads it.
    Reject(cmd::decide::RejectArgs),
    /// Check Docker, gVisor, images, the sidecar binary, the control plane and file modes.
    Doctor(cmd::doctor::DoctorArgs),
    /// Print a shell completion script: `source <(bbctl completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the client version.
    Version,
}

/// Crates whose trace output carries payloads (session streams, headers with credentials):
/// kept at info even under a catch-all `trace`, unless the filter names them itself.
const PAYLOAD_LOGGERS: [&str; 3] = ["tungstenite", "tokio_tungstenite", "h2"];

fn log_filter(spec: Option<&str>, default: &str) -> tracing_subscriber::EnvFilter {
    let mut spec = spec.unwrap_or(default).to_string();
    for target in PAYLOAD_LOGGERS {
        if !spec.split(',').any(|d| d.trim_start().starts_with(target)) {
            spec.push_str(&format!(",{target}=info"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(
            std::env::var("BBCTL_LOG").ok().as_deref(),
            "warn",
        ))
        .with_writer(std::io::stderr)
        // Escapes only for a person: not in controller.log, a pipe or under NO_COLOR.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let cli = Cli::parse();
    let done = |r: Result<(), exit::CliError>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Crds(a) => done(cmd::crds::run(a)),
        Command::Convert(a) => done(cmd::convert::run(a)),
        Command::Validate(a) => done(cmd::validate::run(a)),
        Command::Demo(a) => done(cmd::demo::run(a)),
        Command::Controller(a) => done(cmd::controller::run(a)),
        Command::Apply(a) => done(cmd::apply::apply(a)),
        Command::Get(a) => done(cmd::get::run(a)),
        Command::Diff(a) => cmd::diff::run(a).map(|changed| ExitCode::from(u8::from(changed))),
        Command::Describe(a) => done(cmd::describe::run(a)),
        Command::Doctor(a) => done(cmd::doctor::run(a)),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "bbctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete(a) => done(cmd::apply::delete(a)),
        Command::Run(a) => cmd::run::run(a),
        Command::Attach(a) => cmd::session::attach(a),
        Command::Exec(a) => cmd::session::exec(a),
        Command::Logs(a) => cmd::session::logs(a),
        Command::Commit(a) => cmd::session::commit(a),
        Command::Fork(a) => cmd::fork::fork(a),
        Command::Suspend(a) => done(cmd::apply::set_suspend(a, true)),
        Command::Approve(a) => done(cmd::decide::approve(a)),
        Command::Policy(a) => done(cmd::policy::run(a)),
        Command::Supervise(a) => done(cmd::supervise::run(a)),
        Command::Reject(a) => done(cmd::decide::reject(a)),
        Command::Resume(a) => done(cmd::apply::set_suspend(a, false)),
        Command::Version => {
            println!("bbctl {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e}", progress::error_prefix());
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod log_filter_tests {
    use super::*;

    fn directives(spec: Option<&str>) -> Vec<String> {
        log_filter(spec, "warn")
            .to_string()
            .split(',')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn payload_loggers_stay_at_info_under_a_catch_all_trace() {
        let d = directives(Some("trace"));
        for target in PAYLOAD_LOGGERS {
            assert!(d.contains(&format!("{target}=info")), "{target}: {d:?}");
        }
        // Named explicitly, a crate gets what was asked for.
        let d = directives(Some("trace,tungstenite=trace"));
        assert!(d.contains(&"tungstenite=trace".to_string()), "{d:?}");
        assert!(!d.contains(&"tungstenite=info".to_string()), "{d:?}");
        assert!(directives(None).contains(&"h2=info".to_string()));
    }
}
