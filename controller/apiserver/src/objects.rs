//! What happens to an object on each write: server-set metadata (uid, timestamps, generation,
//! resourceVersion), the status subresource split, finalizers and deletion, garbage collection,
//! and admission (schema plus bot-bottle's rules). Storage is the `Store`; this is the strategy.

use serde_json::{Value, json};

use super::managed;
use super::resources::{self, Resource};
use super::select::{FieldSelector, LabelSelector};
use super::status::{ApiError, Cause, success};
use crate::store::{Record, Store, StoreError};

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOpts {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub subresource: Option<String>,
    /// The object already carries the managedFields server-side apply computed.
    pub apply: bool,
}

pub fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

fn new_uid() -> Result<String, ApiError> {
    let h = bb_home::pki::random_hex(16).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
}

/// Decodes a stored record into the object clients see (with its resourceVersion).
pub fn decode(rec: &Record) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&rec.value)
        .map_err(|e| ApiError::internal(format!("corrupt object: {e}")))?;
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rec.revision.to_string()));
    }
    Ok(v)
}

fn encode(obj: &Value) -> Result<Vec<u8>, ApiError> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&o).map_err(|e| ApiError::internal(e.to_string()))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn not_found(res: &Resource, name: &str) -> ApiError {
    ApiError::not_found(
        format!("{}.{} \"{name}\" not found", res.plural, res.group).replace(". \"", " \""),
    )
    .for_object(res.group, res.plural, name)
}

fn parse_rv(obj: &Value) -> Result<Option<i64>, ApiError> {
    match meta_str(obj, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion '{s}'"))),
    }
}

fn spec_view(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// Admission: the object must pass its CRD's schema (bot-bottle kinds), then its kind's own
/// rules (`Strategy::validate`); every error found is reported, as field causes.
fn admit(res: &Resource, obj: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or("");
    let mut errors = match &res.crd {
        Some(_) => bb_crds::manifest::check_object(obj),
        None => Vec::new(),
    };
    if errors.is_empty()
        && let Some(rules) = res.strategy.validate
    {
        errors = rules(obj);
    }
    if errors.is_empty() {
        return Ok(());
    }
    let causes: Vec<Cause> = errors
        .iter()
        .map(|e| Cause {
            kind: if e.message.starts_with("unknown field") {
                "FieldValueNotSupported"
            } else if e.message.starts_with("required value") {
                "FieldValueRequired"
            } else {
                "FieldValueInvalid"
            },
            field: e.path.clone(),
            message: e.message.clone(),
        })
        .collect();
    let detail: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(ApiError::invalid(format!(
        "{} \"{name}\" is invalid: {}",
        res.kind,
        detail.join(", ")
    ))
    .for_object(res.group, res.kind, name)
    .with_causes(causes))
}

/// Kind-specific normalisation done by the real apiserver on every write.
fn normalise(res: &Resource, obj: &mut Value) {
    if let Some(f) = res.strategy.normalise {
        f(obj);
    }
}

/// The server's view of every resource; cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    pub store: Store,
}

impl Registry {
    pub fn new(store: Store) -> Self {
        Registry { store }
    }

