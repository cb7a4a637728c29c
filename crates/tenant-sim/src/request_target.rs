//! Lenient request targets: bytes in an HTTP/1.1 request line that the `http` crate
//! refuses (`"`, `<`, `>`, control characters, NUL, non-ASCII, …) are percent-encoded
//! before hyper parses the line.
//!
//! Graph takes such requests: its documented `$search` syntax is
//! `$search="displayName:foo"` with raw quotes, as curl sends it, and a malformed
//! `$filter=startsWith(displayName,"a")` is answered by Graph's own 400 with its error
//! body ("Invalid filter clause", microsoftgraph/microsoft-graph-docs-contrib#2890).
//! hyper instead answers an unparsable target with a bare 400 before any handler runs,
//! so without this every such query got a 400 without Graph's error JSON. Encoding the
//! bytes keeps their meaning (the handlers decode the path and the query) and lets the
//! query parser answer in Graph's shape.
//!
//! The stream follows HTTP/1.1 framing (request line, header lines, a `Content-Length`
//! or chunked body) so that every request line of a keep-alive connection is rewritten
//! and body bytes never are. Anything it does not recognise (the HTTP/2 preface,
//! another protocol version, a malformed head, a line over [`MAX_LINE`]) switches the
//! connection to pass-through, and hyper answers as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request or header line rewritten; longer ones pass through unchanged. hyper
/// itself answers a target over 64 KiB with 414 and a head over about 400 KiB with 431,
/// before any handler, as http.sys answers oversize requests before Graph sees them.
const MAX_LINE: usize = 512 * 1024;

/// An [`Accept`] that wraps the inner acceptor's stream (TCP or TLS) in
/// [`LenientTargets`].
#[derive(Debug, Clone)]
pub(crate) struct LenientAcceptor<A> {
    inner: A,
}

impl<A> LenientAcceptor<A> {
    pub(crate) fn new(inner: A) -> Self {
        Self { inner }
    }
}

impl<A, I, S> Accept<I, S> for LenientAcceptor<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = LenientTargets<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = inner.await?;
            Ok((LenientTargets::new(stream), service))
        })
    }
}

/// Where the reader is in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    RequestLine,
    Headers { length: Option<u64>, chunked: bool },
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    PassThrough,
}

/// A stream whose read side percent-encodes the bytes of request targets that `http`
/// refuses; writes pass through.
#[derive(Debug)]
pub(crate) struct LenientTargets<T> {
    inner: T,
    state: State,
    /// Read from `inner`, not yet processed (an incomplete line).
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no `\n` (a long line arriving in small
    /// pieces is scanned once, not once per piece).
    scanned: usize,
    /// Processed, not yet handed to the reader.
    ready: Vec<u8>,
    ready_at: usize,
    eof: bool,
}

impl<T> LenientTargets<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            state: State::RequestLine,
            pending: Vec::new(),
            scanned: 0,
            ready: Vec::new(),
            ready_at: 0,
            eof: false,
        }
    }

    /// Moves what can be decided from `pending` to `ready`.
    fn process(&mut self) {
        loop {
            match self.state {
                State::PassThrough => {
                    self.scanned = 0;
                    self.ready.append(&mut self.pending);
                    return;
                }
                State::Body(left) | State::ChunkData(left) => {
                    if self.pending.is_empty() {
                        return;
                    }
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.pending.len());
                    self.ready.extend(self.pending.drain(..take));
                    let left = left - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::RequestLine,
                        (State::Body(_), n) => State::Body(n),
                        (_, 0) => State::ChunkDataEnd,
                        (_, n) => State::ChunkData(n),
                    };
                }
                _ => {
                    let found = self.pending[self.scanned..]
                        .iter()
                        .position(|b| *b == b'\n');
                    let Some(end) = found.map(|i| i + self.scanned) else {
                        self.scanned = self.pending.len();
                        if self.pending.len() > MAX_LINE || self.eof {
                            self.state = State::PassThrough;
                            continue;
                        }
                        return;
                    };
                    self.scanned = 0;
                    let line: Vec<u8> = self.pending.drain(..=end).collect();
                    self.line(&line);
                }
            }
        }
    }

    /// One complete line (with its `\n`) in a line state.
    fn line(&mut self, line: &[u8]) {
        let text = line
            .strip_suffix(b"\n")
            .map_or(line, |l| l.strip_suffix(b"\r").unwrap_or(l));
        if self.state == State::RequestLine && !text.is_empty() {
            if let Some(rewritten) = rewrite_request_line(text) {
                self.ready.extend_from_slice(&rewritten);
                self.ready.extend_from_slice(b"\r\n");
                self.state = State::Headers {
                    length: None,
                    chunked: false,
                };
            } else {
                self.ready.extend_from_slice(line);
                self.state = State::PassThrough;
            }
            return;
        }
        self.state = match self.state {
            // RFC 9112 §2.2: empty lines before a request line are ignored.
            State::RequestLine => State::RequestLine,
            State::Headers { length, chunked } if text.is_empty() => match (chunked, length) {
                (true, _) => State::ChunkSize,
                (false, Some(n)) if n > 0 => State::Body(n),
                _ => State::RequestLine,
            },
            State::Headers { length, chunked } => header_framing(text, length, chunked),
            State::ChunkSize => match chunk_size(text) {
                Some(0) => State::Trailers,
                Some(n) => State::ChunkData(n),
                None => State::PassThrough,
            },
            State::ChunkDataEnd if text.is_empty() => State::ChunkSize,
            State::Trailers if text.is_empty() => State::RequestLine,
            State::Trailers => State::Trailers,
            _ => State::PassThrough,
        };
        self.ready.extend_from_slice(line);
    }
}

