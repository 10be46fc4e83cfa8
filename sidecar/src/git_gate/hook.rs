//! The pre-receive step, run by receive-pack as `<hooksPath>/pre-receive` (a link to
//! bb-sidecar): judge everything the push would make reachable upstream, then push the accepted
//! updates upstream.
//! Anything it prints reaches the agent's `git push` as `remote:` lines; a non-zero exit refuses
//! the whole push, so the mirror's refs move only after upstream took them.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use super::scan::{Finding, Scanner};

/// One line of pre-receive's stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub name: String,
}

impl RefUpdate {
    fn is_zero(id: &str) -> bool {
        !id.is_empty() && id.bytes().all(|b| b == b'0')
    }

    pub fn is_delete(&self) -> bool {
        Self::is_zero(&self.new)
    }

    pub fn is_create(&self) -> bool {
        Self::is_zero(&self.old)
    }
}

/// Parses pre-receive's stdin (`old new ref` per line).
pub fn parse_updates(input: &str) -> Result<Vec<RefUpdate>, String> {
    input
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next(), it.next(), it.next()) {
                (Some(o), Some(n), Some(r), None)
                    if [o, n]
                        .iter()
                        .all(|x| x.bytes().all(|b| b.is_ascii_hexdigit())) =>
                {
                    Ok(RefUpdate {
                        old: o.into(),
                        new: n.into(),
                        name: r.into(),
                    })
                }
                _ => Err(format!("unexpected ref update line {l:?}")),
            }
        })
        .collect()
}

/// The refspec pushing `u` upstream: `:ref` deletes, `+new:ref` forces what is not a
/// fast-forward (the agent's force push), `new:ref` otherwise.
pub fn refspec(u: &RefUpdate, fast_forward: bool) -> String {
    if u.is_delete() {
        format!(":{}", u.name)
    } else if u.is_create() || fast_forward {
        format!("{}:{}", u.new, u.name)
    } else {
        format!("+{}:{}", u.new, u.name)
    }
}

/// `--force-with-lease` holding `u`'s ref to the value the agent replaced.
pub fn lease(u: &RefUpdate) -> String {
    format!("--force-with-lease={}:{}", u.name, u.old)
}

/// `GIT_PUSH_OPTION_COUNT` and `GIT_PUSH_OPTION_<i>`, as `--push-option=` arguments.
pub fn push_options(get: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
    let Some(count) = get("GIT_PUSH_OPTION_COUNT") else {
        return Ok(Vec::new());
    };
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("GIT_PUSH_OPTION_COUNT {count:?} is not a number"));
    }
    let n: usize = count
        .parse()
        .map_err(|_| format!("GIT_PUSH_OPTION_COUNT {count:?} is too large"))?;
    (0..n)
        .map(|i| {
            get(&format!("GIT_PUSH_OPTION_{i}"))
                .map(|v| format!("--push-option={v}"))
                .ok_or_else(|| format!("GIT_PUSH_OPTION_{i} is missing"))
        })
        .collect()
}

fn say(line: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "git-gate: {line}");
}

/// Every finding in what the push would make reachable upstream: ref names, push options, and
/// every new object (see `objects`). Replace refs are refused outright: they change how history
/// reads for everyone who fetches it.
fn scan_push(
    scanner: &Scanner,
    updates: &[RefUpdate],
    options: &[String],
) -> Result<Vec<Finding>, String> {
    if let Some(u) = updates.iter().find(|u| u.name.starts_with("refs/replace/")) {
        return Err(format!(
            "{} is a replace ref: it changes how history reads for everyone who fetches it; refusing the push",
            u.name
        ));
    }
    let mut findings = Vec::new();
    for u in updates {
        scanner.scan_lines("-", "<ref name>", &[(1, u.name.as_bytes())], |f| {
            findings.push(f)
        });
    }
    for o in options {
        let value = o.strip_prefix("--push-option=").unwrap_or(o);
        scanner.scan_lines("-", "<push option>", &[(1, value.as_bytes())], |f| {
            findings.push(f)
        });
    }
    let tips: Vec<&str> = updates
        .iter()
        .filter(|u| !u.is_delete())
        .map(|u| u.new.as_str())
        .collect();
    if !tips.is_empty() {
        findings.extend(super::objects::PushObjects::new(scanner)?.scan(&tips)?);
    }
    Ok(findings)
}

fn is_ancestor(old: &str, new: &str) -> bool {
    Command::new("git")
        .args(["merge-base", "--is-ancestor", old, new])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The secrets the scan looks for besides its rules; a directory that cannot be read refuses
/// the push rather than scanning for less than the sidecar guards.
fn secrets(dir: Option<&str>) -> Result<Vec<crate::needles::Needle>, String> {
    let Some(dir) = dir else {
        return Ok(Vec::new());
    };
    crate::secret_files::SecretFiles::read(std::path::Path::new(dir))
        .map_err(|e| format!("reading the bottle's secrets: {e}; refusing the push"))?
        .needles()
        .map_err(|e| format!("reading the guarded secrets: {e}; refusing the push"))
}

/// The hook's entry point.
pub fn run() -> ExitCode {
    match run_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            say(why);
            ExitCode::FAILURE
        }
    }
}

