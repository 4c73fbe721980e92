//! pea-leakguard: `snapshot FILE` before the suite, `check FILE` after it; exits 1 and lists
//! every mount, cgroup, network namespace, link, nftables table or process the tests left.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pea_tests::leakguard::Snapshot;

#[derive(Parser)]
#[command(about = "Fails when tests leave mounts, cgroups, netns, links, nft tables or processes")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record what the machine holds now.
    Snapshot { file: PathBuf },
    /// Compare the machine with a snapshot; exit 1 if anything new is left.
    Check {
        file: PathBuf,
        /// Seconds to keep re-checking while leaks remain (processes may still be exiting).
        #[arg(long, default_value_t = 5)]
        settle: u64,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Cmd::Snapshot { file } => {
            let snap = Snapshot::take()?;
            std::fs::write(&file, serde_json::to_vec_pretty(&snap)?)
                .with_context(|| format!("writing {}", file.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { file, settle } => {
            let before: Snapshot = serde_json::from_slice(
                &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
            )
            .with_context(|| format!("parsing {}", file.display()))?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(settle);
            loop {
                let leaks = before.leaks_in(&Snapshot::take()?);
                if leaks.is_empty() {
                    println!("leak guard: nothing left behind");
                    return Ok(ExitCode::SUCCESS);
                }
                if std::time::Instant::now() >= deadline {
                    eprintln!(
                        "leak guard: the tests left {} thing(s) behind:",
                        leaks.len()
                    );
                    for l in &leaks {
                        eprintln!("  {l}{}", process_details(l));
                    }
                    return Ok(ExitCode::from(1));
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
}

/// For a leaked process, its command line, parent and cgroup (to find the test that made it).
fn process_details(leak: &str) -> String {
    let Some(pid) = leak
        .strip_prefix("process: ")
        .and_then(|r| r.split_whitespace().next())
    else {
        return String::new();
    };
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default();
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(str::to_string))
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .ok()
        .and_then(|c| c.lines().find(|l| l.contains(":pids:")).map(str::to_string))
        .unwrap_or_default();
    format!(" [cmdline {cmd:?}, ppid {ppid}, {cgroup}]")
}
