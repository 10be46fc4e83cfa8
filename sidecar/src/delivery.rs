//! What the controller hands a running sidecar: one tar on stdin (CA, upstream CA, token files,
//! policy), installed so the policy watcher never sees half of it. The image has no shell or tar.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A delivery may not exceed what the sidecar's tmpfs holds.
pub const MAX_DELIVERY: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("reading the delivery: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "unexpected entry {0:?}: a delivery holds ca.crt, ca.key, upstream-ca.crt, secrets/NAME and policy.yaml"
    )]
    Entry(String),
    #[error("the delivery is larger than {MAX_DELIVERY} bytes")]
    TooLarge,
    #[error("the delivery has no policy.yaml")]
    NoPolicy,
}

/// One file of a delivery, by where it goes.
#[derive(Debug, PartialEq, Eq)]
enum Slot {
    /// ca.crt, ca.key, upstream-ca.crt: replaced one by one.
    Top(&'static str),
    /// A token file: the whole set replaces the old set.
    Secret(String),
    Policy,
}

fn slot(path: &str) -> Option<Slot> {
    let path = path.strip_prefix("./").unwrap_or(path);
    for top in ["ca.crt", "ca.key", "upstream-ca.crt"] {
        if path == top {
            return Some(Slot::Top(top));
        }
    }
    if path == "policy.yaml" {
        return Some(Slot::Policy);
    }
    let name = path.strip_prefix("secrets/")?;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    plain.then(|| Slot::Secret(name.to_string()))
}

/// Reads a delivery from `input` and installs it under `dir`: top-level files first, then the
/// token directory swapped whole (a token of a removed route must not linger: the applied hash
/// covers every file there), then `policy.yaml` renamed into place, which is what the running
/// proxy reloads on. Nothing is changed when the delivery is malformed.
pub fn receive(input: impl Read, dir: &Path) -> Result<(), DeliveryError> {
    let mut archive = tar::Archive::new(input.take(MAX_DELIVERY + 1));
    let mut files = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(DeliveryError::Read)? {
        let mut entry = entry.map_err(DeliveryError::Read)?;
        let path = entry
            .path()
            .map_err(DeliveryError::Read)?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular => {}
            tar::EntryType::Directory if path.trim_end_matches('/') == "secrets" => continue,
            _ => return Err(DeliveryError::Entry(path)),
        }
        let slot = slot(&path).ok_or_else(|| DeliveryError::Entry(path.clone()))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(DeliveryError::Read)?;
        total += bytes.len() as u64;
        if total > MAX_DELIVERY {
            return Err(DeliveryError::TooLarge);
        }
        files.push((slot, bytes));
    }
    let policy_at = files
        .iter()
        .position(|(s, _)| *s == Slot::Policy)
        .ok_or(DeliveryError::NoPolicy)?;
    let (_, policy) = files.remove(policy_at);

    let staged = dir.join("secrets.next");
    let old = dir.join("secrets.old");
    remove_dir(&staged)?;
    remove_dir(&old)?;
    create_dir(&staged)?;
    for (slot, bytes) in &files {
        match slot {
            Slot::Top(name) => write_replace(&dir.join(name), bytes)?,
            Slot::Secret(name) => write_new(&staged.join(name), bytes)?,
            Slot::Policy => {}
        }
    }
    let live = dir.join("secrets");
    if live.exists() {
        rename(&live, &old)?;
    }
    rename(&staged, &live)?;
    remove_dir(&old)?;
    write_replace(&dir.join("policy.yaml"), &policy)
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> DeliveryError + '_ {
    move |source| DeliveryError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn remove_dir(path: &Path) -> Result<(), DeliveryError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_at(path)(e)),
        _ => Ok(()),
    }
}

fn create_dir(path: &Path) -> Result<(), DeliveryError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io_at(path))
}

fn rename(from: &Path, to: &Path) -> Result<(), DeliveryError> {
    std::fs::rename(from, to).map_err(io_at(to))
}

/// A new 0600 file (never through an existing link).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io_at(path))
}

/// Writes beside `path`, then renames over it: a reader sees the old file or the new one.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), DeliveryError> {
    let tmp = path.with_extension("incoming");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, bytes)?;
    rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            // Raw name bytes: the builder itself refuses `..`, a hostile archive would not.
            let name = &mut h.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *bytes).expect("append");
        }
        b.into_inner().expect("finish")
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn installs_and_replaces_the_token_set_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = tar_of(&[
            ("ca.crt", b"cert"),
            ("ca.key", b"key"),
            ("secrets/route-0-token", b"a"),
            ("secrets/route-1-token", b"b"),
            ("policy.yaml", b"routes: []"),
        ]);
        receive(&first[..], dir.path()).expect("first");
        assert_eq!(
            names(&dir.path().join("secrets")),
            ["route-0-token", "route-1-token"]
        );
        let second = tar_of(&[
            ("secrets/route-0-token", b"rotated"),
            ("policy.yaml", b"routes: [x]"),
        ]);
        receive(&second[..], dir.path()).expect("second");
        assert_eq!(names(&dir.path().join("secrets")), ["route-0-token"]);
        let read = |p: &str| std::fs::read(dir.path().join(p)).expect("read");
        assert_eq!(read("secrets/route-0-token"), b"rotated");
        assert_eq!(read("policy.yaml"), b"routes: [x]");
        assert_eq!(read("ca.key"), b"key", "the CA stays when not resent");
        assert_eq!(
            names(dir.path()),
            ["ca.crt", "ca.key", "policy.yaml", "secrets"]
        );
    }

    #[test]
    fn refuses_strange_entries_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, why) in [
            ("../escape", "parent"),
            ("secrets/../ca.key", "dots"),
            ("secrets/.hidden", "hidden"),
            ("bin/sh", "elsewhere"),
        ] {
            let t = tar_of(&[(path, b"x"), ("policy.yaml", b"p")]);
            let e = receive(&t[..], dir.path());
            assert!(
                matches!(
                    e,
                    Err(DeliveryError::Entry(_)) | Err(DeliveryError::Read(_))
                ),
                "{why}: {e:?}"
            );
        }
        let no_policy = tar_of(&[("ca.crt", b"x")]);
        assert!(matches!(
            receive(&no_policy[..], dir.path()),
            Err(DeliveryError::NoPolicy)
        ));
        assert!(names(dir.path()).is_empty());
    }
}
