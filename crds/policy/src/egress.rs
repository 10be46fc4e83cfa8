//! The egress policy schema: one definition used by `Bottle.spec.egress`, the controller and the
//! sidecar's policy file (ARCHITECTURE invariant 1: one schema, never two hand-synced copies).

use serde::{Deserialize, Serialize};

use crate::secret::SecretSource;

/// Outbound DLP detectors a route may name.
pub const OUTBOUND_DETECTORS: &[&str] = &["token_patterns", "known_secrets"];
/// Inbound (response) detectors a route may name.
pub const INBOUND_DETECTORS: &[&str] = &["naive_injection_detection"];

/// Egress policy: default deny, one route per allowed host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressSpec {
    /// `enforce` (default) refuses what the routes do not allow; `report` lets would-be
    /// refusals of the routes through and records them, to learn a policy from (`bbctl policy
    /// suggest`). DLP, private addresses, IP literals, DNS-over-HTTPS and git push are refused
    /// in both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<EgressMode>,
    /// Audit log level of the sidecar: 0 off, 1 blocked requests, 2 every request. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 2)))]
    pub log: Option<u8>,
    /// Allowed destinations. A host may appear once across the whole `extends` chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<EgressRoute>>,
}

/// How the sidecar treats what the routes do not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum EgressMode {
    #[default]
    Enforce,
    Report,
}

impl EgressSpec {
    pub fn report(&self) -> bool {
        self.mode == Some(EgressMode::Report)
    }

    pub fn routes(&self) -> &[EgressRoute] {
        self.routes.as_deref().unwrap_or(&[])
    }

    pub fn log_level(&self) -> u8 {
        self.log.unwrap_or(0)
    }
}

/// One allowed host and what may be sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRoute {
    /// Hostname (lowercase, no scheme, port or path) or IP literal to allow.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub host: String,
    /// When present, a request must match at least one entry to be forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<RouteMatch>>,
    /// Credential the sidecar injects as `Authorization`; the agent only holds a placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RouteAuth>,
    /// Per-route DLP overrides; omitted means every detector is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp: Option<RouteDlp>,
    /// Git over HTTPS for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<RouteGit>,
    /// Ports the sidecar reaches this host on; default `[443]`, or `[80]` with `plainHttp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// Allows plain `http://` to this host (a model server on the LAN). Without it the host is
    /// reached over TLS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_http: Option<bool>,
    /// Allows this host to resolve to (or be) a private, loopback or link-local address (a LAN
    /// server). Without it such addresses are refused: DNS rebinding and cloud metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_private_addresses: Option<bool>,
}

impl EgressRoute {
    pub fn plain_http(&self) -> bool {
        self.plain_http.unwrap_or(false)
    }

    /// The ports this route allows: as listed, else 443 (80 for a plain-HTTP route).
    pub fn allowed_ports(&self) -> Vec<u16> {
        self.ports
            .clone()
            .unwrap_or_else(|| vec![if self.plain_http() { 80 } else { 443 }])
    }
}

/// A request filter: every listed dimension must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// The request path must match one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<PathMatch>>,
    /// The request method must be one of these (compared upper-cased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Every listed header must be present and match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatch>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PathMatchType {
    #[default]
    Prefix,
    Exact,
    Regex,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// `prefix` (default), `exact` or `regex`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub match_type: Option<PathMatchType>,
    /// A path starting with `/`, or a regular expression for `regex`.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum HeaderMatchType {
    #[default]
    Exact,
    Regex,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name, compared case-insensitively.
    #[cfg_attr(feature = "schema", schemars(length(min = 1)))]
    pub name: String,
    /// Value to compare with.
    pub value: String,
    /// `exact` (default) or `regex`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub match_type: Option<HeaderMatchType>,
}

/// `Authorization` scheme the sidecar injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum AuthScheme {
    Bearer,
    #[serde(rename = "token")]
    Token,
}

impl AuthScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Bearer => "Bearer",
            AuthScheme::Token => "token",
        }
    }
}

/// Injected credential: `Authorization: <scheme> <token>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteAuth {
    /// `Bearer` or `token`.
    pub scheme: AuthScheme,
    /// Where the token comes from (exactly one source).
    #[serde(flatten)]
    pub token: SecretSource,
    /// Injects the credential over plain `http://` too, where it crosses the wire in clear.
    /// Needs `plainHttp: true` on the route; without it the credential only travels over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plaintext: Option<bool>,
}

/// Detector selection: `false` turns a direction off, a list narrows it to the named detectors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DetectorSelection {
    Enabled(bool),
    Only(Vec<String>),
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for DetectorSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DetectorSelection".into()
    }

    // `false` or a list is not expressible as one structural type, so the schema keeps the
    // value opaque and the rule lives in validation (same as Kubernetes' int-or-string escape).
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "false to disable, or a list of detector names",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDlp {
    /// `false`, or a subset of `token_patterns`, `known_secrets`. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<DetectorSelection>,
    /// `false`, or a subset of `naive_injection_detection`. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<DetectorSelection>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteGit {
    /// Allow smart-HTTP clone/fetch (`git-upload-pack`). Push is always blocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<bool>,
}
