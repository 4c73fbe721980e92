//! pea-cni as a runtime would drive it, inside namespaces the test makes: a "node" namespace
//! holds the bridge, pods are namespaces of their own. Nothing touches the root namespace.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Result;
use pea_tests::{
    netlab::{veth, Netns},
    netlab_cni::{
        invoke, pea_cni_dir, result_ip, Attachment, ConfList, PluginError, DEBIAN_CNI_DIR,
    },
    privileged::{require_program, require_root},
};
use serde_json::{json, Value};

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

fn pea_conf(node: &Node, subnet: &str) -> Value {
    json!({
        "type": "pea-cni",
        "bridge": "cni0",
        "mtu": 1400,
        "clusterCIDR": "10.244.0.0/16",
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": node.data.path()}
    })
}

fn dirs() -> Result<Vec<PathBuf>> {
    Ok(vec![pea_cni_dir()?, PathBuf::from(DEBIAN_CNI_DIR)])
}

fn list(node: &Node, version: &str, plugins: Vec<Value>) -> Result<ConfList> {
    Ok(ConfList::new(
        "podnet",
        version,
        plugins,
        dirs()?,
        node.ns.path(),
    ))
}

fn lease_files(node: &Node) -> Vec<String> {
    std::fs::read_dir(node.data.path().join("podnet"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn host_veths(node: &Node) -> Result<Vec<String>> {
    Ok(node
        .ns
        .links()?
        .into_iter()
        .filter(|l| l.starts_with("veth"))
        .collect())
}

/// No host veth, lease or nftables table of pea-cni is left on the node.
fn assert_nothing_left(node: &Node) -> Result<()> {
    assert!(host_veths(node)?.is_empty(), "{:?}", node.ns.links()?);
    assert!(lease_files(node).is_empty(), "{:?}", lease_files(node));
    assert!(
        node.ns.nft_tables()?.is_empty(),
        "{:?}",
        node.ns.nft_tables()?
    );
    Ok(())
}

/// Gives the node an uplink `uplink0` (`<prefix>.1/24`) to a new client namespace
/// (`<prefix>.2/24` on its eth0).
fn uplink(node: &Node, prefix: &str) -> Result<Netns> {
    let client = Netns::new("client")?;
    veth(&node.ns, "uplink0", &client, "eth0")?;
    node.ns
        .ip(&["addr", "add", &format!("{prefix}.1/24"), "dev", "uplink0"])?;
    client.ip(&["addr", "add", &format!("{prefix}.2/24"), "dev", "eth0"])?;
    Ok(client)
}

fn plugin_err(e: &anyhow::Error) -> &PluginError {
    e.downcast_ref::<PluginError>()
        .unwrap_or_else(|| panic!("not a plugin error: {e:#}"))
}

#[test]
fn add_connects_pods_on_one_node_and_del_releases_everything() -> Result<()> {
    require_program("/bin/busybox");
    let node = node()?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.1.0/24")])?;
    let (a, b) = (Netns::new("pod")?, Netns::new("pod")?);
    let ra = net.add("ca", &a.path(), "eth0", &Value::Null)?;
    let rb = net.add("cb", &b.path(), "eth0", &Value::Null)?;
    let (ipa, ipb) = (result_ip(&ra).unwrap(), result_ip(&rb).unwrap());
    assert_ne!(ipa, ipb);
    assert_eq!(ra["cniVersion"], "1.1.0");
    assert_eq!(ra["ips"][0]["gateway"], "10.244.1.1");
    assert_eq!(
        ra["interfaces"][2]["sandbox"],
        a.path().display().to_string()
    );
    assert_eq!(ra["interfaces"][2]["mtu"], 1400);
    assert_eq!(a.addrs("eth0")?, vec![format!("{ipa}/24")]);
    assert_eq!(node.ns.addrs("cni0")?, vec!["10.244.1.1/24".to_string()]);

    // MTU, hairpin and the bridge port, as the kernel reports them.
    let host = ra["interfaces"][1]["name"].as_str().unwrap().to_string();
    let d = node.ns.ip_json(&["-d", "link", "show", "dev", &host])?;
    assert_eq!(d[0]["mtu"], 1400);
    assert_eq!(d[0]["master"], "cni0");
    assert_eq!(d[0]["linkinfo"]["info_slave_data"]["hairpin"], true, "{d}");
    let pod_link = a.ip_json(&["link", "show", "dev", "eth0"])?;
    assert_eq!(pod_link[0]["mtu"], 1400);
    assert_eq!(pod_link[0]["address"], ra["interfaces"][2]["mac"]);

    // Pod to pod on the same node: ICMP and a TCP echo; pod to gateway.
    assert!(a.ping(&ipb)?, "{ipa} cannot ping {ipb}");
    assert!(b.ping("10.244.1.1")?, "pod cannot ping its gateway");
    let _srv = b.tcp_echo_server(7007)?;
    let addr: SocketAddr = format!("{ipb}:7007").parse()?;
    assert_eq!(a.tcp_echo(addr, b"hello pea")?, b"hello pea");
    // Inside the cluster CIDR nothing is masqueraded: b sees a's own address.
    let _who = b.tcp_whoami_server(7017)?;
    let got = a.tcp_echo(format!("{ipb}:7017").parse()?, b"me")?;
    assert_eq!(String::from_utf8(got)?, format!("{ipa} me"));

    // CHECK passes while everything is in place, and notices a missing address.
    net.check("ca", "eth0", &Value::Null)?;
    a.ip(&["addr", "flush", "dev", "eth0"])?;
    let e = net.check("ca", "eth0", &Value::Null).unwrap_err();
    assert_eq!(plugin_err(&e).code, 102, "{e:#}");

    // The node forwards, and bridged traffic goes through netfilter (br_netfilter), in its own
    // namespace only.
    let sysctl = |k: &str| -> Result<String> {
        let out = node.ns.exec(&["cat", &format!("/proc/sys/net/{k}")])?;
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    assert_eq!(sysctl("ipv4/ip_forward")?, "1");
    assert_eq!(sysctl("bridge/bridge-nf-call-iptables")?, "1");

    // The masquerade rule exists in pea's own table while pods exist.
    assert!(node
        .ns
        .nft_tables()?
        .contains(&"ip pea-cni-podnet".to_string()));

    net.del("ca", &a.path().display().to_string(), "eth0", &Value::Null)?;
    net.del("cb", &b.path().display().to_string(), "eth0", &Value::Null)?;
    assert!(host_veths(&node)?.is_empty(), "{:?}", node.ns.links()?);
    assert!(lease_files(&node).is_empty(), "{:?}", lease_files(&node));
    assert!(!node
        .ns
        .nft_tables()?
        .contains(&"ip pea-cni-podnet".to_string()));
    assert_eq!(a.links()?, vec!["lo".to_string()]);
    Ok(())
}

#[test]
fn del_is_idempotent_and_complete_when_the_netns_is_gone() -> Result<()> {
    let node = node()?;
    let net = list(&node, "1.0.0", vec![pea_conf(&node, "10.244.2.0/24")])?;
    let pod = Netns::new("pod")?;
    let path = pod.path().display().to_string();
    net.add("gone", &pod.path(), "eth0", &Value::Null)?;
    drop(pod); // the runtime removed the sandbox's namespace before DEL
    net.del("gone", &path, "eth0", &Value::Null)?;
    net.del("gone", "", "eth0", &Value::Null)?;
    net.del("never-added", "", "eth0", &Value::Null)?;
    assert!(host_veths(&node)?.is_empty());
    assert!(lease_files(&node).is_empty());
    assert!(
        node.ns.nft_tables()?.is_empty(),
        "{:?}",
        node.ns.nft_tables()?
    );
    Ok(())
}

#[test]
fn retried_add_reuses_the_lease() -> Result<()> {
    let node = node()?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.3.0/24")])?;
    let pod = Netns::new("pod")?;
    let first = net.add("retry", &pod.path(), "eth0", &Value::Null)?;
    // A runtime that lost the result retries ADD: the attachment is rebuilt from a clean slate
    // (the old host veth, and with it the pod side, is replaced) and keeps its address.
    let second = net.add("retry", &pod.path(), "eth0", &Value::Null)?;
    assert_eq!(result_ip(&first), result_ip(&second));
    assert_eq!(lease_files(&node).len(), 1);
    assert_eq!(host_veths(&node)?.len(), 1);
    net.del(
        "retry",
        &pod.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(lease_files(&node).is_empty());
    Ok(())
}

#[test]
fn gc_releases_attachments_the_runtime_no_longer_knows() -> Result<()> {
    let node = node()?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.4.0/24")])?;
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    for (i, p) in pods.iter().enumerate() {
        net.add(&format!("gc{i}"), &p.path(), "eth0", &Value::Null)?;
    }
    assert_eq!(lease_files(&node).len(), 3);
    // A stray host veth on the bridge with pea's naming and this network's tag but no lease
    // (crash debris).
    node.ns.ip(&[
        "link",
        "add",
        "veth0123456789a",
        "type",
        "veth",
        "peer",
        "name",
        "strayp",
    ])?;
    node.ns.ip(&[
        "link",
        "set",
        "veth0123456789a",
        "master",
        "cni0",
        "alias",
        "pea-cni/podnet/crashed/eth0",
    ])?;
    net.gc(&[Attachment {
        container_id: "gc0".into(),
        ifname: "eth0".into(),
    }])?;
    assert_eq!(lease_files(&node).len(), 1);
    assert_eq!(host_veths(&node)?.len(), 1, "{:?}", node.ns.links()?);
    assert!(pods[1].links()? == vec!["lo".to_string()]);
    net.check("gc0", "eth0", &Value::Null)?;
    net.gc(&[])?;
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

#[test]
fn concurrent_adds_never_share_an_address() -> Result<()> {
    let node = node()?;
    let net = std::sync::Arc::new(list(
        &node,
        "1.1.0",
        vec![pea_conf(&node, "10.244.5.0/24")],
    )?);
    let pods: Vec<Netns> = (0..16).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    let ips: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let net = net.clone();
                let path = p.path();
                s.spawn(move || net.add(&format!("cc{i}"), &path, "eth0", &Value::Null))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().map(|r| result_ip(&r).unwrap()))
            .collect::<Result<_>>()
    })?;
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 16, "{ips:?}");
    assert_eq!(lease_files(&node).len(), 16);
    for (i, p) in pods.iter().enumerate() {
        net.del(
            &format!("cc{i}"),
            &p.path().display().to_string(),
            "eth0",
            &Value::Null,
        )?;
    }
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    Ok(())
}

#[test]
fn bad_inputs_get_spec_errors_and_leave_nothing() -> Result<()> {
    let node = node()?;
    let dirs = dirs()?;
    let pod = Netns::new("pod")?;
    let p = pod.path().display().to_string();
    let conf = |extra: Value| {
        let mut c = pea_conf(&node, "10.244.6.0/30");
        c["name"] = json!("podnet");
        c["cniVersion"] = json!("1.1.0");
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let env = |id: &'static str, ns: &str| -> Vec<(&'static str, String)> {
        vec![
            ("CNI_CONTAINERID", id.into()),
            ("CNI_NETNS", ns.into()),
            ("CNI_IFNAME", "eth0".into()),
        ]
    };
    let call = |cmd: &str, e: &[(&'static str, String)], c: &Value| {
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        invoke(&dirs, &node.ns.path(), "pea-cni", cmd, &e, c)
    };

    // A namespace that does not exist: code 3 (unknown container).
    let e = call(
        "ADD",
        &env("x1", "/run/netns/pea-does-not-exist"),
        &conf(json!({})),
    )
    .unwrap_err();
    assert_eq!(plugin_err(&e).code, 3, "{e:#}");
    // A path that is not a namespace.
    let e = call("ADD", &env("x1", "/etc/hostname"), &conf(json!({}))).unwrap_err();
    assert_eq!(plugin_err(&e).code, 3, "{e:#}");
    // Missing CNI_IFNAME: code 4.
    let e = call(
        "ADD",
        &[("CNI_CONTAINERID", "x".into()), ("CNI_NETNS", p.clone())],
        &conf(json!({})),
    )
    .unwrap_err();
    assert_eq!(plugin_err(&e).code, 4, "{e:#}");
    // A delegated IPAM type pea-cni does not implement: code 2.
    let e = call(
        "ADD",
        &env("x1", &p),
        &conf(json!({"ipam": {"type": "dhcp"}})),
    )
    .unwrap_err();
    assert_eq!(plugin_err(&e).code, 2, "{e:#}");
    // An unsupported version: code 1.
    let e = call("ADD", &env("x1", &p), &conf(json!({"cniVersion": "0.2.0"}))).unwrap_err();
    assert_eq!(plugin_err(&e).code, 1, "{e:#}");
    // The interface name is taken in the pod: error, and the lease and host veth are rolled back.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ])?;
    let e = call("ADD", &env("x1", &p), &conf(json!({}))).unwrap_err();
    assert!(plugin_err(&e).msg.contains("already exists"), "{e:#}");
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    pod.ip(&["link", "del", "eth0"])?;
    // A /30 has one address besides the gateway: the second ADD reports exhaustion (code 100).
    let pod2 = Netns::new("pod")?;
    call("ADD", &env("x1", &p), &conf(json!({})))?;
    let e = call(
        "ADD",
        &env("x2", &pod2.path().display().to_string()),
        &conf(json!({})),
    )
    .unwrap_err();
    assert_eq!(plugin_err(&e).code, 100, "{e:#}");
    assert_eq!(lease_files(&node).len(), 1);
    assert_eq!(pod2.links()?, vec!["lo".to_string()]);
    // STATUS reports the exhausted range as "not available" (50), and is fine once freed.
    let e = call("STATUS", &[], &conf(json!({}))).unwrap_err();
    assert_eq!(plugin_err(&e).code, 50, "{e:#}");
    call("DEL", &env("x1", &p), &conf(json!({})))?;
    call("STATUS", &[], &conf(json!({})))?;
    // A subnet file that is not there yet: STATUS 50, ADD 11 (try again later).
    let mut c = conf(json!({"subnetFile": "/nonexistent/subnet.env"}));
    c["ipam"] = json!({"dataDir": node.data.path()});
    assert_eq!(plugin_err(&call("STATUS", &[], &c).unwrap_err()).code, 50);
    assert_eq!(
        plugin_err(&call("ADD", &env("x3", &p), &c).unwrap_err()).code,
        11
    );
    // VERSION.
    let v = call("VERSION", &[], &json!({"cniVersion": "1.0.0"}))?.unwrap();
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    Ok(())
}

#[test]
fn chains_after_loopback_and_before_portmap() -> Result<()> {
    require_program("iptables");
    let node = node()?;
    let pod = Netns::new("pod")?;
    // The node's uplink: a veth to a client namespace on 192.168.77.0/24.
    let client = uplink(&node, "192.168.77")?;

    let net = list(
        &node,
        "1.0.0",
        vec![
            json!({"type": "loopback"}),
            pea_conf(&node, "10.244.7.0/24"),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ],
    )?;
    let rules_before = node.ns.nft_rule_count()?;
    let runtime =
        json!({"portMappings": [{"hostPort": 18080, "containerPort": 7008, "protocol": "tcp"}]});
    let r = net.add("pm", &pod.path(), "eth0", &runtime)?;
    // loopback's interface comes first; pea-cni's indices are shifted past it.
    assert_eq!(r["interfaces"][0]["name"], "lo", "{r}");
    let eth0 = r["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .position(|i| i["name"] == "eth0")
        .unwrap();
    let ip = result_ip(&r).unwrap();
    let ours = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"] == format!("{ip}/24"))
        .unwrap();
    assert_eq!(ours["interface"], eth0, "{r}");
    assert!(pod.ip_json(&["link", "show", "dev", "lo"])?[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&json!("UP")));

    let _srv = pod.tcp_echo_server(7008)?;
    let got = client.tcp_echo("192.168.77.1:18080".parse()?, b"via portmap")?;
    assert_eq!(got, b"via portmap");

    // Leaving the cluster CIDR, the pod's traffic is masqueraded to the node's address.
    let _who = client.tcp_whoami_server(7010)?;
    let got = pod.tcp_echo("192.168.77.2:7010".parse()?, b"who")?;
    assert_eq!(String::from_utf8(got)?, "192.168.77.1 who");
    // (No CHECK through this list: Debian's portmap 1.1.1 fails CHECK whenever the result holds
    // an IPv6 address, here loopback's ::1, looking for an ip6tables chain it never made.)

    net.del("pm", &pod.path().display().to_string(), "eth0", &runtime)?;
    let ruleset = String::from_utf8(node.ns.exec(&["nft", "-j", "list", "ruleset"])?.stdout)?;
    assert!(
        !ruleset.contains(&ip),
        "rules still mention {ip}: {ruleset}"
    );
    assert!(
        !ruleset.contains("18080"),
        "rules still mention the host port: {ruleset}"
    );
    assert!(!node
        .ns
        .nft_tables()?
        .contains(&"ip pea-cni-podnet".to_string()));
    // portmap keeps its (empty) top-level chains and jumps; nothing per pod is left.
    assert_eq!(
        node.ns.nft_rule_count()?,
        rules_before + PORTMAP_LEFTOVER_RULES,
        "{ruleset}"
    );
    assert!(lease_files(&node).is_empty());
    Ok(())
}

#[test]
fn ip_masq_off_installs_no_nftables_state() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.8.0/24");
    conf["ipMasq"] = json!(false);
    let net = list(&node, "1.1.0", vec![conf])?;
    let pod = Netns::new("pod")?;
    let r = net.add("nomasq", &pod.path(), "eth0", &Value::Null)?;
    assert!(result_ip(&r).is_some());
    assert!(
        node.ns.nft_tables()?.is_empty(),
        "{:?}",
        node.ns.nft_tables()?
    );
    net.check("nomasq", "eth0", &Value::Null)?;
    net.del(
        "nomasq",
        &pod.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    net.gc(&[])?;
    assert!(node.ns.nft_tables()?.is_empty());
    assert!(lease_files(&node).is_empty());
    Ok(())
}

/// The config flannel's CNI plugin hands the bridge plugin from its stock conflist (cniVersion
/// 0.3.1, delegate `hairpinMode` + `isDefaultGateway`, host-local ranges with a route to the
/// cluster network, `ipMasq: false` because flanneld masquerades) works as is with pea-cni.
#[test]
fn flannel_bridge_delegate_config_at_0_3_1_works() -> Result<()> {
    let node = node()?;
    let conf = json!({
        "type": "pea-cni",
        "mtu": 1450,
        "hairpinMode": true,
        "ipMasq": false,
        "isGateway": true,
        "isDefaultGateway": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.244.11.0/24"}]],
            "routes": [{"dst": "10.244.0.0/16"}],
            "dataDir": node.data.path()
        }
    });
    let net = list(&node, "0.3.1", vec![conf.clone()])?;
    let pod = Netns::new("pod")?;
    let r = net.add("fl1", &pod.path(), "eth0", &Value::Null)?;
    assert_eq!(r["cniVersion"], "0.3.1", "{r}");
    assert_eq!(r["ips"][0]["version"], "4", "{r}");
    assert_eq!(r["ips"][0]["address"], "10.244.11.2/24", "{r}");
    assert!(
        r["interfaces"][2].get("mtu").is_none(),
        "mtu is a 1.1 field: {r}"
    );
    // Both the configured cluster route and the default route (isDefaultGateway) via the
    // bridge's gateway.
    let routes = pod.ip_json(&["-4", "route", "show"])?;
    let via = |dst: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["dst"] == dst)
            .map(|x| x["gateway"].clone())
    };
    assert_eq!(via("default"), Some(json!("10.244.11.1")), "{routes}");
    assert_eq!(via("10.244.0.0/16"), Some(json!("10.244.11.1")), "{routes}");
    assert!(pod.ping("10.244.11.1")?);
    assert!(node.ns.nft_tables()?.is_empty(), "ipMasq false");
    // 0.3.1 has no CHECK (came with 0.4.0) and no STATUS (1.1.0): code 1.
    let e = net.check("fl1", "eth0", &Value::Null).unwrap_err();
    assert_eq!(plugin_err(&e).code, 1, "{e:#}");
    let mut sc = conf.clone();
    sc["name"] = json!("podnet");
    sc["cniVersion"] = json!("0.3.1");
    let e = invoke(&dirs()?, &node.ns.path(), "pea-cni", "STATUS", &[], &sc).unwrap_err();
    assert_eq!(plugin_err(&e).code, 1, "{e:#}");
    net.del(
        "fl1",
        &pod.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    Ok(())
}

/// GC as libcni sends it: the list under the draft key `cni.dev/attachments` too, and `null`
/// for an empty list (a Go nil slice) — both honoured; an absent list is refused.
#[test]
fn gc_takes_the_draft_key_and_a_null_list() -> Result<()> {
    let node = node()?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.12.0/24")])?;
    let (a, b) = (Netns::new("pod")?, Netns::new("pod")?);
    net.add("ga", &a.path(), "eth0", &Value::Null)?;
    net.add("gb", &b.path(), "eth0", &Value::Null)?;
    let mut gc = pea_conf(&node, "10.244.12.0/24");
    gc["name"] = json!("podnet");
    gc["cniVersion"] = json!("1.1.0");
    let call = |c: &Value| invoke(&dirs()?, &node.ns.path(), "pea-cni", "GC", &[], c);
    let e = call(&gc).unwrap_err();
    assert_eq!(plugin_err(&e).code, 7, "{e:#}");
    assert_eq!(lease_files(&node).len(), 2);
    gc["cni.dev/attachments"] = json!([{"containerID": "ga", "ifname": "eth0"}]);
    call(&gc)?;
    assert_eq!(lease_files(&node).len(), 1, "gb released, ga kept");
    assert_eq!(a.links()?.len(), 2, "ga's eth0 kept");
    gc["cni.dev/valid-attachments"] = Value::Null;
    call(&gc)?;
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

/// A network config beyond the plugin's stdin limit (16 MiB), and a relative or `..` dataDir,
/// are refused with code 7 before anything is made.
#[test]
fn huge_stdin_and_bad_data_dirs_are_refused_and_leave_nothing() -> Result<()> {
    use std::io::{Read, Write};
    let node = node()?;
    let pod = Netns::new("pod")?;
    let p = pod.path().display().to_string();
    let mut conf = pea_conf(&node, "10.244.13.0/24");
    conf["name"] = json!("podnet");
    conf["cniVersion"] = json!("1.1.0");
    conf["pad"] = json!("x".repeat(17 << 20));
    let mut child = std::process::Command::new("nsenter")
        .arg(format!("--net={}", node.ns.path().display()))
        .arg(pea_cni_dir()?.join("pea-cni"))
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "big")
        .env("CNI_NETNS", &p)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", pea_cni_dir()?)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let bytes = conf.to_string().into_bytes();
    // The plugin stops reading at the limit: the rest of the write fails with EPIPE.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out)?;
    let status = child.wait()?;
    writer.join().unwrap();
    assert!(!status.success(), "{out}");
    let v: Value = serde_json::from_str(out.trim())?;
    assert_eq!(v["code"], 7, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("larger than"), "{v}");
    assert_eq!(pod.links()?, vec!["lo".to_string()]);
    assert!(!node.data.path().join("podnet").exists());
    assert!(host_veths(&node)?.is_empty());

    let env = [
        ("CNI_CONTAINERID", "dd"),
        ("CNI_NETNS", p.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    // `..` that resolves back into the test's own temp dir: nothing outside it even if unfixed.
    let dotdot = node
        .data
        .path()
        .join("..")
        .join(node.data.path().file_name().unwrap());
    for bad in ["pea-cni-relative-leases", dotdot.to_str().unwrap()] {
        let mut c = pea_conf(&node, "10.244.13.0/24");
        c["name"] = json!("podnet");
        c["cniVersion"] = json!("1.1.0");
        c["ipam"]["dataDir"] = json!(bad);
        for verb in ["ADD", "DEL"] {
            let e = invoke(&dirs()?, &node.ns.path(), "pea-cni", verb, &env, &c).unwrap_err();
            assert_eq!(plugin_err(&e).code, 7, "{verb} {bad}: {e:#}");
            assert!(plugin_err(&e).msg.contains("dataDir"), "{e:#}");
        }
    }
    assert_eq!(pod.links()?, vec!["lo".to_string()]);
    assert!(host_veths(&node)?.is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

/// Static addresses and MACs (capabilities `ips`/`mac` through runtimeConfig, and CNI_ARGS
/// `IP=`/`MAC=`) as host-local and bridge honour them; a taken or out-of-range request fails
/// cleanly.
#[test]
fn requested_ips_and_macs_are_honoured() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.14.0/24");
    conf["capabilities"] = json!({"ips": true, "mac": true});
    let net = list(&node, "1.1.0", vec![conf.clone()])?;
    let (a, b, c) = (Netns::new("pod")?, Netns::new("pod")?, Netns::new("pod")?);
    let rt = json!({"ips": ["10.244.14.77/24"], "mac": "0a:58:0a:f4:0e:4d"});
    let ra = net.add("sa", &a.path(), "eth0", &rt)?;
    assert_eq!(ra["ips"][0]["address"], "10.244.14.77/24", "{ra}");
    assert_eq!(ra["interfaces"][2]["mac"], "0a:58:0a:f4:0e:4d", "{ra}");
    assert_eq!(a.addrs("eth0")?, vec!["10.244.14.77/24".to_string()]);
    assert_eq!(
        a.ip_json(&["link", "show", "dev", "eth0"])?[0]["address"],
        "0a:58:0a:f4:0e:4d"
    );
    net.check("sa", "eth0", &rt)?;
    // The same address for another pod: code 103, and nothing of the failed ADD is left.
    let e = net.add("sb", &b.path(), "eth0", &rt).unwrap_err();
    assert_eq!(plugin_err(&e).code, 103, "{e:#}");
    assert_eq!(b.links()?, vec!["lo".to_string()]);
    assert_eq!(lease_files(&node), vec!["10.244.14.77".to_string()]);
    // Outside the network's ranges: code 7.
    let e = net
        .add("sb", &b.path(), "eth0", &json!({"ips": ["10.99.0.5"]}))
        .unwrap_err();
    assert_eq!(plugin_err(&e).code, 7, "{e:#}");
    // CNI_ARGS IP= and MAC= (no capability needed), with the gateway refused.
    let mut plain = conf.clone();
    plain["name"] = json!("podnet");
    plain["cniVersion"] = json!("1.1.0");
    let cp = c.path().display().to_string();
    let env = |args: &'static str| {
        vec![
            ("CNI_CONTAINERID", "sc"),
            ("CNI_NETNS", cp.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
        ]
    };
    let e = invoke(
        &dirs()?,
        &node.ns.path(),
        "pea-cni",
        "ADD",
        &env("IgnoreUnknown=1;IP=10.244.14.1"),
        &plain,
    )
    .unwrap_err();
    assert_eq!(plugin_err(&e).code, 103, "gateway: {e:#}");
    let rc = invoke(
        &dirs()?,
        &node.ns.path(),
        "pea-cni",
        "ADD",
        &env("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.244.14.90;MAC=0a:58:0a:f4:0e:5a"),
        &plain,
    )?
    .unwrap();
    assert_eq!(rc["ips"][0]["address"], "10.244.14.90/24", "{rc}");
    assert_eq!(rc["interfaces"][2]["mac"], "0a:58:0a:f4:0e:5a", "{rc}");
    invoke(
        &dirs()?,
        &node.ns.path(),
        "pea-cni",
        "DEL",
        &env("IgnoreUnknown=1"),
        &plain,
    )?;
    net.del("sa", &a.path().display().to_string(), "eth0", &rt)?;
    assert!(lease_files(&node).is_empty());
    assert!(host_veths(&node)?.is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

/// CNI_NETNS naming the namespace the plugin runs in (the node's) is refused with libcni's
/// ErrInvalidNetNS (8) before anything is made: otherwise the "pod" interface, its address and
/// its default route would land on the node.
#[test]
fn add_into_the_plugins_own_namespace_is_refused() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.15.0/24");
    conf["name"] = json!("podnet");
    conf["cniVersion"] = json!("1.1.0");
    let links_before = node.ns.links()?;
    let own = node.ns.path().display().to_string();
    let env = [
        ("CNI_CONTAINERID", "own"),
        ("CNI_NETNS", own.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let e = invoke(&dirs()?, &node.ns.path(), "pea-cni", "ADD", &env, &conf).unwrap_err();
    assert_eq!(plugin_err(&e).code, 8, "{e:#}");
    assert!(
        plugin_err(&e).msg.contains("own network namespace"),
        "{e:#}"
    );
    assert_eq!(node.ns.links()?, links_before);
    assert!(lease_files(&node).is_empty());
    assert!(node.ns.nft_tables()?.is_empty());
    Ok(())
}

/// The rules Debian's portmap (1.1.1, through iptables-nft) leaves in `ip nat` after its last DEL:
/// the jumps into its top-level chains (PREROUTING and OUTPUT to CNI-HOSTPORT-DNAT, POSTROUTING
/// to CNI-HOSTPORT-MASQ), the masquerade of marked traffic in CNI-HOSTPORT-MASQ and the mark
/// rule of CNI-HOSTPORT-SETMARK. Nothing per pod.
const PORTMAP_LEFTOVER_RULES: usize = 5;

fn host_alias(node: &Node, veth: &str) -> Result<String> {
    let d = node.ns.ip_json(&["link", "show", "dev", veth])?;
    Ok(d[0]["ifalias"].as_str().unwrap_or_default().to_string())
}

fn leases_of(node: &Node, network: &str) -> Vec<String> {
    std::fs::read_dir(node.data.path().join(network))
        .map(|d| {
            let mut v: Vec<String> = d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

/// Lease files ADD cannot read (garbage, host-local's own format) do not block the network; DEL
/// and GC release everything they can and report every failure together at the end.
#[test]
fn bad_lease_files_block_nothing_and_gc_keeps_going_past_failures() -> Result<()> {
    require_program("chattr");
    let node = node()?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.16.0/24")])?;
    let pods: Vec<Netns> = (0..4).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    net.add("bl0", &pods[0].path(), "eth0", &Value::Null)?;
    let dir = node.data.path().join("podnet");
    // Garbage, and a lease in host-local's own format (containerID CRLF ifname).
    std::fs::write(dir.join("10.244.16.200"), b"{garbage")?;
    std::fs::write(dir.join("10.244.16.201"), b"hostlocal1\r\neth0")?;
    let mut ips = Vec::new();
    for (i, p) in pods.iter().enumerate().skip(1) {
        let r = net.add(&format!("bl{i}"), &p.path(), "eth0", &Value::Null)?;
        ips.push(result_ip(&r).unwrap());
    }
    assert!(
        !ips.iter()
            .any(|ip| ip.ends_with(".200") || ip.ends_with(".201")),
        "{ips:?}"
    );
    let mut status = pea_conf(&node, "10.244.16.0/24");
    status["name"] = json!("podnet");
    status["cniVersion"] = json!("1.1.0");
    invoke(&dirs()?, &node.ns.path(), "pea-cni", "STATUS", &[], &status)?;
    net.del(
        "bl0",
        &pods[0].path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert_eq!(
        leases_of(&node, "podnet").len(),
        5,
        "{:?}",
        leases_of(&node, "podnet")
    );

    // bl1's lease (the lowest address left) cannot be removed: GC still releases bl2, bl3 and
    // host-local's lease, deletes every veth, and names the lease it could not release.
    let stuck = dir.join(&ips[0]);
    run_chattr("+i", &stuck)?;
    let gc = net.gc(&[]);
    run_chattr("-i", &stuck)?;
    let e = gc.unwrap_err();
    assert!(plugin_err(&e).msg.contains(&ips[0]), "{e:#}");
    let mut left = vec![ips[0].clone(), "10.244.16.200".to_string()];
    left.sort(); // as strings, like leases_of
    assert_eq!(leases_of(&node, "podnet"), left);
    assert!(host_veths(&node)?.is_empty(), "{:?}", node.ns.links()?);
    // The unreadable file still counts as a lease: the masquerade table stays until it goes.
    net.gc(&[])?;
    assert_eq!(
        leases_of(&node, "podnet"),
        vec!["10.244.16.200".to_string()]
    );
    assert!(node
        .ns
        .nft_tables()?
        .contains(&"ip pea-cni-podnet".to_string()));
    std::fs::remove_file(dir.join("10.244.16.200"))?;
    net.gc(&[])?;
    assert!(
        node.ns.nft_tables()?.is_empty(),
        "{:?}",
        node.ns.nft_tables()?
    );
    Ok(())
}

fn run_chattr(flag: &str, path: &std::path::Path) -> Result<()> {
    pea_tests::netlab::run("chattr", &[flag, &path.display().to_string()])?;
    Ok(())
}

/// GC is per network (spec 1.1): two networks share the bridge cni0; GC of one removes only its
/// own attachments and the orphan veths tagged with its name, never the other network's pods or
/// untagged links.
#[test]
fn gc_is_limited_to_its_own_network() -> Result<()> {
    let node = node()?;
    let mk = |name: &str, subnet: &str| -> Result<ConfList> {
        Ok(ConfList::new(
            name,
            "1.1.0",
            vec![pea_conf(&node, subnet)],
            dirs()?,
            node.ns.path(),
        ))
    };
    let (neta, netb) = (mk("neta", "10.244.17.0/24")?, mk("netb", "10.244.18.0/24")?);
    let (pa, pb) = (Netns::new("pod")?, Netns::new("pod")?);
    let ra = neta.add("ga", &pa.path(), "eth0", &Value::Null)?;
    netb.add("gb", &pb.path(), "eth0", &Value::Null)?;
    let host_a = ra["interfaces"][1]["name"].as_str().unwrap().to_string();
    assert_eq!(host_alias(&node, &host_a)?, "pea-cni/neta/ga/eth0");
    // Orphans on the bridge: one tagged for neta (crash debris), one untagged (not ours to judge).
    for (name, peer, alias) in [
        (
            "veth00000000001",
            "stray1",
            Some("pea-cni/neta/crashed/eth0"),
        ),
        ("veth00000000002", "stray2", None),
    ] {
        node.ns
            .ip(&["link", "add", name, "type", "veth", "peer", "name", peer])?;
        node.ns.ip(&["link", "set", name, "master", "cni0"])?;
        if let Some(a) = alias {
            node.ns.ip(&["link", "set", name, "alias", a])?;
        }
    }
    neta.gc(&[])?;
    assert!(leases_of(&node, "neta").is_empty());
    assert_eq!(leases_of(&node, "netb").len(), 1);
    let veths = host_veths(&node)?;
    assert!(
        !veths.contains(&host_a) && !veths.contains(&"veth00000000001".to_string()),
        "{veths:?}"
    );
    assert!(
        veths.contains(&"veth00000000002".to_string()),
        "untagged: {veths:?}"
    );
    assert_eq!(
        veths.len(),
        2,
        "netb's pod and the untagged link: {veths:?}"
    );
    netb.check("gb", "eth0", &Value::Null)?;
    assert!(pb.ping("10.244.18.1")?, "netb's pod lost its link");
    node.ns.ip(&["link", "del", "veth00000000002"])?;
    netb.del("gb", &pb.path().display().to_string(), "eth0", &Value::Null)?;
    assert!(leases_of(&node, "netb").is_empty());
    assert_nothing_left(&node)
}

/// The masquerade rule is verified on every ADD: a table flushed away (`nft flush ruleset`) is
/// reinstalled by the next ADD, and a changed cluster CIDR replaces the rule.
#[test]
fn masquerade_is_reinstalled_after_a_flush_and_follows_the_config() -> Result<()> {
    let node = node()?;
    let client = uplink(&node, "192.168.78")?;
    let _who = client.tcp_whoami_server(7011)?;
    let net = list(&node, "1.1.0", vec![pea_conf(&node, "10.244.19.0/24")])?;
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("pod")).collect::<Result<_>>()?;
    net.add("mq0", &pods[0].path(), "eth0", &Value::Null)?;
    net.check("mq0", "eth0", &Value::Null)?;
    node.ns.exec(&["nft", "flush", "ruleset"])?;
    assert!(node.ns.nft_tables()?.is_empty());
    // CHECK notices (without running nft), and the next ADD repairs it.
    let e = net.check("mq0", "eth0", &Value::Null).unwrap_err();
    assert_eq!(plugin_err(&e).code, 102, "{e:#}");
    assert!(plugin_err(&e).msg.contains("is missing"), "{e:#}");
    net.add("mq1", &pods[1].path(), "eth0", &Value::Null)?;
    net.check("mq0", "eth0", &Value::Null)?;
    assert!(node
        .ns
        .nft_tables()?
        .contains(&"ip pea-cni-podnet".to_string()));
    let got = pods[1].tcp_echo("192.168.78.2:7011".parse()?, b"who")?;
    assert_eq!(
        String::from_utf8(got)?,
        "192.168.78.1 who",
        "masqueraded again"
    );
    let cluster = || -> Result<String> {
        let out = node
            .ns
            .exec(&["nft", "-j", "list", "table", "ip", "pea-cni-podnet"])?;
        // Re-serialised compactly (keys sorted) so the checks below do not depend on nft's
        // spacing.
        Ok(serde_json::from_slice::<Value>(&out.stdout)?.to_string())
    };
    assert!(
        cluster()?.contains(r#"{"addr":"10.244.0.0","len":16}"#),
        "{}",
        cluster()?
    );
    // The cluster CIDR changes: the next ADD replaces the rule (no pod had to leave).
    let mut wider = pea_conf(&node, "10.244.19.0/24");
    wider["clusterCIDR"] = json!("10.0.0.0/8");
    let net2 = list(&node, "1.1.0", vec![wider])?;
    net2.add("mq2", &pods[2].path(), "eth0", &Value::Null)?;
    let rules = cluster()?;
    assert!(rules.contains(r#"{"addr":"10.0.0.0","len":8}"#), "{rules}");
    assert!(!rules.contains(r#""addr":"10.244.0.0""#), "{rules}");
    assert_eq!(node.ns.nft_rule_count()?, 1, "{rules}");
    net2.check("mq2", "eth0", &Value::Null)?;
    // The old config's CHECK sees that the installed rule is not the one it would make.
    let e = net.check("mq1", "eth0", &Value::Null).unwrap_err();
    assert!(
        plugin_err(&e)
            .msg
            .contains("not installed from this config"),
        "{e:#}"
    );
    for (i, p) in pods.iter().enumerate() {
        net2.del(
            &format!("mq{i}"),
            &p.path().display().to_string(),
            "eth0",
            &Value::Null,
        )?;
    }
    assert_nothing_left(&node)
}

/// A failure late in ADD (a route IPAM lists whose gateway is unreachable from the pod, after
/// the lease, the masquerade table and the veth exist) rolls everything back.
#[test]
fn a_late_add_failure_rolls_back_veth_lease_and_masquerade() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.20.0/24");
    conf["ipam"]["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.77.0.1"}]);
    let net = list(&node, "1.1.0", vec![conf])?;
    let pod = Netns::new("pod")?;
    let e = net
        .add("late", &pod.path(), "eth0", &Value::Null)
        .unwrap_err();
    assert_eq!(plugin_err(&e).code, 101, "{e:#}");
    assert!(plugin_err(&e).msg.contains("10.99.0.0/16"), "{e:#}");
    assert_nothing_left(&node)?;
    assert!(!node
        .data
        .path()
        .join("podnet")
        .join("masq-installed")
        .exists());
    assert_eq!(pod.links()?, vec!["lo".to_string()]);
    Ok(())
}

/// As the reference bridge plugin: the config's `dns` is in the result, and with isGateway false
/// the pod gets only the routes IPAM lists (none here), not an on-link default route.
#[test]
fn dns_is_returned_and_no_gateway_means_no_default_route() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.21.0/24");
    conf["isGateway"] = json!(false);
    conf["dns"] = json!({"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]});
    let net = list(&node, "1.1.0", vec![conf])?;
    let pod = Netns::new("pod")?;
    let r = net.add("dn", &pod.path(), "eth0", &Value::Null)?;
    assert_eq!(r["dns"]["nameservers"], json!(["10.96.0.10"]), "{r}");
    assert_eq!(r["dns"]["search"], json!(["svc.cluster.local"]), "{r}");
    assert!(r.get("routes").is_none(), "{r}");
    let routes = pod.ip_json(&["-4", "route", "show", "default"])?;
    assert_eq!(routes, json!([]), "{routes}");
    assert!(
        node.ns.addrs("cni0")?.is_empty(),
        "no gateway address on the bridge"
    );
    net.del(
        "dn",
        &pod.path().display().to_string(),
        "eth0",
        &Value::Null,
    )?;
    assert_nothing_left(&node)
}

/// DEL, GC and STATUS of a network that never had a pod here create no lease directory.
#[test]
fn verbs_on_an_unused_network_leave_no_lease_directory() -> Result<()> {
    let node = node()?;
    let mut conf = pea_conf(&node, "10.244.22.0/24");
    conf["name"] = json!("unused");
    conf["cniVersion"] = json!("1.1.0");
    let env = [
        ("CNI_CONTAINERID", "nobody"),
        ("CNI_NETNS", ""),
        ("CNI_IFNAME", "eth0"),
    ];
    invoke(&dirs()?, &node.ns.path(), "pea-cni", "DEL", &env, &conf)?;
    invoke(&dirs()?, &node.ns.path(), "pea-cni", "STATUS", &[], &conf)?;
    conf["cni.dev/valid-attachments"] = json!([]);
    invoke(&dirs()?, &node.ns.path(), "pea-cni", "GC", &[], &conf)?;
    assert!(!node.data.path().join("unused").exists());
    assert_eq!(std::fs::read_dir(node.data.path())?.count(), 0);
    Ok(())
}
