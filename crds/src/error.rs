//! Field paths and validation errors, shared with the policy crate (defined there).

pub use bb_policy::error::*;
