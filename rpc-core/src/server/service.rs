use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::error::Status;
use crate::interface::InterfaceInfo;
use crate::server::CallContext;
use crate::xdr::{XdrError, XdrReader, XdrWriter};

/// The future a [`Service`] returns for one call: the XDR-encoded result or a status.
pub type ServiceFuture = Pin<Box<dyn Future<Output = Result<Bytes, Status>> + Send + 'static>>;

/// One interface version hosted by a [`crate::server::Server`]. Generated
/// `FooServer<T>` adapters implement it; the server never runs it on its dispatch loop,
/// only on its worker pool.
pub trait Service: Send + Sync + 'static {
    /// What this service implements (id, version, procedures).
    fn info(&self) -> &'static InterfaceInfo;

    /// Serves one call of `procedure` (which is one of `info().procedures`): decodes
    /// `args`, runs the handler, encodes the result.
    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture;
}

/// Turns an argument decoding error into the status the client receives.
pub fn bad_arguments(e: XdrError) -> Status {
    Status::BadArguments {
        message: e.to_string(),
    }
}

/// Decodes a whole argument payload with `decode` (for generated code): a decoding
/// error, or bytes left after the last argument, is [`Status::BadArguments`], and the
/// handler never runs.
pub fn decode_args<A>(
    args: &Bytes,
    decode: impl FnOnce(&mut XdrReader<'_>) -> Result<A, XdrError>,
) -> Result<A, Status> {
    let mut r = XdrReader::new(args);
    let decoded = decode(&mut r).map_err(bad_arguments)?;
    r.finish().map_err(bad_arguments)?;
    Ok(decoded)
}

/// Encodes a handler's result (for generated code): a result that breaks its own
/// declaration's bounds is the server's fault, reported as [`Status::Internal`].
pub fn encode_result(
    encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
) -> Result<Bytes, Status> {
    let mut w = XdrWriter::with_capacity(64);
    encode(&mut w).map_err(|e| Status::Internal {
        message: format!("handler returned a result that cannot be encoded: {e}"),
    })?;
    Ok(w.into_bytes())
}
