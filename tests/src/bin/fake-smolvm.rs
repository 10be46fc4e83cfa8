//! A stand-in for the `smolvm` CLI on a machine without it: it accepts exactly the argv grammar
//! the smolvm backend uses, records each call (one JSON line in `$FAKE_SMOLVM_STATE/argv.jsonl`)
//! and carries it out on the local Docker engine, a container standing in for each VM.
//!
//! smolvm's network is TSI: the guest has no interface of its own, and its connections are
//! made by the host, only to the `--allow-cidr` ranges. The fake does the same: the VM's
//! container has no network (`--network none`); the fake itself, mounted into it as PID 1,
//! listens on each allowed /32 address for the ports in `$FAKE_SMOLVM_PORTS` and carries each
//! connection over a Unix socket to a host-side half, which connects to that address on the
//! host's loopback. Nothing else leaves the guest, and it has no resolver. An argv the real CLI
//! would not take is refused with exit 64.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use bb_e2e::fake_cli::{self, usage};
use serde_json::{Value, json};

/// Where the guest half finds the fake and the host half's socket.
const GUEST_DIR: &str = "/run/fake-smolvm";

fn state_dir() -> PathBuf {
    fake_cli::state_dir("FAKE_SMOLVM_STATE", "fake-smolvm")
}

fn record(args: &[String]) {
    fake_cli::record(&state_dir(), args);
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("Error: {msg}");
    ExitCode::from(1)
}

fn docker() -> Command {
    Command::new("docker")
}

fn quiet(c: &mut Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn machine_file(name: &str) -> PathBuf {
    state_dir().join("machines").join(format!("{name}.json"))
}

fn container(name: &str) -> String {
    format!("fake-smolvm-{name}")
}

fn socket_dir(name: &str) -> PathBuf {
    state_dir().join("tsi").join(name)
}

fn load_machine(name: &str) -> Option<Value> {
    let bytes = std::fs::read(machine_file(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn running(name: &str) -> bool {
    let mut c = docker();
    c.args([
        "inspect",
        "-f",
        "{{.State.Running}}",
        container(name).as_str(),
    ]);
    c.stderr(Stdio::null());
    c.output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
}

/// Flags with their values (`None` for a switch), in order.
type Flags = Vec<(String, Option<String>)>;

/// Takes `--flag VALUE` pairs (repeatable) and switches until `--` or the end; what follows
/// `--` is the second half.
fn flags(
    args: &[String],
    valued: &[&str],
    switches: &[&str],
) -> Result<(Flags, Vec<String>), String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return Ok((out, args[i + 1..].to_vec()));
        }
        if valued.contains(&a.as_str()) {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("{a} needs a value"))?;
            out.push((a.clone(), Some(v.clone())));
            i += 2;
        } else if switches.contains(&a.as_str()) {
            out.push((a.clone(), None));
            i += 1;
        } else {
            return Err(format!("unexpected argument {a}"));
        }
    }
    Ok((out, Vec::new()))
}

fn one(f: &[(String, Option<String>)], flag: &str) -> Option<String> {
    f.iter()
        .find(|(k, _)| k == flag)
        .and_then(|(_, v)| v.clone())
}

fn all(f: &[(String, Option<String>)], flag: &str) -> Vec<String> {
    f.iter()
        .filter(|(k, _)| k == flag)
        .filter_map(|(_, v)| v.clone())
        .collect()
}

