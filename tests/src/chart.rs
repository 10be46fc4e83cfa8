//! Renders `charts/bot-bottle` without a `helm` binary: the templates keep to a subset (a
//! value substituted as `{{ .Values.KEY }}`), and every rendered object must parse into its
//! k8s-openapi type and serialise back unchanged, so a misspelt or unknown field fails.

use std::path::Path;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One rendered document: its template file and the object.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub template: String,
    pub object: serde_json::Value,
}

/// `text` with every `{{ .Values.KEY }}` replaced by the value's scalar text; anything else
/// between braces is an error naming the template.
pub fn render_text(
    template: &str,
    text: &str,
    values: &serde_yaml::Mapping,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("{template}: '{{{{' without '}}}}'"))?;
        let expr = after[..end].trim();
        let key = expr.strip_prefix(".Values.").ok_or_else(|| {
            format!("{template}: '{{{{ {expr} }}}}' is outside the subset this test renders (only {{{{ .Values.KEY }}}})")
        })?;
        let value = values
            .get(serde_yaml::Value::String(key.to_string()))
            .ok_or_else(|| format!("{template}: .Values.{key} is not in values.yaml"))?;
        let text = match value {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "{template}: .Values.{key} is not a scalar: {other:?}"
                ));
            }
        };
        out.push_str(&text);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn round_trips<T: DeserializeOwned + Serialize>(v: &serde_json::Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back != v {
        return Err(format!(
            "fields the type does not know were dropped:\n  rendered: {v}\n  typed:    {back}"
        ));
    }
    Ok(())
}

/// Whether `v` is exactly an object of its kind's k8s-openapi type.
pub fn check_typed(v: &serde_json::Value) -> Result<(), String> {
    match (v["apiVersion"].as_str(), v["kind"].as_str()) {
        (Some("v1"), Some("ServiceAccount")) => round_trips::<ServiceAccount>(v),
        (Some("v1"), Some("Secret")) => round_trips::<Secret>(v),
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRole")) => {
            round_trips::<ClusterRole>(v)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("ClusterRoleBinding")) => {
            round_trips::<ClusterRoleBinding>(v)
        }
        (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => round_trips::<Role>(v),
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => {
            round_trips::<RoleBinding>(v)
        }
        (a, k) => Err(format!(
            "no typed check for {a:?} {k:?}: add one before templating it"
        )),
    }
}

/// Every template of the chart at `dir` rendered with its `values.yaml`, each document parsed.
pub fn render(dir: &Path) -> Result<Vec<Rendered>, String> {
    let values: serde_yaml::Mapping = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("values.yaml"))
            .map_err(|e| format!("values.yaml: {e}"))?,
    )
    .map_err(|e| format!("values.yaml: {e}"))?;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("templates"))
        .map_err(|e| format!("templates: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{name}: {e}"))?;
        let rendered = render_text(&name, &text, &values)?;
        for doc in serde_yaml::Deserializer::from_str(&rendered) {
            let v = serde_yaml::Value::deserialize(doc).map_err(|e| format!("{name}: {e}"))?;
            if v.is_null() {
                continue;
            }
            let object = serde_json::to_value(&v).map_err(|e| format!("{name}: {e}"))?;
            out.push(Rendered {
                template: name.clone(),
                object,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_are_substituted() {
        let values: serde_yaml::Mapping = serde_yaml::from_str("a: x\nn: 3\n").expect("values");
        assert_eq!(
            render_text("t", "k: {{ .Values.a }}-{{.Values.n}}", &values),
            Ok("k: x-3".into())
        );
        assert!(
            render_text("t", "{{ .Release.Name }}", &values)
                .is_err_and(|e| e.contains("outside the subset"))
        );
        assert!(
            render_text("t", "{{ .Values.missing }}", &values)
                .is_err_and(|e| e.contains("not in values.yaml"))
        );
        assert!(render_text("t", "{{ .Values.a ", &values).is_err());
    }

    #[test]
    fn an_unknown_field_fails_the_typed_check() {
        let good = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x"}});
        assert_eq!(check_typed(&good), Ok(()));
        let bad = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "lables": {}}});
        assert!(check_typed(&bad).is_err());
    }
}
