//! 200 ADD/DEL cycles through pea-cni leave nothing behind: no links, addresses, leases or nft
//! rules beyond what the node had after its first pod. Bounded in count and time.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use pea_tests::{
    netlab::Netns,
    netlab_cni::{pea_cni_dir, result_ip, ConfList},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

const CYCLES: usize = 200;
const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq)]
struct Snapshot {
    links: Vec<String>,
    bridge_addrs: Vec<String>,
    leases: Vec<String>,
    nft_rules: usize,
    nft_tables: Vec<String>,
    pod_links: Vec<String>,
}

#[test]
fn two_hundred_add_del_cycles_leak_nothing() -> Result<()> {
    require_root();
    require_program("nsenter");
    require_program("nft");
    let node = Netns::new("node")?;
    let pod = Netns::new("pod")?;
    let data = tempfile::tempdir()?;
    let conf = json!({
        "type": "pea-cni", "bridge": "cni0", "mtu": 1450, "clusterCIDR": "10.244.0.0/16",
        "ipam": {"subnet": "10.244.9.0/24", "dataDir": data.path()}
    });
    let net = ConfList::new(
        "churn",
        "1.1.0",
        vec![conf],
        vec![pea_cni_dir()?],
        node.path(),
    );
    let snap = || -> Result<Snapshot> {
        let mut links = node.links()?;
        links.sort();
        let mut leases: Vec<String> = std::fs::read_dir(data.path().join("churn"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.') || n.starts_with(".tmp"))
            .collect();
        leases.sort();
        Ok(Snapshot {
            links,
            bridge_addrs: node.addrs("cni0")?,
            leases,
            nft_rules: node.nft_rule_count()?,
            nft_tables: node.nft_tables()?,
            pod_links: pod.links()?,
        })
    };
    let path: PathBuf = pod.path();
    let ns = path.display().to_string();
    // The first cycle creates the node-level bridge; everything after must return to this.
    net.add("warmup", &path, "eth0", &Value::Null)?;
    net.del("warmup", &ns, "eth0", &Value::Null)?;
    let baseline = snap()?;
    assert_eq!(baseline.links, vec!["cni0".to_string(), "lo".to_string()]);
    assert!(baseline.nft_tables.is_empty(), "{baseline:?}");

    let start = Instant::now();
    let mut addresses = std::collections::BTreeSet::new();
    for i in 0..CYCLES {
        assert!(
            start.elapsed() < TIME_LIMIT,
            "churn exceeded {TIME_LIMIT:?} after {i} cycles"
        );
        let id = format!("churn{i}");
        let r = net.add(&id, &path, "eth0", &Value::Null)?;
        addresses.insert(result_ip(&r).expect("an address"));
        // Every third cycle the runtime loses the namespace before DEL.
        let del_ns = if i % 3 == 0 { "" } else { ns.as_str() };
        if i % 3 == 0 {
            pod.ip(&["link", "del", "eth0"])?;
        }
        net.del(&id, del_ns, "eth0", &Value::Null)?;
    }
    let after = snap()?;
    assert_eq!(after, baseline);
    // Round-robin allocation walked the range instead of reusing one address.
    assert!(
        addresses.len() > 100,
        "{} distinct addresses",
        addresses.len()
    );
    Ok(())
}
