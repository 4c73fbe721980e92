//! `pea status`: each process `up` started (running or not), the nodes as the API sees them and
//! the add-on Deployments' availability.

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
        // Restarts by `pea supervise`, as systemctl status shows a unit's restarts.
        let restarts = std::fs::read_to_string(c.run_dir().join(format!("{s}.restarts")))
            .map(|n| format!(", restarted {} time(s)", n.trim()))
            .unwrap_or_default();
        println!("  {s:<24} {state}{restarts}");
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
    // The add-ons are Deployments, not processes of `up`: their availability as the API says.
    let addons = run(
        "kubectl",
        &[
            "--kubeconfig",
            &kc,
            "-n",
            "kube-system",
            "get",
            "deployments",
            "pea-dns",
            "pea-ingress",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.availableReplicas}/{.spec.replicas}{\"\\n\"}{end}",
        ],
    );
    match addons {
        Ok(out) => {
            for line in out.lines() {
                let (name, counts) = line.split_once(' ').unwrap_or((line, ""));
                let (available, wanted) = counts.split_once('/').unwrap_or(("", ""));
                let ok = !available.is_empty() && available == wanted;
                all &= ok;
                let state = if ok { "available" } else { "NOT available" };
                println!("  deployment/{name:<13} {state} ({available}/{wanted})");
            }
        }
        Err(e) => {
            all = false;
            println!("  the add-on Deployments: {e:#}");
        }
    }
    println!("KUBECONFIG={kc}");
    if !all {
        std::process::exit(2);
    }
    Ok(())
}
