//! Decoding never reserves more than a small constant times the input's length.
//!
//! A counting global allocator records the peak of live heap bytes while each generated
//! type (and an unbounded array of it, the shape of a `T items<>` argument) decodes
//! hostile inputs: length prefixes that claim as many elements as the remaining input
//! could hold at 4 bytes each, small repeating words, and pseudo-random bytes. The
//! bound checked is [`FACTOR`] times the input plus a constant: what decoded values can
//! legitimately take in memory (a `String` or `Bytes` is 24-32 bytes for a 4-byte empty
//! item, and a vector may double while it grows), with no room for a reservation made
//! from a length prefix alone (`struct Big { hyper a[64]; } items<>` used to reserve
//! 512 bytes per 4 bytes of input: 128 times).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use rpc_core::xdr::{XdrDecode, XdrReader};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = LIVE.fetch_add(grow, Ordering::SeqCst) + grow;
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak live bytes may be at most this many times the input, plus [`SLACK`].
const FACTOR: usize = 16;
/// Room for the small fixed allocations of a decode.
const SLACK: usize = 4096;

mod fixtures {
    // `rpc-codegen/tests/fixtures/list.idl`'s types, and the type from the report that
    // found the unbounded reservation.
    rpc_macros::idl!(
        "list",
        r#"
        const MAX_ITEMS = 8;
        typedef string Name<16>;
        typedef Name Label;
        typedef Name Names<MAX_ITEMS>;
        typedef opaque Hash[8];
        struct Node { int value; Label label; Node *next; };
        enum Color { RED, GREEN = 5, BLUE };
        struct Keywords {
          int type; unsigned hyper self; bool isValid; Hash hashes[2];
          Names groups<2>; Name *nick; float grid[3];
        };
        union Paint switch (Color color) {
          case RED: void; case GREEN: Name shade; case BLUE: hyper depth;
        };
        union Maybe switch (bool present) { case TRUE: Node node; case FALSE: void; };
        union Code switch (unsigned int kind) {
          case 1: case 2: Names names; case 3: void; default: void;
        };
        union Signed switch (int n) { case -1: void; case 0: Label label; };
        struct Big { hyper a[64]; };
        struct Tree { Tree children<>; opaque tag<>; };
        "#
    );
}

/// Inputs of `len` bytes that a hostile peer would send.
fn hostile_inputs(len: usize) -> Vec<Bytes> {
    let words = len / 4;
    let mut out: Vec<Vec<u8>> = Vec::new();
    // Every word claims all the words after it: any length prefix passes the
    // 4-bytes-per-element check with the largest count it can.
    out.push(
        (0..words)
            .flat_map(|i| ((words - i - 1) as u32).to_be_bytes())
            .collect(),
    );
    for w in [0u32, 1, 2, 3, 5, 8] {
        out.push((0..words).flat_map(|_| w.to_be_bytes()).collect());
    }
    // Pseudo-random bytes (xorshift, fixed seeds), and the same with small words.
    for seed in 1..=8u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        out.push((0..len).map(|_| next() as u8).collect());
        out.push(
            (0..words)
                .flat_map(|_| ((next() % 4) as u32).to_be_bytes())
                .collect(),
        );
    }
    out.into_iter().map(Bytes::from).collect()
}

/// Decodes every hostile input as `T` and checks the peak of live bytes during it.
fn check<T: XdrDecode>(name: &str) {
    for len in [64usize, 4096, 1 << 16] {
        for input in hostile_inputs(len) {
            let before = LIVE.load(Ordering::SeqCst);
            PEAK.store(before, Ordering::SeqCst);
            let decoded = T::decode(&mut XdrReader::new(&input));
            let peak = PEAK.load(Ordering::SeqCst) - before;
            drop(decoded);
            assert!(
                peak <= FACTOR * input.len() + SLACK,
                "{name}: decoding {} bytes reached {peak} live bytes",
                input.len()
            );
        }
    }
}

macro_rules! check_all {
    ($($t:ty),* $(,)?) => {
        $(
            check::<$t>(stringify!($t));
            check::<Vec<$t>>(concat!("Vec<", stringify!($t), ">"));
        )*
    };
}

/// One test for everything: the counters are global, so nothing else may run at once.
#[test]
fn decoding_reserves_at_most_a_constant_times_the_input() {
    // The counter sees a reservation made from a length prefix alone (what the decoder
    // did before arrays were capped by the input left).
    let input = hostile_inputs(1 << 16).remove(0);
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let v: Vec<[u64; 64]> = Vec::with_capacity(input.len() / 4);
    let peak = PEAK.load(Ordering::SeqCst) - before;
    drop(v);
    assert!(peak > FACTOR * input.len() + SLACK);

    use examples::calc;
    use fixtures as list;
    use rpc_core::naming::registry::proto as naming;
    check_all!(
        calc::Name,
        calc::Op,
        calc::Point,
        calc::Shape,
        calc::Outcome,
        calc::Step,
        examples::kv::Key,
        examples::kv::Value,
        naming::MetadataEntry,
        naming::Registration,
        naming::Lease,
        naming::RegisteredEndpoint,
        naming::EndpointSet,
        list::Name,
        list::Names,
        list::Node,
        list::Color,
        list::Keywords,
        list::Paint,
        list::Maybe,
        list::Code,
        list::Signed,
        list::Big,
        list::Tree,
        Option<list::Node>,
        Vec<list::Big>,
    );
}
