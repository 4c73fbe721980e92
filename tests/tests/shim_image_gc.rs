//! pea-shim's own image GC (`--image-gc-policy`), the way a live node uses pea's policies: the
//! shim's image filesystem is a small tmpfs, images built here (a shared busybox layer plus
//! incompressible filler) are pulled through CRI until usage crosses the high threshold, and
//! the shim's background GC (learned policy) brings it back below, keeping the image a
//! container uses and the pinned pause image. Without the GC the pulls would not fit at all.
//! The same shim records the node's image use (`--image-use-recording`) as the trace format
//! `pea-image simulate --recording` replays. Bad flag values are refused at start. Bounded
//! waits only; no timing is asserted.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use pea_tests::bins::workspace_binary;
use pea_tests::fixtures::busybox::{write_busybox_tree, DEFAULT_PATH};
use pea_tests::fixtures::layer::PseudoRandom;
use pea_tests::fixtures::layout::ImageDefaults;
use pea_tests::fixtures::OciLayout;
use pea_tests::shim_node::ShimNode;

const TMPFS_MIB: u64 = 48;
const FILLER_MIB: u64 = 4;
const HIGH: u64 = 60;
const LOW: u64 = 40;
const FILLERS: usize = 6;

/// The recording's records, one JSON object a line.
fn recorded(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Used percent of the filesystem at `path`, as the kubelet and the shim count it.
fn usage_percent(path: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    let capacity = st.blocks() as u128 * st.fragment_size() as u128;
    let available = st.blocks_available() as u128 * st.fragment_size() as u128;
    100 - (available * 100 / capacity) as u64
}

/// `fill:N`: busybox (one layer shared by every filler) plus `FILLER_MIB` of noise.
fn build_fillers(layout: &OciLayout) {
    for i in 0..FILLERS {
        let mut w = layout.layer_writer(1).unwrap();
        write_busybox_tree(&mut w, "fill").unwrap();
        let base = layout.commit_layer(w.finish().unwrap()).unwrap();
        let mut w = layout.layer_writer(1).unwrap();
        w.file_from_reader(
            "filler.bin",
            0o644,
            FILLER_MIB << 20,
            PseudoRandom::new(1000 + i as u64),
        )
        .unwrap();
        let noise = layout.commit_layer(w.finish().unwrap()).unwrap();
        layout
            .add_image(
                &format!("{i}"),
                &[base, noise],
                &ImageDefaults {
                    cmd: Some(vec!["sh".into()]),
                    env: vec![DEFAULT_PATH.into()],
                    ..Default::default()
                },
            )
            .unwrap();
    }
}

async fn image_ids(c: &mut pea_tests::cri_client::Cri) -> Vec<(String, bool)> {
    c.images
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| (i.id, i.pinned))
        .collect()
}

