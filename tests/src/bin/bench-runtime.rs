//! Benchmark: `run` of /bin/true in a busybox bundle (create + start + wait + delete), plain and
//! with a Docker-like default seccomp profile (pea-shim's RuntimeDefault: x86_64, x86 and x32),
//! once with `noNewPrivileges: true` (the filter goes in right before execve) and once with it
//! false (docker's, podman's and a RuntimeDefault pod's default: the filter goes in before the
//! capability drop), for pea-runtime, crun and runc side by side in one run: median, p90, ratio
//! to crun, peak RSS.
//!
//! Each runtime is driven by its own runner process (this binary re-executed with `runner`),
//! which times every `run` it is asked for and reports its children's peak RSS at the end; the
//! main loop interleaves the runtimes run by run so drift hits them equally.
//!
//! crun 1.8 refuses this host's hybrid cgroup layout even with `--cgroup-manager=disabled`: its
//! runner hides /sys/fs/cgroup/unified under an empty tmpfs in a private mount namespace (the
//! host is untouched) and runs crun with cgroups disabled, so crun's figure is a lower bound.
//!
//! `cargo build --release -p pea-runtime -p pea-tests --bin bench-runtime && \
//!  target/release/bench-runtime --runs 200`

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use pea_tests::bench::{table, Samples};
use pea_tests::fixtures::{Bundle, BundleBuilder};

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Runs per runtime and bundle
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// pea-runtime binary (default: next to this binary)
    #[arg(long)]
    pea: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Internal: time `run`s of one runtime, commands on stdin
    Runner {
        /// Hide the unified cgroup2 mount (for crun) in a private mount namespace
        #[arg(long)]
        hide_unified: bool,
        /// The runtime and its global flags
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        runtime: Vec<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.mode {
        Some(Mode::Runner {
            hide_unified,
            runtime,
        }) => runner(hide_unified, &runtime),
        None => bench(args.runs, args.pea),
    }
}

/// Runner: for each stdin line "<bundle> <id>", runs `<runtime> run --bundle <bundle> <id>` and
/// prints "<nanos> <exit code>"; at EOF prints "rss <KiB>" (peak RSS over all children).
fn runner(hide_unified: bool, runtime: &[String]) -> Result<()> {
    if hide_unified {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare mount ns")?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .context("make / private in the runner's namespace")?;
        mount(
            Some("tmpfs"),
            "/sys/fs/cgroup/unified",
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=4k"),
        )
        .context("hide /sys/fs/cgroup/unified")?;
    }
    let (bin, flags) = runtime.split_first().context("runner needs a runtime")?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let mut it = line.split_whitespace();
        let (Some(bundle), Some(id)) = (it.next(), it.next()) else {
            continue;
        };
        let start = Instant::now();
        let status = Command::new(bin)
            .args(flags)
            .args(["run", "--bundle", bundle, id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let nanos = start.elapsed().as_nanos();
        writeln!(out, "{nanos} {}", status.code().unwrap_or(-1))?;
        out.flush()?;
    }
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)?;
    writeln!(out, "rss {}", usage.max_rss())?;
    Ok(())
}

struct Subject {
    name: &'static str,
    note: Option<&'static str>,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    root: tempfile::TempDir,
}

