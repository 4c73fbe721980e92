//! Running `nft`: a generated transaction in on stdin (`nft -f -`), nothing read back but the
//! exit status and the error text, which is only shown, never parsed.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use crate::{model::Family, ruleset::TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft rejected the {family} transaction ({lines} lines): {stderr}")]
    Rejected {
        family: &'static str,
        lines: usize,
        stderr: String,
    },
}

/// The `nft` program to run (a path for tests and benchmarks, else `nft` on PATH).
#[derive(Debug, Clone)]
pub struct Nft {
    pub program: String,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: "nft".into(),
        }
    }
}

impl Nft {
    /// Applies `text` as one transaction.
    pub fn apply(&self, family: Family, text: &str) -> Result<(), NftError> {
        let spawn = |source| NftError::Spawn {
            program: self.program.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let mut stdin = child.stdin.take().expect("piped");
        let written = stdin.write_all(text.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            stderr.truncate(4096);
            return Err(NftError::Rejected {
                family: family.nft(),
                lines: text.lines().count(),
                stderr: stderr.trim().to_string(),
            });
        }
        written.map_err(spawn)
    }

    /// Deletes pea-proxy's table of `family` if it exists (`--cleanup`).
    pub fn delete_table(&self, family: Family) -> Result<(), NftError> {
        let t = format!("{} {TABLE}", family.nft());
        self.apply(family, &format!("add table {t}\ndelete table {t}\n"))
    }
}
