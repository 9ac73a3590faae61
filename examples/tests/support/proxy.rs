//! A TCP proxy that kills its connections: it relays bytes both ways between each
//! accepted client connection and a fresh connection to the upstream server, counts the
//! Call frames (not the incarnation probes) passing client → server, and after every
//! `every` calls on a connection resets both of its sockets (zero linger: RST, no FIN).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rpc_core::frame::HEADER_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A running proxy; dropping it stops it and closes every relayed connection.
pub(crate) struct KillProxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    calls: AtomicU64,
    kills: AtomicU64,
    connections: AtomicU64,
}

impl KillProxy {
    /// A proxy on 127.0.0.1 to `upstream` that resets each connection after `every`
    /// calls went through it.
    pub(crate) async fn start(upstream: SocketAddr, every: u64) -> KillProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut relays = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                c.connections.fetch_add(1, Ordering::Relaxed);
                relays.spawn(relay(client, upstream, every, c.clone()));
                while relays.try_join_next().is_some() {}
            }
        });
        KillProxy { addr, counts, task }
    }

    /// Connections reset so far.
    pub(crate) fn kills(&self) -> u64 {
        self.counts.kills.load(Ordering::Relaxed)
    }

    /// Call frames relayed so far.
    pub(crate) fn calls(&self) -> u64 {
        self.counts.calls.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::Relaxed)
    }
}

impl Drop for KillProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts complete Call frames in a byte stream.
#[derive(Default)]
struct CallCounter {
    header: Vec<u8>,
    skip: usize,
}

impl CallCounter {
    /// Feeds `bytes`; returns how many Call frames (to an interface other than the
    /// incarnation probe's) started in them.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut calls = 0;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == HEADER_LEN {
                let h = &self.header;
                let interface = u32::from_be_bytes(h[24..28].try_into().unwrap());
                if h[5] == 1 && interface != rpc_core::server::PING_INTERFACE {
                    calls += 1;
                }
                self.skip = u32::from_be_bytes(h[48..52].try_into().unwrap()) as usize;
                self.header.clear();
            }
        }
        calls
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, every: u64, counts: Arc<Counts>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
        let _ = s.set_zero_linger();
    }
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        (server_rx, client_tx)
    });
    let mut counter = CallCounter::default();
    let mut on_this_connection = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let calls = counter.feed(&buf[..n]);
        counts.calls.fetch_add(calls, Ordering::Relaxed);
        on_this_connection += calls;
        if on_this_connection >= every {
            counts.kills.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    // Dropping every half of both sockets (zero linger) resets them.
    back.abort();
    let _ = back.await;
}
