//! The reply cache stays bounded, and what it forgot it refuses instead of re-running.
//!
//! * `ReplyCache` driven directly: 1,000,000 exactly-once begin/finish pairs from 10,000
//!   client ids stay within the per-client and global caps at every check; a client that
//!   sends an advancing low-water mark keeps no more entries than its in-flight window;
//!   a late duplicate of an early-evicted call gets `Lookup::Forgotten`.
//! * End to end over the in-process transport: with a tiny per-client cap, a hand-sent
//!   duplicate of an old exactly-once call is answered `Status::ReplyEvicted` and not
//!   executed; so is a duplicate of a call below the client's low-water mark.

mod support;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::server::reply_cache::{Lookup, ReplyCache, ReplyCacheConfig};

/// Every call here comes from one peer address.
const PEER: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
use rpc_core::transport::{frame_queue, memory, Channel, FrameReceiver};
use rpc_core::{Semantics, Server, Status};
use support::{bounded, CounterServer, CounterState, COUNTER_INTERFACE};

fn call(client: u64, id: u64) -> FrameHeader {
    let mut h = FrameHeader::call(client, id, 0x2000_0001, 1, 1);
    h.set_semantics(Semantics::ExactlyOnce);
    h
}

fn reply(client: u64, id: u64) -> Frame {
    Frame::new(
        FrameHeader::answer(&call(client, id), FrameKind::Reply, 7),
        Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 42]),
    )
}

#[test]
fn reply_cache_million_calls_from_10000_clients_stay_within_caps() {
    let started = Instant::now();
    let (tx, _rx) = frame_queue(8);
    let now = Instant::now();
    // Every cap binds: 29 entries per client by bytes (8-byte replies are charged 136
    // bytes), ~77,000 entries in all by bytes.
    let cfg = ReplyCacheConfig::default()
        .per_client(32, 4_000)
        .total(100_000, 10 << 20)
        .max_clients_per_peer(usize::MAX);
    let mut cache = ReplyCache::new(cfg);
    const CLIENTS: u64 = 10_000;
    const OPS: u64 = 1_000_000;
    /// Every tenth client acknowledges progress: its low-water mark trails its newest
    /// call by a window of 4.
    const WINDOW: u64 = 4;
    let acknowledges = |client: u64| client % 10 == 0;
    for i in 0..OPS {
        let client = i % CLIENTS;
        let id = i / CLIENTS + 1;
        let low_water = if acknowledges(client) {
            id.saturating_sub(WINDOW - 1).max(1)
        } else {
            0
        };
        match cache.begin(PEER, &call(client, id), 0, low_water, &tx, now) {
            Lookup::Run => {}
            other => panic!("a new call must run, got {other:?}"),
        }
        cache.finish(PEER, client, id, &reply(client, id));
        if (i + 1) % 10_000 == 0 {
            let s = cache.stats();
            assert!(s.entries <= cfg.total_entries, "{s:?}");
            assert!(s.bytes <= cfg.total_bytes, "{s:?}");
            assert!(s.clients <= cfg.max_clients, "{s:?}");
            assert!(s.entries as u64 <= CLIENTS * cfg.per_client_entries as u64);
            assert_eq!(s.running, 0);
        }
    }
    let s = cache.stats();
    eprintln!("after {OPS} calls: {s:?} in {:?}", started.elapsed());
    assert!(s.evicted_early > 0, "the caps evicted replies early");
    assert!(s.released > 0, "low-water marks released replies");
    // Calls of an acknowledging client below its mark, and evicted calls of the
    // others: refused, never run again.
    assert!(matches!(
        cache.begin(PEER, &call(10, 1), 0, 0, &tx, now),
        Lookup::Forgotten
    ));
    assert!(matches!(
        cache.begin(PEER, &call(11, 1), 0, 0, &tx, now),
        Lookup::Forgotten
    ));
    // The newest call of an acknowledging client is still answered from the cache.
    assert!(matches!(
        cache.begin(PEER, &call(10, OPS / CLIENTS), 0, 0, &tx, now),
        Lookup::Cached(_)
    ));
}

