//! A routes document an agent proposes through supervise: parsed by the same types and rules as
//! a Bottle's egress, compared with the live routes (what new reach it grants), and merged over
//! them as the Agent's own layer once a human approves.

use serde_json::Value;

use crate::egress::{DetectorSelection, EgressRoute, EgressSpec};
use crate::file::parse_policy;
use crate::validate::{PolicyContext, host_key};
use crate::yaml::ManifestError;

/// The tools that raise a proposal, as they are named on the wire and in `Proposal.spec.tool`.
pub const TOOL_ALLOW: &str = "allow";
pub const TOOL_EGRESS_BLOCK: &str = "egress-block";
pub const TOOL_CAPABILITY_BLOCK: &str = "capability-block";
pub const TOOL_GITLEAKS_ALLOW: &str = "gitleaks-allow";

/// A proposal waiting in the supervise queue as `<id>.proposal.json`. The sidecar writes it;
/// the runner mirrors it into a `Proposal` object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedProposal {
    pub id: String,
    pub tool: String,
    /// The proposed file: a routes document, a Dockerfile, or (gitleaks-allow) the findings.
    pub proposed_file: String,
    pub justification: String,
    /// gitleaks-allow: the git-gate repository pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    pub arrival_timestamp: String,
}

/// A decision written beside a proposal as `<id>.response.json` by the runner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueDecision {
    /// `approved` or `rejected`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl QueueDecision {
    pub fn approved(&self) -> bool {
        self.status == "approved" || self.status == "modified"
    }
}

/// The file names of proposal `id` in a queue directory.
pub fn proposal_file(id: &str) -> String {
    format!("{id}.proposal.json")
}

pub fn response_file(id: &str) -> String {
    format!("{id}.response.json")
}

/// A queued proposal's id must be usable in a file name and an object name.
pub fn valid_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

/// A proposed routes document: `routes:` in the shape of `Bottle.spec.egress.routes`. Auth may
/// name a Secret key or a host variable (a human sees that reach before approving); `log` is the
/// Bottle's to set, never a proposal's.
pub fn parse_proposed_routes(text: &str) -> Result<Vec<EgressRoute>, ManifestError> {
    let spec: EgressSpec = parse_policy(text, "proposed routes", PolicyContext::Bottle)?;
    for (field, set) in [("log", spec.log.is_some()), ("mode", spec.mode.is_some())] {
        if set {
            let mut errs = crate::error::ValidationErrors::new("proposed routes");
            errs.push(
                &crate::error::FieldPath::root(field),
                "is set by the Bottle; a proposal lists routes only",
            );
            return Err(ManifestError::Invalid(vec![errs]));
        }
    }
    Ok(spec.routes.unwrap_or_default())
}

/// The routes document an agent sees from `list-egress-routes` and may send back as a proposal:
/// credentials are left out (a comment says the sidecar injects one), and a proposed route
/// without `auth` keeps whatever the live route injects.
pub fn routes_document(routes: &[EgressRoute]) -> String {
    let mut out = String::from("routes:\n");
    if routes.is_empty() {
        return "routes: []\n".into();
    }
    for r in routes {
        let mut shown = r.clone();
        let auth = shown.auth.take();
        let yaml = serde_yaml::to_string(&shown).unwrap_or_default();
        for (i, line) in yaml.lines().enumerate() {
            out.push_str(if i == 0 { "  - " } else { "    " });
            out.push_str(line);
            out.push('\n');
        }
        if let Some(a) = auth {
            out.push_str(&format!(
                "    # the sidecar injects `Authorization: {} <token>` here; keep this route without auth to keep it\n",
                a.scheme.as_str()
            ));
        }
    }
    out
}

/// How one host's route would change: `from` is the live route, none for a new host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    pub from: Option<EgressRoute>,
    pub to: EgressRoute,
}

/// A proposal against the live routes: what it adds or changes, hosts it leaves out (kept: a
/// proposal grants, it never silently revokes), and the new reach in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalDiff {
    pub changes: Vec<RouteChange>,
    pub left_out: Vec<String>,
}

