//! What a session request asks for: the Agent from the path, the verb and its query, and the
//! checks that this runner may serve it (the Agent runs here, now).

use bb_crds::{Agent, AgentPhase};
use kube::{Api, ResourceExt};

use super::plans::SessionPlans;
use bb_backend::{LogOptions, LogSource, SessionSpec};

/// The agent user every session runs as unless `user` says otherwise.
pub const AGENT_USER: &str = "1000";

/// A refusal before any stream opens: the HTTP status and a Kubernetes `Status` reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            reason,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
}

/// The three verbs, as Kubernetes names the subresources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// A command (`command=` repeated) in the agent container.
    Exec { command: Vec<String>, user: String },
    /// The provider's own interactive command.
    Attach,
    Log {
        source: LogSource,
        options: LogOptions,
    },
    /// The runner's own supervise audit log of the Agent (`log?container=supervise`).
    SuperviseLog { tail: Option<u64> },
}

impl Verb {
    /// The subresource's name.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Exec { .. } => "exec",
            Verb::Attach => "attach",
            Verb::Log { .. } | Verb::SuperviseLog { .. } => "log",
        }
    }
}

/// Which streams the client wants, from the remote-command query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    pub namespace: String,
    pub name: String,
    pub verb: Verb,
    pub streams: Streams,
}

fn flag(name: &str, value: &str) -> Result<bool, Refusal> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        other => Err(Refusal::bad_request(format!(
            "query parameter {name}={other}: expected true or false"
        ))),
    }
}

/// Parses `/apis/bot-bottle.dev/v1alpha1/namespaces/NS/agents/NAME/{exec,attach,log}?...`.
pub fn parse(path: &str, query: Option<&str>) -> Result<SessionRequest, Refusal> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let [
        "apis",
        group,
        version,
        "namespaces",
        ns,
        "agents",
        name,
        sub,
    ] = segs.as_slice()
    else {
        return Err(Refusal::new(
            404,
            "NotFound",
            format!(
                "{path}: this endpoint serves /apis/{}/namespaces/NS/agents/NAME/{{exec,attach,log}}",
                bb_crds::API_VERSION
            ),
        ));
    };
    if format!("{group}/{version}") != bb_crds::API_VERSION {
        return Err(Refusal::new(
            404,
            "NotFound",
            format!(
                "{group}/{version}: this endpoint serves {}",
                bb_crds::API_VERSION
            ),
        ));
    }
    // As in Kubernetes, a stream is off unless the query turns it on.
    let mut streams = Streams::default();
    let mut command = Vec::new();
    let mut user = None;
    let mut container = None;
    let mut options = LogOptions::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "command" => command.push(v.into_owned()),
            "stdin" => streams.stdin = flag(&k, &v)?,
            "stdout" => streams.stdout = flag(&k, &v)?,
            "stderr" => streams.stderr = flag(&k, &v)?,
            "tty" => streams.tty = flag(&k, &v)?,
            "user" => user = Some(v.into_owned()),
            "container" => container = Some(v.into_owned()),
            "follow" => options.follow = flag(&k, &v)?,
            "tailLines" => {
                options.tail = Some(v.parse().map_err(|_| {
                    Refusal::bad_request(format!(
                        "query parameter tailLines={v}: expected a non-negative number"
                    ))
                })?)
            }
            // Formatting of error bodies only.
            "pretty" => {}
            other => {
                return Err(Refusal::bad_request(format!(
                    "query parameter '{other}' is not supported here (supported: command, stdin, stdout, stderr, tty, user, container; for log: container, follow, tailLines)"
                )));
            }
        }
    }
    let verb = match *sub {
        "exec" => {
            if command.is_empty() {
                return Err(Refusal::bad_request(
                    "exec needs at least one command= parameter",
                ));
            }
            Verb::Exec {
                command,
                user: user.clone().unwrap_or_else(|| AGENT_USER.to_string()),
            }
        }
        "attach" => Verb::Attach,
        "log" => {
            if container.as_deref() == Some("supervise") {
                if options.follow {
                    return Err(Refusal::bad_request(
                        "container=supervise: the supervise audit log is read whole, without follow",
                    ));
                }
                Verb::SuperviseLog { tail: options.tail }
            } else {
                let source = match container.as_deref() {
                    None => LogSource::Agent,
                    Some(c) => LogSource::parse(c).ok_or_else(|| {
                        Refusal::bad_request(format!(
                            "container={c}: valid are agent, sidecar, egress (the egress audit log) and supervise (the supervise audit log)"
                        ))
                    })?,
                };
                Verb::Log { source, options }
            }
        }
        other => {
            return Err(Refusal::new(
                404,
                "NotFound",
                format!("agents/{other}: valid subresources here are exec, attach and log"),
            ));
        }
    };
    if let Some(c) = container.as_deref()
        && !matches!(verb, Verb::Log { .. } | Verb::SuperviseLog { .. })
        && c != "agent"
    {
        return Err(Refusal::bad_request(format!(
            "container={c}: sessions run in the agent container only"
        )));
    }
    if user.is_some() && !matches!(verb, Verb::Exec { .. }) {
        return Err(Refusal::bad_request("user= applies to exec only"));
    }
    if !matches!(verb, Verb::Log { .. }) && !streams.stdout && !streams.stderr && !streams.stdin {
        return Err(Refusal::bad_request(
            "at least one of stdin, stdout and stderr must be true",
        ));
    }
    Ok(SessionRequest {
        namespace: (*ns).to_string(),
        name: (*name).to_string(),
        verb,
        streams,
    })
}

