//! pea-cni under a real CNI runtime: podman 4.3 with its CNI network backend (containers/common
//! libnetwork over libcni), runc as the OCI runtime, busybox containers from a rootfs fixture.
//!
//! Every podman call runs through `nsenter --net=<node namespace>`, so the plugins it execs build
//! the bridge, veths, nft masquerade table and portmap's rules inside a namespace this test made.
//! `nsenter --net` and not `ip netns exec`: the latter also enters a private mount namespace, where
//! podman's bind mounts of the container namespaces under /run/netns would vanish with each podman
//! process, and the next call (stop, rm) could no longer enter them for DEL.
//!
//! What podman itself writes outside the test's temp dirs is removed here too: libcni's result
//! cache (/var/lib/cni/results, not configurable in podman 4.3), its /run/netns/netns-* mounts,
//! runc's state and the cgroup parent.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use pea_tests::{
    fixtures::busybox::write_busybox_rootfs,
    netlab::{random_suffix, veth, wait_for, Netns},
    netlab_cni::{pea_cni_dir, DEBIAN_CNI_DIR},
    privileged::{require_program, require_root},
    runtime_cli::{
        cgroups_with, mounts_with, processes_with, run_with_timeout, unique_sleep, Output,
    },
};
use serde_json::{json, Value};

/// libcni's default cache dir; podman 4.3 does not set another.
const CNI_CACHE: &str = "/var/lib/cni";
const SUBNET_PREFIX: &str = "10.231.7.";
const GATEWAY: &str = "10.231.7.1";
const V6_SUBNET: &str = "fd00:231:7::/64";
const V6_GATEWAY: &str = "fd00:231:7::1";
const NODE_UPLINK: &str = "192.168.77.1";
const HOST_PORT: u16 = 18080;
const ECHO_PORT: u16 = 7007;

/// A node namespace with podman configured for the CNI backend and a pea-cni network.
struct PodmanNode {
    ns: Netns,
    dir: tempfile::TempDir,
    network: String,
    cgroup_parent: String,
    created_cache_dirs: Vec<PathBuf>,
}

