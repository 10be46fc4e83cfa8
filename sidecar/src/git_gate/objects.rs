//! Every object a push would make reachable upstream, judged: commits (headers, identities,
//! message), annotated tags, tree entry names, and each blob's new lines whatever git thinks of
//! its encoding (NUL bytes, UTF-16/32), in the views egress DLP decodes. Read with replace
//! objects off, so a `refs/replace/` look-alike cannot stand in for what is really sent.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::scan::{Finding, Scanner};

/// A blob larger than this is not read: the push is refused as one the gate cannot judge.
pub const MAX_BLOB: u64 = 100 << 20;

/// `git` with replace objects ignored, whatever the repository or environment says.
fn git() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_NO_REPLACE_OBJECTS", "1")
        .arg("--no-replace-objects")
        .stdin(Stdio::null());
    c
}

/// Object ids and names (`sha [path]`) of everything `tips` reach that no ref reaches yet.
fn new_objects(tips: &[&str]) -> Result<Vec<(String, String)>, String> {
    let out = git()
        .args(["rev-list", "--objects", "--in-commit-order"])
        .args(tips)
        .args(["--not", "--all"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running git rev-list: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git rev-list failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((sha, path)) => (sha.to_string(), path.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect())
}

/// The type of each of `shas` (`git cat-file --batch-check`, one process for all). An object
/// git cannot name the type of fails the push: it cannot be judged.
fn kinds<'a>(shas: impl Iterator<Item = &'a str>) -> Result<HashMap<String, String>, String> {
    let mut child = git()
        .args(["cat-file", "--batch-check"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running git cat-file --batch-check: {e}"))?;
    let mut input = child.stdin.take().ok_or("git cat-file has no stdin")?;
    let list: String = shas.map(|s| format!("{s}\n")).collect();
    // Written from a thread: git answers as it reads, and a large list fills both pipes.
    let writer = std::thread::spawn(move || input.write_all(list.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("git cat-file --batch-check: {e}"))?;
    let _ = writer.join();
    let mut kinds = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some(sha), Some(kind), Some(_size)) => {
                kinds.insert(sha.to_string(), kind.to_string());
            }
            _ => return Err(format!("object {line}: it cannot be judged")),
        }
    }
    Ok(kinds)
}

/// One `git cat-file --batch`, asked one object at a time.
struct CatFile {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl CatFile {
    fn start() -> Result<CatFile, String> {
        let mut child = git()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running git cat-file: {e}"))?;
        let input = child.stdin.take().ok_or("git cat-file has no stdin")?;
        let output = BufReader::new(child.stdout.take().ok_or("git cat-file has no stdout")?);
        Ok(CatFile {
            child,
            input,
            output,
        })
    }

    /// The object's type and bytes; a missing or oversized object is an error.
    fn read(&mut self, sha: &str) -> Result<(String, Vec<u8>), String> {
        let io = |e: std::io::Error| format!("reading object {sha}: {e}");
        writeln!(self.input, "{sha}").map_err(io)?;
        self.input.flush().map_err(io)?;
        let mut head = String::new();
        self.output.read_line(&mut head).map_err(io)?;
        let mut parts = head.split_whitespace();
        let (Some(_), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("object {sha}: {}", head.trim()));
        };
        let size: u64 = size
            .parse()
            .map_err(|_| format!("object {sha}: bad size {size:?}"))?;
        if size > MAX_BLOB {
            return Err(format!(
                "object {sha} is {size} bytes, more than the {MAX_BLOB} the gate reads; it cannot be judged"
            ));
        }
        let mut body = vec![0u8; size as usize + 1];
        self.output.read_exact(&mut body).map_err(io)?;
        body.pop();
        Ok((kind.to_string(), body))
    }
}

impl Drop for CatFile {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blob a commit changed: its id before (none when added) and after, and its path.
struct Change {
    old: Option<String>,
    new: String,
    path: String,
}

/// The blobs `commit` changes against its first parent (every blob, for a root commit).
fn changes(commit: &str, parent: Option<&str>) -> Result<Vec<Change>, String> {
    let mut c = git();
    c.args([
        "diff-tree",
        "-r",
        "-z",
        "--no-renames",
        "--no-commit-id",
        "--raw",
    ]);
    match parent {
        Some(p) => c.args([p, commit]),
        None => c.args(["--root", commit]),
    };
    let out = c
        .output()
        .map_err(|e| format!("running git diff-tree: {e}"))?;
    if !out.status.success() {
        return Err(format!("git diff-tree {commit} failed ({})", out.status));
    }
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let mut fields = out.stdout.split(|&b| b == 0);
    let mut found = Vec::new();
    while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
        let meta = String::from_utf8_lossy(meta);
        let m: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let (Some(new_mode), Some(old), Some(new)) = (m.get(1), m.get(2), m.get(3)) else {
            continue;
        };
        // Deleted files bring nothing; submodule entries name commits elsewhere.
        if zero(new) || *new_mode == "160000" {
            continue;
        }
        found.push(Change {
            old: (!zero(old)).then(|| old.to_string()),
            new: new.to_string(),
            path: String::from_utf8_lossy(path).into_owned(),
        });
    }
    Ok(found)
}

/// The texts a blob is read as: its bytes, and when it is UTF-16 or UTF-32 (by its BOM, or by
/// the NULs every other or every fourth byte that ASCII text in them has), that text as UTF-8.
pub fn text_views(bytes: &[u8]) -> Vec<Cow<'_, [u8]>> {
    let mut views = vec![Cow::Borrowed(bytes)];
    let units = |width: usize, big: bool| -> String {
        bytes
            .chunks_exact(width)
            .filter_map(|c| {
                let v = match (width, big) {
                    (2, false) => u32::from(u16::from_le_bytes([c[0], c[1]])),
                    (2, true) => u32::from(u16::from_be_bytes([c[0], c[1]])),
                    (_, false) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                    (_, true) => u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                };
                char::from_u32(v)
            })
            .collect()
    };
    let nul_at = |every: usize, at: usize| {
        let n = bytes.len() / every;
        n >= 4
            && bytes
                .iter()
                .skip(at)
                .step_by(every)
                .filter(|&&b| b == 0)
                .count()
                * 4
                >= n * 3
    };
    let (u32le, u32be) = (nul_at(4, 2) && nul_at(4, 3), nul_at(4, 0) && nul_at(4, 1));
    let bom32 = bytes.starts_with(&[0xFF, 0xFE, 0, 0]) || bytes.starts_with(&[0, 0, 0xFE, 0xFF]);
    if bom32 || u32le || u32be {
        views.push(Cow::Owned(
            units(4, bytes.starts_with(&[0, 0]) || u32be).into_bytes(),
        ));
    } else if bytes.starts_with(&[0xFF, 0xFE]) || nul_at(2, 1) {
        views.push(Cow::Owned(units(2, false).into_bytes()));
    } else if bytes.starts_with(&[0xFE, 0xFF]) || nul_at(2, 0) {
        views.push(Cow::Owned(units(2, true).into_bytes()));
    }
    views
}

