//! `spec`: write a default config.json (runc's defaults, from oci-spec).

use crate::cli::{Global, SpecArgs};
use crate::error::{Result, RuntimeError};

pub fn run(g: &Global, a: SpecArgs) -> Result<i32> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Usage(format!(
            "File {} exists. Remove it first",
            path.display()
        )));
    }
    let spec = if g.rootless.as_deref() == Some("true") {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        oci_spec::runtime::Spec::rootless(uid, gid)
    } else {
        oci_spec::runtime::Spec::default()
    };
    let text = serde_json::to_string_pretty(&spec).expect("spec serialises");
    std::fs::write(&path, text).map_err(RuntimeError::io(&path))?;
    Ok(0)
}
