//! The supervise MCP server (streamable HTTP on 9100, served by `rmcp`): the agent lists its live
//! routes and asks for more access; each request is validated and queued for a human to decide.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb_policy::egress::EgressRoute;
use bb_policy::proposal::{
    QueuedProposal, TOOL_ALLOW, TOOL_CAPABILITY_BLOCK, TOOL_EGRESS_BLOCK, parse_proposed_routes,
    routes_document,
};
use http_body_util::BodyExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::queue::{Outcome, Queue, new_id};

/// The largest request the server reads: a routes document or a Dockerfile fits many times over.
pub const MAX_REQUEST: usize = 1 << 20;

/// Where the agent reaches the server: `http://bb-sidecar:9100/mcp`.
pub const PATH: &str = "/mcp";

pub const TOOL_LIST_EGRESS_ROUTES: &str = "list-egress-routes";

/// The largest proposed file (routes document or Dockerfile) and justification: what a human
/// can read before deciding, many times over.
pub const MAX_PROPOSED_FILE: usize = 64 << 10;
pub const MAX_JUSTIFICATION: usize = 4 << 10;
/// Proposals of this agent that may wait for a decision at once, and how many it may raise in
/// `RATE_WINDOW`: a human's queue is not a place to flood.
pub const MAX_PENDING: usize = 5;
pub const MAX_PER_WINDOW: usize = 20;
pub const RATE_WINDOW: Duration = Duration::from_secs(600);
/// MCP sessions held at once, and how long an idle one is kept: each costs memory, and a
/// well-behaved agent needs one.
pub const MAX_SESSIONS: usize = 32;
pub const SESSION_IDLE: Duration = Duration::from_secs(60);

/// What the proposal tools need to know about the running bottle.
pub struct Supervise {
    /// The routes the proxy enforces right now.
    live_routes: Box<dyn Fn() -> Vec<EgressRoute> + Send + Sync>,
    queue: Queue,
    /// How long a tool call waits for the human before answering "pending".
    wait: Duration,
    /// The names requests may carry in `Host` (any port): a page the agent's browser opens
    /// cannot reach the server by rebinding a name of its own to the sidecar's address.
    hosts: Vec<String>,
    awaited: Mutex<Vec<String>>,
    /// When this server raised each recent proposal (for `MAX_PER_WINDOW`).
    raised: Mutex<std::collections::VecDeque<Instant>>,
    /// The runner's hold: once it lapses, requests are refused and connections cut.
    hold: Arc<crate::hold::Hold>,
}

impl std::fmt::Debug for Supervise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervise")
            .field("queue", &self.queue)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

const ROUTES_GRAMMAR: &str = "The complete routes document you want, as YAML: start from list-egress-routes and add or change routes. `routes:` is a list; each route has `host` (required: a hostname or IP, no scheme, port or path) and optionally `matches` (a list of {paths: [{type: prefix|exact|regex, value}], methods: [GET, ...], headers: [{name, value, type: exact|regex}]}; omitted allows every request), `ports` (default [443]), `plainHttp`, `allowPrivateAddresses`, `git: {fetch: true}` (clone/fetch over HTTPS; leaving it out blocks them), `dlp: {outbound: false | [token_patterns, known_secrets], inbound: false | [naive_injection_detection]}` and `auth: {scheme: Bearer|token, secretKeyRef: {name, key}}`. A route without auth keeps the credential the live route injects. Routes you leave out are kept; omit any key that should use its default.";

fn schema(v: Value) -> Arc<serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(serde_json::Map::new()),
    }
}

fn proposal_schema(file_field: &str, file_help: &str) -> Arc<serde_json::Map<String, Value>> {
    schema(json!({
        "type": "object",
        "properties": {
            file_field: {"type": "string", "description": file_help},
            "justification": {"type": "string", "description": "Why you need this, for the human who decides: what you were doing and what failed."}
        },
        "required": [file_field, "justification"],
        "additionalProperties": false
    }))
}

