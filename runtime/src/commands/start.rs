//! `start`: release a created container's init to exec the user process.

use libcontainer::container::ContainerStatus;

use crate::cli::{Global, IdArgs};
use crate::container::Handle;
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: IdArgs) -> Result<i32> {
    let mut h = Handle::load(&g.root, &a.id)?;
    h.require("start", &[ContainerStatus::Created])?;
    h.c.start().map_err(RuntimeError::lc(&a.id, "start"))?;
    Ok(0)
}
