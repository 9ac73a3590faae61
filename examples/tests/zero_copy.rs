//! Zero copy on receive: an `opaque<>` argument a handler gets is a slice of the
//! connection's receive buffer, not a copy.
//!
//! Two calls are written to a TCP server in ONE write, so one read brings both frames
//! into the same receive buffer. If the handlers' `Bytes` arguments are slices of that
//! buffer, the second blob starts exactly one frame after the first; a copy anywhere on
//! the way (framing, XDR decoding, the generated stub, the worker hand-off) would put it
//! somewhere else.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind, HEADER_LEN};
use rpc_core::transport::Listener;
use rpc_core::xdr::XdrWriter;
use rpc_core::{CallContext, Server, Status};
use rpc_transport_tcp::TcpListener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod sink {
    rpc_macros::idl!(
        "sink",
        r#"
        /// Records where its argument lies in memory.
        interface Sink version 1 {
            /// Takes a blob; returns its length.
            unsigned int take(opaque blob<>);
        };
        "#
    );
}

/// The address and length of every blob a handler received, by its first byte.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(u8, usize, usize)>>,
}

impl sink::Sink for std::sync::Arc<Recorder> {
    async fn take(&self, _ctx: &CallContext, blob: Bytes) -> Result<u32, Status> {
        self.seen
            .lock()
            .unwrap()
            .push((blob[0], blob.as_ptr() as usize, blob.len()));
        Ok(blob.len() as u32)
    }
}

fn call_bytes(call_id: u64, fill: u8, len: usize) -> Vec<u8> {
    let mut w = XdrWriter::new();
    w.put_opaque(&vec![fill; len], u32::MAX).unwrap();
    let header = FrameHeader::call(9, call_id, sink::SINK_INTERFACE.id, 1, 1);
    let frame = Frame::new(header, w.into_bytes());
    frame.to_bytes().unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_opaque_points_into_the_receive_buffer() {
    let recorder = std::sync::Arc::new(Recorder::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr();
    let server = Server::builder()
        .add_service(sink::SinkServer::new(recorder.clone()))
        .serve(listener)
        .unwrap();

    const LEN: usize = 1000;
    let first = call_bytes(1, 0xA1, LEN);
    let second = call_bytes(2, 0xB2, LEN);
    let mut both = first.clone();
    both.extend_from_slice(&second);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(&both).await.unwrap();

    // Two replies come back (in either order).
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut head = [0u8; HEADER_LEN];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
            .await
            .expect("reply in time")
            .unwrap();
        let header = FrameHeader::parse(&head, 1 << 20).unwrap();
        let mut payload = vec![0u8; header.payload_len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        assert_eq!(header.kind, FrameKind::Reply);
        assert_eq!(payload, (LEN as u32).to_be_bytes());
        ids.push(header.call_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);

    let seen = recorder.seen.lock().unwrap().clone();
    let a = seen.iter().find(|s| s.0 == 0xA1).expect("first blob seen");
    let b = seen.iter().find(|s| s.0 == 0xB2).expect("second blob seen");
    assert_eq!((a.2, b.2), (LEN, LEN));
    // Both blobs lie in one buffer, exactly where the bytes arrived: the second frame
    // starts `first.len()` bytes after the first.
    assert_eq!(
        b.1.wrapping_sub(a.1),
        first.len(),
        "the blobs are not slices of one receive buffer (copied on the way?)"
    );
    drop(stream);
    server.shutdown().await;
}
