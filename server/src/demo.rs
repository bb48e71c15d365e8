//! `--demo`: the simulator with the demo cluster, and a configuration pointing at it, so the
//! demo runs the same code as production (TLS with a generated CA, a bearer token).

use std::path::PathBuf;

use http_types::Url;
use msp_sim::{Sim, SimCluster, SimError};

use crate::config::Config;

/// The token the demo's API server accepts.
const TOKEN: &str = "demo-token-not-secret";

/// Starts the simulator and points `config` at it; returns the simulator (keep it alive).
pub async fn start(config: &mut Config) -> Result<Sim, SimError> {
    let sim = Sim::start(SimCluster::demo(), TOKEN).await?;
    let dir = std::env::temp_dir().join(format!("metrics-server-prom-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (ca, token): (PathBuf, PathBuf) = (dir.join("ca.crt"), dir.join("token"));
    std::fs::write(&ca, &sim.pki.ca_pem)?;
    std::fs::write(&token, TOKEN)?;
    let url = Url::parse(&sim.url).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    log::info!("demo: simulated API server at {url} (CA {})", ca.display());
    config.kubernetes.api_url = Some(url);
    config.kubernetes.ca_file = Some(ca);
    config.kubernetes.token_file = Some(token);
    config.kubernetes.insecure_skip_tls_verify = false;
    Ok(sim)
}
