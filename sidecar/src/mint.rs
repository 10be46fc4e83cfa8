//! Leaf certificates for TLS-bumped tunnels, minted on demand from the bottle CA and cached per
//! host, as rustls server configurations ready to accept the agent's handshake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("bottle CA: {0}")]
    Ca(String),
    #[error("minting a certificate for {host}: {message}")]
    Mint { host: String, message: String },
}

pub struct Minter {
    ca_key: KeyPair,
    ca_params: CertificateParams,
    ca_der: CertificateDer<'static>,
    cache: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").finish_non_exhaustive()
    }
}

impl Minter {
    /// From the bottle CA's certificate and key (PEM).
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Minter, MintError> {
        let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| MintError::Ca(e.to_string()))?;
        let ca_params = CertificateParams::from_ca_cert_pem(ca_cert_pem)
            .map_err(|e| MintError::Ca(e.to_string()))?;
        let ca_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| MintError::Ca(e.to_string()))?;
        Ok(Minter {
            ca_key,
            ca_params,
            ca_der,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A server configuration presenting a certificate for `host`, offering HTTP/2 and 1.1.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, MintError> {
        if let Some(c) = self.cache.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let err = |m: String| MintError::Mint {
            host: host.to_string(),
            message: m,
        };
        let issuer = self
            .ca_params
            .clone()
            .self_signed(&self.ca_key)
            .map_err(|e| err(e.to_string()))?;
        let key = KeyPair::generate().map_err(|e| err(e.to_string()))?;
        let mut params =
            CertificateParams::new(vec![host.to_string()]).map_err(|e| err(e.to_string()))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let cert = params
            .signed_by(&key, &issuer, &self.ca_key)
            .map_err(|e| err(e.to_string()))?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key_der =
            PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| err(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| err(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        if let Ok(mut m) = self.cache.lock() {
            m.insert(host.to_string(), cfg.clone());
        }
        Ok(cfg)
    }
}