#[test]
fn reply_cache_client_limit_refuses_newcomers_and_keeps_established_clients() {
    let (tx, _rx) = frame_queue(8);
    let now = Instant::now();
    let cfg = ReplyCacheConfig::default()
        .max_clients(500)
        .max_clients_per_peer(usize::MAX)
        .client_idle(Duration::from_secs(60));
    let mut cache = ReplyCache::new(cfg);
    for client in 0..2_000u64 {
        let now = now + Duration::from_micros(client);
        for id in 1..=3 {
            match cache.begin(PEER, &call(client, id), 0, 0, &tx, now) {
                Lookup::Run => {
                    cache.finish(PEER, client, id, &reply(client, id));
                }
                Lookup::Refused => assert!(client >= 500, "client {client} refused"),
                other => panic!("client {client}: {other:?}"),
            }
        }
        assert!(cache.stats().clients <= 500);
    }
    let s = cache.stats();
    assert_eq!(s.clients_expired, 0, "no established client was pushed out");
    assert_eq!(s.clients_refused, 1_500 * 3);
    assert_eq!(s.entries, 500 * 3);
    // An established client's retry still gets its cached reply, never a second run.
    assert!(matches!(
        cache.begin(PEER, &call(0, 1), 0, 0, &tx, now),
        Lookup::Cached(_)
    ));
    // Once idle clients expire there is room again. A forgotten client is a stranger
    // (its calls would run): this is why a client restart must use a new client id.
    let later = now + Duration::from_secs(61);
    cache.expire(later);
    assert_eq!(cache.stats().clients, 0);
    assert!(matches!(
        cache.begin(PEER, &call(0, 1), 0, 0, &tx, later),
        Lookup::Run
    ));
}

#[test]
fn reply_cache_low_water_frees_old_entries_within_window() {
    let (tx, _rx) = frame_queue(8);
    let now = Instant::now();
    let mut cache = ReplyCache::new(ReplyCacheConfig::default());
    const WINDOW: usize = 8;
    const CALLS: u64 = 100_000;
    let mut running: VecDeque<u64> = VecDeque::new();
    for id in 1..=CALLS {
        // The client's low-water mark: its oldest call still waiting.
        let low_water = running.front().copied().unwrap_or(id);
        assert!(matches!(
            cache.begin(PEER, &call(77, id), 0, low_water, &tx, now),
            Lookup::Run
        ));
        running.push_back(id);
        if running.len() == WINDOW {
            let done = running.pop_front().unwrap();
            cache.finish(PEER, 77, done, &reply(77, done));
        }
        let s = cache.stats();
        assert!(
            s.entries + s.running <= WINDOW,
            "entries stay within the in-flight window: {s:?}"
        );
    }
    let s = cache.stats();
    assert_eq!(s.evicted_early, 0, "nothing had to be evicted early");
    assert!(s.released >= CALLS - 2 * WINDOW as u64, "{s:?}");
    // A late duplicate of an acknowledged call is refused.
    assert!(matches!(
        cache.begin(PEER, &call(77, 5), 0, 0, &tx, now),
        Lookup::Forgotten
    ));
    assert_eq!(cache.stats().refused_forgotten, 1);
}

#[test]
fn reply_cache_evicted_early_duplicate_is_forgotten() {
    let (tx, _rx) = frame_queue(8);
    let now = Instant::now();
    // Per-client cap.
    let mut cache = ReplyCache::new(ReplyCacheConfig::default().per_client(3, usize::MAX));
    for id in 1..=5 {
        assert!(matches!(
            cache.begin(PEER, &call(9, id), 0, 0, &tx, now),
            Lookup::Run
        ));
        cache.finish(PEER, 9, id, &reply(9, id));
    }
    assert_eq!(cache.stats().evicted_early, 2);
    for id in [1, 2] {
        assert!(matches!(
            cache.begin(PEER, &call(9, id), 0, 0, &tx, now),
            Lookup::Forgotten
        ));
    }
    for id in 3..=5 {
        assert!(matches!(
            cache.begin(PEER, &call(9, id), 0, 0, &tx, now),
            Lookup::Cached(_)
        ));
    }
    // Global cap: client 1's oldest reply goes when client 2 pushes the total over.
    let mut cache = ReplyCache::new(ReplyCacheConfig::default().total(4, usize::MAX));
    for client in [1u64, 2] {
        for id in 1..=3 {
            assert!(matches!(
                cache.begin(PEER, &call(client, id), 0, 0, &tx, now),
                Lookup::Run
            ));
            cache.finish(PEER, client, id, &reply(client, id));
        }
    }
    let s = cache.stats();
    assert_eq!((s.entries, s.evicted_early), (4, 2));
    assert!(matches!(
        cache.begin(PEER, &call(1, 2), 0, 0, &tx, now),
        Lookup::Forgotten
    ));
    assert!(matches!(
        cache.begin(PEER, &call(1, 3), 0, 0, &tx, now),
        Lookup::Cached(_)
    ));
}

