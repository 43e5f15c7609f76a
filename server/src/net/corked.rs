//! A plain TCP connection that sends the WebSocket upgrade's answer (`101 Switching
//! Protocols`) together with the first WebSocket frame, in one system call and one segment.
//!
//! Why: a chat connection's first frame (`welcome`) is queued the moment the upgrade completes,
//! so hyper's write of the 101 and the writer's write of `welcome` would be two `sendto`s, each
//! also waking the client's side once (on loopback the kernel runs the receiver's TCP input in
//! the sender's system call). In a connect storm (`hubbub-bench storm`) the hub's CPU went
//! mostly to such writes; this is one of the three per joining client (101, `welcome`,
//! `joined` + `history`). uWebSockets "corks" its upgrade answer the same way.
//!
//! How: a write that begins a `101` answer is kept instead of sent, and hyper's flush right
//! after it is answered without writing; the next write (the first frame) goes out behind it in
//! one vectored write, and any later flush sends it if nothing was written (an endpoint without
//! a greeting flushes at once: `connection::Writer::run`). Everything else passes straight
//! through. Not used under TLS, where the bytes seen here are records, not HTTP.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the 101 answer is.
#[derive(Debug, Default)]
enum Held {
    /// Nothing kept: writes pass through.
    #[default]
    None,
    /// Kept; hyper has not flushed it yet.
    Kept(Vec<u8>),
    /// Kept, and hyper's flush was answered: the next write or flush sends it.
    Flushed(Vec<u8>),
}

/// A connection that holds back a WebSocket upgrade's answer until the first frame.
#[derive(Debug)]
pub(crate) struct Corked<S> {
    inner: S,
    held: Held,
}

impl<S> Corked<S> {
    pub(crate) fn new(inner: S) -> Self {
        Corked { inner, held: Held::None }
    }
}

/// An HTTP/1.1 answer switching to WebSocket (hyper writes a response head as one buffer).
fn begins_upgrade(buf: &[u8]) -> bool {
    buf.starts_with(b"HTTP/1.1 101 ")
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    /// Writes what is held, with `data` behind it; `Ready(Ok(n))`: all held bytes are out and
    /// `n` of `data` (more than 0 unless `data` is empty). Pending (with the waker registered by
    /// the socket) while the socket is full.
    fn poll_release(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let held = match &mut self.held {
                Held::None => {
                    return if data.is_empty() {
                        Poll::Ready(Ok(0))
                    } else {
                        Pin::new(&mut self.inner).poll_write(cx, data)
                    };
                }
                Held::Kept(held) | Held::Flushed(held) => held,
            };
            let n =
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &[IoSlice::new(held), IoSlice::new(data)]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n < held.len() {
                held.drain(..n);
                continue;
            }
            let of_data = n - held.len();
            self.held = Held::None;
            if of_data > 0 || data.is_empty() {
                return Poll::Ready(Ok(of_data));
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match &mut this.held {
            Held::None if bufs.first().is_some_and(|b| begins_upgrade(b)) => {
                // taken whole: hyper's 101 is a head without a body
                let kept: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                let n = kept.len();
                this.held = Held::Kept(kept);
                Poll::Ready(Ok(n))
            }
            Held::None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
            // hyper writing more before its flush (it does not for a 101): keep it together
            Held::Kept(kept) => {
                let n = bufs.iter().map(|b| b.len()).sum();
                kept.extend(bufs.iter().flat_map(|b| b.iter().copied()));
                Poll::Ready(Ok(n))
            }
            Held::Flushed(_) => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
                this.poll_release(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match std::mem::take(&mut this.held) {
            // hyper's flush after the 101: answered, the bytes wait for the first frame
            Held::Kept(kept) => {
                this.held = Held::Flushed(kept);
                Poll::Ready(Ok(()))
            }
            held => {
                this.held = held;
                ready!(this.poll_release(cx, &[]))?;
                Pin::new(&mut this.inner).poll_flush(cx)
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        // a second flush sends what the first only marked
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";

    /// What the other end has received so far, without waiting for more.
    async fn received(peer: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut got = vec![0; 4096];
        match tokio::time::timeout(std::time::Duration::from_millis(50), peer.read(&mut got)).await {
            Ok(Ok(n)) => got.truncate(n),
            _ => got.clear(),
        }
        got
    }

    /// A connection after hyper wrote and flushed the upgrade's answer, over a pipe of
    /// `capacity` bytes, and the other end of the pipe.
    async fn answered(capacity: usize) -> (Corked<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, peer) = tokio::io::duplex(capacity);
        let mut corked = Corked::new(ours);
        corked.write_all(ANSWER).await.unwrap();
        corked.flush().await.unwrap();
        (corked, peer)
    }

    #[tokio::test]
    async fn the_upgrade_answer_leaves_with_the_first_frame() {
        let (mut corked, mut peer) = answered(64 * 1024).await;
        assert!(received(&mut peer).await.is_empty(), "the 101 waits for the first frame");
        corked.write_all(b"\x81\x02hi").await.unwrap();
        assert_eq!(received(&mut peer).await, [ANSWER, b"\x81\x02hi"].concat());
        // from then on, straight through
        corked.write_all(b"more").await.unwrap();
        assert_eq!(received(&mut peer).await, b"more");
    }

    #[tokio::test]
    async fn a_second_flush_sends_the_answer_when_no_frame_follows() {
        let (mut corked, mut peer) = answered(64 * 1024).await;
        corked.flush().await.unwrap();
        assert_eq!(received(&mut peer).await, ANSWER);
    }

    #[tokio::test]
    async fn other_answers_pass_straight_through() {
        let (ours, mut peer) = tokio::io::duplex(64 * 1024);
        let mut corked = Corked::new(ours);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        corked.write_all(ok).await.unwrap();
        assert_eq!(received(&mut peer).await, ok);
    }

    #[tokio::test]
    async fn a_full_socket_delays_but_loses_nothing() {
        // a pipe of 16 bytes: the held answer and the frame leave in many small writes
        let (mut corked, mut peer) = answered(16).await;
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            peer.read_to_end(&mut all).await.unwrap();
            all
        });
        corked.write_all(b"\x81\x05hello").await.unwrap();
        corked.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), [ANSWER, b"\x81\x05hello"].concat());
    }
}
