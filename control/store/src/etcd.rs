//! The etcd v3 backend: the same log on a real etcd (3.4+), mapped one to one onto etcd's
//! revisions, transactions, ranged gets, watches and compaction.

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::mpsc;

use crate::{
    prefix_range_end, Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store,
    StoreError, Watch,
};

/// A store on etcd. Clones share one gRPC channel.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    endpoint: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn convert(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec()).map_err(|e| StoreError::BadKey {
            key: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

impl EtcdStore {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:2379`), or to every member of a
    /// comma-separated list (kube-apiserver's `--etcd-servers` form), balanced across them.
    pub async fn connect(endpoint: &str) -> Result<Self, StoreError> {
        let members: Vec<&str> = endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let client = Client::connect(members, None)
            .await
            .map_err(|source| StoreError::Etcd {
                endpoint: endpoint.to_string(),
                context: "connect".into(),
                source,
            })?;
        let store = Self {
            client,
            endpoint: endpoint.to_string(),
        };
        // Connecting is lazy; one read proves the endpoint answers.
        store.current_revision().await?;
        Ok(store)
    }

    fn err(
        &self,
        context: impl Into<String>,
    ) -> impl FnOnce(etcd_client::Error) -> StoreError + '_ {
        let context = context.into();
        move |source| {
            // etcd reports revision problems as gRPC OutOfRange with these texts.
            if let etcd_client::Error::GRpcStatus(status) = &source {
                let msg = status.message();
                if msg.contains("required revision has been compacted") {
                    return StoreError::Compacted {
                        requested: 0,
                        compacted: 0,
                    };
                }
                if msg.contains("required revision is a future revision") {
                    return StoreError::FutureRevision {
                        requested: 0,
                        current: 0,
                    };
                }
            }
            StoreError::Etcd {
                endpoint: self.endpoint.clone(),
                context,
                source,
            }
        }
    }

    /// A KV client that accepts large ranges (a list of many objects exceeds gRPC's 4 MiB default).
    fn kv(&self) -> etcd_client::KvClient {
        self.client.kv_client().max_decoding_message_size(512 << 20)
    }

    fn bad_response(&self, context: &str) -> StoreError {
        StoreError::EtcdResponse {
            endpoint: self.endpoint.clone(),
            context: context.to_string(),
        }
    }

    /// The current value of `key` from a transaction's failure branch.
    fn current_from(
        &self,
        ops: &[TxnOpResponse],
        context: &str,
    ) -> Result<Option<KeyValue>, StoreError> {
        match ops.first() {
            Some(TxnOpResponse::Get(g)) => g.kvs().first().map(convert).transpose(),
            _ => Err(self.bad_response(context)),
        }
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or_default()
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .kv()
            .txn(txn)
            .await
            .map_err(self.err(format!("create {key}")))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let rev = revision_of(resp.header());
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .kv()
            .txn(txn)
            .await
            .map_err(self.err(format!("update {key}")))?;
        let ops = resp.op_responses();
        if !resp.succeeded() {
            return match self.current_from(&ops, "update")? {
                None => Err(StoreError::NotFound {
                    key: key.to_string(),
                }),
                Some(cur) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: cur.mod_revision,
                }),
            };
        }
        let created = match ops.first() {
            Some(TxnOpResponse::Put(p)) => p.prev_key().map(|p| p.create_revision()),
            _ => None,
        }
        .ok_or_else(|| self.bad_response("update without previous value"))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: created,
            mod_revision: revision_of(resp.header()),
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let compare = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            // Exists: created at some revision.
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self
            .kv()
            .txn(txn)
            .await
            .map_err(self.err(format!("delete {key}")))?;
        let ops = resp.op_responses();
        if !resp.succeeded() {
            return match self.current_from(&ops, "delete")? {
                None => Err(StoreError::NotFound {
                    key: key.to_string(),
                }),
                Some(cur) => Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: expected.unwrap_or_default(),
                    actual: cur.mod_revision,
                }),
            };
        }
        let prev = match ops.first() {
            Some(TxnOpResponse::Delete(d)) => d.prev_kvs().first().map(convert).transpose()?,
            _ => None,
        };
        // A concurrent delete between compare and delete cannot happen inside one txn; a
        // missing previous value means the key vanished, which is a NotFound.
        let prev = prev.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })?;
        Ok(KeyValue {
            mod_revision: revision_of(resp.header()),
            ..prev
        })
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let resp = self
            .kv()
            .get(key, None)
            .await
            .map_err(self.err(format!("get {key}")))?;
        let kv = resp.kvs().first().map(convert).transpose()?;
        Ok((kv, revision_of(resp.header())))
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StoreError> {
        let end = prefix_range_end(prefix.as_bytes());
        let start: Vec<u8> = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut options = GetOptions::new().with_range(if end.is_empty() { vec![0] } else { end });
        if let Some(limit) = opts.limit.filter(|l| *l > 0) {
            options = options.with_limit(limit as i64);
        }
        if let Some(rev) = opts.revision.filter(|r| *r > 0) {
            options = options.with_revision(rev);
        }
        let resp = self.kv().get(start, Some(options)).await.map_err(|e| {
            match self.err(format!("list {prefix}"))(e) {
                StoreError::Compacted { .. } => StoreError::Compacted {
                    requested: opts.revision.unwrap_or_default(),
                    compacted: 0,
                },
                StoreError::FutureRevision { .. } => StoreError::FutureRevision {
                    requested: opts.revision.unwrap_or_default(),
                    current: 0,
                },
                other => other,
            }
        })?;
        let items = resp
            .kvs()
            .iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()?;
        let revision = match opts.revision.filter(|r| *r > 0) {
            Some(r) => r,
            None => revision_of(resp.header()),
        };
        Ok(ListResult {
            items,
            revision,
            more: resp.more(),
        })
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .kv()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(self.err("read revision"))?;
        Ok(revision_of(resp.header()))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch, StoreError> {
        // etcd reports a compacted start only after confirming the watch, asynchronously; a read
        // at `after` answers the same question up front (a later compaction still arrives
        // through the stream).
        if after > 0 {
            let probe = GetOptions::new().with_count_only().with_revision(after);
            match self.kv().get(prefix, Some(probe)).await {
                Ok(_) => {}
                Err(e) => match self.err(format!("watch {prefix}"))(e) {
                    StoreError::Compacted { .. } => {
                        return Err(StoreError::Compacted {
                            requested: after,
                            compacted: 0,
                        })
                    }
                    StoreError::FutureRevision { .. } => {}
                    other => return Err(other),
                },
            }
        }
        let mut options = WatchOptions::new()
            .with_prev_key()
            .with_start_revision(after + 1);
        options = if prefix.is_empty() {
            options.with_all_keys()
        } else {
            options.with_prefix()
        };
        let mut stream = self
            .client
            .watch_client()
            .watch(prefix, Some(options))
            .await
            .map_err(self.err(format!("watch {prefix}")))?;
        // The first response confirms creation or reports the compaction.
        let first = stream
            .message()
            .await
            .map_err(self.err(format!("watch {prefix}")))?;
        let mut pending = Vec::new();
        match first {
            Some(resp) if resp.compact_revision() > 0 => {
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted: resp.compact_revision(),
                })
            }
            Some(resp) if resp.canceled() => {
                return Err(StoreError::EtcdResponse {
                    endpoint: self.endpoint.clone(),
                    context: format!("watch {prefix} canceled: {}", resp.cancel_reason()),
                })
            }
            Some(resp) => pending.push(resp),
            None => return Err(self.bad_response("watch stream ended before creation")),
        }
        let (tx, rx) = mpsc::channel(1024);
        let endpoint = self.endpoint.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            let mut next = pending.pop();
            loop {
                let resp = match next.take() {
                    Some(r) => r,
                    None => tokio::select! {
                        _ = tx.closed() => return,
                        msg = stream.message() => match msg {
                            Ok(Some(r)) => r,
                            Ok(None) => return,
                            Err(source) => {
                                let _ = tx.send(Err(StoreError::Etcd {
                                    endpoint: endpoint.clone(),
                                    context: format!("watch {prefix}"),
                                    source,
                                })).await;
                                return;
                            }
                        }
                    },
                };
                if resp.compact_revision() > 0 {
                    let _ = tx
                        .send(Err(StoreError::Compacted {
                            requested: after,
                            compacted: resp.compact_revision(),
                        }))
                        .await;
                    return;
                }
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let converted = (|| -> Result<Event, StoreError> {
                        let prev = e.prev_kv().map(convert).transpose()?;
                        let mut kv = convert(kv)?;
                        let kind = match e.event_type() {
                            EventType::Put => EventKind::Put,
                            EventType::Delete => {
                                // etcd's delete event carries only the key: fill in the last value.
                                if let Some(p) = &prev {
                                    kv.value = p.value.clone();
                                    kv.create_revision = p.create_revision;
                                }
                                EventKind::Delete
                            }
                        };
                        Ok(Event { kind, kv, prev })
                    })();
                    if tx.send(converted).await.is_err() {
                        return;
                    }
                }
                if resp.canceled() {
                    return;
                }
            }
        });
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.kv()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
            .map_err(|e| match self.err(format!("compact {revision}"))(e) {
                StoreError::Compacted { .. } => StoreError::Compacted {
                    requested: revision,
                    compacted: revision,
                },
                StoreError::FutureRevision { .. } => StoreError::FutureRevision {
                    requested: revision,
                    current: 0,
                },
                other => other,
            })?;
        Ok(())
    }
}