    fn require_namespace(&self, res: &Resource, ns: Option<&str>) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        let ns =
            ns.ok_or_else(|| ApiError::bad_request("a namespace is required for this resource"))?;
        let nsr = resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces resource"))?;
        match self.store.get(&nsr.key(None, ns))? {
            Some(rec) => {
                if decode(&rec)?
                    .pointer("/metadata/deletionTimestamp")
                    .is_some()
                {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!("namespace {ns} is being terminated"),
                    ));
                }
                Ok(())
            }
            None => Err(
                ApiError::not_found(format!("namespaces \"{ns}\" not found")).for_object(
                    "",
                    "namespaces",
                    ns,
                ),
            ),
        }
    }

    pub fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let rec = self
            .store
            .get(&res.key(ns, name))?
            .ok_or_else(|| not_found(res, name))?;
        decode(&rec)
    }

    /// A page of objects plus the list's resourceVersion and the key to continue after.
    pub fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: usize,
        continue_after: Option<&str>,
    ) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
        let prefix = res.namespace_prefix(ns);
        let unfiltered = *labels == LabelSelector::default() && *fields == FieldSelector::default();
        // Without selectors the store pages for us (one extra row tells whether more remain).
        let fetch = if unfiltered && limit > 0 {
            limit + 1
        } else {
            0
        };
        let (records, rev) = self.store.list(&prefix, continue_after, fetch)?;
        let mut out = Vec::new();
        let mut last_key = None;
        for (i, rec) in records.iter().enumerate() {
            if limit > 0 && out.len() == limit {
                let more = records[i..].iter().any(|r| {
                    decode(r)
                        .map(|o| labels.matches(&o) && fields.matches(&o))
                        .unwrap_or(false)
                });
                return Ok((out, rev, if more { last_key } else { None }));
            }
            let obj = decode(rec)?;
            if labels.matches(&obj) && fields.matches(&obj) {
                out.push(obj);
                last_key = Some(rec.key.clone());
            }
        }
        Ok((out, rev, None))
    }

    pub fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        self.check_type(res, &mut obj)?;
        let ns = self.bind_namespace(res, ns, &mut obj)?;
        self.require_namespace(res, ns.as_deref())?;
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            match meta.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => {
                    let suffix: String = bb_home::pki::random_hex(4)
                        .map_err(|e| ApiError::internal(e.to_string()))?
                        .chars()
                        .take(5)
                        .collect();
                    meta.insert("name".into(), json!(format!("{g}{suffix}")));
                }
                _ => {
                    return Err(ApiError::invalid(format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", res.kind))
                        .for_object(res.group, res.kind, "")
                        .with_causes(vec![Cause { kind: "FieldValueRequired", field: "metadata.name".into(), message: "Required value: name or generateName is required".into() }]));
                }
            }
        }
        let ts = now();
        meta.insert("uid".into(), json!(new_uid()?));
        meta.insert("creationTimestamp".into(), json!(ts));
        meta.insert("generation".into(), json!(1));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if !opts.apply {
            meta.remove("managedFields");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if res.status_subresource
            && res.crd.is_some()
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        normalise(res, &mut obj);
        if let (Some(m), false) = (&opts.field_manager, opts.apply) {
            managed::track_update(
                None,
                &mut obj,
                m,
                &res.api_version(),
                None,
                res.schema(),
                &ts,
            );
        }
        admit(res, &obj)?;
        if opts.dry_run {
            return Ok(obj);
        }
        let rec = self
            .store
            .create(&res.key(ns.as_deref(), &name), encode(&obj)?)
            .map_err(|e| match e {
                StoreError::AlreadyExists => ApiError::already_exists(
                    format!("{}.{} \"{name}\" already exists", res.plural, res.group)
                        .replace(". \"", " \""),
                )
                .for_object(res.group, res.plural, &name),
                other => other.into(),
            })?;
        decode(&rec)
    }

    /// The body must be an object of this resource's kind; fills in apiVersion, kind and
    /// metadata when the client left them out.
    fn check_type(&self, res: &Resource, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body must be a JSON or YAML object",
            ));
        }
        check_metadata(obj)?;
        let av = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let kind = obj.get("kind").and_then(Value::as_str).map(str::to_string);
        match (av, kind) {
            (Some(a), Some(k)) if !res.gvk_matches(&a, &k) => Err(ApiError::bad_request(format!(
                "the API version in the data ({a}) and kind ({k}) do not match the resource {} ({})",
                res.plural,
                res.api_version()
            ))),
            _ => {
                obj["apiVersion"] = json!(res.api_version());
                obj["kind"] = json!(res.kind);
                if obj.get("metadata").is_none() {
                    obj["metadata"] = json!({});
                }
                Ok(())
            }
        }
    }

    fn bind_namespace(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> Result<Option<String>, ApiError> {
        let body_ns = meta_str(obj, "namespace").map(str::to_string);
        if !res.namespaced {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("namespace");
            }
            return Ok(None);
        }
        let ns = match (ns, body_ns.as_deref()) {
            (Some(u), Some(b)) if !b.is_empty() && u != b => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (Some(u), _) => u.to_string(),
            (None, Some(b)) if !b.is_empty() => b.to_string(),
            _ => {
                return Err(ApiError::bad_request(
                    "a namespace is required for this resource",
                ));
            }
        };
        obj["metadata"]["namespace"] = json!(ns);
        Ok(Some(ns))
    }

    /// PUT: replaces the object (or its status), with optimistic concurrency.
    pub fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        self.check_type(res, &mut obj)?;
        let body_name = meta_str(&obj, "name").unwrap_or(name).to_string();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        obj["metadata"]["name"] = json!(name);
        let ns = self.bind_namespace(res, ns, &mut obj)?;
        let expected = parse_rv(&obj)?;
        if expected.is_none() && res.crd.is_some() {
            return Err(ApiError::invalid(format!(
                "{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                res.kind
            ))
            .for_object(res.group, res.kind, name));
        }
        let current = self.get(res, ns.as_deref(), name)?;
        self.replace(res, ns.as_deref(), name, &current, obj, expected, opts)
    }

    /// Common tail of update and patch: merge server-owned state, bump generation, admit, store.
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        current: &Value,
        mut obj: Value,
        expected: Option<i64>,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        let status_write = opts.subresource.as_deref() == Some("status");
        // Server-side apply has already scoped the change to status; other status writes
        // take only the status of the body.
        if status_write && !opts.apply {
            let status = obj.get("status").cloned();
            obj = current.clone();
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if res.status_subresource && !status_write {
            match current.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let cur_meta = current.get("metadata").cloned().unwrap_or(json!({}));
        let server_owned: &[&str] = if opts.apply {
            &[
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ]
        } else {
            &[
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
            ]
        };
        for f in server_owned {
            let f = *f;
            match cur_meta.get(f) {
                Some(v) => obj["metadata"][f] = v.clone(),
                None => {
                    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(f);
                    }
                }
            }
        }
        if status_write {
            let managed = obj.pointer("/metadata/managedFields").cloned();
            obj["metadata"] = cur_meta.clone();
            if let (true, Some(m)) = (opts.apply, managed) {
                obj["metadata"]["managedFields"] = m;
            }
        }
        if spec_view(&obj) != spec_view(current) {
            let g = cur_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        normalise(res, &mut obj);
        let ts = now();
        if let (Some(m), false) = (&opts.field_manager, opts.apply) {
            managed::track_update(
                Some(current),
                &mut obj,
                m,
                &res.api_version(),
                opts.subresource.as_deref(),
                res.schema(),
                &ts,
            );
        }
        self.store_replacement(res, ns, name, current, obj, expected, opts)
    }

    /// Admits and stores `obj` as the new state of `current`, deleting it instead when it is
    /// terminating and its last finalizer is gone.
    #[allow(clippy::too_many_arguments)]
    pub fn store_replacement(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        current: &Value,
        obj: Value,
        expected: Option<i64>,
        opts: &WriteOpts,
    ) -> Result<Value, ApiError> {
        admit(res, &obj)?;
        // A stale resourceVersion is a conflict even when the write would change nothing, as
        // in Kubernetes: two writers that both removed the same item must not both succeed.
        let current_rv = parse_rv(current).ok().flatten();
        if let (Some(want), Some(have)) = (expected, current_rv)
            && want != have
        {
            return Err(conflict_msg(
                res,
                name,
                StoreError::Conflict {
                    current: have,
                    expected: want,
                },
            ));
        }
        if obj == *current || opts.dry_run {
            return Ok(obj);
        }
        let key = res.key(ns, name);
        let expected = expected.or(current_rv);
        let finalizers_empty = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if obj.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
            let rec = self
                .store
                .delete(&key, expected)
                .map_err(|e| conflict_msg(res, name, e))?;
            let gone = decode(&rec)?;
            self.collect_garbage(&gone)?;
            return Ok(obj);
        }
        let rec = self
            .store
            .update(&key, expected, encode(&obj)?)
            .map_err(|e| conflict_msg(res, name, e))?;
        decode(&rec)
    }

    /// DELETE: removes the object, or marks it terminating while finalizers remain.
    pub fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let current = self.get(res, ns, name)?;
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && meta_str(&current, "uid") != Some(uid)
        {
            return Err(ApiError::conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&current, "uid").unwrap_or("")
            )));
        }
        let expected = match options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) => Some(
                rv.parse::<i64>()
                    .map_err(|_| ApiError::bad_request("invalid preconditions.resourceVersion"))?,
            ),
            None => parse_rv(&current)?,
        };
        let orphan = options.get("propagationPolicy").and_then(Value::as_str) == Some("Orphan")
            || options.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        let mut finalizers: Vec<Value> = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if res.strategy.delete_contents {
            if dry_run {
                return Ok((current, false));
            }
            self.delete_namespace_contents(meta_str(&current, "name").unwrap_or(""))?;
            finalizers.clear();
        }
        if !finalizers.is_empty() {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok((current, false));
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if dry_run {
                return Ok((marked, false));
            }
            let rec = self
                .store
                .update(&res.key(ns, name), expected, encode(&marked)?)
                .map_err(|e| conflict_msg(res, name, e))?;
            return Ok((decode(&rec)?, false));
        }
        if dry_run {
            return Ok((current, true));
        }
        let rec = self
            .store
            .delete(&res.key(ns, name), expected)
            .map_err(|e| conflict_msg(res, name, e))?;
        let gone = decode(&rec)?;
        if orphan {
            self.orphan_dependents(&gone)?;
        } else {
            self.collect_garbage(&gone)?;
        }
        Ok((gone, true))
    }

    fn delete_namespace_contents(&self, ns: &str) -> Result<(), ApiError> {
        for r in resources::all().iter().filter(|r| r.namespaced) {
            let (items, _) = self.store.list(&r.namespace_prefix(Some(ns)), None, 0)?;
            for rec in items {
                let _ = self.store.delete(&rec.key, None);
            }
        }
        Ok(())
    }

    fn dependents(&self, owner: &Value) -> Result<Vec<(&'static Resource, Value)>, ApiError> {
        let Some(uid) = meta_str(owner, "uid") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for r in resources::all() {
            let (items, _) = self.store.list(&r.prefix(), None, 0)?;
            for rec in items {
                // Most objects do not mention the uid at all; skip decoding those.
                if !rec.value.windows(uid.len()).any(|w| w == uid.as_bytes()) {
                    continue;
                }
                let obj = decode(&rec)?;
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    out.push((r, obj));
                }
            }
        }
        Ok(out)
    }

    /// Deletes every object whose owner reference points at the deleted `owner`.
    fn collect_garbage(&self, owner: &Value) -> Result<(), ApiError> {
        for (r, dep) in self.dependents(owner)? {
            let name = meta_str(&dep, "name").unwrap_or("").to_string();
            let ns = meta_str(&dep, "namespace").map(str::to_string);
            match self.delete(r, ns.as_deref(), &name, &json!({}), false) {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn orphan_dependents(&self, owner: &Value) -> Result<(), ApiError> {
        let uid = meta_str(owner, "uid").unwrap_or("").to_string();
        for (r, mut dep) in self.dependents(owner)? {
            let name = meta_str(&dep, "name").unwrap_or("").to_string();
            let ns = meta_str(&dep, "namespace").map(str::to_string);
            if let Some(refs) = dep
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|o| o.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
            }
            let _ = self
                .store
                .update(&r.key(ns.as_deref(), &name), None, encode(&dep)?);
        }
        Ok(())
    }

    /// Ensures the namespaces every fresh control plane has.
    pub fn bootstrap(&self) -> Result<(), ApiError> {
        let nsr = resources::find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces"))?;
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            bb_crds::common::DEFAULT_SECRET_NAMESPACE,
        ] {
            if self.store.get(&nsr.key(None, ns))?.is_none() {
                self.create(
                    nsr,
                    None,
                    json!({"metadata": {"name": ns}}),
                    &WriteOpts::default(),
                )?;
            }
        }
        Ok(())
    }
}

