//! An in-process transport: connections are two crossed frame queues, with no sockets
//! and no serialisation. For tests, examples and benchmarks of the runtime without a
//! network (the frames still carry real headers and XDR payloads).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use rpc_core::transport::{memory, Channel, FrameReceiver, Listener};
//! let (channel, mut listener) = memory::endpoint(16);
//! let client = channel.connect().await.unwrap();
//! let mut server = listener.accept().await.unwrap();
//! let frame = rpc_core::frame::Frame::new(
//!     rpc_core::frame::FrameHeader::call(1, 1, 7, 1, 1),
//!     bytes::Bytes::from_static(b"\0\0\0\x2a"),
//! );
//! client.sender.send(frame.clone()).await.unwrap();
//! assert_eq!(server.receiver.recv().await.unwrap(), Some(frame));
//! # }
//! ```
//!
//! There is no handshake, so nothing is authenticated; for tests of principal-scoped
//! server state, [`MemoryChannel::with_principal`] gives the server side of a
//! channel's connections a [`Principal`] as if a transport had proved it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use super::{frame_queue, Channel, Connection, FrameOutbox, Listener};
use crate::error::TransportError;
use crate::Principal;

/// Connections a listener holds before `accept` takes them; `connect` waits beyond it.
const ACCEPT_BACKLOG: usize = 64;

/// The client side of an in-process endpoint. Cloneable; every `connect` makes a new
/// connection.
#[derive(Debug, Clone)]
pub struct MemoryChannel {
    accept: mpsc::Sender<Connection<FrameOutbox>>,
    queue: usize,
    next_port: Arc<AtomicU16>,
    /// What the server side of each connection reports as the peer's principal.
    principal: Option<Principal>,
}

/// The server side of an in-process endpoint.
#[derive(Debug)]
pub struct MemoryListener {
    accept: Arc<Mutex<mpsc::Receiver<Connection<FrameOutbox>>>>,
}

/// A connected channel/listener pair; each connection's queues hold `queue` frames per
/// direction.
pub fn endpoint(queue: usize) -> (MemoryChannel, MemoryListener) {
    let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
    (
        MemoryChannel {
            accept: tx,
            queue,
            next_port: Arc::new(AtomicU16::new(1)),
            principal: None,
        },
        MemoryListener {
            accept: Arc::new(Mutex::new(rx)),
        },
    )
}

/// The address memory connections report: 127.0.0.1 with a per-connection port.
fn fake_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

impl MemoryChannel {
    /// This channel (connecting to the same listener), whose connections the server
    /// sees as authenticated as `principal` (`None`: unauthenticated, the default).
    /// Stands in for a transport's handshake in tests: two channels with different
    /// principals are two peers the server must keep apart.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use rpc_core::transport::{memory, Channel, Listener};
    /// use rpc_core::Principal;
    /// let (channel, mut listener) = memory::endpoint(16);
    /// let alice = channel.with_principal(Some(Principal::Certificate("alice".into())));
    /// let _client = alice.connect().await.unwrap();
    /// let server = listener.accept().await.unwrap();
    /// assert_eq!(server.principal, Some(Principal::Certificate("alice".into())));
    /// # }
    /// ```
    pub fn with_principal(&self, principal: Option<Principal>) -> MemoryChannel {
        MemoryChannel {
            principal,
            ..self.clone()
        }
    }
}

impl Channel for MemoryChannel {
    type Receiver = FrameOutbox;

    async fn connect(&self) -> Result<Connection<FrameOutbox>, TransportError> {
        let (to_server, server_inbox) = frame_queue(self.queue);
        let (to_client, client_inbox) = frame_queue(self.queue);
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        let server_side = Connection {
            sender: to_client,
            receiver: server_inbox,
            peer_addr: fake_addr(port),
            principal: self.principal.clone(),
        };
        self.accept
            .send(server_side)
            .await
            .map_err(|_| TransportError::Closed)?;
        Ok(Connection {
            sender: to_server,
            receiver: client_inbox,
            peer_addr: fake_addr(0),
            principal: None,
        })
    }

    fn remote(&self) -> String {
        "memory".to_owned()
    }
}

impl Listener for MemoryListener {
    type Receiver = FrameOutbox;

    async fn accept(&mut self) -> Result<Connection<FrameOutbox>, TransportError> {
        self.accept
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)
    }

    fn local_addr(&self) -> SocketAddr {
        fake_addr(0)
    }
}
