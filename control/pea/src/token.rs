//! `pea token create [--ttl 24h] [--print-join-command]`, as `kubeadm token create`: a
//! bootstrap token `ID.SECRET` stored as the Secret `kube-system/bootstrap-token-ID` (type
//! `bootstrap.kubernetes.io/token`, usable for authentication and signing, in the group
//! `system:bootstrappers:kubeadm:default-node-token` that pea-control lets post node CSRs and
//! has auto-approved), created through kubectl with the admin kubeconfig.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::kubectl::kubectl;

pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// pea-control's admin kubeconfig of a `pea install --role control-plane` host.
pub const DEFAULT_KUBECONFIG: &str = "/var/lib/pea/control/admin.kubeconfig";

/// `n` random characters of `[a-z0-9]` (from /dev/urandom, rejection-sampled).
fn random_chars(n: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        f.read_exact(&mut buf).context("reading /dev/urandom")?;
        for b in buf {
            // 252 = 7 × 36: values above would bias the first characters.
            if b < 252 && out.len() < n {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// A new token `(id, secret)`.
pub fn generate() -> Result<(String, String)> {
    Ok((random_chars(6)?, random_chars(16)?))
}

/// kubeadm's duration syntax for --ttl: `0` (never expires), or a number with h, m or s
/// units, e.g. `24h`, `1h30m`, `90s`.
pub fn parse_ttl(s: &str) -> Result<u64> {
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .with_context(|| format!("--ttl {s:?}: expected a duration like 24h, 30m or 0"))?;
        num.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => bail!("--ttl {s:?}: unknown unit {c:?} (use h, m or s)"),
        };
    }
    if !num.is_empty() {
        bail!("--ttl {s:?}: a number needs a unit (h, m or s)");
    }
    if total == 0 {
        bail!("--ttl {s:?}: expected a duration like 24h, 30m or 0");
    }
    Ok(total)
}

/// Unix seconds → RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Secret of a token.
pub fn secret_json(id: &str, secret: &str, expiration: Option<&str>, description: &str) -> String {
    let mut data = serde_json::json!({
        "token-id": id,
        "token-secret": secret,
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_TOKEN_GROUP,
        "description": description,
    });
    if let Some(e) = expiration {
        data["expiration"] = serde_json::json!(e);
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "stringData": data,
    })
    .to_string()
}

/// `pea token create`: prints the token, or the whole `pea join` command.
pub fn create(
    kubeconfig: &Path,
    ttl: &str,
    print_join_command: bool,
    description: &str,
) -> Result<()> {
    let ttl = parse_ttl(ttl)?;
    if !kubeconfig.exists() {
        bail!(
            "--kubeconfig {}: no such file (run on the control plane, or name its admin kubeconfig)",
            kubeconfig.display()
        );
    }
    let (id, secret) = generate()?;
    let expiration = (ttl > 0).then(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        rfc3339(now + ttl)
    });
    kubectl(
        kubeconfig,
        &["create", "-f", "-"],
        Some(&secret_json(
            &id,
            &secret,
            expiration.as_deref(),
            description,
        )),
    )
    .context("creating the bootstrap token secret")?;
    let token = format!("{id}.{secret}");
    if !print_join_command {
        println!("{token}");
        return Ok(());
    }
    let server = kubectl(
        kubeconfig,
        &[
            "config",
            "view",
            "--minify",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    )?;
    let ca_b64 = kubectl(
        kubeconfig,
        &[
            "config",
            "view",
            "--minify",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
        None,
    )?;
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca_b64.trim())
        .context("the kubeconfig's certificate-authority-data is not base64")?;
    let hash = crate::join::ca_cert_hash(&ca)?;
    println!(
        "pea join --server {} --token {token} --discovery-token-ca-cert-hash {hash}",
        server.trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_times_look_like_kubeadms() {
        let (id, secret) = generate().unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(format!("{id}{secret}")
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(parse_ttl("24h").unwrap(), 86_400);
        assert_eq!(parse_ttl("1h30m").unwrap(), 5_400);
        assert_eq!(parse_ttl("0").unwrap(), 0);
        assert!(parse_ttl("5").is_err());
        assert!(parse_ttl("3d").is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
