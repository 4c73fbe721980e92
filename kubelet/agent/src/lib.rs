//! pea-agent: a node's programs — pea-shim, pea-kubelet, pea-flanneld and pea-proxy — in one
//! process, as k3s's agent runs the kubelet, kube-proxy and flannel in one.
//!
//! Why one process: each of the four alone is mostly code pages (tokio, hyper, rustls, serde,
//! the kube client, the C library), which the kernel counts in every process that maps them;
//! four processes weigh ~46 MiB of resident code for ~14 MiB of data. One process maps that
//! code once.
//!
//! What stays as it was: each component parses its own flags with its own `cli` module (a flag
//! means exactly what it means to the program alone), keeps its own identity and talks to the
//! others only through its own interfaces — the kubelet reaches the shim over the CRI socket,
//! pea-proxy and pea-flanneld reach the API with their own kubeconfigs. The separate programs
//! remain, for hosts that want them apart (`pea install` runs them as separate units).
//!
//! Lifecycle: every component's flags are checked before any starts; the shim's socket is bound
//! before the kubelet starts; a component that fails (an error or a panic) stops the agent with
//! a non-zero status naming it, so its supervisor restarts the node's programs together (pods
//! keep running under their monitors and are adopted again, as after a restart of each alone).
//! A component that finishes on its own (`--once`, `--cleanup`) leaves the others running.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

/// One of the programs the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Component {
    Shim,
    Kubelet,
    Flanneld,
    Proxy,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Shim,
        Component::Kubelet,
        Component::Flanneld,
        Component::Proxy,
    ];

    /// The program's own name, as its errors and logs call it.
    pub fn program(self) -> &'static str {
        match self {
            Component::Shim => "pea-shim",
            Component::Kubelet => "pea-kubelet",
            Component::Flanneld => "pea-flanneld",
            Component::Proxy => "pea-proxy",
        }
    }

    /// The agent's flag that passes this component a flag.
    pub fn arg_flag(self) -> &'static str {
        match self {
            Component::Shim => "--shim-arg",
            Component::Kubelet => "--kubelet-arg",
            Component::Flanneld => "--flanneld-arg",
            Component::Proxy => "--proxy-arg",
        }
    }
}

/// The agent's flags: k3s's `--kubelet-arg` form, one per flag of a component.
#[derive(Debug, Parser)]
#[command(
    name = "pea-agent",
    version,
    about = "a node's programs (pea-shim, pea-kubelet, pea-flanneld, pea-proxy) in one process"
)]
pub struct Args {
    /// A flag for pea-shim, `NAME=VALUE` or `NAME` (passed as `--NAME=VALUE`); repeatable.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub shim_arg: Vec<String>,
    /// A flag for pea-kubelet, as --shim-arg.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub kubelet_arg: Vec<String>,
    /// A flag for pea-flanneld, as --shim-arg.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub flanneld_arg: Vec<String>,
    /// A flag for pea-proxy, as --shim-arg.
    #[arg(long, value_name = "NAME[=VALUE]")]
    pub proxy_arg: Vec<String>,
    /// Do not run this component (repeatable, or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub disable: Vec<Component>,
}

impl Args {
    fn passed(&self, c: Component) -> &[String] {
        match c {
            Component::Shim => &self.shim_arg,
            Component::Kubelet => &self.kubelet_arg,
            Component::Flanneld => &self.flanneld_arg,
            Component::Proxy => &self.proxy_arg,
        }
    }
}

/// The command line a component's own parser sees: `NAME=VALUE` → `--NAME=VALUE`, `NAME` →
/// `--NAME` (a leading `--` is accepted too).
pub fn component_argv(c: Component, passed: &[String]) -> Vec<String> {
    std::iter::once(c.program().to_string())
        .chain(passed.iter().map(|a| {
            let a = a.strip_prefix("--").unwrap_or(a);
            format!("--{a}")
        }))
        .collect()
}

/// Every enabled component's configuration, checked: nothing has started yet.
#[derive(Debug)]
pub struct Plan {
    shim: Option<pea_shim::ShimConfig>,
    kubelet: Option<pea_kubelet::cli::Prepared>,
    flanneld: Option<pea_cni::flannel::cli::Prepared>,
    proxy: Option<pea_proxy::cli::Prepared>,
}