/// The Agent, if this runner may serve it: it exists, runs, and its status names this
/// runner's endpoint.
pub async fn running_agent(
    client: &kube::Client,
    endpoint: &str,
    req: &SessionRequest,
) -> Result<Agent, Refusal> {
    let api: Api<Agent> = Api::namespaced(client.clone(), &req.namespace);
    let unavailable = |e: kube::Error| Refusal::new(503, "ServiceUnavailable", e.to_string());
    let agent = api
        .get_opt(&req.name)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            Refusal::new(
                404,
                "NotFound",
                format!(
                    "agents.bot-bottle.dev \"{}\" not found in namespace {}",
                    req.name, req.namespace
                ),
            )
        })?;
    let status = agent.status.clone().unwrap_or_default();
    if status.phase != Some(AgentPhase::Running) {
        return Err(Refusal::new(
            409,
            "Conflict",
            format!(
                "agent/{} is not running ({})",
                req.name,
                status
                    .phase
                    .map_or("not yet reconciled".to_string(), |p| p.to_string())
            ),
        ));
    }
    // In a cluster several runners answer; only the one the Agent names may touch it.
    match status.session_endpoint.as_deref() {
        Some(ours) if ours == endpoint => {}
        theirs => {
            return Err(Refusal::new(
                409,
                "Conflict",
                format!(
                    "agent/{} is run by {}, not by this runner ({endpoint})",
                    req.name,
                    theirs.map_or("no runner yet".to_string(), |t| format!(
                        "the runner at {t}"
                    ))
                ),
            ));
        }
    }
    Ok(agent)
}

/// What `exec` or `attach` runs: the command, and the Agent's secret env as its last reconcile
/// resolved it, here on the runner (the client never sees it).
pub fn session_spec(
    plans: &SessionPlans,
    agent: &Agent,
    id: &bb_backend::AgentId,
    verb: &Verb,
    streams: Streams,
) -> Result<SessionSpec, Refusal> {
    // Kept by the runtime identity, as the reconciler records it (a claimed member's).
    let plan = plans.get(&id.uid).ok_or_else(|| {
        Refusal::new(
            503,
            "ServiceUnavailable",
            format!(
                "agent/{} is not reconciled by this runner yet; try again in a moment",
                agent.name_any()
            ),
        )
    })?;
    let (argv, user, workdir) = match verb {
        Verb::Exec { command, user } => (command.clone(), user.clone(), None),
        Verb::Attach => {
            let argv = match plan.attach.is_empty() {
                true => vec!["/bin/sh".into()],
                false => plan.attach.clone(),
            };
            let workdir = plan.workspace.then(|| "/workspace".to_string());
            (argv, AGENT_USER.to_string(), workdir)
        }
        Verb::Log { .. } | Verb::SuperviseLog { .. } => {
            return Err(Refusal::bad_request("logs are not a session"));
        }
    };
    Ok(SessionSpec {
        argv,
        env: plan.secret_env.clone(),
        tty: streams.tty,
        user: Some(user),
        workdir,
        size: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/apis/bot-bottle.dev/v1alpha1/namespaces/default/agents/a";

    #[test]
    fn exec_takes_kubernetes_query_parameters() {
        let r = parse(
            &format!("{BASE}/exec"),
            Some(
                "command=sh&command=-c&command=exit%203&stdin=true&stdout=1&stderr=true&tty=false&user=0",
            ),
        );
        assert_eq!(
            r,
            Ok(SessionRequest {
                namespace: "default".into(),
                name: "a".into(),
                verb: Verb::Exec {
                    command: vec!["sh".into(), "-c".into(), "exit 3".into()],
                    user: "0".into()
                },
                streams: Streams {
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    tty: false
                },
            })
        );
        let r = parse(&format!("{BASE}/exec"), Some("command=id&stdout=true"));
        assert!(
            matches!(r, Ok(SessionRequest { verb: Verb::Exec { user, .. }, .. }) if user == AGENT_USER)
        );
    }

    #[test]
    fn logs_name_their_source() {
        let r = parse(
            &format!("{BASE}/log"),
            Some("container=egress&follow=true&tailLines=5"),
        );
        assert!(matches!(
            r,
            Ok(SessionRequest {
                verb: Verb::Log {
                    source: LogSource::Egress,
                    options: LogOptions {
                        follow: true,
                        tail: Some(5)
                    }
                },
                ..
            })
        ));
        assert!(matches!(
            parse(&format!("{BASE}/log"), None),
            Ok(SessionRequest {
                verb: Verb::Log {
                    source: LogSource::Agent,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn bad_requests_say_what_is_valid() {
        let cases = [
            (format!("{BASE}/exec"), "stdout=true", "command="),
            (format!("{BASE}/exec"), "command=x&tty=maybe", "tty=maybe"),
            (
                format!("{BASE}/log"),
                "container=db",
                "agent, sidecar, egress (the egress audit log) and supervise",
            ),
            (format!("{BASE}/log"), "tailLines=-1", "tailLines=-1"),
            (format!("{BASE}/attach"), "user=0", "exec only"),
            (
                format!("{BASE}/attach"),
                "container=sidecar",
                "agent container only",
            ),
            (format!("{BASE}/exec"), "command=x&shell=1", "'shell'"),
            (format!("{BASE}/exec"), "command=x", "at least one of stdin"),
            (format!("{BASE}/portforward"), "", "exec, attach and log"),
            (
                "/apis/bot-bottle.dev/v1/namespaces/d/agents/a/exec".to_string(),
                "command=x",
                "v1alpha1",
            ),
            (
                "/api/v1/namespaces/d/pods/a/exec".to_string(),
                "",
                "agents/NAME",
            ),
        ];
        for (path, q, needle) in cases {
            match parse(&path, Some(q)) {
                Err(r) => assert!(r.message.contains(needle), "{path}?{q}: {}", r.message),
                Ok(r) => panic!("{path}?{q} accepted: {r:?}"),
            }
        }
    }
}
