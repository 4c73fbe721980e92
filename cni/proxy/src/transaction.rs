//! One sync of one family as one `nft -f -` transaction: nft applies the whole text atomically,
//! so packets see either the old rules or the new, never a half-written service.
//!
//! Three shapes:
//! - **recreate** (at start, and after a failed transaction): delete the table and write it all,
//!   so nothing of an earlier run (or a table changed behind our back) survives;
//! - **flush** (the periodic full resync): flush every chain and map and write it all again,
//!   keeping the table and its sets (session-affinity entries survive the resync);
//! - **incremental**: only the Services that changed, in two steps. First an `nft -f` text
//!   (skipped when empty) that only adds: new sets, maps (with their ranges) and chains, and the
//!   changed chains flushed and rewritten. Then one netlink batch ([`crate::nft_netlink`]): the
//!   shared-map elements that go or change deleted, changed data-map ranges replaced, new and
//!   changed shared-map elements added, and the chains, sets and maps of what went deleted —
//!   after the elements that named them, so nothing is ever deleted while a verdict still jumps
//!   to it. Between the two steps the table is the old one plus unreferenced new chains (and the
//!   rewritten chains, already the new state), so packets see a consistent table throughout;
//!   a Service's removal, endpoints going to zero and endpoint changes are the batch alone.
//!
//! The text never holds `add element` / `delete element`: nft 1.0.6 loads the elements of every
//! set of the table before such a command (seconds at 10 000 Services, one data map each), but
//! not before a declaration with elements (`add map NAME { type … ; elements = { … } ; }`, also
//! for a map that exists). Full syncs therefore declare every map with its elements; incremental
//! ones change elements over netlink only.
//!
//! The text only ever holds names built by `ruleset` from checked values.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::Arc,
};

use crate::{
    model::Family,
    nft_netlink::{Elem, KeyElem, NetlinkError, Op, SetOp},
    ruleset::{self, DataMap, Element, FamilyConfig, ServiceRules, NUMGEN_MOD, TABLE},
};

/// Map/set key → value (None for set elements).
pub type Elements = BTreeMap<(&'static str, String), Option<String>>;

/// What the kernel holds for one family after the last successful transaction.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub services: BTreeMap<String, Arc<ServiceRules>>,
    pub nodeport_ips: Vec<Element>,
}

/// One map/set key whose element differs between the kernel and the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    pub key: (&'static str, String),
    /// In the kernel now (`Some(None)` for a set element).
    pub old: Option<Option<String>>,
    /// Wanted.
    pub new: Option<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Recreate,
    Flush,
    Incremental,
}

/// The desired state of one family.
#[derive(Debug)]
pub struct Desired<'a> {
    pub services: &'a BTreeMap<String, Arc<ServiceRules>>,
    /// Every element (full modes).
    pub elements: &'a Elements,
    /// The elements that differ (incremental mode).
    pub element_changes: &'a [ElementChange],
    pub nodeport_ips: &'a [Element],
    /// Services whose rules may differ from `Applied` (incremental mode only looks at these).
    pub changed: &'a BTreeSet<String>,
}

struct Writer {
    t: String,
    f: &'static str,
    addr_type: &'static str,
    s: String,
}

