//! Field-addressed validation errors: every rule reports the full path of the offending field
//! (`spec.egress.routes[2].auth.scheme`) and what would be valid, and all are collected at once.

use std::fmt;

/// A dotted field path in the style of Kubernetes' `field.Path`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root(name: &str) -> Self {
        FieldPath(name.to_string())
    }

    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, k: &str) -> Self {
        FieldPath(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every violated rule of one object, in the order the checks ran.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationErrors {
    /// What the errors are about, e.g. `Bottle/dev`; empty when not known.
    pub object: String,
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn new(object: impl Into<String>) -> Self {
        ValidationErrors {
            object: object.into(),
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.as_str().to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn extend(&mut self, other: ValidationErrors) {
        self.errors.extend(other.errors);
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The paths alone, in order: what table-driven tests compare.
    pub fn paths(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.path.as_str()).collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let what = if self.object.is_empty() {
            "object".to_string()
        } else {
            self.object.clone()
        };
        write!(
            f,
            "{what} is invalid ({n} error{})",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// Joins names for "allowed: a, b" style messages.
pub fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// Quotes names for "supported values: \"a\", \"b\"" style messages.
pub fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compose_like_kubernetes() {
        let p = FieldPath::root("spec")
            .field("egress")
            .field("routes")
            .index(2)
            .field("auth")
            .field("scheme");
        assert_eq!(p.as_str(), "spec.egress.routes[2].auth.scheme");
        let r = FieldPath::root("spec")
            .field("gitGate")
            .field("repos")
            .key("main");
        assert_eq!(r.as_str(), "spec.gitGate.repos[main]");
    }

    #[test]
    fn display_lists_every_error() {
        let mut e = ValidationErrors::new("Bottle/dev");
        e.push(&FieldPath::root("spec").field("a"), "bad");
        e.push(&FieldPath::root("spec").field("b"), "worse");
        let s = e.to_string();
        assert!(s.starts_with("Bottle/dev is invalid (2 errors)"), "{s}");
        assert!(
            s.contains("spec.a: bad") && s.contains("spec.b: worse"),
            "{s}"
        );
    }
}
