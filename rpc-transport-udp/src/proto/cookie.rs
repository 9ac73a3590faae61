//! Stateless address validation (PROTOCOL.md 9.3): the cookies a server hands out in
//! Retry and checks in the Init that echoes them.
//!
//! A cookie is `issued_us` (the server's clock, microseconds since the endpoint first saw
//! a datagram) and an HMAC-SHA256 tag over the client's address, the connection id and
//! `issued_us`. The tag's key rotates: the key of epoch `e = issued_us / lifetime` is
//! `HMAC-SHA256(master, "rpc-udp cookie key" ‖ e)`, where `master` is 32 random bytes
//! drawn when the endpoint is made and never sent. A cookie is accepted only while it is
//! at most `lifetime` old, so only the current and the previous epoch's keys ever verify
//! one; a leaked epoch key says nothing of the others. Nothing is stored per client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ring::hmac;

use super::packet::{Cookie, COOKIE_TAG_LEN};

/// Why a cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Older than the cookie lifetime (or issued in the future).
    Expired,
    /// The tag does not match: forged, altered, or issued to another address or id.
    Invalid,
}

/// The server's cookie keys.
pub struct CookieKeys {
    master: hmac::Key,
    lifetime_us: u64,
    /// The two most recently used epoch keys.
    cache: [Option<(u64, hmac::Key)>; 2],
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieKeys")
            .field("lifetime_us", &self.lifetime_us)
            .finish_non_exhaustive()
    }
}

impl CookieKeys {
    /// Keys derived from `master`, for cookies valid `lifetime` (at least 1 µs).
    pub fn new(master: &[u8; 32], lifetime: Duration) -> Self {
        CookieKeys {
            master: hmac::Key::new(hmac::HMAC_SHA256, master),
            lifetime_us: u64::try_from(lifetime.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
            cache: [None, None],
        }
    }

    /// Keys from 32 bytes of the operating system's random generator; `None` if it
    /// failed.
    pub fn random(lifetime: Duration) -> Option<Self> {
        use ring::rand::SecureRandom;
        let mut master = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut master).ok()?;
        Some(CookieKeys::new(&master, lifetime))
    }

    fn epoch_key(&mut self, epoch: u64) -> &hmac::Key {
        let slot = match &self.cache {
            [Some((e, _)), _] if *e == epoch => 0,
            [_, Some((e, _))] if *e == epoch => 1,
            // Replace the older of the two (the lower epoch, or an empty slot).
            [None, _] => 0,
            [_, None] => 1,
            [Some((a, _)), Some((b, _))] => usize::from(a > b),
        };
        let fresh = !matches!(&self.cache[slot], Some((e, _)) if *e == epoch);
        if fresh {
            let mut info = Vec::with_capacity(26);
            info.extend_from_slice(b"rpc-udp cookie key");
            info.extend_from_slice(&epoch.to_be_bytes());
            let derived = hmac::sign(&self.master, &info);
            self.cache[slot] = Some((epoch, hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())));
        }
        match &self.cache[slot] {
            Some((_, k)) => k,
            // Just filled.
            None => &self.master,
        }
    }

    fn input(peer: SocketAddr, conn_id: u32, issued_us: u64) -> [u8; 30] {
        let ip = match peer.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        let mut m = [0u8; 30];
        m[..16].copy_from_slice(&ip.octets());
        m[16..18].copy_from_slice(&peer.port().to_be_bytes());
        m[18..22].copy_from_slice(&conn_id.to_be_bytes());
        m[22..30].copy_from_slice(&issued_us.to_be_bytes());
        m
    }

    /// A cookie for `peer` and `conn_id`, issued at `now_us`.
    pub fn issue(&mut self, peer: SocketAddr, conn_id: u32, now_us: u64) -> Cookie {
        let epoch = now_us / self.lifetime_us;
        let key = self.epoch_key(epoch);
        let tag = hmac::sign(key, &Self::input(peer, conn_id, now_us));
        let mut out = [0u8; COOKIE_TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Cookie {
            issued_us: now_us,
            tag: out,
        }
    }

    /// Checks a cookie that `peer` sent for `conn_id` at `now_us`.
    pub fn verify(
        &mut self,
        peer: SocketAddr,
        conn_id: u32,
        cookie: &Cookie,
        now_us: u64,
    ) -> Result<(), CookieError> {
        let age = now_us
            .checked_sub(cookie.issued_us)
            .ok_or(CookieError::Expired)?;
        if age > self.lifetime_us {
            return Err(CookieError::Expired);
        }
        let key = self.epoch_key(cookie.issued_us / self.lifetime_us);
        hmac::verify(
            key,
            &Self::input(peer, conn_id, cookie.issued_us),
            &cookie.tag,
        )
        .map_err(|_| CookieError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn a_cookie_verifies_for_its_address_and_id_only() {
        let mut k = CookieKeys::new(&[1; 32], Duration::from_secs(10));
        let c = k.issue(a(1), 7, 5_000_000);
        assert_eq!(k.verify(a(1), 7, &c, 5_001_000), Ok(()));
        assert_eq!(k.verify(a(2), 7, &c, 5_001_000), Err(CookieError::Invalid));
        assert_eq!(k.verify(a(1), 8, &c, 5_001_000), Err(CookieError::Invalid));
        let mut later = c;
        later.issued_us += 1;
        assert_eq!(
            k.verify(a(1), 7, &later, 5_002_000),
            Err(CookieError::Invalid)
        );
        let mut forged = c;
        forged.tag[0] ^= 1;
        assert_eq!(
            k.verify(a(1), 7, &forged, 5_001_000),
            Err(CookieError::Invalid)
        );
        // Another master secret: another server.
        let mut other = CookieKeys::new(&[2; 32], Duration::from_secs(10));
        assert_eq!(
            other.verify(a(1), 7, &c, 5_001_000),
            Err(CookieError::Invalid)
        );
    }

    #[test]
    fn a_cookie_expires_after_its_lifetime_across_key_epochs() {
        let mut k = CookieKeys::new(&[1; 32], Duration::from_secs(10));
        // Issued late in epoch 0, still good early in epoch 1.
        let c = k.issue(a(1), 7, 9_999_000);
        assert_eq!(k.verify(a(1), 7, &c, 12_000_000), Ok(()));
        // Epochs 2 and 3 come and go through the cache; the old key is derived again.
        let _ = k.issue(a(1), 7, 25_000_000);
        let _ = k.issue(a(1), 7, 35_000_000);
        assert_eq!(k.verify(a(1), 7, &c, 19_999_000), Ok(()));
        assert_eq!(k.verify(a(1), 7, &c, 20_000_000), Err(CookieError::Expired));
        assert_eq!(k.verify(a(1), 7, &c, 9_998_000), Err(CookieError::Expired));
    }
}
