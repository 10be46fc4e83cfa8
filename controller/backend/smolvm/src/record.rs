//! What the smolvm backend keeps about each Agent on the host, since smolvm VMs carry no labels:
//! the Agent it belongs to, its loopback alias, and what its VM was made from.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cli;
use bb_backend::{AgentId, BackendError, Step};

/// One Agent's record: `<dir>/<uid>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The loopback address its sidecar's ports are published on, and the only one its VM
    /// may reach.
    pub alias: Ipv4Addr,
    /// The artifact the current VM booted from, and the plan it was made for; `None` until a
    /// VM exists.
    #[serde(default)]
    pub vm: Option<VmMade>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmMade {
    pub artifact: String,
    pub container_hash: String,
}

impl VmRecord {
    pub fn id(&self) -> AgentId {
        AgentId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

fn path(dir: &Path, uid: &str) -> PathBuf {
    // A uid is the API server's: never a path of its own.
    let safe: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    dir.join(format!("{safe}.json"))
}

fn io(e: std::io::Error, what: &Path) -> BackendError {
    BackendError::new(Step::Agent, format!("{}: {e}", what.display()))
}

/// Every record in `dir` (unreadable ones are skipped: they name nothing this backend made).
pub fn all(dir: &Path) -> Result<Vec<VmRecord>, BackendError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e, dir)),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect())
}

pub fn load(dir: &Path, id: &AgentId) -> Option<VmRecord> {
    let bytes = std::fs::read(path(dir, &id.uid)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn save(dir: &Path, record: &VmRecord) -> Result<(), BackendError> {
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    let target = path(dir, &record.uid);
    let tmp = target.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| BackendError::new(Step::Agent, e.to_string()))?;
    std::fs::write(&tmp, bytes).map_err(|e| io(e, &tmp))?;
    std::fs::rename(&tmp, &target).map_err(|e| io(e, &target))
}

pub fn remove(dir: &Path, id: &AgentId) -> Result<(), BackendError> {
    let p = path(dir, &id.uid);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e, &p)),
    }
}

/// The Agent's record, made with a fresh alias (clear of every other Agent's) the first time.
/// Callers serialise: two Agents picking at once could pick the same address.
pub fn load_or_assign(dir: &Path, id: &AgentId) -> Result<VmRecord, BackendError> {
    if let Some(r) = load(dir, id) {
        return Ok(r);
    }
    let taken: BTreeSet<Ipv4Addr> = all(dir)?.into_iter().map(|r| r.alias).collect();
    let alias = cli::loopback_alias(&id.uid, &taken).ok_or_else(|| {
        BackendError::new(
            Step::Sidecar,
            "every loopback address in 127.1.0.0/16 is taken by another bottle",
        )
    })?;
    let record = VmRecord {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        uid: id.uid.clone(),
        alias,
        vm: None,
    };
    save(dir, &record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uid: &str) -> AgentId {
        AgentId {
            namespace: "default".into(),
            name: "a".into(),
            uid: uid.into(),
        }
    }

    #[test]
    fn records_keep_their_alias_and_never_share_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_assign(dir.path(), &id("uid-a")).expect("a");
        assert_eq!(load_or_assign(dir.path(), &id("uid-a")).expect("again"), a);
        // Another Agent whose uid hashes to the same start still gets its own address.
        let mut seen = BTreeSet::from([a.alias]);
        for n in 0..20 {
            let r = load_or_assign(dir.path(), &id(&format!("uid-{n}"))).expect("r");
            assert!(seen.insert(r.alias), "{} reused", r.alias);
        }
        assert_eq!(all(dir.path()).expect("all").len(), 21);
        remove(dir.path(), &id("uid-a")).expect("remove");
        assert!(load(dir.path(), &id("uid-a")).is_none());
        remove(dir.path(), &id("uid-a")).expect("removing twice is fine");
    }

    #[test]
    fn a_uid_cannot_name_a_path_outside_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), "../../etc/passwd");
        assert_eq!(p.parent(), Some(dir.path()));
    }
}
