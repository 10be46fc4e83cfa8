//! Apple's `container` CLI as pure functions: the argv of every command the backend runs, and
//! the JSON it prints parsed into typed values, so both are tested without a Mac.
//!
//! Shapes follow Apple container 1.0 as the reference recorded them: `inspect` prints a list (or
//! one object) whose `status.networks[].ipv4Address` carries a CIDR suffix; `image inspect` names
//! the image by `id`, `digest` or `ID`; `builder status` prints a list or one object. The bare
//! `status` string with `networks[].address` beside it is read too. The CLI has no server-side
//! label filter, so listings are filtered here.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The executable.
pub const CLI: &str = "container";
/// The agent container idles on this (int32 max seconds); all work goes through `exec`.
pub const IDLE_SECONDS: &str = "2147483647";
/// The fallback resolver when the host's cannot be read.
pub const FALLBACK_DNS: &str = "1.1.1.1";

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn label_args(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect()
}

/// `container system status`: the service answers (exit code only).
pub fn system_status() -> Vec<String> {
    argv(&["system", "status"])
}

/// `container network create`: the agent's network is `--internal` (host-only: no route out,
/// no DNS); the sidecar's egress network is NAT.
pub fn network_create(
    name: &str,
    internal: bool,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut a = argv(&["network", "create"]);
    a.extend(label_args(labels));
    if internal {
        a.push("--internal".into());
    }
    a.push(name.into());
    a
}

pub fn network_delete(name: &str) -> Vec<String> {
    argv(&["network", "delete", name])
}

/// `network create` reports an existing network on stderr; that is success (a retry).
pub fn already_exists(stderr: &str) -> bool {
    stderr.to_ascii_lowercase().contains("already exists")
}

/// A directory bind mount (the runtime cannot bind single files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub readonly: bool,
}

fn mount_args(mounts: &[Mount]) -> Vec<String> {
    mounts
        .iter()
        .flat_map(|m| {
            let mut spec = format!("type=bind,source={},target={}", m.source, m.target);
            if m.readonly {
                spec.push_str(",readonly");
            }
            ["--mount".to_string(), spec]
        })
        .collect()
}

/// `--env K=V` for each literal. A container's env is in its configuration, so nothing secret
/// may be here: secrets reach the sidecar on an exec's stdin and a session through its CLI
/// process's environment.
fn env_args(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter()
        .flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")])
        .collect()
}

/// What `run` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub name: String,
    /// In order: the first becomes eth0 and gives the default route and resolv.conf.
    pub networks: Vec<String>,
    pub dns: Option<String>,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    /// Memory-backed directories: where the sidecar keeps its CA key, tokens and git keys.
    pub tmpfs: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub command: Vec<String>,
}

/// `container run --detach`.
pub fn run(r: &Run) -> Vec<String> {
    let mut a = argv(&["run", "--detach", "--name", &r.name]);
    for n in &r.networks {
        a.push("--network".into());
        a.push(n.clone());
    }
    if let Some(d) = &r.dns {
        a.push("--dns".into());
        a.push(d.clone());
    }
    a.extend(label_args(&r.labels));
    a.extend(env_args(&r.env));
    a.extend(mount_args(&r.mounts));
    for t in &r.tmpfs {
        a.push("--tmpfs".into());
        a.push(t.clone());
    }
    a.push(r.image.clone());
    a.extend(r.command.iter().cloned());
    a
}

/// The sidecar: the NAT network first (its route out and resolver), the agent's internal
/// network second, and an explicit resolver, since the NAT gateway routes but does not resolve.
/// No env: everything it holds arrives on an exec's stdin.
pub fn sidecar_run(
    name: &str,
    (egress_network, internal_network): (&str, &str),
    dns: &str,
    mounts: Vec<Mount>,
    labels: BTreeMap<String, String>,
    image: &str,
) -> Run {
    Run {
        name: name.into(),
        networks: vec![egress_network.into(), internal_network.into()],
        dns: Some(dns.into()),
        env: BTreeMap::new(),
        mounts,
        tmpfs: vec![],
        labels,
        image: image.into(),
        command: vec![],
    }
}

