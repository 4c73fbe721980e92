//! `pea logs`: the container logs of every pod a selector matches, across all nodes, in one
//! stream ordered by time, each line prefixed `[pod/container]` (as stern and `kubectl logs
//! --prefix` print them). Everything goes through the API (pods/log with `timestamps=true` and
//! `sinceSeconds`, which pea-control proxies to each pod's kubelet), so this works the same for
//! any node a pod runs on. With `--follow` each container's log is streamed and lines are
//! printed as they arrive.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::proc::run;

/// At most this many containers are read (stern's default `--max-log-requests` is 50).
pub const MAX_STREAMS: usize = 50;

pub struct Options {
    pub selector: Option<String>,
    pub namespace: String,
    pub since: Option<String>,
    pub follow: bool,
    pub timestamps: bool,
}

/// A namespace name is a DNS label (it goes into the API path).
pub fn check_namespace(ns: &str) -> Result<()> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if !ok {
        bail!("--namespace {ns:?}: not a valid namespace name (lowercase letters, digits, '-')");
    }
    Ok(())
}

/// A duration like `30s`, `5m`, `2h` (or a combination `1h30m`), in whole seconds.
pub fn parse_since(s: &str) -> Result<u64> {
    let bad = || anyhow::anyhow!("--since {s:?}: want a duration like 30s, 5m or 1h");
    let mut total = 0u64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// One log line: RFC 3339 timestamp (as the kubelet wrote it), the `[pod/container]` prefix and
/// the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time: String,
    pub prefix: String,
    pub text: String,
}

/// The sort key of an RFC 3339 UTC timestamp: the fraction padded to nanoseconds, since
/// RFC3339Nano trims trailing zeros and plain string order would put `.5Z` after `.45Z`.
fn time_key(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    format!("{secs}.{frac:0<9}")
}

/// Splits `2026-12-06T14:00:00.123Z text` into its timestamp and text.
fn split_timestamp(line: &str) -> (String, String) {
    match line.split_once(' ') {
        Some((t, rest)) if t.len() >= 20 && t.as_bytes()[10] == b'T' => (t.into(), rest.into()),
        _ => (String::new(), line.into()),
    }
}

