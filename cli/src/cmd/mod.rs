//! One module per verb.

pub mod apply;
pub mod background;
pub mod controller;
pub mod convert;
pub mod crds;
pub mod decide;
pub mod demo;
pub mod demo_live;
pub mod describe;
pub mod dev_sidecar;
pub mod diff;
pub mod doctor;
pub mod drain;
pub mod fork;
pub mod get;
pub mod policy;
pub mod run;
pub mod runners;
pub mod session;
pub mod supervise;
pub mod table;
pub mod target;
pub mod validate;

/// The async runtime every API verb runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::exit::CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            crate::exit::CliError::new(
                crate::exit::Kind::General,
                format!("starting the runtime: {e}"),
            )
        })
}
