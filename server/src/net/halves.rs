//! A connection's reader and writer, run to completion in one task, the reader polled only
//! when something woke it.
//!
//! Why not `futures::future::join`: a join polls both futures on every wake of the task. A
//! chat connection's task is woken mostly for its writer (every broadcast pushes a frame), and
//! each needless poll of the reader re-checked the socket's readiness, its timer and the
//! `closing` flag's `Notify` (a mutex each). In `hubbub-bench storm` and `fanout` such polls
//! were about a tenth of the hub's CPU. Two tasks would need no such bookkeeping but cost every
//! idle connection a second task (`hubbub-bench idle`).
//!
//! The reader gets a waker of its own: the outbound queue's shared state (an `Arc` every
//! connection has anyway), which marks the reader woken and wakes the task. The writer is
//! polled with the task's waker, on every wake: that is the common one (a broadcast's frame),
//! and a reader's wake (the client sent something, rare in comparison) polling it too costs
//! little. No `unsafe` (the crate forbids it), no allocation per connection.

use futures_util::task::AtomicWaker;
use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

/// Whether the reader was woken since it was last polled, and the task to wake.
#[derive(Debug)]
pub(crate) struct ReaderWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Default for ReaderWake {
    fn default() -> Self {
        // the first poll polls the reader too
        ReaderWake { woken: AtomicBool::new(true), task: AtomicWaker::new() }
    }
}

impl ReaderWake {
    /// What the reader's waker does.
    pub(crate) fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project_lite::pin_project! {
    /// The two halves of a connection; resolves when both did. `S` is the shared state whose
    /// [`Wake`] wakes the reader (see [`ReaderWake`]).
    pub(crate) struct Halves<S, R, W> {
        wake: Arc<S>,
        #[pin]
        reader: Option<R>,
        #[pin]
        writer: Option<W>,
    }
}

/// Shared state that carries a [`ReaderWake`] (the outbound queue's).
pub(crate) trait Wakes: Wake + Send + Sync + 'static {
    fn reader_wake(&self) -> &ReaderWake;
}

impl<S: Wakes, R: Future<Output = ()>, W: Future<Output = ()>> Halves<S, R, W> {
    pub(crate) fn new(wake: Arc<S>, reader: R, writer: W) -> Self {
        Halves { wake, reader: Some(reader), writer: Some(writer) }
    }
}

impl<S: Wakes, R: Future<Output = ()>, W: Future<Output = ()>> Future for Halves<S, R, W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let wake = this.wake.reader_wake();
        // before the flag is taken: a wake after the swap wakes this task again
        wake.task.register(cx.waker());
        if wake.woken.swap(false, Ordering::AcqRel)
            && let Some(reader) = this.reader.as_mut().as_pin_mut()
        {
            let waker = Waker::from(this.wake.clone());
            if reader.poll(&mut Context::from_waker(&waker)).is_ready() {
                this.reader.set(None);
            }
        }
        if let Some(writer) = this.writer.as_mut().as_pin_mut()
            && writer.poll(cx).is_ready()
        {
            this.writer.set(None);
        }
        if this.reader.is_none() && this.writer.is_none() { Poll::Ready(()) } else { Poll::Pending }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    #[derive(Default)]
    struct Shared(ReaderWake);

    impl Wake for Shared {
        fn wake(self: Arc<Self>) {
            self.0.wake();
        }
    }

    impl Wakes for Shared {
        fn reader_wake(&self) -> &ReaderWake {
            &self.0
        }
    }

    /// A half that counts its polls and waits for its `Notify` `rounds` times.
    async fn half(polls: Arc<AtomicUsize>, go: Arc<Notify>, rounds: usize) {
        struct Counting<F>(F, Arc<AtomicUsize>);
        impl<F: Future + Unpin> Future for Counting<F> {
            type Output = F::Output;
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
                self.1.fetch_add(1, Ordering::Relaxed);
                Pin::new(&mut self.0).poll(cx)
            }
        }
        for _ in 0..rounds {
            Counting(Box::pin(go.notified()), polls.clone()).await;
        }
    }

    #[tokio::test]
    async fn the_writers_wakes_leave_the_reader_alone_and_both_run_to_the_end() {
        let (reader_polls, writer_polls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (reader_go, writer_go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let halves = Halves::new(
            Arc::new(Shared::default()),
            half(reader_polls.clone(), reader_go.clone(), 1),
            half(writer_polls.clone(), writer_go.clone(), 10),
        );
        let task = tokio::spawn(halves);
        tokio::task::yield_now().await;
        for _ in 0..10 {
            writer_go.notify_one();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // the writer woke ten times; the reader, waiting all along, was polled once
        assert_eq!(reader_polls.load(Ordering::Relaxed), 1);
        assert!(writer_polls.load(Ordering::Relaxed) >= 10);
        assert!(!task.is_finished(), "the reader is not done yet");
        reader_go.notify_one();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.expect("both halves ended").unwrap();
    }
}