impl Writer {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.s.write_fmt(args);
        self.s.push('\n');
    }
    fn add_set(&mut self, name: &str, timeout: u32) {
        let (t, a) = (&self.t, self.addr_type);
        let line = format!(
            "add set {t} {name} {{ type {a} ; flags dynamic,timeout ; timeout {timeout}s ; }}"
        );
        self.line(format_args!("{line}"));
    }
    /// `add map` of a data map with its ranges inline: a declaration with elements, not
    /// `add element` (see [`ruleset::shared_decl`] for why).
    fn add_map(&mut self, m: &DataMap, with_ranges: bool) {
        let items: Vec<String> = if with_ranges {
            m.ranges
                .iter()
                .map(|r| format!("{}-{} : {} . {}", r.lo, r.hi, r.ip, r.port))
                .collect()
        } else {
            Vec::new()
        };
        let decl = format!(
            "typeof numgen random mod {NUMGEN_MOD} : {} daddr . {} dport ; flags interval ;",
            self.f, m.proto
        );
        self.declare("map", &m.name, &decl, &items);
    }
    /// `add KIND NAME { DECL }`, with `elements = { … }` (at most 1000 a command) when `items`
    /// is not empty.
    fn declare(&mut self, kind: &str, name: &str, decl: &str, items: &[String]) {
        let t = self.t.clone();
        if items.is_empty() {
            self.line(format_args!("add {kind} {t} {name} {{ {decl} }}"));
        }
        for chunk in items.chunks(1000) {
            self.line(format_args!(
                "add {kind} {t} {name} {{ {decl} elements = {{ {} }} ; }}",
                chunk.join(", ")
            ));
        }
    }
    fn add_chain(&mut self, name: &str) {
        let t = self.t.clone();
        self.line(format_args!("add chain {t} {name}"));
    }
    fn flush_chain(&mut self, name: &str) {
        let t = self.t.clone();
        self.line(format_args!("flush chain {t} {name}"));
    }
    fn rules(&mut self, chain: &ruleset::Chain) {
        let t = self.t.clone();
        for r in &chain.rules {
            self.line(format_args!("add rule {t} {} {r}", chain.name));
        }
    }
    /// Adds elements to shared maps/sets, as declarations with elements, grouped per map.
    fn add_elements<'e>(
        &mut self,
        family: Family,
        items: impl Iterator<Item = (&'e (&'static str, String), &'e Option<String>)>,
    ) {
        let mut by_map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for ((map, key), value) in items {
            let text = match value {
                Some(v) => format!("{key} : {v}"),
                None => key.clone(),
            };
            by_map.entry(map).or_default().push(text);
        }
        for (map, items) in by_map {
            let decl = ruleset::shared_decl(family, map);
            self.declare(ruleset::shared_kind(map), map, &decl, &items);
        }
    }
    /// A Service's sets, maps (emptied first when `flush_maps`: they may exist) with their
    /// elements, chains and rules.
    fn add_service(&mut self, rules: &ServiceRules, flush_maps: bool) {
        for (set, timeout) in &rules.sets {
            self.add_set(set, *timeout);
        }
        for m in &rules.maps {
            if flush_maps {
                // The map may exist with other ranges: declared, emptied, then declared with
                // its ranges.
                self.add_map(m, false);
                let t = self.t.clone();
                self.line(format_args!("flush map {t} {}", m.name));
            }
            self.add_map(m, true);
        }
        for c in &rules.chains {
            self.add_chain(&c.name);
        }
        for c in &rules.chains {
            self.rules(c);
        }
    }
}

fn nodeport_items(v: &[Element]) -> Elements {
    v.iter().map(|e| ((e.map, e.key.clone()), None)).collect()
}

/// A sync's change: the `nft -f` text (may be empty), then the netlink batch to send once it
/// committed.
#[derive(Debug)]
pub struct Built {
    pub text: String,
    /// Incremental mode: element changes, then deletions of chains, sets and maps (see the
    /// module docs for the order).
    pub after: Vec<Op>,
}

