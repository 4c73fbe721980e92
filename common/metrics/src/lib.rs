//! Prometheus metrics as kube's components export them at /metrics: counters, gauges and
//! histograms with labels; a family shows once it has a sample, as client_golang's vectors.
//! The controllers and the scheduler record into a [`Metrics`] handle given to them; whoever
//! serves /metrics (pea-control for its in-process components, or a component's own
//! `--metrics-bind-address` listener) appends [`Metrics::render`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A metric family: its name, kind, stability and help text (kube's HELP lines carry the
/// stability level in brackets).
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub stability: &'static str,
    pub help: &'static str,
    /// Histogram bucket upper bounds (empty for counters).
    pub buckets: &'static [f64],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    /// A value that goes up and down; [`Metrics::set`] replaces it.
    Gauge,
    Histogram,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    count: u64,
    sum: f64,
    /// Per bucket (not cumulative).
    buckets: Vec<u64>,
}

/// Label values by label name, in the family's label order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Samples {
    /// Counters and gauges (the family's kind tells them apart).
    counters: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
    families: BTreeMap<&'static str, &'static Family>,
}

/// A component's metrics; cloning shares them.
#[derive(Debug, Default, Clone)]
pub struct Metrics(Arc<Mutex<Samples>>);

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

/// A label value escaped per the Prometheus text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(l: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A sample value as Prometheus prints it (integers without a fraction).
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Metrics {
    /// Adds `by` to the counter of `family` with these labels (0 shows the series).
    pub fn add(&self, family: &'static Family, l: &[(&'static str, &str)], by: f64) {
        let Ok(mut s) = self.0.lock() else { return };
        s.families.insert(family.name, family);
        *s.counters
            .entry(family.name)
            .or_default()
            .entry(labels(l))
            .or_default() += by;
    }

    pub fn inc(&self, family: &'static Family, l: &[(&'static str, &str)]) {
        self.add(family, l, 1.0);
    }

    /// Sets the gauge of `family` with these labels to `value`.
    pub fn set(&self, family: &'static Family, l: &[(&'static str, &str)], value: f64) {
        let Ok(mut s) = self.0.lock() else { return };
        s.families.insert(family.name, family);
        s.counters
            .entry(family.name)
            .or_default()
            .insert(labels(l), value);
    }

    /// Records one observation of `value` in the histogram of `family`.
    pub fn observe(&self, family: &'static Family, l: &[(&'static str, &str)], value: f64) {
        let Ok(mut s) = self.0.lock() else { return };
        s.families.insert(family.name, family);
        let h = s
            .histograms
            .entry(family.name)
            .or_default()
            .entry(labels(l))
            .or_insert_with(|| Histogram {
                buckets: vec![0; family.buckets.len()],
                ..Default::default()
            });
        h.count += 1;
        h.sum += value;
        if let Some(i) = family.buckets.iter().position(|b| value <= *b) {
            h.buckets[i] += 1;
        }
    }

    /// How many observations a histogram series has (tests).
    pub fn observations(&self, family: &Family, l: &[(&'static str, &str)]) -> u64 {
        let Ok(s) = self.0.lock() else { return 0 };
        s.histograms
            .get(family.name)
            .and_then(|m| m.get(&labels(l)))
            .map_or(0, |h| h.count)
    }

    /// The value of a counter or gauge series (tests).
    pub fn counter(&self, family: &Family, l: &[(&'static str, &str)]) -> f64 {
        let Ok(s) = self.0.lock() else { return 0.0 };
        s.counters
            .get(family.name)
            .and_then(|m| m.get(&labels(l)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every family with samples, in the Prometheus text format.
    pub fn render(&self) -> String {
        let Ok(s) = self.0.lock() else {
            return String::new();
        };
        let mut out = String::new();
        for (name, family) in &s.families {
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            out.push_str(&format!("# HELP {name} [{}] {help}\n", family.stability));
            match family.kind {
                Kind::Counter | Kind::Gauge => {
                    let kind = if family.kind == Kind::Gauge {
                        "gauge"
                    } else {
                        "counter"
                    };
                    out.push_str(&format!("# TYPE {name} {kind}\n"));
                    for (l, v) in s.counters.get(name).into_iter().flatten() {
                        out.push_str(&format!("{name}{} {}\n", label_text(l, None), number(*v)));
                    }
                }
                Kind::Histogram => {
                    out.push_str(&format!("# TYPE {name} histogram\n"));
                    for (l, h) in s.histograms.get(name).into_iter().flatten() {
                        let mut cumulative = 0;
                        for (b, n) in family.buckets.iter().zip(&h.buckets) {
                            cumulative += n;
                            let le = Some(("le", number(*b)));
                            out.push_str(&format!(
                                "{name}_bucket{} {cumulative}\n",
                                label_text(l, le)
                            ));
                        }
                        let inf = Some(("le", "+Inf".to_string()));
                        out.push_str(&format!(
                            "{name}_bucket{} {}\n",
                            label_text(l, inf),
                            h.count
                        ));
                        out.push_str(&format!("{name}_sum{} {}\n", label_text(l, None), h.sum));
                        out.push_str(&format!(
                            "{name}_count{} {}\n",
                            label_text(l, None),
                            h.count
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static C: Family = Family {
        name: "x_total",
        kind: Kind::Counter,
        stability: "STABLE",
        help: "Xs.",
        buckets: &[],
    };
    static H: Family = Family {
        name: "x_seconds",
        kind: Kind::Histogram,
        stability: "ALPHA",
        help: "X time.",
        buckets: &[0.5, 1.0],
    };

    static G: Family = Family {
        name: "x_pending",
        kind: Kind::Gauge,
        stability: "STABLE",
        help: "Pending Xs.",
        buckets: &[],
    };

    #[test]
    fn a_gauge_is_replaced_not_added_to() {
        let m = Metrics::default();
        m.set(&G, &[("queue", "active")], 3.0);
        m.set(&G, &[("queue", "active")], 1.0);
        m.set(&G, &[("queue", "backoff")], 0.0);
        assert_eq!(m.counter(&G, &[("queue", "active")]), 1.0);
        assert_eq!(
            m.render(),
            "# HELP x_pending [STABLE] Pending Xs.\n# TYPE x_pending gauge\n\
             x_pending{queue=\"active\"} 1\n\
             x_pending{queue=\"backoff\"} 0\n"
        );
    }

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        assert_eq!(m.render(), "");
        m.inc(&C, &[("result", "ok")]);
        m.add(&C, &[("result", "ok")], 2.0);
        m.add(&C, &[("result", "a\"b")], 0.0);
        m.observe(&H, &[("mode", "m")], 0.25);
        m.observe(&H, &[("mode", "m")], 0.75);
        m.observe(&H, &[("mode", "m")], 3.0);
        assert_eq!(m.counter(&C, &[("result", "ok")]), 3.0);
        assert_eq!(m.observations(&H, &[("mode", "m")]), 3);
        assert_eq!(
            m.render(),
            "# HELP x_seconds [ALPHA] X time.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{mode=\"m\",le=\"0.5\"} 1\n\
             x_seconds_bucket{mode=\"m\",le=\"1\"} 2\n\
             x_seconds_bucket{mode=\"m\",le=\"+Inf\"} 3\n\
             x_seconds_sum{mode=\"m\"} 4\n\
             x_seconds_count{mode=\"m\"} 3\n\
             # HELP x_total [STABLE] Xs.\n# TYPE x_total counter\n\
             x_total{result=\"a\\\"b\"} 0\n\
             x_total{result=\"ok\"} 3\n"
        );
    }
}
