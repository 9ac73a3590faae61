//! Two listeners served as one: one server (one worker pool, one reply cache, one
//! connection table with its limits) answering over, say, reliable UDP and TCP at once.
//!
//! ```ignore
//! let udp = rpc_transport_udp::UdpListener::bind("127.0.0.1:7000").await?;
//! let tcp = rpc_transport_tcp::TcpListener::bind("127.0.0.1:7000").await?;
//! let server = Server::builder()
//!     .add_service(CalcServer::new(MyCalc))
//!     .serve(Both::new(udp, tcp))?;
//! ```

use std::net::SocketAddr;

use super::{Connection, FrameReceiver, Listener};
use crate::error::TransportError;
use crate::frame::Frame;

/// A [`Listener`] accepting from two listeners; its connections are [`EitherReceiver`]s.
///
/// It reports [`TransportError::Closed`] once both are closed; until then an error from
/// one is passed on (the server logs it and accepts again). Its
/// [`local_addr`](Listener::local_addr) is the first listener's; both are available
/// from [`Both::local_addrs`] before serving.
#[derive(Debug)]
pub struct Both<A, B> {
    first: A,
    second: B,
    first_closed: bool,
    second_closed: bool,
}

impl<A: Listener, B: Listener> Both<A, B> {
    /// Accepts from `first` and `second`.
    pub fn new(first: A, second: B) -> Self {
        Both {
            first,
            second,
            first_closed: false,
            second_closed: false,
        }
    }

    /// The two listeners' addresses.
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.first.local_addr(), self.second.local_addr())
    }
}

/// The receiving half of a connection accepted by [`Both`]: from the first listener or
/// the second.
#[derive(Debug)]
pub enum EitherReceiver<A, B> {
    /// A connection of the first listener.
    First(A),
    /// A connection of the second listener.
    Second(B),
}

impl<A: FrameReceiver, B: FrameReceiver> FrameReceiver for EitherReceiver<A, B> {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self {
            EitherReceiver::First(r) => r.recv().await,
            EitherReceiver::Second(r) => r.recv().await,
        }
    }
}

impl<A: Listener, B: Listener> Listener for Both<A, B> {
    type Receiver = EitherReceiver<A::Receiver, B::Receiver>;

    async fn accept(&mut self) -> Result<Connection<Self::Receiver>, TransportError> {
        // Both transports' accepts are cancel-safe (a queue or the kernel's backlog), so
        // the one that loses the race loses nothing.
        loop {
            tokio::select! {
                r = self.first.accept(), if !self.first_closed => match r {
                    Ok(c) => return Ok(c.map_receiver(EitherReceiver::First)),
                    Err(TransportError::Closed) => self.first_closed = true,
                    Err(e) => return Err(e),
                },
                r = self.second.accept(), if !self.second_closed => match r {
                    Ok(c) => return Ok(c.map_receiver(EitherReceiver::Second)),
                    Err(TransportError::Closed) => self.second_closed = true,
                    Err(e) => return Err(e),
                },
                else => return Err(TransportError::Closed),
            }
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.first.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::memory;
    use crate::transport::Channel;

    #[tokio::test]
    async fn accepts_from_either_and_closes_when_both_are_closed() {
        let (ch1, l1) = memory::endpoint(8);
        let (ch2, l2) = memory::endpoint(8);
        let mut both = Both::new(l1, l2);
        let _c2 = ch2.connect().await.unwrap();
        let got = both.accept().await.unwrap();
        assert!(matches!(got.receiver, EitherReceiver::Second(_)));
        let _c1 = ch1.connect().await.unwrap();
        let got = both.accept().await.unwrap();
        assert!(matches!(got.receiver, EitherReceiver::First(_)));
        drop((ch1, ch2));
        assert!(matches!(both.accept().await, Err(TransportError::Closed)));
    }
}
