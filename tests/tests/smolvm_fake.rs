//! The smolvm backend driven end to end through a stand-in `smolvm` CLI (`fake-smolvm`: the
//! backend's argv grammar, each VM a network-less container whose only way out is the fake's
//! TSI, which carries connections to the `--allow-cidr` addresses on the host's loopback).
//! The sidecar is a real Docker sidecar published on the bottle's loopback alias. The
//! reference's integration assertions hold, and so do the reconcile flow and sessions.

use std::time::{Duration, Instant};

use bb_e2e::integration;
use bb_e2e::{
    Cleanup, Controller, UPSTREAM_PY, containers_with, docker, ensure_base_image, in_agent,
    networks_with, ok, run, test_pki,
};

const TOKEN: &str = "e2e-Smol-T0ken-5e4d3c2b1a0f9e8d";
/// The Agent's secret env: given to its sessions only.
const SESSION_SECRET: &str = "e2e-Smol-Sess10n-8a7b6c5d4e3f";
const READY_LIMIT: Duration = Duration::from_secs(600);
/// The ports the fake's TSI carries: the sidecar's proxy, git-gate and supervise.
const TSI_PORTS: &str = "3128,9420,9100";

fn manifest(extra_routes: &str) -> String {
    integration::token_bottle(
        "smol",
        "smolvm",
        &integration::test_agent_dockerfile(),
        (TOKEN, SESSION_SECRET),
        "smol prompt",
        extra_routes,
    )
}

