//! The control plane's credentials: a CA and serving certificate (rcgen), the bearer token, and
//! the kubeconfig that hands both to clients. Kept in the home directory, private to the user.

use std::path::Path;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::{Home, HomeError, write_private};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Home(#[from] HomeError),
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("generating certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("reading randomness: {0}")]
    Random(String),
}

/// What the server needs to serve TLS and check tokens.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub token: String,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bot-bottle local control plane CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed dates: the issuer is re-derived on every start and must keep the same validity.
    p.not_before = rcgen::date_time_ymd(2025, 1, 1);
    p.not_after = rcgen::date_time_ymd(2125, 1, 1);
    p
}

/// Sets the certificate's validity to run from `from_days` to `to_days` relative to today (UTC).
fn set_validity(p: &mut CertificateParams, from_days: i64, to_days: i64) {
    let ymd = |days: i64| {
        let d = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_hours(24 * days))
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        (i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    let (y, m, d) = ymd(from_days);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(to_days);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Read(path.display().to_string(), e)),
    }
}

/// Loads the CA and token from `home`, creating them on first start, and issues a fresh serving
/// certificate for the loopback names.
pub fn load_or_create(home: &Home) -> Result<Credentials, PkiError> {
    load_or_create_for(home, None)
}

/// `load_or_create`, with the serving certificate also valid for `listen` when it is a specific
/// address beyond loopback (`--listen 10.0.0.5:7443`): clients reach it by that address.
pub fn load_or_create_for(
    home: &Home,
    listen: Option<std::net::IpAddr>,
) -> Result<Credentials, PkiError> {
    let (ca_key_path, ca_cert_path, token_path) =
        (home.path("ca.key"), home.path("ca.crt"), home.path("token"));
    let (ca_key, ca_pem) = match (read(&ca_key_path)?, read(&ca_cert_path)?) {
        (Some(k), Some(c)) => (KeyPair::from_pem(&k)?, c),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_private(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
            (key, cert.pem())
        }
    };
    // The issuer only needs the CA's name and key; both are stable, so re-deriving it signs
    // certificates that chain to the stored CA certificate.
    let issuer = ca_params().self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Some(ip) = listen.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
        names.push(ip.to_string());
    }
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bot-bottle apiserver");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, -1, 365);
    let server = params.signed_by(&server_key, &issuer, &ca_key)?;

    let token = match read(&token_path)? {
        Some(t) if t.trim().len() >= 32 => t.trim().to_string(),
        _ => {
            let t = random_hex(32)?;
            write_private(&token_path, t.as_bytes(), 0o600)?;
            t
        }
    };
    Ok(Credentials {
        ca_pem,
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        token,
    })
}

pub fn random_hex(bytes: usize) -> Result<String, PkiError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|e| PkiError::Random(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The kubeconfig (context `bot-bottle`) for a server at `server_url`.
pub fn kubeconfig(creds: &Credentials, server_url: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(creds.ca_pem.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: bot-bottle
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: bot-bottle
  user:
    token: {token}
contexts:
- name: bot-bottle
  context:
    cluster: bot-bottle
    user: bot-bottle
    namespace: default
current-context: bot-bottle
",
        token = creds.token
    )
}

/// Writes the kubeconfig to `home/kubeconfig`, mode 0600.
pub fn write_kubeconfig(
    home: &Home,
    creds: &Credentials,
    server_url: &str,
) -> Result<std::path::PathBuf, PkiError> {
    let path = home.path("kubeconfig");
    write_private(&path, kubeconfig(creds, server_url).as_bytes(), 0o600)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_persist_and_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let c1 = {
            let home = Home::open(dir.path()).expect("home");
            load_or_create(&home).expect("create")
        };
        let home = Home::open(dir.path()).expect("home");
        let c2 = load_or_create(&home).expect("load");
        assert_eq!(c1.ca_pem, c2.ca_pem);
        assert_eq!(c1.token, c2.token);
        assert_eq!(c1.token.len(), 64);
        for f in ["ca.key", "token"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let kc = write_kubeconfig(&home, &c2, "https://127.0.0.1:1").expect("kubeconfig");
        let mode = std::fs::metadata(&kc).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_serving_certificate_names_a_specific_listen_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::open(dir.path()).expect("home");
        let sans = |c: &Credentials| {
            let params =
                CertificateParams::from_ca_cert_pem(&c.server_cert_pem).expect("parse the cert");
            format!("{:?}", params.subject_alt_names)
        };
        let local = load_or_create(&home).expect("creds");
        assert!(!sans(&local).contains("10.9.8.7"));
        let lan = load_or_create_for(&home, Some([10, 9, 8, 7].into())).expect("creds");
        assert!(sans(&lan).contains("10.9.8.7"), "{}", sans(&lan));
        let any = load_or_create_for(&home, Some([0, 0, 0, 0].into())).expect("creds");
        assert!(!sans(&any).contains("0.0.0.0"), "{}", sans(&any));
    }
}
