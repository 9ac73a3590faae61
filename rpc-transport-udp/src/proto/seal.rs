//! Sealed datagrams (PROTOCOL.md 9.10): authenticated encryption of every datagram after
//! a Noise handshake, and the replay window in front of the reliability layer.
//!
//! The handshake rides on the connection handshake of 9.3, after address validation:
//! a **Hello** (an Init with a Noise message) is answered by a **Welcome** (the Noise
//! answer, whose encrypted payload is the Accept body). Two patterns, both with
//! ephemeral X25519 keys on each side, so keys are fresh per connection (forward
//! secrecy) and no long-term key ever encrypts a datagram:
//!
//! * `Noise_IK_25519_ChaChaPoly_BLAKE2s` — static keys: the client knows the server's
//!   public key in advance and proves its own; the server learns the client's public
//!   key (its [`Principal::StaticKey`]).
//! * `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` — a pre-shared key named by an id: both
//!   sides prove knowledge of it (the principal is [`Principal::PreSharedKey`]).
//!
//! Every later datagram is a **Sealed** one: a 16-byte clear header (magic, version,
//! type 11, connection id, packet number) and the ordinary datagram of 9.1 encrypted
//! with ChaCha20-Poly1305 under the direction's key, the packet number as nonce. A
//! [`ReplayWindow`] per direction refuses a packet number seen before or older than the
//! window, so replayed and duplicated datagrams never reach the reliability layer
//! (retransmissions are new datagrams with new packet numbers).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rpc_core::Principal;
use snow::params::NoiseParams;

use super::packet::{MAGIC, VERSION};

/// Datagram type of a sealed datagram (byte 3, as in every datagram).
pub const SEALED_TYPE: u8 = 11;
/// Length of a sealed datagram's clear header.
pub const SEALED_HEADER_LEN: usize = 16;
/// Length of the ChaCha20-Poly1305 tag that ends a sealed datagram.
pub const TAG_LEN: usize = 16;
/// Bytes sealing adds to a datagram: the clear header and the tag.
pub const SEAL_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Longest pre-shared key id, in bytes.
pub const MAX_PSK_ID_LEN: usize = 64;
/// Packet numbers a [`ReplayWindow`] remembers below the highest one it accepted.
pub const REPLAY_WINDOW: u64 = (REPLAY_BLOCKS as u64 - 1) * 64;

const REPLAY_BLOCKS: usize = 16;
const MODE_STATIC_KEYS: u8 = 1;
const MODE_PSK: u8 = 2;
const PATTERN_IK: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PATTERN_PSK: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_LABEL: &[u8] = b"xrpc-udp/1 sealed";
/// The Accept body carried encrypted in a Welcome.
pub(crate) const ACCEPT_PAYLOAD_LEN: usize = 24;

/// Why a security configuration or key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// A pre-shared key id is empty or longer than [`MAX_PSK_ID_LEN`] bytes.
    #[error("a pre-shared key id must be 1..={MAX_PSK_ID_LEN} bytes, not {0}")]
    BadPskId(usize),
    /// A key given as text is not 64 hexadecimal digits.
    #[error("a key must be 64 hexadecimal digits (32 bytes)")]
    BadKeyText,
    /// The system's random number generator failed.
    #[error("no randomness for a key: {0}")]
    Random(String),
}

/// An X25519 static keypair: an endpoint's long-term identity for the static-key
/// handshake. The private half never leaves the process except through
/// [`StaticKeypair::private`].
#[derive(Clone)]
pub struct StaticKeypair {
    private: [u8; 32],
    public: [u8; 32],
}

impl StaticKeypair {
    /// A fresh random keypair.
    pub fn generate() -> Result<Self, SecurityError> {
        let mut private = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut private)
            .map_err(|e| SecurityError::Random(e.to_string()))?;
        Ok(StaticKeypair::from_private(private))
    }

    /// The keypair of a saved private key.
    pub fn from_private(private: [u8; 32]) -> Self {
        use snow::resolvers::CryptoResolver;
        let mut public = [0u8; 32];
        if let Some(mut dh) =
            snow::resolvers::DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519)
        {
            dh.set(&private);
            public.copy_from_slice(dh.pubkey());
        }
        StaticKeypair { private, public }
    }

    /// The keypair of a private key written as 64 hexadecimal digits.
    pub fn from_private_hex(text: &str) -> Result<Self, SecurityError> {
        Ok(StaticKeypair::from_private(key_from_hex(text)?))
    }

    /// The public key, to give to peers.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The private key, to save it.
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKeypair(public {})", hex(&self.public))
    }
}

