//! Validates a JSON value against a CRD's structural OpenAPI v3 schema, collecting every error.
//! The same check the apiserver runs with strict field validation, so client and server agree.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use crate::error::{FieldPath, ValidationErrors, quoted_list};

/// Checks `value` against `schema`, appending one error per violation under `path`.
///
/// Objects whose schema lists `properties` are closed: any other field is an error, as with
/// `kubectl apply --validate=strict`. `x-kubernetes-preserve-unknown-fields` leaves a subtree to
/// the caller's own rules.
pub fn validate(
    schema: &JSONSchemaProps,
    value: &Value,
    path: &FieldPath,
    errs: &mut ValidationErrors,
) {
    if value.is_null() {
        if schema.nullable != Some(true)
            && schema.x_kubernetes_preserve_unknown_fields != Some(true)
        {
            errs.push(path, "must not be null");
        }
        return;
    }
    if schema.x_kubernetes_int_or_string == Some(true) {
        if !(value.is_string() || is_integer(value)) {
            errs.push(
                path,
                format!("must be an integer or a string, got {}", kind_of(value)),
            );
        }
        return;
    }
    let ty = schema.type_.as_deref();
    if ty.is_none()
        && schema.x_kubernetes_preserve_unknown_fields == Some(true)
        && schema.properties.is_none()
    {
        return;
    }
    if let Some(ty) = ty {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => is_integer(value),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            errs.push(
                path,
                format!("must be of type {ty}, got {}", kind_of(value)),
            );
            return;
        }
    }
    if let Some(allowed) = &schema.enum_
        && !allowed.iter().any(|a| a.0 == *value)
    {
        // `null` is listed for optional enums but is handled by `nullable` above.
        let names: Vec<String> = allowed
            .iter()
            .filter(|a| !a.0.is_null())
            .map(|a| display_scalar(&a.0))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        errs.push(
            path,
            format!(
                "unsupported value {}; supported values: {}",
                quote_value(value),
                quoted_list(&refs)
            ),
        );
    }
    match value {
        Value::Object(map) => validate_object(schema, map, path, errs),
        Value::Array(items) => {
            if let Some(min) = schema.min_items
                && (items.len() as i64) < min
            {
                if min == 1 {
                    errs.push(path, "must have at least 1 item");
                } else {
                    errs.push(path, format!("must have at least {min} items"));
                }
            }
            if let Some(max) = schema.max_items
                && (items.len() as i64) > max
            {
                errs.push(path, format!("must have at most {max} items"));
            }
            if let Some(JSONSchemaPropsOrArray::Schema(item_schema)) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &path.index(i), errs);
                }
            }
        }
        Value::String(s) => {
            let n = s.chars().count() as i64;
            if let Some(min) = schema.min_length
                && n < min
            {
                if min == 1 {
                    errs.push(path, "must not be empty");
                } else {
                    errs.push(path, format!("must be at least {min} characters long"));
                }
            }
            if let Some(max) = schema.max_length
                && n > max
            {
                errs.push(path, format!("must be at most {max} characters long"));
            }
            if let Some(pattern) = &schema.pattern {
                match regex::Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => {
                        errs.push(path, format!("must match the pattern {pattern}"));
                    }
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                if let Some(min) = schema.minimum {
                    let bad = if schema.exclusive_minimum == Some(true) {
                        f <= min
                    } else {
                        f < min
                    };
                    if bad {
                        errs.push(
                            path,
                            format!("must be greater than or equal to {}", trim_float(min)),
                        );
                    }
                }
                if let Some(max) = schema.maximum {
                    let bad = if schema.exclusive_maximum == Some(true) {
                        f >= max
                    } else {
                        f > max
                    };
                    if bad {
                        errs.push(
                            path,
                            format!("must be less than or equal to {}", trim_float(max)),
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

fn validate_object(
    schema: &JSONSchemaProps,
    map: &serde_json::Map<String, Value>,
    path: &FieldPath,
    errs: &mut ValidationErrors,
) {
    for req in schema.required.iter().flatten() {
        if !map.contains_key(req) {
            errs.push(&path.field(req), "required value");
        }
    }
    let preserve = schema.x_kubernetes_preserve_unknown_fields == Some(true);
    match (&schema.properties, &schema.additional_properties) {
        (Some(props), _) => {
            for (k, v) in map {
                match props.get(k) {
                    Some(s) => validate(s, v, &path.field(k), errs),
                    None if preserve => {}
                    None => {
                        let mut allowed: Vec<&str> = props.keys().map(String::as_str).collect();
                        allowed.sort_unstable();
                        errs.push(
                            &path.field(k),
                            format!("unknown field; allowed: {}", allowed.join(", ")),
                        );
                    }
                }
            }
        }
        (None, Some(JSONSchemaPropsOrBool::Schema(value_schema))) => {
            for (k, v) in map {
                validate(value_schema, v, &path.key(k), errs);
            }
        }
        // No declared shape: the caller owns this subtree (e.g. `metadata`).
        _ => {}
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn display_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn quote_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

fn trim_float(f: f64) -> String {
    if f.fract() == 0.0 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> JSONSchemaProps {
        serde_json::from_value(json!({
            "type": "object",
            "required": ["host"],
            "properties": {
                "host": {"type": "string", "minLength": 1},
                "log": {"type": "integer", "minimum": 0, "maximum": 2, "nullable": true},
                "scheme": {"type": "string", "enum": ["Bearer", "token"]},
                "tags": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "repos": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {"url": {"type": "string"}}}},
                "any": {"x-kubernetes-preserve-unknown-fields": true}
            }
        }))
        .expect("schema")
    }

    fn check(v: Value) -> Vec<String> {
        let mut e = ValidationErrors::default();
        validate(&schema(), &v, &FieldPath::root("spec"), &mut e);
        e.errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn collects_every_violation_with_its_path() {
        let got = check(json!({
            "log": 7, "scheme": "basic", "tags": [], "extra": 1,
            "repos": {"main": {"url": 3, "nope": true}}, "any": [1, "x"]
        }));
        assert_eq!(
            got,
            vec![
                "spec.host: required value",
                "spec.extra: unknown field; allowed: any, host, log, repos, scheme, tags",
                "spec.log: must be less than or equal to 2",
                "spec.repos[main].nope: unknown field; allowed: url",
                "spec.repos[main].url: must be of type string, got integer",
                "spec.scheme: unsupported value \"basic\"; supported values: \"Bearer\", \"token\"",
                "spec.tags: must have at least 1 item",
            ]
        );
    }

    #[test]
    fn nullable_and_types() {
        assert!(check(json!({"host": "a", "log": null})).is_empty());
        assert_eq!(
            check(json!({"host": "", "log": "1"})),
            vec![
                "spec.host: must not be empty",
                "spec.log: must be of type integer, got string"
            ]
        );
        assert_eq!(
            check(json!({"host": null})),
            vec!["spec.host: must not be null"]
        );
    }
}