/// `pack create (--image I | --from-vm N) -o OUT`: a launcher at OUT, the artifact (the image
/// it boots, as JSON) at OUT.smolmachine.
fn pack(args: &[String]) -> ExitCode {
    let Some(rest) = args.strip_prefix(&["create".to_string()]) else {
        return usage("pack: only `pack create` is supported");
    };
    let (f, extra) = match flags(rest, &["--image", "--from-vm", "-o"], &[]) {
        Ok(x) => x,
        Err(e) => return usage(&e),
    };
    let (Some(out), true) = (one(&f, "-o"), extra.is_empty()) else {
        return usage("pack create needs -o OUT");
    };
    let image = match (one(&f, "--image"), one(&f, "--from-vm")) {
        (Some(image), None) => {
            if !quiet(docker().args(["image", "inspect", &image])) {
                return fail(&format!("pulling {image}: no such image"));
            }
            image
        }
        (None, Some(vm)) => {
            if load_machine(&vm).is_none() {
                return fail(&format!("machine {vm} not found"));
            }
            if running(&vm) {
                return fail(&format!("machine {vm} is running; stop it first"));
            }
            let tag = format!(
                "fake-smolvm/snapshot:{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            );
            let mut c = docker();
            c.args([
                "commit",
                "--change",
                "LABEL fake-smolvm=1",
                &container(&vm),
                &tag,
            ]);
            if !quiet(&mut c) {
                return fail(&format!("exporting machine {vm} failed"));
            }
            tag
        }
        _ => return usage("pack create takes one of --image or --from-vm"),
    };
    let launcher = format!("#!/bin/sh\necho 'fake smolmachine launcher for {image}'\n");
    let artifact = format!("{out}.smolmachine");
    if std::fs::write(&out, launcher).is_err()
        || std::fs::write(&artifact, json!({ "image": image }).to_string()).is_err()
    {
        return fail(&format!("writing {out}"));
    }
    println!("Packed {artifact}");
    ExitCode::SUCCESS
}

fn machine(args: &[String]) -> ExitCode {
    let Some((sub, rest)) = args.split_first() else {
        return usage("machine needs a command");
    };
    match sub.as_str() {
        "ls" if rest == ["--json"] => {
            let mut list = Vec::new();
            if let Ok(entries) = std::fs::read_dir(state_dir().join("machines")) {
                for e in entries.filter_map(Result::ok) {
                    let path = e.path();
                    let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    let state = if running(name) { "running" } else { "stopped" };
                    list.push(json!({"name": name, "state": state}));
                }
            }
            println!("{}", Value::Array(list));
            ExitCode::SUCCESS
        }
        "create" => create(rest),
        "start" | "stop" | "delete" => {
            let (f, extra) = match flags(rest, &["--name"], &[]) {
                Ok(x) => x,
                Err(e) => return usage(&e),
            };
            let (Some(name), true) = (one(&f, "--name"), extra.is_empty()) else {
                return usage(&format!("machine {sub} needs --name N"));
            };
            let Some(m) = load_machine(&name) else {
                return fail(&format!("machine {name} not found"));
            };
            match sub.as_str() {
                "start" => start(&name, &m),
                "stop" => {
                    stop_host_half(&name);
                    let _ = quiet(docker().args(["stop", "-t", "2", &container(&name)]));
                    ExitCode::SUCCESS
                }
                _ => {
                    stop_host_half(&name);
                    let _ = quiet(docker().args(["rm", "-f", &container(&name)]));
                    let _ = std::fs::remove_dir_all(socket_dir(&name));
                    let _ = std::fs::remove_file(machine_file(&name));
                    ExitCode::SUCCESS
                }
            }
        }
        "exec" => {
            let (f, command) = match flags(rest, &["--name"], &["-i", "-t"]) {
                Ok(x) => x,
                Err(e) => return usage(&e),
            };
            let Some(name) = one(&f, "--name") else {
                return usage("machine exec needs --name N");
            };
            if command.is_empty() {
                return usage("machine exec needs -- COMMAND");
            }
            if !running(&name) {
                return fail(&format!("machine {name} is not running"));
            }
            // smolvm's exec runs as root in the guest.
            let mut c = docker();
            c.args(["exec", "-u", "0"]);
            for (k, _) in &f {
                if k == "-i" || k == "-t" {
                    c.arg(k);
                }
            }
            c.arg(container(&name)).args(&command);
            let e = c.exec();
            fail(&format!("docker: {e}"))
        }
        _ => usage(&format!("unsupported machine command {sub} {rest:?}")),
    }
}

fn create(args: &[String]) -> ExitCode {
    let (f, extra) = match flags(args, &["--name", "--from", "-e", "--allow-cidr"], &[]) {
        Ok(x) => x,
        Err(e) => return usage(&e),
    };
    let (Some(name), Some(from), true) = (one(&f, "--name"), one(&f, "--from"), extra.is_empty())
    else {
        return usage("machine create needs --name N --from ARTIFACT");
    };
    if !from.ends_with(".smolmachine") {
        return usage("--from takes a .smolmachine artifact");
    }
    let Some(image) = std::fs::read(&from)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["image"].as_str().map(String::from))
    else {
        return fail(&format!("{from} is not a smolmachine artifact"));
    };
    let mut cidrs = Vec::new();
    for c in all(&f, "--allow-cidr") {
        match c
            .strip_suffix("/32")
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
        {
            Some(a) => cidrs.push(a.to_string()),
            None => return fail(&format!("--allow-cidr {c}: the fake carries /32s only")),
        }
    }
    for e in all(&f, "-e") {
        if !e.contains('=') {
            return usage(&format!("-e {e}: expected KEY=VALUE"));
        }
    }
    if load_machine(&name).is_some() {
        return fail(&format!("machine {name} already exists"));
    }
    let m = json!({"image": image, "env": all(&f, "-e"), "allow_cidrs": cidrs});
    let path = machine_file(&name);
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
    if std::fs::write(&path, m.to_string()).is_err() {
        return fail(&format!("writing {}", path.display()));
    }
    println!("Created machine {name}");
    ExitCode::SUCCESS
}

