//! Prometheus text metrics: request counts and latency histograms by verb, resource and code.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request metrics, shared by all connections.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    /// The in-process scheduler's and controllers' metrics, served after the API server's
    /// (kube serves them from kube-scheduler's and kube-controller-manager's own /metrics).
    components: Mutex<Vec<pea_controllers::metrics::Metrics>>,
}

/// The `verb` label of a request: one of kube-apiserver's verbs (or a lowercase HTTP method
/// for non-resource paths), anything else "other", so clients cannot mint series.
pub fn verb_label(verb: &str) -> &'static str {
    const KNOWN: [&str; 13] = [
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
        "post",
        "put",
        "head",
        "options",
        "connect",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(verb))
        .copied()
        .unwrap_or("other")
}

/// A label value escaped per the Prometheus text format (backslash, double quote, newline).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Metrics {
    /// Counts one request. `resource` must be a served resource (or ""); the verb goes through
    /// [`verb_label`].
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        let verb = verb_label(verb);
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let s = map
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default();
        let secs = took.as_secs_f64();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let Ok(map) = self.series.lock() else {
            return String::new();
        };
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out by verb, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        for ((verb, resource, code), s) in map.iter() {
            let resource = escape(resource);
            out.push_str(&format!("apiserver_request_total{{verb=\"{verb}\",resource=\"{resource}\",code=\"{code}\"}} {}\n", s.count));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        let mut by_vr: BTreeMap<(String, String), Series> = BTreeMap::new();
        for ((verb, resource, _), s) in map.iter() {
            let agg = by_vr.entry((verb.clone(), resource.clone())).or_default();
            agg.count += s.count;
            agg.sum += s.sum;
            for i in 0..BUCKETS.len() {
                agg.buckets[i] += s.buckets[i];
            }
        }
        for ((verb, resource), s) in by_vr {
            let l = format!("verb=\"{verb}\",resource=\"{}\"", escape(&resource));
            for (i, b) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "apiserver_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}\n",
                    s.buckets[i]
                ));
            }
            out.push_str(&format!(
                "apiserver_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}\n",
                s.count
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_sum{{{l}}} {}\n",
                s.sum
            ));
            out.push_str(&format!(
                "apiserver_request_duration_seconds_count{{{l}}} {}\n",
                s.count
            ));
        }
        if let Ok(components) = self.components.lock() {
            for c in components.iter() {
                out.push_str(&c.render());
            }
        }
        out
    }

    /// Serves an in-process component's metrics (the scheduler's, the controllers') from now
    /// on; the handle is shared, so what it records later shows too.
    pub fn add_component(&self, m: pea_controllers::metrics::Metrics) {
        if let Ok(mut components) = self.components.lock() {
            components.push(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_escaped() {
        let m = Metrics::default();
        m.observe("GET", "pods", 200, Duration::ZERO);
        m.observe("BREW", "pods", 405, Duration::ZERO);
        m.observe("get", "a\"}\\\nb", 404, Duration::ZERO);
        let text = m.render();
        assert!(
            text.contains(r#"apiserver_request_total{verb="get",resource="pods",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"apiserver_request_total{verb="other",resource="pods",code="405"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"resource="a\"}\\\nb""#), "{text}");
        // Every sample line is `name{labels} value` with the labels closed before the value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(series.ends_with('}'), "{line}");
            value.parse::<f64>().unwrap();
        }
    }

    #[test]
    fn the_in_process_controllers_metrics_follow_the_api_servers() {
        let m = Metrics::default();
        let controllers = pea_controllers::metrics::Metrics::default();
        m.add_component(controllers.clone());
        // Recorded after attaching: the handle is shared, not copied.
        controllers.inc(
            &pea_controllers::job::metrics::FINISHED,
            &[
                ("completion_mode", "NonIndexed"),
                ("result", "failed"),
                ("reason", "BackoffLimitExceeded"),
            ],
        );
        let text = m.render();
        assert!(
            text.contains("# TYPE job_controller_jobs_finished_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"job_controller_jobs_finished_total{completion_mode="NonIndexed",result="failed",reason="BackoffLimitExceeded"} 1"#),
            "{text}"
        );
    }
}
