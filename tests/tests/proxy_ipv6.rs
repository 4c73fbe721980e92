//! IPv6 traffic through pea-proxy's `ip6` table: an IPv6-only ClusterIP Service in a network
//! namespace made here, programmed by the proxier (the library, as `proxy_sync_equivalence`),
//! reached over TCP from inside the namespace. The ClusterIP is also an address of the
//! namespace with a listener of its own ("direct"), and the endpoint another ("endpoint"), so
//! each answer says which path the connection took:
//! - with an endpoint: DNAT in nat-output → "endpoint";
//! - endpoints gone to zero: refused (the `no-endpoint-services` reject), although "direct"
//!   listens on the ClusterIP itself;
//! - endpoint back → "endpoint";
//! - Service removed: nothing of it is left in the table → "direct".
//!
//! The removal and the endpoints going to zero must go to the kernel as a netlink batch alone.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use pea_proxy::{
    model::{Family, ServiceKey},
    nft::Nft,
    proxier::{Change, Proxier, ProxyConfig, SyncReport},
};
use pea_tests::{
    netlab::Netns,
    privileged::{require_program, require_root},
};
use serde_json::json;

const CLUSTER_IP: &str = "fd00:96::60";
const ENDPOINT: &str = "fd00:10:244::2";

fn proxier() -> Proxier {
    Proxier::new(ProxyConfig {
        hostname: "node1".into(),
        // No cluster CIDR: no masquerade rule, the test is about DNAT, reject and removal.
        cluster_cidrs: Vec::new(),
        nodeport_cidrs: None,
        node_ips: Vec::new(),
        nodeport_primary: false,
        zone: None,
        families: vec![Family::V6],
        nft: Nft::default(),
        conntrack: None,
        netlink_elements: true,
    })
}

fn key() -> ServiceKey {
    ServiceKey {
        namespace: "v6".into(),
        name: "web".into(),
    }
}

/// The Service with `endpoints` (ready, on this node) behind port 80 → 8080.
fn web(endpoints: &[&str]) -> Change {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "v6", "name": "web"},
        "spec": {"clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP], "ipFamilies": ["IPv6"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
    .expect("service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "v6", "name": "web-1",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv6",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints.iter().map(|ip| json!({"addresses": [ip],
            "conditions": {"ready": true}, "nodeName": "node1"})).collect::<Vec<_>>()
    }))
    .expect("slice");
    Change {
        key: key(),
        service: Some(Arc::new(svc)),
        slices: vec![Arc::new(slice)],
    }
}

fn gone() -> Change {
    Change {
        key: key(),
        service: None,
        slices: Vec::new(),
    }
}

/// A listener on `addr` in `ns` answering each connection with `tag`, until `stop`.
fn tag_server(
    ns: &Netns,
    addr: SocketAddr,
    tag: &'static str,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    ns.spawn_in(move || {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let _ = tx.send(());
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(tag.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        Ok(())
    })?;
    rx.recv_timeout(Duration::from_secs(5))
        .with_context(|| format!("listener on {addr} did not start"))
}

/// Connects to the ClusterIP from inside `ns`: the tag read, or the connection's error kind.
fn reach(ns: &Netns) -> Result<std::result::Result<String, ErrorKind>> {
    ns.run_in(|| {
        let addr: SocketAddr = format!("[{CLUSTER_IP}]:80").parse()?;
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e.kind())),
        };
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut tag = String::new();
        s.read_to_string(&mut tag)?;
        Ok(Ok(tag))
    })
}

fn sync(ns: &Netns, p: Proxier, change: Change) -> Result<(Proxier, SyncReport)> {
    let mut p = p;
    ns.run_in(move || {
        let r = p.sync(&[change], false)?;
        Ok((p, r))
    })
}

#[test]
fn ipv6_cluster_ip_dnat_reject_and_removal() -> Result<()> {
    require_root();
    require_program("nft");
    let ns = Netns::new("proxyv6")?;
    for ip in [CLUSTER_IP, ENDPOINT] {
        ns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{ip}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let result = (|| -> Result<()> {
        tag_server(
            &ns,
            format!("[{CLUSTER_IP}]:80").parse()?,
            "direct",
            stop.clone(),
        )?;
        tag_server(
            &ns,
            format!("[{ENDPOINT}]:8080").parse()?,
            "endpoint",
            stop.clone(),
        )?;
        if reach(&ns)? != Ok("direct".into()) {
            bail!("before any rule, the ClusterIP's own listener should answer");
        }
        let (p, _) = sync(&ns, proxier(), web(&[ENDPOINT]))?;
        let got = reach(&ns)?;
        if got != Ok("endpoint".into()) {
            bail!("with an endpoint: want the endpoint through DNAT, got {got:?}");
        }
        let (p, r) = sync(&ns, p, web(&[]))?;
        if !r.lines.is_empty() || r.netlink.is_empty() {
            bail!("endpoints to zero: want a netlink batch only, got {r:?}");
        }
        let got = reach(&ns)?;
        if got != Err(ErrorKind::ConnectionRefused) {
            bail!("without endpoints: want the connection refused by the reject, got {got:?}");
        }
        let (p, _) = sync(&ns, p, web(&[ENDPOINT]))?;
        let got = reach(&ns)?;
        if got != Ok("endpoint".into()) {
            bail!("endpoint back: want the endpoint, got {got:?}");
        }
        let (_, r) = sync(&ns, p, gone())?;
        if !r.lines.is_empty() || r.netlink.is_empty() {
            bail!("removal: want a netlink batch only, got {r:?}");
        }
        let got = reach(&ns)?;
        if got != Ok("direct".into()) {
            bail!(
                "after the removal: want the ClusterIP's own listener (no rule left), got {got:?}"
            );
        }
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    result
}