/// Parses 64 hexadecimal digits into a 32-byte key (a public key, a private key or a
/// pre-shared key).
pub fn key_from_hex(text: &str) -> Result<[u8; 32], SecurityError> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return Err(SecurityError::BadKeyText);
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        let pair = text
            .get(2 * i..2 * i + 2)
            .ok_or(SecurityError::BadKeyText)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| SecurityError::BadKeyText)?;
    }
    Ok(key)
}

/// A key in hexadecimal, as [`key_from_hex`] reads it.
pub fn key_to_hex(key: &[u8; 32]) -> String {
    hex(key)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A 32-byte pre-shared key and the id that names it in the handshake (sent in clear,
/// so it must not be secret).
#[derive(Clone)]
pub struct PreSharedKey {
    id: Arc<str>,
    key: [u8; 32],
}

impl PreSharedKey {
    /// A pre-shared key named `id` (1 to [`MAX_PSK_ID_LEN`] bytes).
    pub fn new(id: impl Into<String>, key: [u8; 32]) -> Result<Self, SecurityError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_PSK_ID_LEN {
            return Err(SecurityError::BadPskId(id.len()));
        }
        Ok(PreSharedKey { id: id.into(), key })
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for PreSharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreSharedKey({:?})", self.id)
    }
}

/// How an endpoint authenticates and encrypts its datagrams ([`super::Config::security`]).
///
/// A client uses one of [`Security::client_static`] or [`Security::client_psk`]; a server
/// [`Security::server`] (static keys) and/or [`Security::server_psk`], and accepts
/// every handshake its configuration can complete. An endpoint with security accepts no
/// plaintext peer, and one without refuses Hellos: both answer with Close reason 6.
#[derive(Clone)]
pub struct Security {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    keypair: Option<StaticKeypair>,
    server_key: Option<[u8; 32]>,
    client_psk: Option<PreSharedKey>,
    psks: HashMap<Arc<str>, PreSharedKey>,
    allowed_keys: Option<HashSet<[u8; 32]>>,
}

impl Security {
    /// A client that proves `keypair` to a server whose public key is `server_key`
    /// (Noise IK).
    pub fn client_static(keypair: StaticKeypair, server_key: [u8; 32]) -> Self {
        Security::from(Inner {
            keypair: Some(keypair),
            server_key: Some(server_key),
            ..Inner::default()
        })
    }

    /// A client that proves knowledge of `psk` (Noise NNpsk0).
    pub fn client_psk(psk: PreSharedKey) -> Self {
        Security::from(Inner {
            client_psk: Some(psk),
            ..Inner::default()
        })
    }

    /// A server with the static identity `keypair`: it completes the handshake of any
    /// client key (see [`Security::allow_client_keys`]) and reports that key as the
    /// connection's principal.
    pub fn server(keypair: StaticKeypair) -> Self {
        Security::from(Inner {
            keypair: Some(keypair),
            ..Inner::default()
        })
    }

    /// A server that accepts clients proving one of `psks`.
    pub fn server_psk(psks: impl IntoIterator<Item = PreSharedKey>) -> Self {
        Security::from(Inner::default()).with_psks(psks)
    }

    /// Server: also accept clients proving one of `psks`.
    pub fn with_psks(self, psks: impl IntoIterator<Item = PreSharedKey>) -> Self {
        let mut inner = self.into_inner();
        for psk in psks {
            inner.psks.insert(psk.id.clone(), psk);
        }
        Security::from(inner)
    }

    /// Server: complete the static-key handshake only for these client public keys
    /// (others get Close reason 6 and are counted as refused handshakes).
    pub fn allow_client_keys(self, keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        let mut inner = self.into_inner();
        inner.allowed_keys = Some(keys.into_iter().collect());
        Security::from(inner)
    }

    fn into_inner(self) -> Inner {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                keypair: shared.keypair.clone(),
                server_key: shared.server_key,
                client_psk: shared.client_psk.clone(),
                psks: shared.psks.clone(),
                allowed_keys: shared.allowed_keys.clone(),
            },
        }
    }

    /// The static public key this endpoint proves, if it has one.
    pub fn public_key(&self) -> Option<[u8; 32]> {
        self.inner.keypair.as_ref().map(StaticKeypair::public)
    }
}

