//! The isolation conformance suite: `pea-isolation <runtime-binary>...` runs every check
//! against each OCI runtime and prints a Markdown table per runtime, then runs the conformance
//! part (configs real tools generate: `runc spec`, podman, the CRI; both noNewPrivileges values;
//! `pea_tests::conformance::tools`) against each and prints one table with a column per runtime.
//! Exits 1 if a runtime fails a check or a case another runtime passes (host-forbidden cases
//! only record errors). `--tools-only` skips the isolation checks.
//! Extra global flags for one runtime: `path::--flag=value` (e.g. `crun::--cgroup-manager=disabled`).

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Check container isolation through OCI runtimes (runc CLI)")]
struct Args {
    /// Runtime binaries (names on PATH or paths); `bin::--flag` adds a global flag
    #[arg(required = true)]
    runtimes: Vec<String>,
    /// Only the conformance part (configs real tools generate)
    #[arg(long)]
    tools_only: bool,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    pea_tests::privileged::require_root();
    let mut failed = 0;
    let mut tool_reports = Vec::new();
    for spec in &args.runtimes {
        let mut parts = spec.split("::");
        let bin = parts.next().unwrap_or_default();
        let flags: Vec<String> = parts.map(str::to_string).collect();
        let path: PathBuf = pea_tests::privileged::which(bin)
            .ok_or_else(|| anyhow::anyhow!("runtime {bin:?} not found"))?;
        let name = if flags.is_empty() {
            bin.to_string()
        } else {
            format!("{bin} {}", flags.join(" "))
        };
        if !args.tools_only {
            let report = pea_tests::conformance::run_suite(&name, &path, &flags);
            println!("{}", report.table());
            failed += report.failures();
        }
        tool_reports.push(pea_tests::conformance::tools::run_tool_cases(
            &name, &path, &flags,
        ));
    }
    println!("### configs real tools generate\n");
    println!(
        "{}",
        pea_tests::conformance::tools::side_by_side(&tool_reports)
    );
    // A case counts against a runtime when another runtime passed it.
    for r in &tool_reports {
        for c in &r.results {
            let passed_elsewhere = tool_reports.iter().any(|o| {
                o.results
                    .iter()
                    .any(|oc| oc.name == c.name && oc.outcome.passed())
            });
            if passed_elsewhere && !c.outcome.passed() {
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
