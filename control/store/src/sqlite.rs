//! The embedded backend: an append-only log in SQLite (WAL mode, `synchronous=FULL`).
//!
//! Schema: `log` holds every write (puts and delete tombstones) keyed by revision; `current` maps
//! each live key to the revision of its newest value; `meta` holds the newest and the compacted
//! revision. All writes go through one writer thread that commits them in batches (group commit):
//! many concurrent writers share one fsync, and a write is acknowledged only after its batch is
//! durable, so a `kill -9` never loses an acknowledged write. Reads use a small pool of reader
//! connections; WAL lets them run beside the writer, each inside one snapshot.

use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    prefix_range_end, Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store,
    StoreError, Watch,
};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Events buffered for watchers before a slow one is cut off (it then re-lists).
const EVENT_BUFFER: usize = 16 * 1024;
/// Events buffered per watch between the store and its consumer.
const WATCH_BUFFER: usize = 1024;

enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

impl WriteOp {
    fn key(&self) -> &str {
        match self {
            WriteOp::Create { key, .. }
            | WriteOp::Update { key, .. }
            | WriteOp::Delete { key, .. } => key,
            WriteOp::Compact { .. } => "",
        }
    }
}

type Reply = oneshot::Sender<Result<Option<KeyValue>, StoreError>>;

/// The embedded store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Option<std_mpsc::Sender<(WriteOp, Reply)>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    events: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn sql_err<'a>(
    path: &'a Path,
    context: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        context,
        source,
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sql_err(path, "open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql_err(path, "set busy timeout"))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;",
    )
    .map_err(sql_err(path, "configure"))?;
    // One plan per statement (the query planner stability guarantee): without it SQLite
    // re-prepared the current-value join, read by every get and every write, each time a new
    // key was bound; that parsing was ~5% of bench-scheduler's CPU. The store keeps no
    // statistics tables, so no plan could get better by re-preparing.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(sql_err(path, "configure query planner"))?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_rev ON log(key, rev);
CREATE TABLE IF NOT EXISTS current (key BLOB PRIMARY KEY, rev INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES ('revision', 0), ('compacted', 0), ('schema', 1);
";

fn read_meta(conn: &Connection, path: &Path, name: &str) -> Result<i64, StoreError> {
    // Cached: every get and list reads the revision, and parsing the SQL each time showed up.
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)))
        .map_err(sql_err(path, "read meta"))
}

/// `key >= lo AND (hi is empty OR key < hi)` bounds for a prefix, honouring `start_after`.
fn bounds(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, bool, Vec<u8>) {
    let hi = prefix_range_end(prefix.as_bytes());
    match start_after {
        Some(after) if after.as_bytes() >= prefix.as_bytes() => {
            (after.as_bytes().to_vec(), true, hi)
        }
        _ => (prefix.as_bytes().to_vec(), false, hi),
    }
}