/// A proposed route with the live route's credential where it names none.
fn effective(proposed: &EgressRoute, live: Option<&EgressRoute>) -> EgressRoute {
    let mut r = proposed.clone();
    if r.auth.is_none() {
        r.auth = live.and_then(|l| l.auth.clone());
    }
    r
}

/// Compares `proposed` with the `live` routes.
pub fn compare(live: &[EgressRoute], proposed: &[EgressRoute]) -> ProposalDiff {
    let find = |host: &str| live.iter().find(|r| host_key(&r.host) == host_key(host));
    let mut diff = ProposalDiff::default();
    for p in proposed {
        let current = find(&p.host);
        let to = effective(p, current);
        if current != Some(&to) {
            diff.changes.push(RouteChange {
                from: current.cloned(),
                to,
            });
        }
    }
    for l in live {
        if !proposed
            .iter()
            .any(|p| host_key(&p.host) == host_key(&l.host))
        {
            diff.left_out.push(l.host.clone());
        }
    }
    diff
}

/// A proposal reduced to what it changes: the agent's routes for the hosts whose route would
/// differ from the live one (in the agent's own words, auth as it named it), and of those the
/// hosts that nothing allowed before. What the human approves is exactly this, never the rest
/// of the whole document an agent may send back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reduced {
    pub routes: Vec<EgressRoute>,
    pub adds: Vec<String>,
}

/// `proposed` reduced against the `live` routes (the Bottle and the grants in force).
pub fn reduce(live: &[EgressRoute], proposed: &[EgressRoute]) -> Reduced {
    let diff = compare(live, proposed);
    let mut out = Reduced::default();
    for c in &diff.changes {
        let key = host_key(&c.to.host);
        if let Some(p) = proposed.iter().find(|p| host_key(&p.host) == key) {
            out.routes.push(p.clone());
        }
        if c.from.is_none() {
            out.adds.push(c.to.host.clone());
        }
    }
    out
}

/// A routes document of `routes`, as a Proposal's content holds it.
pub fn routes_yaml(routes: &[EgressRoute]) -> String {
    let spec = EgressSpec {
        routes: Some(routes.to_vec()),
        ..Default::default()
    };
    serde_yaml::to_string(&spec).unwrap_or_default()
}

/// `routes` with each of `layer`'s routes in place of the same host's (or added): how an Agent's
/// approved grants sit on top of its Bottle.
pub fn merge(routes: &mut Vec<EgressRoute>, layer: &[EgressRoute]) {
    for r in layer {
        match routes
            .iter_mut()
            .find(|x| host_key(&x.host) == host_key(&r.host))
        {
            Some(slot) => *slot = effective(r, Some(slot)),
            None => routes.push(r.clone()),
        }
    }
}

/// A Bottle's own routes with an approved `layer` written into them (the approver promotes a
/// grant to everyone running the Bottle). A layer route for a host the Bottle inherits from
/// an `extends` parent is refused: the parent declares it, and promoting there is the
/// parent's owner's decision.
pub fn promote(
    own: &[EgressRoute],
    inherited: &[EgressRoute],
    layer: &[EgressRoute],
) -> Result<Vec<EgressRoute>, String> {
    let mut out = own.to_vec();
    for r in layer {
        let key = host_key(&r.host);
        if !own.iter().any(|o| host_key(&o.host) == key)
            && inherited.iter().any(|i| host_key(&i.host) == key)
        {
            return Err(format!(
                "{} comes from a Bottle this one extends; promote it there",
                r.host
            ));
        }
    }
    merge(&mut out, layer);
    Ok(out)
}

fn source(r: &EgressRoute) -> Option<String> {
    let a = r.auth.as_ref()?;
    let from = if let Some(k) = &a.token.secret_key_ref {
        format!(
            "key {} of Secret {}/{}",
            k.key,
            k.namespace.as_deref().unwrap_or("bot-bottle-system"),
            k.name
        )
    } else if let Some(v) = &a.token.host_env {
        format!("the runner's environment variable {v}")
    } else {
        "a credential".into()
    };
    Some(format!("{} from {from}", a.scheme.as_str()))
}

