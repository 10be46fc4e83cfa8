//! Known secrets as needles: every value the bottle holds (its own credentials, and what the
//! runner found in the files it copied into the agent), found whole in each precomputed encoding
//! or as any run of `MIN_RUN` of its bytes, so a truncated or split value is still found.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use base64::Engine;

/// Any run of this many consecutive bytes of a known secret is a finding (the whole value when
/// it is shorter). 12 characters of a random token carry ~70 bits: no ordinary text holds them
/// by chance; the corpus benchmark (`benches/needles.rs`) measures the false-positive rate.
pub const MIN_RUN: usize = 12;

/// Secrets shorter than this are not looked for at all: they would match ordinary text.
pub const MIN_SECRET_LEN: usize = 8;

/// Anchors start every `STEP` bytes of a needle and are `ANCHOR` long, so every `MIN_RUN`-long
/// window of it holds one whole anchor: a window starting at `a` holds the anchor at the first
/// multiple of `STEP` at or after `a`, which ends by `a + STEP - 1 + ANCHOR = a + MIN_RUN`.
const STEP: usize = 4;
const ANCHOR: usize = MIN_RUN - STEP + 1;

/// Up to this many anchors (about 330 needles) compile to a DFA, the fastest search at about
/// 3.5 KiB an anchor; more to a contiguous NFA (a third slower, a fifth of the memory). See
/// docs/operations.md for both measured with 1,000 needles.
const MAX_DFA_ANCHORS: usize = 2_000;

fn automaton(patterns: &[&[u8]], kind: Option<AhoCorasickKind>) -> Option<AhoCorasick> {
    if patterns.is_empty() {
        return None;
    }
    AhoCorasick::builder()
        .match_kind(MatchKind::Standard)
        .kind(kind)
        .build(patterns)
        .ok()
}

/// One secret value the sidecar guards, and where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct Needle {
    pub value: Vec<u8>,
    /// `None` for the bottle's own credentials; for a secret found in a copied file, where
    /// (`/workspace/.env:3 (dotenv)`): refusals name it, never the value.
    pub origin: Option<Arc<str>>,
}

impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needle")
            .field("len", &self.value.len())
            .field("origin", &self.origin)
            .finish()
    }
}

impl Needle {
    /// One of the bottle's own credentials.
    pub fn own(value: impl Into<Vec<u8>>) -> Needle {
        Needle {
            value: value.into(),
            origin: None,
        }
    }
}

/// Which needle a scan found, by its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub origin: Option<Arc<str>>,
}

/// The compiled needles of one policy.
pub struct NeedleSet {
    needles: Vec<Needle>,
    /// Needles shorter than `MIN_RUN`, raw: found whole or not at all.
    short: Option<AhoCorasick>,
    short_of: Vec<usize>,
    /// Every whole value in every precomputed encoding (for data read without decoding, such
    /// as pushed histories), built on first use (egress never needs it); pattern `i` belongs
    /// to `whole_of[i]`.
    whole: std::sync::OnceLock<Option<AhoCorasick>>,
    whole_of: Vec<usize>,
    /// The anchors of needles at least `MIN_RUN` long; pattern `i` sits at each of
    /// `anchors_at[i]` (needle, offset).
    anchors: Option<AhoCorasick>,
    anchors_at: Vec<Vec<(usize, usize)>>,
}

impl std::fmt::Debug for NeedleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeedleSet")
            .field("needles", &self.needles.len())
            .finish_non_exhaustive()
    }
}

/// The base64 text `secret` shows as wherever it sits in a longer encoded stream: for each of
/// the three byte offsets it can start at, the characters that depend on its bytes alone.
fn base64_aligned(secret: &[u8], engine: &base64::engine::GeneralPurpose) -> Vec<Vec<u8>> {
    (0..3usize)
        .map(|k| {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(secret);
            let text = engine.encode(&padded);
            let text = text.trim_end_matches('=');
            let front = [0, 2, 3][k];
            let back = usize::from(padded.len() % 3 != 0);
            text.as_bytes()[front..text.len().saturating_sub(back).max(front)].to_vec()
        })
        .collect()
}

/// Every form a whole secret is looked for in without decoding (git-gate reads histories this
/// way; egress also decodes, which finds parts of secrets in these encodings).
pub(crate) fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let url: String = secret
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut out = vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
        url.into_bytes(),
    ];
    out.extend(base64_aligned(
        secret,
        &base64::engine::general_purpose::STANDARD,
    ));
    out.extend(base64_aligned(
        secret,
        &base64::engine::general_purpose::URL_SAFE,
    ));
    out.sort();
    out.dedup();
    out
}

