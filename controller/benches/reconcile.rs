//! Reconciler benchmark (prints a table; never a pass/fail test): N Agents on the fake backend
//! against the embedded control plane; time until every Agent is Ready, process CPU and RSS.
//!
//! Run: `cargo bench -p bb-controller --bench reconcile` (AGENTS=N to change the count).

use std::time::{Duration, Instant};

use bb_backend::fake::FakeBackend;
use bb_crds::{Agent, AgentPhase, AgentSpec, Bottle};
use bb_home::Home;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, PostParams};

fn proc_stat() -> (f64, u64) {
    let ticks = 100.0;
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<&str> = s.rsplit(')').next()?.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / ticks)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

fn main() {
    let n: usize = std::env::var("AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = bb_controller::control_plane::embedded(Home::open(dir.path()).expect("home"), "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("control plane");
        let bottles: Api<Bottle> = Api::all(cp.client.clone());
        let bottle: Bottle = serde_json::from_value(serde_json::json!({
            "apiVersion": "bot-bottle.dev/v1alpha1", "kind": "Bottle", "metadata": {"name": "bench"},
            "spec": {"agentProvider": {"template": "custom", "image": "agent:1", "command": ["bash"]},
                     "egress": {"routes": [{"host": "pypi.org"}]}}
        }))
        .expect("bottle");
        bottles.create(&PostParams::default(), &bottle).await.expect("bottle");
        let (cpu0, _) = proc_stat();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let backend = FakeBackend::new();
        let client = cp.client.clone();
        let task = tokio::spawn(bb_runner::reconcile::run(
            client,
            std::sync::Arc::new(backend.clone()),
            Duration::from_secs(60),
            None,
            Default::default(),
            None,
            async move {
                let _ = rx.await;
            }
            .boxed()
            .shared(),
        ));
        let agents: Api<Agent> = Api::namespaced(cp.client.clone(), "default");
        let started = Instant::now();
        futures_util::stream::iter(0..n)
            .map(|i| {
                let agents = agents.clone();
                async move {
                    let mut a = Agent::new(&format!("bench-{i:04}"), AgentSpec::default());
                    a.spec.bottle_ref.name = "bench".into();
                    agents.create(&PostParams::default(), &a).await.map(|_| ())
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .expect("create agents");
        let created = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut ready = 0;
        while Instant::now() < deadline {
            let list = agents.list(&ListParams::default()).await.expect("list");
            ready = list.items.iter().filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(AgentPhase::Running)).count();
            if ready == n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let all_ready = started.elapsed();
        let (cpu1, rss) = proc_stat();
        let _ = tx.send(());
        let _ = task.await;
        println!("reconciler benchmark ({n} Agents, fake backend, embedded control plane, {} cores)", std::thread::available_parallelism().map_or(1, |c| c.get()));
        println!("{:<40} {:>12} {:>12}", "metric", "value", "target");
        println!("{:<40} {:>9.2} s {:>12}", "all Agents created", created.as_secs_f64(), "");
        println!("{:<40} {:>9.2} s {:>12}", "all Agents Running", all_ready.as_secs_f64(), "< 10 s");
        println!("{:<40} {:>12} {:>12}", "Agents Running", format!("{ready}/{n}"), "");
        println!("{:<40} {:>9.2} s {:>12}", "CPU (controller + apiserver + client)", cpu1 - cpu0, "");
        println!("{:<40} {:>9.1} MB {:>12}", "RSS (whole process)", rss as f64 / 1024.0, "< 150 MB");
    });
}
