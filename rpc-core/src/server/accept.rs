//! The accept loop: takes connections from the listener, applies the connection limits
//! ([`super::connections::ConnectionTable::admit`]) and starts each admitted
//! connection's loop.

use std::sync::Arc;
use std::time::Duration;

use super::connection;
use super::connections::Refusal;
use super::state::{Phase, Shared};
use super::stats::bump;
use crate::error::TransportError;
use crate::transport::Listener;
use tracing::Instrument;

/// Accepts until the server stops running (or the listener closes for good).
pub(super) async fn accept_loop<L: Listener>(shared: Arc<Shared>, mut listener: L) {
    let mut phase = shared.phase.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Running) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(mut conn) => {
                bump(&shared.counters.connections_accepted);
                let admitted = shared.connections.admit(
                    conn.peer_addr,
                    conn.principal.take(),
                    conn.sender.clone(),
                    &shared.limits,
                    shared.epoch,
                );
                match admitted {
                    Ok((state, evicted)) => {
                        if evicted {
                            bump(&shared.counters.connections_evicted);
                        }
                        let span = tracing::debug_span!(parent: None, "rpc.connection", peer = %conn.peer_addr);
                        tokio::spawn(
                            connection::serve(shared.clone(), conn, state).instrument(span),
                        );
                    }
                    Err(refusal) => {
                        match refusal {
                            Refusal::Full => bump(&shared.counters.connections_rejected),
                            Refusal::PerIp => bump(&shared.counters.connections_rejected_per_ip),
                        }
                        tracing::debug!(peer = %conn.peer_addr, ?refusal, "connection limit reached and no connection idle; closing the new one");
                        drop(conn);
                    }
                }
            }
            Err(TransportError::Closed) => break,
            Err(e) => {
                // E.g. EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
