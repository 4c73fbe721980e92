//! pea-shim's CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics) with the real k8s-cri
//! client: cAdvisor's names and label keys, every reported metric described and labelled with
//! its pod, and the figures moving when a container burns CPU, fills memory and sends packets
//! from the pod's network namespace. Bounded retries only; no timing is asserted.

use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::shim_node::ShimNode;

async fn exec(c: &mut pea_tests::cri_client::Cri, id: &str, script: &str) -> String {
    let r = c
        .runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 30,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// The pod's metrics from ListPodSandboxMetrics.
async fn pod_metrics(c: &mut pea_tests::cri_client::Cri, pod: &str) -> cri::PodSandboxMetrics {
    c.runtime
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics
        .into_iter()
        .find(|p| p.pod_sandbox_id == pod)
        .expect("the pod is listed")
}

/// The value of `name` among `metrics` whose label values contain `label` (if given).
fn value(metrics: &[cri::Metric], name: &str, label: Option<&str>) -> Option<u64> {
    metrics
        .iter()
        .find(|m| m.name == name && label.is_none_or(|l| m.label_values.iter().any(|v| v == l)))
        .and_then(|m| m.value.as_ref())
        .map(|v| v.value)
}

fn container<'a>(p: &'a cri::PodSandboxMetrics, id: &str) -> &'a [cri::Metric] {
    &p.container_metrics
        .iter()
        .find(|c| c.container_id == id)
        .expect("the container is listed")
        .metrics
}

