//! pea-shim's own image garbage collection, for pea's GC policies on a live node.
//!
//! The kubelet garbage-collects images over CRI, which sees whole images only; pea's policies
//! (`layer-aware`, `size-aware`, `gdsf`, `learned`) decide per layer and read the store's use
//! history, so they run here, where the layers are. With `--image-gc-policy NAME` a task runs
//! [`pea_images::Store::gc`] on the image filesystem every `--image-gc-period`; the kubelet's own
//! image GC is then turned off with `imageGCHighThresholdPercent: 100` (kubelet's documented
//! switch). The default `none` removes nothing: the kubelet stays in charge, as before.
//!
//! Never removed: images of any container the shim has a record of (running or not), the pause
//! image (also pinned when pulled), images younger than `--image-minimum-gc-age`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pea_godur::parse as parse_duration;
use pea_images::gc::{GcPolicy, POLICY_NAMES};
use pea_images::store::{DiskSource, GcReport};

use crate::error::ShimError;
use crate::{Shim, ShimConfig};

/// `--image-gc-policy`'s value that leaves image GC to the kubelet.
pub const NO_POLICY: &str = "none";

/// A validated image GC setting of the shim.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGc {
    /// The policy's name as given (`learned`, `gdsf`, ...).
    pub name: String,
    pub policy: GcPolicy,
    pub period: Duration,
}

impl ImageGc {
    /// Checks every image GC field (whatever the policy, so a bad value never waits for the day
    /// someone turns GC on) and returns the setting, or None for `none`. Errors name the flag.
    pub fn from_config(cfg: &ShimConfig) -> Result<Option<Self>, ShimError> {
        let high = cfg.image_gc_high_threshold_percent;
        let low = cfg.image_gc_low_threshold_percent;
        if high > 100 {
            return Err(ShimError::invalid(format!(
                "--image-gc-high-threshold-percent {high}: must be at most 100"
            )));
        }
        if low >= high {
            return Err(ShimError::invalid(format!(
                "--image-gc-low-threshold-percent {low}: must be below \
                 --image-gc-high-threshold-percent {high}"
            )));
        }
        let min_age = parse_duration(&cfg.image_minimum_gc_age)
            .map_err(|e| ShimError::invalid(format!("--image-minimum-gc-age: {e}")))?;
        let period = parse_duration(&cfg.image_gc_period)
            .map_err(|e| ShimError::invalid(format!("--image-gc-period: {e}")))?;
        if period.is_zero() {
            return Err(ShimError::invalid(format!(
                "--image-gc-period {:?}: must be longer than zero",
                cfg.image_gc_period
            )));
        }
        let name = cfg.image_gc_policy.as_str();
        if name == NO_POLICY {
            return Ok(None);
        }
        let base = GcPolicy {
            high_threshold_percent: high,
            low_threshold_percent: low,
            min_age_secs: min_age.as_secs(),
            ..GcPolicy::default()
        };
        let policy = GcPolicy::named(name, &base).ok_or_else(|| {
            ShimError::invalid(format!(
                "--image-gc-policy {name:?}: unknown policy (known: {NO_POLICY}, {})",
                POLICY_NAMES.join(", ")
            ))
        })?;
        policy
            .validate()
            .map_err(|e| ShimError::invalid(format!("--image-gc-policy {name:?}: {e}")))?;
        Ok(Some(Self {
            name: name.to_string(),
            policy,
            period,
        }))
    }
}

/// Totals of the shim's image GC runs, for `/metrics`.
#[derive(Debug, Default)]
pub struct ImageGcCounters {
    runs: AtomicU64,
    failures: AtomicU64,
    images_removed: AtomicU64,
    bytes_freed: AtomicU64,
    /// Microseconds spent in GC runs, summed.
    duration_us: AtomicU64,
}

impl ImageGcCounters {
    /// Prometheus text for these counters (policy as a label).
    pub fn render(&self, policy: &str) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "pea_shim_image_gc_runs_total",
                "Image GC runs of the shim's own policy.",
                self.runs.load(Ordering::Relaxed),
            ),
            (
                "pea_shim_image_gc_failures_total",
                "Image GC runs that failed.",
                self.failures.load(Ordering::Relaxed),
            ),
            (
                "pea_shim_image_gc_images_removed_total",
                "Images the shim's GC removed.",
                self.images_removed.load(Ordering::Relaxed),
            ),
            (
                "pea_shim_image_gc_freed_bytes_total",
                "Bytes the shim's GC freed (snapshots and blobs pruned).",
                self.bytes_freed.load(Ordering::Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{policy=\"{policy}\"}} {v}\n"
            ));
        }
        let secs = self.duration_us.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!(
            "# HELP pea_shim_image_gc_duration_seconds_total Time spent in image GC runs.\n\
             # TYPE pea_shim_image_gc_duration_seconds_total counter\n\
             pea_shim_image_gc_duration_seconds_total{{policy=\"{policy}\"}} {secs}\n"
        ));
        out
    }
}

