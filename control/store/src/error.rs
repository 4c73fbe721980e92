//! The store's errors: what the API layer maps to 404, 409, 410 and 500.

use crate::Revision;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the store's current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("watch on {prefix} fell behind the event stream and was closed")]
    WatchLagged { prefix: String },
    #[error("key {key:?} is not valid utf-8")]
    BadKey { key: String },
    #[error("sqlite store {path}: {context}: {source}")]
    Sqlite {
        path: String,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("write of {key} was rolled back because another write in its batch failed")]
    BatchAborted { key: String },
    #[error("etcd at {endpoint}: {context}: {source}")]
    Etcd {
        endpoint: String,
        context: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoint}: {context}: unexpected response")]
    EtcdResponse { endpoint: String, context: String },
    #[error("store is closed")]
    Closed,
}