#[test]
fn pod_sandbox_metrics_follow_cpu_memory_and_network() {
    let mut node = ShimNode::new().unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        let descriptors = c
            .runtime
            .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
            .await
            .unwrap()
            .into_inner()
            .descriptors;
        let keys = |name: &str| {
            descriptors
                .iter()
                .find(|d| d.name == name)
                .unwrap_or_else(|| panic!("{name} is not described"))
                .label_keys
                .clone()
        };
        let base = ["container", "id", "image", "name", "namespace", "pod"];
        assert_eq!(keys("container_cpu_usage_seconds_total"), base);
        assert_eq!(keys("container_memory_working_set_bytes"), base);
        assert_eq!(keys("container_spec_memory_limit_bytes"), base);
        assert_eq!(
            keys("container_network_receive_bytes_total"),
            [
                "container",
                "id",
                "image",
                "interface",
                "name",
                "namespace",
                "pod"
            ]
        );
        assert_eq!(
            keys("container_fs_usage_bytes"),
            [
                "container",
                "device",
                "id",
                "image",
                "name",
                "namespace",
                "pod"
            ]
        );

        for io in [
            "container_fs_reads_bytes_total",
            "container_fs_writes_bytes_total",
            "container_fs_reads_total",
            "container_fs_writes_total",
        ] {
            assert_eq!(keys(io), keys("container_fs_usage_bytes"), "{io}");
        }

        let mut config = node.container("app", "exec sleep 3600");
        config.linux.get_or_insert_with(Default::default).resources =
            Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 256 << 20,
                cpu_shares: 512,
                ..Default::default()
            });
        let running = node.run_container(&mut c, "metrics", config).await.unwrap();
        let (pod, pod_config, id) = (
            running.id.clone(),
            running.config.clone(),
            running.containers[0].clone(),
        );

        // Every metric is described and carries as many label values as its keys, the pod's
        // namespace and name, and (for the container's) its name and image.
        let first = pod_metrics(&mut c, &pod).await;
        let meta = pod_config.metadata.clone().unwrap();
        let all = first.metrics.iter().chain(
            first
                .container_metrics
                .iter()
                .flat_map(|c| c.metrics.iter()),
        );
        for m in all {
            let k = keys(&m.name);
            assert_eq!(k.len(), m.label_values.len(), "{m:?}");
            let label = |key: &str| &m.label_values[k.iter().position(|x| x == key).unwrap()];
            assert_eq!(label("namespace"), &meta.namespace, "{m:?}");
            assert_eq!(label("pod"), &meta.name, "{m:?}");
        }
        let ctr = container(&first, &id);
        let named = ctr
            .iter()
            .find(|m| m.name == "container_memory_usage_bytes")
            .expect("memory usage");
        assert_eq!(named.label_values[0], "app");
        assert_eq!(named.label_values[2], node.busybox);
        assert_eq!(named.label_values[3], id);
        assert_eq!(
            value(ctr, "container_spec_memory_limit_bytes", None),
            Some(256 << 20)
        );
        assert_eq!(value(ctr, "container_spec_cpu_shares", None), Some(512));
        assert!(value(ctr, "container_start_time_seconds", None).unwrap() > 1_600_000_000);
        let mem0 = value(ctr, "container_memory_usage_bytes", None).unwrap();
        let ws0 = value(ctr, "container_memory_working_set_bytes", None).unwrap();
        let fs0 = value(ctr, "container_fs_usage_bytes", None).unwrap();
        let cpu0 = value(ctr, "container_cpu_usage_seconds_total", None).unwrap();

        // Memory: 32 MiB into the pod's /dev/shm (tmpfs, charged to the writer's cgroup and
        // not reclaimable as inactive file pages) and 8 MiB into the writable layer.
        exec(
            &mut c,
            &id,
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null; \
             dd if=/dev/zero of=/fill bs=1M count=8 2>/dev/null; sync",
        )
        .await;
        let after = pod_metrics(&mut c, &pod).await;
        let ctr = container(&after, &id);
        let mem1 = value(ctr, "container_memory_usage_bytes", None).unwrap();
        let ws1 = value(ctr, "container_memory_working_set_bytes", None).unwrap();
        assert!(mem1 >= mem0 + (16 << 20), "usage {mem0} -> {mem1}");
        assert!(ws1 >= ws0 + (16 << 20), "working set {ws0} -> {ws1}");
        let fs1 = value(ctr, "container_fs_usage_bytes", None).unwrap();
        assert!(fs1 >= fs0 + (4 << 20), "writable layer {fs0} -> {fs1}");

        // CPU (whole seconds): burn in 2-second slices until the counter moves, bounded.
        let start = Instant::now();
        let cpu1 = loop {
            exec(&mut c, &id, "timeout 2 sh -c 'while :; do :; done'; true").await;
            let p = pod_metrics(&mut c, &pod).await;
            let v = value(
                container(&p, &id),
                "container_cpu_usage_seconds_total",
                None,
            )
            .unwrap();
            if v > cpu0 || start.elapsed() > Duration::from_secs(30) {
                break v;
            }
        };
        assert!(
            cpu1 > cpu0,
            "cpu seconds {cpu0} -> {cpu1} after 30 s of burning"
        );
        let p = pod_metrics(&mut c, &pod).await;
        // The pod's cgroup holds the container's: its counter moved too.
        assert!(value(&p.metrics, "container_cpu_usage_seconds_total", None).unwrap() >= 1);

        // Network: the pod's eth0 counters (its own namespace) move with connection attempts
        // to the bridge (a SYN each, refused or not).
        let tx0 = value(
            &p.metrics,
            "container_network_transmit_packets_total",
            Some("eth0"),
        )
        .expect("eth0 transmit packets");
        let txb0 = value(
            &p.metrics,
            "container_network_transmit_bytes_total",
            Some("eth0"),
        )
        .unwrap();
        exec(
            &mut c,
            &id,
            "for i in 1 2 3 4 5; do nc -w 1 10.233.7.1 9 </dev/null; done; true",
        )
        .await;
        let p = pod_metrics(&mut c, &pod).await;
        let tx1 = value(
            &p.metrics,
            "container_network_transmit_packets_total",
            Some("eth0"),
        )
        .unwrap();
        let txb1 = value(
            &p.metrics,
            "container_network_transmit_bytes_total",
            Some("eth0"),
        )
        .unwrap();
        assert!(tx1 >= tx0 + 5, "eth0 tx packets {tx0} -> {tx1}");
        assert!(txb1 > txb0, "eth0 tx bytes {txb0} -> {txb1}");
        assert!(
            !p.metrics
                .iter()
                .any(|m| m.label_values.iter().any(|v| v == "lo")),
            "loopback is not reported"
        );

        // A stopped container is no longer reported; its pod still is.
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let p = pod_metrics(&mut c, &pod).await;
        assert!(p.container_metrics.iter().all(|m| m.container_id != id));
    });
    drop(rt);
    node.teardown().unwrap();
    assert_eq!(node.leftovers(), Vec::<String>::new());
}

