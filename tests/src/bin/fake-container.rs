//! A stand-in for Apple's `container` CLI on a machine without it: it accepts exactly the argv
//! grammar the Apple Container backend uses, records each call (one JSON line in
//! `$FAKE_CONTAINER_STATE/argv.jsonl`), carries it out on the local Docker engine, and prints
//! what it finds in the JSON shapes the reference recorded from container 1.0.
//!
//! Docker stands in for the VMs so the whole flow runs for real (sidecar policy, egress through
//! the proxy, sessions, snapshots); the builder is simulated (its state in the state directory)
//! because its DNS probe would reach the internet. An argv the real CLI would not take is
//! refused with exit 64, so a backend that drifts from the grammar fails its tests.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use bb_e2e::fake_cli::{self, usage};
use serde_json::{Value, json};

fn state_dir() -> PathBuf {
    fake_cli::state_dir("FAKE_CONTAINER_STATE", "fake-container")
}

fn record(args: &[String]) {
    fake_cli::record(&state_dir(), args);
}

fn docker() -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_BUILDKIT", "0");
    c
}

/// Runs docker with our stdio and exits with its code.
fn pass_through(mut c: Command) -> ExitCode {
    match c.status() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(e) => usage(&format!("docker: {e}")),
    }
}

fn capture(c: &mut Command) -> Option<String> {
    let out = c.stderr(Stdio::inherit()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Takes `--flag VALUE` pairs and bare switches off the front of `args` until the first
/// positional; `valued` lists the flags that take a value. Unknown flags are an error.
fn flags(
    args: &mut Vec<String>,
    valued: &[&str],
    switches: &[&str],
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    while let Some(a) = args.first().cloned() {
        if !a.starts_with('-') {
            break;
        }
        args.remove(0);
        if valued.contains(&a.as_str()) {
            if args.is_empty() {
                return Err(format!("{a} needs a value"));
            }
            out.push((a, Some(args.remove(0))));
        } else if switches.contains(&a.as_str()) {
            out.push((a, None));
        } else {
            return Err(format!("unknown option {a}"));
        }
    }
    Ok(out)
}

fn container_json(inspect: &Value) -> Value {
    let name = inspect["Name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let running = inspect["State"]["Running"].as_bool().unwrap_or(false);
    let mut networks = Vec::new();
    if let Some(nets) = inspect["NetworkSettings"]["Networks"].as_object() {
        for (net, v) in nets {
            let ip = v["IPAddress"].as_str().unwrap_or_default();
            let prefix = v["IPPrefixLen"].as_u64().unwrap_or(24);
            networks.push(json!({
                "network": net,
                "ipv4Address": if ip.is_empty() { String::new() } else { format!("{ip}/{prefix}") },
                "ipv4Gateway": v["Gateway"],
            }));
        }
    }
    json!({
        "id": name,
        "configuration": {
            "id": name,
            "labels": inspect["Config"]["Labels"].as_object().cloned().unwrap_or_default(),
            "image": {"reference": inspect["Config"]["Image"]},
        },
        "status": {
            "state": if running { "running" } else { "stopped" },
            "networks": networks,
        },
    })
}

fn inspect_all(kind: &[&str], ids: &[String]) -> Vec<Value> {
    if ids.is_empty() {
        return Vec::new();
    }
    // `docker inspect` exits 1 when any one of the ids is gone (another test removed it
    // since `ps`) yet still prints the others: the list is what it printed, so a race never
    // shows the backend an empty engine, which the real CLI never does either.
    let Ok(out) = docker().args(kind).args(ids).stderr(Stdio::null()).output() else {
        return Vec::new();
    };
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_default()
}

fn list(all: bool) -> ExitCode {
    let mut c = docker();
    c.args(["ps", "-q", "--no-trunc"]);
    if all {
        c.arg("-a");
    }
    let Some(ids) = capture(&mut c) else {
        return usage("docker ps failed");
    };
    let ids: Vec<String> = ids.split_whitespace().map(String::from).collect();
    let out: Vec<Value> = inspect_all(&["inspect"], &ids)
        .iter()
        .map(container_json)
        .collect();
    println!("{}", Value::Array(out));
    ExitCode::SUCCESS
}

fn network_list() -> ExitCode {
    let Some(ids) = capture(docker().args(["network", "ls", "-q", "--no-trunc"])) else {
        return usage("docker network ls failed");
    };
    let ids: Vec<String> = ids.split_whitespace().map(String::from).collect();
    let out: Vec<Value> = inspect_all(&["network", "inspect"], &ids)
        .iter()
        .map(|n| {
            let name = n["Name"].as_str().unwrap_or_default();
            json!({
                "id": name,
                "configuration": {
                    "name": name,
                    "mode": if n["Internal"].as_bool() == Some(true) { "hostOnly" } else { "nat" },
                    "labels": n["Labels"].as_object().cloned().unwrap_or_default(),
                    "plugin": "container-network-vmnet",
                },
                "status": {"ipv4Subnet": n["IPAM"]["Config"][0]["Subnet"]},
            })
        })
        .collect();
    println!("{}", Value::Array(out));
    ExitCode::SUCCESS
}

fn builder_state() -> Value {
    std::fs::read_to_string(state_dir().join("builder.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({"status": {"state": "stopped"}, "configuration": {"dns": {"nameservers": []}}}))
}

fn set_builder(state: Value) {
    let _ = std::fs::create_dir_all(state_dir());
    let _ = std::fs::write(state_dir().join("builder.json"), state.to_string());
}

/// `uid=..,gid=..` of the user a container runs as: `--user`, else its image's USER.
fn tmpfs_owner(flags: &[(String, Option<String>)], image: &str) -> String {
    let user = flags
        .iter()
        .find(|(k, _)| k == "--user")
        .and_then(|(_, v)| v.clone())
        .or_else(|| {
            capture(docker().args(["image", "inspect", "-f", "{{.Config.User}}", image]))
                .map(|u| u.trim().to_string())
        })
        .unwrap_or_default();
    let mut ids = user.split(':');
    let uid = ids
        .next()
        .filter(|u| u.parse::<u32>().is_ok())
        .unwrap_or("0");
    let gid = ids
        .next()
        .filter(|g| g.parse::<u32>().is_ok())
        .unwrap_or(uid);
    format!("uid={uid},gid={gid},mode=0700")
}

fn run(mut args: Vec<String>) -> ExitCode {
    let f = match flags(
        &mut args,
        &[
            "--name",
            "--network",
            "--dns",
            "--label",
            "--env",
            "--mount",
            "--tmpfs",
            "--user",
        ],
        &["--detach", "--rm"],
    ) {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    if !f.iter().any(|(k, _)| k == "--detach") {
        return usage("the backend always runs --detach");
    }
    let Some(name) = f
        .iter()
        .find(|(k, _)| k == "--name")
        .and_then(|(_, v)| v.clone())
    else {
        return usage("run needs --name");
    };
    if args.is_empty() {
        return usage("run needs an image");
    }
    let networks: Vec<String> = f
        .iter()
        .filter(|(k, _)| k == "--network")
        .filter_map(|(_, v)| v.clone())
        .collect();
    let mut c = docker();
    c.args(["create", "--name", &name]);
    if let Some(first) = networks.first() {
        c.args(["--network", first]);
    }
    for (k, v) in &f {
        let v = v.clone().unwrap_or_default();
        match k.as_str() {
            "--dns" => {
                c.args(["--dns", &v]);
            }
            "--label" => {
                c.args(["--label", &v]);
            }
            // A bare NAME takes its value from this process's environment, as with the real CLI.
            "--env" => {
                c.args(["-e", &v]);
            }
            "--mount" => {
                if v.split(',').any(|p| p == "type=bind") {
                    c.args(["--mount", &v]);
                } else {
                    return usage("only bind mounts are used");
                }
            }
            // A VM's tmpfs belongs to the container's user. Docker would copy the image
            // directory's mode but not its owner onto the mount, so the owner is explicit.
            "--tmpfs" => {
                c.args(["--tmpfs", &format!("{v}:rw,{}", tmpfs_owner(&f, &args[0]))]);
            }
            "--user" => {
                c.args(["--user", &v]);
            }
            "--rm" => {
                c.arg("--rm");
            }
            _ => {}
        }
    }
    c.args(&args);
    if capture(c.stdout(Stdio::null()).stdin(Stdio::null())).is_none() {
        return ExitCode::from(1);
    }
    for n in networks.iter().skip(1) {
        if capture(
            docker()
                .args(["network", "connect", n, &name])
                .stdout(Stdio::null()),
        )
        .is_none()
        {
            return ExitCode::from(1);
        }
    }
    if capture(docker().args(["start", &name]).stdout(Stdio::null())).is_none() {
        return ExitCode::from(1);
    }
    println!("{name}");
    ExitCode::SUCCESS
}

fn exec(mut args: Vec<String>) -> ExitCode {
    let f = match flags(
        &mut args,
        &["--user", "--workdir", "--env"],
        &["--interactive", "--tty"],
    ) {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    if args.len() < 2 {
        return usage("exec needs a container and a command");
    }
    // The builder VM: its resolver check is answered from the simulated builder's state (a
    // real lookup would leave the machine).
    if args[0] == "buildkit" {
        let running = builder_state()["status"]["state"] == "running";
        return if running {
            println!("151.101.2.132   deb.debian.org");
            ExitCode::SUCCESS
        } else {
            eprintln!("Error: container buildkit is not running");
            ExitCode::from(1)
        };
    }
    let mut c = docker();
    c.arg("exec");
    for (k, v) in &f {
        match (k.as_str(), v) {
            ("--user", Some(v)) => {
                c.args(["--user", v]);
            }
            ("--workdir", Some(v)) => {
                c.args(["--workdir", v]);
            }
            ("--env", Some(v)) => {
                c.args(["-e", v]);
            }
            ("--interactive", _) => {
                c.arg("-i");
            }
            ("--tty", _) => {
                c.arg("-t");
            }
            _ => {}
        }
    }
    c.args(&args);
    // Become docker: the terminal, signals (SIGWINCH) and exit code are its own.
    let e = c.exec();
    usage(&format!("docker: {e}"))
}

fn build(mut args: Vec<String>) -> ExitCode {
    let f = match flags(
        &mut args,
        &["-t", "--dns", "--build-arg", "-f", "--label"],
        &[],
    ) {
        Ok(f) => f,
        Err(e) => return usage(&e),
    };
    if args.len() != 1 {
        return usage("build needs exactly one context directory");
    }
    if !f.iter().any(|(k, _)| k == "--dns") {
        return usage("the backend always gives the builder --dns");
    }
    if builder_state()["status"]["state"] != "running" {
        eprintln!("Error: the builder is not running; start it with `container builder start`");
        return ExitCode::from(1);
    }
    let mut c = docker();
    c.args(["build", "-q", "--network", "none"]);
    for (k, v) in &f {
        if k != "--dns" {
            c.args([k.as_str(), v.as_deref().unwrap_or_default()]);
        }
    }
    c.args(&args);
    pass_through(c)
}

fn image(mut args: Vec<String>) -> ExitCode {
    let sub = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    match (sub.as_str(), args.as_slice()) {
        ("inspect", [r]) => {
            let Some(out) = capture(docker().args(["image", "inspect", r]).stderr(Stdio::null()))
            else {
                eprintln!("Error: image {r} not found");
                return ExitCode::from(1);
            };
            let v: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
            let shaped: Vec<Value> = v
                .iter()
                .map(|i| json!({"id": i["Id"], "configuration": {"name": r}}))
                .collect();
            println!("{}", Value::Array(shaped));
            ExitCode::SUCCESS
        }
        ("list", [f, j]) if f == "--format" && j == "json" => {
            let Some(out) =
                capture(docker().args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]))
            else {
                return ExitCode::from(1);
            };
            let v: Vec<Value> = out
                .lines()
                .filter(|l| !l.contains("<none>"))
                .map(|l| json!({"reference": l}))
                .collect();
            println!("{}", Value::Array(v));
            ExitCode::SUCCESS
        }
        ("delete", [r]) => pass_through({
            let mut c = docker();
            c.args(["image", "rm", r]).stdout(Stdio::null());
            c
        }),
        ("pull", [r]) => {
            eprintln!("Error: no registry is reachable from this test machine ({r})");
            ExitCode::from(1)
        }
        _ => usage(&format!("unsupported image command {sub} {args:?}")),
    }
}

fn network(mut args: Vec<String>) -> ExitCode {
    let sub = if args.is_empty() {
        String::new()
    } else {
        args.remove(0)
    };
    match sub.as_str() {
        "create" => {
            let f = match flags(&mut args, &["--label"], &["--internal"]) {
                Ok(f) => f,
                Err(e) => return usage(&e),
            };
            let [name] = args.as_slice() else {
                return usage("network create needs one name");
            };
            if capture(
                docker()
                    .args(["network", "inspect", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .is_some()
            {
                eprintln!("Error: network {name} already exists");
                return ExitCode::from(1);
            }
            let mut c = docker();
            c.args(["network", "create"]);
            for (k, v) in &f {
                match k.as_str() {
                    "--internal" => {
                        c.arg("--internal");
                    }
                    _ => {
                        c.args(["--label", v.as_deref().unwrap_or_default()]);
                    }
                }
            }
            c.arg(name).stdout(Stdio::null());
            pass_through(c)
        }
        "delete" => {
            let [name] = args.as_slice() else {
                return usage("network delete needs one name");
            };
            if capture(
                docker()
                    .args(["network", "inspect", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .is_none()
            {
                eprintln!("Error: network {name} not found");
                return ExitCode::from(1);
            }
            let mut c = docker();
            c.args(["network", "rm", name]).stdout(Stdio::null());
            pass_through(c)
        }
        "list" if args == ["--format", "json"] => network_list(),
        _ => usage(&format!("unsupported network command {sub} {args:?}")),
    }
}

fn builder(args: &[String]) -> ExitCode {
    match args {
        [s, f, j] if s == "status" && f == "--format" && j == "json" => {
            println!("{}", json!([builder_state()]));
            ExitCode::SUCCESS
        }
        [s] if s == "stop" => {
            let mut b = builder_state();
            b["status"]["state"] = json!("stopped");
            set_builder(b);
            ExitCode::SUCCESS
        }
        [s, d, ip] if s == "start" && d == "--dns" => {
            set_builder(
                json!({"status": {"state": "running"}, "configuration": {"dns": {"nameservers": [ip]}}}),
            );
            ExitCode::SUCCESS
        }
        _ => usage(&format!("unsupported builder command {args:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    record(&args);
    let mut rest = args.clone();
    if rest.is_empty() {
        return usage("no command");
    }
    let cmd = rest.remove(0);
    let simple = |sub: &[&str], name: &str, quiet: bool| {
        let mut c = docker();
        c.args(sub).arg(name);
        if quiet {
            c.stdout(Stdio::null());
        }
        c
    };
    match (cmd.as_str(), rest.as_slice()) {
        ("--version", []) => {
            println!("container CLI version 1.0.0 (fake over docker)");
            ExitCode::SUCCESS
        }
        ("system", [s]) if s == "status" => {
            let ok = capture(docker().args(["info", "--format", "{{.ServerVersion}}"])).is_some();
            if ok {
                println!("apiserver is running");
                ExitCode::SUCCESS
            } else {
                eprintln!("apiserver is not running");
                ExitCode::from(1)
            }
        }
        ("list", [a, f, j]) if a == "--all" && f == "--format" && j == "json" => list(true),
        ("inspect", [name]) => {
            let v = inspect_all(&["inspect"], std::slice::from_ref(name));
            if v.is_empty() {
                eprintln!("Error: container {name} not found");
                return ExitCode::from(1);
            }
            println!("{}", Value::Array(v.iter().map(container_json).collect()));
            ExitCode::SUCCESS
        }
        ("delete", [f, name]) if f == "--force" => {
            if inspect_all(&["inspect"], std::slice::from_ref(name)).is_empty() {
                eprintln!("Error: container {name} not found");
                return ExitCode::from(1);
            }
            pass_through(simple(&["rm", "-f", "-v"], name, true))
        }
        ("start", [name]) => pass_through(simple(&["start"], name, true)),
        ("stop", [name]) => {
            if inspect_all(&["inspect"], std::slice::from_ref(name)).is_empty() {
                eprintln!("Error: container {name} not found");
                return ExitCode::from(1);
            }
            pass_through(simple(&["stop", "-t", "10"], name, true))
        }
        ("kill", [s, sig, name]) if s == "--signal" => {
            let mut c = docker();
            c.args(["kill", "--signal", sig, name])
                .stdout(Stdio::null());
            pass_through(c)
        }
        ("logs", _) => {
            let mut a = rest.clone();
            let f = match flags(&mut a, &["-n"], &["--follow"]) {
                Ok(f) => f,
                Err(e) => return usage(&e),
            };
            let [name] = a.as_slice() else {
                return usage("logs needs one container");
            };
            let mut c = docker();
            c.arg("logs");
            for (k, v) in &f {
                match k.as_str() {
                    "--follow" => {
                        c.arg("--follow");
                    }
                    _ => {
                        c.args(["--tail", v.as_deref().unwrap_or("all")]);
                    }
                }
            }
            c.arg(name);
            let e = c.exec();
            usage(&format!("docker: {e}"))
        }
        ("cp", [src, dst]) => {
            if !dst.contains(':') {
                return usage("cp copies into a container (NAME:PATH)");
            }
            let mut c = docker();
            c.args(["cp", src, dst]).stdout(Stdio::null());
            pass_through(c)
        }
        ("run", _) => run(rest),
        ("exec", _) => exec(rest),
        ("build", _) => build(rest),
        ("image", _) => image(rest),
        ("network", _) => network(rest),
        ("builder", _) => builder(&rest),
        _ => usage(&format!("unsupported command {args:?}")),
    }
}
