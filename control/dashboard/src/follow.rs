//! A followed log: `GET …/ns/NS/pods/NAME/follow?container=C&tailLines=N&timestamps=1&previous=1`
//! streams `pods/log?follow=true` (read as the logged-in user) to the page as Server-Sent
//! Events: `event: lines` carries a batch of whole lines (JSON string, lines joined by `\n`),
//! `event: error` the API server's refusal (e.g. `403 Forbidden — …`), `event: end` why the
//! stream stopped. The page appends lines as text (never HTML) and keeps a bounded number.
//!
//! Bounds: one stream slot of the session; lines longer than [`MAX_LINE`] are cut; the stream
//! ends after [`FOLLOW_LIFETIME`], on logout, or when the browser goes away.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::api::{self, ApiError};
use crate::html::seg;
use crate::{sse, Body, StreamSlot};

/// Longest line passed on whole; the rest of a longer one is dropped (and said so).
pub const MAX_LINE: usize = 16 * 1024;
/// Most lines the page may ask for before following.
pub const MAX_TAIL: u32 = 10_000;
/// A followed log ends after this long (the page offers to follow again).
pub const FOLLOW_LIFETIME: Duration = Duration::from_secs(30 * 60);
const PING: Duration = Duration::from_secs(15);

/// The `pods/log` path for these options, or what is wrong with them.
pub fn log_path(
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
    follow: bool,
) -> Result<String, String> {
    let q = |k: &str| query.get(k).map(String::as_str).unwrap_or("");
    let yes = |k: &str| matches!(q(k), "1" | "true" | "on");
    let mut path = format!(
        "{}/log?follow={follow}",
        api::PODS.path(Some(ns), Some(pod))
    );
    let container = q("container");
    if !container.is_empty() {
        if container.len() > 253 {
            return Err("container name longer than 253 characters".into());
        }
        path.push_str(&format!("&container={}", seg(container)));
    }
    let tail = match q("tailLines") {
        "" => 500,
        t => match t.parse::<u32>() {
            Ok(n) if n <= MAX_TAIL => n,
            _ => return Err(format!("tailLines {t:?}: a number from 0 to {MAX_TAIL}")),
        },
    };
    path.push_str(&format!("&tailLines={tail}"));
    if yes("timestamps") {
        path.push_str("&timestamps=true");
    }
    if yes("previous") {
        path.push_str("&previous=true");
    }
    Ok(path)
}

pub fn stream(
    slot: StreamSlot,
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> hyper::Response<Body> {
    let path = match log_path(ns, pod, query, true) {
        Ok(p) => p,
        Err(e) => return crate::plain(400, &e),
    };
    let (tx, response) = sse::channel();
    let span = tracing::info_span!("follow", pod = %format!("{ns}/{pod}"));
    tokio::spawn(run(slot, path, tx).instrument(span));
    response
}

async fn run(slot: StreamSlot, path: String, tx: mpsc::Sender<Bytes>) {
    let mut ended = slot.session.ended.subscribe();
    let deadline = tokio::time::sleep(slot.remaining().min(FOLLOW_LIFETIME));
    tokio::pin!(deadline);
    let why = tokio::select! {
        r = pump(&slot, &path, &tx) => match r {
            Ok(()) => "the log ended (the container stopped or its log was closed)".to_string(),
            Err(Some(e)) => {
                let _ = tx.send(sse::event("error", &crate::views::error_line(&e))).await;
                format!("the API server answered {}", e.code)
            }
            Err(None) => return,
        },
        _ = ended.changed() => "logged out".into(),
        _ = &mut deadline => "followed for the longest time allowed: follow again to go on".into(),
        _ = tx.closed() => return,
    };
    let _ = tx.send(sse::event("end", &why)).await;
}

/// Copies the log to the page in whole lines. Err(None): the page went away.
async fn pump(
    slot: &StreamSlot,
    path: &str,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), Option<ApiError>> {
    let req = hyper::Request::get(path)
        .body(Vec::new())
        .map_err(|e| Some(ApiError::bad_request(e.to_string())))?;
    let mut body = slot
        .session
        .streams_api
        .client
        .request_stream(req)
        .await
        .map_err(|e| Some(ApiError::from(e)))?;
    if tx.send(sse::event("open", "")).await.is_err() {
        return Err(None);
    }
    let mut lines = LineSplitter::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        let n = tokio::select! {
            n = body.read(&mut buf) => n.map_err(|e| Some(ApiError::bad_gateway(format!("reading the log: {e}"))))?,
            _ = ping.tick() => {
                if tx.send(sse::ping()).await.is_err() {
                    return Err(None);
                }
                continue;
            }
        };
        if n == 0 {
            if let Some(rest) = lines.finish() {
                let _ = tx.send(sse::event("lines", &rest)).await;
            }
            return Ok(());
        }
        if let Some(batch) = lines.push(&buf[..n]) {
            if tx.send(sse::event("lines", &batch)).await.is_err() {
                return Err(None);
            }
        }
    }
}

