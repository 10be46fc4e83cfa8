//! Sessions on Apple Container: `container exec` run by the runner, under a pseudo-terminal it
//! owns for TTY sessions (raw bytes both ways, resized through it), plain pipes otherwise.

use super::{AppleBackend, cli};
use bb_backend::health::Check;
use bb_backend::names::Role;
use bb_backend::session::{LogOptions, LogSource, Output, Session};
use bb_backend::sidecar_command::SIDECAR_USER;
use bb_backend::{AgentId, BackendError, SessionSpec, Step};

impl AppleBackend {
    pub(super) async fn open_exec_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
    ) -> Result<Session, BackendError> {
        let name = self.config.runtime.name(id, Role::Agent);
        let env_names: Vec<String> = spec.env.iter().map(|(k, _)| k.clone()).collect();
        let args = cli::exec(
            &name,
            spec.user.as_deref(),
            spec.workdir.as_deref(),
            true,
            spec.tty,
            &env_names,
            &spec.argv,
        );
        bb_backend::cli_session::spawn(
            &self.cli,
            &self.sessions,
            "apple",
            &args,
            &spec.env,
            spec.tty,
            spec.size,
        )
    }

    pub(super) async fn log_stream(
        &self,
        id: &AgentId,
        source: LogSource,
        options: LogOptions,
    ) -> Result<Output, BackendError> {
        let args = match source {
            LogSource::Agent | LogSource::Sidecar => {
                let role = if source == LogSource::Agent {
                    Role::Agent
                } else {
                    Role::Sidecar
                };
                cli::logs(
                    &self.config.runtime.name(id, role),
                    options.follow,
                    options.tail,
                )
            }
            LogSource::Egress => {
                let argv = bb_backend::sidecar_command::audit_log(options.follow, options.tail);
                cli::exec(
                    &self.config.runtime.name(id, Role::Sidecar),
                    Some(SIDECAR_USER),
                    None,
                    false,
                    false,
                    &[],
                    &argv,
                )
            }
        };
        bb_backend::cli_session::stream(&self.cli, &args)
    }

    pub(super) async fn runtime_checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let version = self
            .cli
            .output(Step::Connect, &["--version".to_string()], None)
            .await
            .ok()
            .filter(|o| o.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        checks.push(Check::ok(
            "apple-container",
            format!(
                "{} answers{}; its system service runs",
                self.cli.program().display(),
                if version.is_empty() {
                    String::new()
                } else {
                    format!(" ({version})")
                }
            ),
        ));
        checks.push(Check::ok(
            "resolver",
            format!("sidecars and builds resolve through {}", self.dns().await),
        ));
        checks
    }
}
