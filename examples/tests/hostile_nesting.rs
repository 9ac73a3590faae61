//! Deeply nested data from a hostile peer, over real TCP on loopback.
//!
//! A recursive type (`Node *next`) decodes by recursion, so without a nesting limit a
//! few hundred kilobytes of nested optionals overflow the stack and abort the whole
//! process (a stack overflow is not a panic; `catch_unwind` cannot stop it). These tests
//! send a full 16 MiB frame of nested optionals:
//!
//! * to a real `Server`: the call gets `BadArguments` while an honest client, calling
//!   all along, keeps being served;
//! * to a real `Client` (from a raw hostile server): the call fails with an `XdrError`;
//!
//! and check that a value far deeper than the limit, built locally, drops without
//! recursion (on a thread with a small stack).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rpc_core::frame::{Frame, FrameHeader, FrameKind};
use rpc_core::xdr::{XdrError, DEFAULT_MAX_DEPTH};
use rpc_core::{CallContext, CallOptions, Client, RpcError, Server, Status};
use rpc_transport_tcp::codec::FrameDecoder;
use rpc_transport_tcp::{TcpChannel, TcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod deep {
    rpc_macros::idl!(
        "deep",
        r#"
        /// A singly linked list: the XDR idiom for a list, and a recursive type.
        struct Node {
          int value;
          Node *next;
        };

        /// Two types that contain each other.
        struct Ping { Pong *pong; int n; };
        struct Pong { Ping ping<>; };

        /// A tree through an array, and a union arm.
        union Tree switch (int kind) {
          case 0: void;
          case 1: Tree children<>;
          default: Tree *only;
        };

        interface Deep version 1 {
            /// The list's length.
            int length(Node *head);
            /// Returns `x`.
            int ping(int x);
        };
        "#
    );
}

use deep::{DeepClient, DeepServer, Node};

/// The test service: counts a list without recursion.
struct DeepService;

impl deep::Deep for DeepService {
    async fn length(&self, _ctx: &CallContext, head: Option<Node>) -> Result<i32, Status> {
        let mut n = 0;
        let mut at = head.as_ref();
        while let Some(node) = at {
            n += 1;
            at = node.next.as_deref();
        }
        Ok(n)
    }

    async fn ping(&self, _ctx: &CallContext, x: i32) -> Result<i32, Status> {
        Ok(x)
    }
}

/// The TCP transport's default frame payload limit.
const FRAME: usize = 16 << 20;

/// A `Node *` of as many levels as fit in `len` bytes: (present, value) pairs, then
/// absent.
fn nested_optionals(len: usize) -> Bytes {
    let levels = (len - 4) / 8;
    let mut b = BytesMut::with_capacity(len);
    for i in 0..levels {
        b.put_u32(1);
        b.put_i32(i as i32);
    }
    b.put_u32(0);
    b.freeze()
}

const LIMIT: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_bad_arguments_to_a_16_mib_frame_of_nested_optionals() {
    let listener = TcpListener::bind("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let server = Server::builder()
        .workers(2)
        .add_service(DeepServer::new(DeepService))
        .serve(listener)
        .unwrap();
    let addr = server.local_addr();

    // The honest client calls all along, on its own connection.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let honest = tokio::spawn({
        let (stop, served) = (stop.clone(), served.clone());
        async move {
            let client = DeepClient::new(TcpChannel::new(addr));
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) || i < 50 {
                let got = bounded("honest call", client.ping(i)).await;
                assert_eq!(got.unwrap(), i, "the honest client must be served");
                served.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }
    });

    let payload = nested_optionals(FRAME);
    let attacker = Client::new(TcpChannel::new(addr));
    for _ in 0..3 {
        let sent = payload.clone();
        let result = bounded(
            "hostile call",
            attacker.call(
                &deep::DEEP_INTERFACE,
                &deep::DEEP_PROCEDURES[0],
                &CallOptions::default(),
                move |w| {
                    w.buf_mut().extend_from_slice(&sent);
                    Ok(())
                },
                rpc_core::client::decode_with::<i32>,
            ),
        )
        .await;
        match result {
            Err(RpcError::BadArguments { message }) => assert!(
                message.contains(&format!("limit of {DEFAULT_MAX_DEPTH} levels")),
                "{message}"
            ),
            other => panic!("expected BadArguments, got {other:?}"),
        }
    }

    // An honest list as deep as the limit allows still works: one level per optional.
    let mut next = None;
    for i in 1..DEFAULT_MAX_DEPTH as i32 {
        next = Some(Box::new(Node { value: i, next }));
    }
    let head = Some(Node { value: 0, next });
    let honest_deep = DeepClient::new(TcpChannel::new(addr));
    let len = bounded("deep honest call", honest_deep.length(head)).await;
    assert_eq!(len.unwrap(), DEFAULT_MAX_DEPTH as i32);

    stop.store(true, Ordering::SeqCst);
    bounded("honest client", honest).await.unwrap();
    assert!(served.load(Ordering::SeqCst) >= 50);
    server.shutdown().await;
}

