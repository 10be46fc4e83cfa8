//! The egress policy schema, defined once in the policy crate and used here by `Bottle.spec.egress`.

pub use bb_policy::egress::*;
