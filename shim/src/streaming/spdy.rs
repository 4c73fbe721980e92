//! SPDY/3.1 framing as Kubernetes' streaming clients speak it (moby/spdystream, used by
//! client-go's `httpstream/spdy`): control frames SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS,
//! PING, GOAWAY, HEADERS and WINDOW_UPDATE, DATA frames, and name/value header blocks compressed
//! with one zlib stream per direction primed with SPDY/3's dictionary.
//!
//! Hostile input is bounded: a frame longer than [`MAX_FRAME`] (data) or [`MAX_CONTROL`]
//! (control) or a header block inflating past [`MAX_HEADER_BLOCK`] is a [`SpdyError`], which
//! the session answers with GOAWAY and a closed connection. Flow control is not enforced in
//! either direction, as spdystream does not (it never sends WINDOW_UPDATE).

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The largest DATA payload accepted (clients write ≤ 32 KiB chunks).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest control frame accepted.
pub const MAX_CONTROL: usize = 64 << 10;
/// The largest inflated header block accepted.
pub const MAX_HEADER_BLOCK: usize = 64 << 10;
/// Header pairs per block.
const MAX_HEADER_PAIRS: usize = 256;

pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes (SPDY/3 §2.6.3).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const STREAM_IN_USE: u32 = 8;
}

/// GOAWAY status codes (SPDY/3 §2.6.6).
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Header names and values, names lowercase.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    /// Settings are read and ignored (no limit a client can set changes what is served here).
    Settings,
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        id: u32,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame type SPDY/3 says to ignore.
    Unknown(u16),
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0} (want 3)")]
    Version(u16),
    #[error("{kind} frame of {len} bytes is larger than the {max} allowed")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block: {0}")]
    HeaderBlock(String),
}

/// The SPDY/3 header compression dictionary (draft 3, §2.6.10.1): every word below as a
/// 4-byte big-endian length and its bytes, then a run of status codes, dates and media types.
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1424);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// Reads frames, inflating header blocks with the connection's one zlib stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    inflate: Decompress,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self {
            io,
            inflate: Decompress::new(true),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of the connection between frames.
    pub async fn read(&mut self) -> Result<Option<Frame>, SpdyError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let control = head[0] & 0x80 != 0;
        let (kind, max) = if control {
            ("control", MAX_CONTROL)
        } else {
            ("DATA", MAX_FRAME)
        };
        if len > max {
            return Err(SpdyError::TooLarge { kind, len, max });
        }
        let mut body = BytesMut::zeroed(len);
        self.io.read_exact(&mut body).await?;
        let body = body.freeze();
        let fin = flags & FLAG_FIN != 0;
        if !control {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                id,
                fin,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let typ = u16::from_be_bytes([head[2], head[3]]);
        let word = |at: usize, what: &'static str| -> Result<u32, SpdyError> {
            body.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(SpdyError::Malformed(what))
        };
        let sid = |at: usize, what| word(at, what).map(|w| w & 0x7fff_ffff);
        Ok(Some(match typ {
            SYN_STREAM => {
                let id = sid(0, "SYN_STREAM")?;
                if body.len() < 10 {
                    return Err(SpdyError::Malformed("SYN_STREAM"));
                }
                let headers = self.headers(&body[10..])?;
                Frame::SynStream { id, fin, headers }
            }
            SYN_REPLY => {
                let id = sid(0, "SYN_REPLY")?;
                let headers = self.headers(&body[4..])?;
                Frame::SynReply { id, fin, headers }
            }
            HEADERS => {
                let id = sid(0, "HEADERS")?;
                let headers = self.headers(&body[4..])?;
                Frame::Headers { id, headers }
            }
            RST_STREAM => Frame::RstStream {
                id: sid(0, "RST_STREAM")?,
                status: word(4, "RST_STREAM")?,
            },
            SETTINGS => Frame::Settings,
            PING => Frame::Ping(word(0, "PING")?),
            GOAWAY => Frame::GoAway {
                last_good: sid(0, "GOAWAY")?,
                // SPDY/2-style GOAWAY without a status is tolerated.
                status: word(4, "GOAWAY").unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                id: sid(0, "WINDOW_UPDATE")?,
                delta: word(4, "WINDOW_UPDATE")? & 0x7fff_ffff,
            },
            other => Frame::Unknown(other),
        }))
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = inflate(&mut self.inflate, block)?;
        parse_header_block(&raw)
    }
}

