//! VERSION: the spec versions this plugin speaks.

use crate::spec::{VersionInfo, CURRENT_VERSION, SUPPORTED_VERSIONS};

pub(super) fn run() -> String {
    serde_json::to_string(&VersionInfo {
        cni_version: CURRENT_VERSION.into(),
        supported_versions: SUPPORTED_VERSIONS.iter().map(|s| s.to_string()).collect(),
    })
    .expect("version info serialises")
}
