//! Three nodes on an underlay bridge (all namespaces the test makes), each running pea-flanneld
//! and pea-cni: pods on different nodes reach each other over VXLAN; a node that leaves has its
//! routes withdrawn everywhere; an agent restart leaves pods undisturbed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use pea_tests::{
    netlab::{veth, wait_for, Netns},
    netlab_cni::{pea_cni_dir, result_ip, ConfList},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

/// A running agent; killed on drop.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct LabNode {
    ns: Netns,
    dir: tempfile::TempDir,
    subnet: String,
    agent: Option<AgentProc>,
    net: ConfList,
}

impl LabNode {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("flanneld.json")
    }
    fn subnet_env(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }
    fn start_agent(&mut self) -> Result<()> {
        let bin = pea_cni_dir()?.join("pea-flanneld");
        let log = std::fs::File::create(self.dir.path().join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(bin)
            .arg("--config")
            .arg(self.config_path())
            .env("PEA_FLANNELD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting pea-flanneld")?;
        self.agent = Some(AgentProc(child));
        Ok(())
    }
    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
    fn overlay_routes(&self) -> Result<Vec<String>> {
        self.ns.routes_on("flannel.1")
    }
    fn fdb_dsts(&self) -> Result<Vec<String>> {
        let out = self
            .ns
            .exec(&["bridge", "-j", "fdb", "show", "dev", "flannel.1"])?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["dst"].as_str().map(String::from))
            .collect())
    }
}

/// Runs `pea-flanneld --once` with config `cfg` (written to `dir`) in `node`'s network namespace.
fn flanneld_once(node: &Netns, dir: &Path, cfg: &Value) -> Result<std::process::Output> {
    let path = dir.join("c.json");
    std::fs::write(&path, serde_json::to_vec(cfg)?)?;
    Ok(Command::new("nsenter")
        .arg(format!("--net={}", node.path().display()))
        .arg(pea_cni_dir()?.join("pea-flanneld"))
        .args(["--once", "--config"])
        .arg(&path)
        .output()?)
}

fn lab(n: usize, registry: &Path, lab_ns: &Netns) -> Result<Vec<LabNode>> {
    lab_ns.ip(&["link", "add", "under0", "type", "bridge"])?;
    lab_ns.ip(&["link", "set", "under0", "up"])?;
    let mut nodes = Vec::new();
    for i in 1..=n {
        let ns = Netns::new("node")?;
        veth(&ns, "eth0", lab_ns, &format!("n{i}"))?;
        lab_ns.ip(&["link", "set", &format!("n{i}"), "master", "under0"])?;
        ns.ip(&["addr", "add", &format!("192.168.50.{i}/24"), "dev", "eth0"])?;
        let dir = tempfile::tempdir()?;
        let subnet = format!("10.244.{i}.0/24");
        let mut cfg = json!({
            "network": "10.244.0.0/16",
            "nodeName": format!("node{i}"),
            "subnetSource": {"static": {"subnet": subnet, "registryDir": registry}},
            "subnetFile": dir.path().join("subnet.env"),
            "resyncMillis": 100
        });
        // The three ways to name the uplink, as flannel's --iface: node1 by name, node2 by
        // its address, node3 not at all (the default route's interface).
        match i {
            1 => cfg["iface"] = "eth0".into(),
            2 => cfg["iface"] = "192.168.50.2".into(),
            _ => {
                ns.ip(&[
                    "route",
                    "add",
                    "default",
                    "via",
                    "192.168.50.254",
                    "dev",
                    "eth0",
                ])?;
            }
        }
        std::fs::write(dir.path().join("flanneld.json"), serde_json::to_vec(&cfg)?)?;
        let plugin = json!({
            "type": "pea-cni",
            "subnetFile": dir.path().join("subnet.env"),
            "ipam": {"dataDir": dir.path().join("leases")}
        });
        let net = ConfList::new(
            "overlay",
            "1.1.0",
            vec![plugin],
            vec![pea_cni_dir()?],
            ns.path(),
        );
        nodes.push(LabNode {
            ns,
            dir,
            subnet,
            agent: None,
            net,
        });
    }
    Ok(nodes)
}

