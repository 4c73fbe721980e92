//! Shared benchmark statistics and table printing.
//!
//! Every benchmark runs pea and its anchor side by side in one process and reports medians and
//! ratios through this module, so all tables in the README read the same way. Benchmarks never
//! assert on timings.

use std::time::Duration;

/// Samples of one measured operation for one subject (pea, crun, ...).
#[derive(Debug, Clone)]
pub struct Samples {
    pub subject: String,
    pub durations: Vec<Duration>,
    /// Peak resident set size in KiB, when measured.
    pub peak_rss_kib: Option<u64>,
    /// A note printed beside the row (e.g. "lower bound: cgroups disabled").
    pub note: Option<String>,
}

impl Samples {
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            durations: Vec::new(),
            peak_rss_kib: None,
            note: None,
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.durations.push(d);
    }

    /// The q-quantile (0.0..=1.0) by nearest rank; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.durations, q)
    }

    pub fn median(&self) -> Option<Duration> {
        self.quantile(0.5)
    }
}

/// The q-quantile (0.0..=1.0) of `samples` by nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64).round() as usize;
    Some(sorted[rank])
}

/// Formats a duration in the unit that keeps three significant digits readable.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.3} s", us / 1e6)
    }
}

/// Renders a Markdown table of median, p90, ratio of medians to `anchor` and peak RSS.
pub fn table(title: &str, rows: &[Samples], anchor: &str) -> String {
    let anchor_median = rows
        .iter()
        .find(|r| r.subject == anchor)
        .and_then(Samples::median);
    let mut out = format!(
        "### {title}\n\n| subject | n | median | p90 | ratio to {anchor} | peak RSS | note |\n|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let med = r.median();
        let ratio = match (med, anchor_median) {
            (Some(m), Some(a)) if !a.is_zero() => {
                format!("{:.2}×", m.as_secs_f64() / a.as_secs_f64())
            }
            _ => "–".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.subject,
            r.durations.len(),
            med.map(fmt_duration).unwrap_or_else(|| "–".into()),
            r.quantile(0.9)
                .map(fmt_duration)
                .unwrap_or_else(|| "–".into()),
            ratio,
            r.peak_rss_kib
                .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_else(|| "–".into()),
            r.note.as_deref().unwrap_or(""),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let s = [ms(5), ms(1), ms(3), ms(2), ms(4)];
        assert_eq!(quantile(&s, 0.5), Some(ms(3)));
        assert_eq!(quantile(&s, 0.0), Some(ms(1)));
        assert_eq!(quantile(&s, 1.0), Some(ms(5)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn table_reports_ratio_to_anchor() {
        let mut a = Samples::new("crun");
        a.durations = vec![ms(10), ms(10), ms(10)];
        let mut b = Samples::new("pea");
        b.durations = vec![ms(5), ms(5), ms(5)];
        let t = table("run", &[b, a], "crun");
        assert!(t.contains("| pea | 3 | 5.00 ms | 5.00 ms | 0.50× |"), "{t}");
        assert!(
            t.contains("| crun | 3 | 10.00 ms | 10.00 ms | 1.00× |"),
            "{t}"
        );
    }
}
