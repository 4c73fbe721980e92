//! A line chart of bytes pulled against disk size, one line per policy, as a standalone SVG.

use std::fmt::Write as _;

use super::SimResult;

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

/// Renders `results` (several disk sizes per policy).
pub fn plot(results: &[SimResult], title: &str) -> String {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let (w, h) = (760.0, 460.0);
    let (left, right, top, bottom) = (80.0, 190.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x_min = results
        .iter()
        .map(|r| gib(r.disk_bytes))
        .fold(f64::MAX, f64::min)
        .min(f64::MAX);
    let x_max = results
        .iter()
        .map(|r| gib(r.disk_bytes))
        .fold(0.0, f64::max);
    let x_min = if x_min == f64::MAX { 0.0 } else { x_min };
    let x_span = (x_max - x_min).max(1e-9);
    let y_max = nice_max(
        results
            .iter()
            .map(|r| gib(r.bytes_pulled))
            .fold(0.0, f64::max),
    );
    let sx = |x: f64| left + (x - x_min) / x_span * pw;
    let sy = |y: f64| top + ph - y / y_max * ph;
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
        let yv = y_max * i as f64 / 5.0;
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
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">disk for images (GiB)</text>"#,
        left + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">bytes pulled (GiB)</text>"#,
        top + ph / 2.0
    );
    let mut policies: Vec<&str> = Vec::new();
    for r in results {
        if !policies.contains(&r.policy.as_str()) {
            policies.push(&r.policy);
        }
    }
    for (i, p) in policies.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.policy == *p)
            .map(|r| (gib(r.disk_bytes), gib(r.bytes_pulled)))
            .collect();
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
        for (x, y) in &pts {
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