#[test]
fn pods_reach_each_other_across_three_nodes_and_a_leaving_node_is_withdrawn() -> Result<()> {
    require_root();
    for p in ["nsenter", "nft", "bridge", "/bin/busybox"] {
        require_program(p);
    }
    let registry = tempfile::tempdir()?;
    let lab_ns = Netns::new("lab")?;
    let mut nodes = lab(3, registry.path(), &lab_ns)?;
    for n in &mut nodes {
        n.start_agent()?;
    }
    for n in &nodes {
        let others: Vec<String> = nodes
            .iter()
            .filter(|o| o.subnet != n.subnet)
            .map(|o| o.subnet.clone())
            .collect();
        let ok = wait_for(
            Duration::from_secs(10),
            || Ok(n.overlay_routes()? == others),
        )?;
        assert!(
            ok,
            "routes on {}: {:?}; log: {}",
            n.ns.name,
            n.overlay_routes()?,
            n.agent_log()
        );
    }

    // The device is what flannel's vxlan backend makes.
    let d = nodes[0]
        .ns
        .ip_json(&["-d", "link", "show", "dev", "flannel.1"])?;
    let info = &d[0]["linkinfo"]["info_data"];
    assert_eq!(info["id"], 1, "{d}");
    assert_eq!(info["port"], 8472, "{d}");
    assert_eq!(info["learning"], false, "{d}");
    assert_eq!(info["local"], "192.168.50.1", "{d}");
    assert_eq!(d[0]["mtu"], 1450, "uplink 1500 - 50: {d}");
    assert_eq!(
        nodes[0].ns.addrs("flannel.1")?,
        vec!["10.244.1.0/32".to_string()]
    );
    let env = std::fs::read_to_string(nodes[0].subnet_env())?;
    assert_eq!(
        env,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    );
    let mut fdb = nodes[0].fdb_dsts()?;
    fdb.sort();
    assert_eq!(fdb, vec!["192.168.50.2", "192.168.50.3"]);
    // The published record carries flannel's annotation names.
    let rec: Value = serde_json::from_slice(&std::fs::read(registry.path().join("node2.json"))?)?;
    assert_eq!(
        rec["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.168.50.2"
    );
    let data: Value = serde_json::from_str(
        rec["annotations"]["flannel.alpha.coreos.com/backend-data"]
            .as_str()
            .unwrap(),
    )?;
    let mac2 = nodes[1].ns.ip_json(&["link", "show", "dev", "flannel.1"])?[0]["address"].clone();
    assert_eq!(data["VtepMAC"], mac2);
    // Set explicitly at creation (from the node address), not the kernel's random one that
    // udev's MACAddressPolicy=persistent would replace after the agent published it.
    assert_eq!(mac2, "0e:70:c0:a8:32:02");
    assert_eq!(data["VNI"], 1);

    // One pod per node, addressed from the subnet file.
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    let mut ips = Vec::new();
    for (i, (n, p)) in nodes.iter().zip(&pods).enumerate() {
        let r = n
            .net
            .add(&format!("pod{i}"), &p.path(), "eth0", &Value::Null)?;
        let ip = result_ip(&r).unwrap();
        assert!(ip.starts_with(&format!("10.244.{}.", i + 1)), "{ip}");
        assert_eq!(r["interfaces"][2]["mtu"], 1450, "{r}");
        ips.push(ip);
    }
    // FLANNEL_IPMASQ=false (the agent does not masquerade): the plugin does, as flannel's CNI
    // plugin makes the bridge plugin do.
    assert!(
        nodes[0]
            .ns
            .nft_tables()?
            .contains(&"ip pea-cni-overlay".to_string()),
        "{:?}",
        nodes[0].ns.nft_tables()?
    );
    // Across nodes: ICMP both ways round the triangle, and TCP.
    for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 2)] {
        assert!(
            pods[a].ping(&ips[b])?,
            "pod{a} ({}) cannot ping pod{b} ({})",
            ips[a],
            ips[b]
        );
    }
    let _srv = pods[2].tcp_echo_server(7009)?;
    let got = pods[0].tcp_echo(format!("{}:7009", ips[2]).parse()?, b"across the overlay")?;
    assert_eq!(got, b"across the overlay");

    // A second node claiming node2's subnet: nobody routes that subnet to either claimant until
    // the conflict is gone, and the rest of the overlay is untouched.
    let mut evil: Value =
        serde_json::from_slice(&std::fs::read(registry.path().join("node2.json"))?)?;
    evil["name"] = json!("evil");
    evil["annotations"]["flannel.alpha.coreos.com/public-ip"] = json!("192.168.50.99");
    std::fs::write(
        registry.path().join("evil.json"),
        serde_json::to_vec(&evil)?,
    )?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(nodes[0].overlay_routes()? == vec!["10.244.3.0/24".to_string()])
    })?;
    assert!(
        ok,
        "conflicting claims still routed: {:?}",
        nodes[0].overlay_routes()?
    );
    assert!(nodes[0].agent_log().contains("is claimed by 2 nodes"));
    assert!(!nodes[0].fdb_dsts()?.contains(&"192.168.50.99".to_string()));
    std::fs::remove_file(registry.path().join("evil.json"))?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(nodes[0].overlay_routes()?.len() == 2)
    })?;
    assert!(
        ok,
        "node2 not routed again: {:?}",
        nodes[0].overlay_routes()?
    );
    assert!(
        pods[0].ping(&ips[1])?,
        "ping node2's pod after the conflict cleared"
    );

    // Restarting an agent keeps the overlay: the very same device (ifindex, MAC), routes stay
    // while it is down, and a TCP connection opened before the restart carries on after it.
    let before = nodes[0].ns.link_identity("flannel.1")?;
    let _stream_srv = pods[1].tcp_stream_echo_server(7019)?;
    let mut conn = pods[0].tcp_connect(format!("{}:7019", ips[1]).parse()?)?;
    assert_eq!(conn.echo(b"before the restart")?, b"before the restart");
    nodes[0].agent = None;
    assert_eq!(nodes[0].overlay_routes()?.len(), 2);
    nodes[0].start_agent()?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(nodes[0].agent_log().contains("first reconcile"))
    })?;
    assert!(ok, "agent did not come back: {}", nodes[0].agent_log());
    assert_eq!(
        nodes[0].ns.link_identity("flannel.1")?,
        before,
        "flannel.1 was recreated"
    );
    assert_eq!(conn.echo(b"after the restart")?, b"after the restart");
    drop(conn);
    assert!(pods[0].ping(&ips[1])?, "ping after agent restart");
    assert_eq!(nodes[0].overlay_routes()?.len(), 2);

    // node3 leaves: its agent stops and its record goes (as its Node object would).
    nodes[2].agent = None;
    std::fs::remove_file(registry.path().join("node3.json"))?;
    for n in &nodes[..2] {
        let ok = wait_for(Duration::from_secs(10), || {
            Ok(!n.overlay_routes()?.contains(&"10.244.3.0/24".to_string()))
        })?;
        assert!(
            ok,
            "{} still routes to node3: {:?}",
            n.ns.name,
            n.overlay_routes()?
        );
        assert!(!n.fdb_dsts()?.contains(&"192.168.50.3".to_string()));
        let neigh = n.ns.ip_json(&["neigh", "show", "dev", "flannel.1"])?;
        assert!(!neigh.to_string().contains("10.244.3.0"), "{neigh}");
    }
    assert!(
        !pods[0].ping(&ips[2])?,
        "node3's pod still reachable after withdrawal"
    );
    assert!(pods[0].ping(&ips[1])?, "node2 must stay reachable");

    for (i, (n, p)) in nodes.iter().zip(&pods).enumerate() {
        n.net.del(
            &format!("pod{i}"),
            &p.path().display().to_string(),
            "eth0",
            &Value::Null,
        )?;
    }
    Ok(())
}