/// The tools, in the order `tools/list` gives them.
pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            TOOL_LIST_EGRESS_ROUTES,
            "The egress routes this bottle enforces right now, as a routes document. Call it before allow or egress-block and send back the whole document with your change.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        ),
        Tool::new(
            TOOL_ALLOW,
            "Ask a human to allow more egress before you need it: a proposed routes document and why. Waits a while for the decision; on approval the running bottle allows it at once.",
            proposal_schema("routes_yaml", ROUTES_GRAMMAR),
        ),
        Tool::new(
            TOOL_EGRESS_BLOCK,
            "After a request was refused by the egress policy (403 from the sidecar): ask a human to allow it, with a proposed routes document and why. Waits a while for the decision; on approval retry the request.",
            proposal_schema("routes_yaml", ROUTES_GRAMMAR),
        ),
        Tool::new(
            TOOL_CAPABILITY_BLOCK,
            "When the bottle lacks a tool or package: propose a Dockerfile for your image and why. An approved change applies when the agent restarts.",
            proposal_schema(
                "dockerfile",
                "A Dockerfile built on your current image: start with `ARG AGENT_IMAGE` and `FROM ${AGENT_IMAGE}`, then add what you need (RUN apt-get install -y ..., as root; switch back with `USER agent` if you change users).",
            ),
        ),
    ]
}

fn invalid(message: impl Into<Cow<'static, str>>) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

/// The proposed file and justification of a proposal tool's arguments, validated.
pub fn validate(
    tool: &str,
    args: Option<&serde_json::Map<String, Value>>,
) -> Result<(String, String), ErrorData> {
    let field = match tool {
        TOOL_ALLOW | TOOL_EGRESS_BLOCK => "routes_yaml",
        TOOL_CAPABILITY_BLOCK => "dockerfile",
        other => return Err(invalid(format!("unknown tool '{other}'"))),
    };
    let empty = serde_json::Map::new();
    let args = args.unwrap_or(&empty);
    if let Some(k) = args
        .keys()
        .find(|k| k.as_str() != field && k.as_str() != "justification")
    {
        return Err(invalid(format!(
            "{tool}: unknown argument '{k}'; expected {field} and justification"
        )));
    }
    let text = |name: &str| -> Result<String, ErrorData> {
        match args.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(invalid(format!("{tool}: {name} must not be empty"))),
            Some(_) => Err(invalid(format!("{tool}: {name} must be a string"))),
            None => Err(invalid(format!("{tool}: {name} is required"))),
        }
    };
    let file = text(field)?;
    let justification = text("justification")?;
    for (name, value, max) in [
        (field, &file, MAX_PROPOSED_FILE),
        ("justification", &justification, MAX_JUSTIFICATION),
    ] {
        if value.len() > max {
            return Err(invalid(format!(
                "{tool}: {name} is {} bytes; at most {max} are read (send only what you need)",
                value.len()
            )));
        }
    }
    if field == "routes_yaml" {
        parse_proposed_routes(&file).map_err(|e| {
            invalid(format!(
                "{tool}: proposed routes.yaml is not valid: {}",
                bb_policy::validate::one_line(&e.to_string())
            ))
        })?;
    }
    Ok((file, justification))
}

impl Supervise {
    pub fn new(
        live_routes: impl Fn() -> Vec<EgressRoute> + Send + Sync + 'static,
        queue: Queue,
        wait: Duration,
        hosts: Vec<String>,
    ) -> Self {
        Supervise {
            live_routes: Box::new(live_routes),
            queue,
            wait,
            hosts,
            awaited: Mutex::new(Vec::new()),
            raised: Mutex::new(std::collections::VecDeque::new()),
            hold: crate::hold::Hold::unfenced(),
        }
    }

    /// Serves only while `hold` is kept (cluster mode).
    pub fn with_hold(mut self, hold: Arc<crate::hold::Hold>) -> Self {
        self.hold = hold;
        self
    }

