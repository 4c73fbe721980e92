//! `ps`: the container's processes, as pids (json) or ps(1) rows.

use crate::cli::{Global, ListFormat, PsArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: PsArgs) -> Result<i32> {
    let h = Handle::load(&g.root, &a.id)?;
    let pids = h.pids()?;
    match a.format {
        ListFormat::Json => {
            println!("{}", serde_json::to_string(&pids).expect("ints"));
        }
        ListFormat::Table => {
            let args = if a.ps_args.is_empty() {
                vec!["-ef".to_string()]
            } else {
                a.ps_args.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .map_err(|e| RuntimeError::Other(format!("running ps: {e}")))?;
            if !out.status.success() {
                return Err(RuntimeError::Other(format!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let col = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| RuntimeError::Other("ps output has no PID column".into()))?;
            println!("{header}");
            for line in lines {
                let pid: Option<i32> = line
                    .split_whitespace()
                    .nth(col)
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
        }
    }
    Ok(0)
}
