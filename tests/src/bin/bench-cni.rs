//! bench-cni: pea-cni against Debian's reference `bridge` + `host-local` plugins on the same
//! configuration, side by side in one run. Each subject gets its own node namespace (made here,
//! removed at the end); plugins are spawned from a thread that has entered it, so both are timed
//! the way a runtime on that node would run them.
//!
//! Measured: ADD, DEL and ADD+DEL of one pod while another pod is resident (steady state), the
//! same on an empty node (first/last pod: bridge and masquerade set-up included), and the wall
//! time to ADD then DEL 100 pods. Medians and ratios through `pea_tests::bench`; nothing asserted.
//!
//! Run: `cargo run --release -p pea-tests --bin bench-cni -- [--cycles 40] [--pods 100] [--rounds 3]`

use std::{
    fs::File,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use clap::Parser;
use nix::sched::CloneFlags;
use pea_tests::{
    bench::{table, Samples},
    netlab::{run, Netns},
    netlab_cni::{pea_cni_dir, ConfList, DEBIAN_CNI_DIR},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
struct Args {
    /// ADD/DEL cycles per subject and scenario.
    #[arg(long, default_value_t = 40)]
    cycles: usize,
    /// Pods in the churn scenario.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Churn rounds per subject.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Give up (with what was measured so far) after this many seconds.
    #[arg(long, default_value_t = 600)]
    time_limit: u64,
}

const PEA: &str = "pea-cni";
const REF: &str = "bridge+host-local";

struct Subject {
    label: &'static str,
    node: Netns,
    _data: tempfile::TempDir,
    net: ConfList,
}

fn subject(label: &'static str) -> Result<Subject> {
    let node = Netns::new("bench")?;
    let data = tempfile::tempdir()?;
    // The same settings for both: bridge, gateway, masquerade, hairpin, MTU, one /24.
    let ipam = json!({"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": data.path()});
    let (plugin, dirs) = if label == PEA {
        (
            json!({"type": "pea-cni", "bridge": "cni0", "isGateway": true, "ipMasq": true,
                   "hairpinMode": true, "mtu": 1450, "clusterCIDR": "10.244.0.0/16", "ipam": ipam}),
            vec![pea_cni_dir()?],
        )
    } else {
        (
            json!({"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
                   "hairpinMode": true, "mtu": 1450, "ipam": ipam}),
            vec![PathBuf::from(DEBIAN_CNI_DIR)],
        )
    };
    // An empty node path: plugins run in the namespace of the thread that calls them.
    let net = ConfList::new("bench", "1.0.0", vec![plugin], dirs, PathBuf::new());
    Ok(Subject {
        label,
        node,
        _data: data,
        net,
    })
}

/// Runs `f` on a thread inside `ns` (setns affects only that thread).
fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(ns.path())?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
    })
}

struct Cycle {
    add: Samples,
    del: Samples,
    both: Samples,
}

fn cycles(
    s: &Subject,
    pod: &Netns,
    n: usize,
    resident: Option<&Netns>,
    deadline: Instant,
) -> Result<Cycle> {
    let mut c = Cycle {
        add: Samples::new(s.label),
        del: Samples::new(s.label),
        both: Samples::new(s.label),
    };
    let path = pod.path();
    let ns = path.display().to_string();
    in_netns(&s.node, || {
        if let Some(r) = resident {
            s.net.add("resident", &r.path(), "eth0", &Value::Null)?;
        }
        for i in 0..n {
            if Instant::now() > deadline {
                break;
            }
            let id = format!("cyc{i}");
            let t0 = Instant::now();
            s.net.add(&id, &path, "eth0", &Value::Null)?;
            let t1 = Instant::now();
            s.net.del(&id, &ns, "eth0", &Value::Null)?;
            let t2 = Instant::now();
            c.add.push(t1 - t0);
            c.del.push(t2 - t1);
            c.both.push(t2 - t0);
        }
        if let Some(r) = resident {
            s.net.del(
                "resident",
                &r.path().display().to_string(),
                "eth0",
                &Value::Null,
            )?;
        }
        Ok(())
    })?;
    Ok(c)
}

