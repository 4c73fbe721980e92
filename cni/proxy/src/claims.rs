//! Which Service owns each map key. Two Services may claim one key (the same externalIP and
//! port, the same NodePort): the first in key order wins and the other's claim waits, reported,
//! until the winner lets go. Kept incrementally, so a sync touches only the keys of the
//! Services that changed.

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    ruleset::ServiceRules,
    transaction::{ElementChange, Elements},
};

pub type Key = (&'static str, String);

#[derive(Debug, Default, Clone)]
pub struct Claims {
    by_key: BTreeMap<Key, BTreeMap<String, Option<String>>>,
}

impl Claims {
    /// Replaces `svc`'s claims (`old` → `new`), collecting the keys touched.
    pub fn update(
        &mut self,
        svc: &str,
        old: &ServiceRules,
        new: &ServiceRules,
        touched: &mut BTreeSet<Key>,
    ) {
        for e in &old.elements {
            let k = (e.map, e.key.clone());
            if let Some(owners) = self.by_key.get_mut(&k) {
                owners.remove(svc);
                if owners.is_empty() {
                    self.by_key.remove(&k);
                }
            }
            touched.insert(k);
        }
        for e in &new.elements {
            let k = (e.map, e.key.clone());
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(svc.to_string(), e.value.clone());
            touched.insert(k);
        }
    }

    /// The winning value of `key`, if any Service claims it.
    pub fn winner(&self, key: &Key) -> Option<(&str, &Option<String>)> {
        self.by_key
            .get(key)
            .and_then(|o| o.iter().next())
            .map(|(s, v)| (s.as_str(), v))
    }

    /// Services whose claim on a map key lost to another Service's (set keys are shared freely).
    pub fn losers(&self, key: &Key) -> Vec<(String, String)> {
        let Some(owners) = self.by_key.get(key) else {
            return Vec::new();
        };
        let mut it = owners.iter();
        let Some((winner, _)) = it.next() else {
            return Vec::new();
        };
        it.filter(|(_, v)| v.is_some())
            .map(|(s, _)| (s.clone(), winner.clone()))
            .collect()
    }

    /// Every winning element.
    pub fn all(&self) -> Elements {
        self.by_key
            .iter()
            .filter_map(|(k, o)| o.values().next().map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// The changes `touched` brings against `kernel`.
    pub fn changes(&self, touched: &BTreeSet<Key>, kernel: &Elements) -> Vec<ElementChange> {
        touched
            .iter()
            .filter_map(|k| {
                let old = kernel.get(k).cloned();
                let new = self.winner(k).map(|(_, v)| v.clone());
                (old != new).then(|| ElementChange {
                    key: k.clone(),
                    old,
                    new,
                })
            })
            .collect()
    }
}
