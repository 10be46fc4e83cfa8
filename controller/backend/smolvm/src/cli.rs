//! smolvm's CLI as pure functions: the argv of every command the smolvm backend runs, the JSON
//! it prints parsed into typed values, and the rules that keep secrets off its argv.
//!
//! Shapes follow smolvm 0.8 as the reference used it: `pack create --image I -o OUT` writes a
//! launcher at OUT and the bootable artifact at `OUT.smolmachine`; VMs boot `--from` that
//! artifact (never `--image`, which races a registry pull); `machine ls --json` prints
//! `[{name, state}]`; the network is TSI, allowlisted below the guest by `--allow-cidr`, and
//! the guest's resolver is smolvm's host-side filter, which answers only `--allow-host` names:
//! none are given, so every name is NXDOMAIN and only the sidecar's address is reachable.
//! smolvm 0.8 has no env-file or stdin injection for `machine create`, so nothing secret is
//! ever given to it: secret env reaches a session through `exec` stdin instead.

use bb_backend::shell::quote;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Deserialize;

/// The executable.
pub const CLI: &str = "smolvm";
/// What `pack create -o OUT` names the bootable artifact.
pub const ARTIFACT_SUFFIX: &str = ".smolmachine";

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// `pack create --image IMAGE -o OUT`: the agent image packed into a bootable artifact.
pub fn pack_image(image: &str, out: &str) -> Vec<String> {
    argv(&["pack", "create", "--image", image, "-o", out])
}

/// `pack create --from-vm NAME -o OUT`: a stopped VM's disk as an artifact (a snapshot).
pub fn pack_vm(name: &str, out: &str) -> Vec<String> {
    argv(&["pack", "create", "--from-vm", name, "-o", out])
}

/// The artifact `pack create -o out` boots from.
pub fn artifact(out: &str) -> String {
    format!("{out}{ARTIFACT_SUFFIX}")
}

/// What `machine create` makes. Only literal, non-secret environment is representable: the
/// type has no place for a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create {
    pub name: String,
    /// The packed artifact (`…smolmachine`).
    pub from: String,
    pub env: BTreeMap<String, String>,
    /// The only addresses the guest may reach (its sidecar's loopback alias).
    pub allow_cidrs: Vec<String>,
}

/// `machine create --name N --from ARTIFACT [-e K=V]... [--allow-cidr CIDR]...`.
pub fn machine_create(c: &Create) -> Vec<String> {
    let mut a = argv(&["machine", "create", "--name", &c.name, "--from", &c.from]);
    for (k, v) in &c.env {
        a.push("-e".into());
        a.push(format!("{k}={v}"));
    }
    for cidr in &c.allow_cidrs {
        a.push("--allow-cidr".into());
        a.push(cidr.clone());
    }
    a
}

pub fn machine_start(name: &str) -> Vec<String> {
    argv(&["machine", "start", "--name", name])
}

pub fn machine_stop(name: &str) -> Vec<String> {
    argv(&["machine", "stop", "--name", name])
}

pub fn machine_delete(name: &str) -> Vec<String> {
    argv(&["machine", "delete", "--name", name])
}

pub fn machine_list() -> Vec<String> {
    argv(&["machine", "ls", "--json"])
}

/// `machine exec --name N [-i] [-t] -- COMMAND...`.
pub fn machine_exec(name: &str, interactive: bool, tty: bool, command: &[String]) -> Vec<String> {
    let mut a = argv(&["machine", "exec", "--name", name]);
    if interactive {
        a.push("-i".into());
    }
    if tty {
        a.push("-t".into());
    }
    a.push("--".into());
    a.extend(command.iter().cloned());
    a
}

/// The exec that proves a just-started VM takes commands (libkrun's exec channel is not
/// ready the moment `machine start` returns).
pub fn exec_probe(name: &str) -> Vec<String> {
    machine_exec(name, false, false, &["true".to_string()])
}

/// One VM as `machine ls --json` prints it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Machine {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
}

impl Machine {
    pub fn running(&self) -> bool {
        self.state == "running"
    }
}

