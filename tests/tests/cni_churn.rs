//! 200 ADD/DEL cycles through pea-cni leave nothing behind: no links, addresses, routes, leases
//! or nft rules beyond what the node had after its first pod. A resident pod stays attached
//! throughout, so the churn runs the steady-state path (masquerade rule already installed) and
//! must not disturb it; then 50 more cycles on the empty node install and remove the masquerade
//! table each time. Bounded in count and time.

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
/// Cycles on a node with no other pod (first and last pod each time).
const EMPTY_NODE_CYCLES: usize = 50;
const TIME_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, PartialEq)]
struct Snapshot {
    links: Vec<String>,
    bridge_addrs: Vec<String>,
    leases: Vec<String>,
    nft_rules: usize,
    nft_tables: Vec<String>,
    node_routes: String,
    pod_links: Vec<String>,
    pod_addrs: String,
    pod_routes: String,
    resident_addrs: String,
    resident_routes: String,
}

#[test]
fn two_hundred_add_del_cycles_leak_nothing() -> Result<()> {
    require_root();
    require_program("nsenter");
    require_program("nft");
    require_program("/bin/busybox");
    let node = Netns::new("node")?;
    let pod = Netns::new("pod")?;
    let resident = Netns::new("pod")?;
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
        // IPv4 only: the kernel's IPv6 link-local addresses and routes come and go with DAD on
        // their own schedule; this network is IPv4.
        let json =
            |ns: &Netns, args: &[&str]| -> Result<String> { Ok(ns.ip_json(args)?.to_string()) };
        Ok(Snapshot {
            links,
            bridge_addrs: node.addrs("cni0")?,
            leases,
            nft_rules: node.nft_rule_count()?,
            nft_tables: node.nft_tables()?,
            node_routes: json(&node, &["-4", "route", "show", "table", "all"])?,
            pod_links: pod.links()?,
            pod_addrs: json(&pod, &["-4", "addr", "show"])?,
            pod_routes: json(&pod, &["-4", "route", "show", "table", "all"])?,
            resident_addrs: json(&resident, &["-4", "addr", "show"])?,
            resident_routes: json(&resident, &["-4", "route", "show", "table", "all"])?,
        })
    };
    let path: PathBuf = pod.path();
    let ns = path.display().to_string();
    // The resident pod stays for the whole run: the bridge and the masquerade rule exist before
    // the churn starts, and every churned ADD takes the steady-state path.
    let r = net.add("resident", &resident.path(), "eth0", &Value::Null)?;
    let resident_ip = result_ip(&r).expect("an address");
    let baseline = snap()?;
    assert_eq!(baseline.links.len(), 3, "{baseline:?}"); // cni0, lo, the resident's veth
    assert_eq!(baseline.nft_tables, vec!["ip pea-cni-churn".to_string()]);
    assert_eq!(baseline.nft_rules, 1, "{baseline:?}");
    assert!(
        baseline.resident_addrs.contains(&resident_ip),
        "{baseline:?}"
    );

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
    assert!(
        resident.ping("10.244.9.1")?,
        "the resident pod lost its gateway"
    );
    net.del(
        "resident",
        &resident.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(node.nft_tables()?.is_empty(), "{:?}", node.nft_tables()?);
    let empty = snap()?;
    // Then churn on the empty node: every cycle is a first and last pod, installing and removing
    // the masquerade table; the node must end as empty as it was.
    for i in 0..EMPTY_NODE_CYCLES {
        assert!(
            start.elapsed() < TIME_LIMIT,
            "empty-node churn exceeded {TIME_LIMIT:?} after {i} cycles"
        );
        let id = format!("first{i}");
        net.add(&id, &path, "eth0", &Value::Null)?;
        assert_eq!(node.nft_tables()?, vec!["ip pea-cni-churn".to_string()]);
        net.del(&id, &ns, "eth0", &Value::Null)?;
    }
    assert_eq!(snap()?, empty);
    assert_eq!(empty.nft_rules, 0, "{empty:?}");
    // Round-robin allocation walked the range instead of reusing one address.
    assert!(
        addresses.len() > 100,
        "{} distinct addresses",
        addresses.len()
    );
    Ok(())
}

