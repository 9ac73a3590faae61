//! Reliable UDP: the framework's own transport over UDP.
//!
//! Two layers, as in quinn:
//!
//! * [`proto`]: a sans-IO protocol core. A pure state machine with no sockets, no clock
//!   and no tasks: feed it received datagrams and the current time, take out datagrams to
//!   send and the next timer deadline. Sequence numbers, cumulative + selective acks,
//!   adaptive retransmission timeouts (RFC 6298), fragmentation and bounded reassembly,
//!   CRC-32 on every datagram, a send window, keepalives and liveness all live here and
//!   are tested deterministically under a simulated network. Optionally every datagram
//!   is sealed (authenticated encryption after a Noise handshake, with a replay window):
//!   see [`Security`].
//! * the tokio driver: a thin loop around the core with a `socket2`-configured
//!   `tokio::net::UdpSocket`, plugging into the runtime as a
//!   [`rpc_core::transport::Channel`] (client) and [`rpc_core::transport::Listener`]
//!   (server).
//!
//! What it is not: ordered. Each message (one RPC frame) is delivered as soon as all its
//! fragments are in, independently of other messages, so one lost datagram delays only
//! the call it belongs to.
//!
//! Separately, [`onc`] speaks plain ONC RPC (RFC 5531) over UDP, one message per
//! datagram ([`OncUdpListener`], [`OncUdpChannel`]), to talk to rpcgen / libtirpc peers.

pub mod proto;
pub mod testing;

pub mod driver;
pub mod onc;

pub use driver::{
    UdpAddr, UdpChannel, UdpConfig, UdpFrameReceiver, UdpListener, UdpStats, UdpStatsHandle,
};
pub use onc::{OncUdpChannel, OncUdpConfig, OncUdpListener};
pub use proto::seal::{key_from_hex, key_to_hex};
pub use proto::{PreSharedKey, Security, SecurityError, StaticKeypair};
