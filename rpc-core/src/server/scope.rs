//! Whose state a call may touch: the one rule behind every piece of per-client server
//! state (reply-cache entries, low-water marks, per-peer client quotas, cancels).
//!
//! A client id is chosen by the client, so it is no identity: the server keys what a
//! client can read or change by ([`ClientScope`], client id). The scope is the
//! connection's authenticated [`Principal`] when its transport proved one, else the
//! peer's IP address. It is computed once, when the connection is accepted.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use crate::Principal;

/// The scope a client id lives in: the connection's [`Principal`] when its transport
/// authenticated the peer, else the peer's IP address.
///
/// Two clients in different scopes never share state, whatever client ids they
/// choose: with principals, one authenticated peer that copies another's client id
/// cannot read its cached replies, pre-answer its calls, release or evict its entries
/// with a low-water mark, or cancel its calls. Without a principal the rule is the
/// address: a stranger on another host cannot either.
///
/// Cloning is cheap (an address, a reference count, or a 32-byte key), so the server
/// clones it into map keys without allocating.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientScope {
    /// The peer is known only by its IP address.
    Ip(IpAddr),
    /// The peer's identity, as its transport authenticated it.
    Principal(Principal),
}

impl ClientScope {
    /// The scope of a connection from `ip` whose transport authenticated `principal`
    /// (the principal wins when there is one).
    pub fn of(ip: IpAddr, principal: Option<Principal>) -> Self {
        match principal {
            Some(p) => ClientScope::Principal(p),
            None => ClientScope::Ip(ip),
        }
    }

    /// The principal, when the scope is one.
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            ClientScope::Principal(p) => Some(p),
            ClientScope::Ip(_) => None,
        }
    }
}

/// Hashed with as few writes as it takes (an IPv4 scope is one `u64`): the server
/// hashes a scope on every call that goes through the reply cache, and each write to a
/// keyed hasher costs more than the bytes it carries. Consistent with `Eq`: equal scopes
/// write the same values.
impl Hash for ClientScope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            ClientScope::Ip(IpAddr::V4(ip)) => state.write_u64(1 << 32 | u64::from(u32::from(*ip))),
            ClientScope::Ip(IpAddr::V6(ip)) => {
                state.write_u64(2 << 32);
                state.write_u128(u128::from(*ip));
            }
            ClientScope::Principal(p) => {
                state.write_u64(3 << 32);
                p.hash(state);
            }
        }
    }
}

impl From<IpAddr> for ClientScope {
    fn from(ip: IpAddr) -> Self {
        ClientScope::Ip(ip)
    }
}

impl From<Principal> for ClientScope {
    fn from(p: Principal) -> Self {
        ClientScope::Principal(p)
    }
}

impl fmt::Display for ClientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientScope::Ip(ip) => write!(f, "ip:{ip}"),
            ClientScope::Principal(p) => p.fmt(f),
        }
    }
}

impl fmt::Debug for ClientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientScope({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_principal_wins_over_the_address() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let alice = Principal::Certificate("alice".into());
        assert_eq!(ClientScope::of(ip, None), ClientScope::Ip(ip));
        assert_eq!(ClientScope::of(ip, None).principal(), None);
        let scoped = ClientScope::of(ip, Some(alice.clone()));
        assert_eq!(scoped.principal(), Some(&alice));
        assert_ne!(scoped, ClientScope::Ip(ip));
        assert_ne!(
            scoped,
            ClientScope::of(ip, Some(Principal::Certificate("bob".into())))
        );
        assert_eq!(scoped.to_string(), "cert:alice");
        assert_eq!(ClientScope::Ip(ip).to_string(), "ip:10.0.0.1");
    }
}
