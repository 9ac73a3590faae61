//! TLS 1.3 over TCP, with rustls (ring provider): server authentication by certificate,
//! optional mutual TLS, the ALPN identifier [`ALPN`], SNI from the endpoint's host name.
//!
//! ```no_run
//! # async fn run(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use rpc_transport_tcp::{TcpChannel, TcpListener, TlsClient, TlsServer};
//!
//! let server_tls = TlsServer::builder(cert, key)?.build()?;
//! let listener = TcpListener::bind("127.0.0.1:0").await?.with_tls(server_tls);
//!
//! let client_tls = TlsClient::builder().ca_certificates(ca)?.build()?;
//! let channel = TcpChannel::new("localhost:4000").with_tls(client_tls);
//! # drop((listener, channel)); Ok(()) }
//! ```
//!
//! # Principals
//!
//! With mutual TLS ([`TlsServerBuilder::client_ca_certificates`]), a connection whose
//! client presented a certificate the CA verified carries that client's identity as
//! its [`Principal`] ([`rpc_core::transport::Connection::principal`]):
//! `Principal::Certificate(name)`, named as [`certificate_principal`] says. The server
//! scopes the reply cache, low-water marks and cancels by it. Without a verified
//! client certificate (plain TLS, or plain TCP) there is none.
//!
//! What TLS costs on the send path: the frames' chunks (the shared descriptors) are
//! still handed over without being joined, but encryption reads every plaintext byte
//! into TLS records, so each byte is copied once into rustls' record buffer. The
//! caller-side direct write ([`crate::TcpConfig::direct_write`]) and busy-polling are
//! not used on TLS connections: both need the raw socket.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rpc_core::Principal;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::TcpStream;

/// The ALPN protocol identifier of this framework's frames over TLS (docs/PROTOCOL.md
/// §11). A server refuses a client that offers only other protocols.
pub const ALPN: &[u8] = b"xrpc/1";

/// Default [`TlsServerBuilder::handshake_timeout`]: a peer that has not finished its
/// handshake by then is disconnected.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`TlsServerBuilder::max_handshakes`]: handshakes in progress at once; further
/// connections wait in the kernel's accept queue.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// A TLS configuration that could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A PEM input held no certificate, or no private key.
    #[error("no {what} found in the PEM input")]
    Missing {
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// A PEM input did not parse.
    #[error("bad PEM input ({what}): {source}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the configuration (a certificate it cannot use, a key that does
    /// not match).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (e.g. no usable CA).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The host name given for SNI and verification is not a valid DNS name or IP.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// The system's root certificates could not be loaded.
    #[error("system root certificates: {0}")]
    SystemRoots(String),
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem {
            what: "certificate",
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Missing {
            what: "certificate",
        });
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsConfigError::Missing {
            what: "private key",
        },
        source => TlsConfigError::Pem {
            what: "private key",
            source,
        },
    })
}

fn roots_from(pem: &[u8], roots: &mut RootCertStore) -> Result<(), TlsConfigError> {
    for cert in certificates(pem)? {
        roots.add(cert)?;
    }
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side's TLS: which servers to trust, an optional client certificate (for
/// mutual TLS) and an optional name to verify instead of the endpoint's host name.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TlsClient`].
#[derive(Debug)]
pub struct TlsClientBuilder {
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    server_name: Option<String>,
}

impl TlsClient {
    /// A builder that trusts nothing yet: add [`ca_certificates`](TlsClientBuilder::ca_certificates)
    /// or [`system_roots`](TlsClientBuilder::system_roots).
    pub fn builder() -> TlsClientBuilder {
        TlsClientBuilder {
            roots: RootCertStore::empty(),
            identity: None,
            server_name: None,
        }
    }

    /// TLS over `stream`, verifying the server as `host` (the endpoint's host name or
    /// IP, unless the configuration names another).
    pub(crate) async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("TLS: {host:?} is not a valid server name"),
                )
            })?,
        };
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| tls_error("TLS handshake failed", e))
    }
}

impl TlsClientBuilder {
    /// Trusts the CA certificates in `pem` (one or more `CERTIFICATE` blocks).
    pub fn ca_certificates(mut self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        roots_from(pem, &mut self.roots)?;
        Ok(self)
    }