/// Every `smolvm` argv the backend ran, in order.
fn argvs(state: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(state.join("argv.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The fake's VM containers for this test's Agent.
fn vms() -> Vec<String> {
    vms_of("smol")
}

/// The fake's VM containers for Agent `default/name`.
fn vms_of(name: &str) -> Vec<String> {
    ok(&mut docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        "label=fake-smolvm=1",
        "--filter",
        &format!("name=fake-smolvm-bb-default-{name}-"),
    ]))
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// The running VM's container (exactly one).
fn vm() -> String {
    let running: Vec<String> = vms()
        .into_iter()
        .filter(|c| ok(&mut docker(&["inspect", "-f", "{{.State.Running}}", c])).trim() == "true")
        .collect();
    assert_eq!(running.len(), 1, "running VMs: {running:?}");
    running[0].clone()
}

/// Removes the fake's VMs and stops their network halves, whatever the test left.
struct VmCleanup(std::path::PathBuf);

impl Drop for VmCleanup {
    fn drop(&mut self) {
        for c in vms_of("smol").into_iter().chain(vms_of("ghost")) {
            let _ = run(&mut docker(&["rm", "-f", &c]));
        }
        if let Ok(dirs) = std::fs::read_dir(self.0.join("tsi")) {
            for d in dirs.filter_map(Result::ok) {
                if let Ok(pid) = std::fs::read_to_string(d.path().join("host.pid")) {
                    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
                }
            }
        }
    }
}

#[test]
fn smolvm_backend_runs_the_full_flow_through_its_cli() {
    ensure_base_image();
    let fake = env!("CARGO_BIN_EXE_fake-smolvm");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("fake-state");
    let (ca, cert, key) = test_pki(&["api.example.test", "other.example.test"]);
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca).expect("write ca");
    let state_arg = state.display().to_string();
    let _vms = VmCleanup(state.clone());
    let mut cp = Controller::start_with_env(
        &[
            "--backend",
            "smolvm",
            "--smolvm-cli",
            fake,
            "--upstream-ca",
            &ca_path.display().to_string(),
            "--resync-seconds",
            "2",
        ],
        &[
            ("FAKE_SMOLVM_STATE", &state_arg),
            ("FAKE_SMOLVM_PORTS", TSI_PORTS),
        ],
    );
    let agent_label = "bot-bottle.dev/agent=default/smol";
    let _cleanup = Cleanup(agent_label.to_string());

    // 1. apply -> Running, on the smolvm backend.
    let started = Instant::now();
    cp.apply(&manifest(""));
    cp.wait_for("the Agent to be Running", READY_LIMIT, || {
        cp.jsonpath(&["agent", "smol"], "{.status.phase}") == "Running"
    });
    println!(
        "apply -> Running in {:.1}s through the fake CLI",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        cp.jsonpath(&["agent", "smol"], "{.status.backend}"),
        "smolvm"
    );
    let agent = vm();
    let sidecar = bb_e2e::harness::one(
        containers_with(&format!("{agent_label},bot-bottle.dev/role=sidecar")),
        "sidecar",
    );
    let egress_net = bb_e2e::harness::one(
        networks_with(&format!("{agent_label},bot-bottle.dev/role=egress-network")),
        "egress network",
    );
    assert!(
        networks_with(&format!(
            "{agent_label},bot-bottle.dev/role=internal-network"
        ))
        .is_empty(),
        "a VM's bottle has no internal network"
    );
    let upstream = bb_e2e::start_upstream(
        "bb-e2e-upstream-smol",
        &egress_net,
        &["api.example.test", "other.example.test"],
        UPSTREAM_PY,
        (&cert, &key),
    );

    // 2. The argv the backend ran: one /32 allowed, no host names, no secret anywhere.
    let calls = argvs(&state);
    let create = calls
        .iter()
        .find(|a| a.starts_with(&["machine".to_string(), "create".to_string()]))
        .expect("a machine create");
    let cidrs: Vec<&String> = create
        .windows(2)
        .filter(|w| w[0] == "--allow-cidr")
        .map(|w| &w[1])
        .collect();
    assert_eq!(cidrs.len(), 1, "{create:?}");
    let alias = cidrs[0].strip_suffix("/32").expect("a /32").to_string();
    assert!(alias.starts_with("127.1."), "{alias}");
    assert!(
        !create.iter().any(|a| a == "--allow-host"),
        "no name may resolve in the guest: {create:?}"
    );
    assert!(
        calls.iter().any(
            |a| a.starts_with(&["pack".to_string(), "create".to_string()])
                && a.contains(&"--image".to_string())
        ),
        "the VM boots from a packed artifact"
    );
    let all = std::fs::read_to_string(state.join("argv.jsonl")).unwrap_or_default();
    assert!(!all.contains(TOKEN), "a token reached a smolvm argv");
    // The sidecar's ports are published on the alias and nowhere else.
    let ports = ok(&mut docker(&["port", &sidecar]));
    assert!(!ports.trim().is_empty(), "nothing published");
    for line in ports.lines() {
        assert!(
            line.contains(&format!("-> {alias}:")),
            "published beyond the alias: {line}"
        );
    }

    // 3. The reference's integration assertions, the sidecar named by its alias; and no name
    // resolves in the guest.
    integration::assert_reference_checks(&cp, &agent, &alias, &upstream, TOKEN);
    let (resolved, out) = in_agent(&agent, "getent hosts api.example.test");
    assert!(!resolved, "a name resolved in the guest: {out}");

    // 4. Policy change: the new host is allowed without a new VM.
    cp.apply(&manifest("      - host: other.example.test\n"));
    cp.wait_for(
        "the second host to be allowed",
        Duration::from_secs(60),
        || in_agent(&agent, "curl -sS -m 5 https://other.example.test/").0,
    );
    assert_eq!(vm(), agent, "a policy edit recreated the VM");

    // 5. Sessions through the runner: exit codes and output, the secret env by stdin only.
    let home = cp.home.path().to_path_buf();
    let exec = |cmd: &[&str]| cp.exec("smol", cmd);
    integration::assert_exec_basics(&cp, "smol", "smol prompt");
    let out = exec(&[
        "sh",
        "-c",
        "echo \"$SESSION_TOKEN|$(id -u)|$HOME\"; ls /run/bb-session-* 2>&1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with(&format!("{SESSION_SECRET}|1000|/home/")),
        "{text}"
    );
    assert!(
        text.contains("No such file"),
        "the env file outlived the session start: {text}"
    );
    let argv_log = std::fs::read_to_string(state.join("argv.jsonl")).unwrap_or_default();
    assert!(
        !argv_log.contains(SESSION_SECRET),
        "the session's secret env on a smolvm argv"
    );
    assert!(
        !ok(&mut docker(&["inspect", &agent])).contains(SESSION_SECRET),
        "the session's secret env is in the VM's configuration"
    );
    let out = exec(&["getent", "hosts", "bb-sidecar"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&alias),
        "the sidecar's name: {out:?}"
    );

    // 6. Drift: a VM deleted out of band comes back, provisioned, egress working.
    let vm_name = create[create.iter().position(|a| a == "--name").expect("--name") + 1].clone();
    ok(std::process::Command::new(fake)
        .env("FAKE_SMOLVM_STATE", &state)
        .args(["machine", "delete", "--name", &vm_name]));
    cp.wait_for("the VM to be recreated", Duration::from_secs(120), || {
        vms().len() == 1
            && vms()[0] != agent
            && cp.jsonpath(&["agent", "smol"], "{.status.phase}") == "Running"
    });
    let agent = vm();
    cp.wait_for("egress from the new VM", Duration::from_secs(30), || {
        in_agent(&agent, "curl -sS -m 5 https://api.example.test/again").0
    });

    // 7. Suspend / resume: the VM's files survive in a packed snapshot.
    let (wrote, out) = in_agent(&agent, "echo kept-across-suspend > /home/agent/state.txt");
    assert!(wrote, "{out}");
    let snapshot = integration::suspend(&cp, "smol");
    assert!(
        snapshot.ends_with(".smolmachine") && std::path::Path::new(&snapshot).is_file(),
        "{snapshot}"
    );
    integration::resume(&cp, "smol");
    let agent = vm();
    let (_, kept) = in_agent(&agent, "cat /home/agent/state.txt");
    assert!(
        kept.contains("kept-across-suspend"),
        "lost across suspend: {kept}"
    );
    cp.wait_for("egress after resume", Duration::from_secs(30), || {
        in_agent(&agent, "curl -sS -m 5 https://api.example.test/resumed").0
    });
    // Provisioned again: the sidecar's name is back in the new VM's hosts file.
    let (named, out) = in_agent(&agent, "getent hosts bb-sidecar");
    assert!(named && out.contains(&alias), "after resume: {out}");

    // 8. doctor finds the runtime (its sidecars' Docker beside it).
    let report =
        String::from_utf8_lossy(&run(&mut cp.bbctl(&["doctor", "--smolvm-cli", fake])).stdout)
            .into_owned();
    assert!(report.contains("ok    smolvm:"), "{report}");
    assert!(report.contains("usable: docker, smolvm"), "{report}");

    // 9. Start-up sweep: a VM and record this runner made for an Agent that no longer exists
    // go when it starts; the live Agent's VM stays.
    let records = home.join("smolvm").join("records");
    let ghost_uid = "0000dead-0000-4000-8000-000000000000";
    std::fs::write(
        records.join(format!("{ghost_uid}.json")),
        serde_json::json!({
            "namespace": "default", "name": "ghost", "uid": ghost_uid,
            "alias": "127.1.255.254", "vm": null,
        })
        .to_string(),
    )
    .expect("ghost record");
    let ghost_vm = "bb-default-ghost-0000dead-agent";
    ok(std::process::Command::new(fake)
        .env("FAKE_SMOLVM_STATE", &state)
        .args(["machine", "create", "--name", ghost_vm, "--from", &snapshot]));
    ok(std::process::Command::new(fake)
        .env("FAKE_SMOLVM_STATE", &state)
        .env("FAKE_SMOLVM_PORTS", TSI_PORTS)
        .args(["machine", "start", "--name", ghost_vm]));
    assert_eq!(vms_of("ghost").len(), 1, "the ghost VM runs");
    cp.kill();
    cp.spawn();
    cp.wait_for("the ghost to be swept", Duration::from_secs(60), || {
        vms_of("ghost").is_empty() && !records.join(format!("{ghost_uid}.json")).exists()
    });
    cp.wait_for(
        "the Agent to run after the restart",
        Duration::from_secs(120),
        || cp.jsonpath(&["agent", "smol"], "{.status.phase}") == "Running",
    );
    assert_eq!(vm(), agent, "a restart recreated the VM");

    // 10. Delete: the VM, the sidecar, the network, the record and the snapshots all go.
    drop(upstream);
    let out = run(&mut cp.kubectl(&["delete", "agent", "smol", "-n", "default", "--timeout=120s"]));
    assert!(out.status.success(), "delete: {out:?}\n{}", cp.log());
    assert!(vms().is_empty(), "VMs left behind");
    assert!(
        containers_with(agent_label).is_empty(),
        "containers left behind"
    );
    assert!(
        networks_with(agent_label).is_empty(),
        "networks left behind"
    );
    assert!(
        !std::path::Path::new(&snapshot).exists(),
        "the snapshot outlived its Agent"
    );
    assert_eq!(
        std::fs::read_dir(&records).map(|d| d.count()).unwrap_or(0),
        0,
        "a record outlived its Agent"
    );
    // The stand-in packs a machine by committing its container to an image (a real smolvm
    // writes the artifact alone): that image is the stand-in's, so the suite removes it.
    let packed = ok(&mut docker(&[
        "images",
        "-q",
        "--filter",
        "label=fake-smolvm=1",
    ]));
    for image in packed.split_whitespace() {
        let _ = run(&mut docker(&["rmi", "-f", image]));
    }
}
