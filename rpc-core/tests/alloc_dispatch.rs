//! Heap allocations on the server's dispatch path, counted by a global allocator.
//!
//! A client made of raw frames (prepared before measuring, so it allocates nothing
//! itself) drives a server over the in-process transport on a current-thread runtime;
//! everything allocated while the measured calls run is the server's (and the runtime's).
//!
//! * A 32 B call to an `[inline]` procedure, at-least-once: 0 allocations per call in
//!   steady state (the bound allows a handful over the whole run for the reply buffer's
//!   occasional reclaim, i.e. < 0.001 per call).
//! * The same call on the worker pool: a task, a boxed future, a cancellation handle and
//!   a reply buffer (5 allocations). The test pins that bound too, so a regression on
//!   either path shows.
//! * With a principal on the connection (the handler's context carries a clone of a
//!   reference-counted name), both bounds hold unchanged.
//! * With an interceptor, the inline call still allocates nothing; with a layer (which
//!   moves inline procedures to the pool, through the layer), 9 per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics};
use rpc_core::server::{decode_args, encode_result, encode_result_into, Service, ServiceFuture};
use rpc_core::transport::{memory, Channel, FrameReceiver};
use rpc_core::xdr::XdrWriter;
use rpc_core::{CallContext, InterfaceInfo, Principal, ProcedureInfo, Server, Status};

struct Counting;

thread_local! {
    /// Allocations made by this thread. The current-thread runtime runs the server, its
    /// tasks and the test's client all on the test's thread, and tests run in parallel
    /// on other threads: a per-thread count sees only this test's work.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: the allocator can be called while this thread's locals are torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[allow(unsafe_code)]
// SAFETY: forwards every request to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

static PROCS: [ProcedureInfo; 2] = [
    ProcedureInfo {
        name: "sum_inline",
        number: 1,
        oneway: false,
        idempotent: true,
    },
    ProcedureInfo {
        name: "sum_pooled",
        number: 2,
        oneway: false,
        idempotent: true,
    },
];

static IFACE: InterfaceInfo = InterfaceInfo {
    name: "Sum",
    id: 0x5000_0001,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// Sums eight `int`s (a 32 B argument), the way generated code would serve it.
struct SumService;

fn sum(args: &Bytes) -> Result<i32, Status> {
    decode_args(args, |r| {
        let mut total = 0i32;
        for _ in 0..8 {
            total = total.wrapping_add(r.get_i32()?);
        }
        Ok(total)
    })
}

impl Service for SumService {
    fn info(&self) -> &'static InterfaceInfo {
        &IFACE
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let total = sum(&args);
        Box::pin(async move {
            let total = total?;
            encode_result(|w| {
                w.put_i32(total);
                Ok(())
            })
        })
    }

    fn is_inline(&self, procedure: u32) -> bool {
        procedure == 1
    }

    fn call_inline(
        &self,
        _procedure: u32,
        ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
        // Reading the principal is free too.
        std::hint::black_box(ctx.principal());
        let total = sum(args)?;
        encode_result_into(out, |w| {
            w.put_i32(total);
            Ok(())
        })
    }
}

/// 8 × `int` = 32 B of arguments, static so cloning it allocates nothing.
static ARGS: [u8; 32] = [
    0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8,
];

/// Runs `warmup` then `measured` sequential calls of `procedure`; returns the
/// allocations counted during the measured ones and the server's inline-call count.
fn allocations_for(procedure: u32, warmup: u64, measured: u64) -> (u64, u64) {
    allocations_with(procedure, warmup, measured, |b| b)
}

/// [`allocations_for`] on a connection whose peer has a principal (as a TLS client
/// certificate gives it).
fn allocations_as(principal: Principal, procedure: u32, warmup: u64, measured: u64) -> (u64, u64) {
    allocations_on(Some(principal), procedure, warmup, measured, |b| b)
}

/// [`allocations_for`] with a server configured by `configure` (layers, interceptors).
fn allocations_with(
    procedure: u32,
    warmup: u64,
    measured: u64,
    configure: impl FnOnce(rpc_core::server::ServerBuilder) -> rpc_core::server::ServerBuilder,
) -> (u64, u64) {
    allocations_on(None, procedure, warmup, measured, configure)
}

/// [`allocations_with`] with the server side of the connection given `principal`.
fn allocations_on(
    principal: Option<Principal>,
    procedure: u32,
    warmup: u64,
    measured: u64,
    configure: impl FnOnce(rpc_core::server::ServerBuilder) -> rpc_core::server::ServerBuilder,
) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (channel, listener) = memory::endpoint(64);
        let server = configure(Server::builder())
            .add_service(SumService)
            .serve(listener)
            .unwrap();
        let conn = channel.with_principal(principal).connect().await.unwrap();
        let sender = conn.sender;
        let mut receiver = conn.receiver;
        let mut counted = 0;
        for i in 0..warmup + measured {
            if i == warmup {
                counted = allocations();
            }
            let mut header = FrameHeader::call(7, i + 1, IFACE.id, 1, procedure);
            header.set_semantics(Semantics::AtLeastOnce);
            let frame = Frame::new(header, Bytes::from_static(&ARGS));
            sender.send(frame).await.unwrap();
            let reply = receiver.recv().await.unwrap().unwrap();
            assert_eq!(reply.header.kind, FrameKind::Reply, "call {i}");
            assert_eq!(reply.header.call_id, i + 1);
            assert_eq!(&reply.payload[..], &36i32.to_be_bytes());
        }
        let allocations = allocations() - counted;
        let inline = server.stats().calls_inline;
        drop((sender, receiver));
        server.shutdown().await;
        (allocations, inline)
    })
}