impl Subject {
    fn start(
        name: &'static str,
        note: Option<&'static str>,
        hide_unified: bool,
        runtime: &[String],
    ) -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("bench-rt-")
            .tempdir_in("/run")?;
        let me = std::env::current_exe()?;
        let mut cmd = Command::new(me);
        cmd.arg("runner");
        if hide_unified {
            cmd.arg("--hide-unified");
        }
        cmd.arg("--")
            .arg(&runtime[0])
            .arg("--root")
            .arg(root.path())
            .args(&runtime[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("runner for {name}"))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("runner stdout")?);
        Ok(Self {
            name,
            note,
            child,
            stdin,
            stdout,
            root,
        })
    }

    fn run(&mut self, bundle: &Path, id: &str) -> Result<Duration> {
        let stdin = self.stdin.as_mut().context("runner closed")?;
        writeln!(stdin, "{} {id}", bundle.display())?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut it = line.split_whitespace();
        let nanos: u64 = it.next().context("runner reply")?.parse()?;
        let code: i32 = it.next().context("runner reply")?.parse()?;
        if code != 0 {
            bail!("{} run {id} exited {code}", self.name);
        }
        Ok(Duration::from_nanos(nanos))
    }

    fn finish(mut self) -> Result<u64> {
        drop(self.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        self.child.wait()?;
        let _ = &self.root;
        Ok(line
            .strip_prefix("rss ")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }
}

/// A /bin/true bundle with the default seccomp profile and `noNewPrivileges` as given.
fn seccomp_bundle(dir: &Path, no_new_privs: bool) -> Result<Bundle> {
    let mut sec = BundleBuilder::busybox(dir).args(["/bin/true"]).build()?;
    let mut linux = sec.spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(Some(pea_tests::conformance::default_profile()));
    sec.spec.set_linux(Some(linux));
    let mut process = sec.spec.process().clone().unwrap_or_default();
    process.set_no_new_privileges(Some(no_new_privs));
    sec.spec.set_process(Some(process));
    sec.save()?;
    Ok(sec)
}

fn bundles(dir: &Path) -> Result<(Bundle, Bundle, Bundle)> {
    let plain = BundleBuilder::busybox(&dir.join("plain"))
        .args(["/bin/true"])
        .build()?;
    let nnp = seccomp_bundle(&dir.join("seccomp-nnp"), true)?;
    let no_nnp = seccomp_bundle(&dir.join("seccomp-no-nnp"), false)?;
    Ok((plain, nnp, no_nnp))
}

fn pea_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("pea-runtime");
    if p.is_file() {
        return Ok(p);
    }
    bail!(
        "{} not found: build it with `cargo build --release -p pea-runtime` or pass --pea",
        p.display()
    )
}

fn bench(runs: usize, pea: Option<PathBuf>) -> Result<()> {
    pea_tests::privileged::require_root();
    let pea = pea_binary(pea)?;
    let crun = pea_tests::privileged::require_program("crun");
    let runc = pea_tests::privileged::require_program("runc");
    let work = tempfile::tempdir()?;
    let (plain, nnp, no_nnp) = bundles(work.path())?;
    println!(
        "bench-runtime: {runs} runs each of `run` /bin/true; pea-runtime = {}",
        pea.display()
    );
    for (title, bundle) in [
        ("run /bin/true (busybox bundle)", &plain),
        (
            "run /bin/true with a default seccomp profile, noNewPrivileges true",
            &nnp,
        ),
        (
            "run /bin/true with a default seccomp profile, noNewPrivileges false",
            &no_nnp,
        ),
    ] {
        let mut subjects =
            vec![
            Subject::start("pea-runtime", None, false, &[pea.display().to_string()])?,
            Subject::start(
                "crun",
                Some("--cgroup-manager=disabled, unified cgroup2 hidden: lower bound (no cgroups)"),
                true,
                &[crun.display().to_string(), "--cgroup-manager=disabled".into()],
            )?,
            Subject::start("runc", None, false, &[runc.display().to_string()])?,
        ];
        let mut samples: Vec<Samples> = subjects.iter().map(|s| Samples::new(s.name)).collect();
        // Warm-up (page cache, first-exec costs), not recorded.
        for s in subjects.iter_mut() {
            for i in 0..5 {
                s.run(&bundle.dir, &format!("warm-{}-{i}", s.name))?;
            }
        }
        for i in 0..runs {
            for (s, smp) in subjects.iter_mut().zip(samples.iter_mut()) {
                smp.push(s.run(&bundle.dir, &format!("b-{}-{i}", s.name))?);
            }
        }
        for (s, smp) in subjects.into_iter().zip(samples.iter_mut()) {
            smp.note = s.note.map(str::to_string);
            smp.peak_rss_kib = Some(s.finish()?);
        }
        println!("{}", table(title, &samples, "crun"));
    }
    Ok(())
}
