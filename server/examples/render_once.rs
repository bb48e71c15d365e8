//! Render the exposition for two metrics-API list files, once: no network, no server.
//!
//! `cargo run -p msp-server --example render_once -- PODS.json NODES.json` prints what
//! `/metrics` would serve for a `PodMetricsList` and a `NodeMetricsList` (for example
//! `kubectl get --raw /apis/metrics.k8s.io/v1beta1/pods`), through the same pipeline as
//! the server. Metadata comes from a [`StaticCluster`]; it is empty here, so the series
//! carry the labels the metrics API itself sends (PodMetrics' own labels, as `label_*`).

use std::process::ExitCode;
use std::sync::Arc;

use msp_core::{enrich, render_prepared, Memo, RenderOptions, Scrape, StaticCluster, Unguarded};
use msp_enrichers::{LabelsEnricher, NodeEnricher, OwnerEnricher};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pods_path, nodes_path] = args.as_slice() else {
        eprintln!("usage: render_once PODS.json NODES.json");
        return ExitCode::from(2);
    };
    let read = |path: &str| std::fs::read(path).map_err(|e| eprintln!("render_once: reading {path}: {e}"));
    let (Ok(pods_json), Ok(nodes_json)) = (read(pods_path), read(nodes_path)) else { return ExitCode::FAILURE };
    let nodes = match msp_core::NodeMetricsList::parse_any(&nodes_json) {
        Ok(list) => list,
        Err(e) => {
            eprintln!("render_once: {nodes_path} is neither a NodeMetricsList nor a NodeMetrics: {e}");
            return ExitCode::FAILURE;
        }
    };
    // As the server reads them: the pods straight from their body when it is in the shape
    // metrics-server writes; else as a list, where a byte that is not UTF-8 (a mangled
    // label) costs only itself.
    let (mut repaired, mut held) = (None, None);
    let (scrape, read) = Scrape::from_pods_json(&pods_json, nodes, &msp_core::All, &mut repaired, &mut held);
    match read {
        Ok(None) => {}
        Ok(Some(bad)) => eprintln!(
            "render_once: {pods_path} is not UTF-8 (at byte {bad}); read with U+FFFD in place of each bad sequence"
        ),
        Err(e) => {
            eprintln!("render_once: {pods_path} is not a PodMetricsList: {e}");
            return ExitCode::FAILURE;
        }
    }
    for e in &scrape.errors {
        eprintln!("render_once: {e}");
    }
    let enrichers: Vec<Arc<dyn msp_core::Enricher>> =
        vec![Arc::new(NodeEnricher), Arc::new(LabelsEnricher::default()), Arc::new(OwnerEnricher)];
    let cluster = StaticCluster::default();
    let memo = Memo::default();
    let enriched = async_std::task::block_on(enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded));
    for failure in &enriched.failures {
        eprintln!("render_once: enricher {}: {}", failure.enricher, failure.error);
    }
    let mut out = String::new();
    if let Err(e) = render_prepared(&mut out, &scrape, &enriched.prepared, &RenderOptions::default()) {
        eprintln!("render_once: {e}");
        return ExitCode::FAILURE;
    }
    print!("{out}");
    ExitCode::SUCCESS
}
