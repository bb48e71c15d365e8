//! Embedding metrics-server-prom with an enricher of your own, configured in its own
//! section of the same configuration.
//!
//! `cargo run --example custom_enricher -- --demo` serves the demo cluster on :9100 with a
//! `team` label on every pod series, next to the built-ins. The table of owners comes from
//! `[team]` in the TOML file, or `MSP_TEAM__OWNERS='{shop="commerce"}'`. Without `--demo` it
//! reads the usual configuration (MSP_* variables, MSP_CONFIG) and talks to your cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use msp_core::{async_trait, AddedLabel, Cluster, EnrichError, Enricher, Enrichment, LabelName, Scrape, Series};
use msp_server::{init_logging, Config, Registry};

/// `[team]`: namespace prefix to team.
#[derive(Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TeamOptions {
    owners: BTreeMap<String, String>,
}

impl Default for TeamOptions {
    fn default() -> Self {
        let owners = [("kube-", "platform"), ("shop", "commerce"), ("batch", "data")];
        TeamOptions { owners: owners.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }
}

/// Adds `team`: the owner of the pod's namespace, by prefix (in real life, a namespace
/// label or a CMDB).
struct Team {
    owners: BTreeMap<String, String>,
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
            let team = self.owners.iter().find(|(ns, _)| pod.namespace.starts_with(ns.as_str()));
            out.add_pod_label(i, TEAM.clone(), team.map_or("unowned", |(_, t)| t.as_str()).into());
        }
        Ok(out)
    }

    /// Logged as the server starts: an empty prefix, which every namespace starts with.
    fn config_warnings(&self) -> Vec<String> {
        let empty = self.owners.get("").map(|team| {
            format!("team.owners has \"\" = {team:?}, which every namespace starts with: every pod is {team:?}'s")
        });
        empty.into_iter().collect()
    }

    // It reads nothing of the cluster, so it has no `warm_up` (one that does reads there
    // what each scrape will, through the `Cluster`, so that its caches start at once).
}

/// Prints what stopped it as the service does, not as `Debug` would.
#[async_std::main]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom_enricher: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut registry = Registry::builtin();
    registry.register_with("team", "team", |o: TeamOptions| Ok(Arc::new(Team { owners: o.owners })));
    // On after the built-ins where `enrichers` is not set; selected by name like them where
    // it is (MSP_ENRICHERS='["node","team"]').
    registry.enable_by_default("team");

    // The TOML file is MSP_CONFIG's, read by `load` (a `--config` flag would pass its own).
    let mut config = Config::load(None, &registry)?;
    init_logging(config.log_level, config.log_format);
    let _sim =
        if std::env::args().any(|a| a == "--demo") { Some(msp_server::start_demo(&mut config).await?) } else { None };
    msp_server::run(&config).await?;
    Ok(())
}
