//! Middleware: tower layers on the server (`ServerBuilder::layer`) and on the client
//! (`Client::layer`), and server interceptors, over the in-process transport.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use rpc_core::client::ClientCall;
use rpc_core::server::{
    decode_args, encode_result, encode_result_into, ServerCall, Service, ServiceFuture,
};
use rpc_core::transport::memory;
use rpc_core::xdr::XdrWriter;
use rpc_core::{
    CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, RpcError, Server, Status,
};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

static PROCS: [ProcedureInfo; 2] = [
    ProcedureInfo {
        name: "sleep",
        number: 1,
        oneway: false,
        idempotent: true,
    },
    ProcedureInfo {
        name: "double_inline",
        number: 2,
        oneway: false,
        idempotent: true,
    },
];

static IFACE: InterfaceInfo = InterfaceInfo {
    name: "Layered",
    id: 0x5000_0002,
    version: 1,
    procedures: &PROCS,
    default_semantics: None,
};

/// `sleep(ms) -> ms` on the pool (tracking how many run at once); `double_inline(x)`
/// inline.
#[derive(Default)]
struct State {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    pooled_runs: AtomicUsize,
}

#[derive(Clone, Default)]
struct Svc(Arc<State>);

impl std::ops::Deref for Svc {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

impl Service for Svc {
    fn info(&self) -> &'static InterfaceInfo {
        &IFACE
    }

    fn call(&self, procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
        let arg = decode_args(&args, |r| r.get_i32());
        let this = self.clone();
        Box::pin(async move {
            let arg = arg?;
            this.pooled_runs.fetch_add(1, Ordering::SeqCst);
            let value = match procedure {
                1 => {
                    let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
                    this.most_at_once.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(arg as u64)).await;
                    this.running.fetch_sub(1, Ordering::SeqCst);
                    arg
                }
                _ => arg * 2,
            };
            encode_result(|w| {
                w.put_i32(value);
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
        _ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
        let x = decode_args(args, |r| r.get_i32())?;
        encode_result_into(out, |w| {
            w.put_i32(x * 2);
            Ok(())
        })
    }
}

async fn call(
    client: &Client<memory::MemoryChannel>,
    procedure: usize,
    arg: i32,
) -> Result<i32, RpcError> {
    client
        .call(
            &IFACE,
            &PROCS[procedure],
            &CallOptions::new().timeout(Duration::from_secs(10)),
            |w| {
                w.put_i32(arg);
                Ok(())
            },
            |r| r.get_i32(),
        )
        .await
}

#[tokio::test]
async fn concurrency_limit_layer_makes_extra_calls_wait() {
    let svc = Svc::default();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .workers(8)
        .layer(ConcurrencyLimitLayer::new(2))
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel);
    let calls = (0..6).map(|_| call(&client, 0, 30));
    let results = futures_util::future::join_all(calls).await;
    assert!(
        results.iter().all(|r| *r.as_ref().unwrap() == 30),
        "{results:?}"
    );
    // Eight workers, but the layer let only two handlers run at once; the others waited.
    assert_eq!(svc.most_at_once.load(Ordering::SeqCst), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn load_shed_over_concurrency_limit_refuses_extra_calls_as_overloaded() {
    let svc = Svc::default();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .workers(8)
        .layer(
            ServiceBuilder::new()
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(1)),
        )
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    // No retry of refused calls: the client sees the shed as `Overloaded`.
    let client = Client::with_config(
        channel,
        rpc_core::client::ClientConfig::default()
            .retry(rpc_core::client::RetryPolicy::default().retry_not_executed(false)),
    );
    let calls = (0..4).map(|_| call(&client, 0, 200));
    let results = futures_util::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let shed = results
        .iter()
        .filter(|r| matches!(r, Err(RpcError::Overloaded)))
        .count();
    assert_eq!((ok, shed), (1, 3), "{results:?}");
    assert_eq!(svc.most_at_once.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn timeout_layer_turns_a_slow_handler_into_deadline_exceeded() {
    let svc = Svc::default();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .layer(TimeoutLayer::new(Duration::from_millis(50)))
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel);
    assert_eq!(call(&client, 0, 1).await.unwrap(), 1, "a fast call passes");
    let started = std::time::Instant::now();
    let slow = call(&client, 0, 5_000).await;
    assert!(matches!(slow, Err(RpcError::DeadlineExceeded)), "{slow:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the layer cut it short"
    );
    server.shutdown().await;
}

/// A server layer that counts the calls it sees and checks what its request carries.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S: tower::Service<ServerCall>> tower::Service<ServerCall> for Counting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ServerCall) -> S::Future {
        assert_eq!(call.target.interface.name, "Layered");
        assert_eq!(call.ctx.procedure(), call.target.procedure.number);
        assert_eq!(call.args.len(), 4, "the raw XDR arguments");
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.inner.call(call)
    }
}

#[tokio::test]
async fn with_a_layer_inline_procedures_go_through_it_on_the_pool() {
    let svc = Svc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let layer_seen = seen.clone();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .layer(tower::layer::layer_fn(move |inner| Counting {
            inner,
            seen: layer_seen.clone(),
        }))
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel);
    for i in 0..5 {
        assert_eq!(call(&client, 1, i).await.unwrap(), i * 2);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 5, "the layer saw every call");
    assert_eq!(server.stats().calls_inline, 0, "none ran inline");
    assert_eq!(svc.pooled_runs.load(Ordering::SeqCst), 5);
    server.shutdown().await;
}

#[tokio::test]
async fn interceptor_refuses_calls_and_keeps_inline_calls_inline() {
    let svc = Svc::default();
    let deny = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = deny.clone();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .intercept(move |ctx, target| {
            assert_eq!(target.procedure.number, ctx.procedure());
            match gate.load(Ordering::SeqCst) {
                true => Err(Status::application(
                    403,
                    format!("no to {}", target.procedure.name),
                )),
                false => Ok(()),
            }
        })
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel);
    assert_eq!(call(&client, 1, 4).await.unwrap(), 8);
    deny.store(true, Ordering::SeqCst);
    match call(&client, 1, 4).await {
        Err(RpcError::Application { code: 403, message }) => {
            assert_eq!(message, "no to double_inline")
        }
        other => panic!("expected the interceptor's status, got {other:?}"),
    }
    assert!(matches!(
        call(&client, 0, 1).await,
        Err(RpcError::Application { code: 403, .. })
    ));
    deny.store(false, Ordering::SeqCst);
    assert_eq!(call(&client, 0, 1).await.unwrap(), 1);
    let stats = server.stats();
    assert_eq!(stats.calls_inline, 2, "inline calls stayed inline");
    assert_eq!(
        svc.pooled_runs.load(Ordering::SeqCst),
        1,
        "one pooled call ran"
    );
    server.shutdown().await;
}

