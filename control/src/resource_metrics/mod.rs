//! The resource metrics API (`metrics.k8s.io/v1beta1`: NodeMetrics, PodMetrics), served by
//! pea-control itself the way metrics-server would behind API aggregation: [`scraper`] polls
//! every Ready node's kubelet `/metrics/resource` each resolution (15 s by default), [`storage`]
//! keeps the last two samples and derives usage rates, [`serve`] answers get/list requests
//! (`kubectl top`, the HPA controller). Nodes and pods without two samples are absent.

pub mod prom;
pub mod scraper;
pub mod serve;
pub mod storage;

use std::sync::Mutex;
use std::time::Duration;

/// The API group served here.
pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";

/// Shared between the scraper (writes) and the API (reads).
#[derive(Debug)]
pub struct ResourceMetrics {
    pub resolution: Duration,
    storage: Mutex<storage::Storage>,
}

impl Default for ResourceMetrics {
    fn default() -> Self {
        Self::new(Duration::from_secs(15))
    }
}

impl ResourceMetrics {
    pub fn new(resolution: Duration) -> Self {
        Self {
            resolution,
            storage: Mutex::new(storage::Storage::default()),
        }
    }

    pub fn storage(&self) -> std::sync::MutexGuard<'_, storage::Storage> {
        self.storage.lock().unwrap_or_else(|p| p.into_inner())
    }
}
