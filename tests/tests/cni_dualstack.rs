//! pea-cni dual-stack (flannel's EnableIPv6 layout): host-local `ranges` with an IPv4 and an IPv6
//! range set give each pod one address of each family, gateways on the bridge for both, default
//! routes for both, and masquerade tables `ip` and `ip6 pea-cni-<network>`. Everything runs in
//! namespaces the test makes.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use anyhow::{Context, Result};
use pea_tests::{
    netlab::{veth, Netns},
    netlab_cni::{pea_cni_dir, Attachment, ConfList, PluginError},
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

const NET: &str = "dsnet";
const V4_SUBNET: &str = "10.244.9.0/24";
const V6_SUBNET: &str = "fd00:10:244:9::/64";
const V6_GATEWAY: &str = "fd00:10:244:9::1";

struct Node {
    ns: Netns,
    data: tempfile::TempDir,
}

fn node() -> Result<Node> {
    require_root();
    require_program("nsenter");
    require_program("nft");
    Ok(Node {
        ns: Netns::new("node")?,
        data: tempfile::tempdir()?,
    })
}

fn dual_stack(node: &Node) -> Result<ConfList> {
    with_ranges(
        node,
        json!([[{"subnet": V4_SUBNET}], [{"subnet": V6_SUBNET}]]),
    )
}

/// The dual-stack network's config with other IPAM `ranges` (same name, bridge and data dir).
fn with_ranges(node: &Node, ranges: Value) -> Result<ConfList> {
    let conf = json!({
        "type": "pea-cni",
        "bridge": "cni0",
        "mtu": 1400,
        "clusterCIDR": "10.244.0.0/16",
        "ipv6ClusterCIDR": "fd00:10:244::/48",
        "ipam": {
            "type": "host-local",
            "ranges": ranges,
            "dataDir": node.data.path(),
        }
    });
    Ok(ConfList::new(
        NET,
        "1.1.0",
        vec![conf],
        vec![pea_cni_dir()?],
        node.ns.path(),
    ))
}

fn leases(node: &Node) -> BTreeSet<String> {
    std::fs::read_dir(node.data.path().join(NET))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The result's addresses (without prefix) of each family: (IPv4, IPv6).
fn addresses(r: &Value) -> (String, String) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in r["ips"].as_array().expect("ips") {
        let a = ip["address"].as_str().unwrap().split('/').next().unwrap();
        if a.contains(':') {
            v6 = Some(a.to_string());
        } else {
            v4 = Some(a.to_string());
        }
    }
    (v4.expect("an IPv4 address"), v6.expect("an IPv6 address"))
}

/// A one-shot TCP server on `[::]:port` in `ns` that answers the first connection with the peer's
/// address and the bytes it received.
fn v6_whoami_once(ns: &Netns, port: u16) -> Result<std::thread::JoinHandle<Result<()>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = ns.spawn_in(move || {
        let l = TcpListener::bind(("::", port)).context("bind [::]")?;
        let _ = tx.send(());
        let (mut s, peer) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf)?;
        s.write_all(format!("{} ", peer.ip()).as_bytes())?;
        s.write_all(&buf[..n])?;
        Ok(())
    })?;
    rx.recv_timeout(Duration::from_secs(5))
        .context("v6 server did not start")?;
    Ok(h)
}

fn ping6(from: &Netns, to: &str) -> Result<bool> {
    Ok(from
        .exec(&["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", to])?
        .status
        .success())
}