/// The agent: on the internal network only (no route out, no DNS), idling until exec'd.
pub fn agent_run(
    name: &str,
    internal_network: &str,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    image: &str,
) -> Run {
    Run {
        name: name.into(),
        networks: vec![internal_network.into()],
        dns: None,
        env,
        mounts: vec![],
        tmpfs: vec![],
        labels,
        image: image.into(),
        command: vec!["sleep".into(), IDLE_SECONDS.into()],
    }
}

/// `container delete --force`.
pub fn delete(name: &str) -> Vec<String> {
    argv(&["delete", "--force", name])
}

/// `container exec`: `interactive` passes stdin, `tty` allocates a terminal. `env_names` go
/// by name only: their values travel in the `container` process's own environment.
pub fn exec(
    name: &str,
    user: Option<&str>,
    workdir: Option<&str>,
    interactive: bool,
    tty: bool,
    env_names: &[String],
    command: &[String],
) -> Vec<String> {
    let mut a = argv(&["exec"]);
    if let Some(u) = user {
        a.push("--user".into());
        a.push(u.into());
    }
    if interactive {
        a.push("--interactive".into());
    }
    if tty {
        a.push("--tty".into());
    }
    if let Some(w) = workdir {
        a.push("--workdir".into());
        a.push(w.into());
    }
    for n in env_names {
        a.push("--env".into());
        a.push(n.clone());
    }
    a.push(name.into());
    a.extend(command.iter().cloned());
    a
}

/// `container cp HOST NAME:PATH` (only into a running container).
pub fn cp_in(host_path: &str, name: &str, path: &str) -> Vec<String> {
    argv(&["cp", host_path, &format!("{name}:{path}")])
}

/// `container build`, with the resolver the builder should use.
pub fn build(
    tag: &str,
    dns: &str,
    build_args: &BTreeMap<String, String>,
    dockerfile: Option<&str>,
    context: &str,
) -> Vec<String> {
    let mut a = argv(&["build", "-t", tag, "--dns", dns]);
    for (k, v) in build_args {
        a.push("--build-arg".into());
        a.push(format!("{k}={v}"));
    }
    if let Some(f) = dockerfile {
        a.push("-f".into());
        a.push(f.into());
    }
    a.push(context.into());
    a
}

pub fn stop(name: &str) -> Vec<String> {
    argv(&["stop", name])
}

/// `container kill --signal`: a hang-up makes the sidecar reload its policy at once.
pub fn kill(name: &str, signal: &str) -> Vec<String> {
    argv(&["kill", "--signal", signal, name])
}

/// `container logs`, the last `tail` lines, optionally following.
pub fn logs(name: &str, follow: bool, tail: Option<u64>) -> Vec<String> {
    let mut a = argv(&["logs"]);
    if follow {
        a.push("--follow".into());
    }
    if let Some(n) = tail {
        a.push("-n".into());
        a.push(n.to_string());
    }
    a.push(name.into());
    a
}

pub fn image_list() -> Vec<String> {
    argv(&["image", "list", "--format", "json"])
}

pub fn image_delete(image: &str) -> Vec<String> {
    argv(&["image", "delete", image])
}

pub fn image_pull(image: &str) -> Vec<String> {
    argv(&["image", "pull", image])
}

pub fn list_all() -> Vec<String> {
    argv(&["list", "--all", "--format", "json"])
}

pub fn network_list() -> Vec<String> {
    argv(&["network", "list", "--format", "json"])
}

pub fn inspect(name: &str) -> Vec<String> {
    argv(&["inspect", name])
}

pub fn image_inspect(image: &str) -> Vec<String> {
    argv(&["image", "inspect", image])
}

pub fn builder_status() -> Vec<String> {
    argv(&["builder", "status", "--format", "json"])
}

/// The builder's own resolver check: a lookup inside the `buildkit` container.
pub fn builder_probe() -> Vec<String> {
    argv(&["exec", "buildkit", "getent", "hosts", "deb.debian.org"])
}

pub fn builder_stop() -> Vec<String> {
    argv(&["builder", "stop"])
}

pub fn builder_start(dns: &str) -> Vec<String> {
    argv(&["builder", "start", "--dns", dns])
}