fn start(name: &str, m: &Value) -> ExitCode {
    let cidrs: Vec<String> = m["allow_cidrs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let sockets = socket_dir(name);
    let _ = std::fs::create_dir_all(&sockets);
    if !start_host_half(name, &sockets, &cidrs) {
        return fail("starting the network half failed");
    }
    if running(name) {
        return ExitCode::SUCCESS;
    }
    if quiet(docker().args(["start", &container(name)])) {
        return ExitCode::SUCCESS;
    }
    let Ok(me) = std::env::current_exe() else {
        return fail("where is the fake?");
    };
    let ports = std::env::var("FAKE_SMOLVM_PORTS").unwrap_or_default();
    let mut c = docker();
    c.args(["run", "-d", "--name", &container(name), "--network", "none"])
        .args(["--label", "fake-smolvm=1", "--user", "0"])
        .args([
            "-v",
            &format!("{}:{GUEST_DIR}/fake:ro", me.display()),
            "-v",
            &format!("{}:{GUEST_DIR}/net", sockets.display()),
            "--entrypoint",
            &format!("{GUEST_DIR}/fake"),
        ]);
    for e in m["env"].as_array().into_iter().flatten() {
        if let Some(e) = e.as_str() {
            c.args(["-e", e]);
        }
    }
    c.arg(m["image"].as_str().unwrap_or_default()).args([
        "__tsi-guest",
        &format!("{GUEST_DIR}/net/tsi.sock"),
        &cidrs.join(","),
        &ports,
    ]);
    c.stdout(Stdio::null());
    match c.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => fail(&format!("machine {name} failed to boot")),
    }
}

fn pid_file(name: &str) -> PathBuf {
    socket_dir(name).join("host.pid")
}