/// The framing a header line implies; a head hyper would refuse passes through.
fn header_framing(text: &[u8], length: Option<u64>, chunked: bool) -> State {
    let Some(colon) = text.iter().position(|b| *b == b':') else {
        return State::PassThrough;
    };
    let name = &text[..colon];
    let value = String::from_utf8_lossy(&text[colon + 1..]);
    let value = value.trim();
    if name.eq_ignore_ascii_case(b"content-length") {
        match (value.parse::<u64>(), length) {
            (Ok(n), None) => State::Headers {
                length: Some(n),
                chunked,
            },
            (Ok(n), Some(m)) if n == m => State::Headers { length, chunked },
            _ => State::PassThrough,
        }
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        let last = value.rsplit(',').next().map(str::trim).unwrap_or_default();
        if last.eq_ignore_ascii_case("chunked") {
            State::Headers {
                length,
                chunked: true,
            }
        } else {
            State::PassThrough
        }
    } else {
        State::Headers { length, chunked }
    }
}

/// The size of a chunk-size line (`1a;ext=1`), `None` if it is not one.
fn chunk_size(text: &[u8]) -> Option<u64> {
    let digits = text.split(|b| *b == b';').next()?;
    let digits = std::str::from_utf8(digits).ok()?.trim();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// `METHOD SP target SP HTTP/1.x` with the target's refused bytes percent-encoded
/// (spaces inside the target too); `None` for a line that is not an HTTP/1 request line.
pub(crate) fn rewrite_request_line(line: &[u8]) -> Option<Vec<u8>> {
    let version_at = line.len().checked_sub(b" HTTP/1.1".len())?;
    let version = &line[version_at..];
    if version != b" HTTP/1.1" && version != b" HTTP/1.0" {
        return None;
    }
    let method_end = line.iter().position(|b| *b == b' ')?;
    let method = &line[..method_end];
    if method.is_empty() || !method.iter().all(u8::is_ascii_alphabetic) || method_end >= version_at
    {
        return None;
    }
    let target = &line[method_end + 1..version_at];
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(method);
    out.push(b' ');
    for &byte in target {
        if kept(byte) {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("%{byte:02X}").as_bytes());
        }
    }
    out.extend_from_slice(version);
    Some(out)
}

/// Bytes a request target keeps as they are: RFC 3986 unreserved and reserved characters
/// (except `#`, `[` and `]`, which a request target never carries literally) and `%`.
fn kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

impl<T: AsyncRead + Unpin> AsyncRead for LenientTargets<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_at);
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.state == State::PassThrough && this.pending.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if this.eof {
                // What is left of an incomplete line goes as it is; then end of stream.
                this.state = State::PassThrough;
                this.scanned = 0;
                this.ready.append(&mut this.pending);
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0_u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                    } else {
                        this.pending.extend_from_slice(read.filled());
                    }
                    this.process();
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for LenientTargets<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// Feeds `input` through the stream in pieces of `step` bytes.
    async fn through(input: &[u8], step: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(step.max(1));
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(step.max(1)) {
                if client.write_all(piece).await.is_err() {
                    return;
                }
            }
            let _ = client.shutdown().await;
        });
        let mut out = Vec::new();
        let mut stream = LenientTargets::new(server);
        stream
            .read_to_end(&mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        writer.await.unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[tokio::test]
    async fn refused_target_bytes_are_encoded_in_every_request_line_and_never_in_bodies() {
        let input = b"GET /v1.0/users?$search=\"displayName:a b\"&x=<\x00\xc3\xa9> HTTP/1.1\r\nHost: h\r\n\r\n\
POST /v1.0/$batch?q=\"1\" HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"a\":\"\r\n\"}\
POST /x?\"c\" HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\n\"\"\"\"\r\n0\r\nT: \"\r\n\r\n\
\r\nGET /ok?a='b'(c),d HTTP/1.0\r\n\r\n";
        let expected = b"GET /v1.0/users?$search=%22displayName:a%20b%22&x=%3C%00%C3%A9%3E HTTP/1.1\r\nHost: h\r\n\r\n\
POST /v1.0/$batch?q=%221%22 HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"a\":\"\r\n\"}\
POST /x?%22c%22 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;e=1\r\n\"\"\"\"\r\n0\r\nT: \"\r\n\r\n\
\r\nGET /ok?a='b'(c),d HTTP/1.0\r\n\r\n";
        for step in [1, 3, 7, 64, 4096] {
            let out = through(input, step).await;
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "in pieces of {step}"
            );
        }
    }

    #[tokio::test]
    async fn other_protocols_and_malformed_heads_pass_through_unchanged() {
        for input in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\"\x00"[..],
            b"GET /a\"b HTTP/2\r\n\r\n",
            b"GET /a\"b\r\n\r\n",
            b"GET /a HTTP/1.1\r\nContent-Length: x\r\n\r\nGET /\"",
            b"GET /a HTTP/1.1\r\nNo colon\r\n\r\nGET /\"",
            b"GET /incomplete\"",
        ] {
            assert_eq!(through(input, 5).await, input, "{input:?}");
        }
    }

    #[tokio::test]
    async fn an_overlong_line_passes_through_without_being_held() {
        let mut input = b"GET /?".to_vec();
        input.resize(MAX_LINE + 100, b'"');
        let out = through(&input, 8192).await;
        assert_eq!(out, input);
    }
}
