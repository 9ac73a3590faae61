//! ONC RPC over plain UDP: our unchanged server behind `OncUdpListener`, called by our
//! client through `OncUdpChannel`, by hand-built RFC 5531 datagrams (so the server is
//! checked without our client), by a fake server that loses and duplicates (so the
//! client's retransmission is checked), and by `rpcinfo -a ADDR -T udp PROG VERS`
//! (libtirpc) when it is installed.
//!
//! `rpcinfo` missing: the test prints SKIPPED, unless `RPC_REQUIRE_ONC_PEERS=1`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_core::onc::{
    self, AcceptStat, OncCall, OncMessage, OncReply, OpaqueAuth, RejectStat, ReplyBody,
};
use rpc_core::server::{bad_arguments, encode_result, ServerHandle, Service, ServiceFuture};
use rpc_core::xdr::XdrReader;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, RpcError, Server, Status,
};
use rpc_transport_udp::{OncUdpChannel, OncUdpConfig, OncUdpListener};
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(20);
const PROG: u32 = 0x2000_0101;

static PROCS: [ProcedureInfo; 2] = [
    ProcedureInfo {
        name: "add",
        number: 1,
        oneway: false,
        idempotent: false,
    },
    ProcedureInfo {
        name: "fail",
        number: 3,
        oneway: false,
        idempotent: true,
    },
];

static CALC: InterfaceInfo = InterfaceInfo {
    name: "Calc",
    id: PROG,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// `add(int, int) -> int` (counting its runs); `fail()` answers an application error.
struct Calc(Arc<AtomicUsize>);

impl Service for Calc {
    fn info(&self) -> &'static InterfaceInfo {
        &CALC
    }

    fn call(&self, procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let runs = self.0.clone();
        Box::pin(async move {
            if procedure != 1 {
                return Err(Status::application(7, "fails on purpose"));
            }
            let mut r = XdrReader::new(&args);
            let (a, b) = (r.get_i32(), r.get_i32());
            let (a, b) = (a.map_err(bad_arguments)?, b.map_err(bad_arguments)?);
            r.finish().map_err(bad_arguments)?;
            runs.fetch_add(1, Ordering::SeqCst);
            encode_result(|w| {
                w.put_i32(a.wrapping_add(b));
                Ok(())
            })
        })
    }
}

async fn serve() -> (ServerHandle, SocketAddr, Arc<AtomicUsize>) {
    let listener = OncUdpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc_core::transport::Listener::local_addr(&listener);
    let runs = Arc::new(AtomicUsize::new(0));
    let server = Server::builder()
        .add_service(Calc(runs.clone()))
        .serve(listener)
        .unwrap();
    (server, addr, runs)
}

