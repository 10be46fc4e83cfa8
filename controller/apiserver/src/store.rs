//! The durable object store: SQLite in WAL mode, one log row per object revision (kine style) plus
//! a table of current objects. The global revision is every object's `resourceVersion`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

/// How many revisions of history compaction keeps for watchers to resume from.
pub const DEFAULT_HISTORY: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("the object has been modified (stored revision {current}, expected {expected})")]
    Conflict { current: i64, expected: i64 },
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store lock poisoned")]
    Poisoned,
}

/// One stored object at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    /// Revision of the write that produced this value (`resourceVersion`).
    pub revision: i64,
    pub create_revision: i64,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// A committed change. For `Deleted`, `record.value` is the object as it was deleted and
/// `record.revision` is the deletion's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub record: Record,
    /// The value before this change, for live `Modified` events (history replays omit it).
    pub prev: Option<Vec<u8>>,
}

struct Inner {
    conn: Connection,
}

/// Cheap to clone; all clones share one connection and one event stream.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key ON log(key, revision);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

fn kind_code(k: EventKind) -> i64 {
    match k {
        EventKind::Added => 0,
        EventKind::Modified => 1,
        EventKind::Deleted => 2,
    }
}

fn kind_of(code: i64) -> EventKind {
    match code {
        0 => EventKind::Added,
        1 => EventKind::Modified,
        _ => EventKind::Deleted,
    }
}

/// The exclusive upper bound of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0x7f {
            bytes.push(last + 1);
            return String::from_utf8(bytes).unwrap_or_else(|_| "\u{10ffff}".into());
        }
    }
    "\u{10ffff}".into()
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        // WAL + NORMAL: a committed transaction survives the process being killed (the data is in
        // the OS once the commit returns); only a machine crash can lose the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let (events, _) = broadcast::channel(8192);
        Ok(Store {
            inner: Arc::new(Mutex::new(Inner { conn })),
            events,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }

    /// The newest revision written (0 for an empty store).
    pub fn revision(&self) -> Result<i64, StoreError> {
        let g = self.lock()?;
        current_revision(&g.conn)
    }

    /// The oldest revision a watch may start after.
    pub fn compacted_revision(&self) -> Result<i64, StoreError> {
        let g = self.lock()?;
        compacted(&g.conn)
    }

    pub fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let g = self.lock()?;
        get_current(&g.conn, key)
    }

    /// Objects whose key starts with `prefix`, in key order, after `start_after`, at most `limit`
    /// (0 = all). Returns them with the store revision they were read at.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, i64), StoreError> {
        let g = self.lock()?;
        let rev = current_revision(&g.conn)?;
        let lower = start_after.map_or(prefix.to_string(), |s| format!("{s}\u{0}"));
        let upper = prefix_end(prefix);
        let lim = if limit == 0 { -1 } else { limit as i64 };
        let mut stmt = g.conn.prepare_cached(
            "SELECT key, revision, create_revision, value FROM current
             WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![lower, upper, lim], |r| {
                Ok(Record {
                    key: r.get(0)?,
                    revision: r.get(1)?,
                    create_revision: r.get(2)?,
                    value: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, rev))
    }

    /// Stores a new object; fails if the key exists.
    pub fn create(&self, key: &str, value: Vec<u8>) -> Result<Record, StoreError> {
        self.write(key, None, Some(value), true)
    }

    /// Replaces an object. `expected` is the revision the caller read (optimistic concurrency);
    /// `None` overwrites whatever is there.
    pub fn update(
        &self,
        key: &str,
        expected: Option<i64>,
        value: Vec<u8>,
    ) -> Result<Record, StoreError> {
        self.write(key, expected, Some(value), false)
    }

    /// Removes an object, returning it as it was. `expected` as for [`Store::update`].
    pub fn delete(&self, key: &str, expected: Option<i64>) -> Result<Record, StoreError> {
        self.write(key, expected, None, false)
    }

    fn write(
        &self,
        key: &str,
        expected: Option<i64>,
        value: Option<Vec<u8>>,
        create: bool,
    ) -> Result<Record, StoreError> {
        let mut g = self.lock()?;
        let tx = g.conn.transaction()?;
        let existing = get_current(&tx, key)?;
        let (kind, create_revision, stored_value) = match (&existing, &value, create) {
            (Some(_), _, true) => return Err(StoreError::AlreadyExists),
            (None, Some(_), true) => (EventKind::Added, None, None),
            (None, _, false) => return Err(StoreError::NotFound),
            (Some(cur), v, false) => {
                if let Some(exp) = expected
                    && exp != cur.revision
                {
                    return Err(StoreError::Conflict {
                        current: cur.revision,
                        expected: exp,
                    });
                }
                let kind = if v.is_some() {
                    EventKind::Modified
                } else {
                    EventKind::Deleted
                };
                (kind, Some(cur.create_revision), Some(cur.value.clone()))
            }
            (None, None, true) => return Err(StoreError::NotFound),
        };
        let logged = match (&value, &stored_value) {
            (Some(v), _) => v.clone(),
            (None, Some(old)) => old.clone(),
            (None, None) => Vec::new(),
        };
        tx.execute(
            "INSERT INTO log (key, kind, create_revision, value) VALUES (?1, ?2, ?3, ?4)",
            params![key, kind_code(kind), create_revision.unwrap_or(0), logged],
        )?;
        let revision = tx.last_insert_rowid();
        let create_revision = create_revision.unwrap_or(revision);
        if create_revision == revision {
            tx.execute(
                "UPDATE log SET create_revision = ?1 WHERE revision = ?1",
                params![revision],
            )?;
        }
        match &value {
            Some(v) => {
                tx.execute(
                    "INSERT INTO current (key, revision, create_revision, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET revision = excluded.revision, value = excluded.value",
                    params![key, revision, create_revision, v],
                )?;
            }
            None => {
                tx.execute("DELETE FROM current WHERE key = ?1", params![key])?;
            }
        }
        tx.commit()?;
        let record = Record {
            key: key.to_string(),
            revision,
            create_revision,
            value: logged,
        };
        // Sent while the lock is held so subscribers see revisions in order.
        let _ = self.events.send(Arc::new(Event {
            kind,
            record: record.clone(),
            prev: if kind == EventKind::Modified {
                stored_value
            } else {
                None
            },
        }));
        Ok(record)
    }

    /// Changes under `prefix` after revision `after`, in revision order: first the stored
    /// history, then live. Fails with `Compacted` when that history is gone.
    pub fn watch(&self, prefix: &str, after: i64) -> Result<Watch, StoreError> {
        let g = self.lock()?;
        let compacted = compacted(&g.conn)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        // Subscribe under the lock: every revision after `now` arrives on the channel.
        let rx = self.events.subscribe();
        let now = current_revision(&g.conn)?;
        let backlog = history(&g.conn, prefix, after, now)?;
        Ok(Watch {
            store: self.clone(),
            prefix: prefix.to_string(),
            backlog: backlog.into(),
            last: now.max(after),
            rx,
        })
    }

    /// Drops history at or below `revision`; watches from there on get `Compacted`.
    pub fn compact(&self, revision: i64) -> Result<(), StoreError> {
        let g = self.lock()?;
        let current = current_revision(&g.conn)?;
        let target = revision.min(current);
        if target <= compacted(&g.conn)? {
            return Ok(());
        }
        g.conn.execute(
            "DELETE FROM log WHERE revision <= ?1 AND revision < ?2",
            params![target, current],
        )?;
        g.conn.execute(
            "INSERT INTO meta (name, value) VALUES ('compacted', ?1)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![target],
        )?;
        Ok(())
    }
}