impl NeedleSet {
    /// Compiles `needles`, trimming one trailing newline (token files often end with one) and
    /// dropping values shorter than `MIN_SECRET_LEN`.
    pub fn new(needles: &[Needle]) -> NeedleSet {
        let needles: Vec<Needle> = needles
            .iter()
            .map(|n| Needle {
                value: n.value.strip_suffix(b"\n").unwrap_or(&n.value).to_vec(),
                origin: n.origin.clone(),
            })
            .filter(|n| n.value.len() >= MIN_SECRET_LEN)
            .collect();
        let mut whole_of = Vec::new();
        let mut short: Vec<&[u8]> = Vec::new();
        let mut short_of = Vec::new();
        let mut anchor_ids: HashMap<&[u8], usize> = HashMap::new();
        let mut anchors: Vec<&[u8]> = Vec::new();
        let mut anchors_at: Vec<Vec<(usize, usize)>> = Vec::new();
        for (i, n) in needles.iter().enumerate() {
            whole_of.extend(std::iter::repeat_n(i, encodings(&n.value).len()));
            let v = n.value.as_slice();
            if v.len() < MIN_RUN {
                short.push(v);
                short_of.push(i);
                continue;
            }
            for off in (0..=v.len() - ANCHOR).step_by(STEP) {
                let a = &v[off..off + ANCHOR];
                let id = *anchor_ids.entry(a).or_insert_with(|| {
                    anchors.push(a);
                    anchors_at.push(Vec::new());
                    anchors.len() - 1
                });
                anchors_at[id].push((i, off));
            }
        }
        let short_ac = automaton(&short, None);
        // Anchors are short and few enough per needle for a DFA: the fastest search, and the
        // one every scanned byte pays for.
        let dfa = (anchors.len() <= MAX_DFA_ANCHORS).then_some(AhoCorasickKind::DFA);
        let anchors_ac = automaton(&anchors, dfa);
        NeedleSet {
            short: short_ac,
            short_of,
            whole: std::sync::OnceLock::new(),
            whole_of,
            anchors: anchors_ac,
            anchors_at,
            needles,
        }
    }

    /// Heap bytes of the compiled automata (what guarding these needles costs in memory).
    pub fn memory_usage(&self) -> usize {
        let whole = self.whole.get().and_then(Option::as_ref);
        [self.short.as_ref(), whole, self.anchors.as_ref()]
            .into_iter()
            .flatten()
            .map(AhoCorasick::memory_usage)
            .sum()
    }

    /// The longest end of `buf` that a later chunk could still extend into a find: the longest
    /// suffix, shorter than `MIN_RUN`, found inside some needle (a run of `MIN_RUN` is found
    /// already; a shorter whole needle is found whole). A stream keeps that much back unsent.
    pub fn open_suffix(&self, buf: &[u8]) -> usize {
        let most = buf.len().min(MIN_RUN - 1);
        (1..=most)
            .rev()
            .find(|&k| {
                let tail = &buf[buf.len() - k..];
                self.needles
                    .iter()
                    .any(|n| memchr::memmem::find(&n.value, tail).is_some())
            })
            .unwrap_or(0)
    }

