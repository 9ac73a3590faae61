//! A balanced client fed by a `DnsResolver` for `localhost` reaches a kv server on
//! 127.0.0.1, over UDP and over TCP. (`localhost` may also resolve to `::1`, where
//! nothing listens: the connect closure skips every endpoint that is not 127.0.0.1.)

use std::time::Duration;

use examples::kv::{KvClient, KvServer, Value};
use examples::kv_service::KvService;
use rpc_core::client::ClientConfig;
use rpc_core::naming::{DnsResolver, Endpoint, Resolver, Scheme};
use rpc_core::transport::{Channel, Listener};
use rpc_core::{Client, Server};
use rpc_transport_tcp::{TcpChannel, TcpListener};
use rpc_transport_udp::{UdpChannel, UdpListener};

async fn calls_through_dns<C: Channel>(
    scheme: Scheme,
    listener: impl Listener,
    channel: fn(std::net::SocketAddr) -> C,
) {
    let port = listener.local_addr().port();
    let server = Server::builder()
        .add_service(KvServer::new(KvService::new("dns-kv")))
        .serve(listener)
        .unwrap();
    let resolver = DnsResolver::new(scheme, "localhost", port).refresh(Duration::from_millis(50));
    let endpoints = resolver.watch("kv", 1).await.expect("localhost resolves");
    let resolved: Vec<String> = endpoints.borrow().iter().map(Endpoint::to_string).collect();
    assert!(
        resolved.contains(&format!("{}://127.0.0.1:{port}", scheme.as_str())),
        "{resolved:?}"
    );
    let client = Client::balanced(
        endpoints,
        move |ep: &Endpoint| {
            if ep.host != "127.0.0.1" {
                return None;
            }
            Some(channel(ep.socket_addr()?))
        },
        ClientConfig::default().default_timeout(Duration::from_secs(5)),
    );
    let stats = client.endpoint_stats();
    assert_eq!(stats.len(), 1, "only 127.0.0.1 is used: {stats:?}");
    let kv = KvClient::from_client(client);
    for i in 0..20u32 {
        assert_eq!(kv.whoami().await.unwrap(), "dns-kv");
        let old = kv
            .put(format!("k{}", i % 5), Value::from(i.to_be_bytes().to_vec()))
            .await
            .unwrap();
        assert_eq!(old.is_some(), i >= 5);
    }
    assert_eq!(
        kv.get("k4".into()).await.unwrap().as_deref(),
        Some(&19u32.to_be_bytes()[..])
    );
    assert!(kv.delete("k4".into()).await.unwrap());
    assert!(!kv.delete("k4".into()).await.unwrap());
    // Let the resolver refresh a few times: the stable answer changes nothing.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(kv.whoami().await.unwrap(), "dns-kv");
    let stats = kv.client().endpoint_stats();
    println!("{scheme:?} via DNS (localhost -> {resolved:?}): {stats:?}");
    assert!(stats[0].up && stats[0].calls >= 44, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_localhost_udp() {
    let listener = UdpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        calls_through_dns(Scheme::Udp, listener, UdpChannel::new),
    )
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_localhost_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(15),
        calls_through_dns(Scheme::Tcp, listener, TcpChannel::new),
    )
    .await
    .expect("bounded");
}
