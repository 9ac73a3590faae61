//! Benchmarks of the RPC framework (see `benches/benches/*.rs`); this library holds the
//! pieces they share.
//!
//! Run them with `cargo bench -p benches`. Numbers are only comparable within one run on
//! one machine: every benchmark that measures our stack also measures the raw-socket
//! floor next to it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub mod harness;
pub mod instructions;
pub mod latency;

/// Starts a raw tokio TCP echo server for `size`-byte messages (the latency floor a
/// TCP-based RPC cannot beat) and returns its address.
pub async fn raw_tcp_echo_server(size: usize) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; size];
                while stream.read_exact(&mut buf).await.is_ok() {
                    if stream.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// A raw TCP ping-pong client: one `size`-byte message out, one back.
pub struct RawTcpPinger {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawTcpPinger {
    /// Connects to a [`raw_tcp_echo_server`].
    pub async fn connect(addr: SocketAddr, size: usize) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawTcpPinger {
            stream,
            buf: vec![0x5a; size],
        })
    }

    /// One round trip.
    pub async fn ping(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.buf).await?;
        self.stream.read_exact(&mut self.buf).await?;
        Ok(())
    }
}

/// A minimal echo service (procedure 1 echoes an `opaque<>`), written the way generated
/// code is, so the benchmarks measure the runtime and the transport, not a handler.
///
/// The procedure is declared `[inline]` (its handler is a cheap copy), so a default
/// server runs it on the dispatch loop; a server built with
/// `Server::builder().run_inline(false)` runs the same calls on its worker pool.
pub mod echo {
    use bytes::Bytes;
    use rpc_core::server::{
        bad_arguments, encode_result, encode_result_into, Service, ServiceFuture,
    };
    use rpc_core::transport::Channel;
    use rpc_core::xdr::{XdrReader, XdrWriter};
    use rpc_core::{
        CallContext, CallOptions, Client, InterfaceInfo, ProcedureInfo, RpcError, Status,
    };

    /// The echo procedure.
    pub static ECHO: ProcedureInfo = ProcedureInfo {
        name: "echo",
        number: 1,
        oneway: false,
        idempotent: true,
    };
    /// The echo interface.
    pub static ECHO_INTERFACE: InterfaceInfo = InterfaceInfo {
        name: "Echo",
        id: 0x2000_0e40,
        version: 1,
        procedures: std::slice::from_ref(&ECHO),
        default_semantics: None,
    };

    /// The server side.
    #[derive(Debug, Default)]
    pub struct EchoService;

    fn decode(args: &Bytes) -> Result<Bytes, Status> {
        let mut r = XdrReader::new(args);
        let blob = r.get_opaque(u32::MAX).map_err(bad_arguments)?;
        r.finish().map_err(bad_arguments)?;
        Ok(blob)
    }

    impl Service for EchoService {
        fn info(&self) -> &'static InterfaceInfo {
            &ECHO_INTERFACE
        }

        fn call(&self, _procedure: u32, _ctx: CallContext, args: Bytes) -> ServiceFuture {
            let blob = decode(&args);
            Box::pin(async move {
                let blob = blob?;
                encode_result(|w| w.put_opaque(&blob, u32::MAX))
            })
        }

        fn is_inline(&self, procedure: u32) -> bool {
            procedure == ECHO.number
        }

        fn call_inline(
            &self,
            _procedure: u32,
            _ctx: &CallContext,
            args: &Bytes,
            out: &mut XdrWriter,
        ) -> Result<(), Status> {
            let blob = decode(args)?;
            // A large echo goes back by reference to the request's bytes.
            encode_result_into(out, |w| w.put_opaque_shared(&blob, u32::MAX))
        }
    }

    /// One echo call (the argument is copied into the request).
    pub async fn echo<C: Channel>(client: &Client<C>, blob: &[u8]) -> Result<Bytes, RpcError> {
        client
            .call(
                &ECHO_INTERFACE,
                &ECHO,
                &CallOptions::new(),
                |w| w.put_opaque(blob, u32::MAX),
                |r| r.get_opaque(u32::MAX),
            )
            .await
    }

    /// One echo call through the shared-descriptor path: a `blob` at least the client's
    /// `share_threshold` long is sent by reference, not copied (with sharing off in the
    /// client's config, it is copied like [`echo`]).
    pub async fn echo_shared<C: Channel>(
        client: &Client<C>,
        blob: &Bytes,
    ) -> Result<Bytes, RpcError> {
        client
            .call(
                &ECHO_INTERFACE,
                &ECHO,
                &CallOptions::new(),
                |w| w.put_opaque_shared(blob, u32::MAX),
                |r| r.get_opaque(u32::MAX),
            )
            .await
    }
}
