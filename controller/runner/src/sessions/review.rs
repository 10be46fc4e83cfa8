//! Who may open a session on a runner that syncs from a cluster: whoever the cluster says it is
//! (TokenReview) and lets at the Agent's subresource (SubjectAccessReview), as a kubelet
//! delegates its authentication and authorization to the apiserver.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::request::{SessionRequest, Verb};

/// The Kubernetes verb and subresource a session request is judged as: `create` on
/// `agents/exec` and `agents/attach`, `get` on `agents/log`.
pub fn access(req: &SessionRequest) -> (&'static str, &'static str) {
    match req.verb {
        Verb::Exec { .. } => ("create", "exec"),
        Verb::Attach => ("create", "attach"),
        Verb::Log { .. } | Verb::SuperviseLog { .. } => ("get", "log"),
    }
}

/// What the cluster said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// The token is not one the cluster knows.
    Unauthenticated,
    /// Known, but not allowed this: the user, for the message.
    Forbidden(String),
}

/// Asks the cluster about `token` opening `req`.
pub async fn review(
    client: &kube::Client,
    token: &str,
    req: &SessionRequest,
) -> Result<Verdict, kube::Error> {
    let tokens: Api<TokenReview> = Api::all(client.clone());
    let reviewed = tokens
        .create(
            &PostParams::default(),
            &TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    let status = reviewed.status.unwrap_or_default();
    let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
        return Ok(Verdict::Unauthenticated);
    };
    let (verb, subresource) = access(req);
    let access_reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = access_reviews
        .create(
            &PostParams::default(),
            &SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: user.username.clone(),
                    groups: user.groups.clone(),
                    uid: user.uid.clone(),
                    extra: user.extra.clone(),
                    resource_attributes: Some(ResourceAttributes {
                        group: Some(bb_crds::GROUP.into()),
                        version: Some(bb_crds::VERSION.into()),
                        resource: Some("agents".into()),
                        subresource: Some(subresource.into()),
                        verb: Some(verb.into()),
                        namespace: Some(req.namespace.clone()),
                        name: Some(req.name.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    if answer.status.is_some_and(|s| s.allowed) {
        Ok(Verdict::Allowed)
    } else {
        Ok(Verdict::Forbidden(user.username.unwrap_or_default()))
    }
}
