//! Server-Sent Events: a streaming response body fed through a bounded channel, and the
//! encoding of one event. Data is sent as one JSON string per event (`data: "…"`), so no
//! payload can contain the line breaks that end an SSE field.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use tokio::sync::mpsc;

use crate::Body;

/// Events buffered between a stream's task and the connection: a slow browser makes the task
/// wait (back-pressure) rather than the server hold an unbounded queue.
const BUFFER: usize = 32;

/// A `text/event-stream` response and the sender its task writes events to. The body ends
/// when the sender is dropped; a closed connection makes `send` fail.
pub fn channel() -> (mpsc::Sender<Bytes>, Response<Body>) {
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFER);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    let h = r.headers_mut();
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    // Proxies (nginx) otherwise buffer the stream.
    h.insert(
        "x-accel-buffering",
        hyper::header::HeaderValue::from_static("no"),
    );
    (tx, r)
}

/// One event named `name` carrying `data` (JSON-encoded).
pub fn event(name: &str, data: &str) -> Bytes {
    let json = serde_json::Value::String(data.to_string()).to_string();
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

/// A comment line: keeps the connection busy so a closed one is noticed.
pub fn ping() -> Bytes {
    Bytes::from_static(b": ping\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_line() {
        let e = event("main", "<p>a\nb\r\nc</p>");
        assert_eq!(&e[..], b"event: main\ndata: \"<p>a\\nb\\r\\nc</p>\"\n\n");
    }
}
