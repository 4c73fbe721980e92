//! Command-line surface, as runc's: global flags, then one subcommand per verb.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "pea-runtime",
    version,
    about = "pea's runc-compatible OCI runtime",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every verb accepts (runc's global flags).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Root directory for container state
    #[arg(long, global = true, default_value = "/run/pea-runtime")]
    pub root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Debug logging
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups (not available: this runtime manages cgroupfs only)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (checkpointing is not implemented)
    #[arg(long, global = true, hide = true)]
    pub criu: Option<PathBuf>,
    /// "true", "false" or "auto" (accepted for runc compatibility; `spec --rootless` uses it)
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (the process waits for `start`)
    Create(CreateArgs),
    /// Start a created container
    Start(IdArgs),
    /// Print the state of a container as JSON
    State(IdArgs),
    /// Send a signal to the container's init (or all its processes)
    Kill(KillArgs),
    /// Delete a container and its resources
    Delete(DeleteArgs),
    /// Create and start a container, wait for it unless detached
    Run(RunArgs),
    /// Run a process in a running container
    Exec(ExecArgs),
    /// List the processes in a container
    Ps(PsArgs),
    /// Freeze all processes of a container
    Pause(IdArgs),
    /// Thaw a paused container
    Resume(IdArgs),
    /// Change a container's cgroup resources
    Update(UpdateArgs),
    /// Print container stats and OOM events
    Events(EventsArgs),
    /// Print the features this runtime supports as JSON
    Features,
    /// Write a default config.json
    Spec(SpecArgs),
    /// List containers
    List(ListArgs),
    /// pea's own: an idmapped bind mount of SOURCE at TARGET with the ids of a user namespace
    #[command(name = "idmap-mount")]
    IdmapMount(IdmapMountArgs),
}

#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the init's pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility (no session keyring is created anyway)
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (from 3 on) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Do not wait for the container
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// Signal every process in the container
    #[arg(short, long)]
    pub all: bool,
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Kill a running container first; succeed if it does not exist
    #[arg(short, long)]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// KEY=VALUE, repeatable
    #[arg(short, long)]
    pub env: Vec<String>,
    #[arg(short, long)]
    pub tty: bool,
    /// uid[:gid], numeric or names from the container's /etc/passwd and /etc/group
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// process.json to run instead of the command line
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub process_label: Option<String>,
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,
    #[arg(long)]
    pub no_new_privs: bool,
    /// Add a capability, repeatable
    #[arg(short, long)]
    pub cap: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Sub-cgroup to run in
    #[arg(long)]
    pub cgroup: Option<String>,
    #[arg(long)]
    pub ignore_paused: bool,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    pub id: String,
    /// Options for ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// LinuxResources JSON file, "-" for stdin
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<i64>,
    #[arg(long)]
    pub memory_swap: Option<i64>,
    #[arg(long)]
    pub memory_reservation: Option<i64>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Print stats once and exit
    #[arg(long)]
    pub stats: bool,
    /// Seconds between stats events
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}

#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct IdmapMountArgs {
    /// The user namespace whose id mapping the mount takes (e.g. /proc/PID/ns/user)
    #[arg(long)]
    pub userns: PathBuf,
    pub source: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,
    #[arg(short, long)]
    pub quiet: bool,
}
