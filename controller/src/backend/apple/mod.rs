//! The Apple Container backend (Apple's `container` CLI on macOS): so far its CLI surface as
//! pure argv builders and JSON parsers (`cli`); the `Backend` implementation builds on them.

pub mod cli;