/// `machine ls --json`; unreadable output is an error naming the command.
pub fn parse_machines(json: &str) -> Result<Vec<Machine>, String> {
    serde_json::from_str(json).map_err(|e| format!("`smolvm machine ls --json` printed {e}"))
}

/// The per-bottle loopback alias the sidecar's ports are published on: picked from the Agent's
/// uid in 127.1.0.0/16 (clear of 127.0.0.1 and its neighbours), stepping past aliases other
/// bottles hold. `None` only when every address is taken.
pub fn loopback_alias(uid: &str, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let h = bb_backend::hash::sha256_hex(&[uid.as_bytes()]);
    let start = u16::from_str_radix(h.get(..4).unwrap_or("0"), 16).unwrap_or(0);
    // .0 and .255 of each /24 are avoided: some resolvers and tools treat them specially.
    (0..=u16::MAX)
        .map(|i| start.wrapping_add(i))
        .map(|n| Ipv4Addr::new(127, 1, (n >> 8) as u8, (n & 0xff) as u8))
        .find(|a| a.octets()[3] != 0 && a.octets()[3] != 255 && !taken.contains(a))
}

/// The session's secret env as a file the session's shell sources: `export NAME='value'` lines.
/// It travels on the stdin of an exec, never on an argv. Names must be shell identifiers.
pub fn secret_env_file(values: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (name, value) in values {
        let ident = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!("env name '{name}' is not a shell identifier"));
        }
        let value = std::str::from_utf8(value)
            .map_err(|_| format!("env {name}: the value is not UTF-8"))?;
        out.extend_from_slice(format!("export {name}={}\n", quote(value)).as_bytes());
    }
    Ok(out)
}

/// Writes stdin to `path` (0600, for `uid`), the exec that delivers a session's secret env.
pub fn secret_env_store(path: &str, uid: u64) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "umask 077 && cat > {p} && chown {uid}:{uid} {p}",
            p = quote(path)
        ),
    ]
}

/// The command a session runs in the VM (smolvm's exec runs as root, with no user or directory
/// of its own): read and remove the secret env file if there is one, enter `workdir`, take
/// `uid:gid` (its HOME from the guest's passwd), then become `argv`.
pub fn session_command(
    uid: u64,
    gid: u64,
    workdir: Option<&str>,
    env_file: Option<&str>,
    argv: &[String],
) -> Vec<String> {
    let mut script = String::new();
    if let Some(f) = env_file {
        script.push_str(&format!(". {p} && rm -f {p} && ", p = quote(f)));
    }
    if let Some(w) = workdir {
        script.push_str(&format!("cd {} && ", quote(w)));
    }
    script.push_str(&format!(
        "HOME=$(getent passwd {uid} | cut -d: -f6) && export HOME=${{HOME:-/}} && \
         exec setpriv --reuid={uid} --regid={gid} --clear-groups -- \"$@\""
    ));
    let mut a = vec!["sh".into(), "-c".into(), script, "bb-session".into()];
    a.extend(argv.iter().cloned());
    a
}

