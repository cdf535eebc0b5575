//! How long an HTTP/1.1 connection may take over a request's head, apart from how long it may
//! sit idle between requests.
//!
//! hyper has one timer for both (`header_read_timeout` runs from the end of an answer to the
//! end of the next request's head), and the two must differ. A connection the webhook closes
//! while idle can cross a review the API server has just sent on it: the review fails with
//! `EOF` and, fail closed, the Pod is refused. The API server calls a webhook behind a Service
//! over HTTP/1.1 and keeps idle connections 90 s (Go's `IdleConnTimeout`), so hyper's timer
//! is set past that (`--idle-timeout`, 120 s): the API server is always the one to close. A
//! client that starts a request must still finish its head within `--request-timeout`: that
//! is this wrapper, around the connection's decrypted stream. The router says when a head has
//! been read ([`HeadState::head_read`]) and when the answer is ready ([`HeadState::answered`]);
//! the first bytes read after an answer (or on a new connection) start the deadline.
//!
//! Bytes a client sends ahead (pipelining: the next head while the current request is still
//! being answered) start no deadline; hyper's idle timer still bounds them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Whether a connection waits for a request's head; shared by its stream and its router.
#[derive(Debug)]
pub struct HeadState {
    awaiting_head: AtomicBool,
    /// Heads read so far: a deadline armed for an earlier head is over, even when the stream
    /// was not read between that head and its answer.
    heads_read: AtomicU64,
    /// HTTP/2 has no heads to time this way (its streams interleave, and an idle connection
    /// pings): set, it never arms a deadline.
    http2: AtomicBool,
}

impl HeadState {
    /// A new connection: its first bytes are a request's head.
    pub fn new() -> Arc<Self> {
        Arc::new(HeadState {
            awaiting_head: AtomicBool::new(true),
            heads_read: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        })
    }

    /// The connection speaks HTTP/2 (said by ALPN, or by its first request): no deadlines.
    pub fn http2(&self) {
        self.http2.store(true, Ordering::Release);
        self.awaiting_head.store(false, Ordering::Release);
    }

    /// The head has been read (the router has the request).
    pub fn head_read(&self) {
        self.heads_read.fetch_add(1, Ordering::AcqRel);
        self.awaiting_head.store(false, Ordering::Release);
    }

    /// The answer is ready: the next bytes start the next request's head.
    pub fn answered(&self) {
        if !self.is_http2() {
            self.awaiting_head.store(true, Ordering::Release);
        }
    }

    /// Whether the connection speaks HTTP/2 (see [`HeadState::http2`]).
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    fn awaiting_head(&self) -> bool {
        self.awaiting_head.load(Ordering::Acquire)
    }

    fn heads_read(&self) -> u64 {
        self.heads_read.load(Ordering::Acquire)
    }
}