impl PodmanNode {
    /// A node whose pea-cni network has the given IPAM range sets.
    fn new(ranges: Value) -> Result<Self> {
        require_root();
        require_program("podman");
        require_program("conmon");
        require_program("runc");
        require_program("nsenter");
        require_program("nft");
        require_program("iptables");
        let plugin_dir = pea_cni_dir()?;
        ensure!(
            plugin_dir.join("pea-cni").is_file(),
            "no pea-cni in {}",
            plugin_dir.display()
        );
        // Cache dirs that do not exist yet are ours to remove at the end (if empty then).
        let created_cache_dirs = [CNI_CACHE.to_string(), format!("{CNI_CACHE}/results")]
            .into_iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        let ns = Netns::new("podnode")?;
        let dir = tempfile::tempdir()?;
        let network = format!("pea{}", random_suffix(3));
        let node = PodmanNode {
            ns,
            dir,
            cgroup_parent: format!("pea-podcni-{}", random_suffix(3)),
            network,
            created_cache_dirs,
        };
        let d = node.dir.path();
        for sub in ["net.d", "ipam", "store"] {
            std::fs::create_dir_all(d.join(sub))?;
        }
        let dirs = json!([plugin_dir, DEBIAN_CNI_DIR]);
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = {dirs}\n\
                 network_config_dir = {:?}\n",
                d.join("net.d")
            ),
        )?;
        // libcni 1.1 (podman 4.3) speaks CNI 1.0.0 at most.
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": node.network,
            "plugins": [
                {
                    "type": "pea-cni",
                    "bridge": "cni0",
                    "mtu": 1400,
                    "clusterCIDR": "10.231.0.0/16",
                    "ipv6ClusterCIDR": "fd00:231::/32",
                    "ipam": {
                        "type": "host-local",
                        "ranges": ranges,
                        "dataDir": d.join("ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        std::fs::write(
            d.join("net.d").join(format!("{}.conflist", node.network)),
            serde_json::to_vec_pretty(&conflist)?,
        )?;
        Ok(node)
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// `podman <args>` inside the node's network namespace, with this node's config and storage.
    fn podman(&self, args: &[&str]) -> Output {
        let store = self.store();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns.path().display()))
            .arg("podman")
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("runroot"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ])
            .args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"));
        run_with_timeout(cmd, None, Duration::from_secs(120))
    }

    /// Starts a detached busybox container on the pea-cni network running an echo server
    /// (busybox nc) on ECHO_PORT and a `sleep <marker>`.
    fn run_echo(&self, name: &str, marker: &str, extra: &[&str]) -> Result<()> {
        let rootfs = self.dir.path().join(format!("rootfs-{name}"));
        write_busybox_rootfs(&rootfs, name)?;
        let rootfs = rootfs.display().to_string();
        let cgroup_parent = format!("/{}", self.cgroup_parent);
        let script = format!("nc -ll -p {ECHO_PORT} -e /bin/cat & exec sleep {marker}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--network",
            &self.network,
            "--cgroup-parent",
            &cgroup_parent,
            // runc cannot raise hard limits to podman's defaults without CAP_SYS_RESOURCE.
            "--ulimit",
            "nofile=1024:4096",
            "--ulimit",
            "nproc=1024:4096",
        ];
        args.extend_from_slice(extra);
        args.extend(["--rootfs", &rootfs, "/bin/sh", "-c", &script]);
        let o = self.podman(&args);
        ensure!(o.success(), "podman run {name}: {}", o.stderr);
        Ok(())
    }

    fn inspect(&self, name: &str) -> Result<Value> {
        let o = self.podman(&["inspect", name]);
        ensure!(o.success(), "podman inspect {name}: {}", o.stderr);
        let v: Value = serde_json::from_str(&o.stdout).context("podman inspect output")?;
        Ok(v[0].clone())
    }

    /// The container's address on our network, as podman reports it.
    fn ip(&self, name: &str) -> Result<String> {
        let v = self.inspect(name)?;
        let ip = v["NetworkSettings"]["Networks"][&self.network]["IPAddress"]
            .as_str()
            .with_context(|| format!("no address for {name}: {}", v["NetworkSettings"]))?
            .to_string();
        Ok(ip)
    }

    fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    fn leases(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.dir.path().join("ipam").join(&self.network))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// libcni's cached results for our network, file name → content.
    fn cached_results(&self) -> Vec<(String, Value)> {
        let prefix = format!("{}-", self.network);
        std::fs::read_dir(Path::new(CNI_CACHE).join("results"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| {
                let v = std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or(Value::Null);
                (e.file_name().to_string_lossy().into_owned(), v)
            })
            .collect()
    }

    fn host_veths(&self) -> Result<Vec<String>> {
        Ok(self
            .ns
            .links()?
            .into_iter()
            .filter(|l| l.starts_with("veth"))
            .collect())
    }

    fn masq_table(&self) -> String {
        format!("ip pea-cni-{}", self.network)
    }
}

impl Drop for PodmanNode {
    fn drop(&mut self) {
        // Containers first (DEL through pea-cni and portmap, netns unmounted, runc state gone),
        // then what podman leaves by design or a failed test left behind.
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        let prefix = format!("{}-", self.network);
        for e in std::fs::read_dir(Path::new(CNI_CACHE).join("results"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        for d in self.created_cache_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        remove_cgroup_parent(&self.cgroup_parent);
        // Storage may hold mounts (shm) if rm failed: unmount before the temp dir goes.
        for line in mounts_with(&self.dir.path().display().to_string()) {
            if let Some(mp) = line.split(' ').nth(4) {
                let _ = Command::new("umount").args(["-l", mp]).output();
            }
        }
    }
}

/// Removes the cgroup tree `name` at the top of every v1 hierarchy (conmon's exit can lag).
fn remove_cgroup_parent(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let top = e.path().join(name);
            if !top.is_dir() {
                continue;
            }
            let mut dirs = vec![top];
            let mut i = 0;
            while i < dirs.len() {
                for c in std::fs::read_dir(&dirs[i]).into_iter().flatten().flatten() {
                    if c.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        dirs.push(c.path());
                    }
                }
                i += 1;
            }
            for d in dirs.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        }
        if cgroups_with(name).is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_netns_entries() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Sends `msg` with busybox nc from `client` to `addr:port` and returns what came back.
fn nc_from(client: &Netns, addr: &str, port: u16, msg: &str) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &client.name, "busybox", "nc", "-w", "3"])
        .arg(addr)
        .arg(port.to_string());
    run_with_timeout(cmd, Some(msg.as_bytes()), Duration::from_secs(20))
}

