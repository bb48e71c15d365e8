//! Mount the exporter in a tide app of your own.
//!
//! `MSP_LISTEN=127.0.0.1:9200 cargo run -p msp-server --example embed_tide -- --demo`
//! serves the embedder's own `/` and `/version`, and the exporter under `/exporter`:
//! `/exporter/metrics`, `/exporter/healthz`, `/exporter/readyz`, and its landing page at
//! `/exporter/`, whose links are relative and so work under the prefix. The exporter's
//! basic auth and client-certificate checks (`MSP_WEB__CONFIG_FILE`) are route middleware,
//! so they hold under the prefix too. Without `--demo` it reads the usual configuration.
//! Nothing here handles SIGTERM or SIGINT (tide's `listen` runs until the process dies), so
//! `--demo` leaves its temporary CA and token directory (`metrics-server-prom-demo-PID` in the
//! temp dir) behind; `msp_server::serve` with `msp_server::signals()` would stop cleanly.

use std::sync::Arc;

use msp_server::{init_logging, Config, Registry};

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut config = Config::load(std::env::var_os("MSP_CONFIG").map(Into::into), &Registry::builtin())?;
    init_logging(config.log_level, config.log_format);
    let _sim =
        if std::env::args().any(|a| a == "--demo") { Some(msp_server::start_demo(&mut config).await?) } else { None };

    let exporter = Arc::new(msp_server::build(&config)?);
    let web = msp_server::web_config(&config)?;

    let mut app = tide::new();
    app.at("/").get(|_| async { Ok("the embedder's own app; the exporter is at /exporter/\n") });
    app.at("/version")
        .get(|_| async { Ok(format!("embedder 1.0, metrics-server-prom {}\n", env!("CARGO_PKG_VERSION"))) });
    // `mount` nests it at /exporter/ and redirects /exporter there, so relative links work.
    msp_server::mount(&mut app, "/exporter", msp_server::app(exporter, web));

    log::info!("embedder serving on http://{}/ (exporter at /exporter/)", config.listen);
    app.listen(config.listen).await?;
    Ok(())
}
