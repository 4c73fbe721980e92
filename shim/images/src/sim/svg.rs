//! Line charts as standalone SVG, one line per policy: bytes pulled or hit rate against disk
//! size, and bytes pulled over trace time.

use std::fmt::Write as _;

use super::compare::Cell;
use super::SimResult;

const GIB: f64 = (1u64 << 30) as f64;

/// What a per-disk plot shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Mean bytes pulled per seed, GiB.
    PulledGib,
    HitRatePercent,
}

/// One line per policy over disk sizes.
pub fn plot_cells(cells: &[Cell], measure: Measure, title: &str) -> String {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for c in cells {
        let y = match measure {
            Measure::PulledGib => c.bytes_pulled as f64 / c.seeds.max(1) as f64 / GIB,
            Measure::HitRatePercent => c.hit_rate() * 100.0,
        };
        let point = (c.disk_bytes as f64 / GIB, y);
        match series.iter_mut().find(|(p, _)| *p == c.policy) {
            Some((_, pts)) => pts.push(point),
            None => series.push((c.policy.clone(), vec![point])),
        }
    }
    let y_label = match measure {
        Measure::PulledGib => "bytes pulled per seed (GiB)",
        Measure::HitRatePercent => "hit rate (%)",
    };
    let from_zero = measure == Measure::PulledGib;
    chart(&series, title, "disk for images (GiB)", y_label, from_zero)
}

/// Cumulative bytes pulled over trace time, one line per run.
pub fn plot_timeline(results: &[&SimResult], title: &str) -> String {
    let series: Vec<(String, Vec<(f64, f64)>)> = results
        .iter()
        .map(|r| {
            (
                r.policy.clone(),
                r.timeline
                    .iter()
                    .map(|&(t, b)| (t as f64 / 3600.0, b as f64 / GIB))
                    .collect(),
            )
        })
        .collect();
    chart(
        &series,
        title,
        "trace time (hours)",
        "bytes pulled so far (GiB)",
        true,
    )
}

/// Bytes pulled against disk size per policy (one trace).
pub fn plot(results: &[SimResult], title: &str) -> String {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in results {
        let point = (r.disk_bytes as f64 / GIB, r.bytes_pulled as f64 / GIB);
        match series.iter_mut().find(|(p, _)| *p == r.policy) {
            Some((_, pts)) => pts.push(point),
            None => series.push((r.policy.clone(), vec![point])),
        }
    }
    chart(
        &series,
        title,
        "disk for images (GiB)",
        "bytes pulled (GiB)",
        true,
    )
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Renders named series of (x, y) points; the y axis starts at 0 or, without `from_zero`, at
/// the multiple of 5 below the lowest point (hit rates differ in the last few percent).
fn chart(
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
    x_label: &str,
    y_label: &str,
    from_zero: bool,
) -> String {
    let all = || series.iter().flat_map(|(_, pts)| pts.iter());
    let (w, h) = (760.0, 460.0);
    let (left, right, top, bottom) = (80.0, 190.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x_min = all().map(|p| p.0).fold(f64::MAX, f64::min);
    let x_max = all().map(|p| p.0).fold(0.0, f64::max);
    let x_min = if x_min == f64::MAX { 0.0 } else { x_min };
    let x_span = (x_max - x_min).max(1e-9);
    let y_top = all().map(|p| p.1).fold(0.0, f64::max);
    let y_min = if from_zero {
        0.0
    } else {
        (all().map(|p| p.1).fold(f64::MAX, f64::min).min(y_top) / 5.0).floor() * 5.0
    };
    let y_max = if from_zero {
        nice_max(y_top)
    } else {
        (y_top / 5.0).ceil().max(y_min / 5.0 + 1.0) * 5.0
    };
    let sx = |x: f64| left + (x - x_min) / x_span * pw;
    let sy = |y: f64| top + ph - (y - y_min) / (y_max - y_min) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        left + pw / 2.0,
        xml(title)
    );
    for i in 0..=5 {
        let yv = y_min + (y_max - y_min) * i as f64 / 5.0;
        let y = sy(yv);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{yv:.1}</text>"##,
            left + pw,
            left - 8.0,
            y + 4.0
        );
        let xv = x_min + x_span * i as f64 / 5.0;
        let x = sx(xv);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{xv:.1}</text>"##,
            top + ph,
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        h - 18.0,
        xml(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        xml(y_label)
    );
    for (i, (p, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let line: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            line.join(" ")
        );
        // Markers only where points are few (per-disk plots, not timelines).
        for (x, y) in pts.iter().filter(|_| pts.len() <= 20) {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                sx(*x),
                sy(*y)
            );
        }
        let ly = top + 10.0 + 22.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 15.0,
            left + pw + 40.0,
            left + pw + 46.0,
            ly + 4.0,
            xml(p)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_one_line_per_policy() {
        let r = |p: &str, d: u64, b: u64| SimResult {
            policy: p.into(),
            disk_bytes: d << 30,
            bytes_pulled: b << 30,
            ..Default::default()
        };
        let svg = plot(
            &[
                r("kubelet", 10, 30),
                r("kubelet", 20, 10),
                r("size-aware", 10, 20),
                r("size-aware", 20, 8),
            ],
            "t<1>",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("t&lt;1&gt;"));
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
