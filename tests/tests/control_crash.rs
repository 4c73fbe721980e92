//! Durability: `kill -9` of pea-control (embedded store) while clients write loses no write the
//! server acknowledged.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pea_tests::control_client::{tls_connector, ApiClient};

const CHILD_ENV: &str = "PEA_CONTROL_CHILD_DIR";

/// Not a test: the server process the kill -9 test starts (and kills). It refuses to run unless
/// started by that test.
#[test]
#[ignore = "helper process for kill_9_under_write_load_loses_no_acknowledged_write"]
fn serve_child() {
    let dir = std::env::var_os(CHILD_ENV).expect("only started by the kill -9 test");
    let dir = std::path::PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = pea_control::server::Config {
            data_dir: dir.join("data"),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let running = pea_control::server::start(config).await.unwrap();
        let tmp = dir.join("addr.tmp");
        std::fs::write(&tmp, running.addr.to_string()).unwrap();
        std::fs::rename(&tmp, dir.join("addr")).unwrap();
        // Serve until killed.
        std::future::pending::<()>().await;
    });
}

// The child is handed to the caller, which always kills and waits for it.
#[allow(clippy::zombie_processes)]
fn start_child(dir: &Path) -> (Child, std::net::SocketAddr) {
    let _ = std::fs::remove_file(dir.join("addr"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_crash::serve_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(a) = std::fs::read_to_string(dir.join("addr")) {
            return (child, a.parse().unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::Builder::new()
        .prefix("pea-control-crash-")
        .tempdir()
        .unwrap();
    let (child, addr) = start_child(dir.path());
    let ca = std::fs::read_to_string(dir.path().join("data/pki/ca.crt")).unwrap();
    let tokens = std::fs::read_to_string(dir.path().join("data/tokens.csv")).unwrap();
    let token = tokens.split(',').next().unwrap().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked: Vec<String> = rt.block_on(async {
        let connector = tls_connector(&ca).unwrap();
        let mut writers = Vec::new();
        for w in 0..8 {
            let mut c = ApiClient::connect(addr, &connector, &token).await.unwrap();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..5000 {
                    let name = format!("cm-{w}-{i}");
                    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                    match c.call("POST", "/api/v1/namespaces/default/configmaps", Some(body.to_string().into_bytes())).await {
                        Ok((201, _)) => acked.push(name),
                        _ => break,
                    }
                }
                acked
            }));
        }
        // Let the load run, then kill the server mid-stream.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        kill9(child);
        let mut all = Vec::new();
        for w in writers {
            all.extend(w.await.unwrap());
        }
        all
    });
    assert!(
        acked.len() > 50,
        "the load ran before the kill ({} acknowledged writes)",
        acked.len()
    );
    let (child, addr) = start_child(dir.path());
    let stored = rt.block_on(async {
        let connector = tls_connector(&ca).unwrap();
        let mut c = ApiClient::connect(addr, &connector, &token).await.unwrap();
        let (code, body) = c
            .call("GET", "/api/v1/namespaces/default/configmaps", None)
            .await
            .unwrap();
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect::<std::collections::HashSet<_>>()
    });
    kill9(child);
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