fn current_revision(conn: &Connection) -> Result<i64, StoreError> {
    // sqlite_sequence survives deleting the newest log rows, so revisions never go back.
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0))
}

fn compacted(conn: &Connection) -> Result<i64, StoreError> {
    let v: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(v.unwrap_or(0))
}

fn get_current(conn: &Connection, key: &str) -> Result<Option<Record>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT revision, create_revision, value FROM current WHERE key = ?1")?;
    Ok(stmt
        .query_row(params![key], |r| {
            Ok(Record {
                key: key.to_string(),
                revision: r.get(0)?,
                create_revision: r.get(1)?,
                value: r.get(2)?,
            })
        })
        .optional()?)
}

fn history(
    conn: &Connection,
    prefix: &str,
    after: i64,
    upto: i64,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, revision, kind, create_revision, value FROM log
         WHERE revision > ?1 AND revision <= ?2 AND key >= ?3 AND key < ?4 ORDER BY revision",
    )?;
    let rows = stmt
        .query_map(params![after, upto, prefix, prefix_end(prefix)], |r| {
            Ok(Event {
                prev: None,
                kind: kind_of(r.get(2)?),
                record: Record {
                    key: r.get(0)?,
                    revision: r.get(1)?,
                    create_revision: r.get(3)?,
                    value: r.get(4)?,
                },
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// A stream of changes; see [`Store::watch`].
#[derive(Debug)]
pub struct Watch {
    store: Store,
    prefix: String,
    backlog: std::collections::VecDeque<Event>,
    last: i64,
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Watch {
    /// The next change, waiting for one. `Compacted` if this watcher fell so far behind that the
    /// history it needs is gone.
    pub async fn next(&mut self) -> Result<Event, StoreError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                return Ok(e);
            }
            match self.rx.recv().await {
                Ok(e) => {
                    if e.record.revision <= self.last {
                        continue;
                    }
                    self.last = e.record.revision;
                    if e.record.key.starts_with(&self.prefix) {
                        return Ok((*e).clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live channel: catch up from the log instead.
                    let fresh = self.store.watch(&self.prefix, self.last)?;
                    self.backlog = fresh.backlog;
                    self.last = fresh.last;
                    self.rx = fresh.rx;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(StoreError::Poisoned);
                }
            }
        }
    }

    /// The revision this watch has delivered up to (for bookmarks).
    pub fn revision(&self) -> i64 {
        self.backlog
            .back()
            .map_or(self.last, |e| e.record.revision.max(self.last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        (dir, s)
    }

    #[test]
    fn revisions_are_global_and_monotonic() {
        let (_d, s) = store();
        let a = s.create("/a/1", b"1".to_vec()).expect("create");
        let b = s.create("/b/1", b"2".to_vec()).expect("create");
        let a2 = s
            .update("/a/1", Some(a.revision), b"3".to_vec())
            .expect("update");
        assert_eq!((a.revision, b.revision, a2.revision), (1, 2, 3));
        assert_eq!(a2.create_revision, 1);
        assert_eq!(s.revision().expect("rev"), 3);
        let d = s.delete("/a/1", None).expect("delete");
        assert_eq!(d.revision, 4);
        assert_eq!(d.value, b"3");
        assert!(s.get("/a/1").expect("get").is_none());
        let again = s.create("/a/1", b"new".to_vec()).expect("recreate");
        assert_eq!(
            again.create_revision, 5,
            "a recreated key starts a new life"
        );
    }

    #[test]
    fn optimistic_concurrency() {
        let (_d, s) = store();
        let a = s.create("/a/1", b"1".to_vec()).expect("create");
        s.update("/a/1", Some(a.revision), b"2".to_vec())
            .expect("first writer wins");
        assert!(matches!(
            s.update("/a/1", Some(a.revision), b"3".to_vec()),
            Err(StoreError::Conflict {
                current: 2,
                expected: 1
            })
        ));
        assert!(matches!(
            s.create("/a/1", b"x".to_vec()),
            Err(StoreError::AlreadyExists)
        ));
        assert!(matches!(
            s.update("/nope", None, b"x".to_vec()),
            Err(StoreError::NotFound)
        ));
    }

    #[test]
    fn many_writers_on_one_object_exactly_one_wins_per_revision() {
        let (_d, s) = store();
        let first = s.create("/hot", b"0".to_vec()).expect("create");
        let wins = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (s, wins) = (s.clone(), wins.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let Ok(Some(cur)) = s.get("/hot") else {
                            continue;
                        };
                        if s.update("/hot", Some(cur.revision), vec![t]).is_ok() {
                            wins.lock().expect("lock").push(cur.revision);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let mut won = wins.lock().expect("lock").clone();
        let n = won.len();
        won.sort_unstable();
        won.dedup();
        assert_eq!(won.len(), n, "two writers succeeded from the same revision");
        assert!(n > 0 && won[0] == first.revision);
        assert_eq!(
            s.revision().expect("rev"),
            first.revision + n as i64,
            "every success is one revision"
        );
    }

    #[test]
    fn list_by_prefix_with_pages() {
        let (_d, s) = store();
        for k in ["/x/a/1", "/x/a/2", "/x/a/3", "/x/ab/1", "/x/b/1"] {
            s.create(k, k.as_bytes().to_vec()).expect("create");
        }
        let (all, rev) = s.list("/x/a/", None, 0).expect("list");
        assert_eq!(
            all.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            vec!["/x/a/1", "/x/a/2", "/x/a/3"]
        );
        assert_eq!(rev, 5);
        let (page, _) = s.list("/x/a/", Some("/x/a/1"), 1).expect("page");
        assert_eq!(page[0].key, "/x/a/2");
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows_live() {
        let (_d, s) = store();
        s.create("/w/1", b"a".to_vec()).expect("create");
        s.create("/other/1", b"b".to_vec()).expect("create");
        let mut w = s.watch("/w/", 0).expect("watch");
        s.update("/w/1", None, b"c".to_vec()).expect("update");
        s.delete("/w/1", None).expect("delete");
        let got: Vec<(EventKind, i64)> = {
            let mut v = Vec::new();
            for _ in 0..3 {
                let e = w.next().await.expect("event");
                v.push((e.kind, e.record.revision));
            }
            v
        };
        assert_eq!(
            got,
            vec![
                (EventKind::Added, 1),
                (EventKind::Modified, 3),
                (EventKind::Deleted, 4)
            ]
        );
    }

    #[tokio::test]
    async fn compaction_makes_old_revisions_gone() {
        let (_d, s) = store();
        for i in 0..5 {
            s.create(&format!("/c/{i}"), vec![i]).expect("create");
        }
        s.compact(3).expect("compact");
        assert!(matches!(
            s.watch("/c/", 1),
            Err(StoreError::Compacted {
                requested: 1,
                compacted: 3
            })
        ));
        let mut w = s.watch("/c/", 3).expect("watch from the compaction point");
        assert_eq!(w.next().await.expect("event").record.revision, 4);
        assert_eq!(
            s.list("/c/", None, 0).expect("list").0.len(),
            5,
            "current state survives"
        );
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let s = Store::open(&path).expect("open");
            s.create("/k", b"v".to_vec()).expect("create");
            s.delete("/k", None).expect("delete");
            s.create("/k2", b"v2".to_vec()).expect("create");
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.revision().expect("rev"), 3);
        assert_eq!(
            s.get("/k2").expect("get").map(|r| r.value),
            Some(b"v2".to_vec())
        );
        assert_eq!(s.create("/k3", vec![]).expect("create").revision, 4);
    }
}
