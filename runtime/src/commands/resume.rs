//! `resume`: thaw a paused container.

use libcgroups::common::{CgroupManager, FreezerState};
use libcontainer::container::ContainerStatus;

use crate::cli::{Global, IdArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: IdArgs) -> Result<i32> {
    let mut h = Handle::load(&g.root, &a.id)?;
    h.require("resume", &[ContainerStatus::Paused])?;
    let cm = h.cgroup_manager()?;
    cm.freeze(FreezerState::Thawed)
        .map_err(|e| h.cgroup_err(e))?;
    h.c.set_status(ContainerStatus::Running);
    h.c.save()
        .map_err(RuntimeError::lc(&a.id, "save state of"))?;
    Ok(0)
}
