//! pea-control-store: the revisioned key-value log the API server keeps its objects in.
//!
//! Every write gets a new, strictly increasing revision (the Kubernetes `resourceVersion`). The
//! log supports the operations an API server needs and nothing more: create-if-absent,
//! compare-and-swap update and delete, get, list at a revision with a prefix and pagination,
//! watch from a revision (with previous values) and compaction, after which older revisions
//! answer [`StoreError::Compacted`]. Two backends implement [`Store`]: [`sqlite::SqliteStore`]
//! (embedded, the default) and [`etcd::EtcdStore`] (a real etcd v3). Both pass the same
//! conformance suite (`tests/tests/control_store.rs`).

mod error;
pub mod etcd;
mod keys;
pub mod sqlite;

use async_trait::async_trait;
pub use error::StoreError;
pub use keys::prefix_range_end;

/// A position in the log. Revisions start at 1 and only grow.
pub type Revision = i64;

/// One key as of some revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (unchanged by updates).
    pub create_revision: Revision,
    /// Revision of the write that produced this value (for a delete event: the deletion).
    pub mod_revision: Revision,
}

/// What a watch event did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created (`prev` is `None`) or updated (`prev` holds the old value).
    Put,
    /// The key was deleted: `kv.value` is the last value, `kv.mod_revision` the deletion's revision.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// How to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read the state as of this revision; `None` reads the newest.
    pub revision: Option<Revision>,
    /// At most this many items; `None` or `Some(0)` means all.
    pub limit: Option<usize>,
    /// Only keys strictly after this one (the last key of the previous page).
    pub start_after: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the page was read at: pass it back for the next page.
    pub revision: Revision,
    /// More keys follow the last item.
    pub more: bool,
}

/// A stream of changes; dropping it ends the watch.
#[derive(Debug)]
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<Event, StoreError>>,
}

impl Watch {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Result<Event, StoreError>>) -> Self {
        Self { rx }
    }

    /// The next change in revision order; `None` when the store closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.rx.recv().await
    }
}

/// The revisioned log. Keys are UTF-8 paths such as `/registry/pods/default/web`.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes `key` only if it does not exist; fails with [`StoreError::AlreadyExists`].
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces `key` only if its current `mod_revision` is `expected`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key` (only if its `mod_revision` is `expected`, when given) and returns the value it
    /// had, with `mod_revision` set to the deletion's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// The current value of `key` and the store's revision at the time of the read.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError>;

    /// Keys starting with `prefix`, in key order.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError>;

    /// The newest revision.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// Changes to keys starting with `prefix` with a revision strictly greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError>;

    /// Forgets history at and below `revision`: reads and watches before it fail with
    /// [`StoreError::Compacted`]; the newest value of every live key is kept.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}
