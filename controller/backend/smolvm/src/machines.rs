//! What the smolvm CLI says about its machines: which exist and whether one takes commands
//! yet; and what a user without the CLI is told. A leaf the backend and its VM handling share.

use std::time::Duration;

use super::cli;
use bb_backend::cli_process::RuntimeCli;
use bb_backend::{BackendError, Step};

/// What a user without the CLI is told.
pub const INSTALL_HINT: &str =
    "install smolvm (https://smolmachines.com) or name its CLI with --smolvm-cli";
/// How often a booting VM is asked whether it takes commands.
const READY_POLL: Duration = Duration::from_millis(200);

/// The VMs smolvm knows.
pub async fn machines(smolvm: &RuntimeCli, step: Step) -> Result<Vec<cli::Machine>, BackendError> {
    let out = smolvm.ok(step, &cli::machine_list(), None).await?;
    cli::parse_machines(&String::from_utf8_lossy(&out.stdout))
        .map_err(|e| BackendError::new(step, e))
}

/// Waits until VM `name` takes an exec: libkrun's exec channel is not ready the moment
/// `machine start` returns, and an exec sent too early can be killed outright.
pub async fn wait_exec_ready(
    smolvm: &RuntimeCli,
    name: &str,
    limit: Duration,
) -> Result<(), BackendError> {
    let deadline = tokio::time::Instant::now() + limit;
    let probe = cli::exec_probe(name);
    loop {
        let last = match smolvm.output(Step::Agent, &probe, None).await {
            Ok(out) if out.success() => return Ok(()),
            Ok(out) => out.tail(),
            Err(e) if e.step == Step::Connect => return Err(e),
            Err(e) => e.message,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(BackendError::new(
                Step::Agent,
                format!(
                    "VM {name} did not take commands within {}s: {last}",
                    limit.as_secs()
                ),
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in `smolvm` whose VM takes commands from the `ready_after`th probe on.
    fn fake(dir: &std::path::Path, ready_after: u32) -> RuntimeCli {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("smolvm");
        let count = dir.join("count");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 case \"$1 $2\" in\n\
                 'machine ls') echo '[{{\"name\":\"bb-a\",\"state\":\"running\"}}]' ;;\n\
                 'machine exec') n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
                   [ $n -ge {ready_after} ] && exit 0; echo 'exec channel not ready' >&2; exit 1 ;;\n\
                 *) exit 64 ;;\n\
                 esac\n",
                c = count.display()
            ),
        )
        .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        RuntimeCli::new(script, INSTALL_HINT)
    }

    #[tokio::test]
    async fn a_booting_vm_is_polled_until_it_takes_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let smolvm = fake(dir.path(), 3);
        wait_exec_ready(&smolvm, "bb-a", Duration::from_secs(10))
            .await
            .expect("ready on the third probe");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("count"))
                .expect("count")
                .trim(),
            "3"
        );
        let m = machines(&smolvm, Step::Observe).await.expect("machines");
        assert!(m[0].running() && m[0].name == "bb-a");
    }

    #[tokio::test]
    async fn a_vm_that_never_answers_fails_with_what_it_said() {
        let dir = tempfile::tempdir().expect("tempdir");
        let smolvm = fake(dir.path(), u32::MAX);
        let e = wait_exec_ready(&smolvm, "bb-a", Duration::from_millis(500))
            .await
            .expect_err("never ready");
        assert!(
            e.message.contains("VM bb-a did not take commands")
                && e.message.contains("exec channel not ready"),
            "{e}"
        );
        let missing = RuntimeCli::new("/nonexistent/smolvm", INSTALL_HINT);
        let e = wait_exec_ready(&missing, "bb-a", Duration::from_secs(5))
            .await
            .expect_err("no CLI");
        assert!(e.message.contains("install smolvm"), "{e}");
    }
}
