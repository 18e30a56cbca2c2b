//! Byte and request counters for the wire, and the stream wrapper that feeds them.
//!
//! Both the server and the client wrap every TCP stream in [`CountingStream`] before
//! TLS and hyper see it, so the counts include request lines, headers, chunk framing
//! and, over HTTPS, handshakes and TLS records: what a benchmark or `/metrics` wants to
//! report as "bytes on the wire".
//! Reporting the figures is left to the callers.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncWrite};
use smol::Timer;

/// Counters shared by every connection of a server or a client.
///
/// Plain `Cell`s are enough: the whole HTTP layer runs on one thread, so share it as
/// `Rc<WireStats>`. Several servers and clients may share one instance or have their own.
///
/// It also carries the optional bandwidth caps (`--max-send-rate`, `--max-recv-rate`):
/// every stream that counts into it shares them, so a cap holds for the whole process.
#[derive(Debug, Default)]
pub struct WireStats {
    bytes_received: Cell<u64>,
    bytes_sent: Cell<u64>,
    requests: Cell<u64>,
    connections: Cell<u64>,
    connections_shed: Cell<u64>,
    connections_refused: Cell<u64>,
    panics: Cell<u64>,
    send_limit: Option<RateLimit>,
    receive_limit: Option<RateLimit>,
}

impl WireStats {
    /// A fresh set of counters, all zero, ready to share.
    pub fn new() -> Rc<WireStats> {
        Rc::new(WireStats::default())
    }

    /// Counters whose streams together send and receive at most the given bytes per
    /// second (`None`: no cap).
    pub(crate) fn with_rate_limits(send: Option<u64>, receive: Option<u64>) -> Rc<WireStats> {
        Rc::new(WireStats {
            send_limit: send.filter(|rate| *rate > 0).map(RateLimit::new),
            receive_limit: receive.filter(|rate| *rate > 0).map(RateLimit::new),
            ..WireStats::default()
        })
    }

    /// Bytes read from sockets: HTTP framing and, over HTTPS, TLS records included.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received.get()
    }

    /// Bytes written to sockets: HTTP framing and, over HTTPS, TLS records included.
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

    /// Connections closed to make room for another (server): stalled ones of an
    /// address over its share, or of the busiest address when the server was full.
    pub fn connections_shed(&self) -> u64 {
        self.connections_shed.get()
    }

    /// Connections closed at once because their address held its share, all busy.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.get()
    }

    /// Requests (or connections) that ended in a panic, caught and answered 500.
    pub fn panics(&self) -> u64 {
        self.panics.get()
    }

    pub(crate) fn set_admission_counts(&self, shed: u64, refused: u64) {
        self.connections_shed.set(shed);
        self.connections_refused.set(refused);
    }

    pub(crate) fn add_panic(&self) {
        self.panics.set(self.panics.get() + 1);
    }

    pub(crate) fn add_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    pub(crate) fn add_connection(&self) {
        self.connections.set(self.connections.get() + 1);
    }
}

/// A token bucket shared by every stream of a process: `rate` bytes per second, with a
/// burst of a quarter second (at least 1 KiB). Streams take what is available before a
/// read or write and pay for what moved after it; several streams may overdraw a little,
/// and the debt delays the next transfer.
#[derive(Debug)]
struct RateLimit {
    rate: f64,
    burst: f64,
    available: Cell<f64>,
    refilled: Cell<Instant>,
}

impl RateLimit {
    fn new(rate: u64) -> RateLimit {
        let rate = rate as f64;
        let burst = (rate / 4.0).max(1024.0);
        RateLimit {
            rate,
            burst,
            available: Cell::new(burst),
            refilled: Cell::new(Instant::now()),
        }
    }

    fn refill(&self) -> f64 {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled.get()).as_secs_f64();
        let available = (self.available.get() + elapsed * self.rate).min(self.burst);
        self.available.set(available);
        self.refilled.set(now);
        available
    }

    /// How many of `wanted` bytes may move now, or how long to wait before asking again.
    fn allowance(&self, wanted: usize) -> Result<usize, Duration> {
        let available = self.refill();
        let enough = (wanted as f64).min(self.burst / 2.0).max(1.0);
        if available >= enough {
            Ok((available as usize).min(wanted).max(1))
        } else {
            Err(Duration::from_secs_f64((enough - available) / self.rate))
        }
    }

    fn spend(&self, byte_count: usize) {
        self.available.set(self.available.get() - byte_count as f64);
    }
}

