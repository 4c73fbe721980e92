//! Zipf traces: image popularity follows a Zipf law; images share layers the way real fleets
//! do — a few OS bases, runtime layers on top of them (both Zipf-popular), and small app
//! layers of their own. Sizes are log-uniform within realistic ranges.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Rng, Zipf, MIB};
use crate::sim::trace::{Event, Trace};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenSpec {
    pub images: usize,
    pub bases: usize,
    pub runtimes: usize,
    pub events: usize,
    /// Zipf exponent of image popularity.
    pub zipf_s: f64,
    pub mean_interarrival_secs: f64,
    pub mean_duration_secs: f64,
    pub seed: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        Self {
            images: 300,
            bases: 6,
            runtimes: 20,
            events: 20_000,
            zipf_s: 1.0,
            mean_interarrival_secs: 30.0,
            mean_duration_secs: 900.0,
            seed: 1,
        }
    }
}

/// Generates a trace from `spec`.
pub fn generate(spec: &GenSpec) -> Trace {
    let mut rng = Rng(spec.seed);
    let bases: Vec<Vec<(String, u64)>> = (0..spec.bases.max(1))
        .map(|b| {
            (0..rng.range(1, 3))
                .map(|l| {
                    (
                        format!("base{b}-{l}"),
                        rng.log_uniform(10.0 * MIB, 250.0 * MIB),
                    )
                })
                .collect()
        })
        .collect();
    let base_pick = Zipf::new(bases.len(), 1.0);
    let runtimes: Vec<Vec<(String, u64)>> = (0..spec.runtimes.max(1))
        .map(|r| {
            let mut layers = bases[base_pick.sample(&mut rng)].clone();
            layers.push((format!("rt{r}"), rng.log_uniform(20.0 * MIB, 200.0 * MIB)));
            layers
        })
        .collect();
    let runtime_pick = Zipf::new(runtimes.len(), 1.0);
    let mut images = HashMap::new();
    let mut layer_sizes = HashMap::new();
    let names: Vec<String> = (0..spec.images.max(1))
        .map(|i| format!("app-{i}"))
        .collect();
    for name in &names {
        let mut layers = runtimes[runtime_pick.sample(&mut rng)].clone();
        for l in 0..rng.range(1, 4) {
            layers.push((
                format!("{name}-{l}"),
                rng.log_uniform(0.5 * MIB, 80.0 * MIB),
            ));
        }
        for (id, size) in &layers {
            layer_sizes.insert(id.clone(), *size);
        }
        images.insert(name.clone(), layers);
    }
    let popularity = Zipf::new(names.len(), spec.zipf_s);
    let mut t = 0.0;
    let events = (0..spec.events)
        .map(|_| {
            t += rng.exp(spec.mean_interarrival_secs);
            Event {
                t: t as u64,
                image: names[popularity.sample(&mut rng)].clone(),
                duration: rng.exp(spec.mean_duration_secs) as u64,
            }
        })
        .collect();
    Trace {
        events,
        images,
        layer_sizes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traces_are_deterministic_share_layers_and_favour_popular_images() {
        let spec = GenSpec {
            events: 5000,
            ..GenSpec::default()
        };
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.to_jsonl(), b.to_jsonl());
        let parsed = Trace::parse(&a.to_jsonl()).unwrap();
        assert_eq!(parsed.events.len(), 5000);
        // Shared layers: far fewer distinct layers than layer references.
        let refs: usize = a.images.values().map(|l| l.len()).sum();
        assert!(
            a.layer_sizes.len() * 10 < refs * 9,
            "{} of {refs}",
            a.layer_sizes.len()
        );
        let top = a.events.iter().filter(|e| e.image == "app-0").count();
        let tail = a.events.iter().filter(|e| e.image == "app-299").count();
        assert!(top > 20 * tail.max(1), "app-0 {top}, app-299 {tail}");
    }
}
