//! The server's dispatch path alone: a Call frame goes in, the Reply frame comes out,
//! over the in-process transport on a current-thread runtime (no sockets, no other
//! thread). What is measured is header parse and checks, the interface and procedure
//! lookup, the hand-off (inline on the dispatch loop, or a worker task), the argument
//! decode, the handler (a 32 B echo) and the reply's encode and send.
//!
//! * `dispatch/inline`: the procedure is declared `[inline]` and runs on the dispatch
//!   loop (no task, no allocation: see `rpc-core/tests/alloc_dispatch.rs`).
//! * `dispatch/pooled`: the same procedure on a server built with `run_inline(false)`:
//!   a task per call, behind the worker semaphore.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use std::time::Instant;

use benches::echo::{EchoService, ECHO_INTERFACE};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics};
use rpc_core::transport::{memory, Channel, FrameReceiver};
use rpc_core::Server;

/// An `opaque<>` of 32 bytes, XDR-encoded.
static ARGS: [u8; 36] = {
    let mut a = [0x5a; 36];
    a[0] = 0;
    a[1] = 0;
    a[2] = 0;
    a[3] = 32;
    a
};

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("dispatch");
    for (name, inline) in [("inline", true), ("pooled", false)] {
        let (server, sender, receiver) = rt.block_on(async {
            let (channel, listener) = memory::endpoint(64);
            let server = Server::builder()
                .run_inline(inline)
                .add_service(EchoService)
                .serve(listener)
                .unwrap();
            let conn = channel.connect().await.unwrap();
            (server, conn.sender, conn.receiver)
        });
        let mut receiver = Some(receiver);
        let mut call_id = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut rx = receiver
                    .take()
                    .expect("receiver is put back after each run");
                let elapsed = rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        call_id += 1;
                        let mut header = FrameHeader::call(1, call_id, ECHO_INTERFACE.id, 1, 1);
                        header.set_semantics(Semantics::AtLeastOnce);
                        sender
                            .send(Frame::new(header, Bytes::from_static(&ARGS)))
                            .await
                            .unwrap();
                        let reply = rx.recv().await.unwrap().unwrap();
                        debug_assert_eq!(reply.header.kind, FrameKind::Reply);
                    }
                    start.elapsed()
                });
                receiver = Some(rx);
                elapsed
            })
        });
        rt.block_on(async {
            let stats = server.stats();
            assert_eq!(stats.calls_inline > 0, inline, "{stats:?}");
            server.shutdown().await;
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
