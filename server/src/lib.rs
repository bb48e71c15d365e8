//! # msp-server
//!
//! The metrics-server-prom service: configuration, the Kubernetes client (surf over our
//! rustls 0.23 transport), the scrape pipeline and the tide app. `main` only parses
//! arguments and calls [`run`]; embedders build a [`Registry`] with their own enrichers and
//! call [`build`] or [`run`] the same way.

pub mod app;
pub mod cache;
pub mod config;
pub mod demo;
pub mod exporter;
pub mod kube;
pub mod logging;
pub mod negotiate;
pub mod registry;
pub mod serve;
pub mod source;
pub mod web;

use std::sync::Arc;

pub use app::app;
pub use config::{Config, ConfigError};
pub use exporter::Exporter;
pub use registry::Registry;

use msp_core::RenderOptions;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API server could not be configured.
    #[error(transparent)]
    Endpoint(#[from] kube::EndpointError),
    /// The web-config file could not be used.
    #[error(transparent)]
    Web(#[from] web::WebConfigError),
    /// The port could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The exporter for `config`, with enrichers from `registry`.
pub fn build(config: &Config, registry: &Registry) -> Result<Exporter, StartError> {
    let endpoint = kube::resolve(&config.kubernetes, &|k| std::env::var(k).ok())?;
    if endpoint.insecure {
        log::warn!(
            "TLS certificate verification towards the API server ({}) is OFF (insecure_skip_tls_verify): \
             anyone on the path can read the token and forge metrics",
            endpoint.base
        );
    }
    log::info!("API server {}", endpoint.base);
    let client = Arc::new(kube::KubeClient::new(endpoint, config.limits));
    let enrichers = registry.build(&config.enrichers, &config.enricher_options);
    let options = RenderOptions { naming: config.naming, timestamps: config.timestamps, format: None };
    Ok(Exporter::new(client, enrichers, options, config.scope.clone()))
}

/// Builds the exporter and serves it on `config.listen` until SIGTERM or SIGINT, then lets
/// scrapes in flight finish and returns.
pub async fn run(config: &Config, registry: &Registry) -> Result<(), StartError> {
    let exporter = Arc::new(build(config, registry)?);
    let addr = config.listen;
    let listen = |source| StartError::Listen { addr, source };
    let shutdown = serve::signals().map_err(listen)?;
    let web = match &config.web_config {
        Some(path) => Some(Arc::new(web::WebConfigFile::open(path.clone())?)),
        None => None,
    };
    let listener = async_std::net::TcpListener::bind(addr).await.map_err(listen)?;
    let scheme = if web.as_ref().is_some_and(|w| w.current().tls.is_some()) { "https" } else { "http" };
    log::info!("serving on {scheme}://{addr}/metrics");
    serve::serve_with(listener, app(exporter), shutdown, web).await.map_err(listen)
}
