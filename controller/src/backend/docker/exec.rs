//! Running a command inside a container through the Engine API: argv only (never a shell
//! string built from user input), optional stdin, collected output and the exit code.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// What an exec printed and how it ended.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i64>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// The last lines of stderr (or stdout), for an error message.
    pub fn tail(&self) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

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

/// A tar archive built in memory: files with explicit modes and owners.
pub struct TarBuilder {
    inner: tar::Builder<Vec<u8>>,
}

impl std::fmt::Debug for TarBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarBuilder").finish_non_exhaustive()
    }
}

impl Default for TarBuilder {
    fn default() -> Self {
        TarBuilder {
            inner: tar::Builder::new(Vec::new()),
        }
    }
}

fn header(kind: tar::EntryType, size: u64, mode: u32, uid: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h
}

impl TarBuilder {
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64) -> std::io::Result<()> {
        let mut h = header(tar::EntryType::Regular, data.len() as u64, mode, uid);
        self.inner.append_data(&mut h, path, data)
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u64) -> std::io::Result<()> {
        let mut h = header(tar::EntryType::Directory, 0, mode, uid);
        self.inner.append_data(&mut h, path, std::io::empty())
    }

    /// Adds a host directory's tree under `prefix`, owned by `uid`, skipping `.git` unless asked.
    pub fn host_tree(
        &mut self,
        src: &std::path::Path,
        prefix: &str,
        uid: u64,
        include_git: bool,
    ) -> std::io::Result<()> {
        let mut stack = vec![(src.to_path_buf(), prefix.to_string())];
        while let Some((dir, at)) = stack.pop() {
            let mode = std::fs::metadata(&dir)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()))?;
            self.dir(&at, mode & 0o7777, uid)?;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if name == ".git" && !include_git {
                    continue;
                }
                let path = entry.path();
                let inner = format!("{at}/{}", name.to_string_lossy());
                // Symlinks are kept as links, never followed: a workspace must not pull in
                // files from outside itself.
                let meta = std::fs::symlink_metadata(&path)?;
                let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    let mut h = header(tar::EntryType::Symlink, 0, 0o777, uid);
                    self.inner.append_link(&mut h, &inner, target)?;
                } else if meta.is_dir() {
                    stack.push((path, inner));
                } else if meta.is_file() {
                    let f = std::fs::File::open(&path)?;
                    let mut h = header(tar::EntryType::Regular, meta.len(), mode, uid);
                    self.inner.append_data(&mut h, &inner, f)?;
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        self.inner.into_inner()
    }
}
