//! `bbctl apply` and `bbctl delete`: declarative changes to Bottles and Agents through the API
//! (server-side apply, field manager `bbctl`), with the trust boundary on where Bottles come from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bb_crds::{Agent, AgentPool, Bottle, Resource};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::target::Target;
use crate::exit::{CliError, Kind};

pub const FIELD_MANAGER: &str = "bbctl";

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    files: crate::input::FileArgs,
    /// `client`: validate here and say what would change (compared with the server when one
    /// runs; none is started); `server`: the server validates and admits but stores nothing.
    #[arg(long, value_name = "none|client|server", value_enum, default_value_t = DryRun::None)]
    dry_run: DryRun,
    /// Accept Bottles read from a git repository other than $BOT_BOTTLE_HOME/bottles.
    #[arg(long)]
    trust_bottles: bool,
    /// Take over fields another manager owns instead of failing with a conflict.
    #[arg(long)]
    force_conflicts: bool,
    /// Delete Bottles and Agents matching --selector that the manifests no longer declare.
    #[arg(long, requires = "selector")]
    prune: bool,
    /// Label selector of what --prune may delete (`app=review`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Wait until every applied Bottle is Ready and every Agent Running (or failed), showing
    /// what each is waiting on.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits (`30s`, `5m`, `1h30m`; `0s`: no limit); a first image build can
    /// take minutes.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_timeout, requires = "wait")]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

/// `apply --dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DryRun {
    None,
    Client,
    Server,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// TYPE NAME... (bottle|agent NAME...), TYPE/NAME..., or nothing with -f.
    #[arg(value_name = "TYPE NAME")]
    what: Vec<String>,
    /// Delete what these manifests declare (instead of TYPE NAME).
    #[command(flatten)]
    files: crate::input::FileArgs,
    /// Wait until the objects are gone (an Agent's containers removed); `--wait=false` returns
    /// once deletion is accepted.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    wait: bool,
    /// How long --wait waits for everything to be gone (`30s`, `5m`, `1h30m`; `0s`: no limit).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout)]
    timeout: Duration,
    /// Treat an object that does not exist as deleted (as kubectl's flag does). Without it, a
    /// missing object is reported, the others are still deleted, and the exit code is 3.
    #[arg(long)]
    ignore_not_found: bool,
    #[command(flatten)]
    target: Target,
}

/// kubectl's duration flags (`30s`, `5m`, `1h30m`, `500ms`), and a bare number of seconds.
/// `--timeout`: the one duration grammar (`bb_crds::duration`).
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    bb_crds::duration::parse(s)
}

fn api_error(what: &str, e: kube::Error) -> CliError {
    let mut err = CliError::api(what, e);
    if err.kind == Kind::Conflict {
        err.message
            .push_str("; pass --force-conflicts to take the fields over");
    }
    err
}

