//! Helpers shared by the sidecar's integration tests.

pub mod tls;

use std::path::Path;
use std::time::{Duration, Instant};

/// The address a process started with `--listen 127.0.0.1:0` and a listen file bound, once it
/// writes it (port 0: no race with another test for a "free" port).
// Not every suite starts a listener.
#[allow(dead_code)]
pub fn listen_addr(file: &Path, what: &str) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(a) = std::fs::read_to_string(file)
            .ok()
            .and_then(|a| a.trim().parse().ok())
        {
            return a;
        }
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
}
