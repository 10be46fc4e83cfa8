//! One module per verb.

pub mod apply;
pub mod background;
pub mod controller;
pub mod convert;
pub mod crds;
pub mod demo;
pub mod demo_live;
pub mod describe;
pub mod diff;
pub mod doctor;
pub mod get;
pub mod run;
pub mod session;
pub mod target;
pub mod validate;