fn run_inner() -> Result<(), String> {
    let env = |k: &str| std::env::var(k).ok();
    let upstream = env("BB_GATE_UPSTREAM").ok_or("no upstream configured; refusing the push")?;
    let repo = env("BB_GATE_REPO").unwrap_or_default();
    let mut input = String::new();
    for line in std::io::stdin().lock().lines() {
        input.push_str(&line.map_err(|e| format!("reading ref updates: {e}"))?);
        input.push('\n');
    }
    let updates = parse_updates(&input)?;
    let options = push_options(env)?;

    let scanner = Scanner::new(&secrets(env("BB_GATE_SECRETS").as_deref())?);
    let (allowed, blocking): (Vec<Finding>, Vec<Finding>) =
        scan_push(&scanner, &updates, &options)?
            .into_iter()
            .partition(|f| f.allowed);
    if !blocking.is_empty() {
        say(format!(
            "push refused: {} secret(s) in what the push brings:",
            blocking.len()
        ));
        for f in &blocking {
            say(f);
        }
        say("remove them from history (git rebase -i, git commit --amend) and push again");
        return Err("nothing was sent upstream".into());
    }
    if !allowed.is_empty() {
        super::allow::decide(&repo, &allowed)?;
    }

    let mut refspecs = Vec::new();
    let mut leases = Vec::new();
    for u in &updates {
        let fast_forward = u.is_delete() || u.is_create() || is_ancestor(&u.old, &u.new);
        refspecs.push(refspec(u, fast_forward));
        // A force push or a deletion replaces what the agent saw, and only that: if upstream
        // moved since the mirror was refreshed, upstream refuses instead of losing commits.
        if !u.is_create() && (u.is_delete() || !fast_forward) {
            leases.push(lease(u));
        }
    }
    if refspecs.is_empty() {
        return Ok(());
    }
    if env(super::repo::HOLD_ENV).is_some_and(|f| crate::hold::file_lapsed(Path::new(&f))) {
        return Err(format!(
            "{} (runner-lost); nothing was sent upstream",
            crate::hold::LAPSED
        ));
    }
    let status = Command::new("git")
        .args(["push", "--quiet", "--no-verify"])
        .args(&options)
        .args(&leases)
        .arg(&upstream)
        .args(&refspecs)
        // The marker that forbids ref updates here would reach a local upstream's own
        // receive-pack; the pushed objects stay visible through GIT_OBJECT_DIRECTORY.
        .env_remove("GIT_QUARANTINE_PATH")
        .stdin(Stdio::null())
        // Upstream's answer goes to the agent as it is.
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("running git push: {e}"))?;
    if !status.success() {
        return Err("upstream refused the push (its answer is above); nothing changed".into());
    }
    Ok(())
}

/// The SSH wrapper's entry point: ssh with the repository's pinned options, replacing this
/// process.
pub fn run_ssh_wrapper() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let (Ok(key), Ok(kh)) = (
        std::env::var("BB_GATE_SSH_KEY"),
        std::env::var("BB_GATE_KNOWN_HOSTS"),
    ) else {
        say("gate-ssh runs only under git-gate (BB_GATE_SSH_KEY and BB_GATE_KNOWN_HOSTS unset)");
        return ExitCode::FAILURE;
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let control = std::env::var("BB_GATE_SSH_CONTROL").ok();
    let err = Command::new("ssh")
        .args(super::repo::ssh_argv(&key, &kh, control.as_deref(), &args))
        .exec();
    say(format!("running ssh: {err}"));
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn refspecs_follow_the_update_kind() {
        let u = |old: &str, new: &str| RefUpdate {
            old: old.into(),
            new: new.into(),
            name: "refs/heads/main".into(),
        };
        assert_eq!(refspec(&u("aa", ZERO), false), ":refs/heads/main");
        assert_eq!(refspec(&u(ZERO, "bb"), false), "bb:refs/heads/main");
        assert_eq!(refspec(&u("aa", "bb"), true), "bb:refs/heads/main");
        assert_eq!(refspec(&u("aa", "bb"), false), "+bb:refs/heads/main");
        assert_eq!(
            lease(&u("aa", "bb")),
            "--force-with-lease=refs/heads/main:aa"
        );
    }

    #[test]
    fn updates_and_push_options_parse_strictly() {
        let ups = parse_updates(&format!("{ZERO} abc123 refs/heads/x\n")).expect("valid");
        assert!(ups[0].is_create() && !ups[0].is_delete());
        assert!(parse_updates("zz 11 refs/heads/x\n").is_err());
        assert!(parse_updates("aa bb\n").is_err());
        let env = |vals: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vals.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(push_options(env(&[])), Ok(vec![]));
        assert_eq!(
            push_options(env(&[
                ("GIT_PUSH_OPTION_COUNT", "2"),
                ("GIT_PUSH_OPTION_0", "ci.skip"),
                ("GIT_PUSH_OPTION_1", "a=b c"),
            ])),
            Ok(vec![
                "--push-option=ci.skip".to_string(),
                "--push-option=a=b c".to_string()
            ])
        );
        assert!(push_options(env(&[("GIT_PUSH_OPTION_COUNT", "-1")])).is_err());
        assert!(push_options(env(&[("GIT_PUSH_OPTION_COUNT", "1")])).is_err());
    }
}
