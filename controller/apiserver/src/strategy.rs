//! Per-kind behaviour of the API server, the way Kubernetes' registry strategies hold it: extra
//! admission rules, normalisation on write, and what a delete does first. The resource table
//! names each kind's strategy; the generic write and delete paths only call it.

use bb_crds::FieldError;
use serde_json::{Value, json};

/// A table column a core kind shows between Name and Age (CRDs declare theirs).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: &'static str,
    /// A JSON path, or `#data` / `#involved` for the counts and references tables compute.
    pub path: &'static str,
    pub description: &'static str,
}

const fn column(
    name: &'static str,
    ty: &'static str,
    path: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name,
        ty,
        path,
        description,
    }
}

/// What one kind adds to the generic paths. Every hook is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct Strategy {
    /// Columns of `kubectl get` for a core kind.
    pub columns: &'static [Column],
    /// Rules beyond the schema, run at admission once the schema holds: the field errors found.
    pub validate: Option<fn(&Value) -> Vec<FieldError>>,
    /// Normalisation applied on every write (the defaults the real apiserver fills in).
    pub normalise: Option<fn(&mut Value)>,
    /// Deleting one first deletes everything it contains (a Namespace's objects).
    pub delete_contents: bool,
}

/// Bottles: the semantic rules of a Bottle's own spec (`bb_crds::validate::bottle_spec`).
pub const BOTTLE: Strategy = Strategy {
    columns: &[],
    validate: Some(bottle_rules),
    normalise: None,
    delete_contents: false,
};

/// Secrets: `data` values are base64; `stringData` folds into `data`; `type` defaults to Opaque.
pub const SECRET: Strategy = Strategy {
    columns: &[
        column("Type", "string", ".type", "The type of the secret"),
        column("Data", "integer", "#data", "Number of keys in the secret"),
    ],
    validate: Some(secret_data_is_base64),
    normalise: Some(secret_defaults),
    delete_contents: false,
};

/// Namespaces: `status.phase` follows deletion; deleting one empties it.
pub const NAMESPACE: Strategy = Strategy {
    columns: &[column(
        "Status",
        "string",
        ".status.phase",
        "The status of the namespace",
    )],
    validate: None,
    normalise: Some(namespace_phase),
    delete_contents: true,
};

/// ConfigMaps: their key count.
pub const CONFIG_MAP: Strategy = Strategy {
    columns: &[column(
        "Data",
        "integer",
        "#data",
        "Number of keys in the config map (data and binaryData)",
    )],
    validate: None,
    normalise: None,
    delete_contents: false,
};

/// Events (both API groups): what happened to which object.
pub const EVENT: Strategy = Strategy {
    columns: &[
        column("Type", "string", ".type", "Event type"),
        column("Reason", "string", ".reason", "Reason"),
        column(
            "Object",
            "string",
            "#involved",
            "The object the event is about",
        ),
        column("Message", "string", ".message", "Message"),
    ],
    validate: None,
    normalise: None,
    delete_contents: false,
};

/// Leases: the holder in the table, as kubectl shows it; the spec's types checked.
pub const LEASE: Strategy = Strategy {
    columns: &[column(
        "Holder",
        "string",
        ".spec.holderIdentity",
        "The holder of the lease",
    )],
    validate: Some(lease_rules),
    normalise: None,
    delete_contents: false,
};

fn lease_rules(obj: &Value) -> Vec<FieldError> {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    let Some(spec) = obj.get("spec") else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    if let Err(e) = serde_json::from_value::<LeaseSpec>(spec.clone()) {
        errs.push(FieldError {
            path: "spec".into(),
            message: e.to_string(),
        });
    }
    for field in ["leaseDurationSeconds", "leaseTransitions"] {
        if spec
            .get(field)
            .and_then(Value::as_i64)
            .is_some_and(|n| n < 0)
        {
            errs.push(FieldError {
                path: format!("spec.{field}"),
                message: "must be greater than or equal to 0".into(),
            });
        }
    }
    errs
}

fn bottle_rules(obj: &Value) -> Vec<FieldError> {
    let Some(spec) = obj
        .get("spec")
        .and_then(|s| serde_json::from_value::<bb_crds::BottleSpec>(s.clone()).ok())
    else {
        return Vec::new();
    };
    let mut errs = bb_crds::ValidationErrors::default();
    bb_crds::validate::bottle_spec(&spec, &mut errs);
    errs.errors
}

/// Proposals: a decision must fit its tool (`bb_crds::proposal::validate`).
pub const PROPOSAL: Strategy = Strategy {
    columns: &[],
    validate: Some(proposal_rules),
    normalise: None,
    delete_contents: false,
};

fn proposal_rules(obj: &Value) -> Vec<FieldError> {
    let Some(spec) = obj
        .get("spec")
        .and_then(|s| serde_json::from_value::<bb_crds::ProposalSpec>(s.clone()).ok())
    else {
        return Vec::new();
    };
    let mut errs = bb_crds::ValidationErrors::default();
    bb_crds::proposal::validate(&spec, &mut errs);
    errs.errors
}

fn secret_data_is_base64(obj: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let Some(data) = obj.get("data").and_then(Value::as_object) else {
        return Vec::new();
    };
    data.iter()
        .filter(|(_, v)| {
            v.as_str()
                .is_none_or(|s| base64::engine::general_purpose::STANDARD.decode(s).is_err())
        })
        .map(|(k, _)| FieldError {
            path: format!("data[{k}]"),
            message: "must be base64".into(),
        })
        .collect()
}

fn secret_defaults(obj: &mut Value) {
    use base64::Engine;
    if let Some(sd) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
        && let Some(sd) = sd.as_object()
    {
        let data = obj
            .as_object_mut()
            .map(|m| m.entry("data").or_insert_with(|| json!({})));
        if let Some(Value::Object(d)) = data {
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default();
                d.insert(
                    k.clone(),
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
    if obj.get("type").is_none() {
        obj["type"] = json!("Opaque");
    }
}

fn namespace_phase(obj: &mut Value) {
    let phase = if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Active"
    };
    obj["status"] = json!({ "phase": phase });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_do_what_their_kind_needs() {
        let bad = json!({"data": {"ok": "aGk=", "bad": "%%%"}});
        let errs = secret_data_is_base64(&bad);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "data[bad]");
        let mut s = json!({"stringData": {"k": "hi"}});
        secret_defaults(&mut s);
        assert_eq!(s, json!({"data": {"k": "aGk="}, "type": "Opaque"}));
        let mut ns = json!({"metadata": {"deletionTimestamp": "x"}});
        namespace_phase(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
        let bottle = json!({"spec": {"extends": "Not_A_Name"}});
        assert!(!bottle_rules(&bottle).is_empty());
    }
}
