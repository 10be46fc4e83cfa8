//! `bbctl get`: Bottles and Agents as kubectl shows them: the server's table (printer columns)
//! aligned in columns, or the objects as YAML / JSON / names.

use super::table::render;
use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// bottle (bottles, bt), agent (agents, ag), proposal (proposals, prop) or runner (runners).
    #[arg(value_name = "TYPE")]
    kind: String,
    /// One object by name.
    name: Option<String>,
    /// Output: wide, yaml, json, name or jsonpath=TEMPLATE (default: a table).
    #[arg(short = 'o', long, value_name = "FORMAT")]
    output: Option<String>,
    /// After listing, keep printing a row for every change (table output only).
    #[arg(short = 'w', long)]
    watch: bool,
    /// Agents in every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector (`key=value,key2!=v`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    #[command(flatten)]
    labels: LabelColumns,
    #[command(flatten)]
    target: Target,
}

/// kubectl's label columns: `--show-labels` appends every label, `-L KEY` one column per key.
#[derive(Debug, Default, clap::Args)]
pub struct LabelColumns {
    /// Show all labels as the last column.
    #[arg(long)]
    show_labels: bool,
    /// A column for each of these label keys (`-L app -L tier` or `-L app,tier`).
    #[arg(
        short = 'L',
        long = "label-columns",
        value_name = "KEY",
        value_delimiter = ','
    )]
    keys: Vec<String>,
}

impl LabelColumns {
    fn header(&self) -> Vec<String> {
        // As kubectl: the part of the key after its prefix, upper-cased.
        let mut h: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_ascii_uppercase())
            .collect();
        if self.show_labels {
            h.push("LABELS".into());
        }
        h
    }

    fn cells(&self, labels: &serde_json::Value) -> Vec<String> {
        let value = |k: &str| labels.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let mut c: Vec<String> = self.keys.iter().map(|k| value(k).to_string()).collect();
        if self.show_labels {
            let mut all: Vec<String> = labels
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            all.sort();
            c.push(if all.is_empty() {
                "<none>".into()
            } else {
                all.join(",")
            });
        }
        c
    }
}

const GROUP: &str = "bot-bottle.dev";
const VERSION: &str = "v1alpha1";

/// (plural, namespaced) for a user's spelling of a type.
fn resource(kind: &str) -> Result<(&'static str, bool), CliError> {
    match super::target::bare_kind(&kind.to_ascii_lowercase()) {
        "bottle" | "bottles" | "bt" => Ok(("bottles", false)),
        "agent" | "agents" | "ag" => Ok(("agents", true)),
        "proposal" | "proposals" | "prop" => Ok(("proposals", true)),
        "agentpool" | "agentpools" | "pool" | "pools" => Ok(("agentpools", true)),
        other => Err(CliError::new(
            Kind::Usage,
            format!(
                "unknown type '{other}'; valid: bottle (bottles, bt), agent (agents, ag), proposal (proposals, prop), agentpool (agentpools, pool), runner (runners)"
            ),
        )),
    }
}

fn cell_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "<none>".into(),
        serde_json::Value::String(s) if s.is_empty() => "<none>".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(args: GetArgs) -> Result<(), CliError> {
    if matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "runner" | "runners"
    ) {
        let rt = super::runtime()?;
        return rt.block_on(async {
            let client = args.target.client_autostart().await?;
            super::runners::print(client, args.output.as_deref()).await
        });
    }
    let (plural, namespaced) = resource(&args.kind)?;
    let jsonpath = match args.output.as_deref() {
        None | Some("wide" | "yaml" | "json" | "name") => None,
        Some(o) => match o.strip_prefix("jsonpath=") {
            Some(t) => Some(t.to_string()),
            None => {
                return Err(CliError::new(
                    Kind::Usage,
                    format!("-o {o}: valid formats are wide, yaml, json, name, jsonpath=TEMPLATE"),
                ));
            }
        },
    };
    let table = matches!(args.output.as_deref(), None | Some("wide"));
    if !table && (args.labels.show_labels || !args.labels.keys.is_empty()) {
        return Err(CliError::new(
            Kind::Usage,
            "--show-labels and -L add table columns; they cannot be combined with -o yaml|json|name|jsonpath",
        ));
    }
    if args.watch && !table {
        return Err(CliError::new(
            Kind::Usage,
            "-w prints table rows; it cannot be combined with -o yaml|json|name|jsonpath",
        ));
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.target.client_autostart().await?;
        let ns = args.target.namespace();
        let mut path = format!("/apis/{GROUP}/{VERSION}");
        if namespaced && !args.all_namespaces {
            path.push_str(&format!("/namespaces/{ns}"));
        }
        path.push_str(&format!("/{plural}"));
        if let Some(n) = &args.name {
            path.push_str(&format!("/{n}"));
        }
        if let Some(sel) = &args.selector {
            path.push_str(&format!("?labelSelector={}", form_urlencoded(sel)));
        }
        let accept = if table {
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        } else {
            "application/json"
        };
        let req = http::Request::get(&path)
            .header(http::header::ACCEPT, accept)
            .body(Vec::new())
            .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
        let value: serde_json::Value = client
            .request(req)
            .await
            .map_err(|e| CliError::api("", e))?;
        match args.output.as_deref() {
            None | Some("wide") => {
                let with_ns = args.all_namespaces && namespaced;
                print_table(&value, with_ns, &ns, namespaced, &args.labels)?;
                if args.watch {
                    let scope = WatchScope {
                        plural,
                        namespaced,
                        with_ns,
                    };
                    watch_rows(&client, &path, &value, &scope, &args.labels).await?;
                }
                Ok(())
            }
            Some(_) if jsonpath.is_some() => {
                let template = jsonpath.clone().unwrap_or_default();
                let text = bb_crds::jsonpath::render(&template, &value)
                    .map_err(|e| CliError::new(Kind::Usage, format!("-o jsonpath: {e}")))?;
                // As kubectl: exactly the template's output; `{"\n"}` adds a newline.
                print!("{text}");
                Ok(())
            }
            Some("name") => {
                let singular = plural.trim_end_matches('s');
                for item in items(&value) {
                    println!(
                        "{singular}.{GROUP}/{}",
                        item["metadata"]["name"].as_str().unwrap_or_default()
                    );
                }
                Ok(())
            }
            Some("json") => {
                let text = serde_json::to_string_pretty(&listish(value))
                    .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
                println!("{text}");
                Ok(())
            }
            _ => {
                let text = serde_yaml::to_string(&listish(value))
                    .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
                print!("{text}");
                Ok(())
            }
        }
    })
}