impl Shim {
    /// Image keys GC must keep: the image of every container record (running or not) and the
    /// pause image. Only keys the store still knows (the store refuses unknown ones).
    pub fn images_in_use(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .containers()
            .into_iter()
            .map(|c| c.image_id)
            .chain(std::iter::once(self.cfg.pause_image.clone()))
            .filter(|k| self.images.find(k).is_ok())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// One GC run with `gc`'s policy over the image filesystem (blocking: store I/O).
    pub fn collect_images(&self, gc: &ImageGc) -> Result<GcReport, ShimError> {
        let in_use = self.images_in_use();
        Ok(self
            .images
            .gc(&gc.policy, DiskSource::Filesystem, &in_use)?)
    }
}

/// Runs GC every `gc.period` until the process ends; each run is logged and counted.
pub async fn run(shim: Arc<Shim>, gc: ImageGc, counters: Arc<ImageGcCounters>) {
    let mut tick = tokio::time::interval(gc.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(policy = %gc.name, period = ?gc.period, high = gc.policy.high_threshold_percent,
        low = gc.policy.low_threshold_percent, min_age_secs = gc.policy.min_age_secs,
        "pea-shim runs image garbage collection itself");
    loop {
        tick.tick().await;
        let started = Instant::now();
        let (s, g) = (shim.clone(), gc.clone());
        let result = tokio::task::spawn_blocking(move || s.collect_images(&g))
            .await
            .map_err(|e| ShimError::Internal(format!("image gc task: {e}")))
            .and_then(|r| r);
        let took = started.elapsed();
        counters.runs.fetch_add(1, Ordering::Relaxed);
        counters
            .duration_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(report) => {
                let removed = report.plan.removals.len() as u64;
                counters
                    .images_removed
                    .fetch_add(removed, Ordering::Relaxed);
                counters
                    .bytes_freed
                    .fetch_add(report.pruned.bytes, Ordering::Relaxed);
                if report.plan.bytes_to_free > 0 || removed > 0 {
                    tracing::info!(policy = %gc.name, usage_percent = report.plan.usage_percent,
                        bytes_to_free = report.plan.bytes_to_free, images_removed = removed,
                        bytes_freed = report.pruned.bytes, duration_ms = took.as_millis() as u64,
                        "image garbage collection run");
                } else {
                    tracing::debug!(policy = %gc.name, usage_percent = report.plan.usage_percent,
                        duration_ms = took.as_millis() as u64,
                        "image garbage collection run: below the high threshold");
                }
                if let Some(short) = report.plan.shortfall {
                    tracing::warn!(policy = %gc.name, shortfall_bytes = short,
                        "image garbage collection could not free enough: the rest is in use, \
                         pinned or younger than the minimum age");
                }
            }
            Err(e) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(policy = %gc.name, error = %e, "image garbage collection failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(policy: &str, high: u8, low: u8) -> ShimConfig {
        ShimConfig {
            image_gc_policy: policy.into(),
            image_gc_high_threshold_percent: high,
            image_gc_low_threshold_percent: low,
            ..ShimConfig::default()
        }
    }

    #[test]
    fn none_by_default_and_named_policies_take_the_flags() {
        assert_eq!(ImageGc::from_config(&ShimConfig::default()).unwrap(), None);
        let gc = ImageGc::from_config(&cfg("learned", 70, 50))
            .unwrap()
            .unwrap();
        assert_eq!(gc.policy.high_threshold_percent, 70);
        assert_eq!(gc.policy.low_threshold_percent, 50);
        assert_eq!(gc.policy.min_age_secs, 120);
        assert_eq!(gc.period, Duration::from_secs(300));
        assert!(gc.policy.order.per_layer());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = |c: ShimConfig| ImageGc::from_config(&c).unwrap_err().to_string();
        assert!(e(cfg("lru-ish", 85, 80)).contains("--image-gc-policy \"lru-ish\": unknown"));
        assert!(e(cfg("none", 101, 80)).contains("--image-gc-high-threshold-percent 101"));
        assert!(e(cfg("gdsf", 80, 80)).contains("--image-gc-low-threshold-percent 80"));
        let mut c = cfg("gdsf", 85, 80);
        c.image_gc_period = "0s".into();
        assert!(e(c).contains("--image-gc-period"));
        let mut c = cfg("gdsf", 85, 80);
        c.image_minimum_gc_age = "2 minutes".into();
        assert!(e(c).contains("--image-minimum-gc-age"));
    }

    #[test]
    fn durations_in_go_syntax() {
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "m", "5d", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
