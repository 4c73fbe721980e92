//! The command line, parsed by hand: seven flags do not justify clap's resident pages in a
//! process that lives as long as its container.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::MonitorError;

/// The usage line, printed in usage errors.
pub const USAGE: &str = "pea-monitor --runtime PATH [--runtime-root DIR] --id ID --bundle DIR \
                         --exit-file PATH [--log PATH] [--runtime-log PATH] \
                         [--attach-socket PATH] [--stdin open|once] [--console-socket PATH] \
                         [--mode create|run]";

/// What the shim asked this monitor to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The OCI runtime binary (a bare name is looked up on PATH).
    pub runtime: PathBuf,
    /// The runtime's `--root`, when not its default.
    pub runtime_root: Option<PathBuf>,
    pub id: String,
    pub bundle: PathBuf,
    pub exit_file: PathBuf,
    /// The CRI log file; `None` drains and discards the container's output.
    pub log: Option<PathBuf>,
    /// The runtime's `--log`; default `BUNDLE/runtime.log`.
    pub runtime_log: Option<PathBuf>,
    /// Where attach clients connect (see [`crate::attach`]); none without it.
    pub attach_socket: Option<PathBuf>,
    /// The container's stdin: `None` is /dev/null, else a pipe attach clients write to.
    pub stdin: Option<StdinMode>,
    /// A tty container (process.terminal): where the runtime sends the pty master (runc's
    /// `--console-socket`); the master then carries stdin and the one output stream.
    pub console_socket: Option<PathBuf>,
    /// Which runtime verb makes the container: `create` (the shim runs `start` later) or
    /// `run --detach` (created and started by one runtime process, at the shim's
    /// StartContainer).
    pub mode: Mode,
}

/// The runtime verb the monitor runs (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `create`: the container waits for the shim's `start`.
    #[default]
    Create,
    /// `run --detach`: created and started in one runtime process.
    Run,
}

impl Mode {
    /// The runtime's verb, as error messages name it.
    pub fn verb(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Run => "run",
        }
    }
}

/// How long the container's stdin stays open (CRI's `stdin` and `stdin_once`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// Open for the container's life; a client closing its stdin is forgotten.
    Open,
    /// Closed for good when the first attach client closes its stdin.
    Once,
}

impl Config {
    /// Parses `--flag VALUE` and `--flag=VALUE` forms (without the program name).
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Self, MonitorError> {
        let mut runtime = None;
        let mut runtime_root = None;
        let mut id = None;
        let mut bundle = None;
        let mut exit_file = None;
        let mut log = None;
        let mut runtime_log = None;
        let mut attach_socket = None;
        let mut stdin = None;
        let mut console_socket = None;
        let mut mode = None;
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let arg = arg
                .into_string()
                .map_err(|a| usage(format!("flag {a:?} is not UTF-8")))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(OsString::from(v))),
                _ => (arg, None),
            };
            let slot = match flag.as_str() {
                "--runtime" => &mut runtime,
                "--runtime-root" => &mut runtime_root,
                "--id" => &mut id,
                "--bundle" => &mut bundle,
                "--exit-file" => &mut exit_file,
                "--log" => &mut log,
                "--runtime-log" => &mut runtime_log,
                "--attach-socket" => &mut attach_socket,
                "--stdin" => &mut stdin,
                "--console-socket" => &mut console_socket,
                "--mode" => &mut mode,
                other => return Err(usage(format!("unknown argument {other:?}"))),
            };
            let value = match inline.or_else(|| it.next()) {
                Some(v) if !v.is_empty() => v,
                _ => return Err(usage(format!("{flag} needs a value"))),
            };
            if slot.replace(value).is_some() {
                return Err(usage(format!("{flag} given twice")));
            }
        }
        let id = required(id, "--id")?
            .into_string()
            .map_err(|_| usage("--id is not UTF-8".into()))?;
        let stdin = match stdin.as_ref().map(|v| v.to_str()) {
            None => None,
            Some(Some("open")) => Some(StdinMode::Open),
            Some(Some("once")) => Some(StdinMode::Once),
            Some(other) => return Err(usage(format!("--stdin {other:?}: want open or once"))),
        };
        let mode = match mode.as_ref().map(|v| v.to_str()) {
            None | Some(Some("create")) => Mode::Create,
            Some(Some("run")) => Mode::Run,
            Some(other) => return Err(usage(format!("--mode {other:?}: want create or run"))),
        };
        Ok(Self {
            runtime: required(runtime, "--runtime")?.into(),
            runtime_root: runtime_root.map(PathBuf::from),
            id,
            bundle: required(bundle, "--bundle")?.into(),
            exit_file: required(exit_file, "--exit-file")?.into(),
            log: log.map(PathBuf::from),
            runtime_log: runtime_log.map(PathBuf::from),
            attach_socket: attach_socket.map(PathBuf::from),
            stdin,
            console_socket: console_socket.map(PathBuf::from),
            mode,
        })
    }

    /// The same config with every path absolute, so the monitor can leave its working directory
    /// (it must not pin the shim's cwd for the container's lifetime). A runtime given as a bare
    /// name stays bare: it is looked up on PATH.
    pub fn absolute(mut self) -> std::io::Result<Self> {
        let abs = |p: &Path| std::path::absolute(p);
        if self.runtime.components().count() > 1 {
            self.runtime = abs(&self.runtime)?;
        }
        self.runtime_root = self.runtime_root.as_deref().map(abs).transpose()?;
        self.bundle = abs(&self.bundle)?;
        self.exit_file = abs(&self.exit_file)?;
        self.log = self.log.as_deref().map(abs).transpose()?;
        self.runtime_log = self.runtime_log.as_deref().map(abs).transpose()?;
        self.attach_socket = self.attach_socket.as_deref().map(abs).transpose()?;
        self.console_socket = self.console_socket.as_deref().map(abs).transpose()?;
        Ok(self)
    }

    /// Where the runtime logs: `--runtime-log`, else `BUNDLE/runtime.log`.
    pub fn runtime_log_path(&self) -> PathBuf {
        self.runtime_log
            .clone()
            .unwrap_or_else(|| self.bundle.join("runtime.log"))
    }

    /// Where the runtime writes the init's pid.
    pub fn pid_file(&self) -> PathBuf {
        self.bundle.join("init.pid")
    }
}