/// Starts the host half of the VM's network (once): a process of its own that outlives this
/// call, as smolvm's VM process does.
fn start_host_half(name: &str, sockets: &Path, cidrs: &[String]) -> bool {
    if let Some(pid) = std::fs::read_to_string(pid_file(name))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        return true;
    }
    let socket = sockets.join("tsi.sock");
    let _ = std::fs::remove_file(&socket);
    let Ok(me) = std::env::current_exe() else {
        return false;
    };
    let child = Command::new(me)
        .args([
            "__tsi-host",
            &socket.display().to_string(),
            &cidrs.join(","),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let Ok(child) = child else { return false };
    let _ = std::fs::write(pid_file(name), child.id().to_string());
    // It is ready once its socket exists.
    for _ in 0..100 {
        if socket.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

fn stop_host_half(name: &str) {
    if let Some(pid) = std::fs::read_to_string(pid_file(name))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let _ = std::fs::remove_file(pid_file(name));
}

/// Copies both ways until each side has finished writing.
fn splice<A, B>(a: A, b: B)
where
    A: Read + Write + TryCloneBoth + Send + 'static,
    B: Read + Write + TryCloneBoth + Send + 'static,
{
    let (Some(mut a2), Some(mut b2)) = (a.clone_both(), b.clone_both()) else {
        return;
    };
    let (mut a, mut b) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        b2.shut();
    });
    let _ = std::io::copy(&mut b, &mut a);
    a.shut();
    let _ = t.join();
}

/// Duplicating a socket and closing its write side, for either kind of stream.
trait TryCloneBoth: Sized {
    fn clone_both(&self) -> Option<Self>;
    fn shut(&self);
}

impl TryCloneBoth for TcpStream {
    fn clone_both(&self) -> Option<Self> {
        self.try_clone().ok()
    }
    fn shut(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl TryCloneBoth for UnixStream {
    fn clone_both(&self) -> Option<Self> {
        self.try_clone().ok()
    }
    fn shut(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// The host half: each connection names `addr:port` on its first line; one inside the allowed
/// addresses is connected to on the host, anything else is closed.
fn tsi_host(socket: &str, cidrs: &str) -> ExitCode {
    let allowed: Vec<String> = cidrs
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let Ok(listener) = UnixListener::bind(socket) else {
        return fail(&format!("binding {socket}"));
    };
    for conn in listener.incoming().filter_map(Result::ok) {
        let allowed = allowed.clone();
        std::thread::spawn(move || {
            // The header is read a byte at a time: nothing after it may be consumed here.
            let mut conn = conn;
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while line.len() < 64 {
                match conn.read(&mut byte) {
                    Ok(1) if byte[0] == b'\n' => break,
                    Ok(1) => line.push(byte[0]),
                    _ => return,
                }
            }
            let target = String::from_utf8_lossy(&line).trim().to_string();
            let Some((addr, _)) = target.rsplit_once(':') else {
                return;
            };
            if !allowed.iter().any(|a| a == addr) {
                return;
            }
            if let Ok(upstream) = TcpStream::connect(&target) {
                splice(conn, upstream);
            }
        });
    }
    ExitCode::SUCCESS
}

/// The guest half (the VM's PID 1): listens on each allowed address for each port and carries
/// every connection to the host half.
fn tsi_guest(socket: &str, cidrs: &str, ports: &str) -> ExitCode {
    for addr in cidrs.split(',').filter(|s| !s.is_empty()) {
        for port in ports
            .split(',')
            .filter_map(|p| p.trim().parse::<u16>().ok())
        {
            let Ok(listener) = TcpListener::bind((addr, port)) else {
                eprintln!("fake-smolvm: cannot listen on {addr}:{port}");
                continue;
            };
            let socket = socket.to_string();
            let target = format!("{addr}:{port}");
            std::thread::spawn(move || {
                for conn in listener.incoming().filter_map(Result::ok) {
                    let socket = socket.clone();
                    let target = target.clone();
                    std::thread::spawn(move || {
                        let Ok(mut host) = UnixStream::connect(&socket) else {
                            return;
                        };
                        if host.write_all(format!("{target}\n").as_bytes()).is_ok() {
                            splice(conn, host);
                        }
                    });
                }
            });
        }
    }
    // PID 1 idles once its listeners run; with none it still keeps the VM up.
    loop {
        std::thread::park();
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["__tsi-host", socket, cidrs] => return tsi_host(socket, cidrs),
        ["__tsi-guest", socket, cidrs, ports] => return tsi_guest(socket, cidrs, ports),
        _ => {}
    }
    record(&args);
    let Some((cmd, rest)) = args.split_first() else {
        return usage("no command");
    };
    match cmd.as_str() {
        "--version" if rest.is_empty() => {
            println!("smolvm 0.8.0 (fake over docker)");
            ExitCode::SUCCESS
        }
        "pack" => pack(rest),
        "machine" => machine(rest),
        _ => usage(&format!("unsupported command {cmd}")),
    }
}
