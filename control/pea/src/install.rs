//! `pea install` / `pea uninstall`: a bare-metal host as a pea node, under systemd. A worker gets
//! pea-shim, pea-kubelet, pea-flanneld and pea-proxy units (a worker joined with a token also a
//! `pea-proxy-renew` and a `pea-flanneld-renew` timer that renew the add-ons' certificates);
//! a control-plane host also gets pea-control (and is a node too, as kubeadm makes it). Units
//! go to `etc/systemd/system`, configuration to `etc/pea` under `--root` (default `/`); a
//! manifest (`etc/pea/installed`)
//! lists every file written, so `uninstall` removes exactly those. Files that exist and are not
//! in the manifest are never overwritten: install checks them all before writing any.
//!
//! The units write files of their own at run time (the node's and the add-ons' kubeconfigs,
//! the CA a control plane issues them from, the kubelet's certificate directory). Install
//! names those paths in the manifest too, from the same constants the unit text is made of,
//! and refuses an existing one it does not own (a unit would use it or overwrite it), so
//! uninstall removes them and nothing a user made; a kubelet certificate directory that was
//! there before install is left to its owner.
//!
//! On the real root with systemd running, install runs `systemctl daemon-reload` and
//! `systemctl enable --now`, uninstall `systemctl disable --now` first; under another `--root`
//! (tests, image builds) only files are written.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::addons;
use crate::cluster::{API_PORT, CLUSTER_CIDR, CLUSTER_DNS};
use crate::identities;
use crate::kubectl::kubectl;
use crate::proc::run;

const MANIFEST: &str = "etc/pea/installed";
/// The manifest's first line since it names what the units write (an older manifest has none).
const MANIFEST_HEADER: &str = "# pea install manifest v2";
/// Manifest line prefixes of the paths the units write at run time.
const BY_UNITS: &str = "by-units ";
const BY_UNITS_DIR: &str = "by-units-dir ";
const UNIT_DIR: &str = "etc/systemd/system";
/// `<add-on><RENEW_SUFFIX>.timer` starts the `.service` of the same name that renews the
/// add-on's kubeconfig.
const RENEW_SUFFIX: &str = "-renew";
/// The paths the units name, relative to the root (the unit text makes them absolute).
const KUBELET_KUBECONFIG: &str = "etc/pea/kubelet.kubeconfig";
const BOOTSTRAP_KUBECONFIG: &str = "etc/pea/bootstrap-kubelet.kubeconfig";
const CA_FILE: &str = "etc/pea/pki/ca.crt";
const KUBELET_ROOT_DIR: &str = "var/lib/pea/kubelet";
/// The kubelet's `--cert-dir` (its default, `<root-dir>/pki`): its serving pair and, with
/// rotateCertificates or a bootstrap, its client certificates.
const KUBELET_CERT_DIR: &str = "var/lib/pea/kubelet/pki";
/// The directories pea's files live in, deepest first: removed by uninstall when empty.
const CONFIG_DIRS: &[&str] = &["etc/pea/cni/net.d", "etc/pea/cni", "etc/pea/pki", "etc/pea"];
/// The add-ons' ClusterRoles and bindings, applied through the API once pea-control answers.
const RBAC_FILE: &str = "etc/pea/addons-rbac.json";
/// pea-dns's and pea-ingress's API objects (their Deployments, or the Service and
/// EndpointSlice of their host units), applied after the RBAC.
const ADDONS_FILE: &str = "etc/pea/addons.json";
/// pea-control's admin kubeconfig on a control plane (its `--data-dir`).
const ADMIN_KUBECONFIG: &str = "/var/lib/pea/control/admin.kubeconfig";
/// How long a control-plane install waits for its API before applying the add-ons' RBAC
/// (a TCG VM takes minutes).
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    ControlPlane,
    Worker,
}

#[derive(Debug)]
pub struct Options {
    pub role: Role,
    pub root: PathBuf,
    pub bin_dir: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// The API server URL (a worker's; a control plane's defaults to https://NODE_IP:6443).
    pub server: Option<String>,
    /// A worker's node identity (kubeconfig of system:node:NAME) and the cluster CA.
    pub kubeconfig: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    /// Instead of `kubeconfig`: bootstrap-token credentials (`pea join`); the kubelet requests
    /// its own certificate (TLS bootstrap) and writes /etc/pea/kubelet.kubeconfig.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// A worker's pea-proxy and pea-flanneld identities (required with `kubeconfig`); a
    /// control plane mints its own from the CA on first start.
    pub proxy_kubeconfig: Option<PathBuf>,
    pub flanneld_kubeconfig: Option<PathBuf>,
    pub runtime: RuntimeFlags,
    pub addons: AddonFlags,
}

