//! Runs a runtime's CLI (Apple's `container`, `smolvm`): secret values only in the child's
//! environment, stdin fed, output collected, a deadline on every call, retries after a start.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{BackendError, ExecOutput, SecretBytes, Step};

/// Most commands answer in well under this; a hung CLI must not hang a reconcile forever.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Builds and snapshots move whole images.
pub const BUILD_DEADLINE: Duration = Duration::from_secs(1800);
/// A VM just started may not take an `exec` or `cp` for a moment (it is still booting): that
/// many attempts, this far apart.
const RETRY_ATTEMPTS: u32 = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// The executable a backend drives, and what to tell a user who does not have it.
#[derive(Debug, Clone)]
pub struct RuntimeCli {
    program: PathBuf,
    install_hint: &'static str,
}

impl RuntimeCli {
    /// `install_hint` finishes "PROGRAM not found: ...".
    pub fn new(program: impl Into<PathBuf>, install_hint: &'static str) -> RuntimeCli {
        RuntimeCli {
            program: program.into(),
            install_hint,
        }
    }

    /// The program's file name, as error messages quote commands.
    fn short_name(&self) -> String {
        self.program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.program.display().to_string())
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// A command for `args` whose secret values travel in its environment only.
    pub fn command(
        &self,
        args: &[String],
        env: &[(String, SecretBytes)],
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(args).kill_on_drop(true);
        for (k, v) in env {
            c.env(k, OsStr::from_bytes(v.expose()));
        }
        c
    }

    /// Runs `args` to completion, feeding `stdin` when given.
    pub async fn run(
        &self,
        args: &[String],
        stdin: Option<&[u8]>,
        env: &[(String, SecretBytes)],
        deadline: Duration,
    ) -> Result<ExecOutput, std::io::Error> {
        let mut c = self.command(args, env);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Fed beside the output being read, so a command that writes much before it has
            // read everything cannot deadlock on full pipes. One that exits without reading
            // all of it is reported by its exit code, not as a broken pipe here.
            let data = data.to_vec();
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
            });
        }
        let out = tokio::time::timeout(deadline, child.wait_with_output())
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", deadline.as_secs()),
                )
            })??;
        Ok(ExecOutput {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.status.code().map(i64::from),
        })
    }

    /// `run` with the default deadline, mapping a failure to start into `step`'s error.
    pub async fn output(
        &self,
        step: Step,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, BackendError> {
        self.run(args, stdin, &[], DEFAULT_DEADLINE)
            .await
            .map_err(|e| self.spawn_error(step, args, e))
    }

    /// `output` for a command that moves whole images (a build, a pull, a pack): the long
    /// deadline.
    pub async fn output_slow(
        &self,
        step: Step,
        args: &[String],
    ) -> Result<ExecOutput, BackendError> {
        self.run(args, None, &[], BUILD_DEADLINE)
            .await
            .map_err(|e| self.spawn_error(step, args, e))
    }

    /// `output`, where a non-zero exit is an error carrying the command's last lines.
    pub async fn ok(
        &self,
        step: Step,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, BackendError> {
        let out = self.output(step, args, stdin).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(step, args, &out))
        }
    }

    /// `ok`, retried while a just-started VM does not take execs or copies yet. Only for
    /// commands that are safe to repeat.
    pub async fn ok_after_run(
        &self,
        step: Step,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, BackendError> {
        let mut attempt = 1;
        loop {
            match self.ok(step, args, stdin).await {
                Ok(out) => return Ok(out),
                Err(e) if attempt < RETRY_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "not ready yet; retrying");
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn failed(&self, step: Step, args: &[String], out: &ExecOutput) -> BackendError {
        BackendError::new(
            step,
            format!(
                "`{} {}` failed (exit {}): {}",
                self.short_name(),
                shown(args),
                out.exit_code
                    .map_or_else(|| "by signal".to_string(), |c| c.to_string()),
                out.tail()
            ),
        )
    }

    pub fn spawn_error(&self, step: Step, args: &[String], e: std::io::Error) -> BackendError {
        if e.kind() == std::io::ErrorKind::NotFound {
            return BackendError::new(
                Step::Connect,
                format!(
                    "{} not found: {}",
                    self.program.display(),
                    self.install_hint
                ),
            );
        }
        BackendError::new(
            step,
            format!("`{} {}`: {e}", self.short_name(), shown(args)),
        )
    }
}

/// The subcommand for an error message: its words up to the first flag or name it was given.
fn shown(args: &[String]) -> String {
    args.iter()
        .take_while(|a| !a.starts_with('-'))
        .take(2)
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[tokio::test]
    async fn secrets_travel_in_the_environment_and_stdin_is_fed() {
        let sh = RuntimeCli::new("/bin/sh", "install a shell");
        let out = sh
            .run(
                &s(&["-c", "printf '%s|' \"$TOKEN\"; cat"]),
                Some(b"from stdin"),
                &[("TOKEN".into(), SecretBytes::new(b"s3cret".to_vec()))],
                DEFAULT_DEADLINE,
            )
            .await
            .expect("runs");
        assert_eq!(out.stdout, b"s3cret|from stdin");
        assert!(out.success());
    }

    #[tokio::test]
    async fn failures_name_the_command_and_a_missing_cli_says_how_to_install() {
        let sh = RuntimeCli::new("/bin/sh", "install a shell");
        let e = sh
            .ok(Step::Agent, &s(&["-c", "echo nope >&2; exit 3"]), None)
            .await
            .expect_err("fails");
        assert!(
            e.message.contains("exit 3") && e.message.contains("nope"),
            "{e}"
        );
        let missing = RuntimeCli::new("/nonexistent/container", "or pass --container-cli");
        let e = missing
            .ok(Step::Agent, &s(&["list"]), None)
            .await
            .expect_err("missing");
        assert_eq!(e.step, Step::Connect);
        assert!(e.message.contains("--container-cli"), "{e}");
    }

    #[tokio::test]
    async fn a_command_that_talks_before_it_listens_does_not_deadlock() {
        let sh = RuntimeCli::new("/bin/sh", "install a shell");
        let big = vec![b'x'; 1 << 20];
        let out = sh
            .run(
                &s(&["-c", "head -c 1048576 /dev/zero; cat >/dev/null"]),
                Some(&big),
                &[],
                Duration::from_secs(20),
            )
            .await
            .expect("runs");
        assert_eq!(out.stdout.len(), 1 << 20);
        assert!(out.success());
    }

    #[tokio::test]
    async fn a_hung_cli_meets_its_deadline() {
        let sh = RuntimeCli::new("/bin/sh", "install a shell");
        let e = sh
            .run(
                &s(&["-c", "sleep 30"]),
                None,
                &[],
                Duration::from_millis(200),
            )
            .await
            .expect_err("deadline");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[test]
    fn error_messages_show_the_subcommand_only() {
        assert_eq!(
            shown(&s(&["network", "create", "--label", "a=b", "n"])),
            "network create"
        );
        assert_eq!(shown(&s(&["exec", "--user", "root", "n", "sh"])), "exec");
    }
}