#[test]
fn podman_cni_backend_runs_containers_on_pea_cni() -> Result<()> {
    let node = PodmanNode::new(json!([[{"subnet": format!("{SUBNET_PREFIX}0/24")}]]))?;
    let client = Netns::new("podclient")?;
    veth(&node.ns, "uplink0", &client, "eth0")?;
    node.ns.ip(&[
        "addr",
        "add",
        &format!("{NODE_UPLINK}/24"),
        "dev",
        "uplink0",
    ])?;
    client.ip(&["addr", "add", "192.168.77.2/24", "dev", "eth0"])?;
    let tmp = node.dir.path().display().to_string();

    // podman loaded and validated the conflist (libcni ran VERSION on both plugins).
    let o = node.podman(&["network", "inspect", &node.network]);
    ensure!(o.success(), "network inspect: {}", o.stderr);
    let net: Value = serde_json::from_str(&o.stdout)?;
    assert_eq!(net[0]["driver"], "pea-cni", "{net}");

    let marker = unique_sleep();
    node.run_echo("c1", &marker, &[])?;
    let port_map = format!("{HOST_PORT}:{ECHO_PORT}");
    node.run_echo("c2", &marker, &["-p", &port_map])?;

    // Addresses from pea-cni's IPAM, as podman reports them, each with its lease on disk.
    let ip1 = node.ip("c1")?;
    let ip2 = node.ip("c2")?;
    for ip in [&ip1, &ip2] {
        assert!(
            ip.starts_with(SUBNET_PREFIX) && ip != GATEWAY,
            "{ip} not from the pea-cni subnet"
        );
    }
    assert_ne!(ip1, ip2);
    let expected: BTreeSet<String> = [ip1.clone(), ip2.clone()].into();
    assert_eq!(node.leases(), expected);
    let c1 = node.inspect("c1")?;
    assert_eq!(
        c1["NetworkSettings"]["Networks"][&node.network]["Gateway"],
        GATEWAY
    );
    let c1_id = c1["Id"].as_str().unwrap().to_string();
    let c2_id = node.inspect("c2")?["Id"].as_str().unwrap().to_string();

    // libcni cached the chain's final result (pea-cni's, passed through portmap) per attachment.
    let cached = node.cached_results();
    assert_eq!(cached.len(), 2, "{cached:?}");
    let c1_cache = format!("{}-{c1_id}-eth0", node.network);
    let (_, c1_result) = cached
        .iter()
        .find(|(n, _)| *n == c1_cache)
        .unwrap_or_else(|| panic!("no cache entry {c1_cache} in {cached:?}"));
    assert_eq!(
        c1_result["result"]["ips"][0]["address"],
        format!("{ip1}/24"),
        "{c1_result}"
    );
    assert_eq!(c1_result["result"]["cniVersion"], "1.0.0", "{c1_result}");

    // The container's side: eth0 in podman's netns, MTU from the conflist.
    let sandbox = c1["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(sandbox.starts_with("/run/netns/"), "{sandbox}");
    let o = Command::new("nsenter")
        .arg(format!("--net={sandbox}"))
        .args(["ip", "-j", "addr", "show", "dev", "eth0"])
        .output()?;
    let eth0: Value = serde_json::from_slice(&o.stdout).context("ip -j in the container netns")?;
    assert_eq!(eth0[0]["mtu"], 1400, "{eth0}");
    assert!(eth0.to_string().contains(&ip1), "{eth0}");

    // Node side: two veths on the bridge and the masquerade table, all inside the node namespace.
    let veths = node.host_veths()?;
    assert_eq!(veths.len(), 2, "{veths:?}");
    assert!(node.ns.nft_tables()?.contains(&node.masq_table()));
    let root_links = String::from_utf8(Command::new("ip").args(["-j", "link"]).output()?.stdout)?;
    for v in &veths {
        assert!(
            !root_links.contains(&format!("\"{v}\"")),
            "{v} in the root namespace"
        );
    }
    let root_addrs = String::from_utf8(Command::new("ip").args(["-j", "addr"]).output()?.stdout)?;
    assert!(
        !root_addrs.contains(SUBNET_PREFIX),
        "pod subnet in the root namespace"
    );
    let root_tables = Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()?;
    let our_table = format!("pea-cni-{}", node.network);
    assert!(!String::from_utf8_lossy(&root_tables.stdout).contains(&our_table));

    // Container ↔ container: ping both ways and a TCP echo through busybox nc.
    for (from, to) in [("c1", &ip2), ("c2", &ip1)] {
        let o = node.exec(from, &["ping", "-c", "1", "-W", "2", to]);
        assert!(o.success(), "{from} ping {to}: {} {}", o.stdout, o.stderr);
    }
    let o = node.exec(
        "c1",
        &[
            "sh",
            "-c",
            &format!("echo c1-to-c2 | nc -w 3 {ip2} {ECHO_PORT}"),
        ],
    );
    assert_eq!(o.stdout.trim(), "c1-to-c2", "{}", o.stderr);

    // portmap, chained after pea-cni in the conflist: host port on the node's uplink.
    let o = nc_from(&client, NODE_UPLINK, HOST_PORT, "via-portmap\n");
    assert_eq!(o.stdout.trim(), "via-portmap", "{}", o.stderr);

    // network reload: podman tears the attachment down (DEL) and sets it up again (ADD) in the
    // running container's namespace, as after a firewall reload.
    let o = node.podman(&["network", "reload", "c2"]);
    ensure!(o.success(), "network reload: {}", o.stderr);
    let ip2_first = ip2;
    let ip2 = node.ip("c2")?;
    assert!(ip2.starts_with(SUBNET_PREFIX) && ip2 != ip1, "{ip2}");
    assert_eq!(node.leases(), [ip1.clone(), ip2.clone()].into());
    assert_eq!(node.cached_results().len(), 2);
    assert_eq!(node.host_veths()?.len(), 2);
    let o = node.exec("c1", &["ping", "-c", "1", "-W", "2", &ip2]);
    assert!(o.success(), "c1 ping reloaded c2 {ip2}: {}", o.stdout);
    let o = nc_from(&client, NODE_UPLINK, HOST_PORT, "after-reload\n");
    assert_eq!(o.stdout.trim(), "after-reload", "{}", o.stderr);

    // stop → DEL with the cached result: c1's lease, cache entry, veth and netns go.
    let o = node.podman(&["stop", "-t", "1", "c1"]);
    ensure!(o.success(), "stop: {}", o.stderr);
    assert_eq!(node.leases(), [ip2.clone()].into());
    assert!(
        !node.cached_results().iter().any(|(n, _)| *n == c1_cache),
        "cache entry left after stop"
    );
    assert_eq!(node.host_veths()?.len(), 1);
    assert!(!Path::new(&sandbox).exists(), "{sandbox} left after stop");
    // c2 still holds a lease: the masquerade table stays.
    assert!(node.ns.nft_tables()?.contains(&node.masq_table()));

    // start → a fresh ADD.
    let o = node.podman(&["start", "c1"]);
    ensure!(o.success(), "start: {}", o.stderr);
    let ip1b = node.ip("c1")?;
    let sandbox_b = node.inspect("c1")?["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    let sandbox_c2 = node.inspect("c2")?["NetworkSettings"]["SandboxKey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip1b.starts_with(SUBNET_PREFIX) && ip1b != ip2, "{ip1b}");
    assert_eq!(node.leases(), [ip1b.clone(), ip2.clone()].into());
    assert_eq!(node.cached_results().len(), 2);
    let o = node.exec("c2", &["ping", "-c", "1", "-W", "2", &ip1b]);
    assert!(o.success(), "c2 ping restarted c1 {ip1b}: {}", o.stdout);
    let o = node.exec(
        "c2",
        &[
            "sh",
            "-c",
            &format!("echo c2-to-c1 | nc -w 3 {ip1b} {ECHO_PORT}"),
        ],
    );
    assert_eq!(o.stdout.trim(), "c2-to-c1", "{}", o.stderr);

    // rm -f → DEL of both: nothing of the pods is left in the node namespace.
    let o = node.podman(&["rm", "-f", "-t", "0", "c1", "c2"]);
    ensure!(o.success(), "rm: {}", o.stderr);
    assert!(node.leases().is_empty(), "{:?}", node.leases());
    assert!(
        node.cached_results().is_empty(),
        "{:?}",
        node.cached_results()
    );
    assert!(node.host_veths()?.is_empty(), "{:?}", node.host_veths()?);
    assert!(!node.ns.nft_tables()?.contains(&node.masq_table()));
    let ruleset = String::from_utf8(node.ns.exec(&["nft", "-j", "list", "ruleset"])?.stdout)?;
    for gone in [
        ip1.as_str(),
        ip1b.as_str(),
        ip2_first.as_str(),
        ip2.as_str(),
        &HOST_PORT.to_string(),
    ] {
        assert!(!ruleset.contains(gone), "ruleset still mentions {gone}");
    }
    let left = nc_from(&client, NODE_UPLINK, HOST_PORT, "after-rm\n");
    assert!(
        !left.stdout.contains("after-rm"),
        "host port still forwarded"
    );
    assert!(
        wait_for(Duration::from_secs(10), || Ok(processes_with(&marker)
            .is_empty()
            && processes_with(&tmp).is_empty()))?,
        "container or conmon processes left: {:?} {:?}",
        processes_with(&marker),
        processes_with(&tmp)
    );
    for s in [&sandbox_b, &sandbox_c2] {
        assert!(!Path::new(s).exists(), "{s} left after rm");
    }
    for id in [&c1_id, &c2_id] {
        assert!(
            !Path::new("/run/runc").join(id).exists(),
            "runc state of {id} left"
        );
    }
    let cgroup_parent = node.cgroup_parent.clone();
    let network = node.network.clone();
    let ours = [node.ns.name.clone(), client.name.clone()];
    drop(node);
    drop(client);

    // Nothing left on the host: no namespaces (ours or podman's), mounts, cgroups or cache.
    let netns_after = run_netns_entries();
    for n in ours.iter().chain([&sandbox, &sandbox_b, &sandbox_c2]) {
        let n = n.trim_start_matches("/run/netns/");
        assert!(!netns_after.contains(n), "{n} left in /run/netns");
    }
    assert!(mounts_with(&tmp).is_empty(), "{:?}", mounts_with(&tmp));
    assert!(cgroups_with(&cgroup_parent).is_empty());
    let cache_left: Vec<_> = std::fs::read_dir(Path::new(CNI_CACHE).join("results"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&network))
        .collect();
    assert!(cache_left.is_empty(), "{cache_left:?}");
    assert!(!Path::new(&tmp).exists());
    Ok(())
}

#[test]
fn podman_dual_stack_containers_reach_each_other_over_ipv6() -> Result<()> {
    let node = PodmanNode::new(json!([
        [{"subnet": format!("{SUBNET_PREFIX}0/24")}],
        [{"subnet": V6_SUBNET}]
    ]))?;
    let tmp = node.dir.path().display().to_string();
    let marker = unique_sleep();
    node.run_echo("d1", &marker, &[])?;
    node.run_echo("d2", &marker, &[])?;

    // podman reports both families from pea-cni's result.
    let mut v6 = Vec::new();
    let mut all = BTreeSet::new();
    for name in ["d1", "d2"] {
        let n = &node.inspect(name)?["NetworkSettings"]["Networks"][&node.network];
        let ip4 = n["IPAddress"].as_str().unwrap_or_default().to_string();
        let ip6 = n["GlobalIPv6Address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(ip4.starts_with(SUBNET_PREFIX), "{n}");
        assert!(ip6.starts_with("fd00:231:7::"), "{n}");
        assert_eq!(n["IPv6Gateway"], V6_GATEWAY, "{n}");
        assert_eq!(n["GlobalIPv6PrefixLen"], 64, "{n}");
        all.insert(ip4);
        all.insert(ip6.clone());
        v6.push(ip6);
    }
    assert_eq!(node.leases(), all);
    let tables = node.ns.nft_tables()?;
    assert!(
        tables.contains(&format!("ip6 pea-cni-{}", node.network)),
        "{tables:?}"
    );

    // ping6 and TCP over IPv6 between the containers (busybox inside).
    let o = node.exec("d1", &["ping", "-6", "-c", "1", "-W", "2", &v6[1]]);
    assert!(o.success(), "d1 ping6 {}: {} {}", v6[1], o.stdout, o.stderr);
    let o = node.exec("d2", &["ping", "-6", "-c", "1", "-W", "2", &v6[0]]);
    assert!(o.success(), "d2 ping6 {}: {} {}", v6[0], o.stdout, o.stderr);
    let o = node.exec(
        "d1",
        &[
            "sh",
            "-c",
            &format!("echo over-v6 | nc -w 3 {} {ECHO_PORT}", v6[1]),
        ],
    );
    assert_eq!(o.stdout.trim(), "over-v6", "{}", o.stderr);

    // rm → both families released, both tables gone.
    let o = node.podman(&["rm", "-f", "-t", "0", "d1", "d2"]);
    ensure!(o.success(), "rm: {}", o.stderr);
    assert!(node.leases().is_empty(), "{:?}", node.leases());
    assert!(node.cached_results().is_empty());
    assert!(!node.ns.nft_tables()?.iter().any(|t| t.contains("pea-cni-")));
    assert!(node.host_veths()?.is_empty());
    assert!(
        wait_for(Duration::from_secs(10), || Ok(processes_with(&marker)
            .is_empty()
            && processes_with(&tmp).is_empty()))?,
        "processes left"
    );
    drop(node);
    assert!(mounts_with(&tmp).is_empty());
    Ok(())
}

#[test]
fn podman_surfaces_pea_cni_errors_and_a_failed_add_leaves_nothing() -> Result<()> {
    // A /30: the gateway .1 and one pod address .2.
    let node = PodmanNode::new(json!([[{"subnet": format!("{SUBNET_PREFIX}0/30")}]]))?;
    let tmp = node.dir.path().display().to_string();
    let marker = unique_sleep();
    node.run_echo("f1", &marker, &[])?;
    assert_eq!(node.ip("f1")?, format!("{SUBNET_PREFIX}2"));
    let netns_before = run_netns_entries();

    // The second container's ADD fails in pea-cni's IPAM; podman reports the plugin's message.
    let e = node.run_echo("f2", &marker, &[]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("no free address"), "{msg}");
    // Nothing of the failed attachment: no lease, no cache entry, no veth, no new netns.
    assert_eq!(node.leases(), [format!("{SUBNET_PREFIX}2")].into());
    assert_eq!(
        node.cached_results().len(),
        1,
        "{:?}",
        node.cached_results()
    );
    assert_eq!(node.host_veths()?.len(), 1);
    let new: Vec<String> = run_netns_entries()
        .difference(&netns_before)
        // podman 4.3 names its namespaces netns-UUID (the podman tests run one at a time, see
        // .config/nextest.toml); containerd's cni-UUID ones belong to other tests running now.
        .filter(|n| n.starts_with("netns-"))
        .cloned()
        .collect();
    assert!(
        new.is_empty(),
        "podman netns left after the failed ADD: {new:?}"
    );
    // The first container is unaffected.
    let o = node.exec("f1", &["ping", "-c", "1", "-W", "2", GATEWAY]);
    assert!(o.success(), "{}", o.stdout);

    // Once f1 is gone its address serves f2.
    let o = node.podman(&["rm", "-f", "-t", "0", "f1", "f2"]);
    ensure!(o.success(), "rm: {}", o.stderr);
    node.run_echo("f3", &marker, &[])?;
    assert_eq!(node.ip("f3")?, format!("{SUBNET_PREFIX}2"));
    let o = node.podman(&["rm", "-f", "-t", "0", "f3"]);
    ensure!(o.success(), "rm: {}", o.stderr);
    assert!(node.leases().is_empty());
    assert!(node.cached_results().is_empty());
    assert!(node.host_veths()?.is_empty());
    assert!(!node.ns.nft_tables()?.contains(&node.masq_table()));
    assert!(
        wait_for(Duration::from_secs(10), || Ok(processes_with(&marker)
            .is_empty()
            && processes_with(&tmp).is_empty()))?,
        "processes left"
    );
    drop(node);
    assert!(mounts_with(&tmp).is_empty());
    Ok(())
}
