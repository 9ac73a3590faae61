//! The authenticated identity of a peer, as its transport proved it.

use std::fmt;
use std::sync::Arc;

/// Who the peer is, as its transport authenticated it: a TLS client certificate, a Noise
/// static key, or a pre-shared key's id. A connection without authentication has none.
///
/// The server keys the state a client can touch — its reply-cache entries, low-water
/// marks and cancels — by (principal, client id) when a principal exists, so one
/// authenticated peer cannot read, pre-answer, evict or cancel another's calls by copying
/// its client id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// A verified TLS client certificate, named by its first subject alternative name
    /// (DNS name, URI or e-mail address), else its subject's common name, else the
    /// SHA-256 fingerprint of the certificate in hex.
    Certificate(Arc<str>),
    /// A Noise static public key (X25519) proved by the handshake.
    StaticKey([u8; 32]),
    /// The id of the pre-shared key the handshake proved knowledge of.
    PreSharedKey(Arc<str>),
}

impl Principal {
    /// The principal's name: the certificate's name, the key in hex, or the PSK id.
    pub fn name(&self) -> String {
        match self {
            Principal::Certificate(n) | Principal::PreSharedKey(n) => n.to_string(),
            Principal::StaticKey(k) => hex(k),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Certificate(n) => write!(f, "cert:{n}"),
            Principal::StaticKey(k) => write!(f, "key:{}", hex(k)),
            Principal::PreSharedKey(n) => write!(f, "psk:{n}"),
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_display_say_the_kind() {
        let k = Principal::StaticKey([0xab; 32]);
        assert_eq!(k.name(), "ab".repeat(32));
        assert_eq!(k.to_string(), format!("key:{}", "ab".repeat(32)));
        assert_eq!(
            Principal::PreSharedKey("svc-a".into()).to_string(),
            "psk:svc-a"
        );
        assert_eq!(
            Principal::Certificate("a.example".into()).name(),
            "a.example"
        );
        assert_ne!(
            Principal::Certificate("x".into()),
            Principal::PreSharedKey("x".into())
        );
    }
}
