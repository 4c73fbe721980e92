//! IP masquerade for pod traffic leaving the cluster CIDR, in nftables tables of pea's own
//! (`ip pea-cni-<network>`, and `ip6 pea-cni-<network>` for IPv6 ranges), driven through `nft -j` (structured JSON in and out; text is never
//! parsed).
//!
//! The network's table (one base chain on postrouting, one rule) is installed when the network's
//! first lease is taken and removed with its last (callers hold the network's lease lock), so a
//! DEL never leaves per-pod chains behind, whether or not the pod's namespace still exists.
//! Whether a table exists is asked from the kernel over nfnetlink ([`table_exists`], one request),
//! so ADD can verify the rule every time without spawning `nft`.

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
    #[error("locking {path}: {why}")]
    Lock { path: String, why: String },
    #[error("asking the kernel for nft table {table}: {source}")]
    Query {
        table: String,
        #[source]
        source: std::io::Error,
    },
    #[error("asking the kernel for nft table {table}: unexpected reply: {why}")]
    Reply { table: String, why: String },
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

/// The batch that installs (or re-installs) the network's masquerade rules for every family
/// given; applying it is idempotent (each family's chain is flushed and refilled). A family the
/// config no longer has keeps its table until [`install`] removes it.
pub fn batch(network: &str, families: &[Family<'_>]) -> Value {
    let items: Vec<Value> = families
        .iter()
        .flat_map(|f| family_batch(network, *f))
        .collect();
    json!({ "nftables": items })
}

/// `delete table` items for the network's tables of the families not in `keep` (`true`: IPv6)
/// that exist. Deleting a table costs the kernel an RCU grace period, so only existing ones are
/// named (asked with [`table_exists`], cheap) rather than creating and deleting both families.
fn delete_existing(network: &str, keep: &[bool]) -> Result<Vec<Value>, MasqError> {
    let table = table_name(network);
    let mut items = Vec::new();
    for v6 in [false, true] {
        if !keep.contains(&v6) && table_exists(network, v6)? {
            let family = if v6 { "ip6" } else { "ip" };
            items.push(json!({"delete": {"table": {"family": family, "name": table}}}));
        }
    }
    Ok(items)
}

/// Applies a [`batch`] covering `families` (`true`: IPv6, see [`families_of`]) in one `nft` run,
/// in the same transaction removing the network's table of a family the batch no longer covers.
pub fn install(network: &str, batch: &Value, families: &[bool]) -> Result<(), MasqError> {
    let mut items = delete_existing(network, families)?;
    items.extend(batch["nftables"].as_array().into_iter().flatten().cloned());
    apply(json!({ "nftables": items }))
}

/// A digest of a [`batch`] (64-bit FNV-1a of its JSON text, in hex): stored in the network's
/// marker, so a changed subnet or cluster CIDR is noticed without running `nft`.
pub fn digest(batch: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in batch.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The families a batch covers: `ip`, `ip6`.
pub fn families_of(families: &[Family<'_>]) -> Vec<bool> {
    families
        .iter()
        .map(|f| matches!(f, Family::V6(..)))
        .collect()
}

/// Whether the network's table of one family (`v6`) exists, asked straight from the kernel with
/// one nfnetlink request (NFT_MSG_GETTABLE): cheap enough for every ADD, no process spawn.
pub fn table_exists(network: &str, v6: bool) -> Result<bool, MasqError> {
    use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_NEWTABLE: u16 = 0;
    const NFT_MSG_GETTABLE: u16 = 1;
    const NLM_F_REQUEST: u16 = 1;
    const NLMSG_ERROR: u16 = 2;
    const NFTA_TABLE_NAME: u16 = 1;
    const ENOENT: i32 = 2;
    let table = table_name(network);
    let query = |source| MasqError::Query {
        table: table.clone(),
        source,
    };
    let mut name = table.as_bytes().to_vec();
    name.push(0);
    let attr_len = 4 + name.len();
    let total = 16 + 4 + ((attr_len + 3) & !3);
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns one
    msg.push(if v6 { 10 } else { 2 }); // nfgenmsg: NFPROTO_IPV6 / NFPROTO_IPV4
    msg.push(0); // NFNETLINK_V0
    msg.extend_from_slice(&0u16.to_be_bytes()); // res_id
    msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    msg.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    msg.extend_from_slice(&name);
    msg.resize(total, 0);
    let sock = Socket::new(NETLINK_NETFILTER).map_err(query)?;
    sock.send_to(&msg, &SocketAddr::new(0, 0), 0)
        .map_err(query)?;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    sock.recv(&mut buf, 0).map_err(query)?;
    let bad = |why: &str| MasqError::Reply {
        table: table.clone(),
        why: why.into(),
    };
    if buf.len() < 16 {
        return Err(bad("shorter than a netlink header"));
    }
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
        return Ok(true);
    }
    if kind == NLMSG_ERROR && buf.len() >= 20 {
        let errno = -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if errno == ENOENT {
            return Ok(false);
        }
        return Err(query(std::io::Error::from_raw_os_error(errno)));
    }
    Err(bad(&format!("message type {kind:#x}")))
}

/// Removes the network's tables of both families; absent is fine (no `nft` run when neither
/// exists).
pub fn remove(network: &str) -> Result<(), MasqError> {
    let items = delete_existing(network, &[])?;
    if items.is_empty() {
        return Ok(());
    }
    apply(json!({ "nftables": items }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_the_rules() {
        let s1 = ["10.244.1.0/24".parse().unwrap()];
        let s2 = ["10.244.2.0/24".parse().unwrap()];
        let c = "10.244.0.0/16".parse().unwrap();
        let d = |subnets: &[Ipv4Net], cluster| digest(&batch("n", &[Family::V4(subnets, cluster)]));
        assert_eq!(d(&s1, c), d(&s1, c));
        assert_ne!(d(&s1, c), d(&s2, c), "subnet change");
        assert_ne!(
            d(&s1, c),
            d(&s1, "10.0.0.0/8".parse().unwrap()),
            "cluster CIDR change"
        );
        assert_ne!(
            digest(&batch("n", &[Family::V4(&s1, c)])),
            digest(&batch("m", &[Family::V4(&s1, c)]))
        );
        // The batch names only the wanted families and deletes nothing (install() adds the
        // deletion of an existing table the config dropped).
        let b = batch("n", &[Family::V4(&s1, c)]);
        let items = b["nftables"].as_array().unwrap();
        assert!(items.iter().all(|i| i.get("delete").is_none()));
        assert_eq!(items[0]["add"]["table"]["family"], "ip");
        assert!(items
            .iter()
            .all(|i| i.to_string().contains(r#""family":"ip""#)));
    }
}
