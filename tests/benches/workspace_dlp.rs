//! Workspace secrets end to end, without containers: the runner's discovery over a planted
//! workspace and over a clean corpus of real files, then the sidecar's outbound DLP on leak
//! payloads (many encodings and truncations) and on the corpus's lines, with and without the
//! discovered needles; and DLP throughput with 1,000 needles against the bottle's one token.
//! Prints `key value` lines that hack/bench-workspace-dlp.sh puts in a table.
//!
//!   cargo bench -p bb-e2e --bench workspace_dlp -- --corpus DIR

use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine;
use bb_backend::{AgentPlan, ImageSource};
use bb_sidecar::dlp::Detectors;
use bb_sidecar::needles::Needle;

fn plan_for(ws: &Path) -> AgentPlan {
    AgentPlan {
        image: ImageSource::Reference("bench".into()),
        command: vec![],
        env: Default::default(),
        secret_env: Default::default(),
        runtime: Default::default(),
        prompt: None,
        workspace: Some(bb_crds::agent::Workspace {
            host_path: ws.display().to_string(),
            copy: None,
            include_git: None,
        }),
        gitconfig: None,
        dirs: vec![],
        files: vec![],
        credential_files: vec![],
        skills: vec![],
        skills_dir: "/home/agent/.skills".into(),
        container_hash: String::new(),
        inputs_hash: String::new(),
    }
}

/// A deterministic stream of random-looking characters (no crates: xorshift).
struct Rand(u64);

impl Rand {
    fn chars(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                alphabet[(self.0 % alphabet.len() as u64) as usize] as char
            })
            .collect()
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Writes a workspace with `per_kind` secrets in each credential file format; returns the values.
fn planted_workspace(ws: &Path, per_kind: usize) -> Vec<String> {
    let mut r = Rand(0x9e37_79b9_7f4a_7c15);
    let mut values = Vec::new();
    let put = |path: &str, text: String| {
        let p = ws.join(path);
        std::fs::create_dir_all(p.parent().unwrap_or(ws)).ok();
        std::fs::write(p, text).ok();
    };
    for i in 0..per_kind {
        let v: Vec<String> = (0..7).map(|_| r.chars(24, ALNUM)).collect();
        put(
            &format!("svc{i}/.env"),
            format!(
                "DB_PASSWORD={}\nAPI_URL=https://api.test\nSESSION_SECRET={}\n",
                v[0], v[1]
            ),
        );
        put(
            &format!("svc{i}/.aws/credentials"),
            format!("[default]\naws_secret_access_key = {}\n", v[2]),
        );
        put(
            &format!("svc{i}/.kube/config"),
            format!(
                "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: {}\n",
                v[3]
            ),
        );
        put(
            &format!("svc{i}/.npmrc"),
            format!("//registry.npmjs.org/:_authToken={}\n", v[4]),
        );
        put(
            &format!("svc{i}/.netrc"),
            format!("machine h.test login me password {}\n", v[5]),
        );
        put(
            &format!("svc{i}/config/settings.py"),
            format!("DATABASE_URL = \"postgres://app:{}@db/app\"\n", v[6]),
        );
        values.extend(v);
    }
    values
}

