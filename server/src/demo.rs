//! `--demo`: the simulator with the demo cluster, and a configuration pointing at it, so the
//! demo runs the same code as production (TLS with a generated CA, a bearer token).

use std::path::PathBuf;

use http_types::Url;
use msp_sim::{Sim, SimCluster, SimError};

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulator could not start.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// The simulator reported a URL that does not parse.
    #[error("simulator URL {0}")]
    Url(String),
    /// The CA or token file could not be written (the demo needs a writable temp dir).
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

use crate::config::Config;

/// The token the demo's API server accepts.
const TOKEN: &str = "demo-token-not-secret";

/// The running demo: the simulator, and the folder with its CA and token, removed when
/// this is dropped (when the service ends).
#[derive(Debug)]
#[must_use = "the demo's API server stops, and its CA and token are removed, when this is dropped: keep it while serving"]
pub struct Demo {
    _sim: Sim,
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("demo: removing {}: {e}", self.dir.display());
        }
    }
}

/// Starts the simulator and points `config` at it; keep the [`Demo`] alive while serving.
pub async fn start(config: &mut Config) -> Result<Demo, DemoError> {
    // Usage that moves from one 15 s period to the next, so that graphs of it do.
    let sim = Sim::start(SimCluster { moving_usage: true, ..SimCluster::demo() }, TOKEN).await?;
    // As a current API server: the caches stream their lists. As metrics-server: v1beta1
    // only, so the first scrape's v1 request gets a 404 and the exporter switches, as it
    // does in every cluster.
    sim.state().streams_lists = true;
    sim.state().serve_v1 = false;
    let dir = std::env::temp_dir().join(format!("metrics-server-prom-demo-{}", std::process::id()));
    let write = |path: &PathBuf, result: std::io::Result<()>| {
        result.map_err(|source| DemoError::Write { path: path.clone(), source })
    };
    write(&dir, std::fs::create_dir_all(&dir))?;
    let (ca, token): (PathBuf, PathBuf) = (dir.join("ca.crt"), dir.join("token"));
    write(&ca, std::fs::write(&ca, &sim.pki.ca_pem))?;
    write(&token, std::fs::write(&token, TOKEN))?;
    let url = Url::parse(&sim.url).map_err(|e| DemoError::Url(format!("{}: {e}", sim.url)))?;
    log::info!("demo: simulated API server at {url} (CA {})", ca.display());
    config.kubernetes.api_url = Some(url);
    config.kubernetes.ca_file = Some(ca);
    config.kubernetes.token_file = Some(token);
    config.kubernetes.insecure_skip_tls_verify = false;
    Ok(Demo { _sim: sim, dir })
}
