//! Authorization: [`Authorizer`]s decide whether a call may run, from who sent it and
//! what it carries, before anything else looks at it.
//!
//! The dispatch step asks them once the procedure is known, and before the deadline
//! check, the reply cache, admission and argument decoding. A refused call never
//! touches the reply cache, never takes a worker and never decodes its arguments.
//!
//! Authorizers are set on the [`ServerBuilder`](super::ServerBuilder): for every call
//! ([`authorize`](super::ServerBuilder::authorize)) or for the calls to one interface
//! ([`authorize_interface`](super::ServerBuilder::authorize_interface)); each sees the
//! procedure, so per-procedure rules live inside one. With none set, a call pays one
//! branch.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Status;
use crate::frame::{FrameHeader, Semantics};
use crate::interface::CallTarget;
use crate::Principal;

/// What an [`Authorizer`] sees of a call: the peer (its address and, when its transport
/// authenticated it, its [`Principal`]), the target and the credentials the client sent
/// ([`crate::client::ClientConfig::credentials`]). The arguments are not decoded yet.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    peer: SocketAddr,
    header: &'a FrameHeader,
    target: CallTarget,
    credentials: Option<&'a Bytes>,
    principal: Option<&'a Principal>,
}

impl<'a> AuthRequest<'a> {
    /// A request for the call with `header` from `peer` to `target`.
    pub fn new(
        peer: SocketAddr,
        header: &'a FrameHeader,
        target: CallTarget,
        credentials: Option<&'a Bytes>,
    ) -> Self {
        AuthRequest {
            peer,
            header,
            target,
            credentials,
            principal: None,
        }
    }

    /// This request with the connection's authenticated peer.
    pub fn with_principal(mut self, principal: Option<&'a Principal>) -> Self {
        self.principal = principal;
        self
    }

    /// Who the peer is, as its transport authenticated it (a TLS client certificate, a
    /// Noise static key, a pre-shared key's id); `None` on an unauthenticated
    /// connection. An authorizer can allow or refuse by it.
    pub fn principal(&self) -> Option<&'a Principal> {
        self.principal
    }

    /// The calling peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The interface and procedure called.
    pub fn target(&self) -> CallTarget {
        self.target
    }

    /// The credentials the call carries (`None`: it carries none).
    pub fn credentials(&self) -> Option<&'a [u8]> {
        self.credentials.map(|c| &c[..])
    }

    /// The calling client's id (chosen by the client: not an identity).
    pub fn client_id(&self) -> u64 {
        self.header.client_id
    }

    /// The semantics the caller asked for.
    pub fn semantics(&self) -> Semantics {
        self.header.semantics()
    }
}

/// Decides whether a call may run. `Err(status)` refuses it with that status, normally
/// [`Status::PermissionDenied`] or [`Status::Unauthenticated`]; the call is not
/// executed and its arguments are not decoded.
///
/// It runs on the connection's dispatch loop for every call, so it must be quick and
/// must not block: look up what it needs in memory.
pub trait Authorizer: Send + Sync + 'static {
    /// Allows (`Ok`) or refuses the call.
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<(), Status>;
}

impl<F> Authorizer for F
where
    F: Fn(&AuthRequest<'_>) -> Result<(), Status> + Send + Sync + 'static,
{
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<(), Status> {
        self(request)
    }
}

/// An [`Authorizer`] that lets a call run when its credentials equal one of a set of
/// bearer tokens; without credentials it answers `Unauthenticated`, with others
/// `PermissionDenied`. Tokens are compared in time independent of where they differ.
#[derive(Clone)]
pub struct BearerTokens {
    tokens: Arc<[Bytes]>,
}

impl BearerTokens {
    /// Accepts each of `tokens`.
    pub fn new<T: Into<Bytes>>(tokens: impl IntoIterator<Item = T>) -> Self {
        BearerTokens {
            tokens: tokens.into_iter().map(Into::into).collect(),
        }
    }
}

impl fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("BearerTokens")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Authorizer for BearerTokens {
    fn authorize(&self, request: &AuthRequest<'_>) -> Result<(), Status> {
        let Some(presented) = request.credentials() else {
            return Err(Status::unauthenticated(
                "this server requires a bearer token",
            ));
        };
        // Every token is compared, and each comparison reads the whole of both.
        let mut accepted = false;
        for token in self.tokens.iter() {
            accepted |= equal_in_constant_time(token, presented);
        }
        if accepted {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "the bearer token is not accepted",
            ))
        }
    }
}

