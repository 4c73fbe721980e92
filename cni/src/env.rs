//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH`. Parsed from an explicit map so tests need not touch the process environment.

use std::collections::BTreeMap;

/// A CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("CNI_COMMAND is not set")]
    NoCommand,
    #[error("unknown CNI_COMMAND {0:?} (want ADD, DEL, CHECK, VERSION, STATUS or GC)")]
    UnknownCommand(String),
    #[error("{0} is required for {1:?} but not set")]
    Missing(&'static str, Command),
    #[error("{var} is invalid: {why}")]
    Invalid { var: &'static str, why: String },
}

/// The parsed environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as key/value pairs ("K1=V1;K2=V2").
    pub args: Vec<(String, String)>,
    pub path: Vec<String>,
}

impl CniEnv {
    /// Parses the CNI variables out of `vars`.
    pub fn parse(vars: &BTreeMap<String, String>) -> Result<Self, EnvError> {
        let get = |k: &str| vars.get(k).map(String::as_str).unwrap_or("");
        let command = match get("CNI_COMMAND") {
            "" => return Err(EnvError::NoCommand),
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => return Err(EnvError::UnknownCommand(other.into())),
        };
        let env = CniEnv {
            command,
            container_id: get("CNI_CONTAINERID").into(),
            netns: get("CNI_NETNS").into(),
            ifname: get("CNI_IFNAME").into(),
            args: parse_args(get("CNI_ARGS"))?,
            path: get("CNI_PATH")
                .split(':')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        };
        // The spec's required variables per verb; DEL may run after the netns is gone, so an
        // empty CNI_NETNS is allowed there.
        let (needs_id, needs_netns, needs_if) = match command {
            Command::Add | Command::Check => (true, true, true),
            Command::Del => (true, false, true),
            Command::Version | Command::Status | Command::Gc => (false, false, false),
        };
        if needs_id && env.container_id.is_empty() {
            return Err(EnvError::Missing("CNI_CONTAINERID", command));
        }
        if needs_netns && env.netns.is_empty() {
            return Err(EnvError::Missing("CNI_NETNS", command));
        }
        if needs_if && env.ifname.is_empty() {
            return Err(EnvError::Missing("CNI_IFNAME", command));
        }
        if needs_id {
            validate_container_id(&env.container_id)?;
        }
        if needs_if {
            validate_ifname(&env.ifname)?;
        }
        Ok(env)
    }

    /// Refuses `CNI_ARGS` keys outside `known` unless `IgnoreUnknown` is true ("1"/"true"), as
    /// the reference plugins' `LoadArgs` does: a mistyped `IP=` must not be dropped silently.
    pub fn check_args(&self, known: &[&str]) -> Result<(), EnvError> {
        let ignore = self
            .arg("IgnoreUnknown")
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        let unknown: Vec<&str> = self
            .args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "IgnoreUnknown" && !known.contains(k))
            .collect();
        if ignore || unknown.is_empty() {
            return Ok(());
        }
        Err(EnvError::Invalid {
            var: "CNI_ARGS",
            why: format!(
                "unknown key(s) {} (known: {}; add IgnoreUnknown=1 to ignore others)",
                unknown.join(", "),
                known.join(", ")
            ),
        })
    }

    /// The value of `key` in `CNI_ARGS`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_args(s: &str) -> Result<Vec<(String, String)>, EnvError> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(EnvError::Invalid {
                var: "CNI_ARGS",
                why: format!("{p:?} is not KEY=VALUE"),
            }),
        })
        .collect()
}

/// Container ids end up in file contents and link-name hashes; keep them to the spec's charset.
pub fn validate_container_id(id: &str) -> Result<(), EnvError> {
    let ok = id.len() <= 512
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(EnvError::Invalid {
            var: "CNI_CONTAINERID",
            why: format!("{id:?} must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 512 bytes)"),
        })
    }
}

/// Linux interface names: 1..=15 bytes, no '/', ':', whitespace, not "." or "..".
pub fn validate_ifname(name: &str) -> Result<(), EnvError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(EnvError::Invalid {
            var: "CNI_IFNAME",
            why: format!(
                "{name:?} is not a valid interface name (1-15 bytes, no '/', ':' or spaces)"
            ),
        })
    }
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
    fn add_needs_netns_del_does_not() {
        let add = vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(
            CniEnv::parse(&add).unwrap_err(),
            EnvError::Missing("CNI_NETNS", Command::Add)
        );
        let del = vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ]);
        assert_eq!(CniEnv::parse(&del).unwrap().command, Command::Del);
    }

    #[test]
    fn args_are_split() {
        let v = vars(&[
            ("CNI_COMMAND", "VERSION"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=a=b"),
        ]);
        let e = CniEnv::parse(&v).unwrap();
        assert_eq!(e.arg("K8S_POD_NAME"), Some("a=b"));
        let bad = vars(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "novalue")]);
        assert!(matches!(
            CniEnv::parse(&bad),
            Err(EnvError::Invalid {
                var: "CNI_ARGS",
                ..
            })
        ));
    }

    #[test]
    fn unknown_args_need_ignore_unknown() {
        let env = |args: &str| {
            CniEnv::parse(&vars(&[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", args)])).unwrap()
        };
        let known = ["IP", "K8S_POD_NAME"];
        assert!(env("IP=10.0.0.5;K8S_POD_NAME=a").check_args(&known).is_ok());
        assert!(env("IgnoreUnknown=1;FOO=bar").check_args(&known).is_ok());
        assert!(env("IgnoreUnknown=true;FOO=bar").check_args(&known).is_ok());
        let e = env("Ip=10.0.0.5").check_args(&known).unwrap_err();
        assert!(e.to_string().contains("unknown key(s) Ip"), "{e}");
        assert!(env("IgnoreUnknown=0;FOO=bar").check_args(&known).is_err());
    }

    #[test]
    fn hostile_ids_and_names_rejected() {
        assert!(validate_container_id("../../etc").is_err());
        assert!(validate_container_id("abc-1.2_x").is_ok());
        assert!(validate_ifname("eth0/../x").is_err());
        assert!(validate_ifname("a-very-long-interface").is_err());
        assert!(validate_ifname("eth0").is_ok());
    }

    #[test]
    fn unknown_command_named() {
        let v = vars(&[("CNI_COMMAND", "FOO")]);
        assert_eq!(
            CniEnv::parse(&v).unwrap_err().to_string(),
            "unknown CNI_COMMAND \"FOO\" (want ADD, DEL, CHECK, VERSION, STATUS or GC)"
        );
    }
}