/// What one push is judged on, read from the repository the hook runs in.
pub struct PushObjects<'a> {
    scanner: &'a Scanner,
    cat: CatFile,
}

impl std::fmt::Debug for PushObjects<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushObjects").finish_non_exhaustive()
    }
}

impl<'a> PushObjects<'a> {
    pub fn new(scanner: &'a Scanner) -> Result<PushObjects<'a>, String> {
        Ok(PushObjects {
            scanner,
            cat: CatFile::start()?,
        })
    }

    /// Every finding in the objects `tips` would make reachable upstream.
    pub fn scan(&mut self, tips: &[&str]) -> Result<Vec<Finding>, String> {
        let mut findings = Vec::new();
        let objects = new_objects(tips)?;
        let names: HashMap<&str, &str> = objects
            .iter()
            .map(|(s, p)| (s.as_str(), p.as_str()))
            .collect();
        let kinds = kinds(objects.iter().map(|(sha, _)| sha.as_str()))?;
        let kind_of = |sha: &str| kinds.get(sha).map(String::as_str).unwrap_or_default();
        let mut judged: HashSet<String> = HashSet::new();
        // Commits first: the blobs they change are judged on their new lines only. Blobs are
        // read only when judged (below or in `blob`), never just to learn their type.
        for (sha, _) in objects.iter().filter(|(sha, _)| kind_of(sha) != "blob") {
            let (kind, body) = self.cat.read(sha)?;
            match kind.as_str() {
                "commit" => {
                    self.lines(&mut findings, sha, "<commit message and identities>", &body);
                    let parent = first_parent(&body);
                    for c in changes(sha, parent.as_deref())? {
                        self.blob(&mut findings, sha, &c.path, &c.new, c.old.as_deref())?;
                        judged.insert(c.new);
                    }
                }
                "tag" => self.lines(&mut findings, "-", &format!("<tag {sha}>"), &body),
                "tree" => {
                    for name in tree_names(&body) {
                        self.lines(&mut findings, "-", &format!("<name in tree {sha}>"), name);
                    }
                }
                _ => {}
            }
        }
        // Blobs no new commit brings (a tag pointing at a blob, or at a tree): judged whole.
        for (sha, _) in &objects {
            if judged.contains(sha) || kind_of(sha) != "blob" {
                continue;
            }
            let shown = match names.get(sha.as_str()).copied().unwrap_or_default() {
                "" => format!("<blob {sha}>"),
                path => path.to_string(),
            };
            self.blob(&mut findings, "-", &shown, sha, None)?;
        }
        Ok(findings)
    }

    /// A blob's lines that `old` (the version before, if any) does not have, in every view.
    fn blob(
        &mut self,
        findings: &mut Vec<Finding>,
        commit: &str,
        path: &str,
        new: &str,
        old: Option<&str>,
    ) -> Result<(), String> {
        let (_, new_bytes) = self.cat.read(new)?;
        let old_bytes = match old {
            Some(o) => self.cat.read(o)?.1,
            None => Vec::new(),
        };
        let old_views = text_views(&old_bytes);
        for (i, view) in text_views(&new_bytes).iter().enumerate() {
            let before: HashSet<&[u8]> = old_views
                .get(i)
                .map(|v| v.split(|&b| b == b'\n').collect())
                .unwrap_or_default();
            let added: Vec<(u64, &[u8])> = view
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| !l.is_empty() && !before.contains(l))
                .map(|(n, l)| (n as u64 + 1, l))
                .collect();
            self.scanner
                .scan_lines(commit, path, &added, |f| findings.push(f));
        }
        Ok(())
    }

