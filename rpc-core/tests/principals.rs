//! Principal-scoped server state over the in-process transport: the server side of a
//! memory connection is given a principal (`MemoryChannel::with_principal`), as a TLS
//! or sealed-UDP handshake would give it. Two principals that share a client id cannot
//! read each other's cached replies, pre-answer each other's calls, release each
//! other's entries with a low-water mark or cancel each other's calls; handlers (pooled
//! and inline) see the principal; without principals, the peer address is the scope.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics};
use rpc_core::server::{
    decode_args, encode_result, encode_result_into, ServerHandle, Service, ServiceFuture,
};
use rpc_core::transport::{memory, Channel, Connection, FrameOutbox, FrameReceiver};
use rpc_core::xdr::{XdrReader, XdrWriter};
use rpc_core::{CallContext, InterfaceInfo, Principal, ProcedureInfo, Server, Status};

const LIMIT: Duration = Duration::from_secs(20);

static PROCS: [ProcedureInfo; 3] = [
    ProcedureInfo {
        name: "tag",
        number: 1,
        oneway: false,
        idempotent: false,
    },
    ProcedureInfo {
        name: "wait",
        number: 2,
        oneway: false,
        idempotent: false,
    },
    ProcedureInfo {
        name: "tag_inline",
        number: 3,
        oneway: false,
        idempotent: false,
    },
];

