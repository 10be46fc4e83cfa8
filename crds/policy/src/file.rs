//! The sidecar's policy file: `Bottle.spec.egress` after resolution, with each route's `auth`
//! naming a token file; and the hash that identifies what a sidecar enforces.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::egress::EgressSpec;
use crate::error::{FieldPath, ValidationErrors};
use crate::validate::{self, PolicyContext, host_key};
use crate::yaml::{ManifestError, typed, yaml_documents};

/// git-gate's config in a sidecar's secrets directory: delivered there so it changes atomically
/// with the keys it names, and covered by the applied hash like them.
pub const GIT_GATE_CONFIG_FILE: &str = "git-gate.yaml";

/// The secret file carrying git-gate repository `repo`'s push key.
pub fn git_key_file(repo: &str) -> String {
    format!("git-key-{repo}")
}

/// The identity of a policy file's text: 16 hex digits of its SHA-256. The Bottle's
/// `resolvedPolicyHash` and the Agent's `appliedPolicyHash` are both this function over the same
/// text (the policy file the controller writes for the sidecar, token files by name only), so
/// "applied == resolved" is a real check.
pub fn policy_hash(policy: &[u8]) -> String {
    short_hex(ring::digest::digest(&ring::digest::SHA256, policy).as_ref())
}

/// The first 8 bytes of a digest as 16 hex digits: the form every bot-bottle hash takes.
pub fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

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
    short_hex(ctx.sign().as_ref())
}

/// Parses and validates a sidecar policy file (YAML with `log` and `routes`).
pub fn parse_sidecar_policy(text: &str) -> Result<EgressSpec, ManifestError> {
    parse_policy(text, "sidecar policy", PolicyContext::SidecarPolicy)
}

/// A policy document held to every rule a Bottle's egress is: the types, the CRD schema's
/// extra bounds, `validate::egress` with `ctx`'s token sources, and one route per host.
pub(crate) fn parse_policy(
    text: &str,
    object: &str,
    ctx: PolicyContext,
) -> Result<EgressSpec, ManifestError> {
    let mut docs = yaml_documents(text)?;
    let mut errs = ValidationErrors::new(object);
    if docs.len() > 1 {
        errs.push(&FieldPath::default(), "must be a single YAML document");
        return Err(ManifestError::Invalid(vec![errs]));
    }
    let doc = docs.pop().unwrap_or(Value::Object(Default::default()));
    // The types are the schema: every struct refuses unknown fields, and what a type cannot say
    // (ranges, non-empty names) is checked by `validate::egress`, as it is for Bottles.
    let Some(policy) = typed::<EgressSpec>(&doc, &mut errs) else {
        return Err(ManifestError::Invalid(vec![errs]));
    };
    check_policy(&policy, ctx, errs)
        .map(|()| policy)
        .map_err(|e| ManifestError::Invalid(vec![e]))
}

/// Holds a typed sidecar policy to the rules `parse_sidecar_policy` holds its text to: what the
/// runner plans is checked before it is rendered, and never parsed back.
pub fn check_sidecar_policy(policy: &EgressSpec) -> Result<(), ManifestError> {
    check_policy(
        policy,
        PolicyContext::SidecarPolicy,
        ValidationErrors::new("sidecar policy"),
    )
    .map_err(|e| ManifestError::Invalid(vec![e]))
}

/// The rules beyond the types: the CRD schema's extra bounds, `validate::egress` with `ctx`'s
/// token sources, and one route per host.
fn check_policy(
    policy: &EgressSpec,
    ctx: PolicyContext,
    mut errs: ValidationErrors,
) -> Result<(), ValidationErrors> {
    // What the Bottle CRD's schema says beyond the types (Bottles are held to it by the
    // structural check; the sidecar, which links no schema, here).
    if policy.log.is_some_and(|l| l > 2) {
        errs.push(&FieldPath::root("log"), "must be less than or equal to 2");
    }
    for (i, r) in policy.routes().iter().enumerate() {
        for (k, m) in r.matches.iter().flatten().enumerate() {
            for (j, h) in m.headers.iter().flatten().enumerate() {
                if h.name.is_empty() {
                    errs.push(
                        &FieldPath::root("routes")
                            .index(i)
                            .field("matches")
                            .index(k)
                            .field("headers")
                            .index(j)
                            .field("name"),
                        "must not be empty",
                    );
                }
            }
        }
    }
    validate::egress(policy, &FieldPath::default(), ctx, &mut errs);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_cannot_name_a_host_file() {
        let ok =
            "routes:\n  - host: a.test\n    auth: {scheme: Bearer, tokenFile: route-0-token}\n";
        assert!(parse_sidecar_policy(ok).is_ok());
        let sneaky = "routes:\n  - host: a.test\n    auth: {scheme: Bearer, hostJson: {path: /etc/shadow}}\n";
        let err = parse_sidecar_policy(sneaky)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("hostJson"), "{err}");
    }
}
