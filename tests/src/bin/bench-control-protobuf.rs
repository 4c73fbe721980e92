//! bench-control-protobuf: pea-control's protobuf body decoder beside serde_json parsing the same
//! object as JSON (the anchor: what a JSON body costs), and Deployment creates through the server
//! with protobuf vs JSON bodies, measured in the same run. Bounded in count; prints Markdown.
//! Usage: bench-control-protobuf [--samples N] [--creates N]

use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Parser;
use pea_tests::bench::{table, Samples};
use pea_tests::control::{Backend, ControlPlane};
use pea_tests::control_client::{tls_connector, ApiClient};
use serde_json::Value;

#[derive(Debug, Parser)]
struct Args {
    /// Decode samples (each the mean of 100 decodes).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Server creates per body encoding.
    #[arg(long, default_value_t = 300)]
    creates: usize,
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn field(n: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    varint((n << 3) | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn num(n: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(n << 3, &mut out);
    varint(v, &mut out);
    out
}

fn entry(k: &str, v: &[u8]) -> Vec<u8> {
    [field(1, k.as_bytes()), field(2, v)].concat()
}

/// A Deployment as kubectl's Go encoder lays it out: three containers with ports, env,
/// resources and probes, labels and annotations.
fn deployment(name: &str) -> Vec<u8> {
    let labels: Vec<u8> = ["app", "tier", "team"]
        .iter()
        .flat_map(|k| field(11, &entry(k, b"web")))
        .collect();
    let meta = [field(1, name.as_bytes()), labels.clone()].concat();
    let container = |i: usize| {
        let port = [num(1, 0), num(2, 8080 + i as u64)].concat();
        let probe = [
            field(
                1,
                &field(2, &[field(1, b"/healthz"), field(2, &port)].concat()),
            ),
            num(4, 10),
        ]
        .concat();
        let qty = |s: &str| field(1, s.as_bytes());
        let resources = [
            field(1, &entry("cpu", &qty("500m"))),
            field(1, &entry("memory", &qty("128Mi"))),
            field(2, &entry("cpu", &qty("100m"))),
        ]
        .concat();
        [
            field(1, format!("c{i}").as_bytes()),
            field(2, b"registry.local/web:1.2.3"),
            field(3, b"/bin/web"),
            field(4, b"--listen=:8080"),
            field(
                6,
                &[field(1, b"http"), num(3, 8080 + i as u64), field(4, b"TCP")].concat(),
            ),
            field(7, &[field(1, b"MODE"), field(2, b"production")].concat()),
            field(7, &[field(1, b"LOG"), field(2, b"info")].concat()),
            field(8, &resources),
            field(10, &probe),
            field(11, &probe),
            field(13, b"/dev/termination-log"),
            field(14, b"IfNotPresent"),
            num(16, 0),
            num(17, 0),
            num(18, 0),
        ]
        .concat()
    };
    let pod_spec: Vec<u8> = (0..3)
        .flat_map(|i| field(2, &container(i)))
        .chain(field(3, b"Always"))
        .chain(num(4, 30))
        .chain(field(6, b"ClusterFirst"))
        .collect();
    let template = [field(1, &labels), field(2, &pod_spec)].concat();
    let selector = field(1, &entry("app", b"web"));
    let spec = [
        num(1, 3),
        field(2, &selector),
        field(3, &template),
        field(4, b""),
    ]
    .concat();
    let raw = [field(1, &meta), field(2, &spec), field(3, b"")].concat();
    let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
    [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let pb = deployment("web");
    let decoded = pea_control::protobuf::decode(&pb)?;
    let json = serde_json::to_vec(&decoded)?;
    println!(
        "Deployment body: {} bytes protobuf, {} bytes JSON\n",
        pb.len(),
        json.len()
    );

    const BATCH: u32 = 100;
    let mut decode = Samples::new("pea-control protobuf decode");
    let mut parse = Samples::new("serde_json parse (anchor)");
    for _ in 0..args.samples {
        let t = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(pea_control::protobuf::decode(std::hint::black_box(&pb))?);
        }
        decode.push(t.elapsed() / BATCH);
        let t = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(serde_json::from_slice::<Value>(std::hint::black_box(
                &json,
            ))?);
        }
        parse.push(t.elapsed() / BATCH);
    }
    println!(
        "{}",
        table(
            "Decoding one Deployment body (mean of 100 per sample)",
            &[parse, decode],
            "serde_json parse (anchor)"
        )
    );

    // Through the server: create latency with each body encoding, alternating.
    let cp = ControlPlane::start(Backend::Embedded)?;
    let connector = tls_connector(&cp.running().pki.ca.cert_pem)?;
    let mut c = cp.block_on(ApiClient::connect(
        cp.addr,
        &connector,
        &cp.running().admin_token,
    ))?;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let mut via_json = Samples::new("create, JSON body (anchor)");
    let mut via_pb = Samples::new("create, protobuf body");
    for i in 0..args.creates {
        let mut obj = decoded.clone();
        obj["metadata"]["name"] = format!("j{i}").into();
        let body = serde_json::to_vec(&obj)?;
        let t = Instant::now();
        let (code, resp) = cp.block_on(c.call("POST", path, Some(body)))?;
        via_json.push(t.elapsed());
        ensure!(
            code == 201,
            "JSON create: {code} {}",
            String::from_utf8_lossy(&resp)
        );
        let body = deployment(&format!("p{i}"));
        let t = Instant::now();
        let (code, resp) = cp.block_on(c.call_typed(
            "POST",
            path,
            "application/vnd.kubernetes.protobuf",
            Some(body),
        ))?;
        via_pb.push(t.elapsed());
        ensure!(
            code == 201,
            "protobuf create: {code} {}",
            String::from_utf8_lossy(&resp)
        );
    }
    println!(
        "{}",
        table(
            "Deployment create through pea-control (embedded store, 1 client)",
            &[via_json, via_pb],
            "create, JSON body (anchor)"
        )
    );
    Ok(())
}
