//! rustls client configurations for the API server: its CA, client certificates, and the
//! explicitly requested (and loudly logged) `insecure-skip-tls-verify`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA bundle holds no usable certificate.
    #[error("{what}: no PEM certificate found")]
    NoCertificate {
        /// Where the PEM came from.
        what: String,
    },
    /// A PEM block could not be read.
    #[error("{what}: {source}")]
    Pem {
        /// Where the PEM came from.
        what: String,
        /// The parse error.
        source: std::io::Error,
    },
    /// No private key in the client key PEM.
    #[error("{what}: no PEM private key found")]
    NoKey {
        /// Where the PEM came from.
        what: String,
    },
    /// rustls refused the configuration (a bad certificate or key).
    #[error("{what}: {source}")]
    Rustls {
        /// What was being configured.
        what: String,
        /// rustls' reason.
        source: rustls::Error,
    },
}

/// PEM certificates, with `what` naming their origin in errors.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &*pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what: what.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what: what.to_owned() });
    }
    Ok(certs)
}

/// The first PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &*pem)
        .map_err(|source| TlsError::Pem { what: what.to_owned(), source })?
        .ok_or_else(|| TlsError::NoKey { what: what.to_owned() })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How to check the server's certificate.
pub enum Verify<'a> {
    /// Against this CA bundle (PEM), with `what` naming it in errors.
    Ca {
        /// The PEM bytes.
        pem: &'a [u8],
        /// Where they came from.
        what: &'a str,
    },
    /// Not at all: `insecure-skip-tls-verify`.
    Insecure,
}

/// A client configuration, with an optional client certificate chain and key.
pub fn client_config(
    verify: Verify<'_>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let rustls_err = |what: &str| {
        let what = what.to_owned();
        move |source| TlsError::Rustls { what, source }
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("TLS versions"))?;
    let builder = match verify {
        Verify::Ca { pem, what } => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem, what)? {
                roots.add(cert).map_err(rustls_err(what))?;
            }
            builder.with_root_certificates(roots)
        }
        Verify::Insecure => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider()))),
    };
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(rustls_err("client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (signatures are still checked for the handshake).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
