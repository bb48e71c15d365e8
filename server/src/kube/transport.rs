//! surf's HTTP backend: async-h1 over TCP, with TLS from rustls 0.23 (futures-rustls).
//!
//! surf's own `h1-client-rustls` feature pins rustls 0.18, webpki 0.21 and ring 0.16, which
//! carry known vulnerabilities, so we give surf this [`HttpClient`] instead. One connection
//! per request: a scrape makes two or three, and the API server closes idle ones anyway.

use std::fmt;
use std::sync::Arc;

use async_std::net::TcpStream;
use futures_rustls::TlsConnector;
use http_client::{Config, Error, HttpClient, Request, Response};
use http_types::url::Host;
use http_types::StatusCode;
use rustls::pki_types::ServerName;

/// Connects over `http://`, or `https://` with the given TLS configuration.
#[derive(Clone)]
pub struct Transport {
    tls: Option<Arc<rustls::ClientConfig>>,
    config: Config,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("tls", &self.tls.is_some()).finish()
    }
}

impl Transport {
    /// A transport for `http://` only (`tls: None`) or for both schemes.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Transport { tls, config: Config::new() }
    }
}

fn error(message: String) -> Error {
    Error::from_str(StatusCode::BadGateway, message)
}

#[async_trait::async_trait]
impl HttpClient for Transport {
    async fn send(&self, req: Request) -> Result<Response, Error> {
        let url = req.url().clone();
        let host = url.host().ok_or_else(|| error(format!("{url}: no host")))?;
        let port = url.port_or_known_default().ok_or_else(|| error(format!("{url}: no port")))?;
        let host_str = url.host_str().unwrap_or_default();
        let addr = format!("{host_str}:{port}");
        let tcp = TcpStream::connect(&addr).await.map_err(|e| error(format!("connect to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match url.scheme() {
            "http" => async_h1::connect(tcp, req).await,
            "https" => {
                let tls = self.tls.clone().ok_or_else(|| error(format!("{url}: https without a TLS configuration")))?;
                let name = match host {
                    Host::Domain(d) => ServerName::try_from(d.to_owned()).map_err(|e| error(format!("{d}: {e}")))?,
                    Host::Ipv4(ip) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                    Host::Ipv6(ip) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                };
                let stream = TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| error(format!("TLS handshake with {addr}: {e}")))?;
                async_h1::connect(stream, req).await
            }
            other => Err(error(format!("{url}: unsupported scheme {other}"))),
        }
    }

    fn set_config(&mut self, config: Config) -> http_types::Result<()> {
        self.config = config;
        Ok(())
    }

    fn config(&self) -> &Config {
        &self.config
    }
}
