//! The CNI verbs, one file each, and the single place where errors become the spec's error
//! object ([`run`]).

mod add;
mod check;
mod del;
mod gc;
mod masq_state;
mod status;
mod version;

use std::collections::BTreeMap;

use crate::{
    config::{ConfigError, NetConf},
    env::{CniEnv, Command, EnvError},
    ipam::IpamError,
    link::LinkError,
    masq::MasqError,
    netns::NetnsError,
    spec::{self, CniError},
    sysctl::SysctlError,
};

/// Everything that can fail in a verb.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("masquerade: {0}")]
    Masq(#[from] MasqError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error("prevResult is invalid: {0}")]
    PrevResult(String),
    #[error("check failed: {0}")]
    Check(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0} (and rolling back failed: {1})")]
    RolledBack(Box<CmdError>, String),
    /// DEL and GC release as much as they can and then report every failure together.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<CmdError>),
    #[error("starting the netlink runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("cniVersion {version} does not have {} (it needs {min} or later)", verb.as_str())]
    VerbNeedsVersion {
        verb: Command,
        version: String,
        min: &'static str,
    },
}

impl CmdError {
    /// `Ok` when `errors` is empty, the one error, or all of them together.
    pub(crate) fn all(mut errors: Vec<CmdError>) -> Result<(), CmdError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(CmdError::Several(errors)),
        }
    }
}

/// The largest network config (stdin) the plugin reads: far above any real config, prevResult
/// or GC list (a 10k-pod node's `cni.dev/valid-attachments` is about 1 MiB).
pub const MAX_STDIN: usize = 16 << 20;

/// Plugin-specific code for a CHECK that found the attachment not as ADD left it.
pub const CHECK_FAILED: u32 = 102;

impl CmdError {
    pub fn code(&self) -> u32 {
        use spec::code::*;
        match self {
            CmdError::Env(_) => INVALID_ENV,
            CmdError::Config(c) => c.code(),
            CmdError::Ipam(IpamError::Exhausted { .. }) => RANGE_EXHAUSTED,
            CmdError::Ipam(IpamError::Unavailable { .. }) => REQUESTED_IP_UNAVAILABLE,
            CmdError::Ipam(_) => IO_FAILURE,
            CmdError::Netns(NetnsError::NotFound { .. } | NetnsError::NotNetns { .. }) => {
                UNKNOWN_CONTAINER
            }
            CmdError::Netns(NetnsError::OwnNamespace { .. }) => INVALID_NETNS,
            CmdError::Netns(_) | CmdError::Link(_) | CmdError::Masq(_) | CmdError::Sysctl(_) => {
                NETWORK_SETUP
            }
            CmdError::PrevResult(_) => DECODE_FAILURE,
            CmdError::Check(_) => CHECK_FAILED,
            CmdError::Unavailable(_) => PLUGIN_NOT_AVAILABLE,
            CmdError::RolledBack(inner, _) => inner.code(),
            CmdError::Several(all) => all.first().map_or(IO_FAILURE, CmdError::code),
            CmdError::Runtime(_) => IO_FAILURE,
            CmdError::Usage(_) => INVALID_CONFIG,
            CmdError::VerbNeedsVersion { .. } => INCOMPATIBLE_VERSION,
        }
    }
}

/// Runs one invocation: `vars` is the process environment, `stdin` the network config.
/// Returns what to print on stdout on success; on failure the error object to print.
pub fn run(vars: &BTreeMap<String, String>, stdin: &[u8]) -> Result<Option<String>, CniError> {
    let version_hint = serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .filter(|v| spec::is_supported(v))
        .unwrap_or_else(|| spec::CURRENT_VERSION.to_string());
    let to_wire = |e: CmdError| {
        let mut w = CniError::new(e.code(), e.to_string(), details(&e));
        w.cni_version = version_hint.clone();
        w
    };
    let env = CniEnv::parse(vars).map_err(|e| to_wire(e.into()))?;
    if env.command == Command::Version {
        return Ok(Some(version::run()));
    }
    let conf = NetConf::parse(stdin).map_err(|e| to_wire(e.into()))?;
    let min = spec::min_version_of(env.command);
    if !spec::version_at_least(&conf.cni_version, min) {
        return Err(to_wire(CmdError::VerbNeedsVersion {
            verb: env.command,
            version: conf.cni_version.clone(),
            min,
        }));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| to_wire(CmdError::Runtime(e)))?;
    let span = tracing::info_span!("cni", command = ?env.command, container = %env.container_id, ifname = %env.ifname);
    let _g = span.enter();
    let out = rt.block_on(async {
        match env.command {
            Command::Add => add::run(&env, &conf).await.map(Some),
            Command::Del => del::run(&env, &conf).await.map(|()| None),
            Command::Check => check::run(&env, &conf).await.map(|()| None),
            Command::Status => status::run(&conf).map(|()| None),
            Command::Gc => gc::run(&conf).await.map(|()| None),
            Command::Version => unreachable!("handled above"),
        }
    });
    out.map_err(to_wire)
}