/// pea-shim's image settings, for a node whose images come from a registry of its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RuntimeFlags {
    /// A registry pea-shim pulls from over plain HTTP, HOST[:PORT] (containerd's
    /// `insecure_skip_verify`/http mirror); repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// The pods' pause image (pea-shim's default: registry.k8s.io/pause:3.10).
    #[arg(long, value_name = "IMAGE")]
    pub pause_image: Option<String>,
}

/// A control plane's cluster add-ons (pea-dns behind kube-dns at the clusterDNS IP, pea-ingress
/// with the default IngressClass), as kubeadm's `addon` phase.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AddonFlags {
    /// Run the add-ons as Deployments on this node from IMAGE (`pea/addons`, as `pea up` pushes
    /// it: pea-dns and pea-ingress in /usr/local/bin). Without it they are host services.
    #[arg(long, value_name = "IMAGE")]
    pub addons_image: Option<String>,
    /// No cluster add-ons (kubeadm's `--skip-phases=addon/coredns`): no cluster DNS, no
    /// Ingress controller.
    #[arg(long, conflicts_with = "addons_image")]
    pub skip_addons: bool,
}

/// How a control plane runs its add-ons.
enum AddonForm {
    Skip,
    HostServices,
    Pods(String),
}

impl AddonFlags {
    fn form(&self) -> AddonForm {
        match (&self.addons_image, self.skip_addons) {
            (_, true) => AddonForm::Skip,
            (Some(image), false) => AddonForm::Pods(image.clone()),
            (None, false) => AddonForm::HostServices,
        }
    }
}

/// A value that goes into a unit's ExecStart as one word: systemd would split it at spaces,
/// expand `%` specifiers and `$` variables, and unquote quotes and backslashes.
fn check_word(flag: &str, v: &str) -> Result<()> {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "'\"\\%$;".contains(c))
    {
        bail!(
            "{flag} {v:?}: must be one word without spaces, quotes, backslashes, '%', '$' or ';'"
        );
    }
    Ok(())
}

/// HOST[:PORT], as pea-shim and containerd take a registry host: no scheme, no path.
fn check_registry(r: &str) -> Result<()> {
    check_word("--insecure-registry", r)?;
    let ok = !r.contains("://")
        && !r.contains('/')
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c));
    if !ok {
        bail!("--insecure-registry {r:?}: must be HOST[:PORT] (no scheme, no path)");
    }
    Ok(())
}

impl RuntimeFlags {
    fn check(&self) -> Result<()> {
        for r in &self.insecure_registries {
            check_registry(r)?;
        }
        if let Some(p) = &self.pause_image {
            check_word("--pause-image", p)?;
        }
        Ok(())
    }

    /// pea-shim's flags for these settings.
    fn shim_args(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .insecure_registries
            .iter()
            .map(|r| format!("--insecure-registry {r}"))
            .collect();
        out.extend(
            self.pause_image
                .iter()
                .map(|p| format!("--pause-image {p}")),
        );
        out
    }
}

struct File {
    /// Relative to the root.
    path: String,
    text: String,
    mode: u32,
}

/// What a role's install writes and what its units will write.
struct Plan {
    files: Vec<File>,
    /// Files the units write at run time (relative to the root).
    unit_files: Vec<String>,
    /// Directories the units' programs make and fill (relative to the root).
    unit_dirs: Vec<String>,
}

/// `rel` (relative to the root) as the running system names it.
fn abs(rel: &str) -> String {
    format!("/{rel}")
}

/// An add-on's kubeconfig, relative to the root.
fn addon_kubeconfig_path(id: &identities::Identity) -> String {
    format!("etc/pea/{}", id.file)
}

fn check_node_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !n.starts_with(['-', '.'])
        && !n.ends_with(['-', '.']);
    if !ok {
        bail!("--node-name {n:?}: not a valid node name (lowercase letters, digits, '-', '.')");
    }
    Ok(())
}

fn unit(description: &str, after: &str, exec: &[String], extra: &str) -> String {
    format!(
        "[Unit]\nDescription={description}\nWants=network-online.target\nAfter=network-online.target{after}\n\n\
         [Service]\nExecStart={}\nRestart=always\nRestartSec=5\nEnvironment=RUST_LOG=info\n{extra}\n\
         [Install]\nWantedBy=multi-user.target\n",
        exec.join(" ")
    )
}