fn add_args(a: i32, b: i32) -> Vec<u8> {
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

fn call(xid: u32, vers: u32, proc_: u32, args: &[u8]) -> OncCall {
    OncCall {
        xid,
        rpcvers: 2,
        prog: PROG,
        vers,
        proc_,
        cred: OpaqueAuth::none(),
        verf: OpaqueAuth::none(),
        args: Bytes::copy_from_slice(args),
    }
}

fn accepted(stat: AcceptStat) -> ReplyBody {
    ReplyBody::Accepted {
        verf: OpaqueAuth::none(),
        stat,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_through_onc_udp() {
    let (server, addr, runs) = serve().await;
    let client = Client::new(OncUdpChannel::new(addr));
    let opts = CallOptions::new().timeout(LIMIT);
    let sum = client
        .call(
            &CALC,
            &PROCS[0],
            &opts,
            |w| {
                w.put_i32(40);
                w.put_i32(2);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await
        .unwrap();
    assert_eq!(sum, 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let e = client
        .call(&CALC, &PROCS[1], &opts, |_| Ok(()), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Internal { .. }), "{e:?}");
    let e = client
        .call(
            &CALC,
            &PROCS[0],
            &opts,
            |w| {
                w.put_i32(1);
                Ok(())
            },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::BadArguments { .. }), "{e:?}");
    server.shutdown().await;
}

/// Sends `datagram` and waits up to `wait` for one reply.
async fn exchange(socket: &UdpSocket, datagram: &[u8], wait: Duration) -> Option<OncReply> {
    socket.send(datagram).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    match onc::decode_message(&Bytes::copy_from_slice(&buf[..n])).unwrap() {
        OncMessage::Reply(r) => Some(r),
        OncMessage::Call(c) => panic!("server sent a call {c:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_datagrams_get_rfc_answers() {
    let (server, addr, runs) = serve().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(addr).await.unwrap();
    let send = |c: OncCall| onc::encode_call(&c).unwrap();
    let ok = exchange(&socket, &send(call(10, 1, 1, &add_args(2, 3))), LIMIT)
        .await
        .unwrap();
    assert_eq!(ok.xid, 10);
    assert_eq!(
        ok.body,
        accepted(AcceptStat::Success(Bytes::from_static(&[0, 0, 0, 5])))
    );
    // A retransmission (same xid) is answered from the reply cache: not run again.
    let again = exchange(&socket, &send(call(10, 1, 1, &add_args(2, 3))), LIMIT)
        .await
        .unwrap();
    assert_eq!(again, ok);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let cases = [
        (
            call(11, 1, 0, &[]),
            accepted(AcceptStat::Success(Bytes::new())),
        ),
        (
            call(12, 4, 0, &[]),
            accepted(AcceptStat::ProgMismatch { low: 1, high: 1 }),
        ),
        (call(13, 1, 77, &[]), accepted(AcceptStat::ProcUnavail)),
        (call(14, 1, 1, &[0, 0]), accepted(AcceptStat::GarbageArgs)),
        (call(15, 1, 3, &[]), accepted(AcceptStat::SystemErr)),
        (
            OncCall {
                prog: 0x2000_0999,
                ..call(16, 1, 0, &[])
            },
            accepted(AcceptStat::ProgUnavail),
        ),
        (
            OncCall {
                rpcvers: 3,
                ..call(17, 1, 0, &[])
            },
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 }),
        ),
    ];
    for (c, body) in cases {
        let xid = c.xid;
        let r = exchange(&socket, &send(c), LIMIT).await.unwrap();
        assert_eq!((r.xid, r.body), (xid, body));
    }
    // Truncated calls and replies sent to the server are dropped, not answered; the
    // peer is still served afterwards.
    let whole = send(call(18, 1, 1, &add_args(1, 1)));
    for cut in [0, 3, 8, 20, 30] {
        assert_eq!(
            exchange(&socket, &whole[..cut], Duration::from_millis(150)).await,
            None
        );
    }
    let reply = onc::encode_reply(&OncReply::accepted(1, AcceptStat::ProgUnavail)).unwrap();
    assert_eq!(
        exchange(&socket, &reply, Duration::from_millis(150)).await,
        None
    );
    let r = exchange(&socket, &whole, LIMIT).await.unwrap();
    assert_eq!(r.xid, 18);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_retransmits_and_drops_duplicate_replies() {
    // A fake server: ignores the first datagram of each call, answers the second twice.
    let fake = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut log = Vec::new();
        for _ in 0..4 {
            let (n, peer) = fake.recv_from(&mut buf).await.unwrap();
            let at = Instant::now();
            let OncMessage::Call(c) =
                onc::decode_message(&Bytes::copy_from_slice(&buf[..n])).unwrap()
            else {
                panic!("not a call");
            };
            log.push((c.xid, at));
            if log.len() % 2 == 0 {
                let mut r = XdrReader::new(&c.args);
                let sum = r.get_i32().unwrap() + r.get_i32().unwrap();
                let reply = onc::encode_reply(&OncReply::accepted(
                    c.xid,
                    AcceptStat::Success(Bytes::copy_from_slice(&sum.to_be_bytes())),
                ))
                .unwrap();
                fake.send_to(&reply, peer).await.unwrap();
                fake.send_to(&reply, peer).await.unwrap();
            }
        }
        log
    });
    let mut config = OncUdpConfig::default();
    config.initial_retransmit = Duration::from_millis(200);
    let client = Client::new(OncUdpChannel::with_config(addr, config));
    let opts = CallOptions::new().timeout(LIMIT);
    let started = Instant::now();
    for (a, b) in [(1, 2), (30, 40)] {
        let sum = client
            .call(
                &CALC,
                &PROCS[0],
                &opts,
                |w| {
                    w.put_i32(a);
                    w.put_i32(b);
                    Ok(())
                },
                |r| r.get_i32(),
            )
            .await
            .unwrap();
        assert_eq!(sum, a + b);
    }
    let log = tokio::time::timeout(LIMIT, seen).await.unwrap().unwrap();
    // Each call went out twice with the same xid, the second time after the interval.
    assert_eq!(log[0].0, log[1].0);
    assert_eq!(log[2].0, log[3].0);
    assert_ne!(log[0].0, log[2].0);
    assert!(log[1].1 - log[0].1 >= Duration::from_millis(150));
    assert!(started.elapsed() < Duration::from_secs(10));
}

fn require_peers() -> bool {
    std::env::var("RPC_REQUIRE_ONC_PEERS").as_deref() == Ok("1")
}

fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcinfo_pings_over_udp() {
    let Some(rpcinfo) = find_tool("rpcinfo") else {
        assert!(
            !require_peers(),
            "rpcinfo is missing and RPC_REQUIRE_ONC_PEERS=1"
        );
        eprintln!("SKIPPED: rpcinfo not installed (Debian package rpcbind)");
        return;
    };
    let (server, addr, _) = serve().await;
    // `-a` with a universal address (h1.h2.h3.h4.p1.p2) pings without asking rpcbind.
    let uaddr = format!("127.0.0.1.{}.{}", addr.port() >> 8, addr.port() & 0xff);
    let run = |vers: &'static str| {
        let (rpcinfo, uaddr) = (rpcinfo.clone(), uaddr.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("timeout")
                .arg("20")
                .arg(&rpcinfo)
                .args(["-a", &uaddr, "-T", "udp", &PROG.to_string(), vers])
                .output()
                .unwrap()
        })
    };
    let out = run("1").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("program {PROG} version 1 ready and waiting")),
        "{stdout}"
    );
    let out = run("2").await.unwrap();
    assert!(!out.status.success(), "{out:?}");
    server.shutdown().await;
}
