//! git-gate's scanner on real and generated history: throughput on a `git log -p` stream of at
//! least `--log-mb` MB built from a corpus of real files, false positives on that corpus, and
//! recall on a directory of planted secrets (one per line). Prints `key value` lines that
//! hack/bench-git-gate.sh puts in a table beside detect-secrets.
//!
//!   cargo bench -p bb-sidecar --bench git_scan -- --corpus DIR --planted DIR [--log-mb 200]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bb_sidecar::git_gate::scan::Scanner;

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

/// `git log -p -U0` text adding every line of `files`, one commit per file.
fn as_log(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut log = Vec::new();
    for (i, (name, text)) in files.iter().enumerate() {
        let lines = text.split(|&b| b == b'\n').count();
        let _ = write!(
            log,
            "\x01{i:040x}\ndiff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n@@ -0,0 +1,{lines} @@\n"
        );
        for line in text.split(|&b| b == b'\n') {
            log.push(b'+');
            log.extend_from_slice(line);
            log.push(b'\n');
        }
    }
    log
}

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut paths = Vec::new();
    files(dir, &mut paths);
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            // Binary files are skipped by git's text diff as well.
            (!bytes.contains(&0)).then(|| {
                let name = p
                    .strip_prefix(dir)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                (name, bytes)
            })
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (Some(corpus), Some(planted)) = (arg("--corpus"), arg("--planted")) else {
        eprintln!(
            "usage: git_scan --corpus DIR --planted DIR [--log-mb N]  (run by hack/bench-git-gate.sh)"
        );
        return;
    };
    let log_mb: usize = arg("--log-mb").and_then(|v| v.parse().ok()).unwrap_or(200);
    let scanner = Scanner::new(&[bb_sidecar::needles::Needle::own(
        "bottle-own-secret-bench-7d21",
    )]);

    // False positives on the clean corpus, by rule.
    let corpus = read_all(Path::new(&corpus));
    let corpus_bytes: usize = corpus.iter().map(|(_, b)| b.len()).sum();
    let corpus_log = as_log(&corpus);
    let found = scanner.scan_log(corpus_log.as_slice()).unwrap_or_default();
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    for f in &found {
        *by_rule.entry(f.rule.clone()).or_default() += 1;
    }
    println!("corpus_files {}", corpus.len());
    println!("corpus_mb {:.1}", corpus_bytes as f64 / 1e6);
    println!("corpus_findings {}", found.len());
    for (rule, n) in &by_rule {
        println!("corpus_rule {rule} {n}");
    }
    if args.iter().any(|a| a == "--show") {
        for f in &found {
            println!("finding {}:{} {} {}", f.file, f.line, f.rule, f.redacted);
        }
    }

    // The hook's own path: every corpus file as a new blob (all its lines added), judged by the
    // rules and known secrets, then by egress's decoded views.
    let t = Instant::now();
    let mut blob_findings = Vec::new();
    for (name, text) in &corpus {
        let lines: Vec<(u64, &[u8])> = text
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(n, l)| (n as u64 + 1, l))
            .collect();
        scanner.scan_lines("-", name, &lines, |f| blob_findings.push(f));
    }
    let secs = t.elapsed().as_secs_f64();
    println!("blob_findings {}", blob_findings.len());
    println!("blob_mb_s {:.1}", corpus_bytes as f64 / 1e6 / secs);
    if args.iter().any(|a| a == "--show") {
        for f in &blob_findings {
            println!(
                "blob_finding {}:{} {} {}",
                f.file, f.line, f.rule, f.redacted
            );
        }
    }

    // Recall on planted secrets: each non-empty line of each planted file is one secret.
    let planted = read_all(Path::new(&planted));
    let mut total = 0usize;
    let mut hit = 0usize;
    for (name, text) in &planted {
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            total += 1;
            if scanner.scan_line(line).is_some() {
                hit += 1;
            } else {
                println!("missed {name} {}", String::from_utf8_lossy(line));
            }
        }
    }
    println!("planted {total}");
    println!("planted_found {hit}");

    // Throughput on a log of at least log_mb MB (the corpus log repeated).
    let mut big = Vec::with_capacity(log_mb << 20);
    while big.len() < log_mb * 1_000_000 && !corpus_log.is_empty() {
        big.extend_from_slice(&corpus_log);
    }
    let t = Instant::now();
    let n = scanner
        .scan_log(big.as_slice())
        .map(|f| f.len())
        .unwrap_or(0);
    let secs = t.elapsed().as_secs_f64();
    println!("log_mb {:.1}", big.len() as f64 / 1e6);
    println!("log_findings {n}");
    println!("throughput_mb_s {:.1}", big.len() as f64 / 1e6 / secs);
}