/// The change taking the kernel from `applied` to `desired`.
pub fn build(
    family: Family,
    cfg: &FamilyConfig,
    mode: Mode,
    applied: &Applied,
    desired: &Desired<'_>,
) -> Result<Built, NetlinkError> {
    let t = format!("{} {TABLE}", family.nft());
    let mut w = Writer {
        f: family.nft(),
        addr_type: match family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        },
        s: String::new(),
        t: t.clone(),
    };
    match mode {
        Mode::Recreate | Mode::Flush => {
            if mode == Mode::Recreate {
                // `add` first so `delete` never fails on a missing table.
                w.line(format_args!("add table {t}"));
                w.line(format_args!("delete table {t}"));
            } else {
                w.line(format_args!("add table {t}"));
                w.line(format_args!("flush table {t}"));
            }
            w.s.push_str(&ruleset::base(family, cfg));
            if mode == Mode::Flush {
                for m in [
                    ruleset::MAP_SERVICE_IPS,
                    ruleset::MAP_SERVICE_NODEPORTS,
                    ruleset::MAP_NO_ENDPOINT_SERVICES,
                    ruleset::MAP_NO_ENDPOINT_NODEPORTS,
                    ruleset::MAP_FIREWALL_IPS,
                ] {
                    w.line(format_args!("flush map {t} {m}"));
                }
                for s in [
                    ruleset::SET_CLUSTER_IPS,
                    ruleset::SET_NODEPORT_IPS,
                    ruleset::SET_HAIRPIN,
                ] {
                    w.line(format_args!("flush set {t} {s}"));
                }
            }
            for rules in desired.services.values() {
                w.add_service(rules, mode == Mode::Flush);
            }
            w.add_elements(family, desired.elements.iter());
            w.add_elements(family, nodeport_items(desired.nodeport_ips).iter());
            if mode == Mode::Flush {
                // Objects of Services that went: nothing refers to them after the flushes.
                let (chains, sets, maps) =
                    leftovers(applied.services.values(), desired.services.values());
                for c in chains {
                    w.line(format_args!("delete chain {t} {c}"));
                }
                for s in sets {
                    w.line(format_args!("delete set {t} {s}"));
                }
                for m in maps {
                    w.line(format_args!("delete map {t} {m}"));
                }
            }
        }
        Mode::Incremental => {
            let after = incremental(&mut w, family, applied, desired)?;
            return Ok(Built { text: w.s, after });
        }
    }
    Ok(Built {
        text: w.s,
        after: Vec::new(),
    })
}

/// Chains, sets and maps of `old` that no rules in `new` have.
fn leftovers<'a>(
    old: impl Iterator<Item = &'a Arc<ServiceRules>>,
    new: impl Iterator<Item = &'a Arc<ServiceRules>>,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut chains = BTreeSet::new();
    let mut sets = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for r in old {
        chains.extend(r.chains.iter().map(|c| c.name.clone()));
        sets.extend(r.sets.iter().map(|s| s.0.clone()));
        maps.extend(r.maps.iter().map(|m| m.name.clone()));
    }
    for r in new {
        for c in &r.chains {
            chains.remove(&c.name);
        }
        for s in &r.sets {
            sets.remove(&s.0);
        }
        for m in &r.maps {
            maps.remove(&m.name);
        }
    }
    (chains, sets, maps)
}

/// `ops` as an `nft -f` transaction (the same change as [`crate::nft_netlink::Conn::apply`] makes):
/// for `nft` programs that are not the kernel (recording scripts of the golden tests).
pub fn render(family: Family, ops: &[Op]) -> String {
    let t = format!("{} {TABLE}", family.nft());
    let mut s = String::new();
    for op in ops {
        let op = match op {
            Op::Elements(op) => op,
            Op::DeleteChain(c) => {
                let _ = writeln!(s, "delete chain {t} {c}");
                continue;
            }
            Op::DeleteSet { name, kind } => {
                let _ = writeln!(s, "delete {kind} {t} {name}");
                continue;
            }
        };
        let verb = if op.add { "add" } else { "delete" };
        let items: Vec<String> = op
            .elems
            .iter()
            .map(|e| match e {
                Elem::Range(r) if op.add => format!("{}-{} : {} . {}", r.lo, r.hi, r.ip, r.port),
                Elem::Range(r) => format!("{}-{}", r.lo, r.hi),
                Elem::Key(k) => match &k.value_text {
                    Some(v) if op.add => format!("{} : {v}", k.key_text),
                    _ => k.key_text.clone(),
                },
            })
            .collect();
        if !items.is_empty() {
            let _ = writeln!(
                s,
                "{verb} element {t} {} {{ {} }}",
                op.set,
                items.join(", ")
            );
        }
    }
    s
}

/// `changes` of shared maps and sets as set-element operations, one per map: the old elements
/// (`add` false) or the new ones.
fn shared_ops(changes: &[ElementChange], add: bool) -> Result<Vec<Op>, NetlinkError> {
    let mut by_map: BTreeMap<&str, Vec<Elem>> = BTreeMap::new();
    for c in changes {
        let value = if add { &c.new } else { &c.old };
        let Some(value) = value else { continue };
        let (map, key) = (&c.key.0, &c.key.1);
        let elem = KeyElem::parse(map, key, value.as_deref())?;
        by_map.entry(map).or_default().push(Elem::Key(elem));
    }
    Ok(by_map
        .into_iter()
        .map(|(map, elems)| {
            let f = if add { SetOp::add } else { SetOp::delete };
            Op::Elements(f(map, elems.into_iter()))
        })
        .collect())
}

