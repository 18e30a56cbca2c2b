//! Byte and request counters for the wire, and the stream wrapper that feeds them.
//!
//! Both the server and the client wrap every TCP stream in [`CountingStream`] before
//! handing it to hyper, so the counts include request lines, headers and chunk framing,
//! which is what a benchmark or `/metrics` wants to report as "bytes on the wire".
//! Reporting the figures is left to the callers.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncWrite};

/// Counters shared by every connection of a server or a client.
///
/// Plain `Cell`s are enough: the whole HTTP layer runs on one thread, so share it as
/// `Rc<WireStats>`. Several servers and clients may share one instance or have their own.
#[derive(Debug, Default)]
pub struct WireStats {
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    requests: Cell<u64>,
    connections: Cell<u64>,
}

impl WireStats {
    /// A fresh set of counters, all zero, ready to share.
    pub fn new() -> Rc<WireStats> {
        Rc::new(WireStats::default())
    }

    /// Bytes read from sockets, HTTP framing included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.get()
    }

    /// Bytes written to sockets, HTTP framing included.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.get()
    }

    /// Requests handled (server) or sent (client), retries included.
    pub fn requests(&self) -> u64 {
        self.requests.get()
    }

    /// TCP connections accepted (server) or opened (client).
    pub fn connections(&self) -> u64 {
        self.connections.get()
    }

    pub(crate) fn add_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub(crate) fn add_connection(&self) {
        self.connections.set(self.connections.get() + 1);
    }
}

/// When a connection last moved bytes, and how many requests on it are unfinished.
///
/// The server's idle keep-alive timeout reads this: a connection is idle when no request
/// is in flight (streaming responses count until their last chunk is sent) and nothing
/// has crossed the socket for the whole timeout.
#[derive(Debug)]
pub(crate) struct Activity {
    last_active: Cell<Instant>,
    in_flight: Cell<usize>,
}

impl Activity {
    pub(crate) fn new() -> Rc<Activity> {
        Rc::new(Activity {
            last_active: Cell::new(Instant::now()),
            in_flight: Cell::new(0),
        })
    }

    pub(crate) fn touch(&self) {
        self.last_active.set(Instant::now());
    }

    pub(crate) fn last_active(&self) -> Instant {
        self.last_active.get()
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight.get() > 0
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub(crate) fn start_request(self: &Rc<Self>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        self.touch();
        InFlight(Rc::clone(self))
    }
}

/// Keeps its connection out of the idle state while alive; see [`Activity`].
#[derive(Debug)]
pub(crate) struct InFlight(Rc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
        self.0.touch();
    }
}

/// A byte stream that adds what passes through it to a [`WireStats`], and optionally
/// records the time of the last transfer in an [`Activity`].
#[derive(Debug)]
pub(crate) struct CountingStream<S> {
    inner: S,
    stats: Rc<WireStats>,
    activity: Option<Rc<Activity>>,
}

impl<S> CountingStream<S> {
    pub(crate) fn new(inner: S, stats: Rc<WireStats>, activity: Option<Rc<Activity>>) -> Self {
        CountingStream {
            inner,
            stats,
            activity,
        }
    }

    fn record(&self, counter: &Cell<u64>, byte_count: usize) {
        if byte_count > 0 {
            counter.set(counter.get() + byte_count as u64);
            if let Some(activity) = &self.activity {
                activity.touch();
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(byte_count)) = result {
            this.record(&this.stats.bytes_received, byte_count);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(byte_count)) = result {
            this.record(&this.stats.bytes_sent, byte_count);
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(byte_count)) = result {
            this.record(&this.stats.bytes_sent, byte_count);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt, Cursor};

    #[test]
    fn counts_bytes_both_ways_and_marks_activity() {
        let stats = WireStats::new();
        let activity = Activity::new();
        let before = activity.last_active();
        let mut stream = CountingStream::new(
            Cursor::new(b"hello".to_vec()),
            Rc::clone(&stats),
            Some(Rc::clone(&activity)),
        );
        smol::block_on(async {
            let mut buf = [0u8; 3];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(b"0123456").await.unwrap();
        });
        assert_eq!(stats.bytes_received(), 3);
        assert_eq!(stats.bytes_sent(), 7);
        assert!(activity.last_active() >= before);
    }

    #[test]
    fn in_flight_guard_keeps_connection_busy_until_dropped() {
        let activity = Activity::new();
        let first = activity.start_request();
        let second = activity.start_request();
        drop(first);
        assert!(activity.is_busy());
        drop(second);
        assert!(!activity.is_busy());
    }
}
