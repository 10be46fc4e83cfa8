//! Running from a checkout: `cargo run -p bbctl` builds bbctl alone, yet the Docker backend
//! bakes the `bb-sidecar` binary from beside bbctl into the sidecar image. Under cargo, bbctl
//! builds it first when it is missing, so the README's one command works on a fresh clone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exit::{CliError, Kind};

/// The cargo profile whose output directory holds `exe` (`target/debug` → `dev`).
fn profile_of(exe: &Path) -> Option<String> {
    let dir = exe.parent()?.file_name()?.to_str()?;
    Some(match dir {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    })
}

/// When this process was started by cargo (which sets `CARGO` and `CARGO_MANIFEST_DIR` for it)
/// from this workspace, and `bb-sidecar` is not beside it, builds it with the same cargo and
/// profile. An installed bbctl, or an explicit `--sidecar-binary`, is left alone.
pub fn ensure_built(explicit: Option<&Path>) -> Result<(), CliError> {
    if explicit.is_some() {
        return Ok(());
    }
    let (Some(cargo), Some(manifest_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) else {
        return Ok(());
    };
    let Ok(exe) = std::env::current_exe() else {
        return Ok(());
    };
    let sidecar = exe.with_file_name("bb-sidecar");
    let workspace = PathBuf::from(manifest_dir).join("..");
    if sidecar.is_file() || !workspace.join("sidecar/Cargo.toml").is_file() {
        return Ok(());
    }
    let Some(profile) = profile_of(&exe) else {
        return Ok(());
    };
    eprintln!(
        "==> building bb-sidecar beside bbctl for the sidecar image (cargo build -p bb-sidecar --profile {profile})"
    );
    let status = Command::new(&cargo)
        .args(["build", "-p", "bb-sidecar", "--profile", &profile])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .status()
        .map_err(|e| CliError::new(Kind::General, format!("running cargo: {e}")))?;
    if !status.success() || !sidecar.is_file() {
        return Err(CliError::new(
            Kind::General,
            format!(
                "could not build bb-sidecar next to {} ({status}); run `cargo build --workspace` and try again",
                exe.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_follow_the_output_directory() {
        assert_eq!(
            profile_of(Path::new("/w/target/debug/bbctl")).as_deref(),
            Some("dev")
        );
        assert_eq!(
            profile_of(Path::new("/w/target/release/bbctl")).as_deref(),
            Some("release")
        );
    }
}