#[test]
fn dual_stack_pods_get_both_families_and_del_releases_both() -> Result<()> {
    let node = node()?;
    let client = Netns::new("client")?;
    veth(&node.ns, "uplink0", &client, "eth0")?;
    node.ns
        .ip(&["addr", "add", "192.168.78.1/24", "dev", "uplink0"])?;
    node.ns
        .ip(&["addr", "add", "fd00:78::1/64", "dev", "uplink0", "nodad"])?;
    client.ip(&["addr", "add", "192.168.78.2/24", "dev", "eth0"])?;
    client.ip(&["addr", "add", "fd00:78::2/64", "dev", "eth0", "nodad"])?;
    let net = dual_stack(&node)?;
    let a = Netns::new("pod")?;
    let b = Netns::new("pod")?;

    let ra = net.add("pod-a", &a.path(), "eth0", &Value::Null)?;
    let rb = net.add("pod-b", &b.path(), "eth0", &Value::Null)?;
    let (a4, a6) = addresses(&ra);
    let (b4, b6) = addresses(&rb);
    assert!(
        a4.starts_with("10.244.9.") && b4.starts_with("10.244.9."),
        "{a4} {b4}"
    );
    assert!(a6.starts_with("fd00:10:244:9::") && b6.starts_with("fd00:10:244:9::"));
    assert_ne!(a6, b6);
    // Both addresses belong to the pod's interface, with their gateways; routes for both.
    for ip in ra["ips"].as_array().unwrap() {
        assert_eq!(ip["interface"], 2, "{ra}");
        let gw = ip["gateway"].as_str().unwrap();
        assert!(gw == "10.244.9.1" || gw == V6_GATEWAY, "{ra}");
    }
    let dsts: Vec<&str> = ra["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dst"].as_str().unwrap())
        .collect();
    assert_eq!(dsts, ["0.0.0.0/0", "::/0"], "{ra}");
    let expected: BTreeSet<String> = [&a4, &a6, &b4, &b6].into_iter().cloned().collect();
    assert_eq!(leases(&node), expected);

    // Inside the pod: the global IPv6 address (not tentative) and the default route via the
    // bridge's IPv6 gateway.
    let addrs = a.ip_json(&["-6", "addr", "show", "dev", "eth0", "scope", "global"])?;
    let info = &addrs[0]["addr_info"];
    assert_eq!(info[0]["local"], json!(a6), "{addrs}");
    assert!(info[0].get("tentative").is_none(), "{addrs}");
    let routes = a.ip_json(&["-6", "route", "show", "default"])?;
    assert_eq!(routes[0]["gateway"], V6_GATEWAY, "{routes}");
    let bridge6 = node
        .ns
        .ip_json(&["-6", "addr", "show", "dev", "cni0", "scope", "global"])?;
    assert!(bridge6.to_string().contains(V6_GATEWAY), "{bridge6}");

    // Pod ↔ pod over both families, and to both gateways.
    assert!(ping6(&a, &b6)?, "ping6 {b6} from pod a");
    assert!(ping6(&b, &a6)?, "ping6 {a6} from pod b");
    assert!(ping6(&a, V6_GATEWAY)?);
    assert!(a.ping(&b4)?, "ping {b4} from pod a");
    // TCP over IPv6 inside the cluster: no masquerade, the peer sees the pod address.
    let srv = v6_whoami_once(&a, 7100)?;
    let addr: SocketAddr = format!("[{a6}]:7100").parse()?;
    let got = String::from_utf8(b.tcp_echo(addr, b"hi6")?)?;
    assert_eq!(got, format!("{b6} hi6"));
    srv.join().unwrap()?;
    // Leaving the IPv6 cluster CIDR: masqueraded to the node's uplink address by the ip6 table.
    let tables = node.ns.nft_tables()?;
    assert!(tables.contains(&format!("ip pea-cni-{NET}")), "{tables:?}");
    assert!(tables.contains(&format!("ip6 pea-cni-{NET}")), "{tables:?}");
    let srv = v6_whoami_once(&client, 7101)?;
    let got = String::from_utf8(a.tcp_echo("[fd00:78::2]:7101".parse()?, b"out6")?)?;
    assert_eq!(got, "fd00:78::1 out6");
    srv.join().unwrap()?;

    // CHECK passes, then notices a missing IPv6 address.
    net.check("pod-a", "eth0", &Value::Null)?;
    a.ip(&["-6", "addr", "del", &format!("{a6}/64"), "dev", "eth0"])?;
    let e = net.check("pod-a", "eth0", &Value::Null).unwrap_err();
    let pe = e.downcast_ref::<PluginError>().expect("plugin error");
    assert_eq!(pe.code, 102, "{pe}");
    assert!(pe.msg.contains(&a6), "{pe}");

    // A retried ADD keeps both leases and restores the address.
    let again = net.add("pod-a", &a.path(), "eth0", &Value::Null)?;
    assert_eq!(addresses(&again), (a4.clone(), a6.clone()));
    net.check("pod-a", "eth0", &Value::Null)?;
    assert_eq!(leases(&node), expected);

    // DEL releases both families; the last one takes both masquerade tables.
    net.del(
        "pod-a",
        &a.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    let left: BTreeSet<String> = [&b4, &b6].into_iter().cloned().collect();
    assert_eq!(leases(&node), left);
    assert!(node
        .ns
        .nft_tables()?
        .contains(&format!("ip6 pea-cni-{NET}")));
    // GC with no valid attachment releases pod b (DEL semantics without a netns).
    net.gc(&[])?;
    net.forget("pod-b", "eth0");
    assert!(leases(&node).is_empty(), "{:?}", leases(&node));
    let tables = node.ns.nft_tables()?;
    assert!(!tables.iter().any(|t| t.contains("pea-cni-")), "{tables:?}");
    let veths: Vec<String> = node
        .ns
        .links()?
        .into_iter()
        .filter(|l| l.starts_with("veth"))
        .collect();
    assert!(veths.is_empty(), "{veths:?}");
    assert!(!b.links()?.contains(&"eth0".to_string()));
    Ok(())
}

