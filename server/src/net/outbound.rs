//! A connection's outbound queue: [`Outbound`] is the handle everyone who talks to the client
//! pushes into (its own session, the rooms' broadcasts, the store's writer with acks);
//! [`OutboundRx`] is the connection writer's end.
//!
//! Pushing never blocks or awaits: presence and the store's writer push while holding locks.
//! Two kinds of frames share one FIFO queue (so order is kept):
//!
//! - **live** room messages. Once `capacity` frames (or `byte_capacity` bytes: a few large
//!   messages weigh as much as many small ones) are queued, further live messages are
//!   dropped and the room is marked as lagged; the writer then tells the client
//!   `lagged {room, from_seq}` and the client catches up from history (`resume`). One slow
//!   phone never stalls the room, and it loses nothing for good.
//! - **control** frames: replies, acks, echoes. Never dropped; a client that lets
//!   `CONTROL_FACTOR × capacity` frames pile up is closed as too slow (4001).
//!
//! A client that reads nothing at all is dropped at the writer's write deadline.
//!
//! The frames themselves wait in a `VecDeque` behind a mutex, and an `AtomicWaker` wakes the
//! writer for everything it waits on here (a frame, a lagged room, an overflow, closing): one
//! registration per wait, lock-free, where a `Notify` per signal took a mutex to register each
//! and another to wake (a broadcast wakes a thousand writers). Not a tokio channel: an idle
//! connection holds its queue for hours, and a tokio channel allocates its first block of 32
//! slots (~1.5 KiB) when it is made, where an empty `VecDeque` holds nothing until a frame comes
//! (measured with `hubbub-bench idle`). The bounds
//! are the `queued` counts above, checked before each push: no bounded queue's `try_send` can
//! tell "drop this live message" from "this control frame must not be dropped".

use super::{
    deflate::{self, Agreed, Prepared},
    halves::{ReaderWake, Wakes},
};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use hubbub_shared::{ServerMsg, encode};
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::Poll,
};
use tokio::sync::Notify;
use tungstenite::{Message, Utf8Bytes};

/// An emptied queue with room for more than this many frames (a burst: a resume's catch-up, a
/// busy moment) gives the room back down to [`KEPT_SLOTS`]; a smaller one keeps its room, so a
/// connection that gets a few frames at a time does not allocate for each (measured: shrinking
/// at every drain cost `latency-100k` a third more CPU per delivery). Each slot is a [`Queued`],
/// 40 bytes.
const BURST_SLOTS: usize = 64;
const KEPT_SLOTS: usize = 16;
/// A frame of several messages (a writer's coalesced batch, a room's messages of one commit)
/// grows to about this size before the next one starts.
pub(crate) const MAX_COALESCED_BYTES: usize = 64 * 1024;

/// Where a sequence of texts joined into array frames is cut: a run grows to about
/// [`MAX_COALESCED_BYTES`] (a longer text alone is a run of its own). The one rule for a
/// writer's coalesced batch and for a room's messages of one commit.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    /// The current run's bytes, a separator each (0: no run yet).
    bytes: usize,
}

impl Runs {
    /// Counts the next text (of `len` bytes) and says whether it starts a new run, the current
    /// one being full.
    pub(crate) fn starts_new(&mut self, len: usize) -> bool {
        let new = self.bytes > 0 && self.bytes + len > MAX_COALESCED_BYTES;
        if new {
            self.bytes = 0;
        }
        self.bytes += len + 1;
        new
    }
}
/// Control frames may exceed the live capacity by this factor before the client is closed.
const CONTROL_FACTOR: usize = 4;
/// ... and the live byte capacity by this one: a `history` reply to a resume is one control
/// frame of up to `--resume-gap-limit` messages (megabytes), which a reader that does read must
/// be able to receive.
const CONTROL_BYTES_FACTOR: usize = 16;

/// What waits in a connection's queue: a message, or one deflated for permessage-deflate. Not
/// tungstenite's `Message`, whose raw-frame variant makes it 56 bytes: this is 40, and an idle
/// connection keeps its queue's few slots (`hubbub-bench idle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Queued {
    Text(Utf8Bytes),
    Binary(Bytes),
    Ping,
    /// A message deflated under permessage-deflate: the payload of a frame with RSV1 set.
    Deflated {
        payload: Bytes,
        binary: bool,
    },
}

impl Queued {
    /// Its payload's size, for the byte bounds.
    pub(crate) fn len(&self) -> usize {
        match self {
            Queued::Text(t) => t.len(),
            Queued::Binary(b) | Queued::Deflated { payload: b, .. } => b.len(),
            Queued::Ping => 0,
        }
    }