fn inflate(z: &mut Decompress, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
    let mut out = Vec::with_capacity(1024);
    // Each round either consumes input or fills the buffer; the size cap bounds the rounds.
    for _ in 0..(MAX_HEADER_BLOCK / 1024 + 8) {
        if out.capacity() - out.len() < 512 {
            out.reserve(4096);
        }
        let before = z.total_in();
        match z.decompress_vec(input, &mut out, FlushDecompress::Sync) {
            Ok(_) => {}
            Err(e) if e.needs_dictionary().is_some() => {
                z.set_dictionary(dictionary())
                    .map_err(|e| SpdyError::HeaderBlock(format!("dictionary: {e}")))?;
            }
            Err(e) => return Err(SpdyError::HeaderBlock(e.to_string())),
        }
        input = &input[(z.total_in() - before) as usize..];
        if out.len() > MAX_HEADER_BLOCK {
            return Err(SpdyError::TooLarge {
                kind: "inflated header block",
                len: out.len(),
                max: MAX_HEADER_BLOCK,
            });
        }
        if input.is_empty() && out.capacity() - out.len() > 0 {
            return Ok(out);
        }
    }
    Err(SpdyError::HeaderBlock("inflating made no progress".into()))
}

fn parse_header_block(raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |what: &str| SpdyError::HeaderBlock(what.to_string());
    let n = raw
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| bad("truncated"))?;
    if n > MAX_HEADER_PAIRS {
        return Err(bad("too many header pairs"));
    }
    let mut out = Vec::with_capacity(n);
    let mut at = 4usize;
    let take = |at: &mut usize| -> Result<String, SpdyError> {
        let b = raw.get(*at..*at + 4).ok_or_else(|| bad("truncated"))?;
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        *at += 4;
        let s = raw
            .get(*at..at.saturating_add(len))
            .ok_or_else(|| bad("truncated"))?;
        *at += len;
        String::from_utf8(s.to_vec()).map_err(|_| bad("a name or value is not UTF-8"))
    };
    for _ in 0..n {
        let name = take(&mut at)?.to_ascii_lowercase();
        let value = take(&mut at)?;
        out.push((name, value));
    }
    Ok(out)
}

/// The value of `name` (first of several NUL-separated values).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// Spawns the task that writes a connection's frames in order (flushing whenever the queue
/// runs dry) and shuts the write side down after a GOAWAY, the last frame of a connection, or
/// once every sender is gone.
pub fn spawn_writer<W>(wr: W) -> (mpsc::Sender<Frame>, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Frame>(32);
    let task = tokio::spawn(async move {
        let mut w = FrameWriter::new(wr);
        while let Some(f) = rx.recv().await {
            let last = matches!(f, Frame::GoAway { .. });
            if w.write(&f).await.is_err() {
                break;
            }
            if rx.is_empty() && w.flush().await.is_err() {
                break;
            }
            if last {
                break;
            }
        }
        let _ = w.shutdown().await;
    });
    (tx, task)
}

