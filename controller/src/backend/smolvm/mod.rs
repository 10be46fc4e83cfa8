//! The smolvm backend (libkrun micro-VMs driven by the `smolvm` CLI): so far its CLI surface as
//! pure argv builders, JSON parsing and the rules that keep secrets off its argv (`cli`).

pub mod cli;
