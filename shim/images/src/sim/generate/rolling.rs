//! Long-running services with rolling updates. Each service runs replicas of its current tag
//! (restarts and scale-ups start more, with Zipf popularity over services); a release makes a
//! new tag that shares every layer with the previous one but its top (app) layer, and every
//! ~5th release its dependency layer too; the rollout starts the new tag's replicas within
//! minutes while the old ones drain. One release in twenty is rolled back to the previous tag.
//! Pods of a rollout run about 1 h, other starts (restarts, jobs, scale-ups) about 10 min, so
//! the images of quiet services go idle between uses.

use super::{Builder, Rng, Zipf, MIB};
use crate::sim::trace::Trace;

const BASES: usize = 3;
const RUNTIMES: usize = 6;
const SERVICES: usize = 80;
const MEAN_START_GAP_SECS: f64 = 30.0;
const MEAN_RELEASE_GAP_SECS: f64 = 12.0 * 3600.0;

struct Service {
    runtime: usize,
    deps: (u32, u64),
    release: u32,
    previous: Option<String>,
    current: String,
    replicas: usize,
}

pub fn generate(seed: u64, events: usize) -> Trace {
    let mut rng = Rng(seed ^ 0x5011_1119);
    let mut b = Builder::default();
    let bases: Vec<(String, u64)> = (0..BASES)
        .map(|i| (format!("os{i}"), rng.log_uniform(30.0 * MIB, 100.0 * MIB)))
        .collect();
    let runtimes: Vec<Vec<(String, u64)>> = (0..RUNTIMES)
        .map(|i| {
            vec![
                bases[i % BASES].clone(),
                (format!("rt{i}"), rng.log_uniform(50.0 * MIB, 200.0 * MIB)),
            ]
        })
        .collect();
    let layers_of = |s: usize, svc: &Service, app: u64| {
        let mut l = runtimes[svc.runtime].clone();
        l.push((format!("svc{s}-deps{}", svc.deps.0), svc.deps.1));
        l.push((format!("svc{s}-app{}", svc.release), app));
        l
    };
    let pop = Zipf::new(SERVICES, 1.0);
    let mut services: Vec<Service> = (0..SERVICES)
        .map(|s| {
            let svc = Service {
                runtime: rng.range(0, RUNTIMES - 1),
                deps: (0, rng.log_uniform(20.0 * MIB, 200.0 * MIB)),
                release: 0,
                previous: None,
                current: format!("svc{s}:r0"),
                replicas: 1 + 12 / (s + 4),
            };
            let app = rng.log_uniform(5.0 * MIB, 60.0 * MIB);
            b.image(&svc.current, layers_of(s, &svc, app));
            svc
        })
        .collect();
    // Initial replicas.
    // Initial replicas, the node filling up over the first hours.
    for svc in &services {
        let at = rng.unit() * 6.0 * 3600.0;
        for r in 0..svc.replicas {
            b.start(at + r as f64, &svc.current, rng.exp(3600.0));
        }
    }
    let mut t = 300.0;
    let mut next_release = rng.exp(MEAN_RELEASE_GAP_SECS / SERVICES as f64);
    while b.len() < events {
        t += rng.exp(MEAN_START_GAP_SECS);
        while next_release < t {
            let s = rng.range(0, SERVICES - 1);
            let svc = &mut services[s];
            let target = match (&svc.previous, rng.chance(0.05)) {
                (Some(prev), true) => prev.clone(),
                _ => {
                    svc.release += 1;
                    if rng.chance(0.2) {
                        svc.deps = (svc.deps.0 + 1, rng.log_uniform(20.0 * MIB, 200.0 * MIB));
                    }
                    let name = format!("svc{s}:r{}", svc.release);
                    let app = rng.log_uniform(5.0 * MIB, 60.0 * MIB);
                    b.image(&name, layers_of(s, svc, app));
                    name
                }
            };
            svc.previous = Some(std::mem::replace(&mut svc.current, target));
            let mut at = next_release;
            for _ in 0..svc.replicas {
                at += 20.0 + rng.exp(40.0);
                b.start(at, &svc.current, rng.exp(3600.0));
            }
            next_release += rng.exp(MEAN_RELEASE_GAP_SECS / SERVICES as f64);
        }
        let svc = &services[pop.sample(&mut rng)];
        b.start(t, &svc.current, rng.exp(600.0));
    }
    b.finish(events)
}