/// What the CLI printed could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("`container {command}` printed JSON of an unexpected shape: {detail}")]
    Shape {
        command: &'static str,
        detail: String,
    },
    #[error("{0} is not attached to network {1}")]
    NotOnNetwork(String, String),
    #[error("{0} has no IPv4 address on network {1}")]
    NoAddress(String, String),
}

/// A list, or one object where a list was expected.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(v) => v,
            OneOrMany::One(t) => vec![t],
        }
    }
}

/// A container's place on a network. 1.0 records `ipv4Address`; later releases print
/// `address`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    #[serde(default)]
    pub network: String,
    #[serde(default, rename = "ipv4Address", alias = "address")]
    pub ipv4_address: Option<String>,
}

/// `status` as 1.0 records it (an object with `state` and `networks`), or as a bare state
/// string (later releases, which put `networks` beside it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum StatusField {
    State(String),
    Object {
        #[serde(default)]
        state: Option<String>,
        #[serde(default)]
        networks: Option<Vec<Attachment>>,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStatus {
    pub state: Option<String>,
    pub networks: Option<Vec<Attachment>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ContainerConfig {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawContainer {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    configuration: ContainerConfig,
    #[serde(default)]
    status: Option<StatusField>,
    #[serde(default)]
    networks: Option<Vec<Attachment>>,
}

/// One container as `list --format json` and `inspect` print it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(from = "RawContainer")]
pub struct Container {
    /// Its name (the CLI names containers by id).
    pub id: String,
    pub configuration: ContainerConfig,
    pub status: ContainerStatus,
}

impl From<RawContainer> for Container {
    fn from(r: RawContainer) -> Container {
        let (state, networks) = match r.status {
            Some(StatusField::State(s)) => (Some(s), None),
            Some(StatusField::Object { state, networks }) => (state, networks),
            None => (None, None),
        };
        Container {
            id: r
                .id
                .or_else(|| r.configuration.id.clone())
                .unwrap_or_default(),
            configuration: r.configuration,
            status: ContainerStatus {
                state,
                networks: networks.or(r.networks),
            },
        }
    }
}

impl Container {
    pub fn running(&self) -> bool {
        self.status.state.as_deref() == Some("running")
    }
}

fn shape(command: &'static str, e: impl std::fmt::Display) -> ParseError {
    ParseError::Shape {
        command,
        detail: e.to_string(),
    }
}

/// `list --all --format json`, keeping those carrying every label of `selector`.
pub fn parse_list(
    json: &str,
    selector: &BTreeMap<String, String>,
) -> Result<Vec<Container>, ParseError> {
    let all: OneOrMany<Container> = serde_json::from_str(json).map_err(|e| shape("list", e))?;
    Ok(all
        .into_vec()
        .into_iter()
        .filter(|c| {
            selector
                .iter()
                .all(|(k, v)| c.configuration.labels.get(k) == Some(v))
        })
        .collect())
}

/// The IPv4 address (CIDR suffix dropped) of `name` on `network`, from `inspect`.
pub fn parse_ipv4(json: &str, name: &str, network: &str) -> Result<String, ParseError> {
    let all: OneOrMany<Container> = serde_json::from_str(json).map_err(|e| shape("inspect", e))?;
    let c = all
        .into_vec()
        .into_iter()
        .next()
        .ok_or_else(|| shape("inspect", "an empty list"))?;
    let nets = c
        .status
        .networks
        .ok_or_else(|| shape("inspect", "no status.networks"))?;
    let on = nets
        .into_iter()
        .find(|a| a.network == network)
        .ok_or_else(|| ParseError::NotOnNetwork(name.into(), network.into()))?;
    let addr = on
        .ipv4_address
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ParseError::NoAddress(name.into(), network.into()))?;
    let ip = addr.split('/').next().unwrap_or_default().to_string();
    ip.parse::<std::net::Ipv4Addr>()
        .map_err(|_| ParseError::NoAddress(name.into(), network.into()))?;
    Ok(ip)
}

/// One network as `network list --format json` prints it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Network {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub configuration: NetworkConfig,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct NetworkConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// Its name: `configuration.name`, else the id (1.0 prints both, equal).
    pub fn name(&self) -> &str {
        self.configuration.name.as_deref().unwrap_or(&self.id)
    }
}

/// `network list --format json`, keeping those carrying every label of `selector`.
pub fn parse_networks(
    json: &str,
    selector: &BTreeMap<String, String>,
) -> Result<Vec<Network>, ParseError> {
    let all: OneOrMany<Network> =
        serde_json::from_str(json).map_err(|e| shape("network list", e))?;
    Ok(all
        .into_vec()
        .into_iter()
        .filter(|n| {
            selector
                .iter()
                .all(|(k, v)| n.configuration.labels.get(k) == Some(v))
        })
        .collect())
}

/// The references `image list --format json` prints: `reference`, else `configuration.name`,
/// else `name` of each entry.
pub fn parse_image_names(json: &str) -> Result<Vec<String>, ParseError> {
    let all: OneOrMany<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| shape("image list", e))?;
    Ok(all
        .into_vec()
        .iter()
        .filter_map(|v| {
            ["/reference", "/configuration/name", "/name"]
                .iter()
                .find_map(|p| v.pointer(p).and_then(|s| s.as_str()))
                .map(str::to_string)
        })
        .collect())
}