impl From<Inner> for Security {
    fn from(inner: Inner) -> Self {
        Security {
            inner: Arc::new(inner),
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        let mut ids: Vec<&str> = i.psks.keys().map(|k| &**k).collect();
        ids.sort_unstable();
        f.debug_struct("Security")
            .field("public_key", &i.keypair.as_ref().map(|k| hex(&k.public)))
            .field("server_key", &i.server_key.map(|k| hex(&k)))
            .field("client_psk", &i.client_psk.as_ref().map(PreSharedKey::id))
            .field("psks", &ids)
            .field("allowed_keys", &i.allowed_keys.as_ref().map(HashSet::len))
            .finish()
    }
}

/// Two configurations are equal when they are the same one (keys are not compared).
impl PartialEq for Security {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for Security {}

/// Why a handshake failed (each is counted by the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandshakeError {
    /// The handshake field is malformed, or its mode is one this endpoint does not offer.
    Unsupported,
    /// The Noise message did not decrypt: the wrong key (or a tampered message).
    Failed,
    /// The handshake proved a key this server does not allow.
    NotAllowed,
}

/// The clear fields of a Hello that the handshake binds (its prologue).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HelloFields {
    pub conn_id: u32,
    pub client_incarnation: u64,
    pub recv_window: u32,
    pub max_datagram: u32,
}

fn prologue(fields: &HelloFields, mode_and_id: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PROLOGUE_LABEL.len() + 20 + mode_and_id.len());
    p.extend_from_slice(PROLOGUE_LABEL);
    p.extend_from_slice(&fields.conn_id.to_be_bytes());
    p.extend_from_slice(&fields.client_incarnation.to_be_bytes());
    p.extend_from_slice(&fields.recv_window.to_be_bytes());
    p.extend_from_slice(&fields.max_datagram.to_be_bytes());
    p.extend_from_slice(mode_and_id);
    p
}

fn params(pattern: &str) -> Result<NoiseParams, HandshakeError> {
    pattern.parse().map_err(|_| HandshakeError::Unsupported)
}

/// What a client keeps between its Hello and the server's Welcome.
pub(crate) struct ClientHandshake {
    state: snow::HandshakeState,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientHandshake")
    }
}

/// Client: starts the handshake; returns its state and the Hello's handshake field.
/// `None` when `security` is a server configuration (no client key or PSK).
pub(crate) fn client_hello(
    security: &Security,
    fields: &HelloFields,
) -> Option<(ClientHandshake, Bytes)> {
    let inner = &security.inner;
    let mut field = Vec::with_capacity(128);
    let state = if let (Some(kp), Some(server_key)) = (&inner.keypair, &inner.server_key) {
        field.push(MODE_STATIC_KEYS);
        let prologue = prologue(fields, &field);
        snow::Builder::new(params(PATTERN_IK).ok()?)
            .local_private_key(&kp.private)
            .remote_public_key(server_key)
            .prologue(&prologue)
            .build_initiator()
            .ok()?
    } else if let Some(psk) = &inner.client_psk {
        field.push(MODE_PSK);
        // At most MAX_PSK_ID_LEN (64), checked by PreSharedKey::new.
        field.push(psk.id.len() as u8);
        field.extend_from_slice(psk.id.as_bytes());
        let prologue = prologue(fields, &field);
        snow::Builder::new(params(PATTERN_PSK).ok()?)
            .psk(0, &psk.key)
            .prologue(&prologue)
            .build_initiator()
            .ok()?
    } else {
        return None;
    };
    let mut state = state;
    let mut msg = [0u8; 256];
    let n = state.write_message(&[], &mut msg).ok()?;
    field.extend_from_slice(msg.get(..n)?);
    Some((ClientHandshake { state }, Bytes::from(field)))
}