    /// The text, if it is an uncompressed one (for tests that read what was queued).
    #[cfg(test)]
    pub(crate) fn to_text(&self) -> Option<&str> {
        match self {
            Queued::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The message tungstenite writes.
    pub(crate) fn into_message(self) -> Message {
        match self {
            Queued::Text(t) => Message::Text(t),
            Queued::Binary(b) => Message::Binary(b),
            Queued::Ping => Message::Ping(Bytes::new()),
            Queued::Deflated { payload, binary } => Message::Frame(deflate::frame(payload, binary)),
        }
    }
}

/// State shared by a connection's pushers and its writer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The frames, oldest first.
    frames: Mutex<VecDeque<Queued>>,
    /// The writer's task, woken for a frame, a lagged room, an overflow or closing (each with
    /// its state set first; the writer registers before it looks).
    writer: AtomicWaker,
    /// The writer is gone: pushes are dropped.
    closed: AtomicBool,
    /// Frames pushed and not yet taken by the writer: the queue's length, for the bounds.
    queued: AtomicUsize,
    /// Their payload bytes, for the byte bounds.
    queued_bytes: AtomicUsize,
    /// Rooms whose live messages were dropped, with the first dropped seq.
    lagged: Mutex<BTreeMap<String, u64>>,
    /// Some room lagged since the writer last told the client: it sends `lagged` without
    /// waiting for a frame.
    lag_pending: AtomicBool,
    /// Control frames overflowed: the writer closes with 4001.
    overflowed: AtomicBool,
    /// The connection started closing (see [`Closing`]), and what wakes its two halves then.
    closing: AtomicBool,
    closing_notify: Notify,
    /// Whether the connection's reader was woken (`net::halves`): kept here, in an allocation
    /// every connection has anyway, so that this state can be the reader's waker.
    reader: ReaderWake,
}

impl std::task::Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.reader.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reader.wake();
    }
}

impl Wakes for Shared {
    fn reader_wake(&self) -> &ReaderWake {
        &self.reader
    }
}

/// The pushing end of a connection's outbound queue; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    shared: Arc<Shared>,
    /// Live frames queued before further live messages are dropped (`--outbound-queue`).
    capacity: usize,
    /// Live bytes queued before further live messages are dropped (`--outbound-queue-bytes`).
    byte_capacity: usize,
    stats: Arc<crate::stats::Stats>,
    /// permessage-deflate, if the client agreed on it: broadcasts are queued compressed.
    deflate: Option<Agreed>,
}

/// The writer's end of an [`Outbound`] queue.
#[derive(Debug)]
pub(crate) struct OutboundRx {
    shared: Arc<Shared>,
    stats: Arc<crate::stats::Stats>,
}

impl Outbound {
    /// A new queue bounded in frames only (for unit tests): the pushing handle and the writer's
    /// end (whose [`QueueSignals::evicted`] says when control frames overflowed).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize, stats: Arc<crate::stats::Stats>) -> (Outbound, OutboundRx) {
        Outbound::bounded(capacity, usize::MAX / 8, stats)
    }

    /// [`Outbound::new`] with a bound in bytes as well as in frames.
    pub(crate) fn bounded(
        capacity: usize,
        byte_capacity: usize,
        stats: Arc<crate::stats::Stats>,
    ) -> (Outbound, OutboundRx) {
        let shared = Arc::new(Shared::default());
        let rx = OutboundRx { shared: shared.clone(), stats: stats.clone() };
        let outbound =
            Outbound { shared, capacity: capacity.max(1), byte_capacity: byte_capacity.max(1), stats, deflate: None };
        (outbound, rx)
    }

    /// The same queue, for a connection that agreed on permessage-deflate (or not: `None`).
    pub(crate) fn with_deflate(self, deflate: Option<Agreed>) -> Outbound {
        Outbound { deflate, ..self }
    }

    /// Whether the live bounds are reached (frames or bytes).
    fn full(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) >= self.capacity
            || self.shared.queued_bytes.load(Ordering::Relaxed) >= self.byte_capacity
    }

    /// Queues a control frame (a reply, ack or notice).
    pub(crate) fn push(&self, msg: &ServerMsg) {
        self.push_frame(Queued::Text(encode(msg).into()));
    }

    /// Queues a control frame that is already encoded.
    pub(crate) fn push_frame(&self, frame: Queued) {
        if self.shared.queued.load(Ordering::Relaxed) >= self.capacity * CONTROL_FACTOR
            || self.shared.queued_bytes.load(Ordering::Relaxed)
                >= self.byte_capacity.saturating_mul(CONTROL_BYTES_FACTOR)
        {
            if !self.shared.overflowed.swap(true, Ordering::Relaxed) {
                self.stats.slow_consumer_evictions.inc();
                self.shared.writer.wake();
            }
            return;
        }
        self.send(frame);
    }

    /// Queues a live message of `room` with sequence number `seq`, or drops it and marks the
    /// room as lagged when the queue is full. Broadcasts pass the same frame's clone to every
    /// member: the bytes are shared, not copied.
    pub(crate) fn push_live(&self, room: &str, seq: u64, frame: Queued) {
        if self.full() {
            let mut lagged = self.shared.lagged.lock().unwrap_or_else(|p| p.into_inner());
            if lagged.is_empty() {
                self.stats.lagged_readers.inc();
            }
            lagged.entry(room.to_owned()).or_insert(seq);
            drop(lagged);
            self.shared.lag_pending.store(true, Ordering::Release);
            self.shared.writer.wake();
            return;
        }
        self.send(frame);
    }

    /// A text that goes to many connections, as this one gets it: as it is, or, where the
    /// client agreed on permessage-deflate, as `prepared` compressed it once for all.
    pub(crate) fn shared_text(&self, text: &Utf8Bytes, prepared: &Prepared) -> Queued {
        let deflated = self.deflate.as_ref().and_then(|agreed| prepared.deflated(text.as_str(), agreed, &self.stats));
        match deflated {
            Some(payload) => Queued::Deflated { payload, binary: false },
            None => Queued::Text(text.clone()),
        }
    }

    /// Queues an ephemeral frame (who is typing, who joined): dropped when the live capacity
    /// is reached, since a later one supersedes it. Says whether it was queued, so presence can
    /// send a reader who missed changes a fresh snapshot instead.
    pub(crate) fn push_ephemeral(&self, frame: Queued) -> bool {
        if !self.full() {
            self.send(frame);
            true
        } else {
            false
        }
    }

    fn send(&self, frame: Queued) {
        let bytes = frame.len();
        let mut frames = self.shared.frames.lock().unwrap_or_else(|p| p.into_inner());
        // the writer is gone (checked under the lock it sets it under): nobody will read this
        if self.shared.closed.load(Ordering::Relaxed) {
            return;
        }
        // counted before the writer can take it (it subtracts as it takes)
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.stats.queued_frames.inc();
        frames.push_back(frame);
        drop(frames);
        self.shared.writer.wake();
    }
}

