//! The resources this apiserver serves: their group/version/kind, scope, schema, printer
//! columns and admission rules. One table drives routing, discovery, OpenAPI and validation.

use super::strategy::{self, Strategy};
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};

/// A served resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// `status` is a subresource: main-resource writes keep it, status writes touch only it.
    pub status_subresource: bool,
    /// A CRD this server defines (bot-bottle kinds).
    pub crd: Option<CustomResourceDefinition>,
    /// What this kind adds to the generic write and delete paths.
    pub strategy: Strategy,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of every object of this resource.
    pub fn prefix(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/{g}/{}/", self.plural)
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }

    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn schema(&self) -> Option<&JSONSchemaProps> {
        self.crd
            .as_ref()?
            .spec
            .versions
            .first()?
            .schema
            .as_ref()?
            .open_api_v3_schema
            .as_ref()
    }

    pub fn printer_columns(&self) -> &[CustomResourceColumnDefinition] {
        self.crd
            .as_ref()
            .and_then(|c| c.spec.versions.first())
            .and_then(|v| v.additional_printer_columns.as_deref())
            .unwrap_or(&[])
    }

    pub fn gvk_matches(&self, api_version: &str, kind: &str) -> bool {
        api_version == self.api_version() && kind == self.kind
    }
}

fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        short_names: short,
        categories: &[],
        namespaced,
        status_subresource: false,
        crd: None,
        strategy: Strategy::default(),
    }
}

/// Every resource, in discovery order.
pub fn all() -> &'static [Resource] {
    static ALL: OnceLock<Vec<Resource>> = OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            Resource {
                status_subresource: true,
                strategy: strategy::NAMESPACE,
                ..core("namespaces", "namespace", "Namespace", &["ns"], false)
            },
            Resource {
                strategy: strategy::SECRET,
                ..core("secrets", "secret", "Secret", &[], true)
            },
            Resource {
                strategy: strategy::CONFIG_MAP,
                ..core("configmaps", "configmap", "ConfigMap", &["cm"], true)
            },
            Resource {
                strategy: strategy::EVENT,
                ..core("events", "event", "Event", &["ev"], true)
            },
            Resource {
                group: "events.k8s.io",
                version: "v1",
                plural: "events",
                singular: "event",
                kind: "Event",
                short_names: &["ev"],
                categories: &[],
                namespaced: true,
                status_subresource: false,
                crd: None,
                strategy: strategy::EVENT,
            },
            // Runners hold one as their heartbeat and claim Agents against it (cluster mode);
            // served here so that flow runs unchanged against the local control plane.
            Resource {
                group: "coordination.k8s.io",
                version: "v1",
                plural: "leases",
                singular: "lease",
                kind: "Lease",
                short_names: &[],
                categories: &[],
                namespaced: true,
                status_subresource: false,
                crd: None,
                strategy: strategy::LEASE,
            },
            Resource {
                group: "apiextensions.k8s.io",
                version: "v1",
                plural: "customresourcedefinitions",
                singular: "customresourcedefinition",
                kind: "CustomResourceDefinition",
                short_names: &["crd", "crds"],
                categories: &["api-extensions"],
                namespaced: false,
                status_subresource: true,
                crd: None,
                strategy: Strategy::default(),
            },
            Resource {
                group: bb_crds::GROUP,
                version: bb_crds::VERSION,
                plural: "bottles",
                singular: "bottle",
                kind: "Bottle",
                short_names: &["bt"],
                categories: &["bot-bottle"],
                namespaced: false,
                status_subresource: true,
                crd: Some(bb_crds::crd::all().swap_remove(0)),
                strategy: strategy::BOTTLE,
            },
            Resource {
                group: bb_crds::GROUP,
                version: bb_crds::VERSION,
                plural: "agents",
                singular: "agent",
                kind: "Agent",
                short_names: &["ag"],
                categories: &["bot-bottle"],
                namespaced: true,
                status_subresource: true,
                crd: Some(bb_crds::crd::all().swap_remove(1)),
                strategy: Strategy::default(),
            },
            Resource {
                group: bb_crds::GROUP,
                version: bb_crds::VERSION,
                plural: "proposals",
                singular: "proposal",
                kind: "Proposal",
                short_names: &["prop"],
                categories: &["bot-bottle"],
                namespaced: true,
                status_subresource: true,
                crd: Some(bb_crds::crd::all().swap_remove(2)),
                strategy: strategy::PROPOSAL,
            },
            Resource {
                group: bb_crds::GROUP,
                version: bb_crds::VERSION,
                plural: "agentpools",
                singular: "agentpool",
                kind: "AgentPool",
                short_names: &["pool"],
                categories: &["bot-bottle"],
                namespaced: true,
                status_subresource: true,
                crd: Some(bb_crds::crd::all().swap_remove(3)),
                strategy: Strategy::default(),
            },
        ]
    })
}

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The groups served under `/apis`, in order, with their versions.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in all() {
        if !r.group.is_empty() && !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}