/// Every file of the role, in write order, and what its units write.
fn plan(o: &Options) -> Result<Plan> {
    check_node_name(&o.node_name)?;
    o.runtime.check()?;
    if let Some(image) = &o.addons.addons_image {
        check_word("--addons-image", image)?;
    }
    if o.role == Role::Worker && (o.addons.addons_image.is_some() || o.addons.skip_addons) {
        bail!("--addons-image and --skip-addons are a control plane's: the add-ons run on it, not on workers");
    }
    let bin = |b: &str| o.bin_dir.join(b).display().to_string();
    let ip = o.node_ip.to_string();
    let server = match (&o.server, o.role) {
        (Some(s), _) if s.starts_with("https://") => s.clone(),
        (Some(s), _) => bail!("--server {s:?}: must be an https:// URL"),
        (None, Role::ControlPlane) => format!("https://{ip}:{API_PORT}"),
        (None, Role::Worker) => bail!("a worker needs --server https://CONTROL_PLANE:6443"),
    };
    let mut out = Vec::new();
    let mut unit_files = Vec::new();
    let mut add = |path: &str, text: String, mode: u32| {
        out.push(File {
            path: path.into(),
            text,
            mode,
        })
    };
    match o.role {
        Role::Worker => {
            let (Some(kc), Some(ca)) = (
                o.kubeconfig.as_ref().or(o.bootstrap_kubeconfig.as_ref()),
                &o.client_ca,
            ) else {
                bail!(
                    "a worker needs --kubeconfig FILE (its system:node:{} identity, issued on the control plane by \
                     `pea-control kubeconfig --user system:node:{} --group system:nodes`) or --bootstrap-kubeconfig FILE \
                     (written by `pea join`), and --client-ca FILE (the cluster CA)",
                    o.node_name,
                    o.node_name
                )
            };
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            if o.kubeconfig.is_some() {
                add(KUBELET_KUBECONFIG, read(kc)?, 0o600);
                if o.proxy_kubeconfig.is_none() || o.flanneld_kubeconfig.is_none() {
                    bail!(
                        "a worker installed with --kubeconfig also needs --proxy-kubeconfig FILE ({}) and \
                         --flanneld-kubeconfig FILE ({}), issued on the control plane by \
                         `pea-control kubeconfig --user USER`: pea-proxy and pea-flanneld do not run as the node",
                        identities::PROXY.user,
                        identities::FLANNELD.user
                    );
                }
            } else {
                add(BOOTSTRAP_KUBECONFIG, read(kc)?, 0o600);
                // The kubelet writes it once its TLS bootstrap has a certificate signed.
                unit_files.push(KUBELET_KUBECONFIG.to_string());
            }
            for (given, id) in [
                (&o.proxy_kubeconfig, identities::PROXY),
                (&o.flanneld_kubeconfig, identities::FLANNELD),
            ] {
                match given {
                    Some(p) => add(&addon_kubeconfig_path(&id), read(p)?, 0o600),
                    None => unit_files.push(addon_kubeconfig_path(&id)),
                }
            }
            add(CA_FILE, read(ca)?, 0o644);
        }
        Role::ControlPlane if o.proxy_kubeconfig.is_some() || o.flanneld_kubeconfig.is_some() => {
            bail!("--proxy-kubeconfig and --flanneld-kubeconfig are a worker's: a control plane issues them from its CA")
        }
        Role::ControlPlane => {
            // The kubelet's unit issues the node's identity and the CA file, the add-ons'
            // units their identities.
            unit_files.extend([KUBELET_KUBECONFIG, CA_FILE].map(String::from));
            unit_files.extend(
                [identities::PROXY, identities::FLANNELD].map(|id| addon_kubeconfig_path(&id)),
            );
            add(
                &format!("{UNIT_DIR}/pea-control.service"),
                unit(
                    "pea-control: the Kubernetes API server, scheduler and controllers",
                    "",
                    &[
                        bin("pea-control"),
                        "--data-dir /var/lib/pea/control".into(),
                        format!("--listen {ip}:{API_PORT}"),
                        format!("--cluster-cidr {CLUSTER_CIDR}"),
                    ],
                    "",
                ),
                0o644,
            )
        }
    }
    add(
        "etc/pea/kubelet.yaml",
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             address: {ip}\nport: 10250\nclusterDNS: [{CLUSTER_DNS}]\nclusterDomain: cluster.local\n\
             containerRuntimeEndpoint: unix:///run/pea/pea-shim.sock\npodLogsDir: /var/log/pods\n\
             rotateCertificates: true\n\
             authentication:\n  x509:\n    clientCAFile: {}\n",
            abs(CA_FILE)
        ),
        0o644,
    );
    add(
        "etc/pea/flanneld.json",
        serde_json::to_string_pretty(&serde_json::json!({
            "network": CLUSTER_CIDR, "subnetFile": "/run/pea/flannel/subnet.env"
        }))?,
        0o644,
    );
    add(
        "etc/pea/cni/net.d/10-pea.conflist",
        serde_json::to_string_pretty(&serde_json::json!({
            "cniVersion": "1.1.0", "name": "pea", "plugins": [{
                "type": "pea-cni", "subnetFile": "/run/pea/flannel/subnet.env",
                "ipam": {"dataDir": "/var/lib/pea/cni/ipam"}
            }]
        }))?,
        0o644,
    );
    add(
        &format!("{UNIT_DIR}/pea-shim.service"),
        unit(
            "pea-shim: the CRI runtime (pods and images)",
            "",
            &[
                bin("pea-shim"),
                "--socket /run/pea/pea-shim.sock".into(),
                "--root /var/lib/pea/shim".into(),
                "--state /run/pea/shim".into(),
                format!("--runtime {}", bin("pea-runtime")),
                "--runtime-root /run/pea/runtime".into(),
                format!("--monitor {}", bin("pea-monitor")),
                "--cni-conf-dir /etc/pea/cni/net.d".into(),
                format!("--cni-bin-dir {}:/usr/lib/cni", o.bin_dir.display()),
            ]
            .into_iter()
            .chain(o.runtime.shim_args())
            .collect::<Vec<_>>(),
            // Containers outlive a shim restart (as containerd's unit: KillMode=process).
            "KillMode=process\nDelegate=yes\nLimitNOFILE=1048576\n",
        ),
        0o644,
    );
    // A control-plane host issues its own node identity from the cluster CA on first start.
    // pea-control writes that CA when it first starts, which on a slow machine (a TCG VM) comes
    // after this unit's start: wait up to 60 s for it rather than fail `enable --now`.
    let (kubelet_kc, ca_file) = (abs(KUBELET_KUBECONFIG), abs(CA_FILE));
    let ca_dir = Path::new(&ca_file)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let issue = match o.role {
        Role::ControlPlane => format!(
            "ExecStartPre=/bin/sh -c 'test -e {kubelet_kc} || {{ n=0; while [ ! -e /var/lib/pea/control/pki/ca.key ] && [ $$n -lt 60 ]; do sleep 1; n=$$((n+1)); done; mkdir -p {ca_dir} && {} kubeconfig --data-dir /var/lib/pea/control --user system:node:{} --group system:nodes --server {server} --out {kubelet_kc} --client-ca-out {ca_file}; }}'\n",
            bin("pea-control"),
            o.node_name
        ),
        Role::Worker => String::new(),
    };
    // pea-proxy's and pea-flanneld's own identities: a control plane mints them from its CA on
    // first start (after the kubelet's unit, which waits for that CA); a worker has them from
    // --proxy-kubeconfig/--flanneld-kubeconfig, or, joined with a bootstrap token (which can get
    // only a node's identity signed), asks for them with the node's certificate once the
    // kubelet has it (`pea addon-kubeconfig`: a CSR the control plane approves for nodes only),
    // renewing them at a start in the last fifth of their life (and, running, by the renewal
    // timers below).
    let addon = |id: &identities::Identity, given: &Option<PathBuf>| -> (String, String) {
        let path = abs(&addon_kubeconfig_path(id));
        match o.role {
            Role::ControlPlane => {
                let issue = identities::issue_args("/var/lib/pea/control", id, &server, &path);
                (
                    path.clone(),
                    format!(
                        "ExecStartPre=/bin/sh -c 'test -e {path} || {} {}'\n",
                        bin("pea-control"),
                        issue.join(" ")
                    ),
                )
            }
            Role::Worker if given.is_some() => (path, String::new()),
            Role::Worker => (
                path.clone(),
                // The wait covers the kubelet's TLS bootstrap (minutes in a TCG VM).
                format!(
                    "ExecStartPre={} addon-kubeconfig --component {} --kubeconfig {kubelet_kc} --out {path} --wait 300 --timeout 120\nTimeoutStartSec=450\n",
                    bin("pea"),
                    id.component
                ),
            ),
        }
    };
    let (proxy_kc, proxy_pre) = addon(&identities::PROXY, &o.proxy_kubeconfig);
    let (flanneld_kc, flanneld_pre) = addon(&identities::FLANNELD, &o.flanneld_kubeconfig);
    if o.role == Role::ControlPlane {
        add(
            RBAC_FILE,
            serde_json::to_string_pretty(&identities::rbac())?,
            0o644,
        );
    }
    let control_dep = match o.role {
        Role::ControlPlane => " pea-control.service",
        Role::Worker => "",
    };
    add(
        &format!("{UNIT_DIR}/pea-kubelet.service"),
        unit(
            "pea-kubelet: the node agent",
            &format!(" pea-shim.service{control_dep}\nRequires=pea-shim.service"),
            &[
                bin("pea-kubelet"),
                "--config /etc/pea/kubelet.yaml".into(),
                if o.kubeconfig.is_none() && o.bootstrap_kubeconfig.is_some() {
                    format!(
                        "--bootstrap-kubeconfig {} --kubeconfig {kubelet_kc}",
                        abs(BOOTSTRAP_KUBECONFIG)
                    )
                } else {
                    format!("--kubeconfig {kubelet_kc}")
                },
                format!("--root-dir {}", abs(KUBELET_ROOT_DIR)),
                format!("--hostname-override {}", o.node_name),
                format!("--node-ip {ip}"),
            ],
            &format!("{issue}Delegate=yes\n"),
        ),
        0o644,
    );
    add(
        &format!("{UNIT_DIR}/pea-flanneld.service"),
        unit(
            "pea-flanneld: the VXLAN overlay agent",
            " pea-kubelet.service",
            &[
                bin("pea-flanneld"),
                "--config /etc/pea/flanneld.json".into(),
                "--kube-subnet-mgr".into(),
                format!("--kubeconfig-file {flanneld_kc}"),
                format!("--node-name {}", o.node_name),
            ]
            .into_iter()
            // The overlay runs over the interface holding the node IP (the VXLAN overlay is
            // IPv4); an IPv6 node IP leaves it to the default route, as flannel does.
            .chain(o.node_ip.is_ipv4().then(|| format!("--iface {ip}")))
            .collect::<Vec<_>>(),
            &flanneld_pre,
        ),
        0o644,
    );
    add(
        &format!("{UNIT_DIR}/pea-proxy.service"),
        unit(
            "pea-proxy: Service load balancing (nftables)",
            " pea-kubelet.service",
            &[
                bin("pea-proxy"),
                format!("--kubeconfig {proxy_kc}"),
                format!("--hostname-override {}", o.node_name),
                format!("--cluster-cidr {CLUSTER_CIDR}"),
            ],
            &proxy_pre,
        ),
        0o644,
    );
    if o.role == Role::ControlPlane {
        match o.addons.form() {
            AddonForm::Skip => {}
            AddonForm::Pods(image) => {
                let p = addons::Placement {
                    node_name: o.node_name.clone(),
                    node_ip: o.node_ip,
                    image,
                };
                let items: Vec<serde_json::Value> = [addons::dns(&p), addons::ingress(&p)]
                    .iter()
                    .flat_map(|l| l["items"].as_array().cloned().unwrap_or_default())
                    .collect();
                add(
                    ADDONS_FILE,
                    serde_json::to_string_pretty(
                        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
                    )?,
                    0o644,
                );
            }
            AddonForm::HostServices => {
                for (id, args, what) in [
                    (
                        identities::DNS,
                        addons::dns_args(o.node_ip),
                        format!("cluster DNS behind Service kube-system/kube-dns ({CLUSTER_DNS})"),
                    ),
                    (
                        identities::INGRESS,
                        addons::ingress_args(o.node_ip),
                        format!(
                            "the Ingress controller of IngressClass {} on {ip}",
                            addons::INGRESS_CLASS
                        ),
                    ),
                ] {
                    let (kc, pre) = addon(&id, &None);
                    unit_files.push(addon_kubeconfig_path(&id));
                    add(
                        &format!("{UNIT_DIR}/{}.service", id.component),
                        unit(
                            &format!("{}: {what}", id.component),
                            " pea-kubelet.service pea-control.service",
                            &[bin(id.component), format!("--kubeconfig {kc}")]
                                .into_iter()
                                .chain(args)
                                .collect::<Vec<_>>(),
                            &pre,
                        ),
                        0o644,
                    );
                }
                add(
                    ADDONS_FILE,
                    serde_json::to_string_pretty(&addons::host_service_objects(o.node_ip))?,
                    0o644,
                );
            }
        }
    }
    // A joined worker's add-on identities are renewed while the add-ons run, as the kubelet's
    // certificate manager renews its own: a timer checks each every 10 minutes, and one in the
    // last fifth of its certificate's life is renewed and its add-on restarted with it (they
    // read their kubeconfig at start). A control plane's, minted from its CA, expire in 4096.
    if o.role == Role::Worker {
        for (id, given) in [
            (identities::PROXY, &o.proxy_kubeconfig),
            (identities::FLANNELD, &o.flanneld_kubeconfig),
        ] {
            if given.is_some() {
                continue;
            }
            let name = format!("{}{RENEW_SUFFIX}", id.component);
            add(
                &format!("{UNIT_DIR}/{name}.service"),
                format!(
                    "[Unit]\nDescription={name}: renews {c}'s client certificate in the last fifth of its life and restarts {c}\n\
                     After=pea-kubelet.service {c}.service\n\n\
                     [Service]\nType=oneshot\n\
                     ExecStart={} addon-kubeconfig --component {c} --kubeconfig {kubelet_kc} --out {} --wait 60 --timeout 120 --restart-unit {c}.service\n",
                    bin("pea"),
                    abs(&addon_kubeconfig_path(&id)),
                    c = id.component,
                ),
                0o644,
            );
            add(
                &format!("{UNIT_DIR}/{name}.timer"),
                format!(
                    "[Unit]\nDescription={name}: checks {}'s client certificate every 10 minutes\n\n\
                     [Timer]\nOnActiveSec=10min\nOnUnitActiveSec=10min\nRandomizedDelaySec=60\n\n\
                     [Install]\nWantedBy=timers.target\n",
                    id.component
                ),
                0o644,
            );
        }
    }
    Ok(Plan {
        files: out,
        unit_files,
        unit_dirs: vec![KUBELET_CERT_DIR.to_string()],
    })
}