/// Merges per-container logs by time; lines of one container keep their order (a stable sort).
pub fn merge(logs: Vec<(String, String)>) -> Vec<Line> {
    let mut lines: Vec<Line> = logs
        .into_iter()
        .flat_map(|(prefix, body)| {
            body.lines()
                .map(|l| {
                    let (time, text) = split_timestamp(l);
                    Line {
                        time,
                        prefix: prefix.clone(),
                        text,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort_by_cached_key(|l| time_key(&l.time));
    lines
}

fn print_line(out: &mut impl Write, l: &Line, timestamps: bool) -> std::io::Result<()> {
    if timestamps {
        writeln!(out, "[{}] {} {}", l.prefix, l.time, l.text)
    } else {
        writeln!(out, "[{}] {}", l.prefix, l.text)
    }
}

fn kubectl(c: &Cluster, args: &[&str]) -> Result<String> {
    let kc = c.host_kubeconfig().display().to_string();
    let mut a = vec!["--kubeconfig", kc.as_str()];
    a.extend_from_slice(args);
    run("kubectl", &a)
}

/// The (pod, container) pairs to read: every container that has started (a status with a
/// container id), init containers first, as `kubectl logs --all-containers` takes them.
fn targets(c: &Cluster, o: &Options) -> Result<Vec<(String, String)>> {
    let mut args = vec!["get", "pods", "-n", o.namespace.as_str(), "-o", "json"];
    if let Some(s) = &o.selector {
        args.extend(["-l", s.as_str()]);
    }
    let v: Value = serde_json::from_str(&kubectl(c, &args)?).context("reading the pod list")?;
    let mut out = Vec::new();
    for p in v["items"].as_array().into_iter().flatten() {
        let pod = p["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for field in ["initContainerStatuses", "containerStatuses"] {
            for s in p["status"][field].as_array().into_iter().flatten() {
                if s["containerID"].as_str().is_some_and(|id| !id.is_empty()) {
                    out.push((pod.clone(), s["name"].as_str().unwrap_or_default().into()));
                }
            }
        }
    }
    if out.len() > MAX_STREAMS {
        bail!(
            "{} containers match; at most {MAX_STREAMS} are read at once: narrow the --selector",
            out.len()
        );
    }
    Ok(out)
}

pub fn logs(c: &Cluster, o: &Options) -> Result<()> {
    if c.nodes == 0 {
        bail!("cluster {} is not up", c.name);
    }
    let since = o.since.as_deref().map(parse_since).transpose()?;
    let targets = targets(c, o)?;
    if targets.is_empty() {
        eprintln!(
            "pea logs: no started containers in namespace {}{}",
            o.namespace,
            o.selector
                .as_deref()
                .map(|s| format!(" match {s}"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    if o.follow {
        return follow(c, o, since, &targets);
    }
    let fetched: Vec<Result<(String, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|(pod, ctr)| {
                scope.spawn(move || {
                    let mut path = format!(
                        "/api/v1/namespaces/{}/pods/{pod}/log?container={ctr}&timestamps=true",
                        o.namespace
                    );
                    if let Some(s) = since {
                        path.push_str(&format!("&sinceSeconds={s}"));
                    }
                    kubectl(c, &["get", "--raw", &path]).map(|body| (format!("{pod}/{ctr}"), body))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| bail!("log reader panicked")))
            .collect()
    });
    let mut logs = Vec::new();
    for f in fetched {
        match f {
            Ok(l) => logs.push(l),
            // One pod's log failing (its node gone, the pod deleted meanwhile) does not hide
            // the others; it is said on stderr.
            Err(e) => eprintln!("pea logs: {e:#}"),
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for l in merge(logs) {
        if print_line(&mut out, &l, o.timestamps).is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}

/// Streams every container's log (`kubectl logs -f --timestamps`), printing lines as they come.
fn follow(
    c: &Cluster,
    o: &Options,
    since: Option<u64>,
    targets: &[(String, String)],
) -> Result<()> {
    let kc = c.host_kubeconfig().display().to_string();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    std::thread::scope(|scope| {
        for (pod, ctr) in targets {
            let (kc, out) = (kc.clone(), out.clone());
            scope.spawn(move || -> Result<()> {
                let mut cmd = Command::new("kubectl");
                cmd.args(["--kubeconfig", &kc, "logs", "-f", "--timestamps"])
                    .args(["-n", &o.namespace, pod, "-c", ctr]);
                if let Some(s) = since {
                    cmd.arg(format!("--since={s}s"));
                }
                let mut child = cmd
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .spawn()
                    .context("starting kubectl logs")?;
                let prefix = format!("{pod}/{ctr}");
                for line in BufReader::new(child.stdout.take().context("kubectl stdout")?).lines() {
                    let Ok(line) = line else { break };
                    let (time, text) = split_timestamp(&line);
                    let l = Line {
                        time,
                        prefix: prefix.clone(),
                        text,
                    };
                    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
                    if print_line(&mut *w, &l, o.timestamps).is_err() {
                        break;
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                Ok(())
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_kubectl_durations_and_names_bad_ones() {
        assert_eq!(parse_since("30s").unwrap(), 30);
        assert_eq!(parse_since("5m").unwrap(), 300);
        assert_eq!(parse_since("1h30m").unwrap(), 5400);
        for bad in ["", "5", "m", "-5m", "5d", "0s", "99999999999999999999h"] {
            let e = parse_since(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("--since {bad:?}")), "{e}");
        }
    }

    #[test]
    fn lines_merge_by_time_across_containers() {
        let a = "2026-12-06T10:00:00.5Z a1\n2026-12-06T10:00:02Z a2\n".to_string();
        let b = "2026-12-06T10:00:00.45Z b1\n2026-12-06T10:00:01.000000001Z b2 with  spaces\n"
            .to_string();
        let merged = merge(vec![("p1/c".into(), a), ("p2/c".into(), b)]);
        let texts: Vec<_> = merged.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["b1", "a1", "b2 with  spaces", "a2"]);
        assert_eq!(merged[0].prefix, "p2/c");
        let mut buf = Vec::new();
        print_line(&mut buf, &merged[1], false).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "[p1/c] a1\n");
    }
}
