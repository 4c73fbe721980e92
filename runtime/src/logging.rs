//! runc-style logging: `--log FILE` and `--log-format json|text`, one line per event, written
//! synchronously (no worker thread: libcontainer forks with raw clone3, which wants a
//! single-threaded caller). The forked container processes inherit this subscriber, so their
//! error details (libcontainer flattens child errors to short strings) land in the same log.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Log line format, as runc's `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

struct LineLayer {
    sink: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
}

#[derive(Default)]
struct Fields {
    msg: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            self.rest
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            self.rest
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let mut msg = f.msg;
        for (k, v) in &f.rest {
            let _ = write!(msg, " {k}={v}");
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let level = level_name(event.metadata().level());
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg={msg:?}"),
        };
        if let Ok(mut sink) = self.sink.lock() {
            let _ = writeln!(sink, "{line}");
            let _ = sink.flush();
        }
    }
}

/// Installs the global subscriber. Without a log file, warnings and errors go to stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<()> {
    let (sink, level, lib_level): (Box<dyn Write + Send>, LevelFilter, LevelFilter) = match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let level = if debug {
                LevelFilter::DEBUG
            } else {
                LevelFilter::INFO
            };
            (Box::new(file), level, level)
        }
        None => {
            // libcontainer warns about every absent cgroup controller: keep stderr for errors.
            if debug {
                (
                    Box::new(std::io::stderr()),
                    LevelFilter::DEBUG,
                    LevelFilter::DEBUG,
                )
            } else {
                (
                    Box::new(std::io::stderr()),
                    LevelFilter::WARN,
                    LevelFilter::ERROR,
                )
            }
        }
    };
    let layer = LineLayer {
        sink: Mutex::new(sink),
        format,
    };
    let _ = tracing_subscriber::registry()
        .with(
            layer.with_filter(
                Targets::new()
                    .with_default(level)
                    .with_target("libcontainer", lib_level)
                    .with_target("libcgroups", lib_level),
            ),
        )
        .try_init();
    Ok(())
}

/// Size of the log file now, to find the lines a failing operation adds.
pub fn log_offset(log: Option<&Path>) -> u64 {
    log.and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The first two errors logged after `offset`: the root cause a child process reported and its
/// errno (libcontainer flattens child errors into short strings like "failed to prepare rootfs").
pub fn first_error_since(log: &Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    f.take(1 << 20).read_to_string(&mut text).ok()?;
    let errors: Vec<String> = text
        .lines()
        .filter_map(|l| {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                return (v["level"] == "error")
                    .then(|| v["msg"].as_str().map(str::to_string))
                    .flatten();
            }
            let rest = l.split_once(" level=error msg=")?.1;
            Some(rest.trim_matches('"').replace("\\\"", "\""))
        })
        .take(2)
        .collect();
    (!errors.is_empty()).then(|| errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_error_after_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.json");
        std::fs::write(&p, "{\"level\":\"error\",\"msg\":\"old\",\"time\":\"t\"}\n").unwrap();
        let off = log_offset(Some(&p));
        let mut t = std::fs::read_to_string(&p).unwrap();
        t.push_str("{\"level\":\"info\",\"msg\":\"x\",\"time\":\"t\"}\n");
        t.push_str("{\"level\":\"error\",\"msg\":\"failed to mount /x: ENODEV\",\"time\":\"t\"}\n");
        t.push_str("{\"level\":\"error\",\"msg\":\"later\",\"time\":\"t\"}\n");
        std::fs::write(&p, t).unwrap();
        assert_eq!(
            first_error_since(&p, off).as_deref(),
            Some("failed to mount /x: ENODEV; later")
        );
        std::fs::write(&p, "time=\"t\" level=error msg=\"text form\"\n").unwrap();
        assert_eq!(first_error_since(&p, 0).as_deref(), Some("text form"));
    }
}
