//! A TCP proxy on 127.0.0.1 that breaks the first few long responses mid-body: how tests make
//! a registry connection die half-way through a blob without touching the registry.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct FlakyProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicUsize>,
    /// Request heads seen (for checking Range headers).
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FlakyProxy {
    /// Forwards to `upstream`; the first `cuts` responses longer than `after` bytes are cut
    /// there.
    pub fn start(upstream: SocketAddr, after: usize, cuts: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let done_cuts = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, done_cuts, requests) = (stop.clone(), done_cuts.clone(), requests.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        continue;
                    };
                    let (done_cuts, requests) = (done_cuts.clone(), requests.clone());
                    std::thread::spawn(move || {
                        pipe(client, server, after, cuts, &done_cuts, &requests)
                    });
                }
            })
        };
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
            cuts: done_cuts,
            requests,
        })
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

fn pipe(
    client: TcpStream,
    server: TcpStream,
    after: usize,
    max_cuts: usize,
    done_cuts: &AtomicUsize,
    requests: &Mutex<Vec<String>>,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = [0u8; 16 << 10];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.starts_with("GET ") {
                    requests.lock().expect("log").push(text.into_owned());
                }
                if s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(Shutdown::Write);
        });
        let (mut s_read, mut c_write) = (server, client);
        let mut buf = [0u8; 16 << 10];
        let mut sent = 0usize;
        while let Ok(n) = s_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            if sent + n > after
                && done_cuts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                        (c < max_cuts).then_some(c + 1)
                    })
                    .is_ok()
            {
                let _ = c_write.write_all(&buf[..after.saturating_sub(sent)]);
                let _ = c_write.shutdown(Shutdown::Both);
                let _ = s_read.shutdown(Shutdown::Both);
                return;
            }
            sent += n;
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
    });
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