    /// How many secrets are guarded.
    pub fn len(&self) -> usize {
        self.needles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// The first needle found in `hay` as it is: a run of at least `MIN_RUN` of its bytes, or
    /// the whole of a shorter one. Encodings are the caller's views (egress decodes them).
    pub fn find(&self, hay: &[u8]) -> Option<Hit> {
        if let Some(ac) = &self.short
            && let Some(m) = ac.find(hay)
        {
            return Some(self.hit(self.short_of[m.pattern().as_usize()]));
        }
        self.find_run(hay)
    }

    /// `find`, and also any whole needle in each precomputed encoding (raw, hex, percent,
    /// base64 and base64url at any alignment): for data nobody decodes, such as histories.
    pub fn find_encoded(&self, hay: &[u8]) -> Option<Hit> {
        let whole = self.whole.get_or_init(|| {
            let forms: Vec<Vec<u8>> = self
                .needles
                .iter()
                .flat_map(|n| encodings(&n.value))
                .collect();
            let refs: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
            automaton(&refs, None)
        });
        if let Some(ac) = whole
            && let Some(m) = ac.find(hay)
        {
            return Some(self.hit(self.whole_of[m.pattern().as_usize()]));
        }
        self.find_run(hay)
    }

    /// A run of at least `MIN_RUN` bytes of a needle, found through its anchors.
    fn find_run(&self, hay: &[u8]) -> Option<Hit> {
        let ac = self.anchors.as_ref()?;
        for m in ac.find_overlapping_iter(hay) {
            for &(needle, off) in &self.anchors_at[m.pattern().as_usize()] {
                if self.run_at(hay, m.start(), needle, off) >= MIN_RUN {
                    return Some(self.hit(needle));
                }
            }
        }
        None
    }

    fn hit(&self, needle: usize) -> Hit {
        Hit {
            origin: self.needles[needle].origin.clone(),
        }
    }

    /// How long the common run is around an anchor of `needle` at `off` found at `hay[at..]`.
    fn run_at(&self, hay: &[u8], at: usize, needle: usize, off: usize) -> usize {
        let v = &self.needles[needle].value;
        let left = hay[..at]
            .iter()
            .rev()
            .zip(v[..off].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let right = hay[at + ANCHOR..]
            .iter()
            .zip(&v[off + ANCHOR..])
            .take_while(|(a, b)| a == b)
            .count();
        left + ANCHOR + right
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stream_keeps_back_only_an_end_that_could_still_become_a_needle() {
        let set = NeedleSet::new(&[Needle::own(b"tok-ABCDEFGHIJKLMNOP".to_vec())]);
        assert_eq!(set.open_suffix(b"data: {}\n\n"), 0, "an event's end cannot");
        assert_eq!(set.open_suffix(b"the key is tok-AB"), 6);
        assert_eq!(
            set.open_suffix(b"tok-ABCDEFGHIJ"),
            MIN_RUN - 1,
            "a run of MIN_RUN is found already"
        );
        assert_eq!(NeedleSet::new(&[]).open_suffix(b"anything"), 0);
    }

    use super::*;

    fn copied(value: &str, origin: &str) -> Needle {
        Needle {
            value: value.as_bytes().to_vec(),
            origin: Some(origin.into()),
        }
    }

    #[test]
    fn every_run_of_min_run_bytes_is_found_and_shorter_ones_are_not() {
        let secret = "Zq9tokEN7secretVALUE42xyzW";
        let set = NeedleSet::new(&[copied(secret, "/workspace/.env:1 (dotenv)")]);
        let b = secret.as_bytes();
        for start in 0..=b.len() - MIN_RUN {
            for len in [MIN_RUN, MIN_RUN + 1, b.len() - start] {
                let Some(part) = b.get(start..start + len) else {
                    continue;
                };
                let mut hay = b"...>".to_vec();
                hay.extend_from_slice(part);
                hay.extend_from_slice(b"<...");
                let hit = set
                    .find(&hay)
                    .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(part)));
                assert_eq!(hit.origin.as_deref(), Some("/workspace/.env:1 (dotenv)"));
            }
            let short = &b[start..start + MIN_RUN - 1];
            assert_eq!(set.find(short), None, "{}", String::from_utf8_lossy(short));
        }
    }

    #[test]
    fn short_secrets_are_found_whole_only() {
        let set = NeedleSet::new(&[Needle::own("hunter2!x"), Needle::own("tiny")]);
        assert!(set.find(b"pw=hunter2!x;").is_some());
        assert_eq!(set.find(b"pw=hunter2!"), None);
        assert_eq!(set.find(b"tiny"), None, "below the floor");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn a_near_miss_around_an_anchor_is_not_a_run() {
        // The anchor `secretVAL` matches, but fewer than MIN_RUN bytes around it agree.
        let set = NeedleSet::new(&[Needle::own("Zq9tokEN7secretVALUE42xyzW")]);
        assert_eq!(set.find(b"xx7secretVAxx"), None);
        assert!(set.find(b"xxN7secretVALUxx").is_some());
    }

    #[test]
    fn debug_never_shows_a_value() {
        let set = NeedleSet::new(&[copied("do-not-print-me-1234", "a:1 (dotenv)")]);
        let shown = format!("{set:?} {:?}", copied("do-not-print-me-1234", "x"));
        assert!(!shown.contains("do-not-print"), "{shown}");
    }
}
