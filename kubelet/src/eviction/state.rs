//! The eviction manager's memory between rounds, as kubelet's `synchronize` keeps it: which
//! thresholds are met (a met threshold stays met until its minimum reclaim is also available),
//! when each was first seen (soft thresholds act only after their grace period), and when each
//! node condition was last seen (a condition stays set for evictionPressureTransitionPeriod
//! after its signal clears, so the node does not flap).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::observe::Observations;
use super::{Condition, Configured, Pressure};

/// Whether `t` is met by `obs`; with `enforce_min_reclaim` the minimum reclaim is added to
/// the amount that must be available (kubelet's thresholdsMet).
pub fn met(t: &Configured, obs: &Observations, enforce_min_reclaim: bool) -> bool {
    let Some(o) = obs.get(&t.signal()) else {
        return false;
    };
    let mut min = t.threshold.min_available(o.capacity);
    if enforce_min_reclaim {
        if let Some(r) = t.min_reclaim {
            min = min.saturating_add(r.amount(o.capacity));
        }
    }
    o.available < min
}

#[derive(Debug)]
pub struct State {
    thresholds: Vec<Configured>,
    transition: Duration,
    /// Indexes into `thresholds` acted on last round (met for their grace period).
    met: BTreeSet<usize>,
    first_observed: BTreeMap<usize, Instant>,
    condition_last_observed: BTreeMap<Condition, Instant>,
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// The node conditions to report.
    pub pressure: Pressure,
    /// The thresholds to act on (met, past their grace period), memory first as kubelet's
    /// byEvictionPriority.
    pub act_on: Vec<Configured>,
}

impl State {
    pub fn new(thresholds: Vec<Configured>, transition: Duration) -> Self {
        Self {
            thresholds,
            transition,
            met: BTreeSet::new(),
            first_observed: BTreeMap::new(),
            condition_last_observed: BTreeMap::new(),
        }
    }

    pub fn thresholds(&self) -> &[Configured] {
        &self.thresholds
    }

    /// One round of kubelet's synchronize over `obs`, at `now`.
    pub fn round(&mut self, obs: &Observations, now: Instant) -> Round {
        let mut now_met: BTreeSet<usize> = (0..self.thresholds.len())
            .filter(|i| met(&self.thresholds[*i], obs, false))
            .collect();
        // Thresholds met before stay met until the minimum reclaim is available too.
        for i in &self.met {
            if met(&self.thresholds[*i], obs, true) {
                now_met.insert(*i);
            }
        }
        self.first_observed.retain(|i, _| now_met.contains(i));
        for i in &now_met {
            self.first_observed.entry(*i).or_insert(now);
        }
        for i in &now_met {
            self.condition_last_observed
                .insert(self.thresholds[*i].signal().condition(), now);
        }
        // Observed now, or within the transition period.
        let on = |c: Condition| {
            self.condition_last_observed
                .get(&c)
                .is_some_and(|t| *t == now || now.saturating_duration_since(*t) < self.transition)
        };
        let pressure = Pressure {
            memory: on(Condition::Memory),
            disk: on(Condition::Disk),
            pid: on(Condition::Pid),
        };
        self.met = now_met
            .into_iter()
            .filter(|i| {
                let grace = self.thresholds[*i].grace.unwrap_or(Duration::ZERO);
                now.saturating_duration_since(self.first_observed[i]) >= grace
            })
            .collect();
        let mut act_on: Vec<Configured> = self
            .met
            .iter()
            .map(|i| self.thresholds[*i].clone())
            .collect();
        act_on.sort_by_key(|t| !t.signal().is_memory());
        Round { pressure, act_on }
    }
}

#[cfg(test)]
mod tests {
    use super::super::observe::Observation;
    use super::super::{parse_config, Signal};
    use super::*;

    fn obs(signal: Signal, available: u64) -> Observations {
        [(
            signal,
            Observation {
                available,
                capacity: 1000,
            },
        )]
        .into_iter()
        .collect()
    }

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn soft_thresholds_wait_their_grace_period_but_set_the_condition_at_once() {
        let t = parse_config(
            &BTreeMap::new(),
            &map(&[("pid.available", "100")]),
            &map(&[("pid.available", "30s")]),
            &BTreeMap::new(),
        )
        .unwrap();
        let mut st = State::new(t, Duration::from_secs(60));
        let t0 = Instant::now();
        let r = st.round(&obs(Signal::PidAvailable, 50), t0);
        assert!(r.pressure.pid && r.act_on.is_empty());
        let r = st.round(&obs(Signal::PidAvailable, 50), t0 + Duration::from_secs(29));
        assert!(r.act_on.is_empty());
        let r = st.round(&obs(Signal::PidAvailable, 50), t0 + Duration::from_secs(30));
        assert_eq!(r.act_on.len(), 1);
        // Cleared before the grace period ran out: the clock starts again.
        st.round(
            &obs(Signal::PidAvailable, 500),
            t0 + Duration::from_secs(31),
        );
        let r = st.round(&obs(Signal::PidAvailable, 50), t0 + Duration::from_secs(40));
        assert!(r.act_on.is_empty());
    }

    #[test]
    fn conditions_stay_for_the_transition_period_and_min_reclaim_holds_thresholds() {
        let t = parse_config(
            &map(&[("nodefs.available", "100")]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &map(&[("nodefs.available", "50")]),
        )
        .unwrap();
        let mut st = State::new(t, Duration::from_secs(60));
        let t0 = Instant::now();
        let r = st.round(&obs(Signal::NodefsAvailable, 10), t0);
        assert!(r.pressure.disk && r.act_on.len() == 1 && !r.pressure.memory);
        // Above the threshold but not above threshold + minimum reclaim: still acted on.
        let r = st.round(
            &obs(Signal::NodefsAvailable, 120),
            t0 + Duration::from_secs(10),
        );
        assert_eq!(r.act_on.len(), 1);
        let r = st.round(
            &obs(Signal::NodefsAvailable, 200),
            t0 + Duration::from_secs(20),
        );
        assert!(r.act_on.is_empty());
        // The condition outlives the signal by the transition period.
        assert!(r.pressure.disk);
        let r = st.round(
            &obs(Signal::NodefsAvailable, 200),
            t0 + Duration::from_secs(69),
        );
        assert!(r.pressure.disk);
        let r = st.round(
            &obs(Signal::NodefsAvailable, 200),
            t0 + Duration::from_secs(71),
        );
        assert!(!r.pressure.disk);
    }

    #[test]
    fn memory_is_acted_on_first() {
        let t = parse_config(
            &map(&[("nodefs.available", "100"), ("memory.available", "100")]),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap();
        let mut st = State::new(t, Duration::ZERO);
        let mut o = obs(Signal::NodefsAvailable, 1);
        o.extend(obs(Signal::MemoryAvailable, 1));
        let r = st.round(&o, Instant::now());
        assert_eq!(r.act_on[0].signal(), Signal::MemoryAvailable);
        assert_eq!(r.act_on[1].signal(), Signal::NodefsAvailable);
    }
}