/// The kernel's share of DEL: deleting a veth whose peer sits in a pod namespace, timed around
/// a spawned `ip link del` (so it includes one small process start, like a plugin call does).
fn veth_delete_floor(s: &Subject, pod: &Netns, n: usize, deadline: Instant) -> Result<Samples> {
    let mut floor = Samples::new("floor: `ip link del` of a veth");
    floor.note = Some("kernel veth teardown + one process start".into());
    in_netns(&s.node, || {
        for _ in 0..n {
            if Instant::now() > deadline {
                break;
            }
            run(
                "ip",
                &[
                    "link", "add", "vfloor0", "type", "veth", "peer", "name", "eth0", "netns",
                    &pod.name,
                ],
            )?;
            run("ip", &["link", "set", "vfloor0", "up"])?;
            let t0 = Instant::now();
            run("ip", &["link", "del", "vfloor0"])?;
            floor.push(t0.elapsed());
        }
        Ok(())
    })?;
    Ok(floor)
}

fn churn(
    s: &Subject,
    pods: &[Netns],
    rounds: usize,
    deadline: Instant,
) -> Result<(Samples, Samples)> {
    let mut add = Samples::new(s.label);
    let mut del = Samples::new(s.label);
    in_netns(&s.node, || {
        for round in 0..rounds {
            if Instant::now() > deadline {
                break;
            }
            let t0 = Instant::now();
            for (i, p) in pods.iter().enumerate() {
                s.net
                    .add(&format!("r{round}p{i}"), &p.path(), "eth0", &Value::Null)?;
            }
            let t1 = Instant::now();
            for (i, p) in pods.iter().enumerate() {
                s.net.del(
                    &format!("r{round}p{i}"),
                    &p.path().display().to_string(),
                    "eth0",
                    &Value::Null,
                )?;
            }
            add.push(t1 - t0);
            del.push(t1.elapsed());
        }
        Ok(())
    })?;
    Ok((add, del))
}

fn main() -> Result<()> {
    let args = Args::parse();
    require_root();
    require_program("nft");
    require_program("iptables");
    if args.pods > 250 {
        bail!("--pods must be at most 250 (one /24 per node)");
    }
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    eprintln!("building pea-cni (release)…");
    pea_cni_dir()?;
    let subjects = [subject(PEA)?, subject(REF)?];
    let pod = Netns::new("bpod")?;
    let resident = Netns::new("bres")?;
    eprintln!("creating {} pod namespaces…", args.pods);
    let pods: Vec<Netns> = (0..args.pods)
        .map(|_| Netns::new("bpod"))
        .collect::<Result<_>>()?;

    // Warm up each subject once (page cache, bridge creation) before timing.
    for s in &subjects {
        cycles(s, &pod, 2, None, deadline)?;
    }
    let mut steady = Vec::new();
    let mut empty = Vec::new();
    // Alternate subjects in blocks so drift in the machine's load hits both alike.
    for s in &subjects {
        steady.push(cycles(s, &pod, args.cycles, Some(&resident), deadline)?);
    }
    for s in &subjects {
        empty.push(cycles(s, &pod, args.cycles, None, deadline)?);
    }
    let floor = veth_delete_floor(&subjects[0], &pod, args.cycles, deadline)?;
    let mut churn_add = Vec::new();
    let mut churn_del = Vec::new();
    for s in &subjects {
        let (a, d) = churn(s, &pods, args.rounds, deadline)?;
        churn_add.push(a);
        churn_del.push(d);
    }

    let pick =
        |v: &[Cycle], f: fn(&Cycle) -> &Samples| v.iter().map(|c| f(c).clone()).collect::<Vec<_>>();
    println!("## pea-cni vs Debian bridge + host-local (containernetworking-plugins 1.1.1)\n");
    println!("Same config for both: bridge cni0, isGateway, ipMasq, hairpinMode, MTU 1450, host-local /24; plugins spawned from a thread inside the node namespace.\n");
    print!(
        "{}",
        table(
            "ADD, one pod resident (steady state)",
            &pick(&steady, |c| &c.add),
            REF
        )
    );
    println!();
    print!(
        "{}",
        table(
            "DEL, one pod resident (steady state)",
            &[pick(&steady, |c| &c.del), vec![floor]].concat(),
            REF
        )
    );
    println!();
    print!(
        "{}",
        table(
            "ADD+DEL, one pod resident (steady state)",
            &pick(&steady, |c| &c.both),
            REF
        )
    );
    println!();
    print!(
        "{}",
        table(
            "ADD+DEL on an empty node (first/last pod: masquerade set-up and removal)",
            &pick(&empty, |c| &c.both),
            REF
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{}-pod churn: ADD all (wall time per round)", args.pods),
            &churn_add,
            REF
        )
    );
    println!();
    print!(
        "{}",
        table(
            &format!("{}-pod churn: DEL all (wall time per round)", args.pods),
            &churn_del,
            REF
        )
    );
    if Instant::now() > deadline {
        println!("\n(time limit reached: fewer samples than asked)");
    }
    Ok(())
}