/// The manifest: what install wrote and what its units write.
#[derive(Debug, Default)]
struct Manifest {
    files: Vec<String>,
    unit_files: Vec<String>,
    unit_dirs: Vec<String>,
    /// Written by a pea that did not name the units' files (no header): those files, when
    /// there, were written by the units that install made.
    legacy: bool,
}

impl Manifest {
    fn read(root: &Path) -> Self {
        let text = std::fs::read_to_string(root.join(MANIFEST)).unwrap_or_default();
        let mut m = Manifest {
            legacy: !text.is_empty() && !text.starts_with(MANIFEST_HEADER),
            ..Default::default()
        };
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            if let Some(p) = line.strip_prefix(BY_UNITS) {
                m.unit_files.push(p.to_string());
            } else if let Some(p) = line.strip_prefix(BY_UNITS_DIR) {
                m.unit_dirs.push(p.to_string());
            } else {
                m.files.push(line.to_string());
            }
        }
        m
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.unit_files.is_empty() && self.unit_dirs.is_empty()
    }

    /// Whether the file at `path` (relative) is pea's to overwrite or remove.
    fn owns(&self, path: &str) -> bool {
        self.files.iter().chain(&self.unit_files).any(|p| p == path)
    }

    fn text(&self) -> String {
        let mut out = format!("{MANIFEST_HEADER}\n");
        for p in &self.files {
            out += &format!("{p}\n");
        }
        for p in &self.unit_files {
            out += &format!("{BY_UNITS}{p}\n");
        }
        for p in &self.unit_dirs {
            out += &format!("{BY_UNITS_DIR}{p}\n");
        }
        out
    }
}

