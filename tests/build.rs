//! Which real runtimes this machine has: the suites against Apple's `container` CLI and smolvm
//! are compiled as ignored where the CLI is not on PATH, so cargo reports them as not run
//! (never as passed).

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bb_apple_container)");
    println!("cargo::rustc-check-cfg=cfg(bb_smolvm)");
    println!("cargo:rerun-if-env-changed=PATH");
    let macos = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "macos");
    if macos && on_path("container") {
        println!("cargo:rustc-cfg=bb_apple_container");
    }
    if on_path("smolvm") {
        println!("cargo:rustc-cfg=bb_smolvm");
    }
}