/// Writes frames, deflating header blocks with the connection's one zlib stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    deflate: Compress,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .expect("a fresh deflate stream takes a dictionary");
        Self { io, deflate }
    }

    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        let control = |typ: u16, flags: u8, body: &[u8]| {
            let mut f = Vec::with_capacity(8 + body.len());
            f.extend_from_slice(&(0x8003u16).to_be_bytes());
            f.extend_from_slice(&typ.to_be_bytes());
            f.push(flags);
            f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            f.extend_from_slice(body);
            f
        };
        let fin = |b: bool| if b { FLAG_FIN } else { 0 };
        match frame {
            Frame::SynStream {
                id,
                fin: f,
                headers,
            } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend_from_slice(&[0; 6]);
                body.extend(self.header_block(headers));
                control(SYN_STREAM, fin(*f), &body)
            }
            Frame::SynReply {
                id,
                fin: f,
                headers,
            } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(SYN_REPLY, fin(*f), &body)
            }
            Frame::Headers { id, headers } => {
                let mut body = id.to_be_bytes().to_vec();
                body.extend(self.header_block(headers));
                control(HEADERS, 0, &body)
            }
            Frame::RstStream { id, status } => control(
                RST_STREAM,
                0,
                &[id.to_be_bytes(), status.to_be_bytes()].concat(),
            ),
            Frame::Settings => control(SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => control(
                GOAWAY,
                0,
                &[last_good.to_be_bytes(), status.to_be_bytes()].concat(),
            ),
            Frame::WindowUpdate { id, delta } => control(
                WINDOW_UPDATE,
                0,
                &[id.to_be_bytes(), delta.to_be_bytes()].concat(),
            ),
            Frame::Data { id, fin: f, data } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                out.push(fin(*f));
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::Unknown(t) => control(*t, 0, &[]),
        }
    }

    pub async fn write(&mut self, frame: &Frame) -> std::io::Result<()> {
        let bytes = self.encode(frame);
        self.io.write_all(&bytes).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.io.shutdown().await
    }

    /// The connection, for writing raw bytes (tests of hostile input).
    pub fn into_inner(self) -> W {
        self.io
    }

    fn header_block(&mut self, headers: &Headers) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            for s in [n.as_bytes(), v.as_bytes()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s);
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            let st = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("deflate of an in-memory buffer");
            input = &input[(self.deflate.total_in() - before) as usize..];
            // A sync flush is complete once input is gone and output did not fill the buffer.
            if input.is_empty() && out.len() < out.capacity() || st == Status::StreamEnd {
                return out;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3_s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[tokio::test]
    async fn frames_round_trip_with_compressed_headers() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let h: Headers = vec![
            ("streamtype".into(), "data".into()),
            ("port".into(), "8080".into()),
            ("requestid".into(), "0".into()),
        ];
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: h.clone(),
            },
            Frame::SynReply {
                id: 3,
                fin: true,
                headers: h.clone(),
            },
            Frame::SynStream {
                id: 5,
                fin: false,
                headers: h,
            },
            Frame::Data {
                id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping(7),
            Frame::RstStream { id: 1, status: 5 },
            Frame::GoAway {
                last_good: 5,
                status: 0,
            },
            Frame::WindowUpdate { id: 1, delta: 10 },
        ];
        for f in &frames {
            w.write(f).await.unwrap();
        }
        for f in &frames {
            assert_eq!(r.read().await.unwrap().as_ref(), Some(f));
        }
    }

    #[tokio::test]
    async fn hostile_frames_are_errors() {
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::new(b);
        // A DATA frame claiming 16 MiB.
        a.write_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert!(matches!(r.read().await, Err(SpdyError::TooLarge { .. })));
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::new(b);
        // SPDY/2.
        a.write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
            .await
            .unwrap();
        assert!(matches!(r.read().await, Err(SpdyError::Version(2))));
        let (mut a, b) = tokio::io::duplex(1 << 16);
        let mut r = FrameReader::new(b);
        // SYN_STREAM whose header block is not zlib.
        let body = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut f = vec![0x80, 3, 0, 1, 0, 0, 0, body.len() as u8];
        f.extend_from_slice(&body);
        a.write_all(&f).await.unwrap();
        assert!(matches!(r.read().await, Err(SpdyError::HeaderBlock(_))));
        // A header block that inflates past the limit.
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let big: Headers = vec![("x".into(), "y".repeat(MAX_HEADER_BLOCK))];
        w.write(&Frame::Headers {
            id: 1,
            headers: big,
        })
        .await
        .unwrap();
        assert!(matches!(r.read().await, Err(SpdyError::TooLarge { .. })));
    }
}