/// An uplink that cannot be found (an address no interface holds; no iface and no default
/// route) is named in the error, and nothing is set up: no device, no subnet file.
#[test]
fn an_uplink_that_cannot_be_found_is_named_and_nothing_is_set_up() -> Result<()> {
    require_root();
    let node = Netns::new("node")?;
    let dir = tempfile::tempdir()?;
    let registry = tempfile::tempdir()?;
    for (iface, want) in [
        (Some("192.0.2.77"), "no interface holds 192.0.2.77"),
        (None, "no IPv4 default route"),
    ] {
        let mut cfg = json!({
            "network": "10.244.0.0/16", "nodeName": "solo",
            "subnetSource": {"static": {"subnet": "10.244.9.0/24", "registryDir": registry.path()}},
            "subnetFile": dir.path().join("subnet.env")
        });
        if let Some(i) = iface {
            cfg["iface"] = i.into();
        }
        let out = flanneld_once(&node, dir.path(), &cfg)?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
        assert!(!dir.path().join("subnet.env").exists());
        assert_eq!(node.links()?, vec!["lo".to_string()]);
    }
    Ok(())
}

/// The kube source itself is tested against a real API server in cni_flannel_kube.rs; here: a
/// kubeconfig that cannot be read is named in the error and nothing is set up.
#[test]
fn kubernetes_subnet_source_with_an_unreadable_kubeconfig_fails_cleanly() -> Result<()> {
    require_root();
    let node = Netns::new("node")?;
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such.kubeconfig");
    let cfg = json!({
        "network": "10.244.0.0/16", "nodeName": "k", "iface": "lo",
        "subnetSource": {"kubernetes": {"kubeconfig": missing}},
        "subnetFile": dir.path().join("subnet.env")
    });
    let out = flanneld_once(&node, dir.path(), &cfg)?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such.kubeconfig"), "{err}");
    assert!(!dir.path().join("subnet.env").exists());
    assert_eq!(node.links()?, vec!["lo".to_string()]);
    Ok(())
}

