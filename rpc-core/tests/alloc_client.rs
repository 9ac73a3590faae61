//! Heap allocations on the client's call path, counted by a global allocator.
//!
//! A [`Client`] calls an `[inline]` procedure of a server over the in-process transport
//! on a current-thread runtime, one call at a time; the server's inline path allocates
//! nothing per call (`alloc_dispatch.rs`), so what is counted is the client's call path
//! (and the in-process transport's). The test pins the per-call count, so a regression
//! shows.
//!
//! `CLIENT_CALLS=<n>` sets the number of measured calls, which lets an instruction
//! counter (`valgrind --tool=callgrind`) be run for two counts and the difference
//! divided, for instructions per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use rpc_core::client::ClientConfig;
use rpc_core::server::{decode_args, encode_result, encode_result_into, Service, ServiceFuture};
use rpc_core::transport::memory;
use rpc_core::xdr::XdrWriter;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, Semantics, Server, Status,
};

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
        _ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
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

fn measure(warmup: u64, measured: u64, semantics: Semantics) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (channel, listener) = memory::endpoint(64);
        let server = Server::builder()
            .add_service(SumService)
            .serve(listener)
            .unwrap();
        let client = Client::with_config(channel, ClientConfig::default());
        client.connect().await.unwrap();
        let options = CallOptions::new().semantics(semantics);
        let mut counted = 0;
        for i in 0..warmup + measured {
            if i == warmup {
                counted = allocations();
            }
            let total = client
                .call(
                    &IFACE,
                    &PROCS[0],
                    &options,
                    |w| w.put_opaque_fixed(&ARGS, ARGS.len()),
                    |r| r.get_i32(),
                )
                .await
                .unwrap();
            assert_eq!(total, 36, "call {i}");
        }
        let allocations = allocations() - counted;
        assert_eq!(server.stats().calls_inline, warmup + measured);
        server.shutdown().await;
        allocations
    })
}

fn calls() -> u64 {
    std::env::var("CLIENT_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// Allocations per call, seen on x86_64: the argument buffer, the call's inbox, the
/// frame queue's slot for the request on the in-process transport, and the reply's
/// buffer on the server side of the in-process transport.
const PER_CALL_BOUND: f64 = 6.0;

#[test]
fn client_call_path_stays_within_its_allocation_budget() {
    let calls = calls();
    for semantics in [Semantics::AtMostOnce, Semantics::ExactlyOnce] {
        let allocations = measure(500, calls, semantics);
        let per_call = allocations as f64 / calls as f64;
        eprintln!(
            "{semantics}: {allocations} allocations over {calls} calls = {per_call:.2} per call"
        );
        assert!(
            per_call <= PER_CALL_BOUND,
            "{semantics}: {per_call:.2} allocations per call (bound {PER_CALL_BOUND})"
        );
        assert!(per_call >= 1.0, "the counter counts: {per_call}");
    }
}
