//! CI runners: pipelines arrive at random; each builds a fresh image (the project's toolchain
//! and dependency layers, plus a new layer of its own) and starts it for a few test shards
//! within minutes — never again after. Dependency layers change every ~10 commits. Beside the
//! pipelines, steady tool images (linters, databases for tests) start with them.

use super::{Builder, Rng, Zipf, MIB};
use crate::sim::trace::Trace;

const BASES: usize = 4;
const TOOLCHAINS: usize = 12;
const TOOLS: usize = 15;
const PROJECTS: usize = 40;
const MEAN_PIPELINE_GAP_SECS: f64 = 120.0;

pub fn generate(seed: u64, events: usize) -> Trace {
    let mut rng = Rng(seed ^ 0xC1C1_C1C1);
    let mut b = Builder::default();
    let bases: Vec<Vec<(String, u64)>> = (0..BASES)
        .map(|i| {
            (0..rng.range(1, 2))
                .map(|l| {
                    (
                        format!("ci-base{i}-{l}"),
                        rng.log_uniform(30.0 * MIB, 120.0 * MIB),
                    )
                })
                .collect()
        })
        .collect();
    let base_pick = Zipf::new(BASES, 1.0);
    let toolchains: Vec<Vec<(String, u64)>> = (0..TOOLCHAINS)
        .map(|i| {
            let mut l = bases[base_pick.sample(&mut rng)].clone();
            l.push((
                format!("ci-tc{i}"),
                rng.log_uniform(60.0 * MIB, 400.0 * MIB),
            ));
            l
        })
        .collect();
    let tc_pick = Zipf::new(TOOLCHAINS, 0.8);
    let tools: Vec<String> = (0..TOOLS)
        .map(|i| {
            let name = format!("tool-{i}");
            let mut l = toolchains[tc_pick.sample(&mut rng)].clone();
            for k in 0..rng.range(1, 2) {
                l.push((
                    format!("{name}-{k}"),
                    rng.log_uniform(5.0 * MIB, 100.0 * MIB),
                ));
            }
            b.image(&name, l);
            name
        })
        .collect();
    let tool_pick = Zipf::new(TOOLS, 1.0);
    // Per project: its toolchain, current dependency layer and commit counter.
    let mut projects: Vec<(usize, u64, u64, u32)> = (0..PROJECTS)
        .map(|_| {
            (
                tc_pick.sample(&mut rng),
                rng.log_uniform(20.0 * MIB, 250.0 * MIB),
                0,
                0,
            )
        })
        .collect();
    let project_pick = Zipf::new(PROJECTS, 1.0);
    let mut t = 0.0;
    while b.len() < events {
        t += rng.exp(MEAN_PIPELINE_GAP_SECS);
        let p = project_pick.sample(&mut rng);
        let (tc, deps_size, commit, deps_gen) = &mut projects[p];
        *commit += 1;
        if rng.chance(0.1) {
            *deps_gen += 1;
            *deps_size = rng.log_uniform(20.0 * MIB, 250.0 * MIB);
        }
        let name = format!("proj{p}:c{commit}");
        let mut layers = toolchains[*tc].clone();
        layers.push((format!("proj{p}-deps{deps_gen}"), *deps_size));
        layers.push((
            format!("proj{p}-c{commit}"),
            rng.log_uniform(5.0 * MIB, 80.0 * MIB),
        ));
        b.image(&name, layers);
        let mut at = t;
        for _ in 0..rng.range(1, 6) {
            at += rng.exp(20.0);
            b.start(at, &name, 60.0 + rng.exp(300.0));
        }
        for _ in 0..rng.range(0, 2) {
            b.start(
                t + rng.exp(30.0),
                &tools[tool_pick.sample(&mut rng)],
                60.0 + rng.exp(240.0),
            );
        }
    }
    b.finish(events)
}
