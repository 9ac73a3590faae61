//! The TCP transport of the RPC framework: length-delimited [`Frame`](rpc_core::frame::Frame)s over one TCP
//! connection, on which the runtime multiplexes many concurrent calls by call id.
//!
//! * [`TcpChannel`] (client side) implements [`rpc_core::transport::Channel`]: it dials
//!   an address or a `host:port` name with a timeout.
//! * [`TcpListener`] (server side) implements [`rpc_core::transport::Listener`].
//! * Both hand out a [`Connection`] whose sender is a bounded queue drained by a writer
//!   task ([`write_loop`]) that gathers every queued frame's header and payload into one
//!   vectored write (payloads are never copied), and whose receiver
//!   ([`TcpFrameReceiver`]) is polled directly by the runtime; received payloads are
//!   zero-copy slices of the read buffer.
//! * Every frame's header is checked (magic, version, kind, flags, payload length
//!   against [`TcpConfig::max_payload`]) before anything is reserved for its payload,
//!   and its CRC before it is delivered ([`FrameDecoder`]). A bad frame ends the
//!   connection: a byte stream cannot be resynchronised.
//! * [`onc`]: ONC RPC (RFC 5531) with record marking instead of our frames
//!   ([`OncTcpListener`], [`OncTcpChannel`]), to talk to rpcgen / libtirpc peers.
//! * [`rpcbind`]: a client of rpcbind / the portmapper (RFC 1833) over ONC TCP or UDP,
//!   generated from `proto/rpcbind.x`, to look up and register programs.
//!
//! What it is not: an RPC runtime (calls, replies, retries and reconnection with backoff
//! live in `rpc-core`, which uses this crate only through the `Channel`/`Listener`
//! traits), and not encrypted (TLS is a separate layer).
//!
//! The wire format on the stream is simply one frame after another, each a 56-byte
//! header followed by its payload (`docs/PROTOCOL.md`); there is no extra framing.
//!
//! # Example
//!
//! Frames from a client to a server and back, without the RPC runtime:
//!
//! ```
//! use bytes::Bytes;
//! use rpc_core::frame::{Frame, FrameHeader, FrameKind};
//! use rpc_core::transport::{Channel, FrameReceiver, Listener};
//! use rpc_transport_tcp::{TcpChannel, TcpListener};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::TransportError> {
//! let mut listener = TcpListener::bind("127.0.0.1:0").await?;
//! let channel = TcpChannel::new(listener.local_addr());
//!
//! let client = channel.connect().await?;
//! let mut server = listener.accept().await?;
//!
//! let mut header = FrameHeader::call(1, 42, 0x2000_0001, 1, 3);
//! header.payload_len = 5;
//! client.sender.send(Frame::new(header, Bytes::from_static(b"hello"))).await?;
//!
//! let mut client_rx = client.receiver;
//! let call = server.receiver.recv().await?.expect("a frame");
//! assert_eq!(call.header.call_id, 42);
//! assert_eq!(&call.payload[..], b"hello");
//!
//! let reply = FrameHeader::answer(&call.header, FrameKind::Reply, 7);
//! server.sender.send(Frame::new(reply, Bytes::new())).await?;
//! let reply = client_rx.recv().await?.expect("a frame");
//! assert_eq!((reply.header.kind, reply.header.call_id), (FrameKind::Reply, 42));
//!
//! // Dropping the server's side closes the connection; the client sees a clean end.
//! drop(server);
//! assert!(client_rx.recv().await?.is_none());
//! # Ok(())
//! # }
//! ```

mod channel;
pub mod codec;
mod config;
mod listener;
pub mod onc;
mod receiver;
pub mod rpcbind;
mod sink;
mod tls;
mod writer;

use std::net::SocketAddr;

use rpc_core::transport::{frame_queue, Connection, FrameSender};
use socket2::SockRef;
use tokio::net::TcpStream;

pub use channel::{TcpAddr, TcpChannel};
pub use codec::FrameDecoder;
pub use config::{TcpConfig, DEFAULT_FRAME_TIMEOUT};
pub use listener::{HandshakeStats, HandshakeStatsHandle, TcpListener};
pub use onc::{OncTcpChannel, OncTcpConfig, OncTcpListener};
pub use receiver::TcpFrameReceiver;
pub use tls::{
    certificate_principal, TlsClient, TlsClientBuilder, TlsConfigError, TlsServer,
    TlsServerBuilder, ALPN, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HANDSHAKES,
};
pub use writer::write_loop;

/// An established connection's byte stream: plain TCP, or TLS over it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// Turns an established stream into a [`Connection`]: socket options, the writer task,
/// the receiver. Over TLS the writer task is always used and busy-polling is off
/// (both the direct write and busy-polling need the raw socket).
pub(crate) fn open(
    stream: Stream,
    peer_addr: SocketAddr,
    config: &TcpConfig,
) -> Connection<TcpFrameReceiver> {
    config.apply_to_stream(SockRef::from(stream.tcp()));
    let (read, sender) = match stream {
        Stream::Plain(stream) => {
            let (read, write) = stream.into_split();
            let sender = if config.direct_write {
                let sink = sink::TcpSink::spawn(write, config.send_queue, config.write_batch);
                FrameSender::from_sink(std::sync::Arc::new(sink))
            } else {
                let (sender, outbox) = frame_queue(config.send_queue);
                writer::spawn_writer(outbox, write, config.write_batch, peer_addr);
                sender
            };
            (receiver::ReadSide::Plain(read), sender)
        }
        Stream::Tls(stream) => {
            let (read, write) = tokio::io::split(*stream);
            let (sender, outbox) = frame_queue(config.send_queue);
            writer::spawn_writer(outbox, write, config.write_batch, peer_addr);
            (receiver::ReadSide::Tls(read), sender)
        }
    };
    let busy_poll = match read {
        receiver::ReadSide::Plain(_) => config.busy_poll,
        receiver::ReadSide::Tls(_) => None,
    };
    Connection {
        sender,
        receiver: TcpFrameReceiver::from_side(read, config.max_payload, config.read_capacity())
            .with_busy_poll(busy_poll)
            .with_frame_timeout(config.frame_timeout),
        peer_addr,
        principal: None,
    }
}