/// Parses and checks each enabled component's flags with its own parser; an error names the
/// component and the agent flag that carried the bad value. A disabled component given flags
/// is refused, so a typo never silently drops a component's configuration.
pub fn plan(args: &Args) -> Result<Plan> {
    for c in Component::ALL {
        if args.disable.contains(&c) && !args.passed(c).is_empty() {
            anyhow::bail!(
                "{} is given with --disable {}: drop one or the other",
                c.arg_flag(),
                format!("{c:?}").to_lowercase()
            );
        }
    }
    let on = |c: Component| !args.disable.contains(&c);
    let argv = |c: Component| component_argv(c, args.passed(c));
    let named = |c: Component| format!("{} (given with {})", c.program(), c.arg_flag());
    let mut p = Plan {
        shim: None,
        kubelet: None,
        flanneld: None,
        proxy: None,
    };
    if on(Component::Shim) {
        let a = pea_shim::cli::Args::try_parse_from(argv(Component::Shim))
            .with_context(|| named(Component::Shim))?;
        p.shim = Some(pea_shim::cli::config(a).with_context(|| named(Component::Shim))?);
    }
    if on(Component::Kubelet) {
        let a = pea_kubelet::cli::Args::try_parse_from(argv(Component::Kubelet))
            .with_context(|| named(Component::Kubelet))?;
        p.kubelet = Some(pea_kubelet::cli::prepare(a).with_context(|| named(Component::Kubelet))?);
    }
    if on(Component::Flanneld) {
        let a = pea_cni::flannel::cli::Args::try_parse_from(argv(Component::Flanneld))
            .with_context(|| named(Component::Flanneld))?;
        p.flanneld =
            Some(pea_cni::flannel::cli::prepare(a).with_context(|| named(Component::Flanneld))?);
    }
    if on(Component::Proxy) {
        let a = pea_proxy::cli::Args::try_parse_from(argv(Component::Proxy))
            .with_context(|| named(Component::Proxy))?;
        p.proxy = Some(pea_proxy::cli::prepare(a).with_context(|| named(Component::Proxy))?);
    }
    if p.shim.is_none() && p.kubelet.is_none() && p.flanneld.is_none() && p.proxy.is_none() {
        anyhow::bail!("every component is disabled: nothing to run");
    }
    Ok(p)
}

/// How long the components get to stop after the agent is told to.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Runs the plan's components until `stop` completes or one of them fails. `reload` asks
/// pea-flanneld for a round now (SIGHUP). Call inside a multi-thread tokio runtime.
pub async fn run(plan: Plan, stop: impl Future<Output = ()>, reload: Arc<Notify>) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks: JoinSet<(Component, Result<()>)> = JoinSet::new();
    if let Some(cfg) = plan.shim {
        // Bound before the kubelet starts, so its first CRI call finds the socket.
        let bound = pea_shim::cli::bind(cfg).context("pea-shim")?;
        let s = stopped();
        tasks.spawn(
            async move { (Component::Shim, bound.serve(s).await) }
                .instrument(tracing::info_span!("pea-shim")),
        );
    }
    if let Some(p) = plan.kubelet {
        let s = stopped();
        tasks.spawn(
            async move { (Component::Kubelet, pea_kubelet::cli::run(p, s).await) }
                .instrument(tracing::info_span!("pea-kubelet")),
        );
    }
    if let Some(p) = plan.flanneld {
        let s = stopped();
        tasks.spawn(
            async move {
                (
                    Component::Flanneld,
                    pea_cni::flannel::cli::run(p, s, reload).await,
                )
            }
            .instrument(tracing::info_span!("pea-flanneld")),
        );
    }
    if let Some(p) = plan.proxy {
        let s = stopped();
        tasks.spawn(
            async move { (Component::Proxy, pea_proxy::cli::run(p, s).await) }
                .instrument(tracing::info_span!("pea-proxy")),
        );
    }
    tokio::pin!(stop);
    let mut failed: Option<anyhow::Error> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            done = tasks.join_next() => match done {
                None => return Ok(()),
                Some(Ok((c, Ok(())))) => tracing::info!(component = c.program(), "finished"),
                Some(Ok((c, Err(e)))) => {
                    failed = Some(e.context(c.program()));
                    break;
                }
                Some(Err(join)) => {
                    failed = Some(anyhow!("a component panicked: {join}"));
                    break;
                }
            },
        }
    }
    if let Some(e) = &failed {
        tracing::error!("{e:#}; stopping the other components");
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(STOP_GRACE, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((c, Err(e))) => tracing::error!(component = c.program(), "{e:#}"),
                Ok((_, Ok(()))) => {}
                Err(join) => tracing::error!("a component panicked while stopping: {join}"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("components still stopping after {STOP_GRACE:?}: leaving them");
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_flags_become_the_components_own_flags() {
        let argv = component_argv(
            Component::Kubelet,
            &[
                "config=/etc/k.yaml".into(),
                "--node-ip=10.0.0.1".into(),
                "kube-subnet-mgr".into(),
            ],
        );
        assert_eq!(
            argv,
            [
                "pea-kubelet",
                "--config=/etc/k.yaml",
                "--node-ip=10.0.0.1",
                "--kube-subnet-mgr"
            ]
        );
    }

    #[test]
    fn a_bad_component_flag_is_refused_naming_the_component() {
        let args = Args::parse_from([
            "pea-agent",
            "--disable",
            "shim,flanneld,proxy",
            "--kubelet-arg",
            "no-such-flag=1",
        ]);
        let e = format!("{:#}", plan(&args).expect_err("refused"));
        assert!(
            e.contains("pea-kubelet (given with --kubelet-arg)") && e.contains("no-such-flag"),
            "{e}"
        );
    }

    #[test]
    fn flags_for_a_disabled_component_are_refused() {
        let args = Args::parse_from(["pea-agent", "--disable", "proxy", "--proxy-arg", "cleanup"]);
        let e = format!("{:#}", plan(&args).expect_err("refused"));
        assert!(
            e.contains("--proxy-arg is given with --disable proxy"),
            "{e}"
        );
    }

    #[test]
    fn nothing_enabled_is_refused() {
        let args = Args::parse_from(["pea-agent", "--disable", "shim,kubelet,flanneld,proxy"]);
        let e = format!("{:#}", plan(&args).expect_err("refused"));
        assert!(e.contains("nothing to run"), "{e}");
    }
}