#[test]
fn learned_policy_in_the_shim_frees_the_image_filesystem_but_keeps_used_and_pause_images() {
    let mut node = ShimNode::new().unwrap();
    let layout = OciLayout::create(&node.path("fill-layout")).unwrap();
    build_fillers(&layout);
    let fillers: Vec<String> = (0..FILLERS)
        .map(|i| {
            node.registry
                .push(&layout.skopeo_ref(&i.to_string()), &format!("pea/fill:{i}"))
                .unwrap();
            format!("{}/pea/fill:{i}", node.registry.host())
        })
        .collect();
    // The shim's --root (images, writable layers) on a small tmpfs; ShimNode's drop unmounts
    // whatever is mounted under its directory.
    let root = node.path("root");
    nix::mount::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(format!("size={TMPFS_MIB}m,mode=0755").as_str()),
    )
    .unwrap();
    let recording = node.path("image-use.jsonl");
    node.shim_args = [
        "--image-use-recording",
        recording.to_str().unwrap(),
        "--image-gc-policy",
        "learned",
        "--image-gc-high-threshold-percent",
        &HIGH.to_string(),
        "--image-gc-low-threshold-percent",
        &LOW.to_string(),
        "--image-minimum-gc-age",
        "0s",
        "--image-gc-period",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    node.start_shim().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = node.cri().await.unwrap();
        // A pod (its pause image is pulled and pinned) with a container from fill:0.
        let mut config = node.container("app", "exec sleep 3600");
        config.image = Some(cri::ImageSpec {
            image: fillers[0].clone(),
            ..Default::default()
        });
        let used = node.pull(&mut c, &fillers[0]).await.unwrap();
        let running = node
            .start_pod(&mut c, node.pod("gc"), vec![config])
            .await
            .unwrap();
        let id = running.containers[0].clone();
        // The start is recorded (history, then recording) just after StartContainer answers.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !recorded(&recording)
            .iter()
            .any(|r| r["event"] == "start" && r["container"] == id.as_str())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The recording has the pull (by reference, with its layers) and the start.
        let records = recorded(&recording);
        assert!(
            records.iter().any(|r| r["event"] == "pull"
                && r["ref"].as_str().is_some_and(|x| x.ends_with("pea/fill:0"))
                && r["layers"].as_array().is_some_and(|l| !l.is_empty())),
            "no pull of fill:0 with layers in {records:?}"
        );
        assert!(
            records
                .iter()
                .any(|r| r["event"] == "start" && r["container"] == id.as_str()),
            "no start of {id} in {records:?}"
        );
        let pause = image_ids(&mut c)
            .await
            .into_iter()
            .find(|(_, pinned)| *pinned)
            .expect("the pause image is listed, pinned")
            .0;
        // The start fed the store's use history (what the learned policy reads).
        let history = std::fs::read_to_string(root.join("images/gc-history.json")).unwrap();
        let hex = used.trim_start_matches("sha256:");
        assert!(history.contains(hex), "no use of {used} in {history}");

        // Pull fillers until usage crosses the high threshold. Past it, the shim's GC has to
        // make room: the fillers together are bigger than the whole filesystem.
        let mut pulled = vec![used.clone()];
        let mut crossed = false;
        for f in &fillers[1..] {
            pulled.push(node.pull(&mut c, f).await.unwrap());
            let u = usage_percent(&root);
            eprintln!("pulled {f}: {u}% used");
            if u >= HIGH {
                crossed = true;
                break;
            }
        }
        // Back below the high threshold, with a GC run in the shim's log.
        let start = Instant::now();
        loop {
            let ran = node.log().contains("image garbage collection run");
            let u = usage_percent(&root);
            if ran && u < HIGH {
                eprintln!("after GC: {u}% used (crossed by our own count: {crossed})");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "usage {u}% not back below {HIGH}% after 20 s (GC ran: {ran}):\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let left: Vec<String> = image_ids(&mut c).await.into_iter().map(|i| i.0).collect();
        assert!(left.contains(&used), "the used image went: {left:?}");
        assert!(left.contains(&pause), "the pause image went: {left:?}");
        let removed: Vec<&String> = pulled.iter().filter(|p| !left.contains(p)).collect();
        assert!(!removed.is_empty(), "nothing removed; left {left:?}");
        let log = node.log();
        assert!(
            log.contains("learned") && log.contains("images_removed"),
            "{log}"
        );
        // A stop is recorded once the shim sees the exit; the recording replays as a trace.
        c.runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
        let start = Instant::now();
        while !recorded(&recording)
            .iter()
            .any(|r| r["event"] == "stop" && r["container"] == id.as_str())
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no stop of {id} recorded: {:?}",
                recorded(&recording)
            );
            c.runtime
                .container_status(cri::ContainerStatusRequest {
                    container_id: id.clone(),
                    verbose: false,
                })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = std::fs::read_to_string(&recording).unwrap();
        let trace = pea_images::sim::recording::load(&text).expect("the recording replays");
        assert!(!trace.images.is_empty(), "an empty trace from {text}");
    });
    node.teardown().unwrap();
    let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
    let left = node.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Bad image GC flags stop the shim before it binds its socket, naming the flag.
#[test]
fn bad_image_gc_flags_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    for (args, want) in [
        (
            vec!["--image-gc-policy", "lru-ish"],
            "--image-gc-policy \"lru-ish\": unknown policy",
        ),
        (
            vec![
                "--image-gc-policy",
                "learned",
                "--image-gc-high-threshold-percent",
                "80",
                "--image-gc-low-threshold-percent",
                "80",
            ],
            "--image-gc-low-threshold-percent 80: must be below",
        ),
        (
            vec!["--image-gc-high-threshold-percent", "101"],
            "--image-gc-high-threshold-percent 101: must be at most 100",
        ),
        (vec!["--image-gc-period", "5"], "--image-gc-period"),
    ] {
        let out = Command::new(workspace_binary("pea-shim", "PEA_SHIM"))
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!socket.exists(), "{args:?}: socket bound");
        assert!(!dir.path().join("root").exists(), "{args:?}: state created");
    }
}

/// A bad `--image-use-recording` stops the shim before it makes anything; a failure after the
/// recorder opened (here the image store's directory is a file) removes the dirs and the
/// recording file that start made, and keeps what was there before.
#[test]
fn a_failed_start_leaves_no_dirs_or_recording_behind() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let shim = |root: &std::path::Path, recording: &std::path::Path| {
        Command::new(workspace_binary("pea-shim", "PEA_SHIM"))
            .arg("--socket")
            .arg(&socket)
            .arg("--root")
            .arg(root)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--runtime-root")
            .arg(dir.path().join("runtime"))
            .arg("--image-use-recording")
            .arg(recording)
            .output()
            .unwrap()
    };
    let made = || {
        ["root", "state", "runtime"]
            .into_iter()
            .filter(|d| dir.path().join(d).exists())
            .collect::<Vec<_>>()
    };

    let out = shim(
        &dir.path().join("root"),
        &dir.path().join("absent/use.jsonl"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--image-use-recording"), "{err}");
    assert!(err.contains("absent/use.jsonl"), "{err}");
    assert_eq!(made(), Vec::<&str>::new(), "{err}");

    // The root exists with a file where the image store's directory goes.
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("images"), "not a directory").unwrap();
    let recording = dir.path().join("use.jsonl");
    let out = shim(&root, &recording);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("images"), "{err}");
    assert_eq!(made(), ["root"], "{err}");
    assert_eq!(
        std::fs::read_to_string(root.join("images")).unwrap(),
        "not a directory"
    );
    assert!(
        !recording.exists(),
        "the recording file this start made is left"
    );
    assert!(!socket.exists());
}
