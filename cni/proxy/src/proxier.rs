//! The proxier: Services and EndpointSlices in, one nft transaction per family out.
//!
//! It keeps, per family, the rules it last applied ([`Applied`]) and who claims which map key
//! ([`Claims`]). A sync is told which Services changed; only their rules are generated again and
//! only what differs goes into the transaction. The first sync (and the one after a failed
//! transaction) recreates the table; a full sync rewrites every chain of the table.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use crate::{
    claims::{Claims, Key},
    conntrack,
    model::{self, Family, Problem, ServiceKey},
    nft::{Nft, NftError},
    nft_netlink::{self, NetlinkError},
    ruleset::{self, FamilyConfig, ServiceRules, UdpDest},
    transaction::{self, Applied, Desired, Elements, Mode},
};

/// One component's configuration (the flags of the binary).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name: endpoints with this `nodeName` are local.
    pub hostname: String,
    pub cluster_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`: NodePorts only on local addresses inside these; `None` for all.
    pub nodeport_cidrs: Option<Vec<IpNet>>,
    /// The node's IPs (kube-proxy's node IP, `--bind-address` or the node's addresses): let
    /// through loadBalancerSourceRanges firewalls whose ranges contain them.
    pub node_ips: Vec<IpAddr>,
    /// `--nodeport-addresses primary`: NodePorts only on [`ProxyConfig::node_ips`] (kube-proxy's
    /// nftables default); overrides `nodeport_cidrs`.
    pub nodeport_primary: bool,
    /// This node's `topology.kubernetes.io/zone` label (from its Node object).
    pub zone: Option<String>,
    pub families: Vec<Family>,
    pub nft: Nft,
    /// Element-only changes (endpoints of data-map Services) go to the kernel over nfnetlink;
    /// `false` sends them through `nft` as text too (for recording `nft` programs).
    pub netlink_elements: bool,
    /// The `conntrack` program; `None` skips the UDP flush (logged once).
    pub conntrack: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            hostname: String::new(),
            cluster_cidrs: Vec::new(),
            nodeport_cidrs: None,
            node_ips: Vec::new(),
            nodeport_primary: false,
            zone: None,
            families: vec![Family::V4, Family::V6],
            nft: Nft::default(),
            conntrack: Some("conntrack".into()),
            netlink_elements: true,
        }
    }
}

/// One Service as the caches hold it: gone when `service` is `None`.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: ServiceKey,
    pub service: Option<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("listing this node's addresses for --nodeport-addresses: {0}")]
    Addresses(#[source] nix::Error),
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub full: bool,
    /// Transaction sizes in lines, per family applied through `nft -f`.
    pub lines: Vec<(Family, usize)>,
    /// Netlink batch operations, per family (incremental syncs: element changes and deletions
    /// of chains, sets and maps).
    pub netlink: Vec<(Family, usize)>,
    pub duration: Duration,
    pub conntrack_flushes: usize,
    /// Problems first seen in this sync, for Warning Events on their Services.
    pub new_problems: Vec<ServiceProblem>,
}

/// A problem of one Service (or of a slice or port claim of it), to report on the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProblem {
    pub key: ServiceKey,
    /// The Service's uid when the sync had the object at hand.
    pub uid: Option<String>,
    pub message: String,
}

#[derive(Debug, Default)]
struct FamilyState {
    applied: Applied,
    desired: BTreeMap<String, Arc<ServiceRules>>,
    claims: Claims,
    /// The elements in the kernel.
    kernel_elements: Elements,
    /// The sum of `no_local_endpoints` over `desired`, kept as it changes (summing 10 000
    /// Services on every sync cost ~1 ms of each endpoint change).
    no_local: usize,
    recreate: bool,
}

/// The proxier. Not thread-safe by itself: one sync at a time.
#[derive(Debug)]
pub struct Proxier {
    cfg: ProxyConfig,
    families: BTreeMap<Family, FamilyState>,
    problems: BTreeMap<ServiceKey, Vec<Problem>>,
    conflicts: BTreeSet<String>,
    warned_no_conntrack: bool,
    pub last_no_local_endpoints: usize,
    /// Services with a health check node port: the port and their local ready endpoints.
    health: BTreeMap<ServiceKey, (u16, usize)>,
    /// The nfnetlink socket of element-only changes, kept open between syncs.
    netlink: nft_netlink::Conn,
}

impl Proxier {
    pub fn new(cfg: ProxyConfig) -> Self {
        let families = cfg
            .families
            .iter()
            .map(|f| {
                (
                    *f,
                    FamilyState {
                        recreate: true,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Proxier {
            cfg,
            families,
            problems: BTreeMap::new(),
            conflicts: BTreeSet::new(),
            warned_no_conntrack: false,
            last_no_local_endpoints: 0,
            health: BTreeMap::new(),
            netlink: nft_netlink::Conn::new(),
        }
    }

    /// The problems of the objects seen, by Service (what `/metrics` counts).
    pub fn problems(&self) -> usize {
        self.problems.values().map(Vec::len).sum::<usize>() + self.conflicts.len()
    }

    fn family_config(&self, family: Family) -> Result<FamilyConfig, SyncError> {
        let in_family = |n: &IpNet| {
            matches!(
                (family, n),
                (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
            )
        };
        let nodeport_ips = match &self.cfg.nodeport_cidrs {
            _ if self.cfg.nodeport_primary => {
                let mut ips: Vec<IpAddr> = self
                    .cfg
                    .node_ips
                    .iter()
                    .filter(|ip| model::Family::of(ip) == family)
                    .copied()
                    .collect();
                ips.sort();
                ips.dedup();
                Some(ips)
            }
            None => None,
            Some(cidrs) => {
                let mut ips: Vec<IpAddr> = local_addresses()?
                    .into_iter()
                    .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
                    .filter(|ip| model::Family::of(ip) == family)
                    .collect();
                ips.sort();
                ips.dedup();
                Some(ips)
            }
        };
        Ok(FamilyConfig {
            cluster_cidrs: self
                .cfg
                .cluster_cidrs
                .iter()
                .filter(|n| in_family(n))
                .copied()
                .collect(),
            nodeport_ips,
            node_ips: self
                .cfg
                .node_ips
                .iter()
                .filter(|ip| model::Family::of(ip) == family)
                .copied()
                .collect(),
            zone: self.cfg.zone.clone(),
        })
    }

    /// This node's IPs and zone as its Node object now says; true when they changed (the caller
    /// then runs a full sync, since every Service's rules may depend on them).
    pub fn set_node(&mut self, ips: Vec<IpAddr>, zone: Option<String>) -> bool {
        if self.cfg.node_ips == ips && self.cfg.zone == zone {
            return false;
        }
        tracing::info!(?ips, ?zone, "node addresses or zone changed");
        self.cfg.node_ips = ips;
        self.cfg.zone = zone;
        true
    }

    /// Applies `changes` (Services added, changed or gone, with their slices). `full` rewrites
    /// every chain (the periodic resync); Services not named keep their rules.
    pub fn sync(&mut self, changes: &[Change], full: bool) -> Result<SyncReport, SyncError> {
        let start = Instant::now();
        let mut report = SyncReport {
            full,
            ..Default::default()
        };
        // Model: parse each changed Service once, for every family.
        let mut ports = Vec::with_capacity(changes.len());
        for c in changes {
            let (p, problems) = match &c.service {
                Some(svc) => {
                    let slices: Vec<&EndpointSlice> = c.slices.iter().map(Arc::as_ref).collect();
                    model::service_ports(svc, &slices, &self.cfg.hostname)
                }
                None => (Vec::new(), Vec::new()),
            };
            let old = self.problems.get(&c.key);
            if old != Some(&problems) && !problems.is_empty() {
                for p in &problems {
                    tracing::warn!(service = %c.key, "bad input: {p}");
                    if !old.is_some_and(|o| o.contains(p)) {
                        report.new_problems.push(ServiceProblem {
                            key: c.key.clone(),
                            uid: c.service.as_ref().and_then(|s| s.metadata.uid.clone()),
                            message: p.to_string(),
                        });
                    }
                }
            }
            if problems.is_empty() {
                self.problems.remove(&c.key);
            } else {
                self.problems.insert(c.key.clone(), problems);
            }
            match crate::health_check::entry(&p) {
                Some(e) => self.health.insert(c.key.clone(), e),
                None => self.health.remove(&c.key),
            };
            ports.push((c.key.to_string(), p));
        }

        let mut first_error = None;
        let families: Vec<Family> = self.families.keys().copied().collect();
        let mut no_local = 0;
        for family in families {
            let fcfg = self.family_config(family)?;
            let state = self.families.get_mut(&family).expect("family");
            let mut touched: BTreeSet<Key> = BTreeSet::new();
            let mut changed = BTreeSet::new();
            let mut previous: BTreeMap<String, Option<Arc<ServiceRules>>> = BTreeMap::new();
            for (key, p) in &ports {
                let new = ruleset::service_rules(family, &fcfg, p);
                let new = (new != ServiceRules::default()).then(|| Arc::new(new));
                let empty = ServiceRules::default();
                let old = state.desired.get(key).cloned();
                state.claims.update(
                    key,
                    old.as_deref().unwrap_or(&empty),
                    new.as_deref().unwrap_or(&empty),
                    &mut touched,
                );
                state.no_local = state
                    .no_local
                    .saturating_sub(old.as_ref().map_or(0, |r| r.no_local_endpoints));
                state.no_local += new.as_ref().map_or(0, |r| r.no_local_endpoints);
                previous.insert(key.clone(), old);
                match &new {
                    Some(r) => state.desired.insert(key.clone(), r.clone()),
                    None => state.desired.remove(key),
                };
                changed.insert(key.clone());
            }
            for k in &touched {
                for (loser, winner) in state.claims.losers(k) {
                    let line = format!(
                        "service {loser}: {} {} is already used by service {winner}; left out",
                        k.0, k.1
                    );
                    if self.conflicts.insert(line.clone()) {
                        tracing::warn!("bad input: {line}");
                        if let Some((namespace, name)) = loser.split_once('/') {
                            report.new_problems.push(ServiceProblem {
                                key: ServiceKey {
                                    namespace: namespace.to_string(),
                                    name: name.to_string(),
                                },
                                uid: None,
                                message: line,
                            });
                        }
                    }
                }
            }
            let nodeport_ips = ruleset::nodeport_ip_elements(family, &fcfg);
            let mode = if state.recreate {
                Mode::Recreate
            } else if full {
                Mode::Flush
            } else {
                Mode::Incremental
            };
            let all_elements;
            let changes_list;
            let desired = if mode == Mode::Incremental {
                changes_list = state.claims.changes(&touched, &state.kernel_elements);
                all_elements = Elements::new();
                Desired {
                    services: &state.desired,
                    elements: &all_elements,
                    element_changes: &changes_list,
                    nodeport_ips: &nodeport_ips,
                    changed: &changed,
                }
            } else {
                changes_list = Vec::new();
                all_elements = state.claims.all();
                Desired {
                    services: &state.desired,
                    elements: &all_elements,
                    element_changes: &changes_list,
                    nodeport_ips: &nodeport_ips,
                    changed: &changed,
                }
            };
            let nothing_to_do = mode == Mode::Incremental
                && changes_list.is_empty()
                && nodeport_ips == state.applied.nodeport_ips
                && changed
                    .iter()
                    .all(|k| state.applied.services.get(k) == state.desired.get(k));
            no_local += state.no_local;
            if nothing_to_do {
                continue;
            }
            // Incremental: an `nft -f` text that only adds (skipped when empty: endpoint
            // changes, removals, endpoints going to zero), then one netlink batch of element
            // changes and deletions (see `transaction`).
            let result: Result<(), SyncError> =
                match transaction::build(family, &fcfg, mode, &state.applied, &desired) {
                    Err(e) => Err(e.into()),
                    Ok(built) => {
                        let mut text = built.text;
                        let mut after = built.after;
                        if !self.cfg.netlink_elements {
                            text.push_str(&transaction::render(family, &after));
                            after.clear();
                        }
                        let mut r = Ok(());
                        if !text.is_empty() {
                            report.lines.push((family, text.lines().count()));
                            r = self.cfg.nft.apply(family, &text).map_err(SyncError::from);
                        }
                        if r.is_ok() && !after.is_empty() {
                            // Should it fail after the text committed, the error makes the
                            // next sync recreate the table.
                            report.netlink.push((family, after.len()));
                            r = self.netlink.apply(family, &after).map_err(SyncError::from);
                        }
                        r
                    }
                };
            match result {
                Ok(()) => {
                    state.recreate = false;
                    if mode == Mode::Incremental {
                        for k in &changed {
                            match state.desired.get(k) {
                                Some(r) => state.applied.services.insert(k.clone(), r.clone()),
                                None => state.applied.services.remove(k),
                            };
                        }
                        for c in &changes_list {
                            match &c.new {
                                Some(v) => state.kernel_elements.insert(c.key.clone(), v.clone()),
                                None => state.kernel_elements.remove(&c.key),
                            };
                        }
                    } else {
                        state.applied.services = state.desired.clone();
                        state.kernel_elements = all_elements;
                    }
                    state.applied.nodeport_ips = nodeport_ips;
                    let flushed = flush_udp(
                        self.cfg.conntrack.as_deref(),
                        &mut self.warned_no_conntrack,
                        &previous,
                        &state.desired,
                    );
                    report.conntrack_flushes += flushed;
                }
                Err(e) => {
                    // The kernel kept the old rules (the transaction is atomic); the next sync
                    // recreates the table from the desired state.
                    state.recreate = true;
                    tracing::error!(
                        "{family:?} sync failed, the next sync recreates the table: {e}"
                    );
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        self.last_no_local_endpoints = no_local;
        report.duration = start.elapsed();

        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Asks for a recreate at the next sync (e.g. after the table was changed by someone else).
    /// Health check node port → the Service and its local ready endpoints (kube-proxy's
    /// ServiceHealthServer input). Two Services on one port: the first by name keeps it.
    pub fn health_checks(&self) -> BTreeMap<u16, (ServiceKey, usize)> {
        let mut out = BTreeMap::new();
        for (key, (port, n)) in &self.health {
            out.entry(*port).or_insert_with(|| (key.clone(), *n));
        }
        out
    }

    pub fn force_recreate(&mut self) {
        for s in self.families.values_mut() {
            s.recreate = true;
        }
    }

    /// Removes pea-proxy's tables (`--cleanup`).
    pub fn cleanup(nft: &Nft) -> Result<(), NftError> {
        nft.delete_table(Family::V4)?;
        nft.delete_table(Family::V6)
    }
}

/// Flushes conntrack entries of UDP endpoints that went; returns how many flushes ran.
fn flush_udp(
    program: Option<&str>,
    warned: &mut bool,
    previous: &BTreeMap<String, Option<Arc<ServiceRules>>>,
    desired: &BTreeMap<String, Arc<ServiceRules>>,
) -> usize {
    let mut n = 0;
    for (key, old) in previous {
        let Some(old) = old else { continue };
        if old.udp.is_empty() {
            continue;
        }
        let new_udp = desired.get(key).map(|r| r.udp.as_slice()).unwrap_or(&[]);
        for target in &old.udp {
            let now: &[IpAddr] = new_udp
                .iter()
                .find(|t| t.dest == target.dest)
                .map(|t| t.endpoints.as_slice())
                .unwrap_or(&[]);
            let mut jobs: Vec<(UdpDest, Option<IpAddr>)> = target
                .endpoints
                .iter()
                .filter(|ep| !now.contains(ep))
                .map(|ep| (target.dest.clone(), Some(*ep)))
                .collect();
            // From no endpoint to some: entries made while the service rejected must go.
            if target.endpoints.is_empty() && !now.is_empty() {
                jobs.push((target.dest.clone(), None));
            }
            for (dest, ep) in jobs {
                let Some(program) = program else {
                    if !*warned {
                        tracing::warn!("no conntrack program: stale UDP flows are not flushed");
                        *warned = true;
                    }
                    continue;
                };
                n += 1;
                if let Err(e) = conntrack::flush(program, &dest, ep) {
                    tracing::warn!(service = %key, "{e}");
                }
            }
        }
    }
    // Services new in this sync whose UDP targets had no endpoints before never flush.
    n
}

/// The addresses of this network namespace's interfaces.
pub fn local_addresses() -> Result<Vec<IpAddr>, SyncError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(SyncError::Addresses)?;
    Ok(addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect())
}
