//! `pause`: freeze every process of a running (or created) container.

use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;

use crate::cli::{Global, IdArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: IdArgs) -> Result<i32> {
    let mut h = Handle::load(&g.root, &a.id)?;
    h.require(
        "pause",
        &[ContainerStatus::Running, ContainerStatus::Created],
    )?;
    let cm = h.cgroup_manager()?;
    cm.freeze(FreezerState::Frozen)
        .map_err(|e| h.cgroup_err(e))?;
    h.c.set_status(ContainerStatus::Paused);
    h.c.save()
        .map_err(RuntimeError::lc(&a.id, "save state of"))?;
    Ok(0)
}
