//! TLS over TCP, with certificates generated here (rcgen): calls over a valid chain
//! (through a relay that records every byte: no plaintext on the wire), and each way the
//! handshake must fail — a wrong CA, an expired certificate, a wrong host name, a
//! missing or untrusted client certificate under mutual TLS — named in the error; a
//! client that never finishes its handshake is cut off without holding up others; a
//! client reconnects over TLS to a restarted server. Under mutual TLS the client
//! certificate is the connection's principal, and two clients with different
//! certificates cannot touch each other's calls by sharing a client id.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rpc_core::client::{ClientConfig, RetryPolicy};
use rpc_core::frame::{Frame, FrameHeader, FrameKind, Semantics};
use rpc_core::server::{decode_args, encode_result, ServerHandle, Service, ServiceFuture};
use rpc_core::transport::{Channel, Connection, FrameReceiver, Listener};
use rpc_core::xdr::XdrReader;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, Principal, ProcedureInfo, RpcError, Server,
    Status,
};
use rpc_transport_tcp::{
    certificate_principal, TcpChannel, TcpFrameReceiver, TcpListener, TlsClient, TlsServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

static PROCS: [ProcedureInfo; 1] = [ProcedureInfo {
    name: "echo",
    number: 1,
    oneway: false,
    idempotent: true,
}];

static ECHO: InterfaceInfo = InterfaceInfo {
    name: "Echo",
    id: 0x5000_0020,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// `echo(opaque) -> opaque`.
struct EchoSvc;

impl Service for EchoSvc {
    fn info(&self) -> &'static InterfaceInfo {
        &ECHO
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let arg = decode_args(&args, |r| r.get_opaque(1 << 20));
        Box::pin(async move {
            let data = arg?;
            encode_result(|w| w.put_opaque(&data, 1 << 20))
        })
    }
}

async fn echo(client: &Client<TcpChannel>, data: &[u8]) -> Result<Bytes, RpcError> {
    client
        .call(
            &ECHO,
            &PROCS[0],
            &CallOptions::new().timeout(Duration::from_secs(10)),
            |w| w.put_opaque(data, 1 << 20),
            |r| r.get_opaque(1 << 20),
        )
        .await
}

/// A CA, and what it can issue.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Identity {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate for `names` (DNS names or IP addresses).
    fn issue(&self, names: &[&str], expired: bool) -> Identity {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

async fn tls_server(tls: TlsServer) -> (ServerHandle, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(tls);
    let server = serve(listener);
    let addr = server.local_addr();
    (server, addr)
}

/// The echo server on `listener`.
fn serve(listener: TcpListener) -> ServerHandle {
    Server::builder()
        .add_service(EchoSvc)
        .serve(listener)
        .unwrap()
}

fn client(channel: TcpChannel) -> Client<TcpChannel> {
    // Fail at the first error: the test wants the reason, not the retries.
    Client::with_config(channel, ClientConfig::default().retry(RetryPolicy::never()))
}

/// Forwards one connection to `to`, recording every byte both ways.
async fn relay(to: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = front.accept().await {
            let outbound = TcpStream::connect(to).await.unwrap();
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let r1 = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n @ 1..) = ri.read(&mut buf).await {
                    r1.lock().unwrap().extend_from_slice(&buf[..n]);
                    if wo.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let r2 = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n @ 1..) = ro.read(&mut buf).await {
                    r2.lock().unwrap().extend_from_slice(&buf[..n]);
                    if wi.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_over_a_valid_chain_and_the_wire_shows_no_plaintext() {
    let ca = Ca::new("test CA");
    let id = ca.issue(&["localhost", "127.0.0.1"], false);
    let tls = TlsServer::builder(id.cert.as_bytes(), id.key.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (server, addr) = tls_server(tls).await;
    let (relayed, seen) = relay(addr).await;
    let client_tls = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    // Verified as the IP address the channel names (an IP SAN).
    let c = client(TcpChannel::new(relayed).with_tls(client_tls.clone()));
    let secret = b"the-plaintext-argument-0123456789".repeat(40);
    for _ in 0..5 {
        assert_eq!(&bounded(echo(&c, &secret)).await.unwrap()[..], &secret[..]);
    }
    let wire = seen.lock().unwrap().clone();
    assert!(
        wire.len() > 5 * secret.len(),
        "the relay saw {} bytes",
        wire.len()
    );
    assert!(
        !contains(&wire, b"the-plaintext-argument"),
        "plaintext on the wire"
    );
    assert!(!contains(&wire, b"XRPC"), "a frame header on the wire");
    // And by host name (DNS SAN, SNI "localhost").
    let by_name =
        client(TcpChannel::new(format!("localhost:{}", addr.port())).with_tls(client_tls));
    assert_eq!(&bounded(echo(&by_name, b"hi")).await.unwrap()[..], b"hi");
    server.shutdown().await;
}

/// The error of one call to a TLS server at `addr` with `tls`, as a string.
async fn failure(addr: String, tls: TlsClient) -> String {
    let c = client(TcpChannel::new(addr).with_tls(tls));
    let err = bounded(echo(&c, b"x")).await.unwrap_err();
    assert!(
        matches!(
            err,
            RpcError::Unreachable(_) | RpcError::Transport(_) | RpcError::OutcomeUnknown(_)
        ),
        "{err:?}"
    );
    eprintln!("refused: {err}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_server_certificate_fails_naming_the_reason() {
    let ca = Ca::new("test CA");
    let other_ca = Ca::new("another CA");
    let good = ca.issue(&["localhost", "127.0.0.1"], false);
    let expired = ca.issue(&["localhost", "127.0.0.1"], true);
    let trusting = |ca: &Ca| {
        TlsClient::builder()
            .ca_certificates(ca.pem().as_bytes())
            .unwrap()
            .build()
            .unwrap()
    };
    let serve = |id: &Identity| {
        TlsServer::builder(id.cert.as_bytes(), id.key.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    };

    let (server, addr) = tls_server(serve(&good)).await;
    let e = failure(addr.to_string(), trusting(&other_ca)).await;
    assert!(e.contains("UnknownIssuer"), "wrong CA: {e}");
    let wrong_name = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .unwrap()
        .server_name("not-this-server.example")
        .build()
        .unwrap();
    let e = failure(addr.to_string(), wrong_name).await;
    assert!(e.contains("not valid for name"), "wrong host name: {e}");
    // The right CA and name still work on the same server.
    let ok = client(TcpChannel::new(addr).with_tls(trusting(&ca)));
    assert!(bounded(echo(&ok, b"x")).await.is_ok());
    server.shutdown().await;

    let (server, addr) = tls_server(serve(&expired)).await;
    let e = failure(addr.to_string(), trusting(&ca)).await;
    assert!(
        e.contains("certificate expired"),
        "expired certificate: {e}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_missing_or_untrusted_client_certificate() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    let server_id = ca.issue(&["localhost", "127.0.0.1"], false);
    let tls = TlsServer::builder(server_id.cert.as_bytes(), server_id.key.as_bytes())
        .unwrap()
        .client_ca_certificates(client_ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (server, addr) = tls_server(tls).await;
    let addr = addr.to_string();
    let with_identity = |id: Option<&Identity>| {
        let b = TlsClient::builder()
            .ca_certificates(ca.pem().as_bytes())
            .unwrap();
        let b = match id {
            Some(id) => b.identity(id.cert.as_bytes(), id.key.as_bytes()).unwrap(),
            None => b,
        };
        b.build().unwrap()
    };

    let e = failure(addr.clone(), with_identity(None)).await;
    assert!(
        e.contains("CertificateRequired"),
        "no client certificate: {e}"
    );
    let stranger = stranger_ca.issue(&["client"], false);
    let e = failure(addr.clone(), with_identity(Some(&stranger))).await;
    assert!(e.contains("UnknownCA"), "untrusted client certificate: {e}");
    let member = client_ca.issue(&["client"], false);
    let ok = client(TcpChannel::new(addr).with_tls(with_identity(Some(&member))));
    assert_eq!(&bounded(echo(&ok, b"in")).await.unwrap()[..], b"in");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_handshake_is_cut_off_and_holds_up_no_one() {
    let ca = Ca::new("test CA");
    let id = ca.issue(&["127.0.0.1"], false);
    let tls = TlsServer::builder(id.cert.as_bytes(), id.key.as_bytes())
        .unwrap()
        .handshake_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(tls);
    let addr = listener.local_addr();
    let stats = listener.handshake_stats_handle();
    let server = serve(listener);
    // Connections that say nothing, and one that is not TLS at all.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0x58; 64]).await.unwrap();
    // An honest client is served at once meanwhile.
    let client_tls = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let c = client(TcpChannel::new(addr).with_tls(client_tls));
    assert_eq!(&bounded(echo(&c, b"first")).await.unwrap()[..], b"first");
    // The silent ones are disconnected by the timeout.
    for s in &mut silent {
        let mut buf = [0u8; 1];
        let n = bounded(s.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0, "a silent client's connection is closed");
    }
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let s = stats.snapshot();
        if s.timed_out >= 8 && s.failed >= 1 {
            assert_eq!(s.completed, 1, "{s:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnects_over_tls_to_a_restarted_server() {
    let ca = Ca::new("test CA");
    let id = ca.issue(&["127.0.0.1"], false);
    let tls = || {
        TlsServer::builder(id.cert.as_bytes(), id.key.as_bytes())
            .unwrap()
            .build()
            .unwrap()
    };
    let (server, addr) = tls_server(tls()).await;
    let client_tls = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    // Default retry policy and reconnect backoff.
    let c = Client::new(TcpChannel::new(addr).with_tls(client_tls));
    assert_eq!(&bounded(echo(&c, b"before")).await.unwrap()[..], b"before");
    server.shutdown().await;
    let server = serve(TcpListener::bind(addr).await.unwrap().with_tls(tls()));
    assert_eq!(&bounded(echo(&c, b"after")).await.unwrap()[..], b"after");
    assert!(c.stats().connects >= 2, "{:?}", c.stats());
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Principals: a verified client certificate names the peer, and the server keys the
// reply cache, low-water marks and cancels by (principal, client id). Two mTLS clients
// (alice.test, bob.test) on raw frame connections; bob copies alice's client id.

static WHO_PROCS: [ProcedureInfo; 2] = [
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
];

static WHO: InterfaceInfo = InterfaceInfo {
    name: "Who",
    id: 0x5000_0021,
    version: 1,
    procedures: &WHO_PROCS,
    default_semantics: None,
};

/// What the `Who` handlers did.
#[derive(Default)]
struct Runs {
    /// Runs of `tag`.
    tag: AtomicUsize,
    /// Runs of `wait`.
    wait: AtomicUsize,
    /// Lets every `wait` return (not cancelled).
    released: AtomicBool,
    /// (principal name, argument) of every run, in order.
    log: Mutex<Vec<(String, u32)>>,
}

/// `tag(u32) -> (string principal, u32 arg, bool cancelled)`; `wait` is the same but
/// runs until its call is cancelled or `released` is set.
struct WhoSvc(Arc<Runs>);

impl Service for WhoSvc {
    fn info(&self) -> &'static InterfaceInfo {
        &WHO
    }

    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture {
        let arg = decode_args(&args, |r| r.get_u32());
        let who = ctx.principal().map(|p| p.name()).unwrap_or_default();
        let runs = self.0.clone();
        Box::pin(async move {
            let arg = arg?;
            runs.log.lock().unwrap().push((who.clone(), arg));
            let cancelled = if procedure == 2 {
                runs.wait.fetch_add(1, Ordering::SeqCst);
                let give_up = std::time::Instant::now() + LIMIT;
                loop {
                    if ctx.is_cancelled() {
                        break true;
                    }
                    if runs.released.load(Ordering::SeqCst) || std::time::Instant::now() > give_up {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } else {
                runs.tag.fetch_add(1, Ordering::SeqCst);
                false
            };
            encode_result(|w| {
                w.put_string(&who, 1024)?;
                w.put_u32(arg);
                w.put_bool(cancelled);
                Ok(())
            })
        })
    }
}

/// What a raw call got back.
#[derive(Debug, PartialEq)]
enum Answer {
    Reply {
        who: String,
        arg: u32,
        cancelled: bool,
    },
    Status(Status),
}

/// A raw frame connection over mutual TLS.
struct Raw(Connection<TcpFrameReceiver>);

/// The client id alice uses, and bob copies.
const SHARED_CLIENT: u64 = 0xA11CE;

impl Raw {
    /// An exactly-once call frame: `procedure(arg)` as `call_id` of `client`, with the
    /// low-water mark `low_water` (the lowest call id the client still waits for).
    fn call_frame(client: u64, call_id: u64, procedure: u32, arg: u32, low_water: u64) -> Frame {
        let mut header = FrameHeader::call(client, call_id, WHO.id, WHO.version, procedure);
        header.set_semantics(Semantics::ExactlyOnce);
        header.aux = low_water;
        Frame::new(header, Bytes::copy_from_slice(&arg.to_be_bytes()))
    }

    async fn send(&self, frame: Frame) {
        bounded(self.0.sender.send(frame)).await.unwrap();
    }

    /// The next frame's answer, which must be for `call_id`.
    async fn answer(&mut self, call_id: u64) -> Answer {
        let frame = bounded(self.0.receiver.recv())
            .await
            .unwrap()
            .expect("an answer before EOF");
        assert_eq!(frame.header.call_id, call_id, "{frame:?}");
        match frame.header.kind {
            FrameKind::Reply => {
                let mut r = XdrReader::new(&frame.payload);
                Answer::Reply {
                    who: r.get_string(1024).unwrap(),
                    arg: r.get_u32().unwrap(),
                    cancelled: r.get_bool().unwrap(),
                }
            }
            FrameKind::Status => Answer::Status(rpc_core::xdr::from_bytes(&frame.payload).unwrap()),
            kind => panic!("unexpected {kind:?}"),
        }
    }

    /// Sends a call and waits for its answer.
    async fn call(&mut self, call_id: u64, procedure: u32, arg: u32, low_water: u64) -> Answer {
        self.send(Raw::call_frame(
            SHARED_CLIENT,
            call_id,
            procedure,
            arg,
            low_water,
        ))
        .await;
        self.answer(call_id).await
    }

    /// A Cancel of `call_id` of the shared client id.
    async fn cancel(&self, call_id: u64) {
        let mut header = FrameHeader::call(SHARED_CLIENT, call_id, WHO.id, WHO.version, 2);
        header.kind = FrameKind::Cancel;
        self.send(Frame::new(header, Bytes::new())).await;
    }
}

fn reply(who: &str, arg: u32, cancelled: bool) -> Answer {
    Answer::Reply {
        who: who.to_owned(),
        arg,
        cancelled,
    }
}

/// A `Who` server requiring client certificates, and raw connections for alice.test
/// and bob.test (certificates from the same client CA).
async fn alice_and_bob() -> (ServerHandle, Arc<Runs>, Raw, Raw) {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let server_id = ca.issue(&["127.0.0.1"], false);
    let tls = TlsServer::builder(server_id.cert.as_bytes(), server_id.key.as_bytes())
        .unwrap()
        .client_ca_certificates(client_ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(tls);
    let addr = listener.local_addr();
    let runs = Arc::new(Runs::default());
    let server = Server::builder()
        .add_service(WhoSvc(runs.clone()))
        .serve(listener)
        .unwrap();
    let mut raws = Vec::new();
    for name in ["alice.test", "bob.test"] {
        let id = client_ca.issue(&[name], false);
        let tls = TlsClient::builder()
            .ca_certificates(ca.pem().as_bytes())
            .unwrap()
            .identity(id.cert.as_bytes(), id.key.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let conn = bounded(TcpChannel::new(addr).with_tls(tls).connect())
            .await
            .unwrap();
        raws.push(Raw(conn));
    }
    let bob = raws.pop().unwrap();
    let alice = raws.pop().unwrap();
    (server, runs, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_isolation_a_copied_client_id_does_not_read_cached_replies() {
    let (server, runs, mut alice, mut bob) = alice_and_bob().await;
    assert_eq!(
        alice.call(1, 1, 111, 0).await,
        reply("alice.test", 111, false)
    );
    // Alice's own retry is answered from the cache: the handler does not run again.
    assert_eq!(
        alice.call(1, 1, 111, 0).await,
        reply("alice.test", 111, false)
    );
    assert_eq!(runs.tag.load(Ordering::SeqCst), 1);
    // Bob sends the very same frame (alice's client id, call id and arguments): his
    // own call runs, as bob; alice's reply is not his to read.
    assert_eq!(bob.call(1, 1, 111, 0).await, reply("bob.test", 111, false));
    assert_eq!(runs.tag.load(Ordering::SeqCst), 2);
    assert_eq!(
        *runs.log.lock().unwrap(),
        [("alice.test".to_owned(), 111), ("bob.test".to_owned(), 111)]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_isolation_a_copied_client_id_does_not_pre_answer_calls() {
    let (server, runs, mut alice, mut bob) = alice_and_bob().await;
    // Bob uses alice's next call id first, with other arguments, and with the same.
    assert_eq!(bob.call(2, 1, 999, 0).await, reply("bob.test", 999, false));
    assert_eq!(bob.call(3, 1, 333, 0).await, reply("bob.test", 333, false));
    // Alice's calls run with her arguments (no mismatch, no answer of bob's).
    assert_eq!(
        alice.call(2, 1, 222, 0).await,
        reply("alice.test", 222, false)
    );
    assert_eq!(
        alice.call(3, 1, 333, 0).await,
        reply("alice.test", 333, false)
    );
    assert_eq!(runs.tag.load(Ordering::SeqCst), 4);
    assert_eq!(
        runs.log.lock().unwrap()[2..],
        [
            ("alice.test".to_owned(), 222),
            ("alice.test".to_owned(), 333)
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_isolation_a_copied_client_id_does_not_release_entries() {
    let (server, runs, mut alice, mut bob) = alice_and_bob().await;
    assert_eq!(
        alice.call(10, 1, 10, 0).await,
        reply("alice.test", 10, false)
    );
    // Bob acknowledges everything below 1,000 for alice's client id.
    assert_eq!(
        bob.call(1_000, 1, 1, 1_000).await,
        reply("bob.test", 1, false)
    );
    // Alice's retry still gets her cached reply; her handler ran once.
    assert_eq!(
        alice.call(10, 1, 10, 0).await,
        reply("alice.test", 10, false)
    );
    let alice_runs = |runs: &Runs| {
        runs.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(who, arg)| who == "alice.test" && *arg == 10)
            .count()
    };
    assert_eq!(alice_runs(&runs), 1);
    assert_eq!(runs.tag.load(Ordering::SeqCst), 2);
    // Alice's own low-water mark does release it: a retry of it is then refused.
    assert_eq!(
        alice.call(11, 1, 11, 11).await,
        reply("alice.test", 11, false)
    );
    assert_eq!(
        alice.call(10, 1, 10, 11).await,
        Answer::Status(Status::ReplyEvicted)
    );
    assert_eq!(alice_runs(&runs), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principal_isolation_a_copied_client_id_does_not_cancel_calls() {
    let (server, runs, mut alice, mut bob) = alice_and_bob().await;
    alice.send(Raw::call_frame(SHARED_CLIENT, 5, 2, 5, 0)).await;
    let started = std::time::Instant::now();
    while runs.wait.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < LIMIT, "alice's call never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Bob cancels alice's call id; his next answer shows the Cancel was read.
    bob.cancel(5).await;
    assert_eq!(bob.call(6, 1, 6, 0).await, reply("bob.test", 6, false));
    runs.released.store(true, Ordering::SeqCst);
    assert_eq!(alice.answer(5).await, reply("alice.test", 5, false));
    // Alice's own Cancel does cancel her next call.
    runs.released.store(false, Ordering::SeqCst);
    alice.send(Raw::call_frame(SHARED_CLIENT, 7, 2, 7, 0)).await;
    while runs.wait.load(Ordering::SeqCst) < 2 {
        assert!(
            started.elapsed() < LIMIT,
            "alice's second call never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    alice.cancel(7).await;
    assert_eq!(alice.answer(7).await, reply("alice.test", 7, true));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_principal_is_the_client_certificate_and_absent_without_one() {
    let ca = Ca::new("server CA");
    let server_id = ca.issue(&["127.0.0.1"], false);
    // Plain TLS (no client certificates): no principal.
    let tls = TlsServer::builder(server_id.cert.as_bytes(), server_id.key.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let mut listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_tls(tls);
    let client_tls = TlsClient::builder()
        .ca_certificates(ca.pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let channel = TcpChannel::new(listener.local_addr()).with_tls(client_tls);
    let (client, accepted) =
        bounded(async { tokio::join!(channel.connect(), listener.accept()) }).await;
    let (_client, accepted) = (client.unwrap(), accepted.unwrap());
    assert_eq!(accepted.principal, None);
    // Plain TCP: none either.
    let mut plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let channel = TcpChannel::new(plain.local_addr());
    let (client, accepted) =
        bounded(async { tokio::join!(channel.connect(), plain.accept()) }).await;
    let (_client, accepted) = (client.unwrap(), accepted.unwrap());
    assert_eq!(accepted.principal, None);
    // Through the runtime: a handler sees the certificate's name.
    let (server, runs, mut alice, _bob) = alice_and_bob().await;
    assert_eq!(alice.call(1, 1, 1, 0).await, reply("alice.test", 1, false));
    assert_eq!(runs.log.lock().unwrap()[0].0, "alice.test");
    server.shutdown().await;
}

#[test]
fn a_certificate_is_named_by_its_san_then_its_common_name_then_its_fingerprint() {
    let ca = Ca::new("naming CA");
    let der = |params: CertificateParams| {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    };
    let cert_name = |der: &[u8]| match certificate_principal(der) {
        Principal::Certificate(name) => name.to_string(),
        other => panic!("{other:?}"),
    };
    // The first DNS, URI or e-mail SAN, in the certificate's order (an IP SAN first
    // is skipped).
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![
        rcgen::SanType::IpAddress("10.0.0.1".parse().unwrap()),
        rcgen::SanType::URI("spiffe://example.test/svc".try_into().unwrap()),
        rcgen::SanType::DnsName("svc.example.test".try_into().unwrap()),
    ];
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "not-the-name");
    assert_eq!(cert_name(&der(p)), "spiffe://example.test/svc");
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![rcgen::SanType::Rfc822Name(
        "ops@example.test".try_into().unwrap(),
    )];
    assert_eq!(cert_name(&der(p)), "ops@example.test");
    // No such SAN: the subject's common name.
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "batch-worker");
    assert_eq!(cert_name(&der(p)), "batch-worker");
    // Neither: the SHA-256 fingerprint of the DER, in lowercase hex.
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    let bare = der(p);
    let digest = ring::digest::digest(&ring::digest::SHA256, &bare);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(cert_name(&bare), hex);
    // Not a certificate at all: still a name (the fingerprint), never a panic.
    assert_eq!(cert_name(b"junk").len(), 64);
}
