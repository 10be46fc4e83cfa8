//! Interactive and one-shot sessions in an Agent's containers (`bbctl attach`, `exec`, `logs`):
//! streams in and out, TTY resize, and the session's own exit code.

use crate::backend::Step;
use std::pin::Pin;

pub use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::Stream;
use tokio::io::AsyncWrite;

use super::names::{self, Role};
use super::{DockerBackend, SIDECAR_BINARY, SIDECAR_RUN};
use crate::backend::{AgentId, BackendError, SecretBytes};

pub type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A running exec: write to `input`, read `output`, then ask for the exit code.
pub struct Session {
    pub exec_id: String,
    pub output: Output,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("exec_id", &self.exec_id)
            .finish_non_exhaustive()
    }
}

/// What a session runs and how.
#[derive(Debug, Clone, Default)]
pub struct SessionSpec {
    pub argv: Vec<String>,
    /// The Agent's secret env (`valueFrom`): given to this process only, never to the
    /// container's configuration.
    pub env: Vec<(String, SecretBytes)>,
    pub tty: bool,
    /// `uid[:gid]`; `None` runs as the image's user.
    pub user: Option<String>,
    pub workdir: Option<String>,
    /// Initial TTY size (columns, rows).
    pub size: Option<(u16, u16)>,
}

/// Which container of an Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Agent,
    Sidecar,
}

fn container(id: &AgentId, which: Which) -> String {
    names::name(
        id,
        match which {
            Which::Agent => Role::Agent,
            Which::Sidecar => Role::Sidecar,
        },
    )
}

fn err(e: bollard::errors::Error) -> BackendError {
    BackendError::new(Step::Session, e.to_string())
}

impl DockerBackend {
    /// Starts `spec` in the Agent's container.
    pub async fn open_session(
        &self,
        id: &AgentId,
        spec: &SessionSpec,
    ) -> Result<Session, BackendError> {
        let name = container(id, Which::Agent);
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
                    self.resize_session(&exec.id, w, h).await;
                }
                Ok(Session {
                    exec_id: exec.id,
                    output,
                    input,
                })
            }
            StartExecResults::Detached => Err(BackendError::new(
                Step::Session,
                "the engine started the session detached",
            )),
        }
    }

    pub async fn resize_session(&self, exec_id: &str, width: u16, height: u16) {
        let _ = self
            .docker
            .resize_exec(exec_id, bollard::exec::ResizeExecOptions { width, height })
            .await;
    }

    /// The exit code of a finished session (`None` if the engine does not know it).
    pub async fn session_exit_code(&self, exec_id: &str) -> Result<Option<i64>, BackendError> {
        Ok(self
            .docker
            .inspect_exec(exec_id)
            .await
            .map_err(err)?
            .exit_code)
    }

    /// A container's output, optionally following it.
    pub fn container_logs(
        &self,
        id: &AgentId,
        which: Which,
        follow: bool,
        tail: Option<u64>,
    ) -> Output {
        Box::pin(self.docker.logs(
            &container(id, which),
            Some(bollard::query_parameters::LogsOptions {
                follow,
                stdout: true,
                stderr: true,
                tail: tail.map_or_else(|| "all".to_string(), |n| n.to_string()),
                ..Default::default()
            }),
        ))
    }

    /// The sidecar's audit log (JSON lines), optionally following it.
    pub async fn egress_log(&self, id: &AgentId, follow: bool) -> Result<Output, BackendError> {
        let mut argv: Vec<String> = vec![
            SIDECAR_BINARY.into(),
            "audit-log".into(),
            "--file".into(),
            format!("{SIDECAR_RUN}/audit.log"),
        ];
        if follow {
            argv.push("--follow".into());
        }
        let name = container(id, Which::Sidecar);
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
            StartExecResults::Attached { output, .. } => Ok(output),
            StartExecResults::Detached => Err(BackendError::new(
                Step::Session,
                "the engine started the session detached",
            )),
        }
    }
}