/// The git repository holding `path`, if any (its top directory).
fn git_repo_of(path: &Path) -> Option<PathBuf> {
    let abs = std::fs::canonicalize(path).ok()?;
    let mut dir = if abs.is_dir() {
        Some(abs.as_path())
    } else {
        abs.parent()
    };
    while let Some(d) = dir {
        if d.join(".git").exists() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// Bottles carry credentials and egress policy: one read from inside a git repository (a clone
/// anyone could have written) is refused unless it lives under the home's `bottles/` or the
/// user says so. The reference only read bottles from $HOME for the same reason.
fn check_trust(
    resources: &[Resource],
    origins: &[String],
    home: &Path,
    trust: bool,
) -> Result<(), CliError> {
    if trust {
        return Ok(());
    }
    let allowed = std::fs::canonicalize(home.join("bottles")).ok();
    let mut refused = Vec::new();
    for (r, origin) in resources.iter().zip(origins) {
        // An Agent is as sensitive when it copies host directories into the bottle: a cloned
        // repository's Agent must not pull ~/.ssh in as its "workspace" or a "skill".
        let reaches_host = match r {
            Resource::Bottle(_) => true,
            Resource::Agent(a) => {
                a.spec.workspace.is_some()
                    || a.spec.skills.iter().flatten().any(|s| s.starts_with('/'))
            }
            // Starts bottles of a Bottle that is already trusted; copies nothing in.
            Resource::AgentPool(_) => false,
        };
        if !reaches_host || origin == "<stdin>" {
            continue;
        }
        let path = Path::new(origin);
        let inside_home = allowed
            .as_deref()
            .zip(std::fs::canonicalize(path).ok())
            .is_some_and(|(a, p)| p.starts_with(a));
        if inside_home {
            continue;
        }
        if let Some(repo) = git_repo_of(path) {
            let why = match r {
                Resource::Bottle(_) => "redirect credentials or egress",
                Resource::Agent(_) | Resource::AgentPool(_) => {
                    "copy host directories (workspace, skills) into a bottle"
                }
            };
            refused.push(format!(
                "refusing {}/{} from {origin}: it is inside the git repository {}, and a cloned repository must not be able to {why}; move it under {} or pass --trust-bottles",
                r.kind().to_lowercase(),
                r.name(),
                repo.display(),
                home.join("bottles").display()
            ));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(Kind::Usage, refused.join("\n")))
    }
}

async fn server_bottles(
    client: &kube::Client,
) -> Result<BTreeMap<String, bb_crds::BottleSpec>, CliError> {
    let api: Api<Bottle> = Api::all(client.clone());
    Ok(api
        .list(&Default::default())
        .await
        .map_err(|e| api_error("listing bottles", e))?
        .items
        .into_iter()
        .map(|b| (b.name_any(), b.spec))
        .collect())
}

/// Applies one object; says `created`, `configured` or `unchanged` like kubectl.
async fn apply_one<K>(
    api: &Api<K>,
    name: &str,
    value: &serde_json::Value,
    pp: &PatchParams,
) -> Result<&'static str, kube::Error>
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    let before = api.get_opt(name).await?.and_then(|o| o.resource_version());
    let after = api
        .patch(name, pp, &Patch::Apply(value))
        .await?
        .resource_version();
    Ok(match before {
        None => "created",
        Some(rv) if Some(&rv) == after.as_ref() => "unchanged",
        Some(_) => "configured",
    })
}

pub fn apply(args: ApplyArgs) -> Result<(), CliError> {
    // Bad input is refused before the local control plane is started for it.
    let files = args.files.required()?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = if args.dry_run == DryRun::Client {
            args.target.client_if_running().await?
        } else {
            Some(args.target.client_autostart().await?)
        };
        let known = match &client {
            Some(c) => server_bottles(c).await?,
            None => BTreeMap::new(),
        };
        let super::validate::Loaded {
            resources,
            origins,
            errors,
        } = super::validate::load_with(&files.files, files.recursive, &known)?;
        if !errors.is_empty() {
            return Err(CliError::new(Kind::Validation, errors.join("\n")));
        }
        check_trust(
            &resources,
            &origins,
            &args.target.home_dir()?,
            args.trust_bottles,
        )?;
        let Some(client) = client else {
            for r in &resources {
                println!(
                    "{}.bot-bottle.dev/{} valid (dry run; no control plane runs to compare with)",
                    r.kind().to_lowercase(),
                    r.name()
                );
            }
            return Ok(());
        };
        if args.dry_run == DryRun::Client {
            // As kubectl: created for what does not exist yet, configured for what does.
            for r in &resources {
                let exists = match r {
                    Resource::Bottle(b) => Api::<Bottle>::all(client.clone())
                        .get_opt(&b.name_any())
                        .await
                        .map(|o| o.is_some()),
                    Resource::Agent(a) => Api::<Agent>::namespaced(
                        client.clone(),
                        &a.namespace().unwrap_or_else(|| args.target.namespace()),
                    )
                    .get_opt(&a.name_any())
                    .await
                    .map(|o| o.is_some()),
                    Resource::AgentPool(p) => Api::<AgentPool>::namespaced(
                        client.clone(),
                        &p.namespace().unwrap_or_else(|| args.target.namespace()),
                    )
                    .get_opt(&p.name_any())
                    .await
                    .map(|o| o.is_some()),
                };
                let what = format!("{}.bot-bottle.dev/{}", r.kind().to_lowercase(), r.name());
                let exists = exists.map_err(|e| api_error(&what, e))?;
                let verb = if exists { "configured" } else { "created" };
                println!("{what} {verb} (dry run)");
            }
            return Ok(());
        }
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = args.force_conflicts;
        pp.dry_run = args.dry_run == DryRun::Server;
        let suffix = if pp.dry_run { " (server dry run)" } else { "" };
        let mut applied_bottles = std::collections::BTreeSet::new();
        let mut applied_agents = std::collections::BTreeSet::new();
        let mut applied_pools = std::collections::BTreeSet::new();
        let mut namespaces = std::collections::BTreeSet::from([args.target.namespace()]);
        for r in &resources {
            match r {
                Resource::Bottle(b) => {
                    applied_bottles.insert(b.name_any());
                }
                Resource::Agent(a) => {
                    let ns = a.namespace().unwrap_or_else(|| args.target.namespace());
                    applied_agents.insert((ns.clone(), a.name_any()));
                    namespaces.insert(ns);
                }
                Resource::AgentPool(p) => {
                    let ns = p.namespace().unwrap_or_else(|| args.target.namespace());
                    applied_pools.insert((ns.clone(), p.name_any()));
                    namespaces.insert(ns);
                }
            }
        }
        for r in resources {
            let what = format!("{}.bot-bottle.dev/{}", r.kind().to_lowercase(), r.name());
            let outcome = match r {
                Resource::Bottle(mut b) => {
                    b.status = None;
                    let value = serde_json::to_value(&b)
                        .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
                    let api: Api<Bottle> = Api::all(client.clone());
                    apply_one(&api, &b.name_any(), &value, &pp).await
                }
                Resource::Agent(mut a) => {
                    a.status = None;
                    let ns = a.namespace().unwrap_or_else(|| args.target.namespace());
                    a.metadata.namespace = Some(ns.clone());
                    let value = serde_json::to_value(&a)
                        .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
                    let api: Api<Agent> = Api::namespaced(client.clone(), &ns);
                    apply_one(&api, &a.name_any(), &value, &pp).await
                }
                Resource::AgentPool(mut p) => {
                    p.status = None;
                    let ns = p.namespace().unwrap_or_else(|| args.target.namespace());
                    p.metadata.namespace = Some(ns.clone());
                    let value = serde_json::to_value(&p)
                        .map_err(|e| CliError::new(Kind::General, e.to_string()))?;
                    let api: Api<AgentPool> = Api::namespaced(client.clone(), &ns);
                    apply_one(&api, &p.name_any(), &value, &pp).await
                }
            };
            let outcome = outcome.map_err(|e| api_error(&what, e))?;
            println!("{what} {outcome}{suffix}");
        }
        if args.wait && !pp.dry_run {
            let deadline = Deadline::new(args.timeout);
            wait_ready(&client, &applied_bottles, &applied_agents, deadline).await?;
        }
        if let (true, Some(sel)) = (args.prune, &args.selector) {
            let lp = kube::api::ListParams::default().labels(sel);
            let dry = pp.dry_run;
            let bottles: Api<Bottle> = Api::all(client.clone());
            prune(
                &bottles,
                &lp,
                "bottle",
                |n| applied_bottles.contains(n),
                dry,
                suffix,
            )
            .await?;
            for ns in &namespaces {
                let kept = |set: &std::collections::BTreeSet<(String, String)>, n: &str| {
                    set.contains(&(ns.clone(), n.to_string()))
                };
                let agents: Api<Agent> = Api::namespaced(client.clone(), ns);
                prune(
                    &agents,
                    &lp,
                    "agent",
                    |n| kept(&applied_agents, n),
                    dry,
                    suffix,
                )
                .await?;
                let pools: Api<AgentPool> = Api::namespaced(client.clone(), ns);
                prune(
                    &pools,
                    &lp,
                    "agentpool",
                    |n| kept(&applied_pools, n),
                    dry,
                    suffix,
                )
                .await?;
            }
        }
        Ok(())
    })
}

