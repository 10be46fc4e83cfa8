//! Deploy keys minted through the Gitea API: one ed25519 key per Agent and repository, created
//! when the Agent first needs it and revoked when the Agent is deleted. The key lives in a
//! Secret of the control plane (so any runner that takes the Agent over pushes with the same
//! key), never in the agent.

use std::collections::BTreeMap;

use bb_crds::Agent;
use bb_crds::common::{DEFAULT_SECRET_NAMESPACE, SecretSource};
use bb_crds::git_gate::{GitRepo, KeyProvider, parse_git_upstream};
use http_body_util::{BodyExt, Full};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use crate::secrets::{self, SecretError};
use bb_backend::SecretBytes;

/// Labels a deploy-key Secret with the uid of the Agent it belongs to.
pub const AGENT_LABEL: &str = "bot-bottle.dev/deploy-key-agent";
const REPO_ANNOTATION: &str = "bot-bottle.dev/repo";
const KEY_ID_ANNOTATION: &str = "bot-bottle.dev/deploy-key-id";
const ENDPOINT_ANNOTATION: &str = "bot-bottle.dev/deploy-key-endpoint";
const TOKEN_ANNOTATION: &str = "bot-bottle.dev/forge-token-source";

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("{0}")]
    Secret(#[from] SecretError),
    #[error("{0}")]
    Forge(String),
    #[error("storing the deploy key: {0}")]
    Api(#[from] kube::Error),
}

/// `owner` and `repo` of an upstream URL's path (`team/app.git`).
pub fn owner_repo(url: &str) -> Result<(String, String), String> {
    let u = parse_git_upstream(url)?;
    let path = u.path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    match path.rsplit_once('/') {
        Some((owner, repo)) if !owner.is_empty() && !repo.is_empty() && !owner.contains('/') => {
            Ok((owner.to_string(), repo.to_string()))
        }
        _ => Err(format!(
            "the path {path:?} is not OWNER/REPO, which a Gitea deploy key needs"
        )),
    }
}

/// The repository's keys endpoint: `apiUrl` (default `https://<upstream host>`) + the API path.
pub fn keys_endpoint(url: &str, api_url: Option<&str>) -> Result<String, String> {
    let (owner, repo) = owner_repo(url)?;
    let base = match api_url {
        Some(a) => a.trim_end_matches('/').to_string(),
        None => format!("https://{}", parse_git_upstream(url)?.host),
    };
    Ok(format!("{base}/api/v1/repos/{owner}/{repo}/keys"))
}

fn secret_name(agent_uid: &str, repo: &str) -> String {
    let digest = bb_backend::hash::sha256_hex(&[agent_uid.as_bytes(), repo.as_bytes()]);
    format!("bb-deploy-key-{digest}")
}

fn api(client: &kube::Client) -> Api<Secret> {
    Api::namespaced(client.clone(), DEFAULT_SECRET_NAMESPACE)
}

/// A fresh ed25519 key pair in OpenSSH's formats: (private key file, public `authorized_keys` line).
/// ring draws the seed and derives the public half (it already signs our TLS); ssh-key writes the
/// files, so the runner host needs no `ssh-keygen`.
fn keygen(comment: &str) -> Result<(Vec<u8>, String), ForgeError> {
    use ring::rand::SecureRandom;
    use ring::signature::KeyPair;
    use ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey, KeypairData};
    use ssh_key::public::Ed25519PublicKey;

    let failed = |what: &str, e: &dyn std::fmt::Display| ForgeError::Forge(format!("{what}: {e}"));
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(seed.as_mut())
        .map_err(|e| failed("drawing a deploy key's seed", &e))?;
    let derived = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
        .map_err(|e| failed("deriving a deploy key", &e))?;
    let public: [u8; 32] = derived
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|e| failed("deriving a deploy key", &e))?;
    let pair = Ed25519Keypair {
        public: Ed25519PublicKey(public),
        private: Ed25519PrivateKey::from_bytes(&seed),
    };
    let key = ssh_key::PrivateKey::new(KeypairData::Ed25519(pair), comment)
        .map_err(|e| failed("encoding a deploy key", &e))?;
    let private = key
        .to_openssh(ssh_key::LineEnding::LF)
        .map_err(|e| failed("encoding a deploy key", &e))?;
    let line = key
        .public_key()
        .to_openssh()
        .map_err(|e| failed("encoding a deploy key", &e))?;
    Ok((private.as_bytes().to_vec(), line))
}

