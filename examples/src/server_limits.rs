//! The server's limits as command-line flags, shared by the example servers.

use std::time::Duration;

use rpc_core::server::{limits, ServerBuilder};
use rpc_transport_tcp::TcpConfig;

/// Limits that keep misbehaving clients from hurting the others (see
/// `rpc_core::server::limits`). Durations are in seconds; 0 turns a timeout off where
/// that is allowed.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Most connections at once; at the cap the longest-idle one makes room.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most connections at once from one IP address.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Close a connection idle (no call, no frame) for this many seconds; 0: never.
    #[arg(long, default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
    /// Calls one connection may have in flight before it is not read.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CALLS_PER_CONNECTION)]
    pub max_calls_per_connection: usize,
    /// Unwritten reply bytes one connection may hold before it is not read.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_QUEUED_REPLY_BYTES)]
    pub max_queued_reply_bytes: usize,
    /// Abort a connection whose replies have not moved for this many seconds.
    #[arg(long, default_value_t = limits::DEFAULT_WRITE_TIMEOUT.as_secs())]
    pub write_timeout: u64,
    /// How long Ctrl-C waits for calls and replies before aborting, in seconds.
    #[arg(long, default_value_t = limits::DEFAULT_SHUTDOWN_GRACE.as_secs())]
    pub shutdown_grace: u64,
    /// TCP: close a connection whose frame is incomplete this many seconds after its
    /// first byte (slowloris); 0: never.
    #[arg(long, default_value_t = rpc_transport_tcp::DEFAULT_FRAME_TIMEOUT.as_secs())]
    pub frame_timeout: u64,
}

impl LimitArgs {
    /// Applies the server-side limits to `builder`.
    pub fn apply(&self, builder: ServerBuilder) -> ServerBuilder {
        let secs = Duration::from_secs;
        builder
            .max_connections(self.max_connections)
            .max_connections_per_ip(self.max_connections_per_ip)
            .idle_timeout(Some(secs(self.idle_timeout)))
            .max_calls_per_connection(self.max_calls_per_connection)
            .max_queued_reply_bytes(self.max_queued_reply_bytes)
            .write_timeout(secs(self.write_timeout))
            .shutdown_grace(secs(self.shutdown_grace))
    }

    /// The TCP listener's settings.
    pub fn tcp_config(&self) -> TcpConfig {
        TcpConfig::default().frame_timeout(Some(Duration::from_secs(self.frame_timeout)))
    }
}
