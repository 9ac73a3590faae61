//! The echo over tarpc (serde transport: bincode in length-delimited frames over TCP).

use std::io;
use std::net::SocketAddr;

use benches::harness::{RoundTrip, ServerCtl};
use futures::{Future, StreamExt};
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tarpc::{client, context, serde_transport};
use tokio::net::{TcpListener, TcpStream};

/// Largest frame either side accepts.
const MAX_FRAME: usize = 64 << 20;

/// The echo service.
#[tarpc::service]
pub trait EchoService {
    /// Returns `data`.
    async fn echo(data: ByteBuf) -> ByteBuf;
}

/// The server: returns the request's bytes.
#[derive(Debug, Clone, Copy)]
pub struct EchoImpl;

impl EchoService for EchoImpl {
    async fn echo(self, _: context::Context, data: ByteBuf) -> ByteBuf {
        data
    }
}

async fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(fut);
}

/// Serves the echo on a free loopback port until the measurement is over.
pub async fn serve(mut ctl: ServerCtl) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    ctl.ready(listener.local_addr()?);
    let accept = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let _ = conn.set_nodelay(true);
            let framed = LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME)
                .new_framed(conn);
            let transport = serde_transport::new(framed, Bincode::default());
            tokio::spawn(
                BaseChannel::with_defaults(transport)
                    .execute(EchoImpl.serve())
                    .for_each(spawn),
            );
        }
    });
    ctl.stopped().await;
    accept.abort();
    Ok(())
}

/// One caller: a clone of the shared client (one TCP connection).
#[derive(Clone)]
pub struct TarpcCaller {
    client: EchoServiceClient,
    data: ByteBuf,
}

/// `n` callers sharing one connection to `addr`, each echoing `payload` bytes.
pub async fn callers(addr: SocketAddr, n: usize, payload: usize) -> io::Result<Vec<TarpcCaller>> {
    let conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_framed(conn);
    let transport = serde_transport::new(framed, Bincode::default());
    let client = EchoServiceClient::new(client::Config::default(), transport).spawn();
    let caller = TarpcCaller {
        client,
        data: ByteBuf::from(vec![0x5a; payload]),
    };
    Ok(vec![caller; n])
}

impl RoundTrip for TarpcCaller {
    async fn round_trip(&mut self) -> io::Result<()> {
        let reply = self
            .client
            .echo(context::current(), self.data.clone())
            .await
            .map_err(io::Error::other)?;
        if reply.len() != self.data.len() {
            return Err(io::Error::other("tarpc echo: wrong length"));
        }
        Ok(())
    }
}
