//! Sessions in an Agent's Docker containers (what the runner serves for `bbctl attach`, `exec`,
//! `logs`): engine execs with their streams, TTY resize, exit codes and container logs.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};

use super::DockerBackend;
use super::names::Role;
use bb_backend::session::{Chunk, LogOptions, LogSource, Output, OutputStream, Session};
use bb_backend::{AgentId, BackendError, SessionSpec, Step};

fn err(e: bollard::errors::Error) -> BackendError {
    BackendError::new(Step::Session, e.to_string())
}

/// The engine's multiplexed output as runtime-neutral chunks (stdin echoes dropped).
fn chunks(
    output: impl Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
) -> Output {
    Box::pin(output.filter_map(|item| async move {
        match item {
            Ok(LogOutput::StdErr { message }) => Some(Ok(Chunk {
                stream: OutputStream::Stderr,
                data: message,
            })),
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(Chunk {
                stream: OutputStream::Stdout,
                data: message,
            })),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(e) => Some(Err(err(e))),
        }
    }))
}

impl DockerBackend {
    pub(super) async fn open_exec_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
    ) -> Result<Session, BackendError> {
        let name = self.config.name(id, Role::Agent);
        let env = spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v.expose())))
            .collect::<Vec<_>>();
        let exec = self
            .docker
            .create_exec(
                &name,
                CreateExecOptions {
                    cmd: Some(spec.argv.clone()),
                    env: (!env.is_empty()).then_some(env),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(spec.tty),
                    user: spec.user.clone(),
                    working_dir: spec.workdir.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| BackendError::new(Step::Session, format!("{name}: {e}")))?;
        match self
            .docker
            .start_exec(
                &exec.id,
                Some(bollard::exec::StartExecOptions {
                    tty: spec.tty,
                    ..Default::default()
                }),
            )
            .await
            .map_err(err)?
        {
            StartExecResults::Attached { output, input } => {
                if let Some((w, h)) = spec.size {
                    self.resize_exec(&exec.id, w, h).await;
                }
                Ok(Session {
                    handle: exec.id,
                    output: chunks(output),
                    input,
                })
            }
            StartExecResults::Detached => Err(BackendError::new(
                Step::Session,
                "the engine started the session detached",
            )),
        }
    }

    pub(super) async fn resize_exec(&self, exec_id: &str, width: u16, height: u16) {
        let _ = self
            .docker
            .resize_exec(exec_id, bollard::exec::ResizeExecOptions { width, height })
            .await;
    }

    pub(super) async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, BackendError> {
        Ok(self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(err)?
            .exit_code)
    }

    pub(super) async fn log_stream(
        &self,
        id: &AgentId,
        source: LogSource,
        options: LogOptions,
    ) -> Result<Output, BackendError> {
        let container = |role| self.config.name(id, role);
        match source {
            LogSource::Agent | LogSource::Sidecar => {
                let name = container(if source == LogSource::Agent {
                    Role::Agent
                } else {
                    Role::Sidecar
                });
                Ok(chunks(
                    self.docker.logs(
                        &name,
                        Some(bollard::query_parameters::LogsOptions {
                            follow: options.follow,
                            stdout: true,
                            stderr: true,
                            tail: options
                                .tail
                                .map_or_else(|| "all".to_string(), |n| n.to_string()),
                            ..Default::default()
                        }),
                    ),
                ))
            }
            LogSource::Egress => {
                let argv = bb_backend::sidecar_command::audit_log(options.follow, options.tail);
                let name = container(Role::Sidecar);
                let exec = self
                    .docker
                    .create_exec(
                        &name,
                        CreateExecOptions {
                            cmd: Some(argv),
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| BackendError::new(Step::Session, format!("{name}: {e}")))?;
                match self.docker.start_exec(&exec.id, None).await.map_err(err)? {
                    StartExecResults::Attached { output, .. } => Ok(chunks(output)),
                    StartExecResults::Detached => Err(BackendError::new(
                        Step::Session,
                        "the engine started the session detached",
                    )),
                }
            }
        }
    }
}
