//! Control-plane benchmark (prints a table; never a pass/fail test). Starts the real
//! `bbctl controller run`, stores 10,000 Agents through the API, then measures list latency,
//! watch delivery latency to 50 watchers, and the server's resident memory.
//!
//! Run: `cargo bench -p bbctl --bench control_plane` (AGENTS=N to change the object count).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bb_crds::{Agent, AgentSpec};
use futures_util::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use support::ControlPlane;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::var("AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let cp = ControlPlane::start();
    let pid = cp.child.as_ref().map(|c| c.id()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let kc = Kubeconfig::read_from(cp.kubeconfig()).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(cfg).expect("client");
        let api: Api<Agent> = Api::namespaced(client.clone(), "default");

        // Creates: 32 requests in flight.
        let started = Instant::now();
        futures_util::stream::iter(0..n)
            .map(|i| {
                let api = api.clone();
                async move {
                    let mut a = Agent::new(&format!("agent-{i:05}"), AgentSpec::default());
                    a.spec.bottle_ref.name = "claude".into();
                    a.spec.label = Some(format!("bench {i}"));
                    api.create(&PostParams::default(), &a).await.map(|_| ())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<()>>()
            .await
            .expect("creates");
        let create_secs = started.elapsed().as_secs_f64();

        // Full list, 10 times.
        let mut lists = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let l = api.list(&ListParams::default()).await.expect("list");
            assert_eq!(l.items.len(), n);
            lists.push(t.elapsed());
        }
        lists.sort();

        // Watch delivery: 50 watchers, 200 updates; latency from just before the write to each
        // watcher's receipt.
        let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> =
            Arc::default();
        let latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
        let rv = api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .expect("rv")
            .metadata
            .resource_version
            .unwrap_or_default();
        let updates = 200usize;
        let mut watchers = Vec::new();
        for _ in 0..50 {
            let api = api.clone();
            let (sent, latencies, rv) = (sent.clone(), latencies.clone(), rv.clone());
            watchers.push(tokio::spawn(async move {
                let mut s = api
                    .watch(
                        &WatchParams::default().fields("metadata.name=agent-00000"),
                        &rv,
                    )
                    .await
                    .expect("watch")
                    .boxed();
                let mut got = 0;
                while got < updates {
                    match s.try_next().await {
                        Ok(Some(WatchEvent::Modified(a))) => {
                            let label = a.spec.label.unwrap_or_default();
                            let at = sent.lock().expect("lock").get(&label).copied();
                            if let Some(at) = at {
                                latencies.lock().expect("lock").push(at.elapsed());
                                got += 1;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..updates {
            let label = format!("update {i}");
            sent.lock()
                .expect("lock")
                .insert(label.clone(), Instant::now());
            let patch = serde_json::json!({"spec": {"label": label}});
            api.patch(
                "agent-00000",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("patch");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for w in watchers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
        let mut lat = latencies.lock().expect("lock").clone();
        lat.sort();
        let rss = rss_kib(pid);

        println!(
            "control plane benchmark ({n} Agents, {} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!("{:<34} {:>14} {:>12}", "metric", "value", "target");
        println!(
            "{:<34} {:>14.0} {:>12}",
            "creates/s (32 in flight)",
            n as f64 / create_secs,
            ">= 2000"
        );
        println!(
            "{:<34} {:>11.1} ms {:>12}",
            "full list p50",
            percentile(&lists, 0.5).as_secs_f64() * 1e3,
            ""
        );
        println!(
            "{:<34} {:>11.1} ms {:>12}",
            "full list max",
            percentile(&lists, 1.0).as_secs_f64() * 1e3,
            "< 250 ms"
        );
        println!(
            "{:<34} {:>14} {:>12}",
            "watch events delivered",
            lat.len(),
            format!("{}", 50 * updates)
        );
        println!(
            "{:<34} {:>11.2} ms {:>12}",
            "watch delivery p50",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            ""
        );
        println!(
            "{:<34} {:>11.2} ms {:>12}",
            "watch delivery p99",
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            "< 50 ms"
        );
        println!(
            "{:<34} {:>11.1} MB {:>12}",
            "server RSS",
            rss as f64 / 1024.0,
            "< 250 MB"
        );
        drop(cp);
    });
}
