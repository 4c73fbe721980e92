//! A tiny static C program copied into test containers to make raw syscalls and print the
//! errno (busybox has no way to call keyctl or ptrace). Built once per run with gcc -static.

use std::path::{Path, PathBuf};

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

/* An i386 syscall from this x86_64 process: the kernel sees AUDIT_ARCH_I386, as for a 32-bit
   binary. Returns -errno or the result in eax. */
static int int80(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return (int)ret;
}
static void report_i386(const char *name, int r) { printf("%s=%d\n", name, r < 0 ? -r : 0); }

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
        else if (!strcmp(a, "unshare-i386")) report_i386(a, int80(310 /* unshare */, CLONE_NEWUSER, 0, 0));
        else if (!strcmp(a, "keyctl-i386")) report_i386(a, int80(288 /* keyctl */, 0, -3, 0));
        else if (!strcmp(a, "euid")) printf("euid=%d\n", (int)geteuid());
        else { printf("%s=unknown\n", a); }
    }
    return 0;
}
"#;

/// Compiles the probe into `dir` (the suite's work dir, removed with it).
pub fn build_probe(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("probe.c");
    std::fs::write(&src, SOURCE).map_err(|e| format!("{}: {e}", src.display()))?;
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
