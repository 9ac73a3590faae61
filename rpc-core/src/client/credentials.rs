//! Per-call credentials: what a client sends with each Call for the server's
//! authorizers (`ServerBuilder::authorize`) to check.
//!
//! A Call carrying credentials sets the header's `CREDENTIALS` flag and starts its
//! payload with them, as an XDR `opaque<MAX_CREDENTIALS>` (docs/PROTOCOL.md 3.1, 5.1).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::interface::CallTarget;

/// Gives the credentials for a call (`None`: the call carries none). Asked once per
/// call, before its first attempt; every retry carries the same bytes.
///
/// A closure `Fn(CallTarget) -> Option<Bytes>` is one; so is [`Credentials::bearer`]'s
/// fixed token. A provider must be quick and must not block: hold a token refreshed
/// elsewhere and hand out a clone of it.
pub trait CredentialsProvider: Send + Sync + 'static {
    /// The credentials for a call to `target`.
    fn credentials(&self, target: CallTarget) -> Option<Bytes>;
}

impl<F> CredentialsProvider for F
where
    F: Fn(CallTarget) -> Option<Bytes> + Send + Sync + 'static,
{
    fn credentials(&self, target: CallTarget) -> Option<Bytes> {
        self(target)
    }
}

/// A client's credentials provider (see [`crate::client::ClientConfig::credentials`]).
#[derive(Clone)]
pub struct Credentials(Arc<dyn CredentialsProvider>);

impl Credentials {
    /// The same bytes on every call (a bearer token, an API key).
    pub fn bearer(token: impl Into<Bytes>) -> Self {
        let token: Bytes = token.into();
        Credentials(Arc::new(move |_: CallTarget| Some(token.clone())))
    }

    /// Credentials from a provider.
    pub fn from_provider(provider: impl CredentialsProvider) -> Self {
        Credentials(Arc::new(provider))
    }

    /// The credentials for a call to `target`.
    pub fn for_call(&self, target: CallTarget) -> Option<Bytes> {
        self.0.credentials(target)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret itself.
        f.write_str("Credentials(..)")
    }
}
