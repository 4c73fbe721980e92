//! IP masquerade for pod traffic leaving the cluster CIDR, in nftables tables of pea's own
//! (`ip pea-cni-<network>`, and `ip6 pea-cni-<network>` for IPv6 ranges), driven through `nft -j` (structured JSON in and out; text is never
//! parsed).
//!
//! The network's table (one base chain on postrouting, one rule) is installed when the network's
//! first lease is taken and removed with its last (callers hold the network's lease lock), so a
//! DEL never leaves per-pod chains behind, whether or not the pod's namespace still exists.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

/// Every table pea-cni makes starts with this.
pub const TABLE_PREFIX: &str = "pea-cni-";
const CHAIN: &str = "postrouting";

#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    #[error("running nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("nft {args} printed output that is not the expected JSON: {why}")]
    Output { args: String, why: String },
    #[error("locking {path}: {why}")]
    Lock { path: String, why: String },
}

fn comment(network: &str) -> String {
    let mut n: String = network.chars().take(100).collect();
    n.insert_str(0, "pea-cni masquerade ");
    n
}

/// The table of one network: `pea-cni-<network>`. A table per network makes installing one
/// idempotent batch (create, flush, add) and removing another (create, delete), each a single
/// `nft` run that never needs a listing, never touches another network and never duplicates.
pub fn table_name(network: &str) -> String {
    format!("{TABLE_PREFIX}{network}")
}

/// Whether an `nft` program is on PATH.
pub fn nft_available() -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| d.join("nft").is_file()))
        .unwrap_or(false)
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<Vec<u8>, MasqError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(MasqError::Spawn)?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .map_err(MasqError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(MasqError::Spawn)?;
    if !out.status.success() {
        return Err(MasqError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn apply(batch: Value) -> Result<(), MasqError> {
    nft(&["-j", "-f", "-"], Some(&batch.to_string())).map(|_| ())
}

fn parse(args: &str, bytes: &[u8]) -> Result<Vec<Value>, MasqError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| MasqError::Output {
        args: args.into(),
        why: e.to_string(),
    })?;
    v.get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| MasqError::Output {
            args: args.into(),
            why: "no \"nftables\" array".into(),
        })
}

fn prefix(addr: String, len: u8) -> Value {
    json!({"prefix": {"addr": addr, "len": len}})
}

/// One family's masquerade: the node's subnets of that family and the cluster CIDR.
#[derive(Debug, Clone, Copy)]
pub enum Family<'a> {
    V4(&'a [Ipv4Net], Ipv4Net),
    V6(&'a [Ipv6Net], Ipv6Net),
}

/// The batch items that (re)create one family's table: table, base chain, flush, one rule per
/// subnet (saddr in the subnet, daddr outside the cluster and not multicast).
fn family_batch(network: &str, f: Family<'_>) -> Vec<Value> {
    let table = table_name(network);
    let (family, proto, subnets, cluster, mcast) = match f {
        Family::V4(subnets, cluster) => (
            "ip",
            "ip",
            subnets
                .iter()
                .map(|n| prefix(n.network().to_string(), n.prefix_len()))
                .collect::<Vec<_>>(),
            prefix(cluster.network().to_string(), cluster.prefix_len()),
            prefix("224.0.0.0".into(), 4),
        ),
        Family::V6(subnets, cluster) => (
            "ip6",
            "ip6",
            subnets
                .iter()
                .map(|n| prefix(n.network().to_string(), n.prefix_len()))
                .collect::<Vec<_>>(),
            prefix(cluster.network().to_string(), cluster.prefix_len()),
            prefix("ff00::".into(), 8),
        ),
    };
    let daddr = json!({"payload": {"protocol": proto, "field": "daddr"}});
    let mut batch = vec![
        json!({"add": {"table": {"family": family, "name": table}}}),
        json!({"add": {"chain": {"family": family, "table": table, "name": CHAIN,
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
        json!({"flush": {"chain": {"family": family, "table": table, "name": CHAIN}}}),
    ];
    for subnet in subnets {
        batch.push(json!({"add": {"rule": {"family": family, "table": table, "chain": CHAIN, "comment": comment(network), "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "saddr"}}, "right": subnet}},
            {"match": {"op": "!=", "left": daddr.clone(), "right": cluster.clone()}},
            {"match": {"op": "!=", "left": daddr.clone(), "right": mcast.clone()}},
            {"masquerade": null}
        ]}}}));
    }
    batch
}

/// Installs (or re-installs) the network's masquerade rules for every family given: one `nft`
/// run, idempotent.
pub fn ensure(network: &str, families: &[Family<'_>]) -> Result<(), MasqError> {
    let batch: Vec<Value> = families
        .iter()
        .flat_map(|f| family_batch(network, *f))
        .collect();
    apply(json!({ "nftables": batch }))
}

/// Whether the network's table of `family` ("ip" or "ip6") is installed.
pub fn present(network: &str, family: &str) -> Result<bool, MasqError> {
    let table = table_name(network);
    let out = nft(&["-j", "list", "tables", family], None)?;
    Ok(parse("list tables", &out)?.iter().any(|o| {
        o.get("table")
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
            == Some(table.as_str())
    }))
}

/// Removes the network's tables of both families; absent is fine (the batch creates each first,
/// so it always applies).
pub fn remove(network: &str) -> Result<(), MasqError> {
    let table = table_name(network);
    apply(json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": table}}},
        {"delete": {"table": {"family": "ip", "name": table}}},
        {"add": {"table": {"family": "ip6", "name": table}}},
        {"delete": {"table": {"family": "ip6", "name": table}}}
    ]}))
}
