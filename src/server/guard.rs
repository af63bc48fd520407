//! A caller's connection with time limits on the caller: a read or write that makes no progress
//! for the limit in force fails with `TimedOut`. While the server waits for the first byte of a
//! request the limit is `Timeouts::keepalive` (nginx's `keepalive_timeout`); within a request's
//! head or body, and while its answer is written, `Timeouts::client` (nginx's
//! `client_header_timeout`, `client_body_timeout`, `send_timeout`). Without them a caller that
//! opens connections and sends nothing, or half a head, held each connection and its task for
//! good.
//!
//! One timer per connection. A wait (a read or write that would block) notes when it began; the
//! next read or write that makes progress ends it. The timer is not moved on for each wait:
//! moving a registered tokio timer cost ~200 instructions, a third of a kept connection's wait
//! for its next request. It fires at the deadline of an earlier wait, and is then moved on to
//! the current wait's (once per limit at most, for a busy connection); it is moved nearer only
//! when a shorter limit applies. A read or write that completes at once, the usual case for an
//! answer, costs a flag. Here: the stream and its limits; what a timeout means for the request
//! is `conn`'s.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::conn::Stream;

/// How long a server waits on its callers, and on its connections when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For the first byte of a request (a new connection's first, or the next on a kept one).
    pub keepalive: Duration,
    /// For each next byte of a request's head or body, and for the caller to take more of its
    /// answer.
    pub client: Duration,
    /// At shutdown, for open requests to finish.
    pub drain: Duration,
}

impl Default for Timeouts {
    /// nginx's defaults for the first two; 30 s to drain.
    fn default() -> Timeouts {
        Timeouts { keepalive: Duration::from_secs(75), client: Duration::from_secs(60), drain: Duration::from_secs(30) }
    }
}

/// A connection's stream under its `Timeouts`.
pub(super) struct Guarded {
    io: Box<dyn Stream>,
    keepalive: Duration,
    client: Duration,
    /// The next wait is for a request's first byte (`keepalive` applies).
    pub(super) between: bool,
    /// Made at the first wait, kept for the connection's life.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the current wait began; `None` while the stream makes progress.
    since: Option<tokio::time::Instant>,
}

impl Guarded {
    pub(super) fn new(io: Box<dyn Stream>, timeouts: Timeouts) -> Guarded {
        Guarded { io, keepalive: timeouts.keepalive, client: timeouts.client, between: true, timer: None, since: None }
    }

    /// The stream was found waiting: the timer armed if it is not, and polled. Ready: the limit
    /// passed with no progress.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let limit = if self.between { self.keepalive } else { self.client };
        let since = *self.since.get_or_insert_with(tokio::time::Instant::now);
        // A limit too far to add is as good as none: a day.
        let due = since.checked_add(limit).unwrap_or_else(|| since + Duration::from_secs(86_400));
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() > due {
                    timer.as_mut().reset(due);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(due))),
        };
        loop {
            std::task::ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= due {
                break;
            }
            // The deadline of an earlier wait: on to this one's.
            timer.as_mut().reset(due);
        }
        self.since = None;
        let what = if self.between { "the next request" } else { "the caller" };
        Poll::Ready(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no progress from {what} in {} s", limit.as_secs_f64()),
        ))
    }

    /// `poll` on the stream, under the limit.
    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut dyn Stream>, &mut Context<'_>) -> Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll(Pin::new(&mut *self.io), cx) {
            Poll::Pending => self.wait(cx).map(Err),
            ready => {
                self.since = None;
                ready
            }
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_read(cx, buf))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.guard(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.guard(cx, |io, cx| io.poll_shutdown(cx))
    }
}