/// ADDs killed (SIGKILL) at varying points never leave a half state that breaks later ADDs:
/// retried ADDs succeed, no address is handed out twice, and GC with the runtime's list of valid
/// attachments removes everything the killed ones left (leases, veths, masquerade table).
#[test]
fn killed_adds_are_repaired_by_retry_and_gc() -> Result<()> {
    use std::{io::Write, process::Stdio};

    use pea_tests::netlab_cni::Attachment;
    require_root();
    require_program("nsenter");
    require_program("nft");
    let node = Netns::new("node")?;
    let data = tempfile::tempdir()?;
    let conf = json!({
        "type": "pea-cni", "bridge": "cni0", "mtu": 1450, "clusterCIDR": "10.244.0.0/16",
        "ipam": {"subnet": "10.244.10.0/24", "dataDir": data.path()}
    });
    let dir = pea_cni_dir()?;
    let net = ConfList::new(
        "crash",
        "1.1.0",
        vec![conf.clone()],
        vec![dir.clone()],
        node.path(),
    );
    let pods: Vec<Netns> = (0..16).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    let mut stdin_conf = conf.clone();
    stdin_conf["name"] = json!("crash");
    stdin_conf["cniVersion"] = json!("1.1.0");
    for (i, p) in pods.iter().enumerate() {
        let mut child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", node.path().display()))
            .arg(dir.join("pea-cni"))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("killed{i}"))
            .env("CNI_NETNS", p.path())
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin_conf.to_string().as_bytes())?;
        // Spread the kills over 0-40 ms: an ADD that installs the masquerade table takes ~30 ms,
        // later ones ~7 ms, so kills land before, during and after each step.
        std::thread::sleep(Duration::from_micros(2500 * (i as u64 % 16)));
        let _ = child.kill();
        child.wait()?;
    }
    let killed_leases = std::fs::read_dir(data.path().join("crash"))
        .map(|d| d.count())
        .unwrap_or(0);
    eprintln!(
        "after {} killed ADDs: {} entries in the lease dir, links on the node: {:?}",
        pods.len(),
        killed_leases,
        node.links()?
    );
    // Half the killed attachments are retried by the runtime and must come up whole.
    let mut ips = std::collections::BTreeSet::new();
    for (i, p) in pods.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let r = net.add(&format!("killed{i}"), &p.path(), "eth0", &Value::Null)?;
        assert!(
            ips.insert(result_ip(&r).unwrap()),
            "address handed out twice: {r}"
        );
        net.check(&format!("killed{i}"), "eth0", &Value::Null)?;
    }
    let valid: Vec<Attachment> = (0..pods.len())
        .filter(|i| i % 2 == 0)
        .map(|i| Attachment {
            container_id: format!("killed{i}"),
            ifname: "eth0".into(),
        })
        .collect();
    net.gc(&valid)?;
    let leases = || -> Result<usize> {
        Ok(std::fs::read_dir(data.path().join("crash"))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok()
            })
            .count())
    };
    let veths = || -> Result<usize> {
        Ok(node
            .links()?
            .iter()
            .filter(|l| l.starts_with("veth"))
            .count())
    };
    assert_eq!(leases()?, valid.len());
    assert_eq!(veths()?, valid.len(), "{:?}", node.links()?);
    for (i, p) in pods.iter().enumerate() {
        let want = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(p.links()?.len(), want, "pod {i}: {:?}", p.links()?);
    }
    net.gc(&[])?;
    assert_eq!(leases()?, 0);
    assert_eq!(veths()?, 0);
    assert!(node.nft_tables()?.is_empty(), "{:?}", node.nft_tables()?);
    Ok(())
}
