//! kubectl's JSONPath, the one implementation: `bbctl get -o jsonpath=TEMPLATE` renders its
//! templates and the apiserver evaluates CRD printer columns with it. The template language: Text outside `{}` prints as is; inside,
//! a path (`.field`, `[n]`, `[a:b]`, `[*]`, `..field`, `[?(@.path OP value)]`), a quoted literal
//! (`{"\n"}`), or `{range PATH}...{end}`. Several matches print space-separated; strings print
//! bare, other values as JSON. Written by hand: the Rust JSONPath crates implement RFC 9535
//! queries, not kubectl's templates (literals, range/end, printing rules).

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Node {
    Text(String),
    Path(String),
    Range(String, Vec<Node>),
}

/// The values `path` (`.status.phase`, or `{.status.phase}` as a printer column writes it)
/// selects in `obj`.
pub fn query<'a>(obj: &'a Value, path: &str) -> Result<Vec<&'a Value>, String> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    select(obj, obj, path)
}

/// Renders `template` against `obj`, exactly as kubectl prints it (no newline added).
pub fn render(template: &str, obj: &Value) -> Result<String, String> {
    let nodes = parse(template)?;
    let mut out = String::new();
    emit(&nodes, obj, obj, &mut out)?;
    Ok(out)
}

fn parse(template: &str) -> Result<Vec<Node>, String> {
    let mut stack: Vec<(String, Vec<Node>)> = vec![(String::new(), Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            top(&mut stack).push(Node::Text(rest.to_string()));
            break;
        };
        if open > 0 {
            top(&mut stack).push(Node::Text(rest[..open].to_string()));
        }
        let (expr, tail) = action(&rest[open + 1..], template)?;
        rest = tail;
        if let Some(text) = literal(expr)? {
            top(&mut stack).push(Node::Text(text));
        } else if let Some(path) = expr.strip_prefix("range ") {
            stack.push((path.trim().to_string(), Vec::new()));
        } else if expr == "end" {
            if stack.len() < 2 {
                return Err(format!("{{end}} without a {{range}} in {template}"));
            }
            let (path, body) = stack.pop().unwrap_or_default();
            top(&mut stack).push(Node::Range(path, body));
        } else {
            top(&mut stack).push(Node::Path(expr.to_string()));
        }
    }
    if stack.len() > 1 {
        return Err(format!("{{range}} without an {{end}} in {template}"));
    }
    Ok(stack.pop().map(|(_, nodes)| nodes).unwrap_or_default())
}

fn top(stack: &mut [(String, Vec<Node>)]) -> &mut Vec<Node> {
    // The stack starts with the template's own level and never pops below it.
    &mut stack[stack.len() - 1].1
}

/// Splits `{...}`'s inside (after the `{`) from what follows, skipping braces inside quotes.
fn action<'a>(after: &'a str, template: &str) -> Result<(&'a str, &'a str), String> {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in after.char_indices() {
        match (quote, c) {
            (Some(_), _) if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, '}') => return Ok((after[..i].trim(), &after[i + 1..])),
            _ => {}
        }
    }
    Err(format!("unclosed '{{' in {template}"))
}

/// `"text"` with Go's escapes (`\n`, `\t`, `\"`, `\\`), as kubectl's `{"\n"}`.
fn literal(expr: &str) -> Result<Option<String>, String> {
    let Some(inner) = expr
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .or_else(|| expr.strip_prefix('\'').and_then(|e| e.strip_suffix('\'')))
    else {
        return Ok(None);
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('t') => '\t',
            Some('r') => '\r',
            Some(c @ ('"' | '\'' | '\\')) => c,
            other => {
                return Err(format!(
                    "unknown escape \\{} in {expr}",
                    other.unwrap_or(' ')
                ));
            }
        });
    }
    Ok(Some(out))
}

fn emit(nodes: &[Node], root: &Value, cur: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                let values = select(root, cur, p)?;
                out.push_str(&values.iter().map(|v| show(v)).collect::<Vec<_>>().join(" "));
            }
            Node::Range(p, body) => {
                for item in select(root, cur, p)? {
                    emit(body, root, item, out)?;
                }
            }
        }
    }
    Ok(())
}

/// Evaluates a path: `$` starts at the root, `@` or a leading `.` at the current value.
fn select<'a>(root: &'a Value, cur: &'a Value, path: &str) -> Result<Vec<&'a Value>, String> {
    let (start, rest) = match path {
        p if p.starts_with('$') => (root, &p[1..]),
        p if p.starts_with('@') => (cur, &p[1..]),
        p if p.starts_with('.') || p.starts_with('[') => (cur, p),
        p => return Err(format!("unexpected '{p}': paths start with . [ $ or @")),
    };
    steps(vec![start], rest, path)
}