#[test]
fn ipv6_only_network_and_bad_dual_stack_configs() -> Result<()> {
    let node = node()?;
    let conf = |ipam: Value| json!({"type": "pea-cni", "bridge": "cni6", "ipam": ipam});
    let list = |c: Value| -> Result<ConfList> {
        Ok(ConfList::new(
            NET,
            "1.0.0",
            vec![c],
            vec![pea_cni_dir()?],
            node.ns.path(),
        ))
    };
    let mut ipam = json!({"ranges": [[{"subnet": "fd00:66::/120"}]]});
    ipam["dataDir"] = json!(node.data.path());
    let net = list(conf(ipam.clone()))?;
    let pod = Netns::new("pod")?;
    let r = net.add("v6only", &pod.path(), "eth0", &Value::Null)?;
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 1, "{r}");
    assert_eq!(ips[0]["address"], "fd00:66::2/120", "{r}");
    // Only an ip6 masquerade table for an IPv6-only network.
    let tables = node.ns.nft_tables()?;
    assert_eq!(tables, vec![format!("ip6 pea-cni-{NET}")], "{tables:?}");
    assert!(ping6(&pod, "fd00:66::1")?);
    net.del(
        "v6only",
        &pod.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(node.ns.nft_tables()?.is_empty());
    assert!(leases(&node).is_empty());

    // Bad configs: named, code 7, nothing created.
    let links_before = node.ns.links()?;
    for (bad, needle) in [
        (
            json!({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00:1::/64"}]]}),
            "mixes IPv4 and IPv6",
        ),
        (
            json!({"ranges": [[{"subnet": "fd00:1::/64"}], [{"subnet": "fd00:1::/80"}]]}),
            "overlap",
        ),
        (
            json!({"ranges": [[{"subnet": "fd00:1::/64", "gateway": "fd00:2::1"}]]}),
            "gateway fd00:2::1",
        ),
        (
            json!({"ranges": [[{"subnet": "fd00:1::/64"}]], "routes": [{"dst": "::/0", "gw": "10.0.0.1"}]}),
            "families differ",
        ),
    ] {
        let mut ipam = bad;
        ipam["dataDir"] = json!(node.data.path());
        let pod = Netns::new("pod")?;
        let e = list(conf(ipam))?
            .add("bad", &pod.path(), "eth0", &Value::Null)
            .unwrap_err();
        let pe = e.downcast_ref::<PluginError>().expect("plugin error");
        assert_eq!(pe.code, 7, "{pe}");
        assert!(pe.msg.contains(needle), "{needle}: {pe}");
        assert!(!pod.links()?.contains(&"eth0".to_string()));
    }
    assert_eq!(node.ns.links()?, links_before);
    assert!(leases(&node).is_empty());
    Ok(())
}

#[test]
fn v6_range_exhaustion_rolls_back_the_v4_lease() -> Result<()> {
    let node = node()?;
    let conf = json!({
        "type": "pea-cni",
        "bridge": "cni0",
        "ipam": {
            "ranges": [[{"subnet": "10.245.1.0/24"}], [{"subnet": "fd00:67::/126"}]],
            "dataDir": node.data.path(),
        }
    });
    let net = ConfList::new(
        NET,
        "1.1.0",
        vec![conf],
        vec![pea_cni_dir()?],
        node.ns.path(),
    );
    // fd00:67::/126 has hosts ::1 (gateway) and ::2: one pod fits.
    let p1 = Netns::new("pod")?;
    net.add("one", &p1.path(), "eth0", &Value::Null)?;
    let p2 = Netns::new("pod")?;
    let e = net
        .add("two", &p2.path(), "eth0", &Value::Null)
        .unwrap_err();
    let pe = e.downcast_ref::<PluginError>().expect("plugin error");
    assert_eq!(pe.code, 100, "{pe}");
    // The IPv4 lease taken for "two" before the IPv6 set ran dry is given back.
    assert_eq!(leases(&node).len(), 2, "{:?}", leases(&node));
    assert!(!p2.links()?.contains(&"eth0".to_string()));
    net.gc(&[Attachment {
        container_id: "one".into(),
        ifname: "eth0".into(),
    }])?;
    assert_eq!(leases(&node).len(), 2);
    net.del(
        "one",
        &p1.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(leases(&node).is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

#[test]
fn a_family_dropped_from_the_config_loses_its_masquerade_table() -> Result<()> {
    let node = node()?;
    let net = dual_stack(&node)?;
    let a = Netns::new("pod")?;
    net.add("pod-a", &a.path(), "eth0", &Value::Null)?;
    let tables = node.ns.nft_tables()?;
    assert!(tables.contains(&format!("ip6 pea-cni-{NET}")), "{tables:?}");
    // The operator takes IPv6 out of the network: the next ADD removes the ip6 table in the same
    // nft transaction that refreshes the ip one.
    let v4_only = with_ranges(&node, json!([[{"subnet": V4_SUBNET}]]))?;
    let c = Netns::new("pod")?;
    v4_only.add("pod-c", &c.path(), "eth0", &Value::Null)?;
    let tables = node.ns.nft_tables()?;
    assert_eq!(tables, vec![format!("ip pea-cni-{NET}")], "{tables:?}");
    // The last lease takes the remaining table.
    v4_only.del(
        "pod-c",
        &c.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    net.del(
        "pod-a",
        &a.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(leases(&node).is_empty(), "{:?}", leases(&node));
    let tables = node.ns.nft_tables()?;
    assert!(!tables.iter().any(|t| t.contains("pea-cni-")), "{tables:?}");
    Ok(())
}