impl ClientHandshake {
    /// Reads the Welcome: the session and the Accept body it carried.
    pub(crate) fn finish(
        mut self,
        welcome: &[u8],
        principal: Option<Principal>,
    ) -> Result<(Session, [u8; ACCEPT_PAYLOAD_LEN]), HandshakeError> {
        let mut payload = [0u8; 64];
        let n = self
            .state
            .read_message(welcome, &mut payload)
            .map_err(|_| HandshakeError::Failed)?;
        let accept: [u8; ACCEPT_PAYLOAD_LEN] = payload
            .get(..n)
            .and_then(|p| p.try_into().ok())
            .ok_or(HandshakeError::Failed)?;
        let transport = self
            .state
            .into_stateless_transport_mode()
            .map_err(|_| HandshakeError::Failed)?;
        Ok((Session::new(transport, principal), accept))
    }
}

/// Server: answers a Hello's handshake field. Returns the session (with the client's
/// principal) and the Welcome's handshake field, whose encrypted payload is `accept`.
pub(crate) fn server_welcome(
    security: &Security,
    fields: &HelloFields,
    field: &[u8],
    accept: &[u8; ACCEPT_PAYLOAD_LEN],
) -> Result<(Session, Bytes), HandshakeError> {
    let inner = &security.inner;
    let (&mode, rest) = field.split_first().ok_or(HandshakeError::Unsupported)?;
    let (mut state, message, psk_id) = match mode {
        MODE_STATIC_KEYS => {
            let kp = inner.keypair.as_ref().ok_or(HandshakeError::Unsupported)?;
            let prologue = prologue(fields, &[mode]);
            let state = snow::Builder::new(params(PATTERN_IK)?)
                .local_private_key(&kp.private)
                .prologue(&prologue)
                .build_responder()
                .map_err(|_| HandshakeError::Unsupported)?;
            (state, rest, None)
        }
        MODE_PSK => {
            let (&id_len, rest) = rest.split_first().ok_or(HandshakeError::Unsupported)?;
            let id_len = usize::from(id_len);
            let id = rest.get(..id_len).ok_or(HandshakeError::Unsupported)?;
            let message = rest.get(id_len..).ok_or(HandshakeError::Unsupported)?;
            let id = std::str::from_utf8(id).map_err(|_| HandshakeError::Failed)?;
            let psk = inner.psks.get(id).ok_or(HandshakeError::Failed)?;
            let prologue = prologue(fields, field.get(..2 + id_len).unwrap_or(&[]));
            let state = snow::Builder::new(params(PATTERN_PSK)?)
                .psk(0, &psk.key)
                .prologue(&prologue)
                .build_responder()
                .map_err(|_| HandshakeError::Unsupported)?;
            (state, message, Some(psk.id.clone()))
        }
        _ => return Err(HandshakeError::Unsupported),
    };
    let mut scratch = [0u8; 64];
    state
        .read_message(message, &mut scratch)
        .map_err(|_| HandshakeError::Failed)?;
    let principal = match psk_id {
        Some(id) => Principal::PreSharedKey(id),
        None => {
            let key: [u8; 32] = state
                .get_remote_static()
                .and_then(|k| k.try_into().ok())
                .ok_or(HandshakeError::Failed)?;
            if inner
                .allowed_keys
                .as_ref()
                .is_some_and(|a| !a.contains(&key))
            {
                return Err(HandshakeError::NotAllowed);
            }
            Principal::StaticKey(key)
        }
    };
    let mut msg = [0u8; 256];
    let n = state
        .write_message(accept, &mut msg)
        .map_err(|_| HandshakeError::Failed)?;
    let welcome = Bytes::copy_from_slice(msg.get(..n).unwrap_or(&[]));
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|_| HandshakeError::Failed)?;
    Ok((Session::new(transport, Some(principal)), welcome))
}

/// Why a sealed datagram was dropped (each is counted by the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Shorter than a header and a tag, or not a sealed datagram.
    Malformed,
    /// Its packet number was seen before, or is older than the window.
    Replayed,
    /// It does not decrypt: tampered, or sealed for another connection.
    Forged,
}

