//! ONC RPC over TCP: our unchanged server behind `OncTcpListener`, called by our client
//! through `OncTcpChannel`, by hand-built RFC 5531 records (so the server is checked
//! without our client), and by `rpcinfo` (libtirpc) when it is installed.
//!
//! `rpcinfo -a ADDR -T tcp PROG VERS` pings procedure 0. `rpcinfo` missing: the test prints SKIPPED, unless `RPC_REQUIRE_ONC_PEERS=1`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rpc_core::onc::{
    self, AcceptStat, AuthSys, OncCall, OncMessage, OncReply, OpaqueAuth, RecordDecoder,
    RejectStat, ReplyBody,
};
use rpc_core::server::{bad_arguments, encode_result, ServerHandle, Service, ServiceFuture};
use rpc_core::xdr::XdrReader;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, RpcError, Server, Status,
};
use rpc_transport_tcp::{OncTcpChannel, OncTcpConfig, OncTcpListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(20);
const PROG: u32 = 0x2000_0101;

static PROCS: [ProcedureInfo; 3] = [
    ProcedureInfo {
        name: "add",
        number: 1,
        oneway: false,
        idempotent: true,
    },
    ProcedureInfo {
        name: "whoami",
        number: 2,
        oneway: false,
        idempotent: true,
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

static CALC_V2: InterfaceInfo = InterfaceInfo {
    name: "Calc",
    id: PROG,
    version: 2,
    procedures: &PROCS,
    default_semantics: None,
};

/// `add(int, int) -> int`; `whoami() -> (uid, machinename)` from the AUTH_SYS
/// credential (uid 0xffffffff without one); `fail()` answers an application error.
struct Calc;

impl Service for Calc {
    fn info(&self) -> &'static InterfaceInfo {
        &CALC
    }

    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture {
        let creds = ctx.credentials().map(AuthSys::parse);
        Box::pin(async move {
            match procedure {
                1 => {
                    let mut r = XdrReader::new(&args);
                    let (a, b) = (r.get_i32(), r.get_i32());
                    let (a, b) = (a.map_err(bad_arguments)?, b.map_err(bad_arguments)?);
                    r.finish().map_err(bad_arguments)?;
                    encode_result(|w| {
                        w.put_i32(a.wrapping_add(b));
                        Ok(())
                    })
                }
                2 => {
                    let (uid, host) = match creds {
                        Some(Ok(a)) => (a.uid, a.machinename),
                        _ => (u32::MAX, String::new()),
                    };
                    encode_result(|w| {
                        w.put_u32(uid);
                        w.put_string(&host, 255)
                    })
                }
                _ => Err(Status::application(7, "fails on purpose")),
            }
        })
    }
}

async fn serve() -> (ServerHandle, SocketAddr) {
    let listener = OncTcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc_core::transport::Listener::local_addr(&listener);
    let server = Server::builder().add_service(Calc).serve(listener).unwrap();
    (server, addr)
}

fn add_args(a: i32, b: i32) -> Vec<u8> {
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_through_onc_tcp() {
    let (server, addr) = serve().await;
    let client = Client::new(OncTcpChannel::new(addr));
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

    // AUTH_SYS credentials reach the handler.
    let cred = AuthSys {
        stamp: 1,
        machinename: "box".into(),
        uid: 1234,
        gid: 5,
        gids: vec![5, 6],
    };
    let with_cred = opts.clone().credentials(cred.to_credentials().unwrap());
    let who = client
        .call(
            &CALC,
            &PROCS[1],
            &with_cred,
            |_| Ok(()),
            |r| Ok((r.get_u32()?, r.get_string(255)?)),
        )
        .await
        .unwrap();
    assert_eq!(who, (1234, "box".to_owned()));
    let anon = client
        .call(
            &CALC,
            &PROCS[1],
            &opts,
            |_| Ok(()),
            |r| Ok((r.get_u32()?, r.get_string(255)?)),
        )
        .await;
    assert_eq!(anon.unwrap(), (u32::MAX, String::new()));

    // Errors come back typed.
    static MISSING: ProcedureInfo = ProcedureInfo {
        name: "missing",
        number: 9,
        oneway: false,
        idempotent: true,
    };
    let e = client
        .call(&CALC, &MISSING, &opts, |_| Ok(()), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::UnknownProcedure { procedure: 9 }),
        "{e:?}"
    );
    let e = client
        .call(&CALC_V2, &PROCS[0], &opts, |_| Ok(()), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::VersionMismatch { low: 1, high: 1 }),
        "{e:?}"
    );
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
    let e = client
        .call(&CALC, &PROCS[2], &opts, |_| Ok(()), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Internal { .. }), "{e:?}");
    let other = InterfaceInfo {
        id: 0x2000_0999,
        ..CALC
    };
    let other: &'static InterfaceInfo = Box::leak(Box::new(other));
    let e = client
        .call(other, &PROCS[0], &opts, |_| Ok(()), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RpcError::UnknownInterface { id: 0x2000_0999 }),
        "{e:?}"
    );
    server.shutdown().await;
}

