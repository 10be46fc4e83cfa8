//! The sidecar's policy file and its hash, defined in the kube-free policy crate (which the
//! sidecar links instead of this one); its tests against Bottles live here.

pub use bb_policy::file::{
    GIT_GATE_CONFIG_FILE, applied_policy_hash, check_sidecar_policy, git_key_file,
    parse_sidecar_policy, policy_hash, short_hex,
};
/// Proposed routes documents: parsing, comparison with the live routes, the reach summary,
/// merging, and the supervise queue's file format.
pub use bb_policy::proposal;
pub use bb_policy::suggest;
pub use bb_policy::validate::{host_key, one_line};
/// Credential rules and the guarded-secrets file the runner's discovery shares with the sidecar.
pub use bb_policy::{guarded, secret_rules, untrusted};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;
    use crate::manifest::ManifestError;
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

    /// The sidecar parses with the types alone (it links no schema): whatever the Bottle CRD's
    /// schema refuses in an egress block, the sidecar refuses too.
    #[test]
    fn the_types_refuse_what_the_crd_schema_refuses() {
        for egress in [
            "{bogus: 1}",
            "{log: 5}",
            "{log: x}",
            "{routes: [{host: a.com, role: x}]}",
            "{routes: [{host: 1}]}",
            "{routes: [{host: ''}]}",
            "{routes: [{host: a.com, ports: [x]}]}",
            "{routes: [{host: a.com, ports: [70000]}]}",
            "{routes: [{host: a.com, plainHttp: yes}]}",
            "{routes: [{host: a.com, matches: [{paths: [{value: /a, type: glob}]}]}]}",
            "{routes: [{host: a.com, matches: [{headers: [{name: '', value: b}]}]}]}",
            "{routes: [{host: a.com, matches: [{bogus: 1}]}]}",
            "{routes: [{host: a.com, dlp: {outbound: 7}}]}",
            "{routes: [{host: a.com, dlp: {sideways: false}}]}",
            "{routes: [{host: a.com, git: {fetch: 1}}]}",
            "{routes: [{host: a.com, auth: {scheme: Basic, tokenFile: t}}]}",
        ] {
            let bottle = format!(
                "apiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {{name: b}}\nspec: {{egress: {egress}}}\n"
            );
            assert!(
                parse_resources(&bottle).is_err(),
                "the CRD accepts {egress}: the case proves nothing"
            );
            assert!(
                parse_sidecar_policy(egress).is_err(),
                "the sidecar accepts {egress}, which the CRD refuses"
            );
        }
    }

    #[test]
    fn the_sidecar_rejects_what_a_bottle_rejects_and_unresolved_sources() {
        assert_eq!(
            errors(
                "routes: [{host: a.com, role: x}, {host: a.com, auth: {scheme: Bearer, hostEnv: T}}]"
            ),
            vec![
                "routes[0].role: unknown field `role`, expected one of `host`, `matches`, `auth`, `dlp`, `git`, `ports`, `plainHttp`, `allowPrivateAddresses`",
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
