//! Batch: bursts of one large image — an ML job on a CUDA base starts tens to a hundred short
//! tasks within minutes, then the node goes quiet or another job arrives; a few small daemons
//! start now and then. Jobs repeat with Zipf popularity, so some large images come back often.

use super::{Builder, Rng, Zipf, MIB};
use crate::sim::trace::Trace;

const CUDA_BASES: usize = 2;
const FRAMEWORKS: usize = 4;
const JOBS: usize = 14;
const DAEMONS: usize = 10;

pub fn generate(seed: u64, events: usize) -> Trace {
    let mut rng = Rng(seed ^ 0xBA7C_BA7C);
    let mut b = Builder::default();
    let bases: Vec<(String, u64)> = (0..CUDA_BASES)
        .map(|i| {
            (
                format!("cuda{i}"),
                rng.log_uniform(900.0 * MIB, 1500.0 * MIB),
            )
        })
        .collect();
    let frameworks: Vec<Vec<(String, u64)>> = (0..FRAMEWORKS)
        .map(|i| {
            vec![
                bases[i % CUDA_BASES].clone(),
                (format!("fw{i}"), rng.log_uniform(300.0 * MIB, 1000.0 * MIB)),
            ]
        })
        .collect();
    let jobs: Vec<String> = (0..JOBS)
        .map(|i| {
            let name = format!("job-{i}");
            let mut l = frameworks[rng.range(0, FRAMEWORKS - 1)].clone();
            l.push((
                format!("{name}-code"),
                rng.log_uniform(20.0 * MIB, 900.0 * MIB),
            ));
            b.image(&name, l);
            name
        })
        .collect();
    let daemons: Vec<String> = (0..DAEMONS)
        .map(|i| {
            let name = format!("daemon-{i}");
            b.image(
                &name,
                vec![
                    ("alpine".to_string(), 8 * MIB as u64),
                    (
                        format!("{name}-bin"),
                        rng.log_uniform(10.0 * MIB, 150.0 * MIB),
                    ),
                ],
            );
            name
        })
        .collect();
    let job_pick = Zipf::new(JOBS, 0.9);
    let daemon_pick = Zipf::new(DAEMONS, 1.0);
    let mut t = 0.0;
    while b.len() < events {
        let job = &jobs[job_pick.sample(&mut rng)];
        let tasks = rng.range(10, 120);
        let mut at = t;
        for _ in 0..tasks {
            at += rng.exp(4.0);
            b.start(at, job, (30.0 + rng.exp(180.0)).min(900.0));
        }
        // Quiet time after the burst's tasks are done; daemons start meanwhile.
        let next = at + 900.0 + rng.exp(1800.0);
        let mut d = t;
        while d < next {
            d += rng.exp(240.0);
            b.start(d, &daemons[daemon_pick.sample(&mut rng)], rng.exp(600.0));
        }
        t = next;
    }
    b.finish(events)
}
