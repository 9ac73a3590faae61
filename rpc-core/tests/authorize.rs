//! Per-call credentials and authorizers, over the in-process transport: a refused call
//! never runs, never decodes its arguments and never touches the reply cache; the
//! credentials reach the authorizer and the handler; the arguments after them arrive
//! intact; a malformed credentials block is refused; an authorizer can allow by the
//! connection's principal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rpc_core::client::{ClientConfig, Credentials};
use rpc_core::frame::{flags, Frame, FrameHeader, FrameKind};
use rpc_core::server::{
    decode_args, encode_result, encode_result_into, AuthRequest, BearerTokens, ServerBuilder,
    ServerHandle, Service, ServiceFuture,
};
use rpc_core::transport::{memory, Channel, FrameReceiver};
use rpc_core::xdr::{XdrReader, XdrWriter};
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, Principal, ProcedureInfo, RpcError, Semantics,
    Server, Status,
};

static PROCS: [ProcedureInfo; 2] = [
    ProcedureInfo {
        name: "pooled",
        number: 1,
        oneway: false,
        idempotent: false,
    },
    ProcedureInfo {
        name: "inline",
        number: 2,
        oneway: false,
        idempotent: false,
    },
];

static GUARDED: InterfaceInfo = InterfaceInfo {
    name: "Guarded",
    id: 0x5000_0010,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

static OPEN: InterfaceInfo = InterfaceInfo {
    name: "Open",
    id: 0x5000_0011,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// Counts every decode of its arguments and every run; `pooled(x)` and `inline(x)`
/// answer `x + len(credentials)`, so a test sees both the arguments and what the
/// handler got as credentials.
#[derive(Default)]
struct Counts {
    decodes: AtomicUsize,
    runs: AtomicUsize,
}

#[derive(Clone)]
struct Svc {
    info: &'static InterfaceInfo,
    counts: Arc<Counts>,
}

impl Svc {
    fn new(info: &'static InterfaceInfo) -> Self {
        Svc {
            info,
            counts: Arc::default(),
        }
    }

    fn decode(&self, args: &Bytes) -> Result<i32, Status> {
        self.counts.decodes.fetch_add(1, Ordering::SeqCst);
        decode_args(args, |r| r.get_i32())
    }
}

impl Service for Svc {
    fn info(&self) -> &'static InterfaceInfo {
        self.info
    }

    fn call(&self, _procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture {
        let arg = self.decode(&args);
        let counts = self.counts.clone();
        Box::pin(async move {
            let x = arg?;
            counts.runs.fetch_add(1, Ordering::SeqCst);
            let extra = ctx.credentials().map_or(0, <[u8]>::len) as i32;
            encode_result(|w| {
                w.put_i32(x + extra);
                Ok(())
            })
        })
    }

    fn is_inline(&self, procedure: u32) -> bool {
        procedure == 2
    }

    fn call_inline(
        &self,
        _procedure: u32,
        ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
        let x = self.decode(args)?;
        self.counts.runs.fetch_add(1, Ordering::SeqCst);
        let extra = ctx.credentials().map_or(0, <[u8]>::len) as i32;
        encode_result_into(out, |w| {
            w.put_i32(x + extra);
            Ok(())
        })
    }
}

async fn call(
    client: &Client<memory::MemoryChannel>,
    info: &'static InterfaceInfo,
    procedure: usize,
    options: CallOptions,
    arg: i32,
) -> Result<i32, RpcError> {
    client
        .call(
            info,
            &PROCS[procedure],
            &options.timeout(Duration::from_secs(10)),
            |w| {
                w.put_i32(arg);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await
}

/// Allows a call only when its credentials are `b"letmein"`.
fn only_letmein(req: &AuthRequest<'_>) -> Result<(), Status> {
    match req.credentials() {
        Some(b"letmein") => Ok(()),
        Some(_) => Err(Status::permission_denied("wrong password")),
        None => Err(Status::unauthenticated("no credentials")),
    }
}

/// Serves the `Guarded` interface with `builder`'s authorizers over a new in-process
/// endpoint.
fn guarded(builder: ServerBuilder) -> (Svc, memory::MemoryChannel, ServerHandle) {
    let svc = Svc::new(&GUARDED);
    let (channel, listener) = memory::endpoint(64);
    let server = builder.add_service(svc.clone()).serve(listener).unwrap();
    (svc, channel, server)
}

#[tokio::test]
async fn a_denied_call_never_runs_never_decodes_and_never_reaches_the_reply_cache() {
    let (svc, channel, server) = guarded(Server::builder().authorize(only_letmein));
    let wrong = Client::with_config(
        channel.clone(),
        ClientConfig::default().credentials(Credentials::bearer("guess")),
    );
    let anonymous = Client::new(channel.clone());
    for semantics in [
        Semantics::AtMostOnce,
        Semantics::AtLeastOnce,
        Semantics::ExactlyOnce,
    ] {
        for procedure in [0, 1] {
            let options = CallOptions::new().semantics(semantics);
            let denied = call(&wrong, &GUARDED, procedure, options.clone(), 1).await;
            assert!(
                matches!(&denied, Err(RpcError::PermissionDenied { message }) if message == "wrong password"),
                "{denied:?}"
            );
            let anon = call(&anonymous, &GUARDED, procedure, options, 1).await;
            assert!(
                matches!(&anon, Err(RpcError::Unauthenticated { .. })),
                "{anon:?}"
            );
        }
    }
    assert_eq!(svc.counts.decodes.load(Ordering::SeqCst), 0);
    assert_eq!(svc.counts.runs.load(Ordering::SeqCst), 0);
    let stats = server.stats();
    assert_eq!(stats.unauthorized, 12);
    assert_eq!(stats.calls_completed, 0);
    assert_eq!(stats.reply_cache.entries, 0, "{:?}", stats.reply_cache);
    assert_eq!(stats.reply_cache.clients, 0, "{:?}", stats.reply_cache);
    // Not retried: each refusal is one call at the server.
    assert_eq!(stats.calls_received, 12);

    // The right credentials pass, for both placements and the arguments arrive intact
    // after the credentials block (the handler adds the credentials' length).
    let right = Client::with_config(
        channel,
        ClientConfig::default().credentials(Credentials::bearer("letmein")),
    );
    for procedure in [0, 1] {
        let options = CallOptions::new().semantics(Semantics::ExactlyOnce);
        assert_eq!(
            call(&right, &GUARDED, procedure, options, 40)
                .await
                .unwrap(),
            47
        );
    }
    assert_eq!(svc.counts.runs.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn bearer_tokens_and_per_call_credentials() {
    let (svc, channel, server) =
        guarded(Server::builder().authorize(BearerTokens::new(["token-a", "token-b"])));
    let client = Client::with_config(
        channel.clone(),
        ClientConfig::default().credentials(Credentials::bearer("token-a")),
    );
    assert_eq!(
        call(&client, &GUARDED, 0, CallOptions::new(), 1)
            .await
            .unwrap(),
        8
    );
    // A call's own credentials win over the client's provider.
    let own = CallOptions::new().credentials("token-x");
    assert!(matches!(
        call(&client, &GUARDED, 0, own, 1).await,
        Err(RpcError::PermissionDenied { .. })
    ));
    let own = CallOptions::new().credentials("token-b");
    assert_eq!(call(&client, &GUARDED, 1, own, 2).await.unwrap(), 9);
    assert!(matches!(
        call(&Client::new(channel), &GUARDED, 0, CallOptions::new(), 1).await,
        Err(RpcError::Unauthenticated { .. })
    ));
    // Longer than MAX_CREDENTIALS: refused before anything is sent.
    let huge = CallOptions::new().credentials(vec![b'x'; 4097]);
    assert!(matches!(
        call(&client, &GUARDED, 0, huge, 1).await,
        Err(RpcError::Encode(_))
    ));
    assert_eq!(svc.counts.runs.load(Ordering::SeqCst), 2);
    assert_eq!(server.stats().calls_received, 4);
    server.shutdown().await;
}

#[tokio::test]
async fn an_interface_authorizer_guards_only_its_interface_and_sees_the_procedure() {
    let guarded = Svc::new(&GUARDED);
    let open = Svc::new(&OPEN);
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        // Per procedure, inside the interface's authorizer: `inline` is open to all.
        .authorize_interface(&GUARDED, |req: &AuthRequest<'_>| {
            match req.target().procedure.name {
                "inline" => Ok(()),
                _ => only_letmein(req),
            }
        })
        .add_service(guarded.clone())
        .add_service(open.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel);
    assert_eq!(
        call(&client, &OPEN, 0, CallOptions::new(), 5)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        call(&client, &GUARDED, 1, CallOptions::new(), 6)
            .await
            .unwrap(),
        6
    );
    assert!(matches!(
        call(&client, &GUARDED, 0, CallOptions::new(), 7).await,
        Err(RpcError::Unauthenticated { .. })
    ));
    assert_eq!(guarded.counts.runs.load(Ordering::SeqCst), 1);
    assert_eq!(open.counts.runs.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().unauthorized, 1);
    server.shutdown().await;
}

/// Sends one raw Call with `flags` and `payload`, returns the answer frame.
async fn raw_call(channel: &memory::MemoryChannel, extra_flags: u16, payload: Bytes) -> Frame {
    let conn = channel.connect().await.unwrap();
    let mut receiver = conn.receiver;
    let mut header = FrameHeader::call(77, 1, GUARDED.id, 1, 1);
    header.flags |= extra_flags;
    conn.sender.send(Frame::new(header, payload)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("an answer")
        .unwrap()
        .expect("the connection stays open")
}

fn status_of(frame: &Frame) -> Status {
    assert_eq!(frame.header.kind, FrameKind::Status);
    let mut r = XdrReader::new(&frame.payload);
    rpc_core::xdr::XdrDecode::decode(&mut r).unwrap()
}

#[tokio::test]
async fn a_malformed_credentials_block_is_refused_before_anything_runs() {
    let (svc, channel, server) = guarded(Server::builder().authorize(only_letmein));
    // A length beyond MAX_CREDENTIALS; a length beyond the payload; no room for the
    // length itself.
    let too_long = Bytes::from_static(&[0, 0, 0x10, 0x01, 1, 2, 3, 4]);
    let past_end = Bytes::from_static(&[0, 0, 0, 9, b'l', b'e', b't']);
    let truncated = Bytes::from_static(&[0, 0]);
    for payload in [too_long, past_end, truncated] {
        let answer = raw_call(&channel, flags::CREDENTIALS, payload).await;
        assert!(
            matches!(status_of(&answer), Status::BadArguments { ref message } if message.contains("credentials")),
            "{answer:?}"
        );
    }
    // A well-formed block with the right bytes, then the argument.
    let mut w = XdrWriter::new();
    w.put_opaque(b"letmein", rpc_core::frame::MAX_CREDENTIALS)
        .unwrap();
    w.put_i32(3);
    let answer = raw_call(&channel, flags::CREDENTIALS, w.into_bytes()).await;
    assert_eq!(answer.header.kind, FrameKind::Reply, "{answer:?}");
    assert_eq!(&answer.payload[..], &[0, 0, 0, 10]);
    // The same arguments without the flag are anonymous.
    let answer = raw_call(&channel, 0, Bytes::from_static(&[0, 0, 0, 3])).await;
    assert!(matches!(status_of(&answer), Status::Unauthenticated { .. }));
    let stats = server.stats();
    assert_eq!(stats.bad_credentials, 3);
    assert_eq!(stats.unauthorized, 1);
    assert_eq!(svc.counts.decodes.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

/// Allows only the principal `alice`; refuses other principals, and peers without one.
fn only_alice(req: &AuthRequest<'_>) -> Result<(), Status> {
    match req.principal() {
        Some(Principal::Certificate(name)) if &**name == "alice" => Ok(()),
        Some(other) => Err(Status::permission_denied(format!("{other} may not call"))),
        None => Err(Status::unauthenticated("no authenticated peer")),
    }
}

#[tokio::test]
async fn an_authorizer_allows_by_principal() {
    let (svc, channel, server) = guarded(Server::builder().authorize(only_alice));
    let as_principal =
        |name: &str| Client::new(channel.with_principal(Some(Principal::Certificate(name.into()))));
    let (alice, mallory) = (as_principal("alice"), as_principal("mallory"));
    let anonymous = Client::new(channel.clone());
    for procedure in [0, 1] {
        let options = CallOptions::new().semantics(Semantics::ExactlyOnce);
        assert_eq!(
            call(&alice, &GUARDED, procedure, options.clone(), 5)
                .await
                .unwrap(),
            5
        );
        let denied = call(&mallory, &GUARDED, procedure, options.clone(), 5).await;
        assert!(
            matches!(&denied, Err(RpcError::PermissionDenied { message }) if message == "cert:mallory may not call"),
            "{denied:?}"
        );
        let anon = call(&anonymous, &GUARDED, procedure, options, 5).await;
        assert!(
            matches!(&anon, Err(RpcError::Unauthenticated { .. })),
            "{anon:?}"
        );
    }
    // Only alice's calls ran; the refused ones never decoded their arguments.
    assert_eq!(svc.counts.runs.load(Ordering::SeqCst), 2);
    assert_eq!(svc.counts.decodes.load(Ordering::SeqCst), 2);
    assert_eq!(server.stats().unauthorized, 4);
    server.shutdown().await;
}