/// The connection id of a sealed datagram, if `datagram` is one.
pub(crate) fn sealed_conn_id(datagram: &[u8]) -> Option<u32> {
    let h = datagram.get(..SEALED_HEADER_LEN)?;
    if h[0..2] != MAGIC.to_be_bytes() || h[2] != VERSION || h[3] != SEALED_TYPE {
        return None;
    }
    Some(u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
}

/// Whether `datagram` says it is sealed (byte 3), whatever else it holds.
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.get(3) == Some(&SEALED_TYPE)
}

/// One connection's keys after the handshake: the packet number it sends next and the
/// replay window of what it received.
pub(crate) struct Session {
    transport: snow::StatelessTransportState,
    next_pn: u64,
    replay: ReplayWindow,
    principal: Option<Principal>,
    plain: Vec<u8>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("next_pn", &self.next_pn)
            .field("principal", &self.principal)
            .finish()
    }
}

impl Session {
    fn new(transport: snow::StatelessTransportState, principal: Option<Principal>) -> Self {
        Session {
            transport,
            next_pn: 0,
            replay: ReplayWindow::default(),
            principal,
            plain: Vec::new(),
        }
    }

    /// The peer's identity as the handshake proved it (server side).
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Seals the datagram `out` ‖ `gather` in place of `out` (`gather` is emptied):
    /// encryption writes a new buffer anyway, so the gathered payload is copied once here.
    /// Returns false when the packet numbers are exhausted (2^64 datagrams).
    pub(crate) fn seal(
        &mut self,
        conn_id: u32,
        out: &mut Vec<u8>,
        gather: &mut Vec<Bytes>,
    ) -> bool {
        let pn = self.next_pn;
        let Some(next) = pn.checked_add(1) else {
            return false;
        };
        self.plain.clear();
        self.plain.extend_from_slice(out);
        for chunk in gather.drain(..) {
            self.plain.extend_from_slice(&chunk);
        }
        out.clear();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(SEALED_TYPE);
        out.extend_from_slice(&conn_id.to_be_bytes());
        out.extend_from_slice(&pn.to_be_bytes());
        out.resize(SEALED_HEADER_LEN + self.plain.len() + TAG_LEN, 0);
        let Some(body) = out.get_mut(SEALED_HEADER_LEN..) else {
            return false;
        };
        match self.transport.write_message(pn, &self.plain, body) {
            Ok(n) => {
                out.truncate(SEALED_HEADER_LEN + n);
                self.next_pn = next;
                true
            }
            Err(_) => false,
        }
    }

    /// Opens a sealed datagram: the plaintext datagram inside, or why it was dropped.
    pub(crate) fn open(&mut self, datagram: &[u8]) -> Result<Bytes, OpenError> {
        if datagram.len() < SEALED_HEADER_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (header, sealed) = datagram.split_at(SEALED_HEADER_LEN);
        let mut pn = [0u8; 8];
        pn.copy_from_slice(&header[8..16]);
        let pn = u64::from_be_bytes(pn);
        if !self.replay.check(pn) {
            return Err(OpenError::Replayed);
        }
        let mut plain = BytesMut::zeroed(sealed.len() - TAG_LEN);
        let n = self
            .transport
            .read_message(pn, sealed, &mut plain)
            .map_err(|_| OpenError::Forged)?;
        // Only an authentic datagram moves the window.
        self.replay.update(pn);
        plain.truncate(n);
        Ok(plain.freeze())
    }
}

/// A sliding window of received packet numbers (RFC 6479's bitmap of blocks): accepts
/// each number once, and nothing [`REPLAY_WINDOW`] or more below the highest accepted.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// The highest number accepted so far.
    highest: Option<u64>,
    blocks: [u64; REPLAY_BLOCKS],
}

impl ReplayWindow {
    fn bit(pn: u64) -> (usize, u64) {
        (((pn / 64) % REPLAY_BLOCKS as u64) as usize, 1 << (pn % 64))
    }