fn steps<'a>(values: Vec<&'a Value>, rest: &str, path: &str) -> Result<Vec<&'a Value>, String> {
    let mut cur = values;
    let mut rest = rest;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let (field, tail) = field_name(r);
            let mut found = Vec::new();
            for v in cur {
                descend(v, &field, &mut found);
            }
            cur = found;
            rest = tail;
        } else if let Some(r) = rest.strip_prefix('.') {
            let (field, tail) = field_name(r);
            if !field.is_empty() {
                cur = cur.into_iter().filter_map(|v| v.get(&field)).collect();
            }
            rest = tail;
        } else if let Some(r) = rest.strip_prefix('[') {
            let close = bracket_end(r).ok_or_else(|| format!("unclosed '[' in {path}"))?;
            cur = subscript(cur, &r[..close], path)?;
            rest = &r[close + 1..];
        } else {
            return Err(format!("unexpected '{rest}' in {path}"));
        }
    }
    Ok(cur)
}

/// A field name up to the next unescaped `.` or `[`; `\.` is a dot inside the name
/// (`.metadata.annotations.bot-bottle\.dev/session-ca`).
fn field_name(r: &str) -> (String, &str) {
    let mut name = String::new();
    let mut chars = r.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some((_, '.'))) => {
                name.push('.');
                chars.next();
            }
            '.' | '[' => return (name, &r[i..]),
            c => name.push(c),
        }
    }
    (name, "")
}

/// Every value named `field` at any depth, in document order (kubectl's `..`).
fn descend<'a>(v: &'a Value, field: &str, found: &mut Vec<&'a Value>) {
    match v {
        Value::Object(o) => {
            if let Some(hit) = o.get(field) {
                found.push(hit);
            }
            o.values().for_each(|c| descend(c, field, found));
        }
        Value::Array(a) => a.iter().for_each(|c| descend(c, field, found)),
        _ => {}
    }
}

/// The `]` closing a subscript, skipping quoted text (a filter may compare with "a]b").
fn bracket_end(r: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in r.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

fn subscript<'a>(cur: Vec<&'a Value>, inner: &str, path: &str) -> Result<Vec<&'a Value>, String> {
    if inner == "*" {
        return Ok(cur.into_iter().flat_map(children).collect());
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let test = Filter::parse(filter)?;
        let mut kept = Vec::new();
        for item in cur.into_iter().flat_map(children) {
            if test.holds(item, path)? {
                kept.push(item);
            }
        }
        return Ok(kept);
    }
    if let Some((from, to)) = inner.split_once(':') {
        let bound = |s: &str| -> Result<Option<i64>, String> {
            let s = s.trim();
            (!s.is_empty())
                .then(|| {
                    s.parse()
                        .map_err(|_| format!("'{inner}' is not a slice in {path}"))
                })
                .transpose()
        };
        let (from, to) = (bound(from)?, bound(to.split(':').next().unwrap_or(""))?);
        return Ok(cur
            .into_iter()
            .filter_map(Value::as_array)
            .flat_map(|a| {
                let len = a.len() as i64;
                let at = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) } as usize;
                let (lo, hi) = (at(from.unwrap_or(0)), at(to.unwrap_or(len)));
                a.get(lo..hi.max(lo)).unwrap_or_default()
            })
            .collect());
    }
    let n: i64 = inner
        .trim()
        .parse()
        .map_err(|_| format!("'{inner}' is not an index, slice, * or filter in {path}"))?;
    Ok(cur
        .into_iter()
        .filter_map(|v| {
            let a = v.as_array()?;
            let i = if n < 0 { a.len() as i64 + n } else { n };
            usize::try_from(i).ok().and_then(|i| a.get(i))
        })
        .collect())
}

fn children(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Object(o) => o.values().collect(),
        _ => Vec::new(),
    }
}

/// `@.path`, `@.path OP literal` with OP one of == != < <= > >=.
struct Filter<'t> {
    path: &'t str,
    op: Option<(&'t str, Value)>,
}

impl<'t> Filter<'t> {
    fn parse(text: &'t str) -> Result<Self, String> {
        let text = text.trim();
        for op in ["==", "!=", "<=", ">=", "<", ">"] {
            if let Some((lhs, rhs)) = text.split_once(op) {
                let rhs = rhs.trim();
                let want = match literal(rhs)? {
                    Some(s) => Value::String(s),
                    None => serde_json::from_str(rhs)
                        .map_err(|_| format!("filter {text}: '{rhs}' is not a quoted string, number, true, false or null"))?,
                };
                return Ok(Self {
                    path: lhs.trim(),
                    op: Some((op, want)),
                });
            }
        }
        Ok(Self {
            path: text,
            op: None,
        })
    }

