//! Each Agent's own certificate authority: the sidecar signs its TLS-bump leaves with the key,
//! the agent trusts the certificate. Kept per Agent so one bottle's CA opens no other bottle.

use crate::Step;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use super::BackendError;
use bb_home::write_private;

/// The CA certificate (for the agent) and key (for the sidecar only), PEM.
#[derive(Clone)]
pub struct BottleCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BottleCa").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError::new(Step::Sidecar, format!("bottle CA: {e}"))
}

/// Loads the CA kept in `dir`, creating it (0600 key) on first use.
pub fn load_or_create(dir: &Path, agent: &str) -> Result<BottleCa, BackendError> {
    let cert_path = dir.join("ca.crt");
    let key_path = dir.join("ca.key");
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok(BottleCa { cert_pem, key_pem });
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("bot-bottle CA for {agent}"));
    dn.push(DnType::OrganizationName, "bot-bottle");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    p.not_before = rcgen::date_time_ymd(i32::from(now.year()) - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(i32::from(now.year()) + 10, 1, 1);
    let key = KeyPair::generate().map_err(err)?;
    let cert = p.self_signed(&key).map_err(err)?;
    let ca = BottleCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    write_private(&key_path, ca.key_pem.as_bytes(), 0o600).map_err(err)?;
    write_private(&cert_path, ca.cert_pem.as_bytes(), 0o644).map_err(err)?;
    Ok(ca)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_reused_with_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create(dir.path(), "ns/a").expect("create");
        let b = load_or_create(dir.path(), "ns/a").expect("load");
        assert_eq!(a.cert_pem, b.cert_pem);
        assert!(a.cert_pem.contains("BEGIN CERTIFICATE"));
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
