//! Guards for tests that need root: they fail loudly, never skip.

/// Panics with a clear message unless the process runs as root.
///
/// Privileged tests create namespaces, mounts and cgroups for real; passing without doing that
/// would hide a broken suite, so a non-root run is a failure, not a skip.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (it creates namespaces, mounts or cgroups for real); \
             run the suite as root: tests/scripts/test.sh"
        );
    }
}

/// Panics with a clear message unless `program` can be found on PATH or as a path.
pub fn require_program(program: &str) -> std::path::PathBuf {
    match which(program) {
        Some(p) => p,
        None => panic!(
            "this test needs `{program}`, which is not installed: run tests/scripts/prereqs.sh"
        ),
    }
}

/// Finds `program` on PATH (or checks it directly when it contains a `/`).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &std::path::Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return is_exe(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_exe(p))
}