    /// Why another proposal may not be raised now, if it may not: too many wait for a decision
    /// already, or too many were raised lately.
    fn over_limit(&self, now: Instant) -> Option<String> {
        let pending = self
            .queue
            .pending(&[TOOL_ALLOW, TOOL_EGRESS_BLOCK, TOOL_CAPABILITY_BLOCK]);
        if pending >= MAX_PENDING {
            return Some(format!(
                "{pending} of your proposals are waiting for a human decision (at most {MAX_PENDING}); wait for them to be decided before asking again"
            ));
        }
        let mut raised = self.raised.lock().ok()?;
        while raised
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            raised.pop_front();
        }
        if raised.len() >= MAX_PER_WINDOW {
            return Some(format!(
                "you raised {MAX_PER_WINDOW} proposals in the last {} minutes; wait before asking again",
                RATE_WINDOW.as_secs() / 60
            ));
        }
        raised.push_back(now);
        None
    }

    fn awaiting(&self, id: &str, on: bool) {
        if let Ok(mut a) = self.awaited.lock() {
            if on {
                a.push(id.to_string());
            } else {
                a.retain(|x| x != id);
            }
        }
    }

    /// Queues a proposal and waits up to `wait` for its decision.
    async fn propose(&self, tool: &str, file: String, justification: String) -> CallToolResult {
        if let Some(why) = self.over_limit(Instant::now()) {
            tracing::info!(tool, "proposal refused: {why}");
            return CallToolResult::error(vec![ContentBlock::text(format!("Not queued: {why}."))]);
        }
        let id = new_id(tool);
        let p = QueuedProposal {
            id: id.clone(),
            tool: tool.to_string(),
            proposed_file: file,
            justification,
            repo: None,
            arrival_timestamp: jiff::Timestamp::now().to_string(),
        };
        if let Err(e) = self.queue.raise(&p) {
            tracing::error!(error = %e, "cannot queue a proposal");
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "the proposal could not be queued ({e}); try again later"
            ))]);
        }
        tracing::info!(%id, tool, "proposal queued");
        self.awaiting(&id, true);
        let deadline = Instant::now() + self.wait;
        let outcome = loop {
            match self.queue.take_decision(&id) {
                Outcome::Waiting if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        self.awaiting(&id, false);
        let after = match tool {
            TOOL_CAPABILITY_BLOCK => "the new image applies when this agent restarts",
            _ => "the sidecar already enforces it: retry your request",
        };
        match outcome {
            Outcome::Decided(d) if d.approved() => {
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "Proposal {id} was approved ({}); {after}.",
                    d.reason.as_deref().unwrap_or("no reason given")
                ))])
            }
            Outcome::Decided(d) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Proposal {id} was {} ({}). Do not retry the same request; find another way or ask again with a better justification.",
                d.status,
                d.reason.as_deref().unwrap_or("no reason given")
            ))]),
            Outcome::Malformed(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "Proposal {id} got an unreadable decision ({e}); treat it as rejected."
            ))]),
            Outcome::Waiting => CallToolResult::success(vec![ContentBlock::text(format!(
                "Proposal {id} is waiting for a human decision. Carry on with other work; list-egress-routes shows the routes once it is approved."
            ))]),
        }
    }

    /// Serves MCP on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        let this = self.clone();
        let mut config = StreamableHttpServerConfig::default();
        config.allowed_hosts = self.hosts.clone();
        config.max_request_body_bytes = MAX_REQUEST;
        config.sse_keep_alive = Some(Duration::from_secs(15));
        let mut sessions = LocalSessionManager::default();
        sessions.session_config.keep_alive = Some(SESSION_IDLE);
        let service = StreamableHttpService::new(
            move || Ok(Handler(this.clone())),
            Arc::new(crate::mcp_sessions::Capped::new(sessions, MAX_SESSIONS)),
            config,
        );
        let sweeper = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let awaited = sweeper
                    .awaited
                    .lock()
                    .map(|a| a.clone())
                    .unwrap_or_default();
                sweeper.queue.sweep(
                    &[TOOL_ALLOW, TOOL_EGRESS_BLOCK, TOOL_CAPABILITY_BLOCK],
                    &awaited,
                );
            }
        });
        loop {
            let (stream, peer) = crate::accept::next(&listener, "supervise").await;
            let service = service.clone();
            let hold = self.hold.clone();
            tokio::spawn(async move {
                let lapsed = hold.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let mut service = service.clone();
                        let lapsed = lapsed.lapsed();
                        async move {
                            if lapsed {
                                let body = http_body_util::Full::new(bytes::Bytes::from(format!(
                                    "supervise: {} (runner-lost)\n",
                                    crate::hold::LAPSED
                                )))
                                .boxed();
                                let mut resp = http::Response::new(body);
                                *resp.status_mut() = http::StatusCode::FORBIDDEN;
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            if req.uri().path() != PATH {
                                let body = http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"the supervise MCP server is at /mcp\n",
                                ))
                                .boxed();
                                let mut resp = http::Response::new(body);
                                *resp.status_mut() = http::StatusCode::NOT_FOUND;
                                return Ok::<_, std::convert::Infallible>(resp);
                            }
                            tower_service::Service::call(&mut service, req).await
                        }
                    });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                if let Some(Err(e)) = hold.cut(conn).await {
                    tracing::debug!(%peer, error = %e, "supervise connection ended");
                }
            });
        }
    }
}

