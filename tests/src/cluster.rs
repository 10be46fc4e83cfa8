//! A cluster on one machine for cluster-mode suites and benchmarks: a control plane process that
//! stands in for the cluster (it runs no Agents), runner processes syncing from it with the fake
//! backend, and the journals those runners keep of every agent start and stop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{run, wait_until, workspace_bin};

/// The control plane that plays the cluster: `controller run --backend none`.
#[derive(Debug)]
pub struct Cluster {
    pub home: tempfile::TempDir,
    child: Option<Child>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_on("127.0.0.1:0")
    }

    /// A cluster whose API listens on `listen` (its kubeconfig names that address).
    pub fn start_on(listen: &str) -> Cluster {
        let home = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(home.path().join("controller.log")).expect("log");
        let child = Command::new(workspace_bin("bbctl"))
            .args([
                "controller",
                "run",
                "--backend",
                "none",
                "--listen",
                listen,
                "--home",
            ])
            .arg(home.path())
            // Who asked for what: the runner role is checked against it.
            .arg("--audit-log")
            .arg(home.path().join("audit.jsonl"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the cluster's control plane");
        let c = Cluster {
            home,
            child: Some(child),
        };
        wait_until(
            "the cluster's control plane",
            Duration::from_secs(60),
            || {
                c.kubeconfig().exists()
                    && run(&mut c.kubectl(&["get", "--raw", "/readyz"]))
                        .status
                        .success()
            },
            || c.log(),
        );
        c
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.home.path().join("kubeconfig")
    }

    /// Every request the runners made (User-Agent `bb-runner/...`), one audit line each.
    pub fn runner_requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.home.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["userAgent"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("bb-runner/"))
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("controller.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        c
    }

    /// `bbctl ARGS --kubeconfig` this cluster.
    pub fn bbctl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(workspace_bin("bbctl"));
        c.args(args).arg("--kubeconfig").arg(self.kubeconfig());
        c
    }

    /// `kubectl apply -f -` of `yaml`, asserting it succeeded.
    pub fn apply(&self, yaml: &str) {
        crate::apply_with(self.kubectl(&["apply", "-f", "-"]), yaml);
    }

    /// Every Agent in `default`: name → (phase, runner).
    pub fn agents(&self) -> BTreeMap<String, (String, String)> {
        let out = run(&mut self.kubectl(&["get", "agents", "-o", "json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|a| {
                        let s = |p: &str| {
                            a.pointer(p)
                                .and_then(|x| x.as_str())
                                .unwrap_or("")
                                .to_string()
                        };
                        (
                            s("/metadata/name"),
                            (s("/status/phase"), s("/status/runner")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Cluster {
    /// Every Agent in `default`: name → uid.
    pub fn uids(&self) -> BTreeMap<String, String> {
        let out = run(&mut self.kubectl(&[
            "get",
            "agents",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{\"\\n\"}{end}",
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, u)| (n.to_string(), u.to_string()))
            .collect()
    }

    /// The members of warm pool `pool` in `default`: (name, runner, ready), by name.
    pub fn pool_members(&self, pool: &str) -> Vec<(String, String, bool)> {
        let out = run(&mut self.kubectl(&["get", "agentpool", pool, "-o", "json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut members: Vec<(String, String, bool)> = v["status"]["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        (
                            m["name"].as_str().unwrap_or("").to_string(),
                            m["runner"].as_str().unwrap_or("").to_string(),
                            m["ready"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    }

    /// The pool member Agent `name` in `default` runs in (`status.bottleCopy.name`), if any.
    pub fn bottle_copy(&self, name: &str) -> Option<String> {
        let out = run(&mut self.kubectl(&[
            "get",
            "agent",
            name,
            "-o",
            "jsonpath={.status.bottleCopy.name}",
        ]));
        let copy = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!copy.is_empty()).then_some(copy)
    }

    /// The Agents runner `id` holds, by name.
    pub fn held_by(&self, id: &str) -> Vec<String> {
        self.agents()
            .into_iter()
            .filter(|(_, (_, r))| r == id)
            .map(|(n, _)| n)
            .collect()
    }

    /// Whether each of `names` runs on a runner other than `not`.
    /// `running_elsewhere`, and each of them started by the runner its status names, as that
    /// runner's journal says (a claim rewrites `status.runner` before the new runner has started
    /// the Agent, while `phase` still shows the old runner's `Running`).
    pub fn started_elsewhere(&self, journals: &[&Path], names: &[String], not: &str) -> bool {
        let open: Vec<Stint> = stints(&read_journals(journals), &BTreeMap::new())
            .into_iter()
            .filter(|s| s.to.is_none())
            .collect();
        self.elsewhere(names, not, |n, runner| {
            open.iter()
                .any(|s| s.agent == format!("default/{n}") && s.runner == runner)
        })
    }

    /// Every one of `names` is `Running` on a runner other than `not`, by its status.
    pub fn running_elsewhere(&self, names: &[String], not: &str) -> bool {
        self.elsewhere(names, not, |_, _| true)
    }

    /// `names` all Running, by status, on runners other than `not` that `also(name, runner)`.
    fn elsewhere(&self, names: &[String], not: &str, also: impl Fn(&str, &str) -> bool) -> bool {
        let a = self.agents();
        names.iter().all(|n| {
            a.get(n)
                .is_some_and(|(p, r)| p == "Running" && !r.is_empty() && r != not && also(n, r))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        crate::kill_child(&mut self.child);
    }
}

/// A Secret, a Bottle the fake backend can run (its env read from the Secret, as a runner
/// reads it from the cluster), and `n` Agents in it named `agent-000`...
pub fn bottle_and_agents(n: usize) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: api-token, namespace: bot-bottle-system}\nstringData: {token: s3cret-value}\n---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Bottle\nmetadata: {name: tools}\nspec:\n  agentProvider: {template: custom, image: 'agent:1', command: [bash]}\n  env: [{name: API_TOKEN, valueFrom: {secretKeyRef: {name: api-token, key: token}}}]\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "---\napiVersion: bot-bottle.dev/v1alpha1\nkind: Agent\nmetadata: {{name: agent-{i:03}}}\nspec: {{bottleRef: {{name: tools}}}}\n"
        ));
    }
    y
}

/// One runner process syncing from a `Cluster`: the fake backend, or Docker (`docker`).
#[derive(Debug)]
pub struct RunnerProc {
    pub home: tempfile::TempDir,
    pub journal: PathBuf,
    pub id: String,
    child: Option<Child>,
    args: Vec<String>,
    kubeconfig: PathBuf,
    netns: Option<String>,
    /// `--backend ...` and what goes with it.
    backend: Vec<String>,
}

impl RunnerProc {
    /// Starts a runner with `extra` flags (`--runner-label`, `--capacity`) and waits for its
    /// identity.
    pub fn start(cluster: &Cluster, extra: &[&str]) -> RunnerProc {
        Self::start_in(cluster, None, extra)
    }

    /// A runner on the Docker engine, with the hermetic base image and this build's sidecar.
    pub fn docker(cluster: &Cluster) -> RunnerProc {
        Self::docker_with(cluster, &[])
    }

    /// `docker` with `extra` flags (`--upstream-ca`); the tests' stand-in upstreams live on the
    /// bottles' private Docker networks, so private upstreams are allowed.
    pub fn docker_with(cluster: &Cluster, extra: &[&str]) -> RunnerProc {
        let backend = vec![
            "--backend".to_string(),
            "docker".into(),
            "--base-image".into(),
            crate::BASE_IMAGE.into(),
            "--sidecar-binary".into(),
            workspace_bin("bb-sidecar").to_string_lossy().into_owned(),
            "--allow-private-upstreams".into(),
        ];
        Self::launch(cluster, None, extra, Some(backend))
    }

    /// `start`, inside network namespace `netns` when given.
    pub fn start_in(cluster: &Cluster, netns: Option<&str>, extra: &[&str]) -> RunnerProc {
        Self::launch(cluster, netns, extra, None)
    }

    fn launch(
        cluster: &Cluster,
        netns: Option<&str>,
        extra: &[&str],
        backend: Option<Vec<String>>,
    ) -> RunnerProc {
        let home = tempfile::tempdir().expect("tempdir");
        let journal = home.path().join("journal.jsonl");
        let mut r = RunnerProc {
            journal,
            id: String::new(),
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
            kubeconfig: cluster.kubeconfig(),
            netns: netns.map(str::to_string),
            backend: backend.unwrap_or_default(),
            home,
        };
        if r.backend.is_empty() {
            r.backend = vec![
                "--backend".into(),
                "fake".into(),
                "--fake-journal".into(),
                r.journal.to_string_lossy().into_owned(),
            ];
        }
        r.spawn();
        r
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        // `ip netns exec` execs the runner itself, so the child is the runner.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(workspace_bin("bbctl"));
                c
            }
            None => Command::new(workspace_bin("bbctl")),
        };
        self.child = Some(
            cmd.args(["controller", "run"])
                .args(&self.backend)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .arg("--home")
                .arg(self.home.path())
                .args(["--resync-seconds", "5"])
                .args(&self.args)
                .env("RUST_LOG", "info,bb_runner::cluster=debug")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn a runner"),
        );
        let id_file = self.home.path().join("instance-id");
        wait_until(
            "the runner's identity",
            Duration::from_secs(30),
            || id_file.exists(),
            || self.log(),
        );
        self.id = std::fs::read_to_string(&id_file)
            .expect("instance-id")
            .trim()
            .to_string();
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("runner.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL: the runner gets no chance to release or fence anything.
    pub fn kill(&mut self) {
        crate::kill_child(&mut self.child);
    }

    /// SIGTERM, and wait for it to exit.
    pub fn stop(&mut self) {
        crate::term_child(&mut self.child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for RunnerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One line of a fake backend's journal.
#[derive(Debug, Clone)]
pub struct Record {
    pub at_ms: i64,
    pub runner: String,
    pub start: bool,
    pub agent: String,
}

/// Every record of `journals`, oldest first.
pub fn read_journals(journals: &[&Path]) -> Vec<Record> {
    let mut all = Vec::new();
    for j in journals {
        let text = std::fs::read_to_string(j).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("journal line is JSON");
            all.push(Record {
                at_ms: v["atMs"].as_i64().expect("atMs"),
                runner: v["runner"].as_str().expect("runner").to_string(),
                start: v["event"] == "start",
                agent: v["agent"].as_str().expect("agent").to_string(),
            });
        }
    }
    all.sort_by_key(|r| r.at_ms);
    all
}

/// One stretch of an agent running on one runner: `[from, to)`, `to` `None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stint {
    pub agent: String,
    pub runner: String,
    pub from: i64,
    pub to: Option<i64>,
}

/// The stints the journals record. `ended` closes the open stints of a runner at a time (one
/// killed then: it could record no stop).
pub fn stints(records: &[Record], ended: &BTreeMap<String, i64>) -> Vec<Stint> {
    let mut open: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut out = Vec::new();
    for r in records {
        let key = (r.agent.clone(), r.runner.clone());
        if r.start {
            if let Some(from) = open.insert(key.clone(), r.at_ms) {
                // A restart on the same runner (a recreate) ends the earlier stint.
                out.push(Stint {
                    agent: key.0,
                    runner: key.1,
                    from,
                    to: Some(r.at_ms),
                });
            }
        } else if let Some(from) = open.remove(&key) {
            out.push(Stint {
                agent: key.0,
                runner: key.1,
                from,
                to: Some(r.at_ms),
            });
        }
    }
    for ((agent, runner), from) in open {
        let to = ended.get(&runner).copied();
        out.push(Stint {
            agent,
            runner,
            from,
            to,
        });
    }
    out.sort_by(|a, b| (&a.agent, a.from).cmp(&(&b.agent, b.from)));
    out
}

/// Pairs of stints of one agent on two runners that overlap in time: an agent that ran twice.
pub fn overlaps(stints: &[Stint]) -> Vec<(Stint, Stint)> {
    let mut bad = Vec::new();
    for (i, a) in stints.iter().enumerate() {
        for b in &stints[i + 1..] {
            if a.agent == b.agent
                && a.runner != b.runner
                && a.from < b.to.unwrap_or(i64::MAX)
                && b.from < a.to.unwrap_or(i64::MAX)
            {
                bad.push((a.clone(), b.clone()));
            }
        }
    }
    bad
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A network namespace joined to the host by a veth pair, whose route to the host can be cut:
/// a runner inside it is partitioned from the cluster while it keeps running.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
    veth: String,
    /// The host's end: where the cluster's API listens.
    pub host_ip: String,
}

fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Creates it (needs root and `ip`; fails loudly without them, never skips).
    pub fn create() -> Netns {
        let n = std::process::id() % 60000;
        let (a, b) = (10 + (n / 250) % 200, n % 250);
        let net = Netns {
            name: format!("bbpart{n}"),
            veth: format!("bbh{n}"),
            host_ip: format!("10.231.{a}.{}", b / 64 * 4 + 1),
        };
        let peer = format!("bbn{n}");
        let ns_ip = format!("10.231.{a}.{}", b / 64 * 4 + 2);
        let _ = run(Command::new("ip").args(["netns", "del", &net.name]));
        let _ = run(Command::new("ip").args(["link", "del", &net.veth]));
        ip(&["netns", "add", &net.name]);
        ip(&[
            "link", "add", &net.veth, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &net.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.veth,
        ]);
        ip(&["link", "set", &net.veth, "up"]);
        ip(&[
            "-n",
            &net.name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &net.name, "link", "set", &peer, "up"]);
        ip(&["-n", &net.name, "link", "set", "lo", "up"]);
        net
    }

    /// Cuts the namespace's route to the host: packets to it are dropped, so requests hang as
    /// they would across a real partition.
    pub fn cut(&self) {
        ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.host_ip),
        ]);
    }

    pub fn heal(&self) {
        ip(&[
            "-n",
            &self.name,
            "route",
            "del",
            "blackhole",
            &format!("{}/32", self.host_ip),
        ]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(Command::new("ip").args(["link", "del", &self.veth]));
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}