fn usage(msg: String) -> MonitorError {
    MonitorError::Usage(format!("{msg} ({USAGE})"))
}

fn required(v: Option<OsString>, flag: &str) -> Result<OsString, MonitorError> {
    v.ok_or_else(|| usage(format!("{flag} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, MonitorError> {
        Config::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_every_flag_in_both_forms() {
        let c = parse(&[
            "--runtime",
            "/usr/bin/runc",
            "--runtime-root=/run/r",
            "--id",
            "c1",
            "--bundle",
            "/b",
            "--exit-file",
            "/b/exit",
            "--log=/var/log/pods/x/0.log",
            "--runtime-log",
            "/b/rt.log",
            "--attach-socket=/s/c1.sock",
            "--stdin",
            "once",
            "--console-socket=/s/c1.console",
            "--mode",
            "run",
        ])
        .unwrap();
        assert_eq!(c.mode, Mode::Run);
        assert_eq!(c.console_socket, Some(PathBuf::from("/s/c1.console")));
        assert_eq!(c.attach_socket, Some(PathBuf::from("/s/c1.sock")));
        assert_eq!(c.stdin, Some(StdinMode::Once));
        assert_eq!(c.runtime, PathBuf::from("/usr/bin/runc"));
        assert_eq!(c.runtime_root, Some(PathBuf::from("/run/r")));
        assert_eq!(c.id, "c1");
        assert_eq!(c.log, Some(PathBuf::from("/var/log/pods/x/0.log")));
        assert_eq!(c.runtime_log_path(), PathBuf::from("/b/rt.log"));
        assert_eq!(c.pid_file(), PathBuf::from("/b/init.pid"));
    }

    #[test]
    fn optional_flags_default() {
        let c = parse(&[
            "--runtime",
            "runc",
            "--id",
            "c",
            "--bundle",
            "/b",
            "--exit-file",
            "/e",
        ])
        .unwrap();
        assert_eq!(c.log, None);
        assert_eq!(c.runtime_root, None);
        assert_eq!(c.console_socket, None);
        assert_eq!(c.mode, Mode::Create);
        assert_eq!(c.runtime_log_path(), PathBuf::from("/b/runtime.log"));
        // A bare runtime name stays bare (PATH lookup); relative paths become absolute.
        let c = Config {
            bundle: "rel/b".into(),
            ..c
        }
        .absolute()
        .unwrap();
        assert_eq!(c.runtime, PathBuf::from("runc"));
        assert!(c.bundle.is_absolute() && c.bundle.ends_with("rel/b"));
    }

    #[test]
    fn rejects_bad_command_lines() {
        let err = |a: &[&str]| parse(a).unwrap_err().to_string();
        assert!(err(&["--id", "c", "--bundle", "/b", "--exit-file", "/e"])
            .contains("--runtime is required"));
        assert!(err(&["--runtime", "r", "--frob", "x"]).contains("unknown argument \"--frob\""));
        assert!(err(&["--runtime"]).contains("--runtime needs a value"));
        assert!(err(&["--id", "a", "--id", "b"]).contains("--id given twice"));
        assert!(err(&["--log="]).contains("--log needs a value"));
        assert!(err(&["--id", "c", "--stdin", "maybe"]).contains("want open or once"));
        assert!(err(&["--id", "c", "--mode", "start"]).contains("want create or run"));
    }
}