/// The error's causes that its message does not already say (most of pea-cni's errors quote
/// their source in their message), so a runtime printing "msg: details" says each once.
fn details(e: &CmdError) -> String {
    let mut shown = e.to_string();
    let mut chain = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let text = s.to_string();
        if !shown.contains(&text) {
            shown.push_str(&text);
            chain.push(text);
        }
        src = s.source();
    }
    chain.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn details_leave_out_what_the_message_already_says() {
        let io = || std::io::Error::from_raw_os_error(2);
        let e = CmdError::Config(crate::config::ConfigError::SubnetFile {
            path: "/run/pea/flannel/subnet.env".into(),
            source: crate::flannel::subnet_env::SubnetEnvError::Read(io()),
        });
        let msg = e.to_string();
        assert_eq!(msg.matches("os error 2").count(), 1, "{msg}");
        assert_eq!(details(&e), "", "{msg}");
    }

    #[test]
    fn version_lists_supported() {
        let out = run(
            &vars(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"1.0.0"}"#,
        )
        .unwrap()
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert!(v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&"1.0.0".into()));
    }

    #[test]
    fn errors_carry_spec_codes() {
        let e = run(&vars(&[("CNI_COMMAND", "ADD")]), b"{}").unwrap_err();
        assert_eq!(e.code, spec::code::INVALID_ENV);
        let add = vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/nonexistent"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let e = run(&add, b"not json").unwrap_err();
        assert_eq!(e.code, spec::code::DECODE_FAILURE);
        let e = run(&add, br#"{"cniVersion":"9.9.9","name":"n"}"#).unwrap_err();
        assert_eq!(e.code, spec::code::INCOMPATIBLE_VERSION);
        let e = run(&add, br#"{"cniVersion":"1.0.0","name":"n","type":"pea-cni","ipam":{"subnet":"10.1.0.0/24"}}"#).unwrap_err();
        assert_eq!(e.code, spec::code::UNKNOWN_CONTAINER, "{e:?}");
        assert_eq!(e.cni_version, "1.0.0");
    }

    #[test]
    fn verbs_need_their_spec_version() {
        let conf = |v: &str| {
            format!(
                r#"{{"cniVersion":"{v}","name":"n","type":"pea-cni","ipam":{{"subnet":"10.1.0.0/24","dataDir":"/nonexistent/pea"}}}}"#
            )
        };
        let check = vars(&[
            ("CNI_COMMAND", "CHECK"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/nonexistent"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let e = run(&check, conf("0.3.1").as_bytes()).unwrap_err();
        assert_eq!(e.code, spec::code::INCOMPATIBLE_VERSION, "{e:?}");
        assert!(e.msg.contains("does not have CHECK"), "{e:?}");
        assert_eq!(e.cni_version, "0.3.1");
        for verb in ["STATUS", "GC"] {
            let e = run(&vars(&[("CNI_COMMAND", verb)]), conf("1.0.0").as_bytes()).unwrap_err();
            assert_eq!(e.code, spec::code::INCOMPATIBLE_VERSION, "{verb} {e:?}");
            assert!(e.msg.contains(&format!("does not have {verb}")), "{e:?}");
        }
        // 0.3.1 (flannel's stock conflist) is accepted: ADD gets past the version check.
        let add = vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/nonexistent"),
            ("CNI_IFNAME", "eth0"),
        ]);
        let e = run(&add, conf("0.3.1").as_bytes()).unwrap_err();
        assert_eq!(e.code, spec::code::UNKNOWN_CONTAINER, "{e:?}");
    }

    #[test]
    fn add_refuses_unknown_cni_args_without_ignore_unknown() {
        let add = |args: &str| {
            vars(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/nonexistent"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args),
            ])
        };
        let conf = br#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.1.0.0/24"}}"#;
        let e = run(&add("FOO=bar"), conf).unwrap_err();
        assert_eq!(e.code, spec::code::INVALID_ENV, "{e:?}");
        assert!(e.msg.contains("FOO"), "{e:?}");
        // With IgnoreUnknown the ADD goes on (and fails later, on the missing netns).
        let e = run(&add("IgnoreUnknown=1;FOO=bar;K8S_POD_NAME=p"), conf).unwrap_err();
        assert_eq!(e.code, spec::code::UNKNOWN_CONTAINER, "{e:?}");
    }

    #[test]
    fn status_separates_not_ready_from_bad_config() {
        let status = vars(&[("CNI_COMMAND", "STATUS")]);
        let e = run(
            &status,
            br#"{"cniVersion":"1.1.0","name":"n","subnetFile":"/nonexistent/subnet.env"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, spec::code::PLUGIN_NOT_AVAILABLE, "{e:?}");
        let e = run(
            &status,
            br#"{"cniVersion":"1.1.0","name":"n","ipam":{"subnet":"10.1.0.0/24","gateway":"10.2.0.1"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, spec::code::INVALID_CONFIG, "{e:?}");
    }
}
