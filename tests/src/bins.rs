//! Finding the workspace's binaries from a test: `$ENV_VAR` if set, else the one in the target
//! dir this test was built into (`cargo build --workspace` builds them beside the tests).

use std::path::PathBuf;

/// The binary `name`, from `$env_var` or next to this test executable's target dir.
pub fn workspace_binary(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    for dir in exe.ancestors().skip(1).take(3) {
        for profile_dir in [dir.to_path_buf(), dir.join("debug")] {
            let p = profile_dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "{name} binary not found next to {}: run `cargo build --workspace` first or set {env_var}",
        exe.display()
    )
}