/// Waits out a rate limit: `Ok(n)` when up to `n` bytes may move now.
fn poll_allowance(
    limit: Option<&RateLimit>,
    timer: &mut Option<Timer>,
    cx: &mut Context<'_>,
    wanted: usize,
) -> Poll<usize> {
    let Some(limit) = limit else {
        return Poll::Ready(wanted);
    };
    loop {
        if let Some(waiting) = timer {
            if Pin::new(waiting).poll(cx).is_pending() {
                return Poll::Pending;
            }
            *timer = None;
        }
        match limit.allowance(wanted) {
            Ok(allowed) => return Poll::Ready(allowed),
            Err(wait) => *timer = Some(Timer::after(wait)),
        }
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
    /// Since when the connection has had no request in flight: it is waiting for a
    /// request head (from accept, or from the end of the last response).
    waiting_since: Cell<Instant>,
    /// A request's body is being read: the request is in flight, but it is the
    /// client, not the node, that has the next move.
    reading_body: Cell<bool>,
    /// Its request is a long-poll waiting for news, or was until it was answered and no
    /// request has started since: counted apart from the request connections (see
    /// `admission`).
    parked: Cell<bool>,
}

impl Activity {
    pub(crate) fn new() -> Rc<Activity> {
        let now = Instant::now();
        Rc::new(Activity {
            last_active: Cell::new(now),
            in_flight: Cell::new(0),
            waiting_since: Cell::new(now),
            reading_body: Cell::new(false),
            parked: Cell::new(false),
        })
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.parked.get()
    }

    pub(crate) fn set_parked(&self, parked: bool) {
        self.parked.set(parked);
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

    /// When the connection last started waiting for a request head; meaningful while
    /// it is not busy.
    pub(crate) fn waiting_since(&self) -> Instant {
        self.waiting_since.get()
    }

    /// Since when the connection has been waiting on its client, if it is: for a
    /// request head since the end of the last request, or for more of a request body
    /// since the last byte arrived. `None` while the node is working on a request or
    /// sending its answer. The connection table sheds the oldest of these first.
    pub(crate) fn stalled_since(&self) -> Option<Instant> {
        if !self.is_busy() {
            Some(self.waiting_since.get())
        } else if self.reading_body.get() {
            Some(self.last_active.get())
        } else {
            None
        }
    }

    /// Whether a request body is being read (see [`Activity::stalled_since`]).
    pub(crate) fn is_reading_body(&self) -> bool {
        self.reading_body.get()
    }

    /// Marks a request in flight until the returned guard is dropped.
    pub(crate) fn start_request(self: &Rc<Self>) -> InFlight {
        // A long-poll parked on this connection was answered: the new request counts
        // as a request until it parks in turn.
        self.parked.set(false);
        self.in_flight.set(self.in_flight.get() + 1);
        self.touch();
        InFlight(Rc::clone(self))
    }
}

/// Keeps its connection out of the idle state while alive; see [`Activity`].
#[derive(Debug)]
pub(crate) struct InFlight(Rc<Activity>);

impl InFlight {
    /// Marks the request's body as being read until the returned guard is dropped.
    pub(crate) fn reading_body(&self) -> ReadingBody {
        self.0.reading_body.set(true);
        ReadingBody(Rc::clone(&self.0))
    }
}

/// Marks a body being read while alive; see [`InFlight::reading_body`].
#[derive(Debug)]
pub(crate) struct ReadingBody(Rc<Activity>);

impl Drop for ReadingBody {
    fn drop(&mut self) {
        self.0.reading_body.set(false);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let in_flight = self.0.in_flight.get() - 1;
        self.0.in_flight.set(in_flight);
        self.0.touch();
        if in_flight == 0 {
            self.0.waiting_since.set(Instant::now());
        }
    }
}

/// A byte stream that adds what passes through it to a [`WireStats`] and holds it to
/// the bandwidth caps, and optionally records the time of the last transfer in an
/// [`Activity`]. Client and server both put it right on the TCP stream, below TLS, so
/// both count the bytes on the wire, handshakes and TLS records included (issue 14).
#[derive(Debug)]
pub struct CountingStream<S> {
    inner: S,
    stats: Rc<WireStats>,
    activity: Option<Rc<Activity>>,
    /// Whether the bytes are added to `stats` (off for a stream above one that counts).
    counted: bool,
    /// Whether the process's bandwidth caps apply to this stream.
    capped: bool,
    read_timer: Option<Timer>,
    write_timer: Option<Timer>,
}

impl<S> CountingStream<S> {
    pub(crate) fn new(inner: S, stats: Rc<WireStats>, activity: Option<Rc<Activity>>) -> Self {
        CountingStream {
            inner,
            stats,
            activity,
            counted: true,
            capped: true,
            read_timer: None,
            write_timer: None,
        }
    }

    /// Records activity only: above TLS, over a stream that already counts and caps
    /// the wire bytes, it tells when the HTTP exchange last moved (a handshake is not
    /// activity of the exchange).
    pub(crate) fn activity_only(inner: S, stats: Rc<WireStats>, activity: Rc<Activity>) -> Self {
        CountingStream {
            counted: false,
            capped: false,
            ..CountingStream::new(inner, stats, Some(activity))
        }
    }

    /// The stream it wraps.
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Counts the bytes but leaves the bandwidth caps out: for callers on this machine,
    /// whose bytes never cross the metered link the caps protect.
    pub(crate) fn uncapped(mut self) -> Self {
        self.capped = false;
        self
    }

    fn record(&self, counter: &Cell<u64>, byte_count: usize) {
        if byte_count > 0 {
            if self.counted {
                counter.set(counter.get() + byte_count as u64);
            }
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
        let stats = Rc::clone(&this.stats);
        let limit = stats.receive_limit.as_ref().filter(|_| this.capped);
        let allowed = match poll_allowance(limit, &mut this.read_timer, cx, buf.len()) {
            Poll::Ready(allowed) => allowed,
            Poll::Pending => return Poll::Pending,
        };
        let result = Pin::new(&mut this.inner).poll_read(cx, &mut buf[..allowed]);
        if let Poll::Ready(Ok(byte_count)) = result {
            this.record(&stats.bytes_received, byte_count);
            if let Some(limit) = limit {
                limit.spend(byte_count);
            }
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
        let stats = Rc::clone(&this.stats);
        let limit = stats.send_limit.as_ref().filter(|_| this.capped);
        let allowed = match poll_allowance(limit, &mut this.write_timer, cx, buf.len()) {
            Poll::Ready(allowed) => allowed,
            Poll::Pending => return Poll::Pending,
        };
        let result = Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed]);
        if let Poll::Ready(Ok(byte_count)) = result {
            this.record(&stats.bytes_sent, byte_count);
            if let Some(limit) = limit {
                limit.spend(byte_count);
            }
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.stats.send_limit.is_some() && self.capped {
            // Capped: one buffer at a time, through the limit in `poll_write`.
            let first = bufs
                .iter()
                .find(|buf| !buf.is_empty())
                .map_or(&[][..], |buf| &**buf);
            return self.poll_write(cx, first);
        }
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
    fn rate_limits_hold_the_byte_rate() {
        let stats = WireStats::with_rate_limits(Some(20_000), None);
        let mut stream = CountingStream::new(Cursor::new(Vec::new()), Rc::clone(&stats), None);
        let started = Instant::now();
        smol::block_on(async {
            stream.write_all(&[7u8; 15_000]).await.unwrap();
        });
        // A 5,000-byte burst, then 10,000 bytes at 20,000 bytes/s.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(stats.bytes_sent(), 15_000);
    }

    #[test]
    fn an_uncapped_stream_is_counted_but_not_limited() {
        let stats = WireStats::with_rate_limits(Some(1_000), Some(1_000));
        let mut stream =
            CountingStream::new(Cursor::new(vec![1u8; 50_000]), Rc::clone(&stats), None).uncapped();
        let started = Instant::now();
        smol::block_on(async {
            let mut buf = vec![0u8; 50_000];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
        });
        // Capped at 1,000 bytes/s both ways this would take over a minute.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (stats.bytes_received(), stats.bytes_sent()),
            (50_000, 50_000)
        );
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