/// Whether `a == b`, in time that depends only on the lengths.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The server's authorizers: those for every call, then those for the called
/// interface, in the order they were added. The first refusal wins.
#[derive(Clone, Default)]
pub(super) struct Authorizers {
    every_call: Vec<Arc<dyn Authorizer>>,
    per_interface: HashMap<u32, Vec<Arc<dyn Authorizer>>>,
}

impl fmt::Debug for Authorizers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizers")
            .field("every_call", &self.every_call.len())
            .field("per_interface", &self.per_interface.len())
            .finish()
    }
}

impl Authorizers {
    pub(super) fn add(&mut self, authorizer: Arc<dyn Authorizer>) {
        self.every_call.push(authorizer);
    }

    pub(super) fn add_for(&mut self, interface_id: u32, authorizer: Arc<dyn Authorizer>) {
        self.per_interface
            .entry(interface_id)
            .or_default()
            .push(authorizer);
    }

    /// Whether no authorizer is set (every call is allowed).
    pub(super) fn is_empty(&self) -> bool {
        self.every_call.is_empty() && self.per_interface.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.every_call.len() + self.per_interface.values().map(Vec::len).sum::<usize>()
    }

    /// Runs every authorizer that applies to `request`.
    pub(super) fn check(&self, request: &AuthRequest<'_>) -> Result<(), Status> {
        for a in &self.every_call {
            a.authorize(request)?;
        }
        if let Some(list) = self.per_interface.get(&request.target.interface.id) {
            for a in list {
                a.authorize(request)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::{InterfaceInfo, ProcedureInfo};

    static PROCS: [ProcedureInfo; 1] = [ProcedureInfo {
        name: "p",
        number: 1,
        oneway: false,
        idempotent: false,
    }];
    static IFACE: InterfaceInfo = InterfaceInfo {
        name: "I",
        id: 7,
        version: 1,
        procedures: &PROCS,
        default_semantics: None,
    };

    fn check(tokens: &BearerTokens, credentials: Option<&'static [u8]>) -> Result<(), Status> {
        let header = FrameHeader::call(1, 1, 7, 1, 1);
        let credentials = credentials.map(Bytes::from_static);
        let target = CallTarget {
            interface: &IFACE,
            procedure: &PROCS[0],
        };
        let request = AuthRequest::new(
            "127.0.0.1:1".parse().unwrap(),
            &header,
            target,
            credentials.as_ref(),
        );
        tokens.authorize(&request)
    }

    #[test]
    fn bearer_tokens_accept_only_their_tokens() {
        let tokens = BearerTokens::new([&b"alpha"[..], &b"beta"[..]]);
        assert_eq!(check(&tokens, Some(b"alpha")), Ok(()));
        assert_eq!(check(&tokens, Some(b"beta")), Ok(()));
        assert!(matches!(
            check(&tokens, Some(b"alphx")),
            Err(Status::PermissionDenied { .. })
        ));
        assert!(matches!(
            check(&tokens, Some(b"alph")),
            Err(Status::PermissionDenied { .. })
        ));
        assert!(matches!(
            check(&tokens, None),
            Err(Status::Unauthenticated { .. })
        ));
        assert!(!format!("{tokens:?}").contains("alpha"));
    }

    #[test]
    fn constant_time_equality_is_equality() {
        assert!(equal_in_constant_time(b"", b""));
        assert!(equal_in_constant_time(b"abc", b"abc"));
        assert!(!equal_in_constant_time(b"abc", b"abd"));
        assert!(!equal_in_constant_time(b"abc", b"ab"));
    }
}