#[test]
fn restart_with_a_new_subnet_keeps_one_device_address_and_rewrites_subnet_env() -> Result<()> {
    require_root();
    let node = Netns::new("node")?;
    let peer = Netns::new("lab")?;
    veth(&node, "eth0", &peer, "p0")?;
    node.ip(&["addr", "add", "192.168.60.1/24", "dev", "eth0"])?;
    let dir = tempfile::tempdir()?;
    let run_once = |subnet: &str| -> Result<()> {
        let cfg = json!({
            "network": "10.244.0.0/16", "nodeName": "solo", "iface": "eth0",
            "subnetSource": {"static": {"subnet": subnet, "registryDir": dir.path().join("reg")}},
            "subnetFile": dir.path().join("subnet.env")
        });
        let out = flanneld_once(&node, dir.path(), &cfg)?;
        anyhow::ensure!(
            out.status.success(),
            "pea-flanneld: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    run_once("10.244.5.0/24")?;
    let mac = node.ip_json(&["link", "show", "dev", "flannel.1"])?[0]["address"].clone();
    run_once("10.244.5.0/24")?;
    // Same config: the very same device (same MAC), one address.
    assert_eq!(
        node.ip_json(&["link", "show", "dev", "flannel.1"])?[0]["address"],
        mac
    );
    assert_eq!(node.addrs("flannel.1")?, vec!["10.244.5.0/32".to_string()]);
    run_once("10.244.6.0/24")?;
    assert_eq!(node.addrs("flannel.1")?, vec!["10.244.6.0/32".to_string()]);
    let env = std::fs::read_to_string(dir.path().join("subnet.env"))?;
    assert!(env.contains("FLANNEL_SUBNET=10.244.6.1/24\n"), "{env}");
    // The MTU still follows the uplink: 1500 - 50.
    assert_eq!(
        node.ip_json(&["link", "show", "dev", "flannel.1"])?[0]["mtu"],
        1450
    );
    Ok(())
}

/// A peer record as another node's agent publishes it.
fn peer_record(name: &str, subnet: &str, public_ip: &str, mac: &str) -> Value {
    json!({
        "version": 1, "name": name, "podCIDR": subnet,
        "annotations": {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": json!({"VNI": 1, "VtepMAC": mac}).to_string(),
            "flannel.alpha.coreos.com/public-ip": public_ip,
            "flannel.alpha.coreos.com/kube-subnet-manager": "true"
        }
    })
}

/// One node with an uplink and a static registry of fake peers; pea-flanneld runs once or as a
/// daemon against it.
struct SoloNode {
    node: Netns,
    _peer: Netns,
    dir: tempfile::TempDir,
}

impl SoloNode {
    fn new() -> Result<Self> {
        require_root();
        require_program("bridge");
        let node = Netns::new("node")?;
        let peer = Netns::new("lab")?;
        veth(&node, "eth0", &peer, "p0")?;
        node.ip(&["addr", "add", "192.168.61.1/24", "dev", "eth0"])?;
        let dir = tempfile::tempdir()?;
        let cfg = json!({
            "network": "10.244.0.0/16", "nodeName": "solo", "iface": "eth0",
            "subnetSource": {"static": {"subnet": "10.244.1.0/24", "registryDir": dir.path().join("reg")}},
            "subnetFile": dir.path().join("subnet.env"),
            "resyncMillis": 100
        });
        std::fs::create_dir(dir.path().join("reg"))?;
        std::fs::write(dir.path().join("c.json"), serde_json::to_vec(&cfg)?)?;
        Ok(SoloNode {
            node,
            _peer: peer,
            dir,
        })
    }
    fn reg(&self) -> PathBuf {
        self.dir.path().join("reg")
    }
    fn publish(&self, rec: &Value) -> Result<()> {
        let name = rec["name"].as_str().unwrap();
        std::fs::write(
            self.reg().join(format!("{name}.json")),
            serde_json::to_vec(rec)?,
        )?;
        Ok(())
    }
    fn command(&self) -> Result<Command> {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.node.path().display()))
            .arg(pea_cni_dir()?.join("pea-flanneld"))
            .arg("--config")
            .arg(self.dir.path().join("c.json"));
        Ok(c)
    }
    fn once(&self) -> Result<std::process::Output> {
        Ok(self.command()?.arg("--once").output()?)
    }
    fn routes(&self) -> Result<Vec<String>> {
        self.node.routes_on("flannel.1")
    }
    /// (MAC, destination) of every FDB entry on flannel.1.
    fn fdb(&self) -> Result<Vec<(String, String)>> {
        let out = self
            .node
            .exec(&["bridge", "-j", "fdb", "show", "dev", "flannel.1"])?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let mut r: Vec<(String, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["mac"].as_str()?.into(), e["dst"].as_str()?.into())))
            .collect();
        r.sort();
        Ok(r)
    }
    /// (IP, MAC) of every neighbour entry on flannel.1.
    fn neighbours(&self) -> Result<Vec<(String, String)>> {
        let v = self.node.ip_json(&["neigh", "show", "dev", "flannel.1"])?;
        let mut r: Vec<(String, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["dst"].as_str()?.into(), e["lladdr"].as_str()?.into())))
            .collect();
        r.sort();
        Ok(r)
    }
}