/// The image's id from `image inspect`: the first of `id`, `digest`, `ID`.
pub fn parse_image_id(json: &str) -> Result<String, ParseError> {
    let all: OneOrMany<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| shape("image inspect", e))?;
    let first = all
        .into_vec()
        .into_iter()
        .next()
        .ok_or_else(|| shape("image inspect", "an empty list"))?;
    ["id", "digest", "ID"]
        .iter()
        .find_map(|k| {
            first
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
        .ok_or_else(|| shape("image inspect", "no id, digest or ID"))
}

/// The builder as `builder status --format json` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builder {
    pub running: bool,
    pub nameservers: Vec<String>,
}

/// `builder status --format json`; anything unreadable is a builder that is not running.
pub fn parse_builder(json: &str) -> Builder {
    let Ok(all) = serde_json::from_str::<OneOrMany<serde_json::Value>>(json) else {
        return Builder::default();
    };
    let Some(b) = all.into_vec().into_iter().next() else {
        return Builder::default();
    };
    Builder {
        running: b.pointer("/status/state").and_then(|s| s.as_str()) == Some("running"),
        nameservers: b
            .pointer("/configuration/dns/nameservers")
            .and_then(|n| n.as_array())
            .map(|n| {
                n.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn usable(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>().is_ok_and(|a| {
        !(a.is_loopback() || a.is_link_local() || a.is_multicast() || a.is_unspecified())
    })
}

/// The host resolver from `scutil --dns`: the first usable IPv4 nameserver of a "Directly
/// Reachable" resolver (skipping VPN and Tailscale resolvers), else of any resolver.
pub fn parse_scutil_dns(text: &str) -> Option<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("resolver #") || blocks.is_empty() {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let first_in = |b: &String| {
        b.lines().find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("nameserver[")?;
            let value = rest.split_once(':')?.1.trim();
            usable(value).then(|| value.to_string())
        })
    };
    blocks
        .iter()
        .filter(|b| b.contains("Directly Reachable Address"))
        .find_map(first_in)
        .or_else(|| blocks.iter().find_map(first_in))
}

/// The resolver for the sidecar and the builder: an explicit override, else the host's, else
/// the fallback.
pub fn dns_server(override_: Option<&str>, scutil: Option<&str>) -> String {
    override_
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| scutil.and_then(parse_scutil_dns))
        .unwrap_or_else(|| FALLBACK_DNS.to_string())
}

/// Whether the builder must be restarted before a build: not running, its resolver check
/// failed, or an explicit override it does not carry.
pub fn builder_needs_restart(b: &Builder, probe_ok: bool, override_: Option<&str>) -> bool {
    if !b.running || !probe_ok {
        return true;
    }
    override_
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .is_some_and(|o| !b.nameservers.iter().any(|n| n == o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("bot-bottle.dev/agent-uid".to_string(), "u1".to_string())])
    }

    #[test]
    fn argv_of_every_command() {
        let l = labels();
        let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
            (system_status(), vec!["system", "status"]),
            (
                network_create("bb-net", true, &l),
                vec![
                    "network",
                    "create",
                    "--label",
                    "bot-bottle.dev/agent-uid=u1",
                    "--internal",
                    "bb-net",
                ],
            ),
            (
                network_create("bb-egress", false, &l),
                vec![
                    "network",
                    "create",
                    "--label",
                    "bot-bottle.dev/agent-uid=u1",
                    "bb-egress",
                ],
            ),
            (
                network_delete("bb-net"),
                vec!["network", "delete", "bb-net"],
            ),
            (delete("bb-a"), vec!["delete", "--force", "bb-a"]),
            (
                exec(
                    "bb-a",
                    Some("root"),
                    None,
                    true,
                    false,
                    &[],
                    &s(&["sh", "-s"]),
                ),
                vec![
                    "exec",
                    "--user",
                    "root",
                    "--interactive",
                    "bb-a",
                    "sh",
                    "-s",
                ],
            ),
            (
                exec(
                    "bb-a",
                    None,
                    Some("/workspace"),
                    true,
                    true,
                    &s(&["TOKEN"]),
                    &s(&["codex"]),
                ),
                vec![
                    "exec",
                    "--interactive",
                    "--tty",
                    "--workdir",
                    "/workspace",
                    "--env",
                    "TOKEN",
                    "bb-a",
                    "codex",
                ],
            ),
            (
                cp_in("/tmp/src", "bb-a", "/home/agent/src"),
                vec!["cp", "/tmp/src", "bb-a:/home/agent/src"],
            ),
            (
                build(
                    "bot-bottle/agent:1",
                    "9.9.9.9",
                    &BTreeMap::from([("BASE".to_string(), "b:1".to_string())]),
                    Some("/d/Dockerfile"),
                    "/d",
                ),
                vec![
                    "build",
                    "-t",
                    "bot-bottle/agent:1",
                    "--dns",
                    "9.9.9.9",
                    "--build-arg",
                    "BASE=b:1",
                    "-f",
                    "/d/Dockerfile",
                    "/d",
                ],
            ),
            (
                build("x", "1.1.1.1", &BTreeMap::new(), None, "."),
                vec!["build", "-t", "x", "--dns", "1.1.1.1", "."],
            ),
            (list_all(), vec!["list", "--all", "--format", "json"]),
            (stop("bb-a"), vec!["stop", "bb-a"]),
            (
                kill("bb-s", "SIGHUP"),
                vec!["kill", "--signal", "SIGHUP", "bb-s"],
            ),
            (logs("bb-a", false, None), vec!["logs", "bb-a"]),
            (
                logs("bb-a", true, Some(5)),
                vec!["logs", "--follow", "-n", "5", "bb-a"],
            ),
            (image_list(), vec!["image", "list", "--format", "json"]),
            (image_delete("i:1"), vec!["image", "delete", "i:1"]),
            (image_pull("i:1"), vec!["image", "pull", "i:1"]),
            (network_list(), vec!["network", "list", "--format", "json"]),
            (inspect("bb-a"), vec!["inspect", "bb-a"]),
            (image_inspect("img"), vec!["image", "inspect", "img"]),
            (
                builder_status(),
                vec!["builder", "status", "--format", "json"],
            ),
            (
                builder_probe(),
                vec!["exec", "buildkit", "getent", "hosts", "deb.debian.org"],
            ),
            (builder_stop(), vec!["builder", "stop"]),
            (
                builder_start("9.9.9.9"),
                vec!["builder", "start", "--dns", "9.9.9.9"],
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, s(&want));
        }
        assert!(already_exists("Error: network bb-net Already Exists"));
        assert!(!already_exists("Error: permission denied"));
    }

    #[test]
    fn the_sidecar_takes_nat_first_and_an_explicit_resolver_and_no_env() {
        let mounts = vec![
            Mount {
                source: "/s/ca".into(),
                target: "/run/ca".into(),
                readonly: false,
            },
            Mount {
                source: "/s/policy".into(),
                target: "/etc/egress".into(),
                readonly: true,
            },
        ];
        let r = run(&sidecar_run(
            "bb-side",
            ("bb-egress", "bb-net"),
            "9.9.9.9",
            mounts,
            labels(),
            "bot-bottle/sidecar:1",
        ));
        let want = s(&[
            "run",
            "--detach",
            "--name",
            "bb-side",
            "--network",
            "bb-egress",
            "--network",
            "bb-net",
            "--dns",
            "9.9.9.9",
            "--label",
            "bot-bottle.dev/agent-uid=u1",
            "--mount",
            "type=bind,source=/s/ca,target=/run/ca",
            "--mount",
            "type=bind,source=/s/policy,target=/etc/egress,readonly",
            "bot-bottle/sidecar:1",
        ]);
        assert_eq!(r, want);
    }

    #[test]
    fn the_agent_is_on_the_internal_network_only_and_idles() {
        let mut literal = bb_backend::sidecar_command::agent_proxy_env(
            "192.168.128.7",
            "/usr/local/share/ca-certificates/bb.crt",
        );
        literal.insert("MODE".into(), "ci".into());
        let r = run(&agent_run(
            "bb-agent",
            "bb-net",
            literal,
            labels(),
            "bot-bottle/agent:1",
        ));
        let nets: Vec<&String> = r
            .iter()
            .enumerate()
            .filter(|(i, _)| *i > 0 && r[i - 1] == "--network")
            .map(|(_, n)| n)
            .collect();
        assert_eq!(nets, vec!["bb-net"], "one network, the internal one");
        assert!(
            !r.contains(&"--dns".to_string()),
            "the agent gets no resolver"
        );
        assert!(r.ends_with(&s(&["bot-bottle/agent:1", "sleep", IDLE_SECONDS])));
        for want in [
            "HTTPS_PROXY=http://192.168.128.7:3128",
            "http_proxy=http://192.168.128.7:3128",
            "NO_PROXY=localhost,127.0.0.1,::1,192.168.128.7,bb-sidecar",
            "NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/bb.crt",
            "MODE=ci",
        ] {
            assert!(r.contains(&want.to_string()), "{want} missing from {r:?}");
        }
    }

    #[test]
    fn json_shapes_parse() {
        let inspect = r#"[{"id":"bb-side","configuration":{"labels":{}},"status":{"state":"running","networks":[{"network":"bb-egress","ipv4Address":"192.168.66.3/24"},{"network":"bb-net","ipv4Address":"192.168.128.7/24","ipv4Gateway":"192.168.128.1"}]}}]"#;
        assert_eq!(
            parse_ipv4(inspect, "bb-side", "bb-net"),
            Ok("192.168.128.7".into())
        );
        let one = inspect.trim_start_matches('[').trim_end_matches(']');
        assert_eq!(
            parse_ipv4(one, "bb-side", "bb-egress"),
            Ok("192.168.66.3".into()),
            "a bare object"
        );
        assert_eq!(
            parse_ipv4(inspect, "bb-side", "other"),
            Err(ParseError::NotOnNetwork("bb-side".into(), "other".into()))
        );
        assert!(matches!(
            parse_ipv4(r#"[{"status":{}}]"#, "x", "n"),
            Err(ParseError::Shape { .. })
        ));
        assert!(matches!(
            parse_ipv4(r#"[{"status":{"networks":[{"network":"n"}]}}]"#, "x", "n"),
            Err(ParseError::NoAddress(..))
        ));
        assert!(matches!(
            parse_ipv4("not json", "x", "n"),
            Err(ParseError::Shape { .. })
        ));

        let list = r#"[{"id":"a","configuration":{"labels":{"bot-bottle.dev/agent-uid":"u1","bot-bottle.dev/role":"agent"}},"status":{"state":"running"}},
                       {"id":"b","configuration":{"labels":{"bot-bottle.dev/agent-uid":"u2"}},"status":{"state":"stopped"}},
                       {"id":"c","configuration":{},"status":{}}]"#;
        let mine = parse_list(list, &labels()).expect("list");
        assert_eq!(
            mine.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            vec!["a"]
        );
        assert!(mine[0].running());
        assert_eq!(parse_list(list, &BTreeMap::new()).expect("all").len(), 3);
        // Later releases: status is the bare state, networks sit beside it with `address`,
        // and the name is only in configuration.id.
        let later = r#"[{"status":"running","configuration":{"id":"bb-side","labels":{"bot-bottle.dev/agent-uid":"u1"}},"networks":[{"network":"bb-net","address":"192.168.64.3/24"}]}]"#;
        let c = &parse_list(later, &labels()).expect("later list")[0];
        assert_eq!(c.id, "bb-side");
        assert!(c.running());
        assert_eq!(
            parse_ipv4(later, "bb-side", "bb-net"),
            Ok("192.168.64.3".into())
        );

        assert_eq!(
            parse_image_id(r#"{"digest":"sha256:abc"}"#),
            Ok("sha256:abc".into())
        );
        assert_eq!(
            parse_image_id(r#"[{"id":"i1","digest":"d"}]"#),
            Ok("i1".into())
        );
        assert!(parse_image_id(r#"{"name":"x"}"#).is_err());

        let b = parse_builder(
            r#"[{"status":{"state":"running"},"configuration":{"dns":{"nameservers":["9.9.9.9"]}}}]"#,
        );
        assert_eq!(
            b,
            Builder {
                running: true,
                nameservers: s(&["9.9.9.9"])
            }
        );
        assert_eq!(parse_builder("garbage"), Builder::default());

        let nets = r#"[{"id":"bb-net","configuration":{"name":"bb-net","mode":"hostOnly","labels":{"bot-bottle.dev/agent-uid":"u1"}},"status":{"ipv4Subnet":"192.168.128.0/24"}},
                       {"id":"default","configuration":{"mode":"nat"}}]"#;
        let mine = parse_networks(nets, &labels()).expect("networks");
        assert_eq!(
            mine.iter().map(Network::name).collect::<Vec<_>>(),
            vec!["bb-net"]
        );
        assert_eq!(
            parse_networks(nets, &BTreeMap::new())
                .expect("all")
                .iter()
                .map(Network::name)
                .collect::<Vec<_>>(),
            vec!["bb-net", "default"],
            "the id names a network without configuration.name"
        );
        assert!(parse_networks("{", &BTreeMap::new()).is_err());

        assert_eq!(
            parse_image_names(
                r#"[{"reference":"bot-bottle/snapshot:a-1"},{"configuration":{"name":"b:2"}},{"name":"c:3"},{"id":"x"}]"#
            ),
            Ok(s(&["bot-bottle/snapshot:a-1", "b:2", "c:3"]))
        );
    }

    #[test]
    fn the_host_resolver_prefers_directly_reachable_ipv4() {
        let scutil = "DNS configuration\n\nresolver #1\n  search domain[0] : tail.net\n  nameserver[0] : 100.100.100.100\n  flags    : Request A records\n  reach    : 0x00000003 (Reachable,Transient Connection)\n\nresolver #2\n  nameserver[0] : fe80::1%en0\n  nameserver[1] : 192.168.1.1\n  reach    : 0x00020002 (Reachable,Directly Reachable Address)\n";
        assert_eq!(parse_scutil_dns(scutil), Some("192.168.1.1".into()));
        let only_vpn =
            "resolver #1\n  nameserver[0] : 127.0.0.1\n  nameserver[1] : 100.100.100.100\n";
        assert_eq!(
            parse_scutil_dns(only_vpn),
            Some("100.100.100.100".into()),
            "second pass takes any usable"
        );
        assert_eq!(dns_server(Some(" 9.9.9.9 "), Some(scutil)), "9.9.9.9");
        assert_eq!(dns_server(None, Some(scutil)), "192.168.1.1");
        assert_eq!(dns_server(Some(""), None), FALLBACK_DNS);
    }

    #[test]
    fn the_builder_restarts_only_when_it_must() {
        let running = Builder {
            running: true,
            nameservers: s(&["1.1.1.1"]),
        };
        assert!(
            !builder_needs_restart(&running, true, None),
            "working, no override"
        );
        assert!(!builder_needs_restart(&running, true, Some("1.1.1.1")));
        assert!(
            builder_needs_restart(&running, true, Some("9.9.9.9")),
            "override not carried"
        );
        assert!(builder_needs_restart(&running, false, None), "probe failed");
        assert!(
            builder_needs_restart(&Builder::default(), true, None),
            "not running"
        );
    }
}
