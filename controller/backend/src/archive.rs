//! Tar archives built in memory: how files reach a container on every runtime (an exec's
//! stdin, an upload, a `cp` of one file), with explicit modes and owners.

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
        walk_tree(src, prefix, include_git, |entry| match entry {
            TreeEntry::Dir { at, mode } => self.dir(&at, mode, uid),
            TreeEntry::Symlink { at, target } => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777, uid);
                self.inner.append_link(&mut h, &at, target)
            }
            TreeEntry::File {
                at,
                path,
                len,
                mode,
            } => {
                let f = std::fs::File::open(&path)?;
                let mut h = header(tar::EntryType::Regular, len, mode, uid);
                self.inner.append_data(&mut h, &at, f)
            }
        })
    }

    pub fn finish(self) -> std::io::Result<Vec<u8>> {
        self.inner.into_inner()
    }
}

/// One entry of a host tree as provisioning copies it; `at` is where it lands (under the prefix).
#[derive(Debug)]
pub enum TreeEntry {
    Dir {
        at: String,
        mode: u32,
    },
    Symlink {
        at: String,
        target: std::path::PathBuf,
    },
    File {
        at: String,
        path: std::path::PathBuf,
        len: u64,
        mode: u32,
    },
}

/// Walks a host directory the way provisioning copies it: `.git` skipped unless asked, symlinks
/// kept as links and never followed (a workspace must not pull in files from outside itself),
/// other special files left out. Discovery walks the same way, so it reads exactly what is copied.
pub fn walk_tree(
    src: &std::path::Path,
    prefix: &str,
    include_git: bool,
    mut visit: impl FnMut(TreeEntry) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![(src.to_path_buf(), prefix.to_string())];
    while let Some((dir, at)) = stack.pop() {
        let mode = std::fs::metadata(&dir).map(|m| m.permissions().mode())?;
        visit(TreeEntry::Dir {
            at: at.clone(),
            mode: mode & 0o7777,
        })?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == ".git" && !include_git {
                continue;
            }
            let path = entry.path();
            let inner = format!("{at}/{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                visit(TreeEntry::Symlink { at: inner, target })?;
            } else if meta.is_dir() {
                stack.push((path, inner));
            } else if meta.is_file() {
                visit(TreeEntry::File {
                    at: inner,
                    path,
                    len: meta.len(),
                    mode,
                })?;
            }
        }
    }
    Ok(())
}

/// The contents of the first regular file in a tar archive (what the engine's archive API gives
/// for one file); `None` when there is none or the archive is not one.
pub fn first_file(archive: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.header().entry_type().is_file() {
            let mut out = Vec::new();
            entry.read_to_end(&mut out).ok()?;
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod first_file_tests {
    use super::*;

    #[test]
    fn reads_the_one_file_of_an_archive() {
        let mut tar = TarBuilder::default();
        tar.dir("etc", 0o755, 0).expect("dir");
        tar.file("etc/marker", b"abc\n", 0o644, 0).expect("file");
        let bytes = tar.finish().expect("finish");
        assert_eq!(first_file(&bytes).as_deref(), Some(&b"abc\n"[..]));
        assert_eq!(first_file(b"not a tar"), None);
    }
}
