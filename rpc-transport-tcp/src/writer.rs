//! The writer task: drains a connection's outgoing queue with vectored writes.
//!
//! Each round takes every queued frame (up to the batch limit), encodes the 56-byte
//! headers into a reused array, and hands header and payload slices of the whole batch
//! to `write_vectored` (`writev`) — payloads are never copied into a send buffer. While a
//! write is in progress new frames queue up, so under load batches grow by themselves
//! and the number of syscalls per frame falls; when idle a single frame goes out alone
//! and at once.

use std::io::{self, IoSlice};
use std::net::SocketAddr;

use rpc_core::frame::{Frame, HEADER_LEN};
use rpc_core::transport::FrameOutbox;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn, Instrument};

/// Sends every frame queued in `outbox` to `out`, gathering up to `batch_limit` frames
/// into one vectored write.
///
/// Returns `Ok(())` once every [`rpc_core::transport::FrameSender`] is gone and the
/// queue is drained, after shutting down `out` (the peer then reads a clean end of
/// stream). Returns the error if a write fails; `outbox` is dropped either way, so from
/// then on sends fail with [`rpc_core::TransportError::Closed`] and the frames still
/// queued are discarded.
///
/// When a sender aborts the connection ([`rpc_core::transport::FrameSender::abort`]),
/// the loop stops at once, even in the middle of a write to a peer that does not read,
/// and returns an error of kind [`io::ErrorKind::ConnectionAborted`]; dropping `out`
/// then closes the socket.
///
/// A frame whose header cannot be encoded (payload longer than `u32::MAX` bytes) is
/// logged and skipped; the peer would reject it anyway, since its limit is lower.
pub async fn write_loop<W>(
    mut outbox: FrameOutbox,
    mut out: W,
    batch_limit: usize,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let limit = batch_limit.max(1);
    let mut batch: Vec<Frame> = Vec::with_capacity(limit);
    let mut headers: Vec<[u8; HEADER_LEN]> = Vec::with_capacity(limit);
    // Kept empty between batches, only for their allocations (see `recycle`).
    let mut chunks: Vec<&'static [u8]> = Vec::with_capacity(2 * limit);
    let mut iov: Vec<IoSlice<'static>> = Vec::with_capacity(2 * limit);
    let abort = outbox.abort_signal();
    // One long-lived future, polled only when the queue or the socket makes the writer
    // wait: a frame that is ready, or a write the socket takes at once, never touches
    // it (an abort is still seen the moment the writer would block).
    let abort = abort.aborted();
    tokio::pin!(abort);
    let aborted = || io::Error::new(io::ErrorKind::ConnectionAborted, "connection aborted");

    loop {
        let received = tokio::select! {
            biased;
            n = outbox.recv_batch(&mut batch, limit) => n,
            () = &mut abort => return Err(aborted()),
        };
        if received == 0 {
            debug!("all senders gone; shutting down the write side");
            return out.shutdown().await;
        }

        headers.clear();
        batch.retain(|frame| match frame.header_bytes() {
            // (Over every payload chunk in place for a shared-descriptor frame.)
            Ok(header) => {
                headers.push(header);
                true
            }
            Err(e) => {
                warn!(call_id = frame.header.call_id, error = %e, "dropping unencodable frame");
                false
            }
        });

        let mut gather = Gather::new(recycle(chunks), recycle(iov));
        for (header, frame) in headers.iter().zip(&batch) {
            gather.push(header);
            for chunk in frame.chunks() {
                gather.push(chunk);
            }
        }
        let written = tokio::select! {
            biased;
            r = gather.write_all(&mut out) => r,
            () = &mut abort => Err(aborted()),
        };
        (chunks, iov) = gather.into_parts();
        batch.clear();
        written?;
        out.flush().await?;
    }
}

/// Spawns [`write_loop`] for one connection, logging how it ended.
pub(crate) fn spawn_writer<W>(outbox: FrameOutbox, out: W, batch_limit: usize, peer: SocketAddr)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    // Its own root span: the writer outlives the call that happened to open the
    // connection, so it must not log inside that call's span.
    let span = tracing::debug_span!(parent: None, "tcp_writer", %peer);
    tokio::spawn(
        async move {
            match write_loop(outbox, out, batch_limit).await {
                Ok(()) => debug!("writer finished"),
                Err(e) => debug!(error = %e, "write failed; connection closed for sending"),
            }
        }
        .instrument(span),
    );
}

/// Empties `v` and hands back its allocation for elements of another lifetime.
///
/// The slices of one batch borrow that batch's headers and frames; the allocation that
/// held them is reused for the next batch. A `Vec` collected from a mapped
/// `vec::IntoIter` of a type with the same layout reuses the source allocation (the
/// standard library's in-place collection), so this is a safe cast of an empty `Vec`.
fn recycle<'b, T: Recycle<'b>>(mut v: Vec<T>) -> Vec<T::As> {
    v.clear();
    v.into_iter().map(|_| T::empty()).collect()
}