/// A client layer that stamps a deadline on every call that has none and counts calls.
#[derive(Clone)]
struct Stamp<S> {
    inner: S,
    seen: Arc<AtomicUsize>,
}

impl<S: tower::Service<ClientCall>> tower::Service<ClientCall> for Stamp<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ClientCall) -> S::Future {
        assert_eq!(call.target.interface.name, "Layered");
        self.seen.fetch_add(1, Ordering::SeqCst);
        call.options = call.options.timeout(Duration::from_millis(100));
        self.inner.call(call)
    }
}

#[tokio::test]
async fn client_layers_see_every_call_and_can_change_its_options() {
    let svc = Svc::default();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let layer_seen = seen.clone();
    let plain = Client::new(channel);
    let client = plain.layer(tower::layer::layer_fn(move |inner| Stamp {
        inner,
        seen: layer_seen.clone(),
    }));
    assert_eq!(call(&client, 1, 21).await.unwrap(), 42);
    assert_eq!(call(&client, 0, 1).await.unwrap(), 1);
    // The layer cut the caller's 10 s timeout to 100 ms.
    let slow = call(&client, 0, 400).await;
    assert!(matches!(slow, Err(RpcError::Timeout)), "{slow:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    // The original client has no layer.
    assert_eq!(call(&plain, 1, 1).await.unwrap(), 2);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    server.shutdown().await;
}

#[tokio::test]
async fn client_tower_layers_work_unchanged() {
    let svc = Svc::default();
    let (channel, listener) = memory::endpoint(64);
    let server = Server::builder()
        .workers(8)
        .add_service(svc.clone())
        .serve(listener)
        .unwrap();
    let client = Client::new(channel)
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(TimeoutLayer::new(Duration::from_millis(800)));
    // The concurrency limit makes the client send one call at a time (the server has
    // eight workers); each call's timeout starts once the limit lets it through.
    let calls = (0..3).map(|_| call(&client, 0, 100));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| matches!(r, Ok(100))), "{results:?}");
    assert_eq!(svc.most_at_once.load(Ordering::SeqCst), 1);
    // The timeout layer ends a call the server is slow to answer.
    let slow = call(&client, 0, 1_500).await;
    assert!(matches!(slow, Err(RpcError::Timeout)), "{slow:?}");
    // A layer's own error type becomes `RpcError::Layer`.
    let failing = Client::new(memory::endpoint(1).0).layer(tower::layer::layer_fn(|_inner| {
        tower::service_fn(|_call: ClientCall| async {
            Err::<Bytes, _>(std::io::Error::other("no budget"))
        })
    }));
    match call(&failing, 0, 1).await {
        Err(RpcError::Layer(e)) => assert_eq!(e.to_string(), "no budget"),
        other => panic!("expected a layer error, got {other:?}"),
    }
    server.shutdown().await;
}
