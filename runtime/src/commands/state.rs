//! `state`: the OCI state of one container, as runc prints it.

use crate::cli::{Global, IdArgs};
use crate::container::Handle;
use crate::error::Result;

pub fn run(g: &Global, a: IdArgs) -> Result<i32> {
    let h = Handle::load(&g.root, &a.id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&h.oci_state()).expect("json value")
    );
    Ok(0)
}