    /// Every line of a commit, a tag or a name.
    fn lines(&self, findings: &mut Vec<Finding>, commit: &str, what: &str, text: &[u8]) {
        let lines: Vec<(u64, &[u8])> = text
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(n, l)| (n as u64 + 1, l))
            .collect();
        self.scanner
            .scan_lines(commit, what, &lines, |f| findings.push(f));
    }
}

fn first_parent(commit: &[u8]) -> Option<String> {
    commit
        .split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(b"parent "))
        .map(|p| String::from_utf8_lossy(p).trim().to_string())
}

/// The entry names of a raw tree object (`mode SP name NUL 20-byte id`, repeated).
fn tree_names(tree: &[u8]) -> Vec<&[u8]> {
    let mut names = Vec::new();
    let mut rest = tree;
    while let Some(sp) = memchr::memchr(b' ', rest) {
        let after = &rest[sp + 1..];
        let Some(nul) = memchr::memchr(0, after) else {
            break;
        };
        names.push(&after[..nul]);
        rest = after.get(nul + 21..).unwrap_or_default();
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_and_utf32_are_read_as_text() {
        let text = "token: ghp_4Tz9qLmN2vB8xR6yW1pK3sD7fH5jA0cE9gUi\n";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let bom_le = [&[0xFF, 0xFE][..], &le].concat();
        let u32le: Vec<u8> = text
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        for (what, bytes) in [("le", le), ("be", be), ("bom", bom_le), ("utf-32", u32le)] {
            let views = text_views(&bytes);
            assert!(
                views
                    .iter()
                    .any(|v| String::from_utf8_lossy(v).contains("ghp_4Tz9q")),
                "{what}"
            );
        }
        assert_eq!(text_views(b"plain text\n").len(), 1);
    }

    #[test]
    fn tree_entry_names() {
        let mut tree = b"100644 a.txt\0".to_vec();
        tree.extend([7u8; 20]);
        tree.extend(b"40000 dir name\0");
        tree.extend([9u8; 20]);
        assert_eq!(tree_names(&tree), vec![&b"a.txt"[..], &b"dir name"[..]]);
    }
}