    /// Trusts the operating system's root certificates.
    pub fn system_roots(mut self) -> Result<Self, TlsConfigError> {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(TlsConfigError::SystemRoots(match found.errors.first() {
                Some(e) => e.to_string(),
                None => "none found".to_owned(),
            }));
        }
        for cert in found.certs {
            // A system store may hold certificates webpki cannot use: skip those.
            let _ = self.roots.add(cert);
        }
        Ok(self)
    }

    /// Presents this certificate chain and key to servers that ask for one (mutual
    /// TLS).
    pub fn identity(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        self.identity = Some((certificates(cert_pem)?, private_key(key_pem)?));
        Ok(self)
    }

    /// Verifies the server (and sends SNI) as `name` instead of the endpoint's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// The configuration: TLS 1.3 only, ALPN [`ALPN`].
    pub fn build(self) -> Result<TlsClient, TlsConfigError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots);
        let mut config = match self.identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN.to_vec()];
        let server_name = self
            .server_name
            .map(|n| ServerName::try_from(n.clone()).map_err(|_| TlsConfigError::ServerName(n)))
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }
}

/// The server side's TLS: its certificate and key, and optionally the CA whose client
/// certificates it requires (mutual TLS).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: tokio_rustls::TlsAcceptor,
    /// Whether client certificates are required and verified (mutual TLS): only then
    /// does a connection get a principal.
    verifies_clients: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TlsServer`].
#[derive(Debug)]
pub struct TlsServerBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl TlsServer {
    /// A server presenting the chain in `cert_pem` with the key in `key_pem`.
    pub fn builder(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsServerBuilder, TlsConfigError> {
        Ok(TlsServerBuilder {
            chain: certificates(cert_pem)?,
            key: private_key(key_pem)?,
            client_roots: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        })
    }

    /// The server side of the handshake over `stream`, bounded by the handshake timeout;
    /// with the stream, the client's principal when it presented a verified
    /// certificate.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> io::Result<(
        tokio_rustls::server::TlsStream<TcpStream>,
        Option<Principal>,
    )> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                let principal = if self.verifies_clients {
                    // The end-entity certificate comes first; the verifier accepted
                    // the chain, or the handshake would have failed.
                    stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|cert| certificate_principal(cert.as_ref()))
                } else {
                    None
                };
                Ok((stream, principal))
            }
            Ok(Err(e)) => Err(tls_error("TLS handshake failed", e)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "TLS handshake not finished within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }
}

impl TlsServerBuilder {
    /// Requires every client to present a certificate issued by a CA in `pem` (mutual
    /// TLS); a client without one, or with another, fails the handshake.
    pub fn client_ca_certificates(mut self, pem: &[u8]) -> Result<Self, TlsConfigError> {
        roots_from(
            pem,
            self.client_roots.get_or_insert_with(RootCertStore::empty),
        )?;
        Ok(self)
    }

    /// How long a client may take to finish its handshake. Default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`] (10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Most handshakes in progress at once. Default [`DEFAULT_MAX_HANDSHAKES`] (256);
    /// counted in [`crate::TcpListener::handshake_stats`].
    pub fn max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n.max(1);
        self
    }

    /// The configuration: TLS 1.3 only, ALPN [`ALPN`] required.
    pub fn build(self) -> Result<TlsServer, TlsConfigError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let verifies_clients = self.client_roots.is_some();
        let builder = match self.client_roots {
            Some(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?,
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(self.chain, self.key)?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(TlsServer {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            verifies_clients,
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
        })
    }
}

/// The principal of a client whose certificate (DER) was verified:
/// `Principal::Certificate(name)`, where `name` is the certificate's first subject
/// alternative name that is a DNS name, a URI or an e-mail address; failing that, its
/// subject's common name; failing that (or if the certificate does not parse), the
/// lowercase hex SHA-256 fingerprint of the DER bytes.
///
/// Useful to compute, from a client's certificate file, the name an
/// [`Authorizer`](rpc_core::server::Authorizer) should allow.
pub fn certificate_principal(der: &[u8]) -> Principal {
    let name = certificate_name(der).unwrap_or_else(|| fingerprint(der));
    Principal::Certificate(name.into())
}

fn certificate_name(der: &[u8]) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let first = san.value.general_names.iter().find_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s)
                if !s.is_empty() =>
            {
                Some(*s)
            }
            _ => None,
        });
        if let Some(name) = first {
            return Some(name.to_owned());
        }
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok().filter(|s| !s.is_empty()))
        .map(str::to_owned);
    common_name
}

/// Lowercase hex SHA-256 of `der`.
fn fingerprint(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// An I/O error that names the TLS failure (unknown issuer, expired certificate, name
/// mismatch, missing client certificate, ...) after `what`.
fn tls_error(what: &str, e: io::Error) -> io::Error {
    let kind = match e.kind() {
        io::ErrorKind::InvalidData => io::ErrorKind::PermissionDenied,
        kind => kind,
    };
    io::Error::new(kind, format!("{what}: {e}"))
}
