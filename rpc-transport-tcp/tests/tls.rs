//! TLS over TCP, with certificates generated here (rcgen): calls over a valid chain
//! (through a relay that records every byte: no plaintext on the wire), and each way the
//! handshake must fail — a wrong CA, an expired certificate, a wrong host name, a
//! missing or untrusted client certificate under mutual TLS — named in the error; a
//! client that never finishes its handshake is cut off without holding up others; a
//! client reconnects over TLS to a restarted server.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rpc_core::client::{ClientConfig, RetryPolicy};
use rpc_core::server::{decode_args, encode_result, ServerHandle, Service, ServiceFuture};
use rpc_core::transport::Listener;
use rpc_core::{CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, RpcError, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener, TlsClient, TlsServer};
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
