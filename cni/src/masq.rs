//! IP masquerade for pod traffic leaving the cluster CIDR, in an nftables table of pea's own
//! (`ip pea-cni`), driven through `nft -j` (structured JSON in and out; text is never parsed).
//!
//! One base chain per network (`masq-<network>`, one rule) is installed when the network's first
//! lease is taken and removed with its last, so a DEL never leaves per-pod chains behind, whether
//! or not the pod's namespace still exists. The table goes with its last chain. A lock file
//! serialises table changes between networks.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use ipnet::Ipv4Net;
use serde_json::{json, Value};

pub const TABLE: &str = "pea-cni";

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

/// The base chain of one network. Every network gets a base chain of its own on the postrouting
/// hook, so installing is one idempotent batch (create, flush, add) that never needs a listing
/// and can never duplicate a rule.
fn chain_name(network: &str) -> String {
    format!("masq-{network}")
}

/// The chains in our table; `None` when the table does not exist.
fn chains() -> Result<Option<Vec<String>>, MasqError> {
    let out = nft(&["-j", "list", "ruleset", "ip"], None)?;
    let objects = parse("list ruleset ip", &out)?;
    let in_table = |o: &Value, kind: &str, key: &str| {
        o.get(kind).and_then(|t| t.get(key)).and_then(Value::as_str) == Some(TABLE)
    };
    if !objects.iter().any(|o| in_table(o, "table", "name")) {
        return Ok(None);
    }
    Ok(Some(
        objects
            .iter()
            .filter(|o| in_table(o, "chain", "table"))
            .filter_map(|o| o["chain"]["name"].as_str().map(String::from))
            .collect(),
    ))
}

fn prefix(net: &Ipv4Net) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

fn with_lock<T>(data_dir: &Path, f: impl FnOnce() -> Result<T, MasqError>) -> Result<T, MasqError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("pea-cni-nft.lock");
    let lerr = |why: String| MasqError::Lock {
        path: path.display().to_string(),
        why,
    };
    std::fs::create_dir_all(data_dir).map_err(|e| lerr(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| lerr(e.to_string()))?;
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| lerr(e.to_string()))?;
    f()
}

fn base_chain(name: &str) -> Value {
    json!({"chain": {"family": "ip", "table": TABLE, "name": name,
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}})
}

/// Installs (or re-installs) the network's masquerade rule: one `nft` run, idempotent.
pub fn ensure(
    data_dir: &Path,
    network: &str,
    subnet: Ipv4Net,
    cluster: Ipv4Net,
) -> Result<(), MasqError> {
    let chain = chain_name(network);
    let daddr = json!({"payload": {"protocol": "ip", "field": "daddr"}});
    let batch = json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": TABLE}}},
        {"add": base_chain(&chain)},
        {"flush": {"chain": {"family": "ip", "table": TABLE, "name": chain}}},
        {"add": {"rule": {"family": "ip", "table": TABLE, "chain": chain, "comment": comment(network), "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": prefix(&subnet)}},
            {"match": {"op": "!=", "left": daddr.clone(), "right": prefix(&cluster)}},
            {"match": {"op": "!=", "left": daddr, "right": prefix(&"224.0.0.0/4".parse().expect("literal"))}},
            {"masquerade": null}
        ]}}}
    ]});
    with_lock(data_dir, || apply(batch))
}

/// Whether the network's chain is installed.
pub fn present(network: &str) -> Result<bool, MasqError> {
    let chain = chain_name(network);
    Ok(chains()?.is_some_and(|cs| cs.contains(&chain)))
}

/// Removes the network's chain, and the table when no other network has one.
pub fn remove(data_dir: &Path, network: &str) -> Result<(), MasqError> {
    let chain = chain_name(network);
    with_lock(data_dir, || {
        let Some(cs) = chains()? else {
            return Ok(());
        };
        let batch: Vec<Value> = if cs.iter().all(|c| *c == chain) {
            vec![json!({"delete": {"table": {"family": "ip", "name": TABLE}}})]
        } else if cs.contains(&chain) {
            vec![
                json!({"flush": {"chain": {"family": "ip", "table": TABLE, "name": chain}}}),
                json!({"delete": {"chain": {"family": "ip", "table": TABLE, "name": chain}}}),
            ]
        } else {
            return Ok(());
        };
        apply(json!({ "nftables": batch }))
    })
}
