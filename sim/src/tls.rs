//! A throwaway PKI (a CA and a server certificate for localhost, 127.0.0.1 and ::1), and an
//! HTTP/1.1 server loop over TLS for a tide app. The simulator's own TLS is built from the
//! DER rcgen made; PEM is only written out, for the client side to load (through the
//! server's one PEM loader) as a user's files would be.

use std::io;
use std::sync::Arc;

use async_std::net::{TcpListener, TcpStream};
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
    /// The server certificate and key as DER, for the simulator's own TLS (no PEM round trip).
    server_der: (Vec<u8>, Vec<u8>),
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
}

impl TestPki {
    /// Generates a fresh CA and server certificate.
    pub fn generate() -> Result<Self, PkiError> {
        Self::generate_for(&["localhost", "127.0.0.1", "::1"])
    }

    /// Generates a fresh CA and a server certificate for `names` only (DNS names or IP
    /// addresses): an API server whose certificate does not name the address it is reached at.
    pub fn generate_for(names: &[&str]) -> Result<Self, PkiError> {
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "metrics-server-prom test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let (cert, key) = Self::sign(&ca_cert, &ca_key, names, names.first().copied().unwrap_or("localhost"))?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            server_der: (cert.der().to_vec(), key.serialize_der()),
        })
    }

    fn sign(
        ca: &rcgen::Certificate,
        ca_key: &KeyPair,
        names: &[&str],
        cn: &str,
    ) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, ca, ca_key)?;
        Ok((cert, key))
    }

    /// A client certificate signed by this CA (for mTLS tests): `(cert_pem, key_pem)`.
    pub fn client_cert(&self, cn: &str) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "metrics-server-prom test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let (cert, key) = Self::sign(&ca_cert, &ca_key, &[cn], cn)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A rustls server configuration presenting the server certificate, choosing the
    /// cipher suite as the API server does: Go's crypto/tls, on a CPU with AES instructions
    /// and for a client that lists AES-GCM first, takes its own order, AES-128-GCM first
    /// (rustls, left to itself, would follow the client, whose first is AES-256-GCM).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let (cert, key) = &self.server_der;
        let certs = vec![rustls::pki_types::CertificateDer::from(cert.clone())];
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.clone().into());
        let mut provider = rustls::crypto::ring::default_provider();
        let first = rustls::CipherSuite::TLS13_AES_128_GCM_SHA256;
        provider.cipher_suites.sort_by_key(|s| s.suite() != first);
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.ignore_client_order = true;
        Ok(Arc::new(config))
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
            let io = async_dup::Arc::new(async_dup::Mutex::new(tls));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustls client with its defaults (as the server's is) against the simulator's
    /// config, in memory: the suite a Go API server would take.
    #[test]
    fn a_default_client_gets_the_suite_the_api_server_would_choose() {
        let pki = TestPki::generate().expect("pki");
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(client_config), name).expect("client");
        let mut server = rustls::ServerConnection::new(pki.server_config().expect("config")).expect("server");
        while client.is_handshaking() || server.is_handshaking() {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).expect("client writes");
            server.read_tls(&mut &wire[..]).expect("server reads");
            server.process_new_packets().expect("server handshake");
            wire.clear();
            server.write_tls(&mut wire).expect("server writes");
            client.read_tls(&mut &wire[..]).expect("client reads");
            client.process_new_packets().expect("client handshake");
        }
        let suite = client.negotiated_cipher_suite().map(|s| s.suite());
        assert_eq!(suite, Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256));
    }
}
