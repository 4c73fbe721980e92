//! One module per CLI verb. Each returns the process exit code.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod idmap_mount;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use crate::cli::{Command, Global};
use crate::error::{Result, RuntimeError};

/// Runs one verb.
pub fn dispatch(g: &Global, cmd: Command) -> Result<i32> {
    if g.systemd_cgroup {
        return Err(RuntimeError::Usage(
            "--systemd-cgroup: systemd cgroup management is not available (pea-runtime is built \
             without systemd support and manages cgroupfs directly); drop the flag"
                .into(),
        ));
    }
    match cmd {
        Command::Create(a) => create::run(g, a),
        Command::Start(a) => start::run(g, a),
        Command::State(a) => state::run(g, a),
        Command::Kill(a) => kill::run(g, a),
        Command::Delete(a) => delete::run(g, a),
        Command::Run(a) => run::run(g, a),
        Command::Exec(a) => exec::run(g, a),
        Command::Ps(a) => ps::run(g, a),
        Command::Pause(a) => pause::run(g, a),
        Command::Resume(a) => resume::run(g, a),
        Command::Update(a) => update::run(g, a),
        Command::Events(a) => events::run(g, a),
        Command::Features => features::run(),
        Command::Spec(a) => spec::run(g, a),
        Command::List(a) => list::run(g, a),
        Command::IdmapMount(a) => idmap_mount::run(a),
    }
}

/// Makes a path absolute against the current directory (libcontainer chdirs while it works).
pub fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}
