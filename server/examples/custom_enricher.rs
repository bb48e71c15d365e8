//! Embedding metrics-server-prom with an enricher of your own.
//!
//! `cargo run --example custom_enricher -- --demo` serves the demo cluster on :9100 with a
//! `team` label on every pod series, next to the built-ins. Without `--demo` it reads the
//! usual configuration (MSP_* variables, MSP_CONFIG) and talks to your cluster.

use std::sync::Arc;

use msp_core::{async_trait, AddedLabel, Cluster, EnrichError, Enricher, Enrichment, LabelName, Scrape, Series};
use msp_server::{config::Config, logging, Registry};

/// Adds `team`: the value of the namespace's owner, from a table (in real life, a
/// namespace label or a CMDB).
struct Team {
    teams: Vec<(&'static str, &'static str)>,
}

static TEAM: LabelName = LabelName::from_static("team");

#[async_trait]
impl Enricher for Team {
    fn name(&self) -> &str {
        "team"
    }

    fn labels(&self) -> Vec<AddedLabel> {
        vec![AddedLabel::new("team", Series::Pods, "The team that owns the pod's namespace.")]
    }

    async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
        let mut out = Enrichment::new(scrape);
        for (i, pod) in scrape.pods.iter().enumerate() {
            let team = self.teams.iter().find(|(ns, _)| pod.namespace.starts_with(ns)).map_or("unowned", |(_, t)| t);
            out.add_pod_label(i, TEAM.clone(), team.into());
        }
        Ok(out)
    }
}

#[async_std::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::builtin();
    registry.register(Arc::new(Team { teams: vec![("kube-", "platform"), ("shop", "commerce"), ("batch", "data")] }));

    let mut config = Config::load(std::env::var_os("MSP_CONFIG").map(Into::into), &registry)?;
    // Add ours after the configured ones (or select it by name: MSP_ENRICHERS='["node","team"]').
    if !config.enrichers.iter().any(|e| e == "team") {
        config.enrichers.push("team".into());
    }
    logging::init(config.log_level, logging::LogFormat::Text);
    let _sim =
        if std::env::args().any(|a| a == "--demo") { Some(msp_server::demo::start(&mut config).await?) } else { None };
    msp_server::run(&config, &registry).await?;
    Ok(())
}
