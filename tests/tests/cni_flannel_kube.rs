//! pea-flanneld with its Kubernetes subnet source (`--kube-subnet-mgr`) against a real
//! pea-control: three nodes on an underlay bridge take their subnets from their Nodes'
//! `spec.podCIDR`, publish flannel's annotations on their own Node with their node identity, and
//! learn each other from a watch of all Nodes. Pods on different nodes talk over VXLAN; a deleted
//! Node, or one whose annotations go, is withdrawn everywhere.
//!
//! The API server runs in-process but listens inside the lab namespace (on the underlay bridge's
//! address), since the agents in the node namespaces cannot reach the root namespace's loopback;
//! kubectl therefore also runs inside the lab namespace. Nothing touches the root namespace.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use pea_tests::{
    control::{Backend, ControlPlane},
    netlab::{veth, wait_for, Netns},
    netlab_cni::{pea_cni_dir, result_ip, ConfList},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

const API_IP: &str = "192.168.50.254";

/// A running agent; killed on drop.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The API server, listening inside the lab namespace, and kubectl run there.
struct Api {
    lab: Netns,
    cp: Option<ControlPlane>,
    home: tempfile::TempDir,
    /// The server's state (store, PKI), kept across restarts.
    data: tempfile::TempDir,
}

impl Api {
    fn start(lab: Netns) -> Result<Self> {
        let mut api = Api {
            lab,
            cp: None,
            home: tempfile::tempdir()?,
            data: tempfile::tempdir()?,
        };
        api.restart()?;
        Ok(api)
    }
    /// (Re)starts the server on its data dir. A thread that entered the lab namespace builds the
    /// server's runtime: the listener (and the runtime's worker threads) live there.
    fn restart(&mut self) -> Result<()> {
        drop(self.cp.take());
        let data = self.data.path().join("control");
        self.cp = Some(self.lab.run_in(|| {
            ControlPlane::start_with(Backend::Embedded, move |c| {
                c.data_dir = data;
                c.listen = format!("{API_IP}:6443").parse().expect("addr");
                c.extra_sans = vec![API_IP.into()];
            })
        })?);
        Ok(())
    }
    fn cp(&self) -> &ControlPlane {
        self.cp.as_ref().expect("running")
    }
    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.lab.path().display()))
            .arg("kubectl")
            .args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes())?;
        }
        drop(input);
        Ok(child.wait_with_output()?)
    }
    /// Runs kubectl as admin; fails with its stderr.
    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let out = self.kubectl_as(&self.cp().kubeconfig, args, stdin)?;
        anyhow::ensure!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
    fn create_node(&self, name: &str, pod_cidr: &str) -> Result<()> {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name}, "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}});
        self.kubectl(&["create", "-f", "-"], Some(&node.to_string()))?;
        Ok(())
    }
    fn annotations(&self, node: &str) -> Result<Value> {
        let v: Value =
            serde_json::from_str(&self.kubectl(&["get", "node", node, "-o", "json"], None)?)?;
        Ok(v["metadata"]["annotations"].clone())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        drop(self.cp.take()); // before the namespace goes
    }
}

struct KubeNode {
    name: String,
    ns: Netns,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    agent: Option<AgentProc>,
    net: ConfList,
}

impl KubeNode {
    fn subnet_env(&self) -> PathBuf {
        self.dir.path().join("subnet.env")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
    fn start_agent(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(pea_cni_dir()?.join("pea-flanneld"))
            .arg("--config")
            .arg(self.dir.path().join("flanneld.json"))
            .arg("--kube-subnet-mgr")
            .arg("--kubeconfig-file")
            .arg(&self.kubeconfig)
            .env("NODE_NAME", &self.name)
            .env("PEA_FLANNELD_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting pea-flanneld")?;
        self.agent = Some(AgentProc(child));
        Ok(())
    }
    fn overlay_routes(&self) -> Result<Vec<String>> {
        self.ns.routes_on("flannel.1")
    }
    fn fdb_dsts(&self) -> Result<Vec<String>> {
        let out = self
            .ns
            .exec(&["bridge", "-j", "fdb", "show", "dev", "flannel.1"])?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut d: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["dst"].as_str().map(String::from))
            .collect();
        d.sort();
        Ok(d)
    }
    fn neighbours(&self) -> Result<String> {
        Ok(self
            .ns
            .ip_json(&["neigh", "show", "dev", "flannel.1"])?
            .to_string())
    }
    fn vtep_mac(&self) -> Result<Value> {
        Ok(self.ns.ip_json(&["link", "show", "dev", "flannel.1"])?[0]["address"].clone())
    }
}