fn key_string(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|e| StoreError::BadKey {
        key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, e.g. `/var/lib/pea/control/store.db`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path)?;
        conn.execute_batch(SCHEMA)
            .map_err(sql_err(&path, "create schema"))?;
        let revision = read_meta(&conn, &path, "revision")?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (tx, rx) = std_mpsc::channel();
        let writer = Writer {
            path: path.clone(),
            conn,
            revision,
            events: events.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("pea-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|_| StoreError::Closed)?;
        tracing::info!(path = %path.display(), revision, "opened sqlite store");
        Ok(Self {
            path,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            readers: Arc::new(Mutex::new(Vec::new())),
            events,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: WriteOp) -> Result<Option<KeyValue>, StoreError> {
        let (reply, rx) = oneshot::channel();
        {
            let guard = self.writer.lock().map_err(|_| StoreError::Closed)?;
            let tx = guard.as_ref().ok_or(StoreError::Closed)?;
            tx.send((op, reply)).map_err(|_| StoreError::Closed)?;
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled reader connection inside one read transaction (one snapshot).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().map_err(|_| StoreError::Closed)?.pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let result = (|| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Deferred)
                    .map_err(sql_err(&path, "begin read"))?;
                let out = f(&tx, &path)?;
                tx.finish().map_err(sql_err(&path, "end read"))?;
                Ok(out)
            })();
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < 8 {
                    pool.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Stops the writer thread after the writes already queued; later calls fail with `Closed`.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(t) = self.writer_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

struct Writer {
    path: PathBuf,
    conn: Connection,
    revision: Revision,
    events: broadcast::Sender<Arc<Event>>,
}

/// The current row of a key.
const CURRENT_ROW: &str =
    "SELECT l.rev, l.create_rev, l.value FROM current c JOIN log l ON l.rev = c.rev WHERE c.key = ?1";

/// The current row of a key: (mod revision, create revision, value).
fn current_row(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    key: &str,
) -> Result<Option<(Revision, Revision, Vec<u8>)>, StoreError> {
    tx.prepare_cached(CURRENT_ROW)
        .and_then(|mut s| {
            s.query_row([key.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(sql_err(path, "read current value"))
}

impl Writer {
    fn run(mut self, rx: std_mpsc::Receiver<(WriteOp, Reply)>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<(WriteOp, Reply)>) {
        let start_revision = self.revision;
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let outcome = (|| -> Result<(), StoreError> {
            let path = self.path.clone();
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_err(&path, "begin write"))?;
            for (op, _) in &batch {
                let r = apply(&tx, &path, &mut self.revision, op, &mut events);
                if let Err(e @ StoreError::Sqlite { .. }) = r {
                    return Err(e);
                }
                results.push(r);
            }
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
                .and_then(|mut s| s.execute([self.revision]))
                .map_err(sql_err(&path, "write revision"))?;
            tx.commit().map_err(sql_err(&path, "commit"))?;
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                for e in events {
                    // No receivers is fine: nobody watches.
                    let _ = self.events.send(Arc::new(e));
                }
                for ((_, reply), r) in batch.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "store write batch rolled back");
                self.revision = start_revision;
                let failed_at = results.len();
                let mut err = Some(err);
                for (i, (op, reply)) in batch.into_iter().enumerate() {
                    let r = if i == failed_at {
                        Err(err.take().unwrap_or(StoreError::Closed))
                    } else {
                        Err(StoreError::BatchAborted {
                            key: op.key().to_string(),
                        })
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Applies one write inside the batch transaction. CAS failures write nothing.
fn apply(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    revision: &mut Revision,
    op: &WriteOp,
    events: &mut Vec<Event>,
) -> Result<Option<KeyValue>, StoreError> {
    let insert = |rev: Revision,
                  key: &str,
                  deleted: bool,
                  create: Revision,
                  prev: Revision,
                  value: &[u8]| {
        tx.prepare_cached(
            "INSERT INTO log(rev, key, deleted, create_rev, prev_rev, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.execute(params![rev, key.as_bytes(), deleted, create, prev, value]))
        .map_err(sql_err(path, "append to log"))
    };
    match op {
        WriteOp::Create { key, value } => {
            if current_row(tx, path, key)?.is_some() {
                return Err(StoreError::AlreadyExists { key: key.clone() });
            }
            let rev = *revision + 1;
            insert(rev, key, false, rev, 0, value)?;
            tx.prepare_cached("INSERT INTO current(key, rev) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key.as_bytes(), rev]))
                .map_err(sql_err(path, "insert current"))?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: None,
            });
            Ok(Some(kv))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let Some((cur, created, old)) = current_row(tx, path, key)? else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if cur != *expected {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    actual: cur,
                });
            }
            let rev = *revision + 1;
            insert(rev, key, false, created, cur, value)?;
            tx.prepare_cached("UPDATE current SET rev = ?2 WHERE key = ?1")
                .and_then(|mut s| s.execute(params![key.as_bytes(), rev]))
                .map_err(sql_err(path, "update current"))?;
            *revision = rev;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: created,
                mod_revision: rev,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: Some(KeyValue {
                    key: key.clone(),
                    value: old,
                    create_revision: created,
                    mod_revision: cur,
                }),
            });
            Ok(Some(kv))
        }
        WriteOp::Delete { key, expected } => {
            let Some((cur, created, old)) = current_row(tx, path, key)? else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if let Some(expected) = expected {
                if cur != *expected {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        actual: cur,
                    });
                }
            }
            let rev = *revision + 1;
            insert(rev, key, true, created, cur, &[])?;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")
                .and_then(|mut s| s.execute(params![key.as_bytes()]))
                .map_err(sql_err(path, "delete current"))?;
            *revision = rev;
            let prev = KeyValue {
                key: key.clone(),
                value: old,
                create_revision: created,
                mod_revision: cur,
            };
            let kv = KeyValue {
                mod_revision: rev,
                ..prev.clone()
            };
            events.push(Event {
                kind: EventKind::Delete,
                kv: kv.clone(),
                prev: Some(prev),
            });
            Ok(Some(kv))
        }
        WriteOp::Compact { revision: target } => {
            let compacted: Revision = tx
                .query_row("SELECT value FROM meta WHERE name = 'compacted'", [], |r| {
                    r.get(0)
                })
                .map_err(sql_err(path, "read compacted revision"))?;
            if *target <= compacted {
                return Err(StoreError::Compacted {
                    requested: *target,
                    compacted,
                });
            }
            if *target > *revision {
                return Err(StoreError::FutureRevision {
                    requested: *target,
                    current: *revision,
                });
            }
            // Keep, per key, the newest row at or below the target unless it is a tombstone.
            tx.execute(
                "DELETE FROM log WHERE rev <= ?1 AND (deleted = 1 OR rev < (
                     SELECT MAX(l2.rev) FROM log l2 WHERE l2.key = log.key AND l2.rev <= ?1))",
                [target],
            )
            .map_err(sql_err(path, "compact log"))?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [target],
            )
            .map_err(sql_err(path, "write compacted revision"))?;
            Ok(None)
        }
    }
}

fn check_revision(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    requested: Revision,
) -> Result<Revision, StoreError> {
    let current = read_meta(tx, path, "revision")?;
    let compacted = read_meta(tx, path, "compacted")?;
    if requested < compacted {
        return Err(StoreError::Compacted {
            requested,
            compacted,
        });
    }
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    Ok(current)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let key = key.to_string();
        self.write(WriteOp::Create {
            key: key.clone(),
            value,
        })
        .await?
        .ok_or(StoreError::NotFound { key })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let key = key.to_string();
        self.write(WriteOp::Update {
            key: key.clone(),
            value,
            expected,
        })
        .await?
        .ok_or(StoreError::NotFound { key })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let key = key.to_string();
        self.write(WriteOp::Delete {
            key: key.clone(),
            expected,
        })
        .await?
        .ok_or(StoreError::NotFound { key })
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let key = key.to_string();
        self.read(move |tx, path| {
            let revision = read_meta(tx, path, "revision")?;
            let kv = current_row(tx, path, &key)?.map(|(rev, created, value)| KeyValue {
                key,
                value,
                create_revision: created,
                mod_revision: rev,
            });
            Ok((kv, revision))
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let prefix = prefix.to_string();
        let opts = opts.clone();
        self.read(move |tx, path| {
            let current = read_meta(tx, path, "revision")?;
            let at = match opts.revision {
                Some(r) if r > 0 => {
                    check_revision(tx, path, r)?;
                    r
                }
                _ => current,
            };
            let (lo, exclusive, hi) = bounds(&prefix, opts.start_after.as_deref());
            let limit = opts.limit.filter(|l| *l > 0).map(|l| l as i64 + 1).unwrap_or(-1);
            let lo_op = if exclusive { ">" } else { ">=" };
            let hi_clause = if hi.is_empty() { "" } else { "AND l.key < ?2" };
            let sql = if at == current {
                format!(
                    "SELECT l.key, l.rev, l.create_rev, l.value FROM current c JOIN log l ON l.rev = c.rev
                     WHERE c.key {lo_op} ?1 {} ORDER BY c.key LIMIT ?3",
                    hi_clause.replace("l.key", "c.key")
                )
            } else {
                format!(
                    "SELECT l.key, l.rev, l.create_rev, l.value FROM log l
                     WHERE l.key {lo_op} ?1 {hi_clause} AND l.deleted = 0 AND l.rev = (
                         SELECT MAX(l2.rev) FROM log l2 WHERE l2.key = l.key AND l2.rev <= ?4)
                     ORDER BY l.key LIMIT ?3"
                )
            };
            let mut stmt = tx.prepare_cached(&sql).map_err(sql_err(path, "prepare list"))?;
            let mut rows = if at == current {
                stmt.query(params![lo, hi, limit])
            } else {
                stmt.query(params![lo, hi, limit, at])
            }
            .map_err(sql_err(path, "list"))?;
            let mut items = Vec::new();
            while let Some(row) = rows.next().map_err(sql_err(path, "list"))? {
                let key: Vec<u8> = row.get(0).map_err(sql_err(path, "list"))?;
                items.push(KeyValue {
                    key: key_string(key)?,
                    mod_revision: row.get(1).map_err(sql_err(path, "list"))?,
                    create_revision: row.get(2).map_err(sql_err(path, "list"))?,
                    value: row.get(3).map_err(sql_err(path, "list"))?,
                });
            }
            let more = limit > 0 && items.len() as i64 == limit;
            if more {
                items.pop();
            }
            Ok(ListResult {
                items,
                revision: at,
                more,
            })
        })
        .await
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        self.read(|tx, path| read_meta(tx, path, "revision")).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        // Subscribe before reading history so no event falls between the two.
        let mut live = self.events.subscribe();
        let history_prefix = prefix.to_string();
        let history = self
            .read(move |tx, path| {
                // Like etcd, a watch may start in the future; it only fails below the compaction.
                let compacted = read_meta(tx, path, "compacted")?;
                if after < compacted {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted,
                    });
                }
                let (lo, _, hi) = bounds(&history_prefix, None);
                let hi_clause = if hi.is_empty() { "" } else { "AND l.key < ?3" };
                let sql = format!(
                    "SELECT l.key, l.rev, l.deleted, l.create_rev, l.value, p.rev, p.value
                     FROM log l LEFT JOIN log p ON p.rev = l.prev_rev
                     WHERE l.rev > ?1 AND l.key >= ?2 {hi_clause} ORDER BY l.rev"
                );
                let mut stmt = tx
                    .prepare(&sql)
                    .map_err(sql_err(path, "prepare watch history"))?;
                let mut rows = if hi.is_empty() {
                    stmt.query(params![after, lo])
                } else {
                    stmt.query(params![after, lo, hi])
                }
                .map_err(sql_err(path, "watch history"))?;
                let mut events = Vec::new();
                while let Some(r) = rows.next().map_err(sql_err(path, "watch history"))? {
                    let e = (|| -> rusqlite::Result<_> {
                        let key: Vec<u8> = r.get(0)?;
                        let rev: Revision = r.get(1)?;
                        let deleted: bool = r.get(2)?;
                        let created: Revision = r.get(3)?;
                        let value: Vec<u8> = r.get(4)?;
                        let prev_rev: Option<Revision> = r.get(5)?;
                        let prev_value: Option<Vec<u8>> = r.get(6)?;
                        Ok((key, rev, deleted, created, value, prev_rev, prev_value))
                    })()
                    .map_err(sql_err(path, "watch history"))?;
                    let (key, rev, deleted, created, value, prev_rev, prev_value) = e;
                    let key = key_string(key)?;
                    let prev = prev_rev.zip(prev_value).map(|(pr, pv)| KeyValue {
                        key: key.clone(),
                        value: pv,
                        create_revision: created,
                        mod_revision: pr,
                    });
                    let (kind, value) = if deleted {
                        (
                            EventKind::Delete,
                            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default(),
                        )
                    } else {
                        (EventKind::Put, value)
                    };
                    events.push(Event {
                        kind,
                        kv: KeyValue {
                            key,
                            value,
                            create_revision: created,
                            mod_revision: rev,
                        },
                        prev,
                    });
                }
                Ok(events)
            })
            .await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut last = after;
            for e in history {
                last = e.revision();
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    msg = live.recv() => match msg {
                        Ok(e) => {
                            if e.revision() <= last || !e.kv.key.starts_with(&prefix) {
                                continue;
                            }
                            last = e.revision();
                            if tx.send(Ok((*e).clone())).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let _ = tx.send(Err(StoreError::WatchLagged { prefix })).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// Reading a key's current value with the cached statement must not re-prepare it for
    /// every new key (it did before the query planner stability guarantee was set).
    #[test]
    fn current_value_reads_reuse_their_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut conn = open_connection(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut reprepared = 0;
        for i in 1..=5i64 {
            let key = format!("/registry/pods/default/p-{i}");
            let tx = conn.transaction().unwrap();
            tx.prepare_cached(
                "INSERT INTO log(rev, key, deleted, create_rev, prev_rev, value) VALUES (?1, ?2, 0, ?1, 0, x'7b7d')",
            )
            .and_then(|mut s| s.execute(params![i, key.as_bytes()]))
            .unwrap();
            tx.prepare_cached("INSERT INTO current(key, rev) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key.as_bytes(), i]))
                .unwrap();
            let row = current_row(&tx, &path, &key).unwrap();
            assert_eq!(row.map(|r| r.0), Some(i));
            reprepared = tx
                .prepare_cached(CURRENT_ROW)
                .unwrap()
                .get_status(StatementStatus::RePrepare);
            tx.commit().unwrap();
        }
        assert_eq!(reprepared, 0, "re-prepared for new keys");
    }
}
