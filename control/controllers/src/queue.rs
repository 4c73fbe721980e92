//! A work queue with client-go's guarantees: a key is queued at most once, is never handed to
//! two workers at the same time (a key added while being processed is queued again when the
//! worker is done), and failures are retried with per-key exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// First retry delay after a failure (client-go: 5 ms).
const BASE_DELAY: Duration = Duration::from_millis(5);
/// Retry delays stop growing here. client-go goes up to 1000 s; a control plane on one machine
/// is better served by retrying a stuck object twice a minute.
const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

#[derive(Debug, Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Queue {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.inner.lock().expect("queue lock");
        if !inner.dirty.insert(key.clone()) {
            return;
        }
        if inner.processing.contains(&key) {
            return;
        }
        inner.queue.push_back(key);
        drop(inner);
        self.notify.notify_one();
    }

    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, after: Duration) {
        let key = key.into();
        if after.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            q.add(key);
        });
    }

    /// Re-queues a key that failed, after a delay that doubles with each consecutive failure.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let n = {
            let mut inner = self.inner.lock().expect("queue lock");
            let n = inner.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(key, backoff(n));
    }

    /// Clears a key's failure count after a successful sync.
    pub fn forget(&self, key: &str) {
        self.inner.lock().expect("queue lock").failures.remove(key);
    }

    /// Waits for the next key; the caller must call [`Queue::done`] with it.
    pub async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.inner.lock().expect("queue lock");
                if let Some(k) = inner.queue.pop_front() {
                    inner.dirty.remove(&k);
                    inner.processing.insert(k.clone());
                    // More keys may wait: wake another worker.
                    if !inner.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return k;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut inner = self.inner.lock().expect("queue lock");
        inner.processing.remove(key);
        if inner.dirty.contains(key) {
            inner.queue.push_back(key.to_string());
            drop(inner);
            self.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before the `n`th consecutive retry (n ≥ 1).
pub fn backoff(n: u32) -> Duration {
    let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
    BASE_DELAY
        .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// What a sync asks of the queue afterwards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Requeue(pub Option<Duration>);

/// Runs `workers` loops taking keys from `queue` and handing them to `sync`. Errors are logged
/// and the key retried with backoff; a requested delay re-adds the key after it. A panicking
/// sync is an error too: without this its worker died with the key marked in progress, so that
/// object was never synced again (a ReplicaSet left at its old size for good).
pub async fn run_workers<F, Fut, E>(
    queue: Arc<Queue>,
    workers: usize,
    controller: &'static str,
    sync: F,
) where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, E>> + Send,
    E: std::fmt::Display,
{
    let sync = Arc::new(sync);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let sync = sync.clone();
        set.spawn(async move {
            loop {
                let key = queue.get().await;
                let run = std::panic::AssertUnwindSafe(sync(key.clone()));
                let result = match futures_util::FutureExt::catch_unwind(run).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(panic) => Err(format!(
                        "sync panicked: {}",
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("(no message)")
                    )),
                };
                match result {
                    Ok(Requeue(after)) => {
                        queue.forget(&key);
                        if let Some(after) = after {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(controller, key = %key, error = %e, "sync failed; will retry");
                        queue.add_rate_limited(&key);
                    }
                }
                queue.done(&key);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(5), Duration::from_millis(80));
        assert_eq!(backoff(14), Duration::from_millis(40960).min(MAX_DELAY));
        assert_eq!(backoff(200), MAX_DELAY);
    }

    #[tokio::test]
    async fn a_panicking_sync_is_retried_and_its_worker_lives_on() {
        let q = Queue::new();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = calls.clone();
        let workers = tokio::spawn(run_workers(q.clone(), 1, "test", move |key: String| {
            let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("first sync of {key} panics");
                }
                Ok::<_, String>(Requeue::default())
            }
        }));
        q.add("a");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while calls.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the key was not retried"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The same (only) worker takes the next key.
        q.add("b");
        while calls.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "the worker died");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        workers.abort();
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_never_processed_twice_at_once() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let k = q.get().await;
        assert_eq!(k, "a");
        // Added while processing: held back until done.
        q.add("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "b");
        q.done("b");
        assert!(q.is_empty());
        q.done("a");
        assert_eq!(q.len(), 1);
        assert_eq!(q.get().await, "a");
    }
}
