//! Bodies on the server side of hyper: reading a request body under a size cap and a
//! deadline, and the response body type hyper writes from. The plain types handlers see
//! live in `message`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::{Stream, future};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use smol::Timer;
use smol::channel::Receiver;

use super::message::BodyStream;
use super::wire::InFlight;

/// How many bytes past the limit the server still reads (and discards) before
/// answering 413.
///
/// Closing a socket that holds unread data makes the kernel send a reset, and a reset can
/// destroy the 413 before the client reads it: the client then sees "connection reset"
/// instead of the reason. Reading the rest of a moderately oversized body lets the
/// answer arrive (and even keeps the connection usable); an upload far beyond this is
/// cut off, and that client gets the reset it asked for.
const LINGER_DRAIN_BYTES: usize = 1024 * 1024;

/// How reading a request body ended.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    Complete(Vec<u8>),
    /// The body is over the limit. `drained` says whether it was read to its end, so the
    /// connection can carry another request.
    TooLarge {
        drained: bool,
    },
    TimedOut,
    /// No part of the body arrived for the progress timeout.
    Stalled,
    /// The client broke off or sent bad chunk framing.
    Failed(hyper::Error),
}

/// Reads a whole request body of at most `limit` bytes, giving up at `deadline`, or
/// when nothing arrives for `progress_timeout`.
pub(crate) async fn read_body(
    incoming: &mut Incoming,
    limit: usize,
    deadline: Instant,
    progress_timeout: Duration,
) -> ReadOutcome {
    let declared = incoming.size_hint().exact().map(|length| length as usize);
    if declared.is_some_and(|length| length > limit.saturating_add(LINGER_DRAIN_BYTES)) {
        return ReadOutcome::TooLarge { drained: false };
    }
    let mut too_large = declared.is_some_and(|length| length > limit);
    let mut body = Vec::with_capacity(if too_large { 0 } else { declared.unwrap_or(0) });
    let mut discarded = 0usize;
    loop {
        let stalled_at = Instant::now() + progress_timeout;
        let give_up = deadline.min(stalled_at);
        let next = future::or(async { Some(incoming.frame().await) }, async {
            Timer::at(give_up).await;
            None
        })
        .await;
        let frame = match next {
            None if too_large => return ReadOutcome::TooLarge { drained: false },
            None if give_up < deadline => return ReadOutcome::Stalled,
            None => return ReadOutcome::TimedOut,
            Some(None) => break,
            Some(Some(Err(_))) if too_large => return ReadOutcome::TooLarge { drained: false },
            Some(Some(Err(error))) => return ReadOutcome::Failed(error),
            Some(Some(Ok(frame))) => frame,
        };
        // Trailers carry nothing we use.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if too_large {
            discarded += data.len();
            if discarded > LINGER_DRAIN_BYTES {
                return ReadOutcome::TooLarge { drained: false };
            }
        } else if body.len() + data.len() > limit {
            too_large = true;
            discarded = body.len() + data.len() - limit;
            body = Vec::new();
        } else {
            body.extend_from_slice(&data);
        }
    }
    if too_large {
        ReadOutcome::TooLarge { drained: true }
    } else {
        ReadOutcome::Complete(body)
    }
}

/// The body hyper writes a response from.
///
/// It carries the connection's [`InFlight`] guard, so the connection counts as busy
/// (not idle) until hyper has finished with the body, which for a stream is when the
/// producer hangs up or the client goes away.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    kind: Kind,
    _in_flight: InFlight,
}

#[derive(Debug)]
enum Kind {
    Full(Option<Bytes>),
    Stream(Pin<Box<Receiver<Vec<u8>>>>),
}

impl ResponseBody {
    /// A whole body; hyper writes the bytes from where they are, so a body shared with
    /// other responses is not copied.
    pub(crate) fn bytes(bytes: Bytes, in_flight: InFlight) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            _in_flight: in_flight,
        }
    }

    /// A body sent chunk by chunk as they arrive.
    pub(crate) fn stream(stream: BodyStream, in_flight: InFlight) -> ResponseBody {
        ResponseBody {
            kind: Kind::Stream(Box::pin(stream.receiver)),
            _in_flight: in_flight,
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Kind::Stream(receiver) => receiver
                .as_mut()
                .poll_next(cx)
                .map(|chunk| chunk.map(|chunk| Ok(Frame::data(Bytes::from(chunk))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}