/// Deletes the objects `lp` selects that `applied` does not keep (by name), printing each as
/// kubectl does; with `dry_run`, only prints.
async fn prune<K>(
    api: &Api<K>,
    lp: &kube::api::ListParams,
    kind: &str,
    applied: impl Fn(&str) -> bool,
    dry_run: bool,
    suffix: &str,
) -> Result<(), CliError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let listed = api
        .list(lp)
        .await
        .map_err(|e| api_error(&format!("listing {kind}s"), e))?;
    for o in listed {
        let name = o.name_any();
        if applied(&name) {
            continue;
        }
        let what = format!("{kind}.bot-bottle.dev/{name}");
        if !dry_run {
            delete_object(api, &what, &name, None).await?;
        }
        println!("{what} pruned{suffix}");
    }
    Ok(())
}

/// How long an applied Bottle may read Ready=False before `--wait` calls it invalid: long
/// enough for the parents applied with it to be seen.
const BOTTLE_GRACE: Duration = Duration::from_secs(5);

/// Waits for Bottles to be Ready and Agents to run, showing each one's state as it changes; a
/// Failed Agent or the deadline ends the wait with what it was waiting on.
async fn wait_ready(
    client: &kube::Client,
    bottles: &std::collections::BTreeSet<String>,
    agents: &std::collections::BTreeSet<(String, String)>,
    deadline: Deadline,
) -> Result<(), CliError> {
    for name in bottles {
        let api: Api<Bottle> = Api::all(client.clone());
        let what = format!("bottle.bot-bottle.dev/{name}");
        let mut progress = crate::progress::Progress::new(&format!("{what}: waiting for Ready"));
        // Not ready yet may only mean a parent in the same batch has not been seen yet: a
        // Bottle is invalid once its applied generation has been False for a while (nothing
        // but a change makes it valid), and the deadline ends the wait in any case.
        let mut last = String::from("not reconciled yet");
        let mut invalid_since: Option<Instant> = None;
        loop {
            let b = api.get(name).await.map_err(|e| api_error(name, e))?;
            // A Ready written for an earlier generation says nothing about what was just applied.
            let current =
                b.status.as_ref().and_then(|s| s.observed_generation) >= b.metadata.generation;
            let conds = b.status.map(|s| s.conditions).unwrap_or_default();
            match conds.iter().find(|c| c.type_ == "Ready") {
                Some(c) if c.status == "True" && current => break,
                Some(c) if c.status == "True" => {
                    last = "the applied generation is not reconciled yet".into()
                }
                Some(c) => {
                    last = format!("Ready=False {}: {}", c.reason, c.message);
                    if current
                        && invalid_since.get_or_insert_with(Instant::now).elapsed() > BOTTLE_GRACE
                    {
                        progress.finish("invalid");
                        return Err(CliError::new(
                            Kind::Validation,
                            format!("{what} is not ready ({last})"),
                        ));
                    }
                }
                None => {}
            }
            progress.set(&last);
            if deadline.passed() {
                return Err(timed_out(&what, "Ready", &deadline, &last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        progress.finish("ready");
        eprintln!("{what} ready");
    }
    for (ns, name) in agents {
        let api: Api<Agent> = Api::namespaced(client.clone(), ns);
        wait_running(&api, name, deadline).await?;
        eprintln!("agent.bot-bottle.dev/{name} running");
    }
    Ok(())
}

/// Sets the Agent's `spec.suspend`; a resume also asks an Agent that gave up to try again.
pub(super) async fn request_suspend(
    api: &Api<Agent>,
    name: &str,
    suspend: bool,
) -> Result<(), CliError> {
    let mut patch = serde_json::json!({"spec": {"suspend": suspend}});
    if !suspend {
        patch["metadata"] = serde_json::json!({"annotations": {
            RETRY_ANNOTATION: jiff::Timestamp::now().to_string()
        }});
    }
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| api_error(&format!("agent.bot-bottle.dev/{name}"), e))
}

/// Waits until the Agent runs its current generation, showing its phase and what it waits on
/// as they change. A Failed Agent ends the wait at once (exit 1), the deadline with exit 5.
pub(super) async fn wait_running(
    api: &Api<Agent>,
    name: &str,
    deadline: Deadline,
) -> Result<(), CliError> {
    wait_phase(api, name, deadline, bb_crds::AgentPhase::Running).await
}

/// Waits until the Agent's current generation is in phase `want` (as `kubectl rollout status`
/// waits for the applied generation, not an earlier one's state), showing its phase and what it
/// waits on as they change. Failed ends the wait at once (exit 1), the deadline with exit 5.
async fn wait_phase(
    api: &Api<Agent>,
    name: &str,
    deadline: Deadline,
    want: bb_crds::AgentPhase,
) -> Result<(), CliError> {
    use bb_crds::AgentPhase;
    let what = format!("agent.bot-bottle.dev/{name}");
    let progress = std::cell::RefCell::new(crate::progress::Progress::new(&format!(
        "{what}: waiting for {}",
        want.as_str()
    )));
    let last = std::cell::RefCell::new(String::from("not reconciled yet"));
    // A watch (kube-runtime's await_condition), not a poll: every status change is seen, and
    // each one updates the progress line.
    let settled = |a: Option<&Agent>| {
        // Gone: nothing more to wait for (reported below).
        let Some(a) = a else { return true };
        let st = a.status.clone().unwrap_or_default();
        let current = st.observed_generation >= a.metadata.generation;
        let state = agent_state(&st, current);
        progress.borrow_mut().set(&state);
        *last.borrow_mut() = state;
        current && (st.phase == Some(want) || st.phase == Some(AgentPhase::Failed))
    };
    let watch = kube::runtime::wait::await_condition(api.clone(), name, settled);
    let waited = match deadline.remaining() {
        Some(left) => tokio::time::timeout(left, watch).await.ok(),
        None => Some(watch.await),
    };
    let last = last.borrow().clone();
    let agent = match waited {
        None => return Err(timed_out(&what, want.as_str(), &deadline, &last)),
        Some(Err(e)) => {
            return Err(CliError::new(
                Kind::Unavailable,
                format!("watching {what}: {e}"),
            ));
        }
        Some(Ok(None)) => {
            return Err(CliError::new(
                Kind::NotFound,
                format!(
                    "{what} was deleted while waiting for it to be {}",
                    want.as_str()
                ),
            ));
        }
        Some(Ok(Some(a))) => a,
    };
    let st = agent.status.unwrap_or_default();
    let progress = progress.into_inner();
    if st.phase == Some(AgentPhase::Failed) && want != AgentPhase::Failed {
        progress.finish("Failed");
        return Err(CliError::new(
            Kind::General,
            format!("{what} failed: {}", st.message.unwrap_or_default()),
        ));
    }
    progress.finish(&format!(
        "{} ({:.1}s)",
        want.as_str(),
        deadline.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// An Agent's phase and what it waits on, in one line: `Pending: Ready=False SecretMissing: ...`.
fn agent_state(st: &bb_crds::AgentStatus, current: bool) -> String {
    let Some(phase) = st.phase.map(|p| p.as_str()) else {
        return "not reconciled yet".into();
    };
    if !current {
        return format!("{phase}: the applied generation is not reconciled yet");
    }
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status != "True");
    // The status message is the most telling: the build step, or the attempt and the next one.
    match (ready, &st.message) {
        (_, Some(m)) if m.starts_with("building") => format!("{phase}: {m}"),
        (Some(c), m) => format!(
            "{phase}: Ready=False {}: {}",
            c.reason,
            m.as_deref().unwrap_or(&c.message)
        ),
        (None, Some(m)) => format!("{phase}: {m}"),
        (None, None) => phase.to_string(),
    }
}

fn timed_out(what: &str, condition: &str, deadline: &Deadline, last: &str) -> CliError {
    CliError::new(
        Kind::Unavailable,
        format!(
            "timed out after {} (--timeout) waiting for {what} to be {condition}; last seen: {last}. `bbctl describe {what}` says more",
            deadline.timeout_text()
        ),
    )
}

/// Deletes one object and, with a `deadline`, waits until it is gone (an Agent's finalizer
/// holds it until its containers are removed). `None` returns once deletion is accepted.
/// `Ok(false)`: there was no such object.
async fn delete_object<K>(
    api: &Api<K>,
    what: &str,
    name: &str,
    deadline: Option<Deadline>,
) -> Result<bool, CliError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
        Err(e) => return Err(api_error(what, e)),
    }
    let Some(deadline) = deadline else {
        return Ok(true);
    };
    while api
        .get_opt(name)
        .await
        .map_err(|e| api_error(what, e))?
        .is_some()
    {
        if deadline.passed() {
            return Err(CliError::new(
                Kind::Unavailable,
                format!(
                    "{what} is still terminating after {} (--timeout); `bbctl describe {what}` says why",
                    deadline.timeout_text()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(true)
}

/// When a wait gives up: one deadline for everything the command waits on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    started: Instant,
    /// `None`: no limit (`--timeout=0s`).
    timeout: Option<Duration>,
}

impl Deadline {
    /// From now; a zero `timeout` is no limit.
    pub(super) fn new(timeout: Duration) -> Deadline {
        Deadline {
            started: Instant::now(),
            timeout: (!timeout.is_zero()).then_some(timeout),
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn passed(&self) -> bool {
        self.timeout.is_some_and(|t| self.started.elapsed() > t)
    }

    /// What is left of the limit (`None`: no limit).
    fn remaining(&self) -> Option<Duration> {
        self.timeout
            .map(|t| t.saturating_sub(self.started.elapsed()))
    }

    fn timeout_text(&self) -> String {
        self.timeout
            .map(|t| {
                format!(
                    "{:#}",
                    jiff::SignedDuration::try_from(t).unwrap_or_default()
                )
            })
            .unwrap_or_default()
    }
}

pub fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let targets: Vec<(String, String, Option<String>)> = if args.files.files.is_empty() {
        match args.what.as_slice() {
            [kind, names @ ..] if !kind.contains('/') && !names.is_empty() => names
                .iter()
                .map(|n| (kind.clone(), n.clone(), None))
                .collect(),
            [one] if one.contains('/') => {
                let (k, n) = one.split_once('/').unwrap_or_default();
                vec![(k.to_string(), n.to_string(), None)]
            }
            _ => {
                return Err(CliError::new(
                    Kind::Usage,
                    "what to delete: TYPE NAME (bottle NAME, agent NAME), TYPE/NAME, or -f FILE",
                ));
            }
        }
    } else {
        let (resources, errors) =
            super::validate::load(&args.files.required()?.files, args.files.recursive)?;
        if !errors.is_empty() {
            return Err(CliError::new(Kind::Validation, errors.join("\n")));
        }
        resources
            .iter()
            .map(|r| {
                let ns = match r {
                    Resource::Agent(a) => a.namespace(),
                    Resource::AgentPool(p) => p.namespace(),
                    Resource::Bottle(_) => None,
                };
                (r.kind().to_lowercase(), r.name().to_string(), ns)
            })
            .collect()
    };
    let rt = super::runtime()?;
    let deadline = args.wait.then(|| Deadline::new(args.timeout));
    rt.block_on(async {
        let client = args.target.client_autostart().await?;
        // Like kubectl: a missing object does not stop the rest; it is reported, and fails the
        // command at the end (unless --ignore-not-found).
        let mut missing = Vec::new();
        let mut done = |what: String, deleted: bool| {
            if deleted {
                println!("{what} deleted");
            } else if !args.ignore_not_found {
                eprintln!("Error from server (NotFound): {what} not found");
                missing.push(what);
            }
        };
        for (kind, name, ns) in targets {
            match super::target::bare_kind(&kind.to_ascii_lowercase()) {
                "bottle" | "bottles" | "bt" => {
                    let what = format!("bottle.bot-bottle.dev/{name}");
                    let api: Api<Bottle> = Api::all(client.clone());
                    let deleted = delete_object(&api, &what, &name, deadline).await?;
                    done(what, deleted);
                }
                "agent" | "agents" | "ag" => {
                    let ns = ns.unwrap_or_else(|| args.target.namespace());
                    let what = format!("agent.bot-bottle.dev/{name}");
                    let api: Api<Agent> = Api::namespaced(client.clone(), &ns);
                    let deleted = delete_object(&api, &what, &name, deadline).await?;
                    done(what, deleted);
                }
                "agentpool" | "agentpools" | "pool" | "pools" => {
                    let ns = ns.unwrap_or_else(|| args.target.namespace());
                    let what = format!("agentpool.bot-bottle.dev/{name}");
                    let api: Api<AgentPool> = Api::namespaced(client.clone(), &ns);
                    let deleted = delete_object(&api, &what, &name, deadline).await?;
                    done(what, deleted);
                }
                other => {
                    return Err(CliError::new(
                        Kind::Usage,
                        format!(
                            "unknown type '{other}'; valid: bottle (bt), agent (ag), agentpool (pool)"
                        ),
                    ));
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(CliError::new(
                Kind::NotFound,
                format!("not found: {}", missing.join(", ")),
            ))
        }
    })
}

#[derive(Debug, clap::Args)]
pub struct SuspendArgs {
    /// The Agent: agent/NAME or NAME.
    agent: String,
    /// Wait until the Agent is Suspended (suspend) or Running (resume); `--wait=false` returns
    /// once the request is recorded.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    wait: bool,
    /// How long --wait waits (`30s`, `5m`; `0s`: no limit).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    target: Target,
}

/// The annotation `bbctl resume` sets: a change to the Agent, so one that gave up after failing
/// (`RetriesExhausted`) tries again even when its spec did not change.
pub const RETRY_ANNOTATION: &str = "bot-bottle.dev/retried-at";

/// `bbctl suspend` / `bbctl resume`: sets `spec.suspend` (the runner snapshots and stops the
/// agent, or starts it again from the snapshot) and, by default, waits until it has.
pub fn set_suspend(args: SuspendArgs, suspend: bool) -> Result<(), CliError> {
    let name = super::target::agent_name(&args.agent)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.target.client_autostart().await?;
        let api: Api<Agent> = Api::namespaced(client, &args.target.namespace());
        let what = format!("agent.bot-bottle.dev/{name}");
        request_suspend(&api, &name, suspend).await?;
        let asked = if suspend { "suspend" } else { "resume" };
        if !args.wait {
            println!("{what} {asked} requested");
            return Ok(());
        }
        let deadline = Deadline::new(args.timeout);
        if suspend {
            wait_phase(&api, &name, deadline, bb_crds::AgentPhase::Suspended).await?;
            println!("{what} suspended");
        } else {
            wait_running(&api, &name, deadline).await?;
            println!("{what} resumed");
        }
        Ok(())
    })
}
