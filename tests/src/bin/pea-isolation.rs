//! The isolation conformance suite: `pea-isolation <runtime-binary>...` runs every check
//! against each OCI runtime, prints a Markdown table per runtime and exits 1 if any failed.
//! Extra global flags for one runtime: `path::--flag=value` (e.g. `crun::--cgroup-manager=disabled`).

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Check container isolation through OCI runtimes (runc CLI)")]
struct Args {
    /// Runtime binaries (names on PATH or paths); `bin::--flag` adds a global flag
    #[arg(required = true)]
    runtimes: Vec<String>,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    pea_tests::privileged::require_root();
    let mut failed = 0;
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
        let report = pea_tests::conformance::run_suite(&name, &path, &flags);
        println!("{}", report.table());
        failed += report.failures();
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
