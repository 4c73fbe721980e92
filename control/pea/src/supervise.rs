//! `pea supervise --name C`: restarts the processes of a `pea up` cluster when they die, as
//! systemd's `Restart=always` does for `pea install`'s units (and for k3s's and kind's nodes).
//! `pea up` starts it last, once the cluster is whole; `pea down` stops it first.
//!
//! A dead service (its pid file names a process that is gone) is started again exactly as
//! `pea up` started it (the spec `proc::spawn` wrote beside the pid file: argv, environment,
//! namespace, log). Not restarted: a service without a pid file or spec, and one whose network
//! namespace is gone (its node was removed). Restarts that keep failing back off from 1 s to
//! 30 s, as systemd's RestartSec with a burst limit would.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cluster::Cluster;
use crate::proc;

/// This service's own name among the cluster's pid files.
pub const SERVICE: &str = "supervise";
/// How often the services are looked at.
const PERIOD: Duration = Duration::from_millis(500);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that stays up this long is healthy again: its next restart is immediate.
const HEALTHY_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Restarts {
    count: u32,
    last: Instant,
    backoff: Duration,
}

pub fn supervise(c: &Cluster) -> Result<()> {
    let mut restarts: BTreeMap<String, Restarts> = BTreeMap::new();
    println!("pea supervise: watching cluster {}", c.name);
    loop {
        // Until `pea down` stops it, or the cluster's run dir is gone.
        if !c.run_dir().exists() {
            println!("pea supervise: cluster {} is gone", c.name);
            return Ok(());
        }
        for s in c.services().into_iter().filter(|s| s != SERVICE) {
            let pid_file = c.pid_file(&s);
            let Some(pid) = proc::read_pid(&pid_file) else {
                continue;
            };
            if proc::alive(pid) {
                continue;
            }
            let spec = proc::spawn_file(&pid_file);
            let Ok(raw) = std::fs::read(&spec) else {
                continue;
            };
            let netns = serde_json::from_slice::<proc::Spawned>(&raw)
                .ok()
                .and_then(|s| s.netns);
            if netns.as_ref().is_some_and(|ns| !ns.exists()) {
                continue;
            }
            let r = restarts.entry(s.clone()).or_insert(Restarts {
                count: 0,
                last: Instant::now() - MAX_BACKOFF,
                backoff: FIRST_BACKOFF,
            });
            if r.last.elapsed() < r.backoff {
                continue;
            }
            r.backoff = if r.last.elapsed() < HEALTHY_AFTER + r.backoff {
                (r.backoff * 2).min(MAX_BACKOFF)
            } else {
                FIRST_BACKOFF
            };
            r.last = Instant::now();
            r.count += 1;
            match proc::respawn(&pid_file) {
                Ok(new) => println!(
                    "pea supervise: {s} (pid {pid}) was dead; started again as pid {new} (restart {})",
                    r.count
                ),
                Err(e) => eprintln!("pea supervise: {s} (pid {pid}) was dead; starting it again failed: {e:#}"),
            }
            let _ = std::fs::write(
                c.run_dir().join(format!("{s}.restarts")),
                r.count.to_string(),
            );
        }
        std::thread::sleep(PERIOD);
    }
}
