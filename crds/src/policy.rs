//! The sidecar's policy file: `Bottle.spec.egress` after resolution, with each route's `auth`
//! naming a token file. Parsed with the Bottle CRD's own egress schema so there is one schema.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::egress::EgressSpec;
use crate::error::{FieldPath, ValidationErrors};
use crate::manifest::{ManifestError, bottle_spec_schema, typed, yaml_documents};
use crate::validate::{self, PolicyContext, host_key};

/// The identity of what a sidecar enforces: its policy file's bytes and every credential file
/// it reads (name and bytes, in name order). Keyed by the bottle's CA key: the hash changes when
/// a token rotates, yet nobody without that key can test a guess of the token against it. The
/// controller puts it in `status.appliedPolicyHash`; the sidecar reports it after each load.
pub fn applied_policy_hash<'a>(
    key: &[u8],
    policy: &[u8],
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    // Length-prefixed parts: moving bytes between the policy, a name and a value changes the hash.
    let mut part = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    part(b"bot-bottle applied policy v1");
    part(policy);
    for (name, value) in files {
        part(name.as_bytes());
        part(value);
    }
    ctx.sign()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Parses and validates a sidecar policy file (YAML with `log` and `routes`).
pub fn parse_sidecar_policy(text: &str) -> Result<EgressSpec, ManifestError> {
    let mut docs = yaml_documents(text)?;
    let mut errs = ValidationErrors::new("sidecar policy");
    if docs.len() > 1 {
        errs.push(&FieldPath::default(), "must be a single YAML document");
        return Err(ManifestError::Invalid(vec![errs]));
    }
    let doc = docs.pop().unwrap_or(Value::Object(Default::default()));
    let schema = bottle_spec_schema().and_then(|s| s.properties.as_ref()?.get("egress"));
    match schema {
        Some(schema) => crate::structural::validate(schema, &doc, &FieldPath::default(), &mut errs),
        None => errs.push(
            &FieldPath::default(),
            "internal error: the Bottle CRD has no egress schema",
        ),
    }
    if !errs.is_empty() {
        return Err(ManifestError::Invalid(vec![errs]));
    }
    let Some(policy) = typed::<EgressSpec>(&doc, &mut errs) else {
        return Err(ManifestError::Invalid(vec![errs]));
    };
    validate::egress(
        &policy,
        &FieldPath::default(),
        PolicyContext::SidecarPolicy,
        &mut errs,
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in policy.routes().iter().enumerate() {
        if let Some(first) = seen.insert(host_key(&r.host), i) {
            errs.push(
                &FieldPath::root("routes").index(i).field("host"),
                format!(
                    "duplicate host '{}': already allowed by routes[{first}]",
                    r.host
                ),
            );
            seen.insert(host_key(&r.host), first);
        }
    }
    errs.into_result()
        .map(|()| policy)
        .map_err(|e| ManifestError::Invalid(vec![e]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use crate::manifest::parse_resources;

    #[test]
    fn applied_hash_follows_token_values_and_the_key() {
        let h = |key: &[u8], files: &[(&str, &[u8])]| {
            applied_policy_hash(key, b"routes: []", files.iter().copied())
        };
        let base = h(b"k1", &[("route-0-token", b"old")]);
        assert_eq!(base, h(b"k1", &[("route-0-token", b"old")]));
        assert_eq!(base.len(), 16);
        assert_ne!(base, h(b"k1", &[("route-0-token", b"new")]), "rotation");
        assert_ne!(base, h(b"k2", &[("route-0-token", b"old")]), "key");
        assert_ne!(base, h(b"k1", &[("route-0-toke", b"nold")]), "boundaries");
        assert_ne!(base, h(b"k1", &[]), "file set");
        assert!(!base.contains("old"));
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_sidecar_policy(text) {
            Ok(_) => vec![],
            Err(ManifestError::Invalid(all)) => all
                .iter()
                .flat_map(|e| e.errors.iter().map(|f| f.to_string()))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn a_bottles_egress_block_is_a_sidecar_policy_once_auth_names_a_file() {
        let bottle = r#"
apiVersion: bot-bottle.dev/v1alpha1
kind: Bottle
metadata: {name: b}
spec:
  egress:
    log: 2
    routes:
      - host: api.example.com
        auth: {scheme: Bearer, hostEnv: TOKEN}
        matches: [{paths: [{type: regex, value: '^/v1/'}], methods: [POST], headers: [{name: X-A, value: b}]}]
        dlp: {outbound: [token_patterns], inbound: false}
        git: {fetch: true}
"#;
        let resources = parse_resources(bottle).expect("bottle");
        let Some(Resource::Bottle(b)) = resources.first() else {
            panic!("bottle")
        };
        let mut egress = b.spec.egress.clone().expect("egress");
        for r in egress.routes.iter_mut().flatten() {
            if let Some(a) = r.auth.as_mut() {
                a.token = crate::common::SecretSource {
                    token_file: Some("api.example.com".into()),
                    ..Default::default()
                };
            }
        }
        let text = serde_yaml::to_string(&egress).expect("yaml");
        assert_eq!(parse_sidecar_policy(&text).expect("policy"), egress);
    }

    #[test]
    fn the_sidecar_rejects_what_a_bottle_rejects_and_unresolved_sources() {
        assert_eq!(
            errors(
                "routes: [{host: a.com, role: x}, {host: a.com, auth: {scheme: Bearer, hostEnv: T}}]"
            ),
            vec![
                "routes[0].role: unknown field; allowed: allowPrivateAddresses, auth, dlp, git, host, matches, plainHttp, ports",
            ]
        );
        assert_eq!(
            errors(
                "routes: [{host: a.com}, {host: a.com, auth: {scheme: Bearer, hostEnv: T}}, {host: b.com, auth: {scheme: token, tokenFile: ../x}}]"
            ),
            vec![
                "routes[1].auth: the sidecar policy names tokens by tokenFile only; the controller resolves secretKeyRef and hostEnv",
                "routes[2].auth.tokenFile: must be a plain file name (no '/')",
                "routes[1].host: duplicate host 'a.com': already allowed by routes[0]",
            ]
        );
        assert_eq!(
            errors("log: 5"),
            vec!["log: must be less than or equal to 2"]
        );
        assert_eq!(
            errors(""),
            Vec::<String>::new(),
            "an empty policy denies everything"
        );
    }
}
