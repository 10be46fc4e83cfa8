//! The secrets directory read once: route credentials, DLP's known secrets and the applied-policy
//! hash all come from the same bytes, so what the sidecar reports is what it enforces.

use std::collections::BTreeMap;
use std::path::Path;

/// Every regular file of a secrets directory, by name.
#[derive(Debug, Default, Clone)]
pub struct SecretFiles(BTreeMap<String, Vec<u8>>);

impl SecretFiles {
    /// Reads `dir`; a missing directory is an error (its deliverer writes it before the policy).
    pub fn read(dir: &Path) -> std::io::Result<SecretFiles> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // file_type does not follow links: a link planted in the directory is not a secret.
            if !entry.file_type()?.is_file() {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            files.insert(name, std::fs::read(entry.path())?);
        }
        Ok(SecretFiles(files))
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Name and bytes of each file, in name order (the order the applied-policy hash uses).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The secret values DLP looks for: every file but git-gate's config, which travels here
    /// only to change atomically with the keys it names.
    pub fn values(&self) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter(|(name, _)| name.as_str() != bb_policy::file::GIT_GATE_CONFIG_FILE)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl FromIterator<(String, Vec<u8>)> for SecretFiles {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        SecretFiles(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("b"), b"two").expect("write");
        std::fs::write(dir.path().join("a"), b"one").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).expect("link");
        let files = SecretFiles::read(dir.path()).expect("read");
        let seen: Vec<_> = files.iter().collect();
        assert_eq!(seen, vec![("a", &b"one"[..]), ("b", &b"two"[..])]);
        assert!(SecretFiles::read(&dir.path().join("missing")).is_err());
    }
}