/// The borrowed slice types [`recycle`] can re-lifetime.
trait Recycle<'b> {
    type As;
    fn empty() -> Self::As;
}

impl<'b> Recycle<'b> for &'_ [u8] {
    type As = &'b [u8];
    fn empty() -> &'b [u8] {
        &[]
    }
}

impl<'b> Recycle<'b> for IoSlice<'_> {
    type As = IoSlice<'b>;
    fn empty() -> IoSlice<'b> {
        IoSlice::new(&[])
    }
}

/// A list of byte slices being written with `write_vectored`, and how far the writing
/// has got.
///
/// `iov[i]` is `IoSlice::new(chunks[i])` for every chunk not yet started; the chunk in
/// progress (`chunks[idx]`, `off` bytes written) has `iov[idx]` rebuilt over its
/// unwritten tail. `IoSlice` only lends its bytes for as long as it is borrowed, so the
/// tail is cut from the original `&'a [u8]` kept in `chunks`.
#[derive(Debug)]
struct Gather<'a> {
    chunks: Vec<&'a [u8]>,
    iov: Vec<IoSlice<'a>>,
    idx: usize,
    off: usize,
}

impl<'a> Gather<'a> {
    /// Starts from two empty vectors (their capacity is reused).
    fn new(chunks: Vec<&'a [u8]>, iov: Vec<IoSlice<'a>>) -> Self {
        debug_assert!(chunks.is_empty() && iov.is_empty());
        Gather {
            chunks,
            iov,
            idx: 0,
            off: 0,
        }
    }

    /// Appends a slice to write; empty slices are skipped.
    fn push(&mut self, bytes: &'a [u8]) {
        if !bytes.is_empty() {
            self.chunks.push(bytes);
            self.iov.push(IoSlice::new(bytes));
        }
    }

    /// Whether everything has been written.
    fn is_done(&self) -> bool {
        self.idx >= self.chunks.len()
    }

    /// The slices still to write, the first one possibly partly written.
    fn remaining(&self) -> &[IoSlice<'a>] {
        &self.iov[self.idx.min(self.iov.len())..]
    }

