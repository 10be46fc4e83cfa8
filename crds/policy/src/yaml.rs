//! YAML as the project reads it: a stream split into JSON documents with duplicate keys, tags
//! and non-string keys refused, and typed decoding that names the field that failed.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ValidationErrors;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {doc}: invalid YAML: {message}")]
    Yaml { doc: usize, message: String },
    #[error("{}", join_invalid(.0))]
    Invalid(Vec<ValidationErrors>),
}

fn join_invalid(all: &[ValidationErrors]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits a YAML stream into JSON documents. Duplicate keys, non-string keys and tags are
/// errors, never silently resolved; empty documents are skipped.
pub fn yaml_documents(text: &str) -> Result<Vec<Value>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let yaml = serde_yaml::Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            doc,
            message: e.to_string(),
        })?;
        if yaml.is_null() {
            continue;
        }
        let json = yaml_to_json(yaml).map_err(|message| ManifestError::Yaml { doc, message })?;
        out.push(json);
    }
    Ok(out)
}

fn yaml_to_json(v: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("number {n} cannot be represented in JSON"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(
            seq.into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => {
                        return Err(format!(
                            "mapping keys must be strings, found {}",
                            serde_yaml::to_string(&other).unwrap_or_default().trim()
                        ));
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("YAML tags such as {} are not supported", t.tag)),
    })
}

/// Decodes `doc` as `T`, recording the failing field's path in `errs`.
pub fn typed<T: DeserializeOwned>(doc: &Value, errs: &mut ValidationErrors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(doc) {
        Ok(v) => Some(v),
        Err(e) => {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            errs.errors.push(crate::error::FieldError {
                path: if path == "." { String::new() } else { path },
                message,
            });
            None
        }
    }
}