/// Follows the collection from the listed resourceVersion, printing each changed object's row
/// (fetched as a one-row table, so the server's columns stay the only definition).
/// What a watch follows and how its rows are keyed.
#[derive(Debug, Clone, Copy)]
struct WatchScope {
    plural: &'static str,
    namespaced: bool,
    with_ns: bool,
}

async fn watch_rows(
    client: &kube::Client,
    path: &str,
    listed: &serde_json::Value,
    scope: &WatchScope,
    labels: &LabelColumns,
) -> Result<(), CliError> {
    let WatchScope {
        plural,
        namespaced,
        with_ns,
    } = *scope;
    use futures_util::StreamExt;
    let rv = listed["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0");
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{path}{sep}watch=true&resourceVersion={rv}");
    let req = http::Request::get(&url)
        .body(Vec::new())
        .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
    let mut events = client
        .request_events::<serde_json::Value>(req)
        .await
        .map_err(|e| CliError::api("watch", e))?
        .boxed();
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| CliError::api("watch", e))?;
        let (obj, deleted) = match ev {
            kube::api::WatchEvent::Added(o) | kube::api::WatchEvent::Modified(o) => (o, false),
            kube::api::WatchEvent::Deleted(o) => (o, true),
            _ => continue,
        };
        let meta = &obj["metadata"];
        let name = meta["name"].as_str().unwrap_or_default().to_string();
        let ns = meta["namespace"].as_str().unwrap_or_default().to_string();
        let one = if namespaced {
            format!("/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}/{name}")
        } else {
            format!("/apis/{GROUP}/{VERSION}/{plural}/{name}")
        };
        let mut row: Vec<String> = Vec::new();
        if with_ns {
            row.push(ns);
        }
        let req = http::Request::get(&one)
            .header(
                http::header::ACCEPT,
                "application/json;as=Table;v=v1;g=meta.k8s.io",
            )
            .body(Vec::new())
            .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
        match client.request::<serde_json::Value>(req).await {
            Ok(t) if !deleted => {
                row.extend(
                    t["rows"][0]["cells"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(cell_text),
                );
                row.extend(labels.cells(&meta["labels"]));
            }
            // Gone (or going): the name and what happened.
            _ => {
                row.push(name);
                row.push("<deleted>".into());
            }
        }
        println!("{}", row.join("   "));
    }
    Ok(())
}

fn form_urlencoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The objects of a list, or the one object.
fn items(v: &serde_json::Value) -> Vec<serde_json::Value> {
    match v.get("items").and_then(|i| i.as_array()) {
        Some(a) => a.clone(),
        None => vec![v.clone()],
    }
}

/// A single object as is; a list as kubectl prints it (`kind: List`).
fn listish(v: serde_json::Value) -> serde_json::Value {
    if v.get("items").is_some() {
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items(&v), "metadata": {"resourceVersion": ""}})
    } else {
        v
    }
}

fn print_table(
    v: &serde_json::Value,
    with_ns: bool,
    ns: &str,
    namespaced: bool,
    labels: &LabelColumns,
) -> Result<(), CliError> {
    let cols = v["columnDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        if namespaced && !with_ns {
            eprintln!("No resources found in {ns} namespace.");
        } else {
            eprintln!("No resources found");
        }
        return Ok(());
    }
    let mut header: Vec<String> = Vec::new();
    if with_ns {
        header.push("NAMESPACE".into());
    }
    header.extend(
        cols.iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_ascii_uppercase()),
    );
    header.extend(labels.header());
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = Vec::new();
            if with_ns {
                cells.push(
                    r["object"]["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            cells.extend(r["cells"].as_array().into_iter().flatten().map(cell_text));
            cells.extend(labels.cells(&r["object"]["metadata"]["labels"]));
            cells
        })
        .collect();
    print!("{}", render(&header, &body));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_their_short_names() {
        assert!(resource("ag").is_ok_and(|r| r == ("agents", true)));
        assert!(resource("agent.bot-bottle.dev").is_ok_and(|r| r == ("agents", true)));
        assert!(resource("pods").is_err());
    }
}