#[derive(Clone)]
struct Handler(Arc<Supervise>);

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        let mut info = ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions(
                "bot-bottle supervise: when the sandbox refuses something you need (a host, a path, a package), ask here instead of giving up. A human decides; approved access applies to the running bottle.",
            );
        info.server_info = Implementation::new("bot-bottle-supervise", env!("CARGO_PKG_VERSION"));
        info
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        if name == TOOL_LIST_EGRESS_ROUTES {
            if let Some(k) = request.arguments.as_ref().and_then(|a| a.keys().next()) {
                return Err(invalid(format!(
                    "{TOOL_LIST_EGRESS_ROUTES}: takes no arguments (got '{k}')"
                )));
            }
            let doc = routes_document(&(self.0.live_routes)());
            return Ok(CallToolResult::success(vec![ContentBlock::text(doc)]).into());
        }
        let (file, justification) = validate(name, request.arguments.as_ref())?;
        Ok(self.0.propose(name, file, justification).await.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }

    #[test]
    fn invalid_arguments_name_the_field_and_the_rule() {
        let cases = [
            ("nope", json!({}), "unknown tool 'nope'"),
            (
                TOOL_ALLOW,
                json!({"justification": "x"}),
                "allow: routes_yaml is required",
            ),
            (
                TOOL_ALLOW,
                json!({"routes_yaml": "routes: []", "justification": " "}),
                "justification must not be empty",
            ),
            (
                TOOL_ALLOW,
                json!({"routes_yaml": 3, "justification": "x"}),
                "routes_yaml must be a string",
            ),
            (
                TOOL_EGRESS_BLOCK,
                json!({"routes_yaml": "routes: []", "justification": "x", "extra": 1}),
                "unknown argument 'extra'",
            ),
            (
                TOOL_EGRESS_BLOCK,
                json!({"routes_yaml": "routes:\n  - host: 'https://a.test'\n", "justification": "x"}),
                "egress-block: proposed routes.yaml is not valid: proposed routes is invalid (1 error) - routes[0].host",
            ),
            (
                TOOL_CAPABILITY_BLOCK,
                json!({"routes_yaml": "x", "justification": "x"}),
                "unknown argument 'routes_yaml'",
            ),
        ];
        for (tool, a, want) in cases {
            let err = validate(tool, Some(&args(a)))
                .err()
                .map(|e| e.message.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{tool}: {err}");
        }
        assert!(
            validate(
                TOOL_CAPABILITY_BLOCK,
                Some(&args(
                    json!({"dockerfile": "FROM x\n", "justification": "need jq"})
                ))
            )
            .is_ok()
        );
    }

    #[test]
    fn every_tool_refuses_unknown_arguments_in_its_schema() {
        let names: Vec<_> = tools().iter().map(|t| t.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "list-egress-routes",
                "allow",
                "egress-block",
                "capability-block"
            ]
        );
        for t in tools() {
            assert_eq!(
                t.input_schema.get("additionalProperties"),
                Some(&Value::Bool(false)),
                "{}",
                t.name
            );
        }
    }
}