/// Cuts a byte stream into whole lines (each at most [`MAX_LINE`] bytes).
#[derive(Default)]
struct LineSplitter {
    partial: Vec<u8>,
    /// The current line was cut: drop the rest of it.
    skipping: bool,
}

impl LineSplitter {
    /// The whole lines completed by `chunk`, joined by `\n` (no trailing one).
    fn push(&mut self, chunk: &[u8]) -> Option<String> {
        let mut out: Vec<String> = Vec::new();
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let (body, complete) = match piece.strip_suffix(b"\n") {
                Some(b) => (b, true),
                None => (piece, false),
            };
            if !self.skipping {
                let room = MAX_LINE.saturating_sub(self.partial.len());
                self.partial
                    .extend_from_slice(&body[..body.len().min(room)]);
                if body.len() > room {
                    let mut line = String::from_utf8_lossy(&self.partial).into_owned();
                    line.push_str(" […line cut]");
                    out.push(line);
                    self.partial.clear();
                    self.skipping = true;
                }
            }
            if complete {
                if !self.skipping {
                    let line = String::from_utf8_lossy(&self.partial);
                    out.push(line.trim_end_matches('\r').to_string());
                }
                self.partial.clear();
                self.skipping = false;
            }
        }
        (!out.is_empty()).then(|| out.join("\n"))
    }

    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.is_empty()).then(|| String::from_utf8_lossy(&rest).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn log_paths() {
        assert_eq!(
            log_path("a", "p", &q(&[("container", "c 1"), ("timestamps", "1")]), true).unwrap(),
            "/api/v1/namespaces/a/pods/p/log?follow=true&container=c%201&tailLines=500&timestamps=true"
        );
        assert_eq!(
            log_path(
                "a",
                "p",
                &q(&[("tailLines", "0"), ("previous", "on")]),
                false
            )
            .unwrap(),
            "/api/v1/namespaces/a/pods/p/log?follow=false&tailLines=0&previous=true"
        );
        let e = log_path("a", "p", &q(&[("tailLines", "-1")]), true).unwrap_err();
        assert!(e.contains("tailLines \"-1\""), "{e}");
        assert!(log_path("a", "p", &q(&[("tailLines", "10001")]), true).is_err());
    }

    #[test]
    fn lines_are_whole_and_bounded() {
        let mut l = LineSplitter::default();
        assert_eq!(l.push(b"one\ntw"), Some("one".into()));
        assert_eq!(l.push(b"o\r\nthree"), Some("two".into()));
        assert_eq!(l.finish(), Some("three".into()));
        let long = vec![b'x'; MAX_LINE + 10];
        assert_eq!(
            l.push(&long),
            Some(format!("{} […line cut]", "x".repeat(MAX_LINE)))
        );
        assert_eq!(l.push(b"yyy\nnext\n"), Some("next".into()));
    }
}
