//! IP masquerade for pod traffic leaving the cluster CIDR, in an nftables table of pea's own
//! (`ip pea-cni`), driven through `nft -j` (structured JSON in and out; text is never parsed).
//!
//! One rule per network, tagged with a comment naming the network, is installed when the
//! network's first lease is taken and removed with its last, so a DEL never leaves per-pod
//! chains behind, whether or not the pod's namespace still exists. The table goes when its chain
//! is empty. A lock file serialises table changes between networks.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use ipnet::Ipv4Net;
use serde_json::{json, Value};

pub const TABLE: &str = "pea-cni";
pub const CHAIN: &str = "postrouting";

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

/// Our rules in the table: (handle, comment); `None` when the table does not exist.
fn rules() -> Result<Option<Vec<(u64, String)>>, MasqError> {
    // One listing of the ip family tells both whether the table exists and what is in it.
    let out = nft(&["-j", "list", "ruleset", "ip"], None)?;
    let objects = parse("list ruleset ip", &out)?;
    let ours = |o: &Value, kind: &str| {
        o.get(kind)
            .and_then(|t| t.get(if kind == "table" { "name" } else { "table" }))
            .and_then(Value::as_str)
            == Some(TABLE)
    };
    if !objects.iter().any(|o| ours(o, "table")) {
        return Ok(None);
    }
    let mut found = Vec::new();
    for o in &objects {
        if !ours(o, "rule") {
            continue;
        }
        let r = &o["rule"];
        if r.get("chain").and_then(Value::as_str) != Some(CHAIN) {
            continue;
        }
        let handle = r.get("handle").and_then(Value::as_u64).unwrap_or(0);
        let c = r.get("comment").and_then(Value::as_str).unwrap_or("");
        found.push((handle, c.to_string()));
    }
    Ok(Some(found))
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

/// Installs the network's masquerade rule unless present.
pub fn ensure(
    data_dir: &Path,
    network: &str,
    subnet: Ipv4Net,
    cluster: Ipv4Net,
) -> Result<(), MasqError> {
    with_lock(data_dir, || {
        let c = comment(network);
        if let Some(rs) = rules()? {
            if rs.iter().any(|(_, rc)| *rc == c) {
                return Ok(());
            }
        }
        let daddr = json!({"payload": {"protocol": "ip", "field": "daddr"}});
        apply(json!({"nftables": [
            {"add": {"table": {"family": "ip", "name": TABLE}}},
            {"add": {"chain": {"family": "ip", "table": TABLE, "name": CHAIN,
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}},
            {"add": {"rule": {"family": "ip", "table": TABLE, "chain": CHAIN, "comment": c, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": prefix(&subnet)}},
                {"match": {"op": "!=", "left": daddr.clone(), "right": prefix(&cluster)}},
                {"match": {"op": "!=", "left": daddr, "right": prefix(&"224.0.0.0/4".parse().expect("literal"))}},
                {"masquerade": null}
            ]}}}
        ]}))
    })
}

/// Whether the network's rule is installed.
pub fn present(network: &str) -> Result<bool, MasqError> {
    let c = comment(network);
    Ok(rules()?.is_some_and(|rs| rs.iter().any(|(_, rc)| *rc == c)))
}

/// Removes the network's rule, and the table when nothing else is in it.
pub fn remove(data_dir: &Path, network: &str) -> Result<(), MasqError> {
    with_lock(data_dir, || {
        let Some(rs) = rules()? else {
            return Ok(());
        };
        let c = comment(network);
        let (ours, others): (Vec<_>, Vec<_>) = rs.into_iter().partition(|(_, rc)| *rc == c);
        let batch: Vec<Value> = if others.is_empty() {
            vec![json!({"delete": {"table": {"family": "ip", "name": TABLE}}})]
        } else {
            ours.iter()
                .map(|(h, _)| json!({"delete": {"rule": {"family": "ip", "table": TABLE, "chain": CHAIN, "handle": h}}}))
                .collect()
        };
        if batch.is_empty() {
            return Ok(());
        }
        apply(json!({ "nftables": batch }))
    })
}
