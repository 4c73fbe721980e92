//! Synthetic traces of four kinds, each deterministic for a seed:
//!
//! - [`zipf`]: a steady mix of images with Zipf popularity sharing OS and runtime layers;
//! - [`ci`]: CI runners — every pipeline builds a fresh image on a shared toolchain and runs it
//!   a few times within minutes (then never again), beside steady tool images;
//! - [`batch`]: bursts of one large image (ML jobs on a CUDA base), then another, with small
//!   daemons in between;
//! - [`rolling`]: long-running services with rolling updates — each new tag shares all but its
//!   top layer (sometimes its dependency layer) with the previous one; old tags drain away and
//!   are occasionally rolled back to.

pub mod batch;
pub mod ci;
pub mod rolling;
pub mod zipf;

use std::collections::HashMap;

use super::trace::{Event, Trace};

pub(crate) const MIB: f64 = 1048576.0;

/// The generated trace kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TraceKind {
    Zipf,
    Ci,
    Batch,
    Rolling,
}

impl TraceKind {
    pub const ALL: [TraceKind; 4] = [
        TraceKind::Zipf,
        TraceKind::Ci,
        TraceKind::Batch,
        TraceKind::Rolling,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TraceKind::Zipf => "zipf",
            TraceKind::Ci => "ci",
            TraceKind::Batch => "batch",
            TraceKind::Rolling => "rolling",
        }
    }

    /// A trace of this kind with about `events` container starts (the Zipf kind with its
    /// defaults otherwise).
    pub fn generate(self, seed: u64, events: usize) -> Trace {
        match self {
            TraceKind::Zipf => zipf::generate(&zipf::GenSpec {
                events,
                seed,
                ..Default::default()
            }),
            TraceKind::Ci => ci::generate(seed, events),
            TraceKind::Batch => batch::generate(seed, events),
            TraceKind::Rolling => rolling::generate(seed, events),
        }
    }
}

/// splitmix64: small, fast, good enough for workloads.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    pub(crate) fn log_uniform(&mut self, lo: f64, hi: f64) -> u64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp() as u64
    }
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Samples ranks 0..n with P(k) ∝ 1/(k+1)^s.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 0..n {
            acc += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Collects images and starts, then sorts the starts into a [`Trace`].
#[derive(Debug, Default)]
pub(crate) struct Builder {
    images: HashMap<String, Vec<(String, u64)>>,
    layer_sizes: HashMap<String, u64>,
    events: Vec<Event>,
}

impl Builder {
    pub(crate) fn image(&mut self, name: &str, layers: Vec<(String, u64)>) {
        for (id, size) in &layers {
            self.layer_sizes.insert(id.clone(), *size);
        }
        self.images.insert(name.to_string(), layers);
    }

    pub(crate) fn start(&mut self, t: f64, image: &str, duration: f64) {
        debug_assert!(self.images.contains_key(image), "{image} defined first");
        self.events.push(Event {
            t: t.max(0.0) as u64,
            image: image.to_string(),
            duration: duration.max(0.0) as u64,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// The first `limit` starts in time order; images never started are dropped.
    pub(crate) fn finish(mut self, limit: usize) -> Trace {
        self.events
            .sort_by(|a, b| a.t.cmp(&b.t).then(a.image.cmp(&b.image)));
        self.events.truncate(limit);
        let used: std::collections::HashSet<&str> =
            self.events.iter().map(|e| e.image.as_str()).collect();
        self.images.retain(|k, _| used.contains(k.as_str()));
        let layers: std::collections::HashSet<&str> = self
            .images
            .values()
            .flat_map(|l| l.iter().map(|(id, _)| id.as_str()))
            .collect();
        self.layer_sizes.retain(|k, _| layers.contains(k.as_str()));
        Trace {
            events: self.events,
            images: self.images,
            layer_sizes: self.layer_sizes,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_deterministic_parses_back_and_shares_layers() {
        for kind in TraceKind::ALL {
            let a = kind.generate(7, 3000);
            let b = kind.generate(7, 3000);
            assert_eq!(a.to_jsonl(), b.to_jsonl(), "{kind:?}");
            assert_eq!(a.events.len(), 3000, "{kind:?}");
            let parsed = Trace::parse(&a.to_jsonl()).unwrap();
            assert_eq!(parsed.events, a.events);
            let refs: usize = a.images.values().map(|l| l.len()).sum();
            assert!(
                a.layer_sizes.len() < refs,
                "{kind:?}: {} layers of {refs} references",
                a.layer_sizes.len()
            );
            assert_ne!(a.to_jsonl(), kind.generate(8, 3000).to_jsonl());
        }
    }
}
