//! `bbctl doctor`: checks what running bottles needs, one line each, `ok` or `fail` with the fix.

use std::os::unix::fs::PermissionsExt;

use bb_controller::runtime::{self, Probe};
use bb_controller::{Check, Level};

use super::target::Target;
use crate::exit::{CliError, Kind};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    target: Target,
    /// Apple Container's `container` executable to check (default: `container` on PATH, on a
    /// Mac).
    #[arg(long, value_name = "FILE")]
    container_cli: Option<std::path::PathBuf>,
    /// The `smolvm` executable to check (default: `smolvm` on PATH).
    #[arg(long, value_name = "FILE")]
    smolvm_cli: Option<std::path::PathBuf>,
}

struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("ok    {what}: {detail}");
    }
    fn fail(&mut self, what: &str, detail: impl std::fmt::Display, fix: &str) {
        self.failed += 1;
        println!("fail  {what}: {detail}\n      fix: {fix}");
    }
    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("warn  {what}: {detail}");
    }
}

pub fn run(args: DoctorArgs) -> Result<(), CliError> {
    let rt = super::runtime()?;
    let mut r = Report { failed: 0 };
    let home = args.target.home_dir()?;
    rt.block_on(async {
        // Home directory: private to the user.
        match std::fs::metadata(&home) {
            Ok(m) if m.permissions().mode() & 0o077 == 0 => {
                r.ok("home", format!("{} (mode {:o})", home.display(), m.permissions().mode() & 0o777))
            }
            Ok(m) => r.fail(
                "home",
                format!("{} is mode {:o}: other users can read its secrets", home.display(), m.permissions().mode() & 0o777),
                &format!("chmod 700 {}", home.display()),
            ),
            Err(_) => r.warn("home", format!("{} does not exist yet (created by the first command that needs the control plane)", home.display())),
        }

        // Each runtime (its own checks, through the backend seam): which can run Agents, and
        // which one `--backend auto` picks. One usable runtime is enough.
        let found = runtime::diagnose(&home, args.container_cli.clone(), args.smolvm_cli.clone()).await;
        let mut usable = Vec::new();
        for (name, probe) in found.runtimes {
            match probe {
                Probe::Usable(checks) => {
                    report_checks(&mut r, checks);
                    usable.push(name);
                }
                Probe::NotUsable(why) => r.warn(name, format!("not usable: {why}")),
            }
        }
        let auto = found.auto;
        if usable.is_empty() {
            r.fail(
                "backends",
                "no runtime can run Agents",
                "start the Docker engine (or set DOCKER_HOST), or on a Mac install Apple's container CLI and run `container system start`",
            );
        } else if usable.contains(&auto) {
            r.ok("backends", format!("usable: {}; --backend auto picks {auto}", usable.join(", ")));
        } else {
            r.warn(
                "backends",
                format!("usable: {}; --backend auto picks {auto}, which is not: pass --backend {}", usable.join(", "), usable[0]),
            );
        }
        if found.sidecar_binary.is_file() {
            r.ok("sidecar binary", found.sidecar_binary.display());
        } else {
            r.fail(
                "sidecar binary",
                format!("{} is missing", found.sidecar_binary.display()),
                "install bb-sidecar next to bbctl (cargo build -p bb-sidecar) or pass --sidecar-binary to `bbctl controller run`",
            );
        }

        // The control plane (or the cluster of --kubeconfig).
        let kubeconfig = args.target.kubeconfig.clone().unwrap_or_else(|| home.join("kubeconfig"));
        if let Ok(m) = std::fs::metadata(&kubeconfig)
            && m.permissions().mode() & 0o077 != 0
        {
            r.fail(
                "kubeconfig",
                format!("{} is mode {:o}: it holds the API token", kubeconfig.display(), m.permissions().mode() & 0o777),
                &format!("chmod 600 {}", kubeconfig.display()),
            );
        }
        // On the home's own control plane, not running is normal: any command that needs it
        // starts it in the background.
        if args.target.kubeconfig.is_none() && super::background::status(&home).is_none() {
            r.ok(
                "control plane",
                "not running; the first command that needs it (apply, get, run...) starts it in the background, or `bbctl controller start`",
            );
            return;
        }
        match args.target.client().await {
            Ok(client) => {
                let req = http::Request::get("/readyz").body(Vec::new());
                let ready = match req {
                    Ok(req) => client.request_text(req).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match ready {
                    Ok(_) => r.ok("control plane", format!("reachable through {}", kubeconfig.display())),
                    Err(e) => r.fail("control plane", e, "`bbctl controller start` (or check --kubeconfig/--context)"),
                }
            }
            Err(e) => r.fail("control plane", e.message, "`bbctl controller start` (or check --kubeconfig/--context)"),
        }
    });
    if r.failed > 0 {
        return Err(CliError::new(
            Kind::Unavailable,
            format!("{} check(s) failed", r.failed),
        ));
    }
    Ok(())
}

fn report_checks(r: &mut Report, checks: Vec<Check>) {
    for c in checks {
        match c.level {
            Level::Ok => r.ok(&c.name, c.detail),
            Level::Warn => r.warn(&c.name, c.detail),
            Level::Fail => r.fail(&c.name, c.detail, c.fix.as_deref().unwrap_or("")),
        }
    }
}
