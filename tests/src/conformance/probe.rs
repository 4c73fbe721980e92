//! A tiny static C program copied into test containers to make raw syscalls and print the
//! errno (busybox has no way to call keyctl or ptrace). Built once per run with gcc -static.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const SOURCE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long r) { printf("%s=%d\n", name, r < 0 ? errno : 0); }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        errno = 0;
        if (!strcmp(a, "unshare")) report(a, unshare(CLONE_NEWUSER));
        else if (!strcmp(a, "keyctl")) report(a, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
        else if (!strcmp(a, "ptrace")) report(a, ptrace(PTRACE_TRACEME, 0, 0, 0));
        else if (!strcmp(a, "mount")) report(a, mount("none", "/tmp", "tmpfs", 0, 0));
        else if (!strcmp(a, "getpid")) report(a, syscall(SYS_getpid) > 0 ? 0 : -1);
        else if (!strcmp(a, "personality-query")) report(a, personality(0xffffffff));
        else if (!strcmp(a, "personality-addr-no-randomize")) report(a, personality(0x0040000));
        else { printf("%s=unknown\n", a); }
    }
    return 0;
}
"#;

/// Path to the compiled probe (built once per process).
pub fn probe_binary() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(build).clone()
}

fn build() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("pea-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("probe.c");
    std::fs::write(&src, SOURCE).map_err(|e| e.to_string())?;
    let out = dir.join("probe");
    compile(&src, &out)?;
    Ok(out)
}

fn compile(src: &Path, out: &Path) -> Result<(), String> {
    let o = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(out)
        .arg(src)
        .output()
        .map_err(|e| format!("gcc (install gcc and libc6-dev): {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "gcc -static failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(())
}