fn incremental(
    w: &mut Writer,
    family: Family,
    applied: &Applied,
    desired: &Desired<'_>,
) -> Result<Vec<Op>, NetlinkError> {
    let t = w.t.clone();
    if applied.nodeport_ips != desired.nodeport_ips {
        // Rare (the node's addresses changed) and small: in the text.
        w.line(format_args!("flush set {t} {}", ruleset::SET_NODEPORT_IPS));
        w.add_elements(family, nodeport_items(desired.nodeport_ips).iter());
    }
    let empty = ServiceRules::default();
    let mut range_deletes = Vec::new();
    let mut range_adds = Vec::new();
    let mut gone_chains = Vec::new();
    let mut gone_sets = Vec::new();
    let mut gone_maps = Vec::new();
    for key in desired.changed {
        let old = applied.services.get(key).map(Arc::as_ref).unwrap_or(&empty);
        let new = desired.services.get(key).map(Arc::as_ref).unwrap_or(&empty);
        if old == new {
            continue;
        }
        let old_chains: BTreeMap<&str, &ruleset::Chain> =
            old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
        let new_names: BTreeSet<&str> = new.chains.iter().map(|c| c.name.as_str()).collect();
        // Text, 1. new sets, maps (with their ranges) and chains exist before any rule names
        //    them; a data map that stays gets its new ranges in the batch.
        for (set, timeout) in &new.sets {
            if !old.sets.iter().any(|(s, _)| s == set) {
                w.add_set(set, *timeout);
            }
        }
        for m in &new.maps {
            match old.maps.iter().find(|o| o.name == m.name) {
                None => w.add_map(m, true),
                Some(o) if o.ranges != m.ranges => {
                    // All old ranges go and all new ones come, in one batch: ranges rarely
                    // survive a change of n, and deleting and re-adding an equal range is no
                    // error.
                    range_deletes.push(Op::Elements(SetOp::delete(
                        &o.name,
                        o.ranges.iter().map(|r| Elem::Range(*r)),
                    )));
                    range_adds.push(Op::Elements(SetOp::add(
                        &m.name,
                        m.ranges.iter().map(|r| Elem::Range(*r)),
                    )));
                }
                Some(_) => {}
            }
        }
        for c in &new.chains {
            if !old_chains.contains_key(c.name.as_str()) {
                w.add_chain(&c.name);
            }
        }
        // Text, 2. changed chains are flushed and rewritten, new ones filled.
        for c in &new.chains {
            match old_chains.get(c.name.as_str()) {
                Some(o) if o.rules == c.rules => {}
                Some(_) => {
                    w.flush_chain(&c.name);
                    w.rules(c);
                }
                None => w.rules(c),
            }
        }
        // Chains that go: a Service's chains come after the chains they jump to, so in reverse
        // each is deleted before its targets.
        for c in old.chains.iter().rev() {
            if !new_names.contains(c.name.as_str()) {
                gone_chains.push(Op::DeleteChain(c.name.clone()));
            }
        }
        for (set, _) in &old.sets {
            if !new.sets.iter().any(|(s, _)| s == set) {
                gone_sets.push(Op::DeleteSet {
                    name: set.clone(),
                    kind: "set",
                });
            }
        }
        for m in &old.maps {
            if !new.maps.iter().any(|n| n.name == m.name) {
                gone_maps.push(Op::DeleteSet {
                    name: m.name.clone(),
                    kind: "map",
                });
            }
        }
    }
    // The batch: elements that go or change (dropping their jumps to chains that go), data-map
    // ranges replaced, elements that come or change (their chains exist since the text), then
    // the chains (their rules with them: the last jumps to the chains after them), sets and
    // maps that went.
    let mut ops = shared_ops(desired.element_changes, false)?;
    ops.extend(range_deletes);
    ops.extend(range_adds);
    ops.extend(shared_ops(desired.element_changes, true)?);
    ops.extend(gone_chains);
    ops.extend(gone_sets);
    ops.extend(gone_maps);
    Ok(ops)
}