/// Sends one exactly-once `increment` call frame and returns the answer.
async fn raw_increment(
    conn: &mut rpc_core::transport::Connection<rpc_core::transport::FrameOutbox>,
    client: u64,
    id: u64,
    low_water: u64,
) -> Frame {
    let procedure = COUNTER_INTERFACE
        .procedures
        .iter()
        .find(|p| p.name == "increment")
        .unwrap()
        .number;
    let mut h = FrameHeader::call(
        client,
        id,
        COUNTER_INTERFACE.id,
        COUNTER_INTERFACE.version,
        procedure,
    );
    h.set_semantics(Semantics::ExactlyOnce);
    h.aux = low_water;
    conn.sender.send(Frame::new(h, Bytes::new())).await.unwrap();
    let answer = bounded("answer", Duration::from_secs(5), conn.receiver.recv())
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(answer.header.call_id, id);
    answer
}

fn value_of(frame: &Frame) -> u64 {
    assert_eq!(frame.header.kind, FrameKind::Reply, "{frame:?}");
    rpc_core::xdr::from_bytes::<u64>(&frame.payload).unwrap()
}

fn status_of(frame: &Frame) -> Status {
    assert_eq!(frame.header.kind, FrameKind::Status, "{frame:?}");
    rpc_core::xdr::from_bytes::<Status>(&frame.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evicted_duplicate_answered_reply_evicted_end_to_end() {
    bounded("scenario", Duration::from_secs(20), async {
        let state = CounterState::new();
        let (channel, listener) = memory::endpoint(64);
        let server = Server::builder()
            .reply_cache(Some(ReplyCacheConfig::default().per_client(2, usize::MAX)))
            .add_service(CounterServer::new(state.clone()))
            .serve(listener)
            .unwrap();
        let mut conn = channel.connect().await.unwrap();
        const CLIENT: u64 = 0xabcd;
        for id in 1..=5 {
            assert_eq!(value_of(&raw_increment(&mut conn, CLIENT, id, 0).await), id);
        }
        assert_eq!(state.executions(), 5);
        // Calls 1–3 were evicted early (cap 2): their duplicates are refused.
        for id in 1..=3 {
            let answer = raw_increment(&mut conn, CLIENT, id, 0).await;
            assert_eq!(status_of(&answer), Status::ReplyEvicted);
        }
        // Calls 4 and 5 are answered from the cache, not run again.
        assert_eq!(value_of(&raw_increment(&mut conn, CLIENT, 4, 0).await), 4);
        assert_eq!(value_of(&raw_increment(&mut conn, CLIENT, 5, 0).await), 5);
        assert_eq!(state.executions(), 5);
        // Call 6 acknowledges everything below it (low-water mark 6): a duplicate of 5
        // arriving afterwards is refused as well.
        assert_eq!(value_of(&raw_increment(&mut conn, CLIENT, 6, 6).await), 6);
        let answer = raw_increment(&mut conn, CLIENT, 5, 0).await;
        assert_eq!(status_of(&answer), Status::ReplyEvicted);
        assert_eq!(state.executions(), 6);
        assert!(state.executed_twice().is_empty());
        let s = server.stats().reply_cache;
        eprintln!("{s:?}");
        assert_eq!(s.evicted_early, 3);
        assert_eq!(s.refused_forgotten, 4);
        assert_eq!(s.dedup_hits, 2);
        assert!(s.released >= 2);
        // The client sees ReplyEvicted as an error of its own.
        assert!(matches!(
            rpc_core::RpcError::from(Status::ReplyEvicted),
            rpc_core::RpcError::ReplyEvicted
        ));
        drop(server);
    })
    .await
}
