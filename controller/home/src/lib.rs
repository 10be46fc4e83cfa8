//! The control plane's home directory: where it is, its permissions, the files it holds, and the
//! lock that keeps a second instance from serving the same state.

pub mod https;
pub mod pki;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another control plane is already running on {home} (pid {pid}); stop it first or pass a different --home"
    )]
    Locked { home: PathBuf, pid: String },
    #[error("cannot find a home directory: set --home or $BOT_BOTTLE_HOME")]
    NoHome,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `--home`, else `$BOT_BOTTLE_HOME`, else `~/.bot-bottle`.
pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf, HomeError> {
    if let Some(p) = flag {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("BOT_BOTTLE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".bot-bottle"))
        .ok_or(HomeError::NoHome)
}

/// A home directory created 0700 and locked for this process.
#[derive(Debug)]
pub struct Home {
    pub dir: PathBuf,
    // Held for the life of the process: the OS releases the lock when it exits, even on kill -9.
    _lock: File,
}

impl Home {
    pub fn open(dir: &Path) -> Result<Home, HomeError> {
        if dir.exists() {
            // Never chmod a directory we did not create (`--home /tmp` must not lock others
            // out of /tmp); the secrets inside are 0600 files either way.
            let mode = std::fs::metadata(dir)
                .map_err(io(dir))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(home = %dir.display(), mode = format!("{:o}", mode & 0o777), "the home directory is accessible to other users; chmod 700 it");
            }
        } else {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(dir))?;
        }
        let lock_path = dir.join("controller.lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            let pid = std::fs::read_to_string(&lock_path)
                .unwrap_or_default()
                .trim()
                .to_string();
            return Err(HomeError::Locked {
                home: dir.to_path_buf(),
                pid: if pid.is_empty() {
                    "unknown".into()
                } else {
                    pid
                },
            });
        }
        lock.set_len(0).map_err(io(&lock_path))?;
        write!(lock, "{}", std::process::id()).map_err(io(&lock_path))?;
        Ok(Home {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Writes `contents` to `path` with `mode`, atomically (temp file + rename).
pub fn write_private(path: &Path, contents: &[u8], mode: u32) -> Result<(), HomeError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&tmp))?;
        f.write_all(contents).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_directory_keeps_its_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let _home = Home::open(dir.path()).expect("open");
        let mode = std::fs::metadata(dir.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755, "a directory the user chose is not chmodded");
    }

    #[test]
    fn second_instance_is_refused_and_home_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("h");
        let first = Home::open(&home).expect("first");
        let mode = std::fs::metadata(&home).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let err = Home::open(&home).expect_err("second must fail");
        assert!(
            err.to_string()
                .contains("another control plane is already running"),
            "{err}"
        );
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        drop(first);
        Home::open(&home).expect("free again once the first is gone");
    }
}