/// The forms an agent might send a secret (or part of it) out in, each as a request body.
fn leak_forms(value: &str) -> Vec<(&'static str, String)> {
    let b = value.as_bytes();
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let b64url = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    let hex: String = b.iter().map(|c| format!("{c:02x}")).collect();
    let url: String = b.iter().map(|c| format!("%{c:02X}")).collect();
    let json: String = b.iter().map(|c| format!("\\u{c:04x}")).collect();
    vec![
        ("raw", format!("q={value}")),
        ("base64", format!("d={}", b64(b))),
        (
            "base64 shifted",
            format!("d={}", b64(&[b"k=".as_slice(), b].concat())),
        ),
        ("base64url", format!("d={}", b64url(b))),
        ("hex", format!("h={hex}")),
        ("percent-encoded", format!("q={url}")),
        ("json-escaped", format!("{{\"v\":\"{json}\"}}")),
        ("first 12", format!("q={}", &value[..12])),
        ("last 12", format!("q={}", &value[value.len() - 12..])),
        ("middle 14, base64", format!("d={}", b64(&b[5..19]))),
        ("first 16, hex", format!("h={}", &hex[..32])),
        (
            "reversed halves",
            format!("a={}&b={}", &value[12..], &value[..12]),
        ),
    ]
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(corpus) = args
        .iter()
        .position(|a| a == "--corpus")
        .and_then(|i| args.get(i + 1))
    else {
        eprintln!("usage: workspace_dlp --corpus DIR  (run by hack/bench-workspace-dlp.sh)");
        return;
    };
    let corpus = Path::new(corpus);
    // `--throughput-only`: the last table row alone, for tuning the matcher.
    let only_throughput = args.iter().any(|a| a == "--throughput-only");
    let tmp = std::env::temp_dir().join(format!("bb-bench-ws-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let ws = tmp.join("ws");
    std::fs::create_dir_all(&ws).expect("workspace");
    let planted = planted_workspace(&ws, 20);
    let bottle_token = Needle::own("bottle-own-token-bench-7d21c9");

    if only_throughput {
        throughput(corpus, &bottle_token);
        return;
    }
    // Discovery over the planted workspace: how many of the planted values it finds.
    let t = Instant::now();
    let found = bb_runner::discovery::discover(&plan_for(&ws), &tmp, None).expect("discover");
    let planted_ms = t.elapsed().as_secs_f64() * 1e3;
    let found_values: Vec<&[u8]> = found.secrets.iter().map(|s| s.value.as_slice()).collect();
    let discovered = planted
        .iter()
        .filter(|v| found_values.contains(&v.as_bytes()))
        .count();
    println!("planted_secrets {}", planted.len());
    println!("planted_discovered {discovered}");
    println!("planted_discovery_ms {planted_ms:.1}");

    // Discovery over the clean corpus: values it would guard that are not secrets.
    let t = Instant::now();
    let clean = bb_runner::discovery::discover(&plan_for(corpus), &tmp, None).expect("corpus");
    let secs = t.elapsed().as_secs_f64();
    println!("corpus_files {}", clean.files_read);
    println!("corpus_mb {:.1}", clean.bytes_read as f64 / 1e6);
    println!("corpus_discovered {}", clean.secrets.len());
    println!(
        "corpus_discovery_mb_s {:.0}",
        clean.bytes_read as f64 / 1e6 / secs
    );

    let needles: Vec<Needle> = found
        .secrets
        .iter()
        .map(|s| Needle {
            value: s.value.clone(),
            origin: Some(s.origin().into()),
        })
        .chain(std::iter::once(bottle_token.clone()))
        .collect();
    let with = Detectors::new(&needles);
    let without = Detectors::new(std::slice::from_ref(&bottle_token));

    // Recall on leak payloads, with and without the discovered needles.
    let mut by_form: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for v in &planted {
        for (form, body) in leak_forms(v) {
            let e = by_form.entry(form).or_default();
            e.0 += 1;
            e.1 += usize::from(with.outbound(body.as_bytes(), true, true).is_some());
            e.2 += usize::from(without.outbound(body.as_bytes(), true, true).is_some());
        }
    }
    for (form, (n, w, wo)) in &by_form {
        println!("recall[{form}] {w}/{n} {wo}/{n}");
    }

    // False positives: every line of the clean corpus sent as a request body.
    let mut paths = Vec::new();
    files(corpus, &mut paths);
    let texts: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| !b.contains(&0))
        .collect();
    let (mut lines, mut fp_with, mut fp_without) = (0usize, 0usize, 0usize);
    for text in &texts {
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            fp_with += usize::from(with.outbound(line, true, true).is_some());
            fp_without += usize::from(without.outbound(line, true, true).is_some());
        }
    }
    println!("corpus_lines {lines}");
    println!("fp_lines_with_discovery {fp_with}");
    println!("fp_lines_without_discovery {fp_without}");

    throughput(corpus, &bottle_token);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Outbound DLP over the corpus in 64 KiB bodies: with the bottle's one token, and with 1,000
/// needles of 32 characters (what a large workspace hands the sidecar).
fn throughput(corpus: &Path, bottle_token: &Needle) {
    // Throughput over the corpus in 64 KiB bodies: the bottle's one token, and 1,000 needles.
    let mut paths = Vec::new();
    files(corpus, &mut paths);
    let body: Vec<u8> = paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter(|b| !b.contains(&0))
        .collect::<Vec<_>>()
        .concat();
    let mut r = Rand(42);
    let thousand: Vec<Needle> = (0..1000)
        .map(|i| Needle {
            value: r.chars(32, ALNUM).into_bytes(),
            origin: Some(format!("/workspace/f{i}:1 (dotenv)").into()),
        })
        .collect();
    for (name, d) in [
        (
            "1_needle",
            Detectors::new(std::slice::from_ref(bottle_token)),
        ),
        ("100_needles", Detectors::new(&thousand[..100])),
        ("1000_needles", Detectors::new(&thousand)),
    ] {
        let t = Instant::now();
        let mut hits = 0usize;
        for chunk in body.chunks(64 * 1024) {
            hits += usize::from(d.outbound(chunk, true, true).is_some());
        }
        let secs = t.elapsed().as_secs_f64();
        println!("mb_s[{name}] {:.0}", body.len() as f64 / 1e6 / secs);
        println!("matcher_kib[{name}] {}", d.known_memory() / 1024);
        println!("chunks_flagged[{name}] {hits}");
    }
}
