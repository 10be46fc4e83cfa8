//! Content hashes: the identity of plans, built images and the names derived from them. A leaf
//! the runtimes, the planner and git-gate share, so no runtime reaches into planning for it.

/// 16 hex digits of the SHA-256 of `parts`, each length-prefixed so that moving bytes from one
/// part to the next changes the hash. The identity of plans and of built images.
pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    bb_crds::policy::short_hex(ctx.finish().as_ref())
}