fn conflict_msg(res: &Resource, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict { .. } => ApiError::conflict(format!(
            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            res.plural, res.group
        ).replace(". \"", " \""))
        .for_object(res.group, res.plural, name),
        StoreError::NotFound => not_found(res, name),
        other => other.into(),
    }
}

/// The body of a successful immediate delete.
pub fn deleted_status(res: &Resource, obj: &Value) -> Value {
    success(json!({
        "name": meta_str(obj, "name").unwrap_or(""),
        "group": res.group,
        "kind": res.plural,
        "uid": meta_str(obj, "uid").unwrap_or(""),
    }))
}

/// The JSON type a well-known metadata field has in Kubernetes.
#[derive(Clone, Copy)]
enum MetaType {
    Str,
    Int,
    MapOfStr,
    ListOfStr,
    ListOfObj,
}

/// `metadata` and its well-known fields have the JSON types Kubernetes gives them (null means
/// absent): anything else is a 400 naming the field, before any code indexes into it.
fn check_metadata(obj: &Value) -> Result<(), ApiError> {
    use MetaType::*;
    let m = match obj.get("metadata") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad_request("metadata: must be an object")),
    };
    let fields = [
        ("name", Str),
        ("generateName", Str),
        ("namespace", Str),
        ("uid", Str),
        ("resourceVersion", Str),
        ("creationTimestamp", Str),
        ("deletionTimestamp", Str),
        ("generation", Int),
        ("deletionGracePeriodSeconds", Int),
        ("labels", MapOfStr),
        ("annotations", MapOfStr),
        ("finalizers", ListOfStr),
        ("ownerReferences", ListOfObj),
        ("managedFields", ListOfObj),
    ];
    for (field, want) in fields {
        let Some(v) = m.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        let ok = match want {
            Str => v.is_string(),
            Int => v.is_i64() || v.is_u64(),
            MapOfStr => v
                .as_object()
                .is_some_and(|o| o.values().all(Value::is_string)),
            ListOfStr => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            ListOfObj => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        };
        if !ok {
            let what = match want {
                Str => "a string",
                Int => "an integer",
                MapOfStr => "a map of strings",
                ListOfStr => "a list of strings",
                ListOfObj => "a list of objects",
            };
            return Err(ApiError::bad_request(format!(
                "metadata.{field}: must be {what}"
            )));
        }
    }
    Ok(())
}
