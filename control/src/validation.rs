//! Name and metadata validation (RFC 1123 names, label and annotation syntax).

/// An RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253, alphanumeric ends.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// An RFC 1123 label: like a subdomain without dots, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

/// Why `name` is not a valid object name for `kind`, if it is not.
pub fn name_problem(kind: &str, name: &str) -> Option<String> {
    // RBAC names are any path segment (kube's ValidateRBACName): `system:basic-user`.
    if matches!(
        kind,
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding"
    ) && !name.is_empty()
    {
        if name == "." || name == ".." {
            return Some(format!("may not be '{name}'"));
        }
        let bad: Vec<String> = ["/", "%"]
            .iter()
            .filter(|c| name.contains(**c))
            .map(|c| format!("may not contain '{c}'"))
            .collect();
        return (!bad.is_empty()).then(|| bad.join(", "));
    }
    // Service names become DNS names and environment variable prefixes: an RFC 1035 label,
    // which must start with a letter (kube's ValidateServiceName).
    if kind == "Service"
        && is_dns_label(name)
        && !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Some(format!("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123'), got {name:?}"));
    }
    let label_only = matches!(kind, "Namespace" | "Service");
    let ok = if label_only {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if ok {
        return None;
    }
    Some(if label_only {
        format!("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc'), got {name:?}")
    } else {
        format!("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), got {name:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_start_with_a_letter() {
        assert!(name_problem("Service", "web-1").is_none());
        assert!(name_problem("Service", "1web")
            .unwrap()
            .contains("DNS-1035"));
        assert!(name_problem("ConfigMap", "1web").is_none());
        assert!(name_problem("Service", "a.b")
            .unwrap()
            .contains("RFC 1123 label"));
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("A"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(is_dns_label("kube-system"));
        assert!(!is_dns_label("a.b"));
        assert!(name_problem("Namespace", "a.b").is_some());
        assert!(name_problem("Pod", "a.b").is_none());
        assert!(name_problem("Pod", &"a".repeat(254)).is_some());
    }
}
