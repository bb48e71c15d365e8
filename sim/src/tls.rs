//! A throwaway PKI (a CA and a server certificate for localhost, 127.0.0.1 and ::1), and an
//! HTTP/1.1 server loop over TLS for a tide app.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_std::net::{TcpListener, TcpStream};
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;
use futures_rustls::TlsAcceptor;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA and a server certificate it signed, all PEM.
#[derive(Clone)]
pub struct TestPki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The CA key (to sign more, e.g. client certificates).
    pub ca_key_pem: String,
    /// The server certificate (SANs: localhost, 127.0.0.1, ::1).
    pub server_cert_pem: String,
    /// The server key.
    pub server_key_pem: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestPki(<keys redacted>)")
    }
}

/// A certificate could not be generated or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("generating a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS server configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// PEM could not be read back.
    #[error("reading PEM: {0}")]
    Pem(#[from] io::Error),
}

impl TestPki {
    /// Generates a fresh CA and server certificate.
    pub fn generate() -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "metrics-server-prom test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let (cert_pem, key_pem) = Self::sign(&ca_cert, &ca_key, &["localhost", "127.0.0.1", "::1"], "localhost")?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            server_cert_pem: cert_pem,
            server_key_pem: key_pem,
        })
    }

    fn sign(ca: &rcgen::Certificate, ca_key: &KeyPair, names: &[&str], cn: &str) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, ca, ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate signed by this CA (for mTLS tests): `(cert_pem, key_pem)`.
    pub fn client_cert(&self, cn: &str) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "metrics-server-prom test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        Self::sign(&ca_cert, &ca_key, &[cn], cn)
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let certs = rustls_pemfile::certs(&mut self.server_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut self.server_key_pem.as_bytes())?
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(Arc::new(config))
    }
}

/// A TLS stream async-h1's server can clone (it reads and writes through separate handles).
pub struct SharedStream<S>(Arc<Mutex<S>>);

impl<S> Clone for SharedStream<S> {
    fn clone(&self) -> Self {
        SharedStream(self.0.clone())
    }
}

impl<S> SharedStream<S> {
    /// Wraps a stream.
    pub fn new(s: S) -> Self {
        SharedStream(Arc::new(Mutex::new(s)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *s).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *s).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *s).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *s).poll_close(cx)
    }
}

/// Serves `app` on `listener` over TLS until the listener fails.
pub async fn serve_tls<State: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: tide::Server<State>,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        let stream: TcpStream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        async_std::task::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    log::debug!("TLS handshake: {e}");
                    return;
                }
            };
            let io = SharedStream::new(tls);
            let served = async_h1::accept(io, |req| {
                let app = app.clone();
                async move { app.respond(req).await }
            });
            if let Err(e) = served.await {
                log::debug!("connection: {e}");
            }
        });
    }
    Ok(())
}