/// `uid[:gid]` as numbers; a missing gid is the uid.
pub fn parse_user(spec: &str) -> Result<(u64, u64), String> {
    let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
    let num = |x: &str| {
        x.parse::<u64>()
            .map_err(|_| format!("user '{spec}': smolvm sessions take a numeric uid[:gid]"))
    };
    Ok((num(u)?, num(g)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_of_every_command() {
        let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
            (
                pack_image("bot-bottle/agent:1", "/s/agent"),
                vec![
                    "pack",
                    "create",
                    "--image",
                    "bot-bottle/agent:1",
                    "-o",
                    "/s/agent",
                ],
            ),
            (
                pack_vm("bb-a", "/s/snap"),
                vec!["pack", "create", "--from-vm", "bb-a", "-o", "/s/snap"],
            ),
            (
                machine_create(&Create {
                    name: "bb-a".into(),
                    from: artifact("/s/agent"),
                    env: BTreeMap::from([(
                        "HTTPS_PROXY".to_string(),
                        "http://127.1.2.3:3128".to_string(),
                    )]),
                    allow_cidrs: vec!["127.1.2.3/32".into()],
                }),
                vec![
                    "machine",
                    "create",
                    "--name",
                    "bb-a",
                    "--from",
                    "/s/agent.smolmachine",
                    "-e",
                    "HTTPS_PROXY=http://127.1.2.3:3128",
                    "--allow-cidr",
                    "127.1.2.3/32",
                ],
            ),
            (
                machine_start("bb-a"),
                vec!["machine", "start", "--name", "bb-a"],
            ),
            (
                machine_stop("bb-a"),
                vec!["machine", "stop", "--name", "bb-a"],
            ),
            (
                machine_delete("bb-a"),
                vec!["machine", "delete", "--name", "bb-a"],
            ),
            (machine_list(), vec!["machine", "ls", "--json"]),
            (
                machine_exec("bb-a", true, true, &s(&["bash", "-l"])),
                vec![
                    "machine", "exec", "--name", "bb-a", "-i", "-t", "--", "bash", "-l",
                ],
            ),
            (
                exec_probe("bb-a"),
                vec!["machine", "exec", "--name", "bb-a", "--", "true"],
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, s(&want));
        }
    }

    #[test]
    fn session_users_are_numeric() {
        assert_eq!(parse_user("1000"), Ok((1000, 1000)));
        assert_eq!(parse_user("1000:50"), Ok((1000, 50)));
        let e = parse_user("node").expect_err("a name");
        assert!(e.contains("numeric uid[:gid]"), "{e}");
    }

    #[test]
    fn machine_list_parses_and_rejects_garbage() {
        let m = parse_machines(
            r#"[{"name":"bb-a","state":"running"},{"name":"bb-b","state":"stopped"}]"#,
        )
        .expect("parses");
        assert!(m[0].running() && !m[1].running());
        assert!(parse_machines("nope").is_err());
    }

    #[test]
    fn loopback_aliases_are_stable_distinct_and_clear_of_localhost() {
        let a = loopback_alias("uid-a", &BTreeSet::new()).expect("alias");
        assert_eq!(loopback_alias("uid-a", &BTreeSet::new()), Some(a), "stable");
        assert_eq!(a.octets()[..2], [127, 1]);
        assert!(a.octets()[3] != 0 && a.octets()[3] != 255);
        let next = loopback_alias("uid-a", &BTreeSet::from([a])).expect("next");
        assert_ne!(next, a, "a taken alias is stepped past");
    }

    #[test]
    fn secret_env_never_reaches_an_argv() {
        let secret = "s3cr'et $(rm -rf /)";
        let file = secret_env_file(&[("TOKEN".into(), secret.as_bytes().to_vec())]).expect("file");
        let text = String::from_utf8(file).expect("utf8");
        assert_eq!(text, "export TOKEN='s3cr'\\''et $(rm -rf /)'\n");
        let store = secret_env_store("/run/bb/s1.env", 1000);
        let wrapped = session_command(
            1000,
            1000,
            Some("/workspace"),
            Some("/run/bb/s1.env"),
            &s(&["bash", "-l"]),
        );
        for a in store.iter().chain(&wrapped) {
            assert!(!a.contains("s3cr"), "{a}");
        }
        assert_eq!(wrapped[4..], s(&["bash", "-l"]));
        assert!(secret_env_file(&[("NOT-AN-IDENT".into(), b"x".to_vec())]).is_err());
        assert!(secret_env_file(&[("1X".into(), b"x".to_vec())]).is_err());
    }

    #[test]
    fn the_secret_env_file_round_trips_through_a_real_shell() {
        let value = "a'b\"c $HOME `id` \\n";
        // setpriv to the uid the test already runs as: allowed for root (CI) and no-op in
        // effect.
        let uid = u64::from(rustix::process::getuid().as_raw());
        let file = secret_env_file(&[("V".into(), value.as_bytes().to_vec())]).expect("file");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("env");
        std::fs::write(&path, file).expect("write");
        let out = std::process::Command::new("sh")
            .args(
                session_command(
                    uid,
                    uid,
                    Some("/"),
                    Some(&path.display().to_string()),
                    &s(&["sh", "-c", "printf '%s|%s' \"$V\" \"$(pwd)\""]),
                )[1..]
                    .iter(),
            )
            .output()
            .expect("sh");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{value}|/"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!path.exists(), "the file is gone once read");
    }
}