fn units(paths: &[String]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| p.strip_prefix(&format!("{UNIT_DIR}/")))
        .map(str::to_string)
        .collect()
}

/// The units `enable` takes: all but the services their timers start (no `[Install]`).
fn enabled(units: &[String]) -> Vec<String> {
    units
        .iter()
        .filter(|u| {
            u.strip_suffix(".service")
                .is_none_or(|n| !units.contains(&format!("{n}.timer")))
        })
        .cloned()
        .collect()
}

fn live_systemd(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

/// A manifest path stays under the root, whatever the manifest says.
fn inside(p: &str) -> bool {
    !p.is_empty() && !p.contains("..") && !p.starts_with('/')
}

pub fn install(o: &Options) -> Result<()> {
    if !o.root.is_dir() {
        bail!("--root {}: not a directory", o.root.display());
    }
    let plan = plan(o)?;
    let ours = Manifest::read(&o.root);
    // Everything is checked before anything is written. A file the units would write is
    // checked too: its unit would use a foreign one (or overwrite it), and uninstall would
    // remove it.
    for f in &plan.files {
        let p = o.root.join(&f.path);
        if p.exists() && !ours.owns(&f.path) {
            bail!(
                "{} exists and was not written by pea install: move it away first",
                p.display()
            );
        }
    }
    for u in &plan.unit_files {
        let p = o.root.join(u);
        if p.exists() && !ours.owns(u) && !ours.legacy {
            bail!(
                "{} exists and was not written by pea: the units pea installs would use it; move it away first",
                p.display()
            );
        }
    }
    // The kubelet's certificate directory is pea's only when install finds none (one from an
    // earlier kubelet stays its owner's, and uninstall leaves it).
    let unit_dirs: Vec<String> = plan
        .unit_dirs
        .iter()
        .filter(|d| {
            let mine = !o.root.join(d).exists() || ours.unit_dirs.contains(d);
            if !mine {
                println!(
                    "pea install: {} was there before install: uninstall will leave it",
                    o.root.join(d).display()
                );
            }
            mine
        })
        .cloned()
        .collect();
    let mut written: Vec<String> = Vec::new();
    for f in &plan.files {
        let p = o.root.join(&f.path);
        if let Err(e) = write(&p, &f.text, f.mode) {
            for w in &written {
                let _ = std::fs::remove_file(o.root.join(w));
            }
            return Err(e);
        }
        written.push(f.path.clone());
        println!("pea install: wrote {}", p.display());
    }
    // Files an earlier install or its units wrote that this role does not have (a role
    // change) go.
    let kept = |p: &String| written.contains(p) || plan.unit_files.contains(p);
    // Their units stop first (a control plane installed again with --skip-addons leaves no
    // pea-dns running).
    let dropped = units(
        &ours
            .files
            .iter()
            .filter(|p| !kept(p))
            .cloned()
            .collect::<Vec<_>>(),
    );
    if live_systemd(&o.root) && !dropped.is_empty() {
        stop_units(&dropped)?;
        println!("pea install: stopped and disabled {}", dropped.join(", "));
    }
    for old in ours
        .files
        .iter()
        .chain(&ours.unit_files)
        .filter(|p| !kept(p))
    {
        if inside(old) {
            let _ = std::fs::remove_file(o.root.join(old));
        }
    }
    let manifest = Manifest {
        files: written,
        unit_files: plan.unit_files,
        unit_dirs,
        legacy: false,
    };
    write(&o.root.join(MANIFEST), &manifest.text(), 0o644)?;
    let units = enabled(&units(&manifest.files));
    if live_systemd(&o.root) {
        run("systemctl", &["daemon-reload"])?;
        let mut args = vec!["enable", "--now"];
        args.extend(units.iter().map(String::as_str));
        run("systemctl", &args)?;
        println!("pea install: enabled and started {}", units.join(", "));
        if o.role == Role::ControlPlane {
            apply_addons(&o.root, &o.addons.form())?;
        }
    } else {
        println!(
            "pea install: units written under {} (not started: not the running system's root)",
            o.root.display()
        );
    }
    Ok(())
}

/// kubeadm's add-on phase: once the API answers, the add-ons' RBAC goes in through it, then
/// the add-ons' objects; what the other form left (the add-ons were installed the other way
/// before) goes, so two pea-dns never answer for kube-dns.
fn apply_addons(root: &Path, form: &AddonForm) -> Result<()> {
    let admin = Path::new(ADMIN_KUBECONFIG);
    let rbac = root.join(RBAC_FILE);
    let ready = crate::proc::wait_for(API_TIMEOUT, || {
        let ok = admin.exists() && kubectl(admin, &["get", "--raw", "/readyz"], None).is_ok();
        if !ok {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        ok
    });
    if !ready {
        bail!(
            "the API did not answer through {ADMIN_KUBECONFIG} within {API_TIMEOUT:?}: apply {} \
             (and {}) with kubectl once it does (until then pea-flanneld is refused and restarted)",
            rbac.display(),
            root.join(ADDONS_FILE).display()
        );
    }
    kubectl(admin, &["apply", "-f", &rbac.display().to_string()], None)
        .context("applying the add-ons' RBAC")?;
    println!(
        "pea install: applied the add-ons' ClusterRoles and bindings ({})",
        rbac.display()
    );
    let ns = addons::NAMESPACE;
    let stale: &[&str] = match form {
        AddonForm::Skip => return Ok(()),
        AddonForm::Pods(_) => &["delete", "-n", ns, "endpointslice", "kube-dns-host"],
        AddonForm::HostServices => &["delete", "-n", ns, "deployment", "pea-dns", "pea-ingress"],
    };
    kubectl(admin, &[stale, &["--ignore-not-found"][..]].concat(), None)
        .context("removing the add-ons' objects of the other form")?;
    let file = root.join(ADDONS_FILE);
    kubectl(admin, &["apply", "-f", &file.display().to_string()], None)
        .context("applying the add-ons")?;
    println!(
        "pea install: applied the add-ons ({}): {}",
        file.display(),
        match form {
            AddonForm::Pods(image) => format!("pea-dns and pea-ingress Deployments from {image}"),
            _ => "kube-dns and the IngressClass for the pea-dns and pea-ingress units".into(),
        }
    );
    Ok(())
}

pub fn uninstall(root: &Path) -> Result<()> {
    let ours = Manifest::read(root);
    if ours.is_empty() {
        println!("pea uninstall: nothing installed under {}", root.display());
        return Ok(());
    }
    let all = units(&ours.files);
    if live_systemd(root) && !all.is_empty() {
        stop_units(&all)?;
    }
    // What install wrote, then what its (now stopped) units wrote.
    for p in ours
        .files
        .iter()
        .chain(&ours.unit_files)
        .filter(|p| inside(p))
    {
        let full = root.join(p);
        match std::fs::remove_file(&full) {
            Ok(()) => println!("pea uninstall: removed {}", full.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", full.display())),
        }
    }
    for d in ours.unit_dirs.iter().filter(|d| inside(d)) {
        let full = root.join(d);
        match std::fs::remove_dir_all(&full) {
            Ok(()) => println!("pea uninstall: removed {}", full.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", full.display())),
        }
    }
    std::fs::remove_file(root.join(MANIFEST))?;
    // The directories pea made, when empty (a file someone else put there keeps its
    // directory).
    for d in CONFIG_DIRS {
        let _ = std::fs::remove_dir(root.join(d));
    }
    if live_systemd(root) {
        run("systemctl", &["daemon-reload"])?;
    }
    Ok(())
}

/// `systemctl disable --now` of `all`'s enabled units, `stop` of those their timers start
/// (a renewal a timer started may still run).
fn stop_units(all: &[String]) -> Result<()> {
    let units = enabled(all);
    if !units.is_empty() {
        let mut args = vec!["disable", "--now"];
        args.extend(units.iter().map(String::as_str));
        run("systemctl", &args)?;
    }
    let started: Vec<&str> = all
        .iter()
        .filter(|u| !units.contains(u))
        .map(String::as_str)
        .collect();
    if !started.is_empty() {
        run("systemctl", &[&["stop"][..], &started].concat())?;
    }
    Ok(())
}

/// Writes `text` to `path` (mode `mode`) through a temporary file and a rename.
pub(crate) fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let tmp = path.with_extension("pea-tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cert_dir_is_the_kubelets_default_under_its_root_dir() {
        assert_eq!(
            Path::new(KUBELET_CERT_DIR),
            Path::new(KUBELET_ROOT_DIR).join("pki")
        );
    }

    #[test]
    fn timer_started_services_are_not_enabled() {
        let units: Vec<String> = [
            "pea-proxy.service",
            "pea-proxy-renew.service",
            "pea-proxy-renew.timer",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            enabled(&units),
            ["pea-proxy.service", "pea-proxy-renew.timer"]
        );
    }

    #[test]
    fn the_manifest_reads_back_what_it_wrote_and_an_old_one_is_legacy() {
        let m = Manifest {
            files: vec!["etc/pea/kubelet.yaml".into()],
            unit_files: vec![KUBELET_KUBECONFIG.into()],
            unit_dirs: vec![KUBELET_CERT_DIR.into()],
            legacy: false,
        };
        let dir = std::env::temp_dir().join(format!("pea-manifest-{}", std::process::id()));
        write(&dir.join(MANIFEST), &m.text(), 0o644).unwrap();
        let back = Manifest::read(&dir);
        assert_eq!(back.files, m.files);
        assert_eq!(back.unit_files, m.unit_files);
        assert_eq!(back.unit_dirs, m.unit_dirs);
        assert!(!back.legacy && back.owns(KUBELET_KUBECONFIG) && !back.owns(CA_FILE));
        write(&dir.join(MANIFEST), "etc/pea/kubelet.yaml\n", 0o644).unwrap();
        let old = Manifest::read(&dir);
        assert!(old.legacy && old.owns("etc/pea/kubelet.yaml") && old.unit_files.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