    /// Marks `n` more bytes written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(chunk) = self.chunks.get(self.idx) else {
                debug_assert!(false, "advanced {n} bytes past the end");
                return;
            };
            let left = chunk.len() - self.off;
            if n < left {
                self.off += n;
                self.iov[self.idx] = IoSlice::new(&chunk[self.off..]);
                return;
            }
            n -= left;
            self.idx += 1;
            self.off = 0;
        }
    }

    /// Writes everything, looping over partial writes.
    async fn write_all<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> io::Result<()> {
        while !self.is_done() {
            let n = out.write_vectored(self.remaining()).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.advance(n);
        }
        Ok(())
    }

    /// The two vectors, emptied and freed from this batch's borrows.
    fn into_parts<'b>(self) -> (Vec<&'b [u8]>, Vec<IoSlice<'b>>) {
        (recycle(self.chunks), recycle(self.iov))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use rpc_core::frame::FrameHeader;
    use rpc_core::transport::frame_queue;
    use rpc_core::TransportError;

    use crate::codec::FrameDecoder;

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[derive(Default)]
    struct Sink {
        written: Vec<u8>,
        calls: usize,
        shut_down: bool,
    }

    /// An `AsyncWrite` that accepts a random number of bytes per call (spanning slices),
    /// now and then returns `Pending`, and fails once `fail_after` bytes are written.
    struct ChoppyWriter {
        sink: Arc<Mutex<Sink>>,
        rng: Rng,
        max_per_call: u64,
        fail_after: Option<usize>,
    }

    impl ChoppyWriter {
        fn new(seed: u64, max_per_call: u64) -> (Self, Arc<Mutex<Sink>>) {
            let sink = Arc::new(Mutex::new(Sink::default()));
            let w = ChoppyWriter {
                sink: sink.clone(),
                rng: Rng(seed | 1),
                max_per_call,
                fail_after: None,
            };
            (w, sink)
        }
    }

    impl AsyncWrite for ChoppyWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = &mut *self;
            if this.rng.below(4) == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let mut sink = this.sink.lock().unwrap();
            if let Some(limit) = this.fail_after {
                if sink.written.len() >= limit {
                    return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
                }
            }
            sink.calls += 1;
            let mut budget = 1 + this.rng.below(this.max_per_call) as usize;
            let mut n = 0;
            for b in bufs {
                let take = budget.min(b.len());
                sink.written.extend_from_slice(&b[..take]);
                n += take;
                budget -= take;
                if budget == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.sink.lock().unwrap().shut_down = true;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(call_id: u64, payload_len: usize) -> Frame {
        let mut header = FrameHeader::call(1, call_id, 2, 3, 4);
        header.payload_len = payload_len as u32;
        let payload: Vec<u8> = (0..payload_len)
            .map(|i| (i as u64 * 31 + call_id) as u8)
            .collect();
        Frame::new(header, Bytes::from(payload))
    }

    fn decode_all(bytes: &[u8]) -> Vec<Frame> {
        let mut buf = BytesMut::from(bytes);
        let mut decoder = FrameDecoder::new(u32::MAX);
        let mut out = Vec::new();
        while let Some(f) = decoder.decode(&mut buf).expect("writer output decodes") {
            out.push(f);
        }
        assert!(buf.is_empty() && decoder.is_idle(), "no trailing bytes");
        out
    }

    #[test]
    fn advance_over_random_write_sizes() {
        let data: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; (i as usize * 7) % 23]).collect();
        let expected: Vec<u8> = data.concat();
        for seed in 1..200u64 {
            let mut rng = Rng(seed);
            let mut g = Gather::new(Vec::new(), Vec::new());
            for d in &data {
                g.push(d);
            }
            let mut out = Vec::new();
            while !g.is_done() {
                // What a `writev` that accepts `n` bytes would take from the remaining slices.
                let mut n = 1 + rng.below(40) as usize;
                let mut taken = 0;
                for s in g.remaining() {
                    assert!(!s.is_empty(), "no empty slice is offered");
                    let t = n.min(s.len());
                    out.extend_from_slice(&s[..t]);
                    taken += t;
                    n -= t;
                    if n == 0 {
                        break;
                    }
                }
                g.advance(taken);
            }
            assert_eq!(out, expected, "seed {seed}");
            assert!(g.remaining().is_empty());
        }
    }

    #[test]
    fn advance_exactly_to_chunk_boundaries() {
        let (a, b, c) = (b"abc".as_slice(), b"".as_slice(), b"defg".as_slice());
        let mut g = Gather::new(Vec::new(), Vec::new());
        g.push(a);
        g.push(b);
        g.push(c);
        assert_eq!(g.remaining().len(), 2);
        g.advance(3);
        assert_eq!(&*g.remaining()[0], b"defg");
        g.advance(1);
        assert_eq!(&*g.remaining()[0], b"efg");
        g.advance(2);
        assert_eq!(&*g.remaining()[0], b"g");
        g.advance(1);
        assert!(g.is_done());
    }

    #[test]
    fn recycle_keeps_the_allocation() {
        let owned = [1u8, 2, 3];
        let mut v: Vec<IoSlice<'_>> = Vec::with_capacity(128);
        v.push(IoSlice::new(&owned));
        let ptr = v.as_ptr() as usize;
        let r: Vec<IoSlice<'static>> = recycle(v);
        assert!(r.is_empty());
        assert_eq!(r.capacity(), 128);
        assert_eq!(r.as_ptr() as usize, ptr);
        let c: Vec<&[u8]> = Vec::with_capacity(64);
        let c: Vec<&'static [u8]> = recycle(c);
        assert_eq!(c.capacity(), 64);
    }

    #[tokio::test]
    async fn partial_and_pending_writes_deliver_every_byte() {
        for seed in 1..30u64 {
            let (tx, outbox) = frame_queue(1024);
            let frames: Vec<Frame> = (0..100)
                .map(|i| frame(i, (i as usize * 37) % 300))
                .collect();
            for f in &frames {
                tx.send(f.clone()).await.unwrap();
            }
            drop(tx);
            let (w, sink) = ChoppyWriter::new(seed, 100);
            write_loop(outbox, w, 16).await.unwrap();
            let sink = sink.lock().unwrap();
            assert!(sink.shut_down);
            assert_eq!(decode_all(&sink.written), frames, "seed {seed}");
        }
    }

    #[tokio::test]
    async fn one_write_carries_a_whole_batch() {
        let (tx, outbox) = frame_queue(1024);
        let frames: Vec<Frame> = (0..64).map(|i| frame(i, 10)).collect();
        for f in &frames {
            tx.send(f.clone()).await.unwrap();
        }
        drop(tx);
        let (w, sink) = ChoppyWriter::new(3, u64::MAX / 2);
        write_loop(outbox, w, 64).await.unwrap();
        let sink = sink.lock().unwrap();
        assert_eq!(sink.calls, 1, "64 frames, 128 slices, one write_vectored");
        assert_eq!(decode_all(&sink.written), frames);
    }

    #[tokio::test]
    async fn write_error_closes_the_queue() {
        let (tx, outbox) = frame_queue(4);
        let (mut w, _sink) = ChoppyWriter::new(5, 50);
        w.fail_after = Some(200);
        let task = tokio::spawn(write_loop(outbox, w, 2));
        let result = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Err(e) = tx.send(frame(1, 100)).await {
                    return e;
                }
            }
        })
        .await
        .expect("sends fail once the writer is gone");
        assert!(matches!(result, TransportError::Closed));
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test]
    async fn idle_writer_exits_when_senders_drop() {
        let (tx, outbox) = frame_queue(4);
        let (w, sink) = ChoppyWriter::new(9, 10);
        let task = tokio::spawn(write_loop(outbox, w, 8));
        tokio::task::yield_now().await;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("writer exits")
            .unwrap()
            .unwrap();
        let sink = sink.lock().unwrap();
        assert!(sink.shut_down && sink.written.is_empty());
    }
}
