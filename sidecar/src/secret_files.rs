//! The secrets directory read once: route credentials, DLP's known secrets and the applied-policy
//! hash all come from the same bytes, so what the sidecar reports is what it enforces.

use std::collections::BTreeMap;
use std::path::Path;

use bb_policy::guarded::GUARDED_SECRETS_FILE;

use crate::needles::Needle;

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

    /// The secrets DLP and git-gate look for: every token and key file (the bottle's own), and
    /// each value of the guarded-secrets file (what the runner found in the files it copied
    /// into the agent). Git-gate's config travels here only to change atomically with the keys
    /// it names. A guarded-secrets file that does not parse is an error: guarding less than the
    /// runner asked for would fail open.
    pub fn needles(&self) -> Result<Vec<Needle>, serde_json::Error> {
        let mut out = Vec::new();
        for (name, value) in &self.0 {
            match name.as_str() {
                bb_policy::file::GIT_GATE_CONFIG_FILE => {}
                GUARDED_SECRETS_FILE => {
                    for s in bb_policy::guarded::from_file(value)? {
                        let origin = s.origin();
                        out.push(Needle {
                            value: s.value,
                            origin: Some(origin.into()),
                        });
                    }
                }
                _ => out.push(Needle::own(value.clone())),
            }
        }
        Ok(out)
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

    #[test]
    fn needles_are_the_token_files_and_each_guarded_secret() {
        let guarded = bb_policy::guarded::to_file(&[bb_policy::guarded::GuardedSecret {
            path: "/workspace/.env".into(),
            line: 2,
            kind: "dotenv".into(),
            value: b"db-password-value".to_vec(),
        }]);
        let files: SecretFiles = [
            ("route-0-token".to_string(), b"tok".to_vec()),
            (GUARDED_SECRETS_FILE.to_string(), guarded),
            (
                bb_policy::file::GIT_GATE_CONFIG_FILE.to_string(),
                b"repos: {}".to_vec(),
            ),
        ]
        .into_iter()
        .collect();
        let needles = files.needles().expect("parses");
        assert_eq!(
            needles,
            vec![
                Needle {
                    value: b"db-password-value".to_vec(),
                    origin: Some("/workspace/.env:2 (dotenv)".into()),
                },
                Needle::own(b"tok".to_vec()),
            ]
        );
        let broken: SecretFiles = [(GUARDED_SECRETS_FILE.to_string(), b"[{".to_vec())]
            .into_iter()
            .collect();
        assert!(broken.needles().is_err(), "fails closed");
    }
}