fn paths(r: &EgressRoute) -> String {
    match &r.matches {
        // The proxy reads `matches: []` (and an empty list inside a match) as no restriction:
        // the summary says so rather than showing nothing.
        None => "any path, any method".into(),
        Some(ms) if ms.is_empty() => "any path, any method".into(),
        Some(ms) => ms
            .iter()
            .map(|m| {
                let paths = m.paths.as_ref().filter(|ps| !ps.is_empty()).map_or(
                    "any path".to_string(),
                    |ps| {
                        ps.iter()
                            .map(|p| {
                                let t = serde_json::to_value(p.match_type.unwrap_or_default())
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_string))
                                    .unwrap_or_default();
                                format!("{} {}", t, p.value)
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                );
                let methods = m
                    .methods
                    .as_ref()
                    .filter(|v| !v.is_empty())
                    .map_or("any method".to_string(), |v| v.join("/"));
                format!("{paths} ({methods})")
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn dlp_off(r: &EgressRoute) -> Vec<&'static str> {
    let mut v = Vec::new();
    let Some(d) = &r.dlp else { return v };
    let narrowed = |s: &Option<DetectorSelection>, all: &[&str]| match s {
        Some(DetectorSelection::Enabled(false)) => true,
        Some(DetectorSelection::Only(names)) => names.len() < all.len(),
        _ => false,
    };
    if narrowed(&d.outbound, crate::egress::OUTBOUND_DETECTORS) {
        v.push("outbound secret scanning");
    }
    if narrowed(&d.inbound, crate::egress::INBOUND_DETECTORS) {
        v.push("inbound prompt-injection scanning");
    }
    v
}

/// The new reach a route grants beyond `before`, in plain words, one item each.
fn reach_of(to: &EgressRoute, before: Option<&EgressRoute>) -> Vec<String> {
    let h = &to.host;
    let mut out = Vec::new();
    match before {
        None => out.push(format!(
            "new host {h} on port(s) {}: {}",
            join_ports(&to.allowed_ports()),
            paths(to)
        )),
        Some(b) => {
            if b.matches != to.matches {
                out.push(format!("{h}: requests now allowed: {}", paths(to)));
            }
            let new_ports: Vec<u16> = to
                .allowed_ports()
                .into_iter()
                .filter(|p| !b.allowed_ports().contains(p))
                .collect();
            if !new_ports.is_empty() {
                out.push(format!("{h}: new port(s) {}", join_ports(&new_ports)));
            }
        }
    }
    if to.auth != before.and_then(|b| b.auth.clone())
        && let Some(s) = source(to)
    {
        out.push(format!(
            "credential reach: the sidecar injects {s} into requests to {h}"
        ));
    }
    if to.allow_private_addresses == Some(true)
        && before.and_then(|b| b.allow_private_addresses) != Some(true)
    {
        out.push(format!(
            "private addresses: {h} may resolve to private, loopback or link-local addresses (the LAN, cloud metadata)"
        ));
    }
    if to.plain_http() && !before.is_some_and(EgressRoute::plain_http) {
        out.push(format!(
            "plaintext: {h} over unencrypted http://{}",
            if to.auth.as_ref().and_then(|a| a.allow_plaintext) == Some(true) {
                ", with the credential in clear"
            } else {
                ""
            }
        ));
    }
    if to.git.as_ref().and_then(|g| g.fetch) == Some(true)
        && before.and_then(|b| b.git.as_ref()).and_then(|g| g.fetch) != Some(true)
    {
        out.push(format!(
            "git clone/fetch from {h} (bypasses git-gate's mirror)"
        ));
    }
    let before_off = before.map(dlp_off).unwrap_or_default();
    for off in dlp_off(to) {
        if !before_off.contains(&off) {
            out.push(format!("{h}: {off} turned off"));
        }
    }
    out
}

fn join_ports(p: &[u16]) -> String {
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

impl ProposalDiff {
    /// The reach summary a human reads before deciding: one line per grant.
    pub fn reach(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.changes {
            out.extend(reach_of(&c.to, c.from.as_ref()));
        }
        if self.changes.is_empty() {
            out.push("nothing new: every proposed route is already allowed as proposed".into());
        }
        out
    }

    /// A unified-style diff of the routes that change (`-` live, `+` proposed).
    pub fn text(&self) -> String {
        let yaml = |r: &EgressRoute| -> Vec<String> {
            let v = serde_json::to_value(r).unwrap_or(Value::Null);
            serde_yaml::to_string(&v)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        };
        let mut out = String::new();
        for c in &self.changes {
            match &c.from {
                None => {
                    out.push_str(&format!("@@ new route {} @@\n", c.to.host));
                    for l in yaml(&c.to) {
                        out.push_str(&format!("+ {l}\n"));
                    }
                }
                Some(from) => {
                    out.push_str(&format!("@@ route {} @@\n", c.to.host));
                    let (a, b) = (yaml(from), yaml(&c.to));
                    for l in &a {
                        if !b.contains(l) {
                            out.push_str(&format!("- {l}\n"));
                        }
                    }
                    for l in &b {
                        if a.contains(l) {
                            out.push_str(&format!("  {l}\n"));
                        } else {
                            out.push_str(&format!("+ {l}\n"));
                        }
                    }
                }
            }
        }
        if !self.left_out.is_empty() {
            out.push_str(&format!(
                "# not in the proposal, kept as they are: {}\n",
                self.left_out.join(", ")
            ));
        }
        out
    }

    /// The routes an approval layers over the Bottle: those that add or change something.
    pub fn layer(&self) -> Vec<EgressRoute> {
        self.changes.iter().map(|c| c.to.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(yaml: &str) -> Vec<EgressRoute> {
        match parse_proposed_routes(yaml) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn proposals_are_held_to_the_bottle_rules() {
        let bad = [
            ("routes:\n  - host: 'https://x.test/'\n", "routes[0].host"),
            ("routes:\n  - host: a.test\n    bogus: 1\n", "bogus"),
            (
                "routes:\n  - host: a.test\n  - host: A.test\n",
                "duplicate host",
            ),
            ("log: 2\nroutes: []\n", "log: is set by the Bottle"),
            (
                "routes:\n  - host: a.test\n    auth: {scheme: Bearer, tokenFile: t}\n",
                "tokenFile",
            ),
            ("routes: [", "invalid YAML"),
        ];
        for (text, want) in bad {
            let err = parse_proposed_routes(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert_eq!(routes("routes:\n  - host: a.test\n").len(), 1);
    }

    #[test]
    fn the_listing_round_trips_and_keeps_credentials_out() {
        let live = vec![
            EgressRoute {
                host: "api.test".into(),
                auth: Some(crate::egress::RouteAuth {
                    scheme: crate::egress::AuthScheme::Bearer,
                    token: crate::secret::SecretSource {
                        token_file: Some("route-0-token".into()),
                        ..Default::default()
                    },
                    allow_plaintext: None,
                }),
                ..Default::default()
            },
            routes("routes:\n  - host: docs.test\n    matches: [{paths: [{type: prefix, value: /v1}]}]\n")
                .remove(0),
        ];
        let doc = routes_document(&live);
        assert!(!doc.contains("route-0-token"), "{doc}");
        assert!(doc.contains("injects `Authorization: Bearer"), "{doc}");
        let back = routes(&doc);
        let diff = compare(&live, &back);
        assert_eq!(diff.changes, vec![], "{doc}");
        assert_eq!(
            diff.reach(),
            vec!["nothing new: every proposed route is already allowed as proposed"]
        );
        assert_eq!(routes_document(&[]), "routes: []\n");
        assert!(routes("routes: []\n").is_empty());
    }

    #[test]
    fn the_reach_summary_names_every_kind_of_new_reach() {
        let live = routes(
            "routes:\n  - host: docs.test\n    matches: [{paths: [{type: prefix, value: /v1}]}]\n",
        );
        let proposed = routes(
            "routes:\n  - host: docs.test\n  - host: new.test\n    auth: {scheme: Bearer, hostEnv: GH_TOKEN}\n  - host: lan.test\n    plainHttp: true\n    allowPrivateAddresses: true\n    git: {fetch: true}\n    dlp: {outbound: false}\n",
        );
        let diff = compare(&live, &proposed);
        let reach = diff.reach().join("\n");
        for want in [
            "docs.test: requests now allowed: any path, any method",
            "new host new.test on port(s) 443",
            "credential reach: the sidecar injects Bearer from the runner's environment variable GH_TOKEN into requests to new.test",
            "new host lan.test on port(s) 80",
            "private addresses: lan.test",
            "plaintext: lan.test",
            "git clone/fetch from lan.test",
            "lan.test: outbound secret scanning turned off",
        ] {
            assert!(reach.contains(want), "missing {want:?} in\n{reach}");
        }
        let text = diff.text();
        assert!(text.contains("@@ new route new.test @@"), "{text}");
        assert!(text.contains("- matches:"), "{text}");
        assert_eq!(diff.layer().len(), 3);
    }

    #[test]
    fn promoting_writes_the_grant_into_the_bottles_own_routes_only() {
        let own = routes("routes:\n  - host: a.test\n    auth: {scheme: Bearer, hostEnv: A}\n");
        let inherited = routes("routes:\n  - host: p.test\n");
        let layer = routes("routes:\n  - host: a.test\n    ports: [8443]\n  - host: n.test\n");
        let promoted = promote(&own, &inherited, &layer).expect("promote");
        assert_eq!(promoted.len(), 2);
        assert_eq!(promoted[0].ports, Some(vec![8443]));
        assert!(
            promoted[0].auth.is_some(),
            "the declared credential is kept"
        );
        assert_eq!(promoted[1].host, "n.test");
        let err = promote(&own, &inherited, &routes("routes:\n  - host: p.test\n"))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("p.test comes from a Bottle this one extends"),
            "{err}"
        );
    }

    #[test]
    fn a_proposal_never_revokes_and_keeps_live_credentials() {
        let mut live = routes(
            "routes:\n  - host: a.test\n    auth: {scheme: Bearer, hostEnv: A}\n  - host: b.test\n",
        );
        let proposed = routes("routes:\n  - host: a.test\n    ports: [443, 8443]\n");
        let diff = compare(&live, &proposed);
        assert_eq!(diff.left_out, vec!["b.test"]);
        assert!(diff.text().contains("kept as they are: b.test"));
        let reach = diff.reach().join("\n");
        assert!(reach.contains("a.test: new port(s) 8443"), "{reach}");
        // The credential is kept, not reported as new reach.
        assert!(!reach.contains("credential reach"), "{reach}");
        merge(&mut live, &diff.layer());
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].ports, Some(vec![443, 8443]));
        assert_eq!(
            live[0]
                .auth
                .as_ref()
                .and_then(|a| a.token.host_env.as_deref()),
            Some("A")
        );
    }

    /// `matches: []` and empty lists inside a match restrict nothing to the proxy, and the
    /// summary says so; a whole document sent back is reduced to what it changes.
    #[test]
    fn empty_matches_read_as_everything_and_documents_reduce_to_their_change() {
        let live = parse_proposed_routes("routes:\n  - host: a.test\n").expect("live");
        for (text, want) in [
            (
                "routes:\n  - host: b.test\n    matches: []\n",
                "new host b.test on port(s) 443: any path, any method",
            ),
            (
                "routes:\n  - host: b.test\n    matches: [{paths: [], methods: []}]\n",
                "new host b.test on port(s) 443: any path (any method)",
            ),
        ] {
            let proposed = parse_proposed_routes(text).expect("proposed");
            assert_eq!(compare(&live, &proposed).reach(), [want], "{text}");
        }
        let whole =
            parse_proposed_routes("routes:\n  - host: a.test\n  - host: c.test\n").expect("whole");
        let r = reduce(&live, &whole);
        assert_eq!(
            r.routes.iter().map(|x| x.host.as_str()).collect::<Vec<_>>(),
            ["c.test"]
        );
        assert_eq!(r.adds, ["c.test"]);
        assert!(routes_yaml(&r.routes).contains("host: c.test"));
    }
}