#[test]
fn inline_dispatch_path_allocates_nothing_per_call_in_steady_state() {
    const CALLS: u64 = 20_000;
    let (allocations, inline) = allocations_for(1, 2_000, CALLS);
    eprintln!("{allocations} allocations over {CALLS} inline calls");
    assert_eq!(inline, 22_000, "every call ran inline");
    // Zero per call; the few allowed are the reply buffer's rare reclaim or regrowth.
    assert!(
        allocations <= 8,
        "{allocations} allocations over {CALLS} inline calls (bound: 8 in all)"
    );
}

#[test]
fn pooled_dispatch_path_stays_within_its_allocation_budget() {
    const CALLS: u64 = 5_000;
    let (allocations, inline) = allocations_for(2, 1_000, CALLS);
    assert_eq!(inline, 0, "pooled procedure never runs inline");
    // Per call (sizes seen on x86_64): the call's task (~2 KiB), its cancellation
    // handle (56 B), its boxed handler future (40 B), its reply buffer (64 B) and that
    // buffer's shared header when it is frozen (24 B).
    let per_call = allocations as f64 / CALLS as f64;
    assert!(
        per_call <= 5.05,
        "{per_call:.2} allocations per pooled call (bound: 5)"
    );
}

#[test]
fn a_principal_keeps_the_inline_path_allocation_free_and_the_pooled_budget() {
    const CALLS: u64 = 20_000;
    let alice = || Principal::Certificate("alice.example".into());
    let (allocations, inline) = allocations_as(alice(), 1, 2_000, CALLS);
    assert_eq!(inline, 22_000, "every call ran inline");
    assert!(
        allocations <= 8,
        "{allocations} allocations over {CALLS} inline calls with a principal (bound: 8 in all)"
    );
    const POOLED: u64 = 5_000;
    let (allocations, _) = allocations_as(alice(), 2, 1_000, POOLED);
    let per_call = allocations as f64 / POOLED as f64;
    assert!(
        per_call <= 5.05,
        "{per_call:.2} allocations per pooled call with a principal (bound: 5)"
    );
}

#[test]
fn an_interceptor_keeps_the_inline_path_allocation_free() {
    const CALLS: u64 = 20_000;
    let (allocations, inline) = allocations_with(1, 2_000, CALLS, |b| {
        b.intercept(|ctx, _target| match ctx.client_id() {
            7 => Ok(()),
            _ => Err(Status::application(403, "unknown client")),
        })
    });
    assert_eq!(inline, 22_000, "every call ran inline");
    assert!(
        allocations <= 8,
        "{allocations} allocations over {CALLS} intercepted inline calls (bound: 8 in all)"
    );
}

#[test]
fn with_a_layer_an_inline_procedure_has_a_pinned_allocation_budget() {
    const CALLS: u64 = 5_000;
    // The identity layer adds no work of its own: what is measured is the layered path.
    let (allocations, inline) = allocations_with(1, 1_000, CALLS, |b| {
        b.layer(tower::layer::util::Identity::new())
    });
    assert_eq!(inline, 0, "with a layer, inline procedures run on the pool");
    let per_call = allocations as f64 / CALLS as f64;
    eprintln!("{per_call:.2} allocations per layered inline call");
    // The pooled path's five, plus: the call's clone of the stack (one boxed service
    // per level: the handler's and the layer's) and each level's boxed future, and the
    // boxed `oneshot` future that drives the stack as the handler future would. Each
    // further layer adds a clone and a boxed future (two).
    assert!(
        per_call <= 9.05,
        "{per_call:.2} allocations per layered call (bound: 9)"
    );
}

/// A whole call through the real client (encode, pending table, send, reply, decode)
/// to an inline procedure, over the in-process transport: every allocation of both
/// sides, per call.
#[test]
fn whole_call_allocations_are_pinned() {
    const CALLS: u64 = 5_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let per_call = rt.block_on(async {
        let (channel, listener) = memory::endpoint(64);
        let server = Server::builder()
            .add_service(SumService)
            .serve(listener)
            .unwrap();
        let client = rpc_core::Client::new(channel);
        let options = rpc_core::CallOptions::new();
        let call = || {
            client.call(
                &IFACE,
                &PROCS[0],
                &options,
                |w| {
                    for i in 1..=8 {
                        w.put_i32(i);
                    }
                    Ok(())
                },
                |r| r.get_i32(),
            )
        };
        for _ in 0..1_000 {
            assert_eq!(call().await.unwrap(), 36);
        }
        let before = allocations();
        for _ in 0..CALLS {
            assert_eq!(call().await.unwrap(), 36);
        }
        let per_call = (allocations() - before) as f64 / CALLS as f64;
        drop(client);
        server.shutdown().await;
        per_call
    });
    eprintln!("{per_call:.2} allocations per whole call");
    // The client's: the request buffer and its shared header when frozen, the reply
    // slot (a oneshot channel). The server's inline path: none.
    assert!(
        per_call <= 3.05,
        "{per_call:.2} allocations per call (bound: 3)"
    );
}