static WHO: InterfaceInfo = InterfaceInfo {
    name: "Who",
    id: 0x5000_0030,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

#[derive(Default)]
struct Runs {
    /// Handler runs of every procedure.
    runs: AtomicUsize,
    /// Runs of `wait` started.
    waits: AtomicUsize,
    /// Lets every `wait` return (not cancelled).
    released: AtomicBool,
    /// (principal name, argument) of every run.
    log: Mutex<Vec<(String, u32)>>,
}

/// `tag(u32)`, `tag_inline(u32)` and `wait(u32)` answer `(principal name, arg,
/// cancelled)`; `wait` runs until cancelled or released.
struct WhoSvc(Arc<Runs>);

fn name_of(ctx: &CallContext) -> String {
    ctx.principal().map(Principal::name).unwrap_or_default()
}

fn encode(
    w: &mut XdrWriter,
    who: &str,
    arg: u32,
    cancelled: bool,
) -> Result<(), rpc_core::xdr::XdrError> {
    w.put_string(who, 1024)?;
    w.put_u32(arg);
    w.put_bool(cancelled);
    Ok(())
}

impl Service for WhoSvc {
    fn info(&self) -> &'static InterfaceInfo {
        &WHO
    }

    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture {
        let arg = decode_args(&args, |r| r.get_u32());
        let runs = self.0.clone();
        Box::pin(async move {
            let arg = arg?;
            let who = name_of(&ctx);
            runs.runs.fetch_add(1, Ordering::SeqCst);
            runs.log.lock().unwrap().push((who.clone(), arg));
            let mut cancelled = false;
            if procedure == 2 {
                runs.waits.fetch_add(1, Ordering::SeqCst);
                let give_up = Instant::now() + LIMIT;
                cancelled = loop {
                    if ctx.is_cancelled() {
                        break true;
                    }
                    if runs.released.load(Ordering::SeqCst) || Instant::now() > give_up {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                };
            }
            encode_result(|w| encode(w, &who, arg, cancelled))
        })
    }

    fn is_inline(&self, procedure: u32) -> bool {
        procedure == 3
    }

    fn call_inline(
        &self,
        _procedure: u32,
        ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
        let arg = decode_args(args, |r| r.get_u32())?;
        let who = name_of(ctx);
        self.0.runs.fetch_add(1, Ordering::SeqCst);
        self.0.log.lock().unwrap().push((who.clone(), arg));
        encode_result_into(out, |w| encode(w, &who, arg, false))
    }
}

#[derive(Debug, PartialEq)]
enum Answer {
    Reply(String, u32, bool),
    Status(Status),
}

fn reply(who: &str, arg: u32) -> Answer {
    Answer::Reply(who.to_owned(), arg, false)
}

/// The client id every peer here uses.
const CLIENT: u64 = 0x5EED;

/// A raw connection (the client side of a memory connection).
struct Raw(Connection<FrameOutbox>);

impl Raw {
    async fn open(channel: &memory::MemoryChannel, principal: Option<&str>) -> Raw {
        let channel = channel.with_principal(principal.map(|n| Principal::Certificate(n.into())));
        Raw(channel.connect().await.unwrap())
    }

    fn frame(call_id: u64, procedure: u32, arg: u32, low_water: u64) -> Frame {
        let mut header = FrameHeader::call(CLIENT, call_id, WHO.id, WHO.version, procedure);
        header.set_semantics(Semantics::ExactlyOnce);
        header.aux = low_water;
        Frame::new(header, Bytes::copy_from_slice(&arg.to_be_bytes()))
    }

    async fn send(&self, frame: Frame) {
        self.0.sender.send(frame).await.unwrap();
    }

    async fn answer(&mut self, call_id: u64) -> Answer {
        let frame = tokio::time::timeout(LIMIT, self.0.receiver.recv())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("an answer before EOF");
        assert_eq!(frame.header.call_id, call_id, "{frame:?}");
        let mut r = XdrReader::new(&frame.payload);
        match frame.header.kind {
            FrameKind::Reply => Answer::Reply(
                r.get_string(1024).unwrap(),
                r.get_u32().unwrap(),
                r.get_bool().unwrap(),
            ),
            FrameKind::Status => Answer::Status(rpc_core::xdr::XdrDecode::decode(&mut r).unwrap()),
            kind => panic!("unexpected {kind:?}"),
        }
    }

    async fn call(&mut self, call_id: u64, procedure: u32, arg: u32, low_water: u64) -> Answer {
        self.send(Raw::frame(call_id, procedure, arg, low_water))
            .await;
        self.answer(call_id).await
    }

    async fn cancel(&self, call_id: u64) {
        let mut header = FrameHeader::call(CLIENT, call_id, WHO.id, WHO.version, 2);
        header.kind = FrameKind::Cancel;
        self.send(Frame::new(header, Bytes::new())).await;
    }
}

fn serve() -> (ServerHandle, Arc<Runs>, memory::MemoryChannel) {
    let runs = Arc::new(Runs::default());
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .add_service(WhoSvc(runs.clone()))
        .serve(listener)
        .unwrap();
    (server, runs, channel)
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LIMIT, "{what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_sharing_a_client_id_keep_their_cached_replies_apart() {
    let (server, runs, channel) = serve();
    let mut alice = Raw::open(&channel, Some("alice")).await;
    let mut bob = Raw::open(&channel, Some("bob")).await;
    for procedure in [1, 3] {
        let id = u64::from(procedure);
        assert_eq!(alice.call(id, procedure, 7, 0).await, reply("alice", 7));
        // Alice's retry: cached.
        assert_eq!(alice.call(id, procedure, 7, 0).await, reply("alice", 7));
        // Bob's identical frame runs as bob, not answered with alice's reply.
        assert_eq!(bob.call(id, procedure, 7, 0).await, reply("bob", 7));
    }
    assert_eq!(runs.runs.load(Ordering::SeqCst), 4);
    // A second connection of alice's is the same scope: it gets her cached reply.
    let mut alice_again = Raw::open(&channel, Some("alice")).await;
    assert_eq!(alice_again.call(1, 1, 7, 0).await, reply("alice", 7));
    assert_eq!(runs.runs.load(Ordering::SeqCst), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_cannot_pre_answer_or_release_anothers_calls() {
    let (server, runs, channel) = serve();
    let mut alice = Raw::open(&channel, Some("alice")).await;
    let mut bob = Raw::open(&channel, Some("bob")).await;
    // Bob goes first with alice's next call ids: other arguments, then the same.
    assert_eq!(bob.call(2, 1, 999, 0).await, reply("bob", 999));
    assert_eq!(bob.call(3, 3, 3, 0).await, reply("bob", 3));
    assert_eq!(alice.call(2, 1, 2, 0).await, reply("alice", 2));
    assert_eq!(alice.call(3, 3, 3, 0).await, reply("alice", 3));
    // Bob acknowledges everything below 1,000 for the shared client id: alice's
    // entries stay, her retries are answered from the cache.
    assert_eq!(bob.call(1_000, 1, 1, 1_000).await, reply("bob", 1));
    let before = runs.runs.load(Ordering::SeqCst);
    assert_eq!(alice.call(2, 1, 2, 0).await, reply("alice", 2));
    assert_eq!(alice.call(3, 3, 3, 0).await, reply("alice", 3));
    assert_eq!(runs.runs.load(Ordering::SeqCst), before);
    // Her own mark releases them.
    assert_eq!(alice.call(4, 1, 4, 4).await, reply("alice", 4));
    assert_eq!(
        alice.call(2, 1, 2, 4).await,
        Answer::Status(Status::ReplyEvicted)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_cannot_cancel_anothers_call() {
    let (server, runs, channel) = serve();
    let mut alice = Raw::open(&channel, Some("alice")).await;
    let mut bob = Raw::open(&channel, Some("bob")).await;
    alice.send(Raw::frame(5, 2, 5, 0)).await;
    wait_for("alice's call started", || {
        runs.waits.load(Ordering::SeqCst) == 1
    })
    .await;
    bob.cancel(5).await;
    // Bob's next answer shows his connection read the Cancel.
    assert_eq!(bob.call(6, 1, 6, 0).await, reply("bob", 6));
    runs.released.store(true, Ordering::SeqCst);
    assert_eq!(alice.answer(5).await, reply("alice", 5));
    runs.released.store(false, Ordering::SeqCst);
    alice.send(Raw::frame(7, 2, 7, 0)).await;
    wait_for("alice's second call started", || {
        runs.waits.load(Ordering::SeqCst) == 2
    })
    .await;
    alice.cancel(7).await;
    assert_eq!(
        alice.answer(7).await,
        Answer::Reply("alice".into(), 7, true)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_another_connection_of_the_same_principal_cancels_the_call() {
    let (server, runs, channel) = serve();
    let mut alice = Raw::open(&channel, Some("alice")).await;
    let mut alice_again = Raw::open(&channel, Some("alice")).await;
    alice.send(Raw::frame(5, 2, 5, 0)).await;
    wait_for("alice's call started", || {
        runs.waits.load(Ordering::SeqCst) == 1
    })
    .await;
    // The call's handle lives with the connection it came on: the Cancel, on her
    // second connection, still finds it.
    alice_again.cancel(5).await;
    assert_eq!(alice_again.call(6, 1, 6, 0).await, reply("alice", 6));
    assert_eq!(
        alice.answer(5).await,
        Answer::Reply("alice".into(), 5, true)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_principals_the_address_is_the_scope() {
    let (server, runs, channel) = serve();
    // Memory connections all come from 127.0.0.1: without principals, two connections
    // with one client id are one client, as over the network from one host.
    let mut first = Raw::open(&channel, None).await;
    let mut second = Raw::open(&channel, None).await;
    assert_eq!(first.call(1, 1, 1, 0).await, reply("", 1));
    assert_eq!(second.call(1, 1, 1, 0).await, reply("", 1));
    assert_eq!(runs.runs.load(Ordering::SeqCst), 1);
    // A principal on the same address is a scope of its own.
    let mut carol = Raw::open(&channel, Some("carol")).await;
    assert_eq!(carol.call(1, 1, 1, 0).await, reply("carol", 1));
    assert_eq!(runs.runs.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}
