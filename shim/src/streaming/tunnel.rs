//! A WebSocket whose binary messages carry a byte stream (KEP-4006's SPDY tunnel:
//! `SPDY/3.1+portforward.k8s.io`), turned back into that byte stream so the SPDY session runs
//! on it unchanged. Message boundaries mean nothing; each write becomes one message.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::websocket::MAX_MESSAGE;

const BUFFER: usize = 64 << 10;

const WRITE_STALL: Duration = Duration::from_secs(60);

/// Runs the WebSocket on `io` (already upgraded) and returns the tunnelled byte stream. The
/// pump ends when either side does; a client that never answers the close is cut off.
pub async fn byte_stream<S>(io: S) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        let up = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                    Message::Binary(_) => {}
                    Message::Close(_) => break,
                    // Ping/pong are tungstenite's; text is not part of the tunnel.
                    _ => {}
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(buf[..n].to_vec().into());
                    // A client that stops reading for this long is given up on.
                    match tokio::time::timeout(WRITE_STALL, sink.send(msg)).await {
                        Ok(Ok(())) => {}
                        _ => break,
                    }
                }
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = sink.send(close).await;
            let _ = sink.close().await;
        })
        .await;
        let abort = up.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), up)
            .await
            .is_err()
        {
            abort.abort();
        }
    });
    theirs
}