/// A peer the kernel refuses (a multicast VTEP MAC cannot get an FDB entry) does not stop the
/// round: the other peers are programmed and the failure is reported (`--once` exits non-zero
/// naming it). When a peer's VTEP MAC changes, its old FDB entry goes; a peer's neighbour entry
/// goes with the peer.
#[test]
fn a_bad_peer_does_not_stop_the_others_and_stale_fdb_entries_are_removed() -> Result<()> {
    let solo = SoloNode::new()?;
    // Sorted before the good one, so it is programmed first.
    solo.publish(&peer_record(
        "bad",
        "10.244.2.0/24",
        "192.168.61.2",
        "01:00:5e:00:00:01",
    ))?;
    solo.publish(&peer_record(
        "good",
        "10.244.3.0/24",
        "192.168.61.3",
        "0a:58:00:00:03:01",
    ))?;
    let out = solo.once()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("node bad"), "{err}");
    assert_eq!(solo.routes()?, vec!["10.244.3.0/24".to_string()], "{err}");
    assert!(solo
        .fdb()?
        .contains(&("0a:58:00:00:03:01".into(), "192.168.61.3".into())));

    // The bad peer leaves; the good one's VTEP MAC changes (its agent recreated the device).
    std::fs::remove_file(solo.reg().join("bad.json"))?;
    solo.publish(&peer_record(
        "good",
        "10.244.3.0/24",
        "192.168.61.3",
        "0a:58:00:00:03:02",
    ))?;
    let out = solo.once()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        solo.fdb()?,
        vec![("0a:58:00:00:03:02".to_string(), "192.168.61.3".to_string())]
    );
    assert_eq!(
        solo.neighbours()?,
        vec![("10.244.3.0".to_string(), "0a:58:00:00:03:02".to_string())]
    );
    assert_eq!(solo.routes()?, vec!["10.244.3.0/24".to_string()]);
    Ok(())
}

/// The static registry directory going away (an unmounted share) is an error that keeps the
/// routes in place, not "every node left".
#[test]
fn a_missing_registry_keeps_the_routes() -> Result<()> {
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let solo = SoloNode::new()?;
    solo.publish(&peer_record(
        "good",
        "10.244.3.0/24",
        "192.168.61.3",
        "0a:58:00:00:03:01",
    ))?;
    let log_path = solo.dir.path().join("agent.log");
    let _agent = Agent(
        solo.command()?
            .env("PEA_FLANNELD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?,
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(solo.routes()? == vec!["10.244.3.0/24".to_string()])
    })?;
    assert!(ok, "peer not routed: {}", log());
    let moved = solo.dir.path().join("reg.away");
    std::fs::rename(solo.reg(), &moved)?;
    let ok = wait_for(Duration::from_secs(10), || {
        Ok(log().contains("reconcile failed"))
    })?;
    std::fs::rename(&moved, solo.reg())?;
    assert!(ok, "no reconcile error: {}", log());
    assert!(log().contains("reg"), "{}", log());
    assert_eq!(
        solo.routes()?,
        vec!["10.244.3.0/24".to_string()],
        "{}",
        log()
    );
    assert!(!log().contains("withdrew"), "{}", log());
    Ok(())
}
