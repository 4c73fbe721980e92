//! `pea status`: each process `up` started (running or not) and the nodes as the API sees them.

use anyhow::Result;

use crate::cluster::Cluster;
use crate::proc::{self, run};

pub fn status(c: &Cluster) -> Result<()> {
    if c.nodes == 0 && !c.state_dir().exists() {
        println!("cluster {}: not up", c.name);
        std::process::exit(3);
    }
    println!(
        "cluster {}: {} node(s), state {}",
        c.name,
        c.nodes,
        c.state_dir().display()
    );
    let mut all = true;
    for s in c.services() {
        let pid = proc::read_pid(&c.pid_file(&s));
        let state = match pid {
            Some(p) if proc::alive(p) => format!("running (pid {p})"),
            Some(p) => {
                all = false;
                format!("NOT running (was pid {p})")
            }
            None => {
                all = false;
                "not started".into()
            }
        };
        println!("  {s:<24} {state}");
    }
    let kc = c.host_kubeconfig().display().to_string();
    match run(
        "kubectl",
        &["--kubeconfig", &kc, "get", "nodes", "-o", "wide"],
    ) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            all = false;
            println!("  the API through {kc}: {e:#}");
        }
    }
    println!("KUBECONFIG={kc}");
    if !all {
        std::process::exit(2);
    }
    Ok(())
}