    /// Whether `pn` would be accepted (not seen, not too old). Cheap: made before
    /// decrypting.
    pub fn check(&self, pn: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if pn > h => true,
            Some(h) if h - pn >= REPLAY_WINDOW => false,
            Some(_) => {
                let (block, mask) = ReplayWindow::bit(pn);
                self.blocks[block] & mask == 0
            }
        }
    }

    /// Records `pn` (after it was authenticated); returns whether it was new.
    pub fn update(&mut self, pn: u64) -> bool {
        if !self.check(pn) {
            return false;
        }
        match self.highest {
            Some(h) if pn <= h => {}
            Some(h) => {
                // Clear the blocks the window slides over (at most all of them).
                let (old, new) = (h / 64, pn / 64);
                if new - old >= REPLAY_BLOCKS as u64 {
                    self.blocks = [0; REPLAY_BLOCKS];
                } else {
                    for b in old + 1..=new {
                        self.blocks[(b % REPLAY_BLOCKS as u64) as usize] = 0;
                    }
                }
                self.highest = Some(pn);
            }
            None => self.highest = Some(pn),
        }
        let (block, mask) = ReplayWindow::bit(pn);
        self.blocks[block] |= mask;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> HelloFields {
        HelloFields {
            conn_id: 7,
            client_incarnation: 42,
            recv_window: 4096,
            max_datagram: 1200,
        }
    }

    #[test]
    fn replay_window_accepts_each_number_once_and_nothing_too_old() {
        let mut w = ReplayWindow::default();
        assert!(w.update(0));
        assert!(!w.update(0), "a replay");
        assert!(w.update(5));
        assert!(w.update(3), "late but inside the window");
        assert!(!w.update(3));
        assert!(w.update(5000));
        assert!(!w.check(5000 - REPLAY_WINDOW), "just outside the window");
        assert!(w.check(5000 - REPLAY_WINDOW + 1));
        assert!(w.update(5000 - 100));
        assert!(!w.check(5000 - 100));
        // Sliding by more than the whole window forgets everything below.
        assert!(w.update(100_000));
        assert!(!w.check(5000));
        assert!(w.check(100_000 - 1));
        assert!(w.update(u64::MAX));
        assert!(!w.update(u64::MAX));
    }

    #[test]
    fn replay_window_reuses_blocks_as_it_slides() {
        let mut w = ReplayWindow::default();
        for pn in 0..10_000u64 {
            assert!(w.update(pn), "{pn}");
        }
        for pn in 10_000 - REPLAY_WINDOW..10_000 {
            assert!(!w.check(pn), "{pn} was seen");
        }
    }

    fn handshake(
        client: &Security,
        server: &Security,
    ) -> Result<(Session, Session), HandshakeError> {
        let f = fields();
        let (hs, hello) = client_hello(client, &f).ok_or(HandshakeError::Unsupported)?;
        let accept = [9u8; ACCEPT_PAYLOAD_LEN];
        let (srv, welcome) = server_welcome(server, &f, &hello, &accept)?;
        let (cli, got) = hs.finish(&welcome, None)?;
        assert_eq!(got, accept);
        Ok((cli, srv))
    }

    fn round_trip(a: &mut Session, b: &mut Session) {
        let mut out = b"hello datagram".to_vec();
        let mut gather = vec![Bytes::from_static(b" and its gathered payload")];
        assert!(a.seal(7, &mut out, &mut gather));
        assert!(gather.is_empty());
        assert_eq!(sealed_conn_id(&out), Some(7));
        assert!(
            !out.windows(5).any(|w| w == b"hello"),
            "no plaintext on the wire"
        );
        let plain = b.open(&out).expect("opens");
        assert_eq!(&plain[..], b"hello datagram and its gathered payload");
        assert_eq!(b.open(&out), Err(OpenError::Replayed));
        let mut tampered = out.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        tampered[15] = tampered[15].wrapping_add(1);
        assert_eq!(b.open(&tampered), Err(OpenError::Forged));
    }

    #[test]
    fn static_keys_handshake_proves_both_keys_and_seals_both_ways() {
        let server_kp = StaticKeypair::generate().expect("key");
        let client_kp = StaticKeypair::generate().expect("key");
        let client = Security::client_static(client_kp.clone(), server_kp.public());
        let server = Security::server(server_kp.clone());
        let (mut c, mut s) = handshake(&client, &server).expect("handshake");
        assert_eq!(
            s.principal(),
            Some(&Principal::StaticKey(client_kp.public()))
        );
        round_trip(&mut c, &mut s);
        round_trip(&mut s, &mut c);

        // The wrong server key, a client key not allowed, and a PSK the server lacks.
        let other = StaticKeypair::generate().expect("key");
        let wrong = Security::client_static(client_kp.clone(), other.public());
        assert_eq!(
            handshake(&wrong, &server).err(),
            Some(HandshakeError::Failed)
        );
        let strict = Security::server(server_kp).allow_client_keys([other.public()]);
        assert_eq!(
            handshake(&client, &strict).err(),
            Some(HandshakeError::NotAllowed)
        );
        let psk = Security::client_psk(PreSharedKey::new("a", [1; 32]).expect("id"));
        assert_eq!(handshake(&psk, &server).err(), Some(HandshakeError::Failed));
    }

    #[test]
    fn psk_handshake_names_the_key_and_a_wrong_key_fails() {
        let server = Security::server_psk([
            PreSharedKey::new("svc-a", [1; 32]).expect("id"),
            PreSharedKey::new("svc-b", [2; 32]).expect("id"),
        ]);
        let client = Security::client_psk(PreSharedKey::new("svc-b", [2; 32]).expect("id"));
        let (mut c, mut s) = handshake(&client, &server).expect("handshake");
        assert_eq!(
            s.principal(),
            Some(&Principal::PreSharedKey("svc-b".into()))
        );
        round_trip(&mut c, &mut s);
        let wrong = Security::client_psk(PreSharedKey::new("svc-b", [3; 32]).expect("id"));
        assert_eq!(
            handshake(&wrong, &server).err(),
            Some(HandshakeError::Failed)
        );
        let unknown = Security::client_psk(PreSharedKey::new("svc-c", [2; 32]).expect("id"));
        assert_eq!(
            handshake(&unknown, &server).err(),
            Some(HandshakeError::Failed)
        );
    }

    #[test]
    fn the_handshake_binds_the_clear_hello_fields() {
        let server = Security::server_psk([PreSharedKey::new("k", [1; 32]).expect("id")]);
        let client = Security::client_psk(PreSharedKey::new("k", [1; 32]).expect("id"));
        let (_, hello) = client_hello(&client, &fields()).expect("hello");
        let mut moved = fields();
        moved.conn_id = 8;
        let accept = [0u8; ACCEPT_PAYLOAD_LEN];
        assert_eq!(
            server_welcome(&server, &moved, &hello, &accept).err(),
            Some(HandshakeError::Failed)
        );
        assert!(server_welcome(&server, &fields(), &hello, &accept).is_ok());
        assert_eq!(
            server_welcome(&server, &fields(), &[9, 9, 9], &accept).err(),
            Some(HandshakeError::Unsupported)
        );
        assert_eq!(
            server_welcome(&server, &fields(), &[], &accept).err(),
            Some(HandshakeError::Unsupported)
        );
    }

    #[test]
    fn sessions_of_two_connections_cannot_open_each_other() {
        let server = Security::server_psk([PreSharedKey::new("k", [1; 32]).expect("id")]);
        let client = Security::client_psk(PreSharedKey::new("k", [1; 32]).expect("id"));
        let (mut c1, _s1) = handshake(&client, &server).expect("one");
        let (_c2, mut s2) = handshake(&client, &server).expect("two");
        let mut out = b"for connection one".to_vec();
        assert!(c1.seal(7, &mut out, &mut Vec::new()));
        assert_eq!(s2.open(&out), Err(OpenError::Forged));
    }

    #[test]
    fn keys_read_from_hex_and_public_keys_follow_private_ones() {
        let kp = StaticKeypair::generate().expect("key");
        let again = StaticKeypair::from_private_hex(&key_to_hex(kp.private())).expect("hex");
        assert_eq!(again.public(), kp.public());
        assert_ne!(kp.public(), [0; 32]);
        assert_eq!(key_from_hex("zz"), Err(SecurityError::BadKeyText));
        assert_eq!(
            key_from_hex(&"g".repeat(64)),
            Err(SecurityError::BadKeyText)
        );
        assert!(PreSharedKey::new("", [0; 32]).is_err());
        assert!(PreSharedKey::new("x".repeat(65), [0; 32]).is_err());
    }
}