/// A raw server that answers every call with a `Reply` carrying `payload`.
async fn hostile_server(payload: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut decoder = FrameDecoder::new(FRAME as u32);
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(call)) => {
                    let header = FrameHeader::answer(&call.header, FrameKind::Reply, 1);
                    let reply = Frame::new(header, payload.clone()).to_bytes().unwrap();
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
                Ok(None) => match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                },
                Err(_) => return,
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gets_an_xdr_error_for_a_reply_of_nested_optionals() {
    // `Node *` as the result of a procedure: the client decodes it with the limit.
    let addr = hostile_server(nested_optionals(FRAME)).await;
    let client = Client::new(TcpChannel::new(addr));
    let result = bounded(
        "call to the hostile server",
        client.call(
            &deep::DEEP_INTERFACE,
            &deep::DEEP_PROCEDURES[1],
            &CallOptions::default(),
            |w| {
                w.put_i32(1);
                Ok(())
            },
            rpc_core::client::decode_with::<Option<Node>>,
        ),
    )
    .await;
    match result {
        Err(RpcError::Decode(XdrError::DepthExceeded { limit })) => {
            assert_eq!(limit, DEFAULT_MAX_DEPTH)
        }
        other => panic!("expected an XdrError, got {other:?}"),
    }
}

/// Runs `f` on a thread with a 256 KiB stack: far too small for a recursive drop of
/// anything deep.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .expect("the thread ran to completion");
}

#[test]
fn a_million_deep_list_drops_without_recursion() {
    on_small_stack(|| {
        let mut head: Option<Box<Node>> = None;
        for i in 0..1_000_000 {
            head = Some(Box::new(Node {
                value: i,
                next: head,
            }));
        }
        drop(head);
    });
}

#[test]
fn mutually_recursive_types_and_trees_drop_without_recursion() {
    use deep::{Ping, Pong, Tree};
    on_small_stack(|| {
        let mut ping = Ping { pong: None, n: 0 };
        for n in 1..1_000_000 {
            ping = Ping {
                pong: Some(Pong { ping: vec![ping] }),
                n,
            };
        }
        drop(ping);

        let mut tree = Tree::Case0;
        for i in 0..1_000_000 {
            tree = if i % 2 == 0 {
                Tree::Children(vec![tree, Tree::Case0])
            } else {
                Tree::Default {
                    discriminant: 7,
                    value: Some(Box::new(tree)),
                }
            };
        }
        drop(tree);
    });
}

#[test]
fn decoded_values_keep_their_contents() {
    // The non-recursive drop only runs when a value is dropped: decoding, cloning and
    // comparing see whole values.
    let bytes = rpc_core::xdr::to_bytes(&Node {
        value: 1,
        next: Some(Box::new(Node {
            value: 2,
            next: None,
        })),
    })
    .unwrap();
    let back: Node = rpc_core::xdr::from_bytes(&bytes).unwrap();
    let copy = back.clone();
    assert_eq!(back, copy);
    assert_eq!(back.next.as_ref().map(|n| n.value), Some(2));
    assert_eq!(rpc_core::xdr::to_bytes(&copy).unwrap(), bytes);
}