/// `/dev/<name>` and `major:minor` of the block device holding `path`.
fn block_device_of(path: &std::path::Path) -> (String, String) {
    use std::os::unix::fs::MetadataExt as _;
    let dev = std::fs::metadata(path).unwrap().dev();
    // glibc's gnu_dev_major/minor encoding.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let mm = format!("{major}:{minor}");
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{mm}/uevent"))
        .unwrap_or_else(|e| panic!("{} is not on a block device ({mm}: {e})", path.display()));
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .expect("DEVNAME in uevent");
    (format!("/dev/{name}"), mm)
}

#[test]
fn block_io_counters_follow_direct_writes_and_reads() {
    let mut node = ShimNode::new().unwrap();
    let data = node.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let (device, mm) = block_device_of(&data);
    // cgroup v1 keeps the throttle counters only once blk-throttle is active on the device's
    // queue: a limit no I/O here comes near (1 TiB/s) on the node's own cgroup root does that,
    // as any throttled pod on a node would. Removed with the node's cgroups.
    let root = std::path::Path::new("/sys/fs/cgroup/blkio").join(&node.cgroup_root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("blkio.throttle.write_bps_device"),
        format!("{mm} 1099511627776"),
    )
    .unwrap();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        let mut config = node.container("io", "exec sleep 3600");
        config.mounts.push(cri::Mount {
            container_path: "/data".into(),
            host_path: data.display().to_string(),
            ..Default::default()
        });
        let running = node.run_container(&mut c, "blkio", config).await.unwrap();
        let (pod, id) = (running.id, running.containers[0].clone());
        let names = [
            "container_fs_writes_bytes_total",
            "container_fs_writes_total",
            "container_fs_reads_bytes_total",
            "container_fs_reads_total",
        ];
        let figures = |p: &cri::PodSandboxMetrics| {
            let of = |m: &[cri::Metric]| names.map(|n| value(m, n, Some(&device)).unwrap_or(0));
            (of(container(p, &id)), of(&p.metrics))
        };
        let (ctr0, pod0) = figures(&pod_metrics(&mut c, &pod).await);
        // 4 MiB written and read back in 64 KiB O_DIRECT requests (no page cache in between).
        exec(
            &mut c,
            &id,
            "dd if=/dev/zero of=/data/f bs=64k count=64 oflag=direct 2>/dev/null && \
             dd if=/data/f of=/dev/null bs=64k iflag=direct 2>/dev/null",
        )
        .await;
        let p = pod_metrics(&mut c, &pod).await;
        let (ctr1, pod1) = figures(&p);
        let want = [4 << 20, 64, 4 << 20, 64];
        for i in 0..4 {
            assert!(
                ctr1[i] >= ctr0[i] + want[i],
                "{} on {device}: {} -> {} (container)",
                names[i],
                ctr0[i],
                ctr1[i]
            );
            // The pod's cgroup counts its containers' I/O (recursive counters).
            assert!(
                pod1[i] >= pod0[i] + want[i],
                "{} on {device}: {} -> {} (pod)",
                names[i],
                pod0[i],
                pod1[i]
            );
        }
        // Labelled like every filesystem metric: `device` is the block device.
        let m = container(&p, &id)
            .iter()
            .find(|m| m.name == "container_fs_writes_bytes_total")
            .unwrap();
        assert_eq!(m.label_values[1], device, "{m:?}");
        assert_eq!(m.metric_type, cri::MetricType::Counter as i32);
    });
    drop(rt);
    node.teardown().unwrap();
}
