//! `.proto` services end to end, over BOTH transports from the same test code (modules
//! `tcp` and `udp` at the bottom): gRPC's public helloworld (Greeter), health (unary
//! Check) and route guide (unary GetFeature) protos, compiled by the examples' build
//! script through `rpc_codegen::proto`; a proto service and an IDL interface served by
//! one `Server` on one port; protobuf bytes on the wire; malformed protobuf answered
//! with `BadArguments`; the blocking client.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use examples::calc::{CalcClient, CalcServer};
use examples::calc_service::CalcService;
use examples::health::health_check_response::ServingStatus;
use examples::health::{HealthCheckRequest, HealthClient, HealthServer, HEALTH_INTERFACE};
use examples::helloworld::{
    GreeterBlockingClient, GreeterClient, GreeterServer, HelloReply, HelloRequest,
    GREETER_INTERFACE,
};
use examples::proto_services::{codes, GreeterService, HealthService, RouteGuideService};
use examples::routeguide::{Point, RouteGuideClient, RouteGuideServer, ROUTE_GUIDE_INTERFACE};
use rpc_core::server::{ServerHandle, Service, ServiceFuture};
use rpc_core::transport::{Channel, Listener};
use rpc_core::xdr::XdrError;
use rpc_core::{CallContext, CallOptions, Client, InterfaceInfo, RpcError, Server, TransportError};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};

/// What a scenario needs from a transport.
trait Transport: 'static {
    type L: Listener;
    type C: Channel;
    /// A listener on a free port of 127.0.0.1.
    async fn listen() -> Result<Self::L, TransportError>;
    /// A channel to `addr`.
    fn channel(addr: SocketAddr) -> Self::C;
}

struct Tcp;
struct Udp;

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

impl Transport for Tcp {
    type L = TcpListener;
    type C = TcpChannel;

    async fn listen() -> Result<TcpListener, TransportError> {
        TcpListener::bind(any_port()).await
    }

    fn channel(addr: SocketAddr) -> TcpChannel {
        TcpChannel::new(addr)
    }
}

impl Transport for Udp {
    type L = UdpListener;
    type C = UdpChannel;

    async fn listen() -> Result<UdpListener, TransportError> {
        UdpListener::bind(any_port()).await
    }

    fn channel(addr: SocketAddr) -> UdpChannel {
        UdpChannel::new(addr)
    }
}

/// The three proto services and the calculator (an IDL interface), on one server.
async fn server<T: Transport>(health: Arc<HealthService>) -> ServerHandle {
    let listener = T::listen().await.expect("listen");
    Server::builder()
        .add_service(GreeterServer::new(GreeterService))
        .add_service(HealthServer::from_arc(health))
        .add_service(RouteGuideServer::new(
            RouteGuideService::with_sample_features(),
        ))
        .add_service(CalcServer::new(CalcService::new()))
        .serve(listener)
        .expect("serve")
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
    }
}

async fn greeter_says_hello<T: Transport>() {
    let server = server::<T>(Arc::new(HealthService::new())).await;
    let greeter = GreeterClient::new(T::channel(server.local_addr()));
    let reply = greeter.say_hello(hello("world")).await.unwrap();
    assert_eq!(reply.message, "Hello world");
    // An empty message (all fields default) is an empty payload, and still answered.
    assert_eq!(
        greeter.say_hello(hello("")).await.unwrap().message,
        "Hello "
    );
    // Calls started now and awaited later, each with its own answer.
    let handles: Vec<_> = (0..20)
        .map(|i| greeter.start_say_hello(hello(&format!("caller {i}"))))
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.await.unwrap().message, format!("Hello caller {i}"));
    }
    server.shutdown().await;
}

