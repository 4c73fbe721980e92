//! `list`: every container under --root.

use crate::cli::{Global, ListArgs, ListFormat};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: ListArgs) -> Result<i32> {
    let mut states = Vec::new();
    if g.root.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&g.root)
            .map_err(RuntimeError::io(&g.root))?
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for id in names {
            match Handle::load(&g.root, &id) {
                Ok(h) => states.push(h.oci_state()),
                Err(e) => tracing::warn!(id, error = %e, "skipping unreadable container"),
            }
        }
    }
    if a.quiet {
        for s in &states {
            println!("{}", s["id"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    match a.format {
        ListFormat::Json => println!("{}", serde_json::to_string(&states).expect("json")),
        ListFormat::Table => {
            println!(
                "{:<24}{:<10}{:<10}{:<40}{:<32}OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<24}{:<10}{:<10}{:<40}{:<32}root",
                    s["id"].as_str().unwrap_or_default(),
                    s["pid"],
                    s["status"].as_str().unwrap_or_default(),
                    s["bundle"].as_str().unwrap_or_default(),
                    s["created"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    Ok(0)
}
