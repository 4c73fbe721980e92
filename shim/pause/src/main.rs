//! pea-pause: the process that holds a pod sandbox's namespaces.
//!
//! Like Kubernetes' pause: it does nothing but wait. As PID 1 of a PID namespace it reaps every
//! orphan re-parented to it; SIGINT and SIGTERM end it with status 0 so a sandbox stops cleanly.
//!
//! Signals are blocked and taken synchronously with sigwait rather than through handlers: no
//! async-signal-safety concerns, and a blocked signal is queued even for a namespace's init (the
//! kernel drops signals to init only when they are unblocked with the default action).

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, Pid};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("-v") | Some("--version") => {
            println!("pea-pause {VERSION}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("pea-pause: unknown argument {other:?} (usage: pea-pause [-v])");
            return ExitCode::from(2);
        }
    }
    if getpid() != Pid::from_raw(1) {
        eprintln!("pea-pause: warning: not running as PID 1");
    }

    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        set.add(sig);
    }
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        eprintln!("pea-pause: blocking signals: {e}");
        return ExitCode::from(1);
    }
    // Children may have exited before the mask was set (when pause is exec'd by a wrapper).
    reap_all();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap_all(),
            Ok(sig) => {
                eprintln!("pea-pause: shutting down, got signal {}", sig.as_str());
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("pea-pause: sigwait: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

/// Collects every exited child without blocking; several exits may share one SIGCHLD.
fn reap_all() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("pea-pause: waitpid: {e}");
                return;
            }
        }
    }
}