async fn health_check_reports_each_status<T: Transport>() {
    let health = Arc::new(HealthService::new());
    health.set_status("helloworld.Greeter", ServingStatus::Serving);
    health.set_status("routeguide.RouteGuide", ServingStatus::NotServing);
    health.set_status("legacy", ServingStatus::ServiceUnknown);
    let server = server::<T>(health.clone()).await;
    let client = HealthClient::new(T::channel(server.local_addr()));
    let check = |service: &str| {
        let client = client.clone();
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        async move { client.check(request).await.map(|r| r.status()) }
    };

    assert_eq!(check("").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        check("helloworld.Greeter").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check("routeguide.RouteGuide").await.unwrap(),
        ServingStatus::NotServing
    );
    // Every value of the enum crosses the wire, SERVICE_UNKNOWN (3) included.
    assert_eq!(
        check("legacy").await.unwrap(),
        ServingStatus::ServiceUnknown
    );
    // An unknown service fails with NOT_FOUND, as the protocol says.
    match check("no.such.Service").await {
        Err(RpcError::Application { code, message }) => {
            assert_eq!(code, codes::NOT_FOUND);
            assert_eq!(message, "unknown service `no.such.Service`");
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    // Status changes are seen by the next check.
    health.set_status("routeguide.RouteGuide", ServingStatus::Serving);
    health.set_status("helloworld.Greeter", ServingStatus::NotServing);
    assert_eq!(
        check("routeguide.RouteGuide").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        check("helloworld.Greeter").await.unwrap(),
        ServingStatus::NotServing
    );
    health.remove("legacy");
    assert!(matches!(
        check("legacy").await,
        Err(RpcError::Application {
            code: codes::NOT_FOUND,
            ..
        })
    ));
    server.shutdown().await;
}

async fn route_guide_get_feature<T: Transport>() {
    let server = server::<T>(Arc::new(HealthService::new())).await;
    let guide = RouteGuideClient::new(T::channel(server.local_addr()));
    let known = Point {
        latitude: 409_146_138,
        longitude: -746_188_906,
    };
    let patriots_path = Point {
        latitude: 407_838_351,
        longitude: -746_143_763,
    };
    let feature = guide.get_feature(patriots_path).await.unwrap();
    assert_eq!(feature.name, "Patriots Path, Mendham, NJ 07945, USA");
    assert_eq!(feature.location, Some(patriots_path));
    // No feature there: an unnamed feature at the point asked about.
    let feature = guide.get_feature(known).await.unwrap();
    assert_eq!(feature.name, "");
    assert_eq!(feature.location, Some(known));
    // Negative coordinates on both axes (varint sign extension).
    let south_west = Point {
        latitude: -1,
        longitude: i32::MIN,
    };
    assert_eq!(
        guide.get_feature(south_west).await.unwrap().location,
        Some(south_west)
    );
    server.shutdown().await;
}

async fn proto_and_idl_services_share_one_server<T: Transport>() {
    let server = server::<T>(Arc::new(HealthService::new())).await;
    let addr = server.local_addr();
    let calc = CalcClient::new(T::channel(addr));
    let greeter = GreeterClient::new(T::channel(addr));
    let guide = RouteGuideClient::new(T::channel(addr));
    for i in 0..10 {
        assert_eq!(calc.add(i, 40).await.unwrap(), i + 40);
        let reply = greeter.say_hello(hello(&format!("n{i}"))).await.unwrap();
        assert_eq!(reply.message, format!("Hello n{i}"));
    }
    let feature = guide
        .get_feature(Point {
            latitude: 408_122_808,
            longitude: -743_999_179,
        })
        .await
        .unwrap();
    assert_eq!(feature.name, "101 New Jersey 10, Whippany, NJ 07981, USA");
    assert_eq!(calc.echo("idl".into()).await.unwrap(), "idl");

    // The same runtime client (one connection) carries both kinds of stub.
    let shared = Client::new(T::channel(addr));
    let calc = CalcClient::from_client(shared.clone());
    let greeter = GreeterClient::from_client(shared);
    let (sum, reply) = tokio::join!(calc.add(1, 2), greeter.say_hello(hello("both")));
    assert_eq!(sum.unwrap(), 3);
    assert_eq!(reply.unwrap().message, "Hello both");

    let stats = server.stats();
    assert_eq!(stats.connections_accepted, 4);
    assert_eq!(stats.calls_completed, 10 + 10 + 1 + 1 + 2);
    server.shutdown().await;
}

async fn payloads_are_protobuf_bytes<T: Transport>() {
    // A hand-written call: the payload is HelloRequest{name: "world"} in protobuf
    // (field 1, wire type 2, length 5), and the reply is HelloReply's protobuf bytes.
    let server = server::<T>(Arc::new(HealthService::new())).await;
    let client = Client::new(T::channel(server.local_addr()));
    let reply = client
        .call(
            &GREETER_INTERFACE,
            &GREETER_INTERFACE.procedures[0],
            &CallOptions::new(),
            |w| {
                w.buf_mut().put_slice(b"\x0a\x05world");
                Ok(())
            },
            |r| Ok(r.take_rest()),
        )
        .await
        .unwrap();
    assert_eq!(reply, Bytes::from_static(b"\x0a\x0bHello world"));
    assert_eq!(
        <HelloReply as prost::Message>::decode(reply).unwrap(),
        HelloReply {
            message: "Hello world".to_owned()
        }
    );
    // The ids docs/PROTOCOL.md derives for these services.
    assert_eq!(GREETER_INTERFACE.id, 0x9420_1c31);
    assert_eq!(GREETER_INTERFACE.name, "helloworld.Greeter");
    assert_eq!(HEALTH_INTERFACE.id, 0xeb33_433a);
    assert_eq!(ROUTE_GUIDE_INTERFACE.id, 0x956c_7337);
    assert_eq!(
        (
            GREETER_INTERFACE.version,
            GREETER_INTERFACE.procedures[0].number
        ),
        (1, 1)
    );
    server.shutdown().await;
}

/// A raw call of `SayHello` with `payload` as its arguments.
async fn raw_say_hello<C: Channel>(client: &Client<C>, payload: &'static [u8]) -> RpcError {
    client
        .call(
            &GREETER_INTERFACE,
            &GREETER_INTERFACE.procedures[0],
            &CallOptions::new(),
            |w| {
                w.buf_mut().put_slice(payload);
                Ok(())
            },
            |r| Ok(r.take_rest()),
        )
        .await
        .expect_err("malformed protobuf must be refused")
}

async fn malformed_protobuf_is_bad_arguments<T: Transport>() {
    let server = server::<T>(Arc::new(HealthService::new())).await;
    let client = Client::new(T::channel(server.local_addr()));
    let cases: [(&[u8], &str); 3] = [
        // Field 1 claims 5 bytes, 1 follows.
        (
            b"\x0a\x05w",
            "server could not decode the arguments: invalid protobuf payload: \
             failed to decode Protobuf message: HelloRequest.name: buffer underflow",
        ),
        // A string that is not UTF-8.
        (
            b"\x0a\x01\xff",
            "server could not decode the arguments: invalid protobuf payload: \
             failed to decode Protobuf message: HelloRequest.name: invalid string value: data \
             is not UTF-8 encoded",
        ),
        // Wire type 7 does not exist.
        (
            b"\x0f",
            "server could not decode the arguments: invalid protobuf payload: \
             failed to decode Protobuf message: invalid wire type value: 7",
        ),
    ];
    for (payload, expected) in cases {
        let err = raw_say_hello(&client, payload).await;
        assert!(
            matches!(&err, RpcError::BadArguments { message } if message.starts_with("invalid protobuf payload: ")),
            "{err:?}"
        );
        assert_eq!(err.to_string(), expected);
    }
    // The server is unharmed: the next well-formed call is answered.
    let greeter = GreeterClient::from_client(client);
    assert_eq!(
        greeter.say_hello(hello("again")).await.unwrap().message,
        "Hello again"
    );
    server.shutdown().await;
}

/// A fake `helloworld.Greeter` that answers every call with bytes that are not a
/// `HelloReply`.
struct GarbageGreeter;

impl Service for GarbageGreeter {
    fn info(&self) -> &'static InterfaceInfo {
        &GREETER_INTERFACE
    }

    fn call(&self, _procedure: u32, _ctx: CallContext, _args: Bytes) -> ServiceFuture {
        Box::pin(async { Ok(Bytes::from_static(b"\x0a\x0atruncated")) })
    }
}

async fn malformed_reply_is_a_decode_error<T: Transport>() {
    let listener = T::listen().await.expect("listen");
    let server = Server::builder()
        .add_service(GarbageGreeter)
        .serve(listener)
        .unwrap();
    let greeter = GreeterClient::new(T::channel(server.local_addr()));
    match greeter.say_hello(hello("x")).await {
        Err(RpcError::Decode(XdrError::Foreign { encoding, message })) => {
            assert_eq!(encoding, "protobuf");
            assert_eq!(
                message,
                "failed to decode Protobuf message: HelloReply.message: buffer underflow"
            );
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    server.shutdown().await;
}

fn blocking_client_makes_real_calls<T: Transport>() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(server::<T>(Arc::new(HealthService::new())));
    let greeter = GreeterBlockingClient::new(T::channel(server.local_addr())).unwrap();
    assert_eq!(
        greeter.say_hello(hello("blocking")).unwrap().message,
        "Hello blocking"
    );
    let handle = greeter.start_say_hello(hello("later"));
    assert_eq!(handle.wait().unwrap().message, "Hello later");
    let health =
        examples::health::HealthBlockingClient::new(T::channel(server.local_addr())).unwrap();
    let response = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .unwrap();
    assert_eq!(response.status(), ServingStatus::Serving);
    drop((greeter, health));
    rt.block_on(server.shutdown());
}

macro_rules! over_both_transports {
    ($($name:ident),* $(,)?) => {
        mod tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::Tcp>().await
                }
            )*

            #[test]
            fn blocking_client_makes_real_calls() {
                super::blocking_client_makes_real_calls::<super::Tcp>()
            }
        }
        mod udp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<super::Udp>().await
                }
            )*

            #[test]
            fn blocking_client_makes_real_calls() {
                super::blocking_client_makes_real_calls::<super::Udp>()
            }
        }
    };
}

over_both_transports!(
    greeter_says_hello,
    health_check_reports_each_status,
    route_guide_get_feature,
    proto_and_idl_services_share_one_server,
    payloads_are_protobuf_bytes,
    malformed_protobuf_is_bad_arguments,
    malformed_reply_is_a_decode_error,
);
