//! Sealed UDP (PROTOCOL.md 9.10) over real sockets on 127.0.0.1: the handshake through
//! the driver, the principal on the accepted connection, frames both ways, a capture of
//! the datagrams (through a relay) without the plaintext, and connect errors that name
//! the reason. Every test is bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::frame::{Frame, FrameHeader};
use rpc_core::server::{encode_result, AuthRequest, Service, ServiceFuture};
use rpc_core::transport::{Channel, FrameReceiver, Listener};
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, Principal, ProcedureInfo, RpcError, Server,
    Status, TransportError,
};
use rpc_transport_udp::{
    PreSharedKey, Security, StaticKeypair, UdpChannel, UdpConfig, UdpListener,
};
use tokio::net::UdpSocket;

const SECRET: &[u8] = b"the launch codes are 0000, do not tell anyone";

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(20), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

fn call_frame(call_id: u64, payload: Bytes) -> Frame {
    let mut header = FrameHeader::call(7, call_id, 0x2000_0001, 1, 3);
    header.payload_len = payload.len() as u32;
    Frame::new(header, payload)
}

/// A relay on 127.0.0.1 that forwards datagrams between one client and `server`,
/// recording every datagram it forwards.
async fn relay(server: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
    let addr = sock.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, rec) = (sock.clone(), seen.clone());
    tokio::spawn(async move {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        upstream.connect(server).await.expect("connect");
        let mut client = None;
        let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        loop {
            tokio::select! {
                r = s.recv_from(&mut a) => {
                    let Ok((n, from)) = r else { return };
                    client = Some(from);
                    rec.lock().expect("lock").push(a[..n].to_vec());
                    let _ = upstream.send(&a[..n]).await;
                }
                r = upstream.recv(&mut b) => {
                    let Ok(n) = r else { return };
                    rec.lock().expect("lock").push(b[..n].to_vec());
                    if let Some(c) = client {
                        let _ = s.send_to(&b[..n], c).await;
                    }
                }
            }
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_frames_cross_the_driver_and_the_server_sees_the_client_key() {
    let (ck, sk) = (
        StaticKeypair::generate().expect("key"),
        StaticKeypair::generate().expect("key"),
    );
    let server_cfg = UdpConfig::default().security(Security::server(sk.clone()));
    let mut listener = UdpListener::bind_with("127.0.0.1:0", server_cfg)
        .await
        .expect("bind");
    let (via, seen) = relay(listener.local_addr()).await;
    let client_cfg =
        UdpConfig::default().security(Security::client_static(ck.clone(), sk.public()));
    let channel = UdpChannel::new(via).with_config(client_cfg);
    let client = bounded("connect", channel.connect())
        .await
        .expect("connect");
    let mut server = bounded("accept", listener.accept()).await.expect("accept");
    assert_eq!(server.principal, Some(Principal::StaticKey(ck.public())));
    assert_eq!(client.principal, None);

    let big: Vec<u8> = SECRET.iter().copied().cycle().take(200_000).collect();
    client
        .sender
        .send(call_frame(1, Bytes::from(big.clone())))
        .await
        .expect("send");
    let got = bounded("recv", server.receiver.recv())
        .await
        .expect("recv")
        .expect("a frame");
    assert_eq!(got.payload, Bytes::from(big));
    server
        .sender
        .send(call_frame(2, Bytes::from_static(SECRET)))
        .await
        .expect("send");
    let mut client_rx = client.receiver;
    let back = bounded("recv back", client_rx.recv())
        .await
        .expect("recv")
        .expect("a frame");
    assert_eq!(back.payload, Bytes::from_static(SECRET));

    let seen = seen.lock().expect("lock").clone();
    assert!(seen.len() > 5, "{} datagrams", seen.len());
    for d in &seen {
        assert!(
            !d.windows(16).any(|w| w == &SECRET[..16]),
            "plaintext crossed the relay"
        );
    }
    let stats = listener.stats_handle().snapshot();
    assert_eq!(stats.handshakes_completed, 1);
    assert_eq!(stats.forged_dropped + stats.unsealed_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_a_plain_peer_fails_connect_with_an_error_naming_it() {
    let psk = |k: u8| PreSharedKey::new("svc", [k; 32]).expect("id");
    let listener = UdpListener::bind_with(
        "127.0.0.1:0",
        UdpConfig::default().security(Security::server_psk([psk(1)])),
    )
    .await
    .expect("bind");
    let addr = listener.local_addr();
    let message = |e: TransportError| format!("{e}");

    let wrong = UdpChannel::new(addr)
        .with_config(UdpConfig::default().security(Security::client_psk(psk(2))));
    let e = message(
        bounded("wrong key", wrong.connect())
            .await
            .expect_err("refused"),
    );
    assert!(e.contains("secure handshake"), "{e}");

    let plain = UdpChannel::new(addr);
    let e = message(
        bounded("plain", plain.connect())
            .await
            .expect_err("refused"),
    );
    assert!(e.contains("secure handshake"), "{e}");

    let right = UdpChannel::new(addr)
        .with_config(UdpConfig::default().security(Security::client_psk(psk(1))));
    let conn = bounded("right key", right.connect())
        .await
        .expect("connects");
    drop(conn);
    let stats = listener.stats_handle().snapshot();
    assert_eq!(
        (
            stats.handshakes_failed,
            stats.security_mismatch,
            stats.handshakes_completed
        ),
        (1, 1, 1),
        "{stats:?}"
    );
}

static WHOAMI_PROCS: [ProcedureInfo; 1] = [ProcedureInfo {
    name: "whoami",
    number: 1,
    oneway: false,
    idempotent: true,
}];

static WHOAMI: InterfaceInfo = InterfaceInfo {
    name: "WhoAmI",
    id: 0x5000_0041,
    version: 1,
    procedures: &WHOAMI_PROCS,
    default_semantics: None,
};

/// `whoami()` answers the caller's principal as the server saw it.
struct WhoAmI;

impl Service for WhoAmI {
    fn info(&self) -> &'static InterfaceInfo {
        &WHOAMI
    }

    fn call(&self, _procedure: u32, ctx: CallContext, _args: Bytes) -> ServiceFuture {
        let who = ctx.principal().map(|p| p.to_string()).unwrap_or_default();
        Box::pin(async move { encode_result(|w| w.put_string(&who, 1024)) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_sealed_udp_carry_each_clients_key_as_principal_to_handlers_and_authorizers() {
    let server_key = StaticKeypair::generate().expect("key");
    let (alice, bob) = (
        StaticKeypair::generate().expect("key"),
        StaticKeypair::generate().expect("key"),
    );
    let listener = UdpListener::bind_with(
        "127.0.0.1:0",
        UdpConfig::default().security(Security::server(server_key.clone())),
    )
    .await
    .expect("bind");
    let addr = listener.local_addr();
    let allowed = Principal::StaticKey(alice.public());
    let server = Server::builder()
        .authorize(move |req: &AuthRequest<'_>| match req.principal() {
            Some(p) if *p == allowed => Ok(()),
            other => Err(Status::permission_denied(format!("{other:?} may not call"))),
        })
        .add_service(WhoAmI)
        .serve(listener)
        .expect("serve");
    let client_for = |key: &StaticKeypair| {
        Client::new(
            UdpChannel::new(addr).with_config(
                UdpConfig::default()
                    .security(Security::client_static(key.clone(), server_key.public())),
            ),
        )
    };
    let whoami = |client: Client<UdpChannel>| async move {
        client
            .call(
                &WHOAMI,
                &WHOAMI_PROCS[0],
                &CallOptions::new(),
                |_| Ok(()),
                |r| r.get_string(1024),
            )
            .await
    };
    let got = bounded("alice calls", whoami(client_for(&alice))).await;
    assert_eq!(
        got.expect("alice may call"),
        Principal::StaticKey(alice.public()).to_string()
    );
    let refused = bounded("bob calls", whoami(client_for(&bob))).await;
    assert!(
        matches!(refused, Err(RpcError::PermissionDenied { .. })),
        "{refused:?}"
    );
    server.shutdown().await;
}