/// The lab: an underlay bridge with the API server's address, and `n` nodes on it.
fn lab(n: usize) -> Result<(Api, Vec<KubeNode>)> {
    let lab_ns = Netns::new("lab")?;
    lab_ns.ip(&["link", "add", "under0", "type", "bridge"])?;
    lab_ns.ip(&["link", "set", "under0", "up"])?;
    lab_ns.ip(&["addr", "add", &format!("{API_IP}/24"), "dev", "under0"])?;
    let mut nodes = Vec::new();
    for i in 1..=n {
        let ns = Netns::new("node")?;
        veth(&ns, "eth0", &lab_ns, &format!("n{i}"))?;
        lab_ns.ip(&["link", "set", &format!("n{i}"), "master", "under0"])?;
        ns.ip(&["addr", "add", &format!("192.168.50.{i}/24"), "dev", "eth0"])?;
        let dir = tempfile::tempdir()?;
        // flannel's net-conf.json role: the cluster network; the subnet comes from the Node.
        let cfg = json!({
            "network": "10.244.0.0/16",
            "iface": "eth0",
            "subnetFile": dir.path().join("subnet.env"),
            "resyncMillis": 1000
        });
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
        nodes.push(KubeNode {
            name: format!("node{i}"),
            ns,
            dir,
            kubeconfig: PathBuf::new(),
            agent: None,
            net,
        });
    }
    let api = Api::start(lab_ns)?;
    for n in &mut nodes {
        // Each agent runs with its node's own identity, never admin.
        n.kubeconfig = api
            .cp()
            .kubeconfig_for(&format!("system:node:{}", n.name), &["system:nodes"])?;
    }
    Ok((api, nodes))
}

fn wait(what: &str, secs: u64, f: impl FnMut() -> Result<bool>) -> Result<()> {
    anyhow::ensure!(
        wait_for(Duration::from_secs(secs), f)?,
        "timed out after {secs}s: {what}"
    );
    Ok(())
}