/// One request to the forge; the answer's status and body.
async fn call(
    method: http::Method,
    url: &str,
    token: &SecretBytes,
    body: Option<serde_json::Value>,
) -> Result<(http::StatusCode, Vec<u8>), ForgeError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| ForgeError::Forge(format!("loading the system's CA roots: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let token = String::from_utf8_lossy(token.expose()).trim().to_string();
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(url)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::AUTHORIZATION, format!("token {token}"));
    let payload = match body {
        Some(v) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            bytes::Bytes::from(v.to_string())
        }
        None => bytes::Bytes::new(),
    };
    let req = req
        .body(Full::new(payload))
        .map_err(|e| ForgeError::Forge(format!("{method} {url}: {e}")))?;
    let resp = tokio::time::timeout(std::time::Duration::from_secs(20), client.request(req))
        .await
        .map_err(|_| ForgeError::Forge(format!("{method} {url}: no answer within 20s")))?
        .map_err(|e| ForgeError::Forge(format!("{method} {url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ForgeError::Forge(format!("{method} {url}: {e}")))?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}

fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)])
        .trim()
        .to_string()
}

/// The push key of each `gitea` repository of `agent`, minted on first need.
pub async fn keys(
    client: &kube::Client,
    agent: &Agent,
    repos: &BTreeMap<String, GitRepo>,
) -> Result<BTreeMap<String, SecretBytes>, ForgeError> {
    let mut out = BTreeMap::new();
    for (name, repo) in repos {
        let Some(key) = &repo.key else { continue };
        if key.provider != KeyProvider::Gitea {
            continue;
        }
        let (Some(url), Some(token_source)) = (&repo.url, &key.forge_token) else {
            continue;
        };
        let private = ensure_key(
            client,
            agent,
            name,
            url,
            key.api_url.as_deref(),
            token_source,
        )
        .await?;
        out.insert(super::key_file(name), private);
    }
    Ok(out)
}

async fn ensure_key(
    client: &kube::Client,
    agent: &Agent,
    repo_name: &str,
    url: &str,
    api_url: Option<&str>,
    token_source: &SecretSource,
) -> Result<SecretBytes, ForgeError> {
    let uid = agent.uid().unwrap_or_default();
    let secret_name = secret_name(&uid, repo_name);
    if let Some(s) = api(client).get_opt(&secret_name).await?
        && let Some(k) = s.data.as_ref().and_then(|d| d.get("private-key"))
    {
        return Ok(SecretBytes::new(k.0.clone()));
    }
    let field = format!("spec.gitGate.repos.{repo_name}");
    let endpoint =
        keys_endpoint(url, api_url).map_err(|e| ForgeError::Forge(format!("{field}.url: {e}")))?;
    let token = secrets::resolve(client, token_source).await?;
    let who = format!(
        "bot-bottle {}/{}",
        agent.namespace().unwrap_or_default(),
        agent.name_any()
    );
    let (private, public) = keygen(&who)?;
    let (status, body) = call(
        http::Method::POST,
        &endpoint,
        &token,
        Some(serde_json::json!({"title": format!("{who} ({uid})"), "key": public, "read_only": false})),
    )
    .await?;
    if !status.is_success() {
        return Err(ForgeError::Forge(format!(
            "{field}: the forge refused the deploy key (POST {endpoint}: {status}: {})",
            snippet(&body)
        )));
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_i64))
        .ok_or_else(|| {
            ForgeError::Forge(format!(
                "{field}: the forge's answer to POST {endpoint} has no key id: {}",
                snippet(&body)
            ))
        })?;
    tracing::info!(agent = %who, repo = repo_name, id, "gitea deploy key created");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name),
            namespace: Some(DEFAULT_SECRET_NAMESPACE.into()),
            labels: Some(BTreeMap::from([(AGENT_LABEL.to_string(), uid.clone())])),
            annotations: Some(BTreeMap::from([
                (REPO_ANNOTATION.to_string(), repo_name.to_string()),
                (KEY_ID_ANNOTATION.to_string(), id.to_string()),
                (ENDPOINT_ANNOTATION.to_string(), endpoint.clone()),
                (
                    TOKEN_ANNOTATION.to_string(),
                    serde_json::to_string(token_source).unwrap_or_default(),
                ),
            ])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("private-key".to_string(), ByteString(private.clone())),
            ("public-key".to_string(), ByteString(public.into_bytes())),
        ])),
        ..Default::default()
    };
    if let Err(e) = api(client).create(&PostParams::default(), &secret).await {
        // Not stored means not revocable later: take it back now.
        let _ = call(
            http::Method::DELETE,
            &format!("{endpoint}/{id}"),
            &token,
            None,
        )
        .await;
        return Err(e.into());
    }
    Ok(SecretBytes::new(private))
}

