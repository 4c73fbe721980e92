//! Manifests, indexes and image configs: the subset of OCI image-spec and Docker schema2 a
//! puller needs. Schema1 manifests are refused (deprecated, unsigned content, no digests).

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type we read, offered on each manifest request: distribution 2.8 answers 404
/// to a request whose Accept lacks the stored manifest's type.
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what}: schema1 manifests ({media_type}) are not supported; push the image again with a current client")]
    Schema1 { what: String, media_type: String },
    #[error("{what}: unsupported manifest media type {media_type:?}")]
    MediaType { what: String, media_type: String },
    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("{what}: no manifest for platform {platform} (index has: {available})")]
    NoPlatform {
        what: String,
        platform: String,
        available: String,
    },
    #[error("{what}: unsupported layer media type {media_type:?}")]
    LayerType { what: String, media_type: String },
    #[error("{what}: config lists {diff_ids} diff IDs for {layers} layers")]
    LayerCount {
        what: String,
        diff_ids: usize,
        layers: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform this process runs on, in OCI terms.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(Index),
}

/// Parses `bytes` given the Content-Type the registry sent (`what` names it in errors).
pub fn parse(what: &str, content_type: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let json_err = |source| ManifestError::Json {
        what: what.into(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(json_err)?;
    let declared = probe
        .media_type
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| {
            content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        });
    if probe.schema_version == Some(1)
        || probe.fs_layers.is_some()
        || declared == DOCKER_SCHEMA1
        || declared == DOCKER_SCHEMA1_SIGNED
    {
        return Err(ManifestError::Schema1 {
            what: what.into(),
            media_type: if declared.is_empty() {
                DOCKER_SCHEMA1.into()
            } else {
                declared
            },
        });
    }
    let is_index = match declared.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        // OCI allows a missing mediaType; tell the two apart by shape.
        "" | "application/json" => probe.manifests.is_some(),
        other => {
            return Err(ManifestError::MediaType {
                what: what.into(),
                media_type: other.into(),
            })
        }
    };
    if is_index {
        Ok(Manifest::Index(
            serde_json::from_slice(bytes).map_err(json_err)?,
        ))
    } else {
        let m: ImageManifest = serde_json::from_slice(bytes).map_err(json_err)?;
        for l in &m.layers {
            layer_compression(what, &l.media_type)?;
        }
        Ok(Manifest::Image(m))
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

pub fn layer_compression(what: &str, media_type: &str) -> Result<Compression, ManifestError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(Compression::Zstd),
        "application/vnd.oci.image.layer.v1.tar" => Ok(Compression::None),
        other => Err(ManifestError::LayerType {
            what: what.into(),
            media_type: other.into(),
        }),
    }
}

impl Index {
    /// The entry for `platform` (os and architecture must match; variant when both name one).
    pub fn select(&self, what: &str, platform: &Platform) -> Result<&Descriptor, ManifestError> {
        self.manifests
            .iter()
            .find(|d| {
                d.platform.as_ref().is_some_and(|p| {
                    p.os == platform.os
                        && p.architecture == platform.architecture
                        && (platform.variant.is_none()
                            || p.variant.is_none()
                            || p.variant == platform.variant)
                })
            })
            .ok_or_else(|| ManifestError::NoPlatform {
                what: what.into(),
                platform: platform.to_string(),
                available: self
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The parts of an image config the store keeps.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    pub rootfs: RootFs,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

pub fn parse_config(what: &str, bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: what.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn schema1_is_refused() {
        let body = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = parse("x:y", DOCKER_SCHEMA1_SIGNED, body).unwrap_err();
        assert!(e.to_string().contains("schema1"), "{e}");
    }

    #[test]
    fn index_selects_linux_amd64() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let Manifest::Index(i) = parse("x", "", body.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let p = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(i.select("x", &p).unwrap().digest.to_string(), d('b'));
        let p = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        let e = i.select("x", &p).unwrap_err().to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/arm64/v8"),
            "{e}"
        );
    }

    #[test]
    fn unknown_layer_types_are_refused() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[{{"mediaType":"application/x-foo","digest":"{}","size":1}}]}}"#,
            d('a'),
            d('b')
        );
        assert!(matches!(
            parse("x", "", body.as_bytes()),
            Err(ManifestError::LayerType { .. })
        ));
    }
}