    fn holds(&self, item: &Value, path: &str) -> Result<bool, String> {
        let rel = self
            .path
            .strip_prefix('@')
            .ok_or_else(|| format!("filter in {path} must start with @"))?;
        let got = steps(vec![item], rel, path)?;
        let Some((op, want)) = &self.op else {
            return Ok(!got.is_empty());
        };
        Ok(got.into_iter().any(|v| compare(v, op, want)))
    }
}

fn compare(got: &Value, op: &str, want: &Value) -> bool {
    let order = match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match op {
        "==" => got == want,
        "!=" => got != want,
        "<" => order.is_some_and(|o| o.is_lt()),
        "<=" => order.is_some_and(|o| o.is_le()),
        ">" => order.is_some_and(|o| o.is_gt()),
        _ => order.is_some_and(|o| o.is_ge()),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let o = serde_json::json!({"spec": {"bottleRef": {"name": "b"}}, "status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let one = |p: &str| query(&o, p).expect(p).first().copied().cloned();
        assert_eq!(one(".spec.bottleRef.name"), Some(serde_json::json!("b")));
        assert_eq!(
            one(".status.conditions[?(@.type==\"Ready\")].status"),
            Some(serde_json::json!("True"))
        );
        assert_eq!(
            one("{.status.conditions[0].type}"),
            Some(serde_json::json!("Other"))
        );
        assert_eq!(one(".status.phase"), None);
    }

    fn list() -> Value {
        serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"phase": "Running", "restarts": 3}},
            {"metadata": {"name": "c"}, "status": {"phase": "Pending"}}
        ]})
    }

    #[test]
    fn paths_and_printing() {
        let v = list();
        let r = |t: &str| render(t, &v);
        assert_eq!(r("{.items[*].metadata.name}").as_deref(), Ok("a b c"));
        assert_eq!(
            r("first={.items[0].metadata.name}!").as_deref(),
            Ok("first=a!")
        );
        assert_eq!(r("{.items[-1].metadata.name}").as_deref(), Ok("c"));
        assert_eq!(r("{.items[0:2].metadata.name}").as_deref(), Ok("a b"));
        assert_eq!(r("{$.items[1].status.restarts}").as_deref(), Ok("3"));
        assert_eq!(r("{..name}").as_deref(), Ok("a b c"));
        let annotated =
            serde_json::json!({"metadata": {"annotations": {"bot-bottle.dev/ca": "x"}}});
        assert_eq!(
            render(r"{.metadata.annotations.bot-bottle\.dev/ca}", &annotated).as_deref(),
            Ok("x")
        );
        assert_eq!(
            r("{.items[1].status}").as_deref(),
            Ok("{\"phase\":\"Running\",\"restarts\":3}")
        );
        assert_eq!(r("{.items[0].nothing}").as_deref(), Ok(""));
    }

    #[test]
    fn filters_follow_nested_paths() {
        let v = list();
        let r = |t: &str| render(t, &v);
        assert_eq!(
            r("{.items[?(@.status.phase==\"Pending\")].metadata.name}").as_deref(),
            Ok("a c")
        );
        assert_eq!(
            r("{.items[?(@.status.phase!='Pending')].metadata.name}").as_deref(),
            Ok("b")
        );
        assert_eq!(
            r("{.items[?(@.status.restarts>2)].metadata.name}").as_deref(),
            Ok("b")
        );
        assert_eq!(
            r("{.items[?(@.status.conditions)].metadata.name}").as_deref(),
            Ok("a")
        );
        assert_eq!(
            r("{.items[0].status.conditions[?(@.type==\"Ready\")].status}").as_deref(),
            Ok("True")
        );
    }

    #[test]
    fn literals_and_ranges() {
        let v = list();
        let r = |t: &str| render(t, &v);
        assert_eq!(
            r(r#"{range .items[*]}{.metadata.name}{"\t"}{.status.phase}{"\n"}{end}"#).as_deref(),
            Ok("a\tPending\nb\tRunning\nc\tPending\n")
        );
        assert_eq!(
            r(r#"{.items[0].metadata.name}{"\n"}"#).as_deref(),
            Ok("a\n")
        );
        assert_eq!(r(r#"{"}"}"#).as_deref(), Ok("}"));
        assert_eq!(
            r("{range .items[?(@.status.phase==\"Pending\")]}[{.metadata.name}]{end}").as_deref(),
            Ok("[a][c]")
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        let v = list();
        for (t, says) in [
            ("{items}", "paths start with"),
            ("{.items[x]}", "not an index"),
            ("{.items[0]", "unclosed '{'"),
            ("{.items[0}", "unclosed '['"),
            ("{range .items[*]}{.a}", "without an {end}"),
            ("{end}", "without a {range}"),
            (r#"{"\q"}"#, "unknown escape"),
            ("{.items[?(@.a==nope)]}", "not a quoted string"),
        ] {
            let err = render(t, &v).expect_err(t);
            assert!(err.contains(says), "{t}: {err}");
        }
    }
}