/// Revokes every deploy key minted for the Agent with `uid`; each one revoked is forgotten.
/// Returns what could not be revoked, each saying how to do it by hand.
pub async fn revoke_all(client: &kube::Client, uid: &str) -> Vec<String> {
    let secrets = match api(client)
        .list(&ListParams::default().labels(&format!("{AGENT_LABEL}={uid}")))
        .await
    {
        Ok(l) => l.items,
        Err(e) => return vec![format!("listing this Agent's deploy keys: {e}")],
    };
    let mut failures = Vec::new();
    for s in secrets {
        let ann = s.annotations();
        let repo = ann.get(REPO_ANNOTATION).cloned().unwrap_or_default();
        let (Some(id), Some(endpoint)) = (ann.get(KEY_ID_ANNOTATION), ann.get(ENDPOINT_ANNOTATION))
        else {
            continue;
        };
        let url = format!("{endpoint}/{id}");
        let token = match ann
            .get(TOKEN_ANNOTATION)
            .and_then(|t| serde_json::from_str::<SecretSource>(t).ok())
        {
            Some(src) => secrets::resolve(client, &src)
                .await
                .map_err(ForgeError::from),
            None => Err(ForgeError::Forge(
                "the forge token source is not recorded".into(),
            )),
        };
        let result = match token {
            Ok(t) => match call(http::Method::DELETE, &url, &t, None).await {
                // Already gone is revoked.
                Ok((st, _)) if st.is_success() || st == http::StatusCode::NOT_FOUND => Ok(()),
                Ok((st, body)) => Err(format!("{st}: {}", snippet(&body))),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => {
                tracing::info!(repo, id, "gitea deploy key revoked");
                let _ = api(client)
                    .delete(&s.name_any(), &DeleteParams::default())
                    .await;
            }
            Err(why) => failures.push(format!(
                "deploy key {id} of repository {repo} was not revoked ({why}); revoke it by hand with DELETE {url}, then delete Secret {DEFAULT_SECRET_NAMESPACE}/{}",
                s.name_any()
            )),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_endpoint_comes_from_the_upstream() {
        assert_eq!(
            keys_endpoint("git@gitea.example.com:team/app.git", None).as_deref(),
            Ok("https://gitea.example.com/api/v1/repos/team/app/keys")
        );
        assert_eq!(
            keys_endpoint(
                "ssh://git@forge.lan:2222/team/app.git",
                Some("http://10.0.0.5:3000/")
            )
            .as_deref(),
            Ok("http://10.0.0.5:3000/api/v1/repos/team/app/keys")
        );
        assert!(keys_endpoint("git@h:app.git", None).is_err());
        assert!(keys_endpoint("git@h:a/b/c.git", None).is_err());
    }

    /// OpenSSH itself reads the private key and derives the same public line we hand the forge:
    /// a wrong public half, a broken encoding or a key OpenSSH cannot load fails here.
    #[test]
    fn a_minted_key_is_one_openssh_loads_and_agrees_with() {
        let (private, public) = keygen("bot-bottle test").expect("keygen");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, &private).expect("write key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = std::process::Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("this test needs OpenSSH's ssh-keygen to check the key");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let derived = String::from_utf8_lossy(&out.stdout);
        let fields = |s: &str| {
            s.split_whitespace()
                .take(2)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&derived), fields(&public));
        assert_eq!(fields(&public)[0], "ssh-ed25519");
        assert!(public.ends_with(" bot-bottle test"), "{public}");
        let (_, other) = keygen("bot-bottle test").expect("keygen");
        assert_ne!(fields(&other), fields(&public), "each key is fresh");
    }
}
