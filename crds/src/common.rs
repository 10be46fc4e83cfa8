//! Small shapes several resources share: where a secret value comes from, and a git identity.
//! Secret sources name a value; the value itself is only ever read by the controller.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use bb_policy::secret::{HostJson, SecretKeySelector, SecretSource};

/// Namespace a `secretKeyRef` without `namespace` reads from. Bottles are cluster-scoped, so
/// their secrets live in one namespace that only the operator writes.
pub const DEFAULT_SECRET_NAMESPACE: &str = "bot-bottle-system";

/// A git author identity. Empty or missing fields inherit (bottle → agent, parent → child).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitUser {
    /// `git config user.name` inside the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `git config user.email` inside the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl GitUser {
    /// Per field, `over` wins when it holds a non-empty value.
    pub fn overlay(&self, over: &GitUser) -> GitUser {
        fn pick(base: &Option<String>, over: &Option<String>) -> Option<String> {
            match over {
                Some(v) if !v.is_empty() => Some(v.clone()),
                _ => base.clone(),
            }
        }
        GitUser {
            name: pick(&self.name, &over.name),
            email: pick(&self.email, &over.email),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.name.as_deref().unwrap_or("").is_empty()
            && self.email.as_deref().unwrap_or("").is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_user_overlay_is_per_field_and_ignores_empty() {
        let bottle = GitUser {
            name: Some("bot".into()),
            email: Some("bot@example.com".into()),
        };
        let agent = GitUser {
            name: Some("".into()),
            email: Some("me@example.com".into()),
        };
        let got = bottle.overlay(&agent);
        assert_eq!(got.name.as_deref(), Some("bot"));
        assert_eq!(got.email.as_deref(), Some("me@example.com"));
    }
}