#[test]
fn three_nodes_take_subnets_from_node_objects_and_a_deleted_node_is_withdrawn() -> Result<()> {
    require_root();
    for p in ["nsenter", "nft", "bridge", "kubectl", "/bin/busybox"] {
        require_program(p);
    }
    let (mut api, mut nodes) = lab(3)?;
    api.create_node("node1", "10.244.1.0/24")?;
    api.create_node("node2", "10.244.2.0/24")?;
    // node3's Node does not exist yet: its agent waits (and says so) instead of failing.
    for n in &mut nodes {
        n.start_agent()?;
    }
    wait("node3 logs that it waits", 10, || {
        Ok(nodes[2].log().contains("waiting for the node's podCIDR"))
    })?;
    assert!(!nodes[2].subnet_env().exists());
    api.create_node("node3", "10.244.3.0/24")?;

    let subnets = ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"];
    for (i, n) in nodes.iter().enumerate() {
        let others: Vec<String> = subnets
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| s.to_string())
            .collect();
        wait(&format!("{} routes the other nodes", n.name), 20, || {
            Ok(n.overlay_routes()? == others)
        })
        .with_context(|| format!("routes {:?}; log: {}", n.overlay_routes(), n.log()))?;
    }
    // subnet.env from the Node's podCIDR, the device as flannel's vxlan backend makes it.
    assert_eq!(
        std::fs::read_to_string(nodes[1].subnet_env())?,
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.2.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
    );
    assert_eq!(
        nodes[1].ns.addrs("flannel.1")?,
        vec!["10.244.2.0/32".to_string()]
    );
    assert_eq!(nodes[0].fdb_dsts()?, vec!["192.168.50.2", "192.168.50.3"]);
    // The annotations each agent published on its own Node, read back from the API.
    for (i, n) in nodes.iter().enumerate() {
        let a = api.annotations(&n.name)?;
        assert_eq!(a["flannel.alpha.coreos.com/backend-type"], "vxlan", "{a}");
        assert_eq!(
            a["flannel.alpha.coreos.com/public-ip"],
            format!("192.168.50.{}", i + 1),
            "{a}"
        );
        assert_eq!(a["flannel.alpha.coreos.com/kube-subnet-manager"], "true");
        let data: Value = serde_json::from_str(
            a["flannel.alpha.coreos.com/backend-data"]
                .as_str()
                .context("backend-data")?,
        )?;
        assert_eq!(data, json!({"VNI": 1, "VtepMAC": n.vtep_mac()?}));
    }

    // A node identity cannot touch another Node.
    let out = api.kubectl_as(
        &nodes[0].kubeconfig,
        &[
            "annotate",
            "node",
            "node2",
            "flannel.alpha.coreos.com/public-ip=192.168.50.99",
            "--overwrite",
        ],
        None,
    )?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        api.annotations("node2")?["flannel.alpha.coreos.com/public-ip"],
        "192.168.50.2"
    );

    // One pod per node.
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    let mut ips = Vec::new();
    for (i, (n, p)) in nodes.iter().zip(&pods).enumerate() {
        let r = n
            .net
            .add(&format!("pod{i}"), &p.path(), "eth0", &Value::Null)?;
        let ip = result_ip(&r).context("pod ip")?;
        assert!(ip.starts_with(&format!("10.244.{}.", i + 1)), "{ip}");
        ips.push(ip);
    }
    for (a, b) in [(0, 1), (1, 2), (2, 0), (0, 2)] {
        assert!(
            pods[a].ping(&ips[b])?,
            "pod{a} ({}) cannot ping pod{b} ({})",
            ips[a],
            ips[b]
        );
    }
    let _srv = pods[1].tcp_echo_server(7010)?;
    let got = pods[2].tcp_echo(
        format!("{}:7010", ips[1]).parse()?,
        b"over the kube overlay",
    )?;
    assert_eq!(got, b"over the kube overlay");

    // A hostile Node claiming node2's subnet (an admin could create one): nobody routes that
    // subnet to either claimant until it is gone; the rest of the overlay is untouched.
    let mut evil_anns = api.annotations("node2")?;
    evil_anns["flannel.alpha.coreos.com/public-ip"] = json!("192.168.50.99");
    let evil = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "evil", "annotations": evil_anns},
        "spec": {"podCIDR": "10.244.2.0/24"}});
    api.kubectl(&["create", "-f", "-"], Some(&evil.to_string()))?;
    wait("node1 stops routing the contested subnet", 10, || {
        Ok(nodes[0].overlay_routes()? == vec!["10.244.3.0/24".to_string()])
    })?;
    assert!(
        nodes[0].log().contains("is claimed by 2 nodes"),
        "{}",
        nodes[0].log()
    );
    assert!(!nodes[0].fdb_dsts()?.contains(&"192.168.50.99".to_string()));
    assert!(pods[0].ping(&ips[2])?, "node3 unaffected by the conflict");
    api.kubectl(&["delete", "node", "evil"], None)?;
    wait("node1 routes node2 again", 10, || {
        Ok(nodes[0].overlay_routes()?.len() == 2)
    })?;
    assert!(pods[0].ping(&ips[1])?, "node2 after the conflict cleared");

    // Restarting an agent leaves the overlay alone while it is down and after it is back: the
    // same device (ifindex, MAC), and a TCP connection opened before the restart still works.
    let before = nodes[0].ns.link_identity("flannel.1")?;
    let _stream_srv = pods[2].tcp_stream_echo_server(7020)?;
    let mut conn = pods[0].tcp_connect(format!("{}:7020", ips[2]).parse()?)?;
    assert_eq!(conn.echo(b"before the restart")?, b"before the restart");
    nodes[0].agent = None;
    assert_eq!(nodes[0].overlay_routes()?.len(), 2);
    assert!(pods[0].ping(&ips[1])?, "ping while the agent is down");
    nodes[0].start_agent()?;
    wait("node1's agent is back", 10, || {
        Ok(nodes[0].log().matches("first reconcile").count() == 2)
    })?;
    assert_eq!(
        nodes[0].ns.link_identity("flannel.1")?,
        before,
        "flannel.1 was recreated"
    );
    assert_eq!(conn.echo(b"after the restart")?, b"after the restart");
    drop(conn);
    assert!(pods[0].ping(&ips[2])?, "ping after the agent restart");
    assert_eq!(nodes[0].overlay_routes()?.len(), 2);

    // A running agent whose annotations are removed puts them back.
    let before = api.annotations("node1")?;
    api.kubectl(
        &[
            "annotate",
            "node",
            "node1",
            "flannel.alpha.coreos.com/backend-data-",
        ],
        None,
    )?;
    wait("node1 re-publishes its annotations", 10, || {
        Ok(api.annotations("node1")? == before)
    })?;
    assert!(
        nodes[0].log().contains("re-published"),
        "{}",
        nodes[0].log()
    );
    for n in [&nodes[1], &nodes[2]] {
        wait(&format!("{} routes node1", n.name), 10, || {
            Ok(n.overlay_routes()?.contains(&"10.244.1.0/24".to_string()))
        })?;
    }

    // node2's agent is stopped and its flannel annotations are removed: the others withdraw it;
    // once its agent is back it re-publishes and is routed again.
    nodes[1].agent = None;
    api.kubectl(
        &[
            "annotate",
            "node",
            "node2",
            "flannel.alpha.coreos.com/backend-data-",
            "flannel.alpha.coreos.com/backend-type-",
            "flannel.alpha.coreos.com/public-ip-",
            "flannel.alpha.coreos.com/kube-subnet-manager-",
        ],
        None,
    )?;
    for n in [&nodes[0], &nodes[2]] {
        wait(&format!("{} withdraws node2", n.name), 10, || {
            Ok(!n.overlay_routes()?.contains(&"10.244.2.0/24".to_string()))
        })?;
        assert!(!n.fdb_dsts()?.contains(&"192.168.50.2".to_string()));
    }
    nodes[1].start_agent()?;
    for n in [&nodes[0], &nodes[2]] {
        wait(&format!("{} routes node2 again", n.name), 20, || {
            Ok(n.overlay_routes()?.contains(&"10.244.2.0/24".to_string()))
        })?;
    }
    assert!(pods[0].ping(&ips[1])?, "node2 reachable again");

    // The API server restarts: the agents keep the overlay while it is away, and their watches
    // reconnect (the deletion below is only seen through the new connection).
    api.restart()?;
    for n in &nodes {
        assert_eq!(n.overlay_routes()?.len(), 2, "{}: {}", n.name, n.log());
    }

    // node3 leaves: its agent stops and its Node is deleted.
    nodes[2].agent = None;
    api.kubectl(&["delete", "node", "node3"], None)?;
    for n in &nodes[..2] {
        wait(&format!("{} withdraws node3", n.name), 10, || {
            Ok(!n.overlay_routes()?.contains(&"10.244.3.0/24".to_string()))
        })
        .with_context(|| n.log())?;
        assert!(!n.fdb_dsts()?.contains(&"192.168.50.3".to_string()));
        let neigh = n.neighbours()?;
        assert!(!neigh.contains("10.244.3.0"), "{neigh}");
    }
    assert!(
        !pods[0].ping(&ips[2])?,
        "node3's pod reachable after its Node went"
    );
    assert!(pods[0].ping(&ips[1])?, "node2 must stay reachable");

    for n in &nodes {
        let log = n.log();
        eprintln!("--- {} ---\n{log}", n.name);
        assert!(!log.contains("reconcile failed"), "{log}");
        assert!(!log.contains("ERROR"), "{log}");
    }
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

