//! kube's ControllerExpectations (with the UID-tracking deletion half): after a controller asks
//! for N creations it does not act on the same object again until the informer has seen those N
//! pods arrive (or the creations failed), nor after deletions until the deleted pods' events
//! arrived. Without this a burst of watch events makes a controller act on a cache that does not
//! yet hold its own writes, and it over-creates. Expectations older than five minutes are
//! considered satisfied, as kube does, so a lost event cannot wedge an object forever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// kube's ExpectationsTimeout.
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    add: i64,
    del: i64,
    del_keys: HashSet<String>,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    /// Whether the controller may act on `key` now.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.map.lock().expect("expectations").get(key) {
            None => true,
            Some(e) => (e.add <= 0 && e.del <= 0) || e.since.elapsed() > TTL,
        }
    }

    pub fn expect_creations(&self, key: &str, n: usize) {
        self.map.lock().expect("expectations").insert(
            key.to_string(),
            Expected {
                add: n as i64,
                del: 0,
                del_keys: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Expects the deletion of these pods (keys `namespace/name`).
    pub fn expect_deletions(&self, key: &str, pods: &[String]) {
        self.map.lock().expect("expectations").insert(
            key.to_string(),
            Expected {
                add: 0,
                del: pods.len() as i64,
                del_keys: pods.iter().cloned().collect(),
                since: Instant::now(),
            },
        );
    }

    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.map.lock().expect("expectations").get_mut(key) {
            e.add -= 1;
        }
    }

    /// A pod's deletion was seen (or its delete call failed): counted once per pod.
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        if let Some(e) = self.map.lock().expect("expectations").get_mut(key) {
            if e.del_keys.remove(pod) {
                e.del -= 1;
            }
        }
    }

    pub fn forget(&self, key: &str) {
        self.map.lock().expect("expectations").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn creations_block_until_observed_or_expired() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));

        e.expect_creations("ns/rs", 1);
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        assert!(!e.satisfied("ns/rs"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(e.satisfied("ns/rs"), "expired expectations no longer block");
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_count_each_pod_once() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", &["ns/a".into(), "ns/b".into()]);
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/other");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
