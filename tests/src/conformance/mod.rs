//! The isolation conformance suite: runs real containers through any OCI runtime binary
//! (pea-runtime, runc, crun) and checks, from inside and outside, that they are isolated as the
//! spec asks: namespaces, joined namespaces, capabilities, no_new_privs, seccomp, masked and
//! readonly paths, readonly rootfs, devices, cgroup limits, rlimits, ids, sysctls, hostname,
//! mount propagation and host leaks through /proc and /sys.
//!
//! `run_suite` returns a `Report` (one row per check); `Report::table` renders it as Markdown.

mod checks;
/// The RuntimeDefault seccomp profile pea-shim gives containers (a Docker-like allow-list).
pub use pea_shim::oci::runtime_default_profile as default_profile;
pub mod probe;
pub mod tools;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fixtures::{Bundle, BundleBuilder};
use crate::runtime_cli::{run_with_timeout, unique_id, Output, Runtime};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// The runtime could not run the container at all.
    RuntimeError(String),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
}

/// One row of the report.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// All checks for one runtime.
#[derive(Debug, Clone)]
pub struct Report {
    pub runtime: String,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| !r.outcome.passed()).count()
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "### {} — {} / {} passed\n\n| check | result | detail |\n|---|---|---|\n",
            self.runtime,
            self.results.len() - self.failures(),
            self.results.len()
        );
        for r in &self.results {
            let (res, detail) = match &r.outcome {
                Outcome::Pass => ("pass", String::new()),
                Outcome::Fail(d) => ("FAIL", d.clone()),
                Outcome::RuntimeError(d) => ("ERROR", d.clone()),
            };
            let detail = detail.replace('|', "\\|").replace('\n', " ");
            let detail: String = detail.chars().take(160).collect();
            out.push_str(&format!("| {} | {} | {} |\n", r.name, res, detail));
        }
        out
    }
}

/// What a check gets: the runtime, a work dir, and helpers to build and run bundles.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub rt: &'a Runtime,
    pub work: &'a Path,
    pub probe: Option<PathBuf>,
}

impl Ctx<'_> {
    /// A busybox bundle running `sh -c script`, with the probe at /probe when available.
    pub fn bundle(&self, name: &str, script: &str) -> Result<Bundle, String> {
        let dir = self.work.join(name);
        let b = BundleBuilder::busybox(&dir)
            .args(["sh", "-c", script])
            .hostname("pea-iso")
            .build()
            .map_err(|e| e.to_string())?;
        if let Some(p) = &self.probe {
            std::fs::copy(p, b.rootfs.join("probe")).map_err(|e| e.to_string())?;
        }
        Ok(b)
    }

    /// `run` in the foreground; stdout on success, an error outcome otherwise.
    pub fn run(&self, b: &Bundle) -> Result<String, Outcome> {
        let o = self.run_raw(b);
        if o.code == Some(0) {
            Ok(o.stdout)
        } else {
            Err(Outcome::RuntimeError(format!(
                "exit {:?}: {}{}",
                o.code,
                o.stderr.trim(),
                if o.stdout.is_empty() {
                    String::new()
                } else {
                    format!(" (stdout: {})", o.stdout.trim())
                }
            )))
        }
    }

    pub fn run_raw(&self, b: &Bundle) -> Output {
        let id = unique_id("iso");
        let out = run_with_timeout(
            self.rt
                .command(["run", "--bundle", b.dir.to_str().unwrap_or_default(), &id]),
            None,
            Duration::from_secs(60),
        );
        // A runtime that failed half-way must not leave the container behind.
        let mut del = self.rt.command(["delete", "--force", &id]);
        del.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = del.status();
        out
    }
}

/// `key=value` lines of a script's output.
pub fn kv(out: &str) -> std::collections::HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

type CheckFn = fn(&Ctx) -> Outcome;

/// Every check, in report order.
pub fn all_checks() -> Vec<(&'static str, CheckFn)> {
    checks::ALL.to_vec()
}

/// Runs the suite against `runtime_bin` (with extra global flags).
pub fn run_suite(name: &str, runtime_bin: &Path, global_args: &[String]) -> Report {
    let mut rt = Runtime::new(runtime_bin);
    rt.global_args = global_args.to_vec();
    let work = tempfile::Builder::new()
        .prefix("pea-isolation-")
        .tempdir()
        .expect("work dir");
    let probe = probe::build_probe(work.path()).ok();
    let ctx = Ctx {
        rt: &rt,
        work: work.path(),
        probe,
    };
    let mut results = Vec::new();
    // Can it run anything at all? If not, every check reports that error.
    let smoke = ctx.bundle("smoke", "true").map_err(Outcome::Fail);
    let smoke_err = match smoke.map(|b| ctx.run(&b)) {
        Ok(Ok(_)) => None,
        Ok(Err(o)) | Err(o) => Some(o),
    };
    for (check, f) in all_checks() {
        let outcome = match &smoke_err {
            Some(o) => o.clone(),
            None => {
                if ctx.probe.is_none() && check.starts_with("seccomp") {
                    Outcome::Fail("probe binary unavailable (gcc -static failed)".into())
                } else {
                    f(&ctx)
                }
            }
        };
        results.push(CheckResult {
            name: check,
            outcome,
        });
    }
    Report {
        runtime: name.to_string(),
        results,
    }
}