/// What the writer is to do next ([`OutboundRx::next`]).
#[derive(Debug)]
pub(crate) enum Next {
    /// Control frames overflowed: close as too slow (4001).
    Evicted,
    /// The connection is closing.
    Closing,
    /// Some room lagged: tell the client ([`OutboundRx::take_lagged`]).
    Lagged,
    Frame(Queued),
}

impl OutboundRx {
    /// Waits for the writer's next job, most urgent first.
    pub(crate) fn next(&mut self) -> impl Future<Output = Next> + '_ {
        std::future::poll_fn(|cx| {
            // registered before looking: whatever is set after this wakes the writer again
            self.shared.writer.register(cx.waker());
            if self.shared.overflowed.load(Ordering::Relaxed) {
                Poll::Ready(Next::Evicted)
            } else if self.shared.closing.load(Ordering::SeqCst) {
                Poll::Ready(Next::Closing)
            } else if self.shared.lag_pending.swap(false, Ordering::AcqRel) {
                Poll::Ready(Next::Lagged)
            } else if let Some(frame) = self.try_recv() {
                Poll::Ready(Next::Frame(frame))
            } else {
                Poll::Pending
            }
        })
    }

    /// Resolves once control frames overflowed: the client is too slow and is closed (4001).
    /// For the wait on a write in progress (the writer waits in [`OutboundRx::next`] otherwise).
    pub(crate) fn evicted(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.shared.writer.register(cx.waker());
            if self.shared.overflowed.load(Ordering::Relaxed) { Poll::Ready(()) } else { Poll::Pending }
        })
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) == 0
    }

    /// The next frame if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Queued> {
        let mut frames = self.shared.frames.lock().unwrap_or_else(|p| p.into_inner());
        let frame = frames.pop_front()?;
        if frames.is_empty() && frames.capacity() > BURST_SLOTS {
            frames.shrink_to(KEPT_SLOTS);
        }
        drop(frames);
        self.taken(&frame);
        Some(frame)
    }

    fn taken(&self, frame: &Queued) {
        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        self.shared.queued_bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        self.stats.queued_frames.dec();
    }

    /// The state the connection's two halves are woken through (`net::halves`).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The connection's "closing" flag, shared by its reader and writer.
    pub(crate) fn closing(&self) -> Closing {
        Closing(self.shared.clone())
    }

    /// The rooms that lagged, with the first seq the client did not get; clears them.
    pub(crate) fn take_lagged(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.shared.lagged.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for OutboundRx {
    /// Frames still queued when the connection ends leave the gauge with it.
    fn drop(&mut self) {
        let mut frames = self.shared.frames.lock().unwrap_or_else(|p| p.into_inner());
        self.shared.closed.store(true, Ordering::Relaxed);
        for _ in frames.drain(..) {
            self.stats.queued_frames.dec();
        }
    }
}

/// Set once either half of a connection starts closing; both wait for it. The API of a
/// cancellation token, kept in the queue's shared state: a token is one more allocation per
/// connection (`hubbub-bench idle`).
#[derive(Debug, Clone)]
pub(crate) struct Closing(Arc<Shared>);

impl Closing {
    pub(crate) fn cancel(&self) {
        if !self.0.closing.swap(true, Ordering::SeqCst) {
            self.0.closing_notify.notify_waiters();
            self.0.writer.wake();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.closing.load(Ordering::SeqCst)
    }

    /// Resolves once [`Closing::cancel`] was called (at once if it was already).
    pub(crate) async fn cancelled(&self) {
        loop {
            // registered before the flag is read: a cancel in between still wakes it
            let mut notified = std::pin::pin!(self.0.closing_notify.notified());
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}
