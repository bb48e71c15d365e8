//! Mount the exporter in a tide app of your own.
//!
//! `MSP_LISTEN=127.0.0.1:9200 cargo run -p msp-server --example embed_tide -- --demo`
//! serves the embedder's own `/` and `/version`, and the exporter under `/exporter`:
//! `/exporter/metrics`, `/exporter/healthz`, `/exporter/readyz`, and its landing page at
//! `/exporter/`, whose links are relative and so work under the prefix. The exporter's
//! basic auth and client-certificate checks (`MSP_WEB__CONFIG_FILE`) are route middleware,
//! so they hold under the prefix too. Without `--demo` it reads the usual configuration.
//!
//! It is served with `msp_server::serve_with`, not tide's `listen`: that applies the
//! web-config's TLS (a request that did not come over it is refused where the file asks for
//! TLS), bounds connections and request heads, and stops on SIGTERM or SIGINT, draining the
//! requests in flight, so `--demo` removes its temporary CA and token on the way out.

use std::sync::Arc;

use msp_server::{init_logging, Config, Registry};

/// Prints what stopped it as the service does, not as `Debug` would.
#[async_std::main]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("embed_tide: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut config = Config::load(None, &Registry::builtin())?; // MSP_* and MSP_CONFIG's file
    init_logging(config.log_level, config.log_format);
    let _sim =
        if std::env::args().any(|a| a == "--demo") { Some(msp_server::start_demo(&mut config).await?) } else { None };

    let exporter = Arc::new(msp_server::build(&config)?);
    let web = msp_server::web_config(&config)?;

    let mut app = tide::new();
    app.at("/").get(|_| async { Ok("the embedder's own app; the exporter is at /exporter/\n") });
    app.at("/version")
        .get(|_| async { Ok(format!("embedder 1.0, metrics-server-prom {}\n", env!("CARGO_PKG_VERSION"))) });
    // The warm-up (a scrape, and the enrichers' caches), which /exporter/readyz waits for,
    // as `run` starts it.
    async_std::task::spawn(exporter.warm_up());
    // `mount` nests it at /exporter/ and redirects /exporter there, so relative links work.
    msp_server::mount(&mut app, "/exporter", msp_server::app(exporter, web.clone()));

    let shutdown = msp_server::signals()?;
    let listener = msp_server::listen(config.listen).await?;
    let scheme = if web.as_ref().and_then(|w| w.current()).is_some_and(|c| c.tls.is_some()) { "https" } else { "http" };
    log::info!("embedder serving on {scheme}://{}/ (exporter at /exporter/)", config.listen);
    msp_server::serve_with(listener, app, shutdown, web).await?;
    Ok(())
}
