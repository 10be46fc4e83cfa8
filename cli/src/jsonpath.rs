//! `-o jsonpath=TEMPLATE`: kubectl's template subset. Text outside `{}` is printed as is;
//! inside, a path of `.field`, `[n]`, `[*]` and `[?(@.field=="value")]` steps. Several matches
//! print space-separated; strings print bare, other values as JSON.

use serde_json::Value;

fn step<'a>(values: Vec<&'a Value>, path: &str) -> Result<Vec<&'a Value>, String> {
    let mut cur = values;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (field, tail) = r.split_at(end);
            if !field.is_empty() {
                cur = cur.into_iter().filter_map(|v| v.get(field)).collect();
            }
            rest = tail;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = r
                .find(']')
                .ok_or_else(|| format!("unclosed '[' in {path}"))?;
            let (inner, tail) = (&r[..close], &r[close + 1..]);
            cur = if inner == "*" {
                cur.into_iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a.iter().collect::<Vec<_>>(),
                        Value::Object(o) => o.values().collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let (field, want) = filter
                    .split_once("==")
                    .ok_or_else(|| format!("filter {inner} needs =="))?;
                let want = want.trim().trim_matches('"').trim_matches('\'');
                cur.into_iter()
                    .filter_map(|v| v.as_array())
                    .flatten()
                    .filter(|item| item.get(field.trim()).and_then(Value::as_str) == Some(want))
                    .collect()
            } else {
                let n: usize = inner
                    .parse()
                    .map_err(|_| format!("'{inner}' is not an index, * or a filter"))?;
                cur.into_iter().filter_map(|v| v.get(n)).collect()
            };
            rest = tail;
        } else {
            return Err(format!(
                "unexpected '{rest}' in {path}: paths start with . or ["
            ));
        }
    }
    Ok(cur)
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders `template` against `obj`.
pub fn render(template: &str, obj: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template}"))?;
        let expr = after[..close].trim();
        let values = step(vec![obj], expr)?;
        out.push_str(&values.iter().map(|v| show(v)).collect::<Vec<_>>().join(" "));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"phase": "Running"}}
        ]});
        assert_eq!(
            render("{.items[*].metadata.name}", &v).as_deref(),
            Ok("a b")
        );
        assert_eq!(
            render("first={.items[0].metadata.name}!", &v).as_deref(),
            Ok("first=a!")
        );
        assert_eq!(
            render(
                "{.items[0].status.conditions[?(@.type==\"Ready\")].status}",
                &v
            )
            .as_deref(),
            Ok("True")
        );
        assert_eq!(
            render("{.items[1].status}", &v).as_deref(),
            Ok("{\"phase\":\"Running\"}")
        );
        assert!(render("{items}", &v).is_err());
        assert!(render("{.items[x]}", &v).is_err());
    }
}
