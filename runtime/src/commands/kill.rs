//! `kill`: signal the init (or, with --all, every process in the cgroup). The status is not
//! touched: the next `state` sees what the signal did.

use libcontainer::container::ContainerStatus;

use crate::cli::{Global, KillArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};
use crate::signals;

pub fn run(g: &Global, a: KillArgs) -> Result<i32> {
    let sig = signals::parse(&a.signal).map_err(RuntimeError::Usage)?;
    let h = Handle::load(&g.root, &a.id)?;
    let alive = [
        ContainerStatus::Created,
        ContainerStatus::Running,
        ContainerStatus::Paused,
    ];
    let stopped_all = a.all && h.status() == ContainerStatus::Stopped;
    if !(alive.contains(&h.status()) || stopped_all) {
        return Err(RuntimeError::Other("container not running".into()));
    }
    h.signal(sig, a.all)?;
    Ok(0)
}
