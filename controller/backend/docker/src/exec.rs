//! Running a command inside a container through the Engine API: argv only (never a shell
//! string built from user input), optional stdin, collected output and the exit code.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

pub use bb_backend::output::ExecOutput;

/// Runs `argv` in `container` as `user` (root when `None`), feeding `stdin` when given. The
/// stdin channel is how secrets reach a container: they never appear in an argv or in env.
pub async fn run(
    docker: &Docker,
    container: &str,
    argv: &[&str],
    user: Option<&str>,
    stdin: Option<&[u8]>,
) -> Result<ExecOutput, bollard::errors::Error> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.iter().map(|s| s.to_string()).collect()),
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                user: Some(user.unwrap_or("0:0").to_string()),
                ..Default::default()
            },
        )
        .await?;
    let mut out = ExecOutput::default();
    if let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker.start_exec(&exec.id, None).await?
    {
        if let Some(data) = stdin {
            input.write_all(data).await?;
            input.flush().await?;
            // Half-close so the command sees end of input.
            input.shutdown().await?;
        }
        while let Some(chunk) = output.next().await {
            match chunk? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    out.stdout.extend_from_slice(&message)
                }
                LogOutput::StdErr { message } => out.stderr.extend_from_slice(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
    }
    out.exit_code = docker.inspect_exec(&exec.id).await?.exit_code;
    Ok(out)
}