#[test]
fn a_pod_cidr_outside_the_cluster_network_is_refused_and_leaves_nothing() -> Result<()> {
    require_root();
    for p in ["nsenter", "kubectl"] {
        require_program(p);
    }
    let (api, mut nodes) = lab(1)?;
    api.create_node("node1", "10.99.1.0/24")?;
    nodes[0].start_agent()?;
    let mut agent = nodes[0].agent.take().context("agent")?;
    let mut status = None;
    wait("the agent exits", 20, || {
        status = agent.0.try_wait()?;
        Ok(status.is_some())
    })?;
    assert!(!status.context("status")?.success());
    let log = nodes[0].log();
    assert!(
        log.contains("10.99.1.0/24") && log.contains("10.244.0.0/16"),
        "{log}"
    );
    assert!(!nodes[0].subnet_env().exists());
    assert!(!nodes[0].ns.links()?.iter().any(|l| l == "flannel.1"));
    // Nothing was published on the Node either.
    assert_eq!(api.annotations("node1")?, Value::Null);
    Ok(())
}

#[test]
fn another_nodes_identity_is_refused_before_anything_is_set_up() -> Result<()> {
    require_root();
    for p in ["nsenter", "kubectl"] {
        require_program(p);
    }
    let (api, mut nodes) = lab(1)?;
    api.create_node("node1", "10.244.1.0/24")?;
    // node1's agent started with node9's credentials: it may read node1, not annotate it.
    nodes[0].kubeconfig = api
        .cp()
        .kubeconfig_for("system:node:node9", &["system:nodes"])?;
    nodes[0].start_agent()?;
    let mut agent = nodes[0].agent.take().context("agent")?;
    let mut status = None;
    wait("the agent exits", 20, || {
        status = agent.0.try_wait()?;
        Ok(status.is_some())
    })?;
    assert!(!status.context("status")?.success());
    let log = nodes[0].log();
    assert!(
        log.contains("node1") && log.to_lowercase().contains("forbidden"),
        "{log}"
    );
    assert!(!nodes[0].subnet_env().exists());
    assert!(!nodes[0].ns.links()?.iter().any(|l| l == "flannel.1"));
    assert_eq!(api.annotations("node1")?, Value::Null);
    Ok(())
}
