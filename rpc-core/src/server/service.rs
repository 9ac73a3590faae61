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
/// `FooServer<T>` adapters implement it. The server runs [`Service::call`] on its worker
/// pool; only procedures the service declares inline ([`Service::is_inline`], the IDL's
/// `[inline]`) may run on the dispatch loop, through [`Service::call_inline`].
pub trait Service: Send + Sync + 'static {
    /// What this service implements (id, version, procedures).
    fn info(&self) -> &'static InterfaceInfo;

    /// Serves one call of `procedure` (which is one of `info().procedures`): decodes
    /// `args`, runs the handler, encodes the result. Must serve inline procedures too
    /// (a server may be told not to run anything inline).
    fn call(&self, procedure: u32, ctx: CallContext, args: Bytes) -> ServiceFuture;

    /// Whether `procedure` is declared cheap enough to run on the dispatch loop: its
    /// handler is synchronous, short and never blocks. Default: none is.
    fn is_inline(&self, procedure: u32) -> bool {
        let _ = procedure;
        false
    }

    /// Serves one call of an inline `procedure` synchronously: decodes `args`, runs the
    /// handler, and appends the XDR-encoded result to `out` (which the server reuses
    /// from call to call). Only called when [`Service::is_inline`] said so; the default
    /// answers [`Status::Internal`].
    fn call_inline(
        &self,
        procedure: u32,
        ctx: &CallContext,
        args: &Bytes,
        out: &mut XdrWriter,
    ) -> Result<(), Status> {
        let _ = (ctx, args, out);
        Err(Status::Internal {
            message: format!("procedure {procedure} is not served inline"),
        })
    }
}

/// Encodes an inline handler's result into `out` (for generated code): an encoding
/// error is [`Status::Internal`] and leaves `out` as it was.
pub fn encode_result_into(
    out: &mut XdrWriter,
    encode: impl FnOnce(&mut XdrWriter) -> Result<(), XdrError>,
) -> Result<(), Status> {
    encode(out).map_err(|e| Status::Internal {
        message: format!("handler returned a result that cannot be encoded: {e}"),
    })
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