/// A stream whose reads fail once a request's head has taken longer than `timeout` from its
/// first byte; writes pass through.
pub struct HeadDeadline<S> {
    inner: S,
    state: Arc<HeadState>,
    timeout: Duration,
    /// While a head is being read: how many heads had been read when its deadline was armed.
    armed_after: Option<u64>,
    /// The deadline's timer, made once per connection and reset for each head. Made and
    /// dropped for each head it cost 1.8 µs per review over HTTP/1.1 at 8 connections (24.2
    /// against 22.4 µs without this wrapper, `e2e/bench/deployed.sh`, 3 rounds); reset, 0.3 µs
    /// (22.1 against 21.8, 5 rounds), within the rounds' spread.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> HeadDeadline<S> {
    pub fn new(inner: S, state: Arc<HeadState>, timeout: Duration) -> Self {
        HeadDeadline {
            inner,
            state,
            timeout,
            armed_after: None,
            timer: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let heads_read = this.state.heads_read();
        if this.armed_after.is_some_and(|armed| armed != heads_read) {
            this.armed_after = None;
        }
        if this.armed_after.is_some()
            && let Some(timer) = this.timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head did not arrive within the request timeout",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && this.armed_after.is_none()
            && this.state.awaiting_head()
        {
            let deadline = tokio::time::Instant::now() + this.timeout;
            let timer = match this.timer.as_mut() {
                Some(timer) => {
                    timer.as_mut().reset(deadline);
                    timer
                }
                None => this
                    .timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            // Polled at once so that the deadline wakes the connection even if no more
            // bytes ever come. (A timer left running after its head was read wakes the
            // connection once for nothing, unless the next head resets it first.)
            let _ = timer.as_mut().poll(cx);
            this.armed_after = Some(heads_read);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A client and the server's side of one connection, with its head state.
    struct Connection {
        client: DuplexStream,
        server: HeadDeadline<DuplexStream>,
        state: Arc<HeadState>,
    }

    impl Connection {
        fn new() -> Self {
            let (client, server) = tokio::io::duplex(64);
            let state = HeadState::new();
            let server = HeadDeadline::new(server, Arc::clone(&state), TIMEOUT);
            Connection {
                client,
                server,
                state,
            }
        }

        /// The client sends `bytes`; the server reads them all.
        async fn send(&mut self, bytes: &[u8]) {
            self.client.write_all(bytes).await.unwrap();
            let mut buf = [0u8; 64];
            assert_eq!(self.server.read(&mut buf).await.unwrap(), bytes.len());
        }

        /// The server's next read waits three timeouts without failing.
        async fn still_waits(&mut self, why: &str) {
            let mut buf = [0u8; 64];
            let read = tokio::time::timeout(TIMEOUT * 3, self.server.read(&mut buf)).await;
            assert!(read.is_err(), "{why}: {read:?}");
        }

        /// The server's next read fails: the head took too long. How long it waited.
        async fn times_out(&mut self) -> Duration {
            let started = tokio::time::Instant::now();
            let mut buf = [0u8; 64];
            let error = self.server.read(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            started.elapsed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_must_arrive_within_the_timeout_of_its_first_byte() {
        let mut c = Connection::new();
        c.still_waits("no head has begun").await;
        // The first bytes start the deadline; more bytes do not extend it.
        c.send(b"POST /validate").await;
        tokio::time::sleep(TIMEOUT / 2).await;
        c.send(b"/pods HTTP/1.1\r\n").await;
        assert_eq!(c.times_out().await, TIMEOUT / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_head_stops_the_deadline_and_an_answer_rearms_it() {
        let mut c = Connection::new();
        c.send(b"GET / HTTP/1.1\r\n\r\n").await;
        c.state.head_read();
        // The request is being answered (its body read, a decision made): no deadline, and
        // bytes sent ahead meanwhile start none.
        c.send(b"G").await;
        c.still_waits("no deadline while answering").await;
        // Answered, then idle for long: no deadline until the next head begins.
        c.state.answered();
        c.server
            .write_all(b"HTTP/1.1 200 OK\r\n\r\n")
            .await
            .unwrap();
        c.still_waits("idle is not a slow head").await;
        c.send(b"GET").await;
        assert_eq!(c.times_out().await, TIMEOUT);
        let mut answer = [0u8; 19];
        c.client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_right_after_its_head_leaves_no_deadline_behind() {
        let mut c = Connection::new();
        c.send(b"GET / HTTP/1.1\r\n\r\n").await;
        // Read and answered at once, the stream not read in between (a request without a
        // body): the next wait is idle, not that head's deadline.
        c.state.head_read();
        c.state.answered();
        c.still_waits("idle is not a slow head").await;
        c.send(b"GET").await;
        assert_eq!(c.times_out().await, TIMEOUT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_never_arms_a_deadline() {
        let mut c = Connection::new();
        // Its first request says HTTP/2 (no ALPN): its answers re-arm nothing, and frames
        // between requests (a ping) are not a slow head.
        c.send(b"PRI * HTTP/2.0").await;
        c.state.head_read();
        c.state.http2();
        c.state.answered();
        c.send(b"PING").await;
        c.still_waits("no deadline on HTTP/2").await;
    }
}
