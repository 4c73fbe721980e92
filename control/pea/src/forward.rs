//! The host's way to the API server without touching the root namespace's addresses or routes:
//! a listener on 127.0.0.1 (an ephemeral port) of the namespace `pea` was started in, relaying
//! each connection to an address inside the cluster. The listener is bound first; then the
//! process enters the node's namespace, so every connection it opens afterwards starts there.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

/// Connections relayed at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

pub fn run(netns: &Path, to: SocketAddr, port_file: &Path) -> Result<()> {
    // Restarted (by `pea supervise`): the same port, which the host kubeconfig names.
    let addr = match std::fs::read_to_string(port_file).map(|p| p.trim().parse::<u16>()) {
        Ok(Ok(port)) => format!("127.0.0.1:{port}"),
        _ => "127.0.0.1:0".into(),
    };
    let listener = TcpListener::bind(&addr).with_context(|| format!("binding {addr}"))?;
    let port = listener.local_addr()?.port();
    let ns = std::fs::File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
    // Single-threaded here: the namespace change applies to the whole process from now on.
    setns(&ns, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering {}", netns.display()))?;
    let tmp = port_file.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(port.to_string().as_bytes())?;
    std::fs::rename(&tmp, port_file)?;
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if active.load(std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
            continue; // dropped: the client sees a reset
        }
        let active = active.clone();
        active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            if let Ok(server) = TcpStream::connect(to) {
                relay(client, server);
            }
            active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    Ok(())
}

fn relay(client: TcpStream, server: TcpStream) {
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut c = client;
        let mut s = server;
        let _ = std::io::copy(&mut c, &mut s);
        let _ = s.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = up.join();
}
