//! ImageLocality: prefers nodes that already have the pod's images, weighing each image's
//! size by the fraction of nodes that have it (so one node holding an image everyone else
//! lacks does not attract every pod), scaled between 23 MB and 1000 MB per container.

use crate::cache::ClusterState;
use crate::framework::{CycleState, ScorePlugin, Status, MAX_NODE_SCORE};
use crate::node_info::{NodeInfo, PodInfo};

pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default)]
pub struct ImageLocality;

/// An image name without tag or digest gets ":latest", as the kubelet pulls it.
pub fn normalized_image_name(name: &str) -> String {
    if name.rfind(':').unwrap_or(0) <= name.rfind('/').unwrap_or(0) && !name.contains('@') {
        format!("{name}:latest")
    } else {
        name.to_string()
    }
}

/// kube's `calculatePriority`: clamps the summed score to the thresholds and scales to 0..100.
pub fn image_score(sum: i64, containers: i64) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD * containers.max(1);
    let s = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (s - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// The pod's images (init containers first), normalised: one entry per container, None for a
/// container without an image.
pub fn pod_images(pod: &PodInfo) -> Vec<Option<String>> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| c.image.as_deref().map(normalized_image_name))
        .collect()
}

/// kube's `sumImageScores` + `calculatePriority` for the pod's normalised images.
fn score_images(images: &[Option<String>], node: &NodeInfo, cluster: &ClusterState) -> i64 {
    let total = cluster.num_nodes().max(1) as f64;
    let mut sum = 0i64;
    for name in images.iter().flatten() {
        if let Some(size) = node.images.get(name) {
            let spread = cluster.image_node_count(name) as f64 / total;
            sum += (*size as f64 * spread) as i64;
        }
    }
    image_score(sum, images.len() as i64)
}

pub fn locality(pod: &PodInfo, node: &NodeInfo, cluster: &ClusterState) -> i64 {
    if pod.pod.spec.is_none() {
        return 0;
    }
    score_images(&pod_images(pod), node, cluster)
}

impl ScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Normalises the pod's image names once per cycle instead of once per node.
    fn pre_score(
        &self,
        pod: &PodInfo,
        _: &[&NodeInfo],
        cluster: &ClusterState,
        state: &mut CycleState,
    ) -> Status {
        let images = pod_images(pod);
        if pod.pod.spec.is_none()
            || images
                .iter()
                .flatten()
                .all(|i| cluster.image_node_count(i) == 0)
        {
            // No node has any of the images: every node would score 0.
            return Status::skip(NAME);
        }
        state.write(NAME, images);
        Status::success()
    }

    fn score(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        cluster: &ClusterState,
        state: &CycleState,
    ) -> i64 {
        match state.read::<Vec<Option<String>>>(NAME) {
            Some(images) => score_images(images, node, cluster),
            None => locality(pod, node, cluster),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testutil::{cluster, node_obj, pod};

    #[test]
    fn names_and_thresholds() {
        assert_eq!(normalized_image_name("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(normalized_image_name("app:1"), "app:1");
        assert_eq!(normalized_image_name("app@sha256:ab"), "app@sha256:ab");
        assert_eq!(image_score(0, 1), 0);
        assert_eq!(image_score(2000 * MB, 1), 100);
        // (500-23)*100/(1000-23) = 48.8 -> 48
        assert_eq!(image_score(500 * MB, 1), 48);
    }

    #[test]
    fn spread_weighs_the_size() {
        // A 500 MB image on 2 of 4 nodes counts 250 MB: (250-23)*100/977 = 23.2 -> 23.
        let img = json!({"status": {"images": [{"names": ["reg/app:1"], "sizeBytes": 500 * MB}]}});
        let c = cluster(vec![
            node_obj("a", img.clone()),
            node_obj("b", img),
            node_obj("c", json!({})),
            node_obj("d", json!({})),
        ]);
        let p = pod(json!({"containers": [{"name": "c", "image": "reg/app:1"}]}));
        assert_eq!(locality(&p, c.node("a").unwrap(), &c), 23);
        assert_eq!(locality(&p, c.node("c").unwrap(), &c), 0);
    }
}
