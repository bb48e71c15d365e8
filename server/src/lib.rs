//! # msp-server
//!
//! The metrics-server-prom service: configuration, the Kubernetes client (surf over our
//! rustls 0.23 transport), the watch-backed caches, the [`Exporter`] around
//! [`msp_core::enrich`], and the tide app. `main` only parses arguments and calls [`run`].
//!
//! Three ways in for embedders (see the README and `server/examples/`):
//! - a custom [`Enricher`](msp_core::Enricher), registered in a [`Registry`] (with its own
//!   configuration section through [`Registry::register_with`]), then [`run`];
//! - an [`Exporter`] over their own [`MetricsSource`](msp_core::MetricsSource) and
//!   [`Cluster`](msp_core::Cluster) (or ours, [`MetricsApi`] and [`CachedCluster`], over a
//!   [`KubeClient::from_config`]), or no server at all: [`msp_core::enrich`] and
//!   [`msp_core::render_prepared`];
//! - [`app`] nested in their own tide server, auth included.
//!
//! The `demo` feature, on by default, adds [`start_demo`] and the simulator it runs
//! (`msp-sim`, with `rcgen` for its certificates); an embedder that has no use for them
//! depends with `default-features = false`.

mod app;
mod auth;
mod body;
mod cache;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod exporter;
mod flight;
mod http1;
mod kube;
mod logging;
mod negotiate;
mod process;
mod random;
mod registry;
mod reuse;
mod scope;
mod self_metrics;
mod serve;
mod shard;
mod source;
mod waiting;
#[cfg(test)]
mod wakes;
mod web;

pub use app::{app, mount, State};
pub use auth::{OverTls, VerifiedClient};
pub use body::{Exposition, PIECE};
pub use cache::CachedCluster;
pub use config::{
    figment, text_or_number, variables as config_variables, Config, ConfigError, Enrichers, RawConfig, RawKubernetes,
    RawNamespaces, RawShard, RawWeb,
};
#[cfg(feature = "demo")]
pub use demo::{start as start_demo, Demo, DemoError};
pub use exporter::{Exporter, Sampled, GZIP_CHUNK, WARM_UP_RETRIES_FOR, WARM_UP_TIMEOUT};
pub use flight::{Busy, Evicted, LONG, MAX_BODIES, MAX_SCRAPES, STALL};
pub use kube::{
    certificates, client_config, kill_runs_under_way, private_key, BodySlot, EndpointError, ExecError, InvalidToken,
    KubeClient, KubeError, Limits, Settings, TlsError, TokenError, Transport, Verify,
};
pub use logging::{init as init_logging, LogFormat, ParseLogFormatError};
pub use registry::Registry;
pub use scope::Scope;
pub use self_metrics::Report;
pub use serve::{listen, serve, serve_with, signals, Shutdown, BACKLOG, MAX_CONNECTIONS};
pub use shard::{Shard, ShardError, ShardWarning};
pub use source::MetricsApi;
pub use web::{Credentials, WebConfig, WebConfigError, WebConfigFile};

/// The configuration's reader, which [`Registry`]'s factories get.
pub use figment::Figment;
/// The core crate, as this one uses it: one version for both.
pub use msp_core;

use std::sync::Arc;

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

/// The exporter for `config`: the metrics API and the watch-backed caches over one
/// Kubernetes client, with the configured enrichers.
pub fn build(config: &Config) -> Result<Exporter, StartError> {
    log::info!("metrics-server-prom {} (revision {})", env!("CARGO_PKG_VERSION"), env!("BUILD_REVISION"));
    let endpoint = kube::resolve(&config.kubernetes, &|k| std::env::var(k).ok())?;
    endpoint.log();
    let shard = config.scope.shard;
    if let Some(warning) = shard.pod_name_disagrees(&|k| std::env::var(k).ok()) {
        log::warn!("{warning}");
    }
    if shard.total() > 1 {
        let (index, total) = (shard.index(), shard.total());
        log::info!("shard {index} of {total}: exporting the pods and nodes whose hash falls to {index}");
    }
    for denied in config.scope.namespaces.denied_whole() {
        log::warn!(
            "namespaces.allow has {denied:?}, and namespaces.deny takes it all back: deny comes after allow, so \
             no namespace {denied:?} allows is exported"
        );
    }
    for (selected, called) in config.enrichers.renamed() {
        log::warn!(
            "the enricher registered as {selected:?} calls itself {called:?} (Enricher::name): `enrichers` selects \
             it as {selected:?}, but the log, the landing page and kube_metrics_server_enricher_errors_total say \
             {called:?}; make the two agree"
        );
    }
    let (enabled, not_enabled) = (config.enrichers.names(), config.enrichers.not_enabled());
    log::info!("enrichers: {}", if enabled.is_empty() { "none".into() } else { enabled.join(", ") });
    for section in config.enrichers.idle_sections() {
        log::warn!(
            "`{section}` is configured (MSP_{}__*, or [{section}] in the file), but no enricher that reads it is \
             enabled: it does nothing (list the enricher in `enrichers`, MSP_ENRICHERS)",
            section.to_uppercase()
        );
    }
    if !not_enabled.is_empty() {
        log::info!(
            "enrichers registered but not enabled: {} (list them in `enrichers`, MSP_ENRICHERS, to use them)",
            not_enabled.join(", ")
        );
    }
    let client = Arc::new(KubeClient::for_config(endpoint, config));
    let cluster = Arc::new(CachedCluster::new(client.clone()));
    let options = RenderOptions { naming: config.naming, timestamps: config.timestamps, format: None };
    Ok(Exporter::new(Arc::new(MetricsApi::new(client.clone())), cluster.clone())
        .with_enrichers(config.enrichers.to_vec())
        .with_options(options)
        .with_scope(config.scope.clone())
        .reusing_lists_for(config.reuse_lists_for)
        .with_report(client)
        .with_report(cluster))
}

/// The web-config file `config` names, loaded.
pub fn web_config(config: &Config) -> Result<Option<Arc<WebConfigFile>>, StartError> {
    Ok(match &config.web_config {
        Some(path) => Some(Arc::new(WebConfigFile::open(path.clone())?)),
        None => None,
    })
}

/// Builds the exporter and serves it on `config.listen` until SIGTERM or SIGINT, then lets
/// scrapes in flight finish and returns.
pub async fn run(config: &Config) -> Result<(), StartError> {
    let exporter = Arc::new(build(config)?);
    let addr = config.listen;
    let listen = |source| StartError::Listen { addr, source };
    let shutdown = serve::signals().map_err(listen)?;
    let web = web_config(config)?;
    let listener = serve::listen(addr).await.map_err(listen)?;
    async_std::task::spawn(exporter.warm_up());
    let tls = web.as_ref().and_then(|w| w.current()).is_some_and(|c| c.tls.is_some());
    // The port bound, where `listen` asked for port 0.
    let bound = listener.local_addr().unwrap_or(addr);
    log::info!("serving on {}://{bound}/metrics", if tls { "https" } else { "http" });
    // An exec plugin run under way is killed as shutdown starts, so that no scrape draining
    // waits on it, and any begun while they drain once they have.
    let stopping = shutdown.clone();
    async_std::task::spawn(async move {
        stopping.wait().await;
        kube::kill_runs_under_way();
    });
    let served = serve::serve_with(listener, app(exporter, web.clone()), shutdown, web).await;
    kube::kill_runs_under_way();
    served.map_err(listen)
}