/// One raw ONC connection.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: RecordDecoder,
}

impl Raw {
    async fn open(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            decoder: RecordDecoder::default(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next reply, or `None` if the server closed the connection.
    async fn reply(&mut self) -> Option<OncReply> {
        loop {
            if let Some(record) = self.decoder.decode(&mut self.buf).unwrap() {
                match onc::decode_message(&record).unwrap() {
                    OncMessage::Reply(r) => return Some(r),
                    OncMessage::Call(c) => panic!("server sent a call {c:?}"),
                }
            }
            let n = tokio::time::timeout(LIMIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("an answer in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn call(&mut self, call: &OncCall) -> OncReply {
        let bytes = onc::encode_record(&onc::encode_call(call).unwrap());
        self.send(&bytes).await;
        self.reply()
            .await
            .expect("a reply, not a closed connection")
    }
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
async fn hand_built_records_get_rfc_answers() {
    let (server, addr) = serve().await;
    let mut raw = Raw::open(addr).await;
    let ok = raw.call(&call(10, 1, 1, &add_args(2, 3))).await;
    assert_eq!(ok.xid, 10);
    assert_eq!(
        ok.body,
        accepted(AcceptStat::Success(Bytes::from_static(&[0, 0, 0, 5])))
    );
    // The NULL procedure of a hosted program.
    assert_eq!(
        raw.call(&call(11, 1, 0, &[])).await.body,
        accepted(AcceptStat::Success(Bytes::new()))
    );
    assert_eq!(
        raw.call(&call(12, 7, 0, &[])).await.body,
        accepted(AcceptStat::ProgMismatch { low: 1, high: 1 })
    );
    assert_eq!(
        raw.call(&call(13, 1, 99, &[])).await.body,
        accepted(AcceptStat::ProcUnavail)
    );
    assert_eq!(
        raw.call(&call(14, 1, 1, &[0, 0, 0, 1])).await.body,
        accepted(AcceptStat::GarbageArgs)
    );
    assert_eq!(
        raw.call(&call(15, 1, 3, &[])).await.body,
        accepted(AcceptStat::SystemErr)
    );
    let mut unknown = call(16, 1, 0, &[]);
    unknown.prog = 0x2000_0999;
    assert_eq!(
        raw.call(&unknown).await.body,
        accepted(AcceptStat::ProgUnavail)
    );
    let mut v3 = call(17, 1, 0, &[]);
    v3.rpcvers = 3;
    assert_eq!(
        raw.call(&v3).await.body,
        ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 })
    );
    // A call split over three fragments (one of them empty).
    let message = onc::encode_call(&call(18, 1, 1, &add_args(-1, -1))).unwrap();
    let mut rec = Vec::new();
    rec.extend_from_slice(&10u32.to_be_bytes());
    rec.extend_from_slice(&message[..10]);
    rec.extend_from_slice(&0u32.to_be_bytes());
    rec.extend_from_slice(&(onc::LAST_FRAGMENT | (message.len() as u32 - 10)).to_be_bytes());
    rec.extend_from_slice(&message[10..]);
    raw.send(&rec).await;
    let r = raw.reply().await.unwrap();
    assert_eq!(
        (r.xid, r.body),
        (
            18,
            accepted(AcceptStat::Success(Bytes::from_static(&[
                0xff, 0xff, 0xff, 0xfe
            ])))
        )
    );
    // A retransmitted xid is answered from the reply cache, identically.
    let again = raw.call(&call(10, 1, 1, &add_args(2, 3))).await;
    assert_eq!(again, ok);

    // A truncated call (a complete record holding half a call header): closed.
    let message = onc::encode_call(&call(19, 1, 1, &[])).unwrap();
    raw.send(&onc::encode_record(&message[..14])).await;
    assert_eq!(raw.reply().await, None);

    // A record mark beyond the limit: closed without waiting for the data.
    let mut raw = Raw::open(addr).await;
    raw.send(&(onc::LAST_FRAGMENT | 0x7fff_0000).to_be_bytes())
        .await;
    assert_eq!(raw.reply().await, None);

    // Empty non-last fragments forever: closed once the fragment limit is reached.
    let mut raw = Raw::open(addr).await;
    let zeros = vec![0u8; 4 * (onc::DEFAULT_MAX_FRAGMENTS + 1)];
    raw.send(&zeros).await;
    assert_eq!(raw.reply().await, None);

    // A REPLY sent to the server: closed.
    let mut raw = Raw::open(addr).await;
    let reply = onc::encode_reply(&OncReply::accepted(1, AcceptStat::ProgUnavail)).unwrap();
    raw.send(&onc::encode_record(&reply)).await;
    assert_eq!(raw.reply().await, None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_record_times_out() {
    let listener = OncTcpListener::bind_with("127.0.0.1:0", {
        let mut c = OncTcpConfig::default();
        c.record_timeout = Duration::from_millis(300);
        c
    })
    .await
    .unwrap();
    let addr = rpc_core::transport::Listener::local_addr(&listener);
    let server = Server::builder().add_service(Calc).serve(listener).unwrap();
    let mut raw = Raw::open(addr).await;
    // The mark promises 100 bytes; 10 come.
    raw.send(&(onc::LAST_FRAGMENT | 100).to_be_bytes()).await;
    raw.send(&[0; 10]).await;
    let started = std::time::Instant::now();
    assert_eq!(raw.reply().await, None);
    assert!(started.elapsed() < Duration::from_secs(10));
    server.shutdown().await;
}

/// Whether ONC peer tools must be there (CI) or may be missing (skip).
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
async fn rpcinfo_pings_over_tcp() {
    let Some(rpcinfo) = find_tool("rpcinfo") else {
        assert!(
            !require_peers(),
            "rpcinfo is missing and RPC_REQUIRE_ONC_PEERS=1"
        );
        eprintln!("SKIPPED: rpcinfo not installed (Debian package rpcbind)");
        return;
    };
    let (server, addr) = serve().await;
    // `-a` with a universal address (h1.h2.h3.h4.p1.p2) pings without asking rpcbind
    // (`-n port` still asks it).
    let port = format!("127.0.0.1.{}.{}", addr.port() >> 8, addr.port() & 0xff);
    let prog = PROG.to_string();
    let run = |vers: &'static str| {
        let (rpcinfo, port, prog) = (rpcinfo.clone(), port.clone(), prog.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("timeout")
                .args(["20"])
                .arg(&rpcinfo)
                .args(["-a", &port, "-T", "tcp", &prog, vers])
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
    // A version not hosted: rpcinfo reports the mismatch and fails.
    let out = run("2").await.unwrap();
    assert!(!out.status.success(), "{out:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorizer_refusals_are_auth_errors() {
    // `whoami` needs AUTH_SYS, and not uid 0.
    let listener = OncTcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = rpc_core::transport::Listener::local_addr(&listener);
    let server = Server::builder()
        .add_service(Calc)
        .authorize(|req: &rpc_core::server::AuthRequest<'_>| {
            if req.target().procedure.number != 2 {
                return Ok(());
            }
            match req.credentials().map(AuthSys::parse) {
                Some(Ok(a)) if a.uid == 0 => Err(Status::permission_denied("no root")),
                Some(Ok(_)) => Ok(()),
                _ => Err(Status::unauthenticated("AUTH_SYS needed")),
            }
        })
        .serve(listener)
        .unwrap();
    let mut raw = Raw::open(addr).await;
    let with_uid = |xid, uid| OncCall {
        cred: AuthSys {
            uid,
            machinename: "h".into(),
            ..AuthSys::default()
        }
        .to_auth()
        .unwrap(),
        ..call(xid, 1, 2, &[])
    };
    assert_eq!(
        raw.call(&call(1, 1, 2, &[])).await.body,
        ReplyBody::Denied(RejectStat::AuthError(onc::AUTH_BADCRED))
    );
    assert_eq!(
        raw.call(&with_uid(2, 0)).await.body,
        ReplyBody::Denied(RejectStat::AuthError(onc::AUTH_TOOWEAK))
    );
    let ok = raw.call(&with_uid(3, 77)).await;
    let ReplyBody::Accepted {
        stat: AcceptStat::Success(results),
        ..
    } = ok.body
    else {
        panic!("{ok:?}");
    };
    assert_eq!(&results[..4], &77u32.to_be_bytes());
    // Our client sees the refusal typed.
    let client = Client::new(OncTcpChannel::new(addr));
    let e = client
        .call(
            &CALC,
            &PROCS[1],
            &CallOptions::new().timeout(LIMIT),
            |_| Ok(()),
            |r| r.get_u32(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RpcError::Unauthenticated { .. }), "{e:?}");
    server.shutdown().await;
}
