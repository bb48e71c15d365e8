//! The exporter's own metrics, written after the usage families of every scrape:
//! `kube_metrics_server_up`, scrape duration, error counters, and whatever the sources
//! report about themselves (API requests, caches).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use msp_core::{ExpositionError, LabelName, MetricName, MetricType, Writer};

const RESOURCE: LabelName = LabelName::from_static("resource");
const ENRICHER: LabelName = LabelName::from_static("enricher");
const VERSION: LabelName = LabelName::from_static("version");
const REVISION: LabelName = LabelName::from_static("revision");
const RUSTC: LabelName = LabelName::from_static("rustc");
const TARGET: LabelName = LabelName::from_static("target");

/// Something that writes metric families about itself into each scrape: the Kubernetes
/// client (requests by code) and the caches (objects, watch errors).
pub trait Report: Send + Sync {
    /// Writes its families; each family name must be its own.
    fn write_metrics(&self, w: &mut Writer<'_>) -> Result<(), ExpositionError>;
}

/// Counters kept across scrapes.
#[derive(Debug, Default)]
pub struct Counters {
    parse_errors: AtomicU64,
    enricher_errors: Mutex<BTreeMap<String, u64>>,
    lists_reused: AtomicU64,
}

impl Counters {
    /// Starts every enricher's error count at 0, so the series exist before the first error.
    pub fn new<'n>(enrichers: impl IntoIterator<Item = &'n str>) -> Self {
        let errors = enrichers.into_iter().map(|n| (n.to_owned(), 0)).collect();
        Counters { enricher_errors: Mutex::new(errors), ..Counters::default() }
    }

    /// Counts metrics items dropped as invalid.
    pub fn parse_errors(&self, n: usize) {
        self.parse_errors.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts a scrape served lists an earlier scrape read (`reuse_lists_for`).
    pub fn lists_reused(&self) {
        self.lists_reused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failure of `enricher`.
    pub fn enricher_error(&self, enricher: &str) {
        if let Ok(mut counts) = self.enricher_errors.lock() {
            *counts.entry(enricher.to_owned()).or_default() += 1;
        }
    }
}

/// One scrape's health, as its self-metrics report it.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// Whether the pod metrics list was read.
    pub pods_up: bool,
    /// Whether the node metrics list was read.
    pub nodes_up: bool,
    /// How long reading and transforming took.
    pub took: Duration,
    /// How long before the scrape began the lists it serves were read: zero for a read of
    /// its own.
    pub lists_age: Duration,
    /// `reuse_lists_for`: how long lists read are reused (zero: never).
    pub reuse_window: Duration,
}

/// Writes the self-metrics families.
pub fn write(
    w: &mut Writer<'_>,
    health: Health,
    counters: &Counters,
    reports: &[&dyn Report],
    process: bool,
) -> Result<(), ExpositionError> {
    const UP: MetricName = MetricName::from_static("kube_metrics_server_up");
    const DURATION: MetricName = MetricName::from_static("kube_metrics_server_scrape_duration_seconds");
    const PARSE_ERRORS: MetricName = MetricName::from_static("kube_metrics_server_parse_errors_total");
    const ENRICHER_ERRORS: MetricName = MetricName::from_static("kube_metrics_server_enricher_errors_total");
    const BUILD_INFO: MetricName = MetricName::from_static("kube_metrics_server_build_info");
    const LISTS_AGE: MetricName = MetricName::from_static("kube_metrics_server_lists_age_seconds");
    const LISTS_REUSED: MetricName = MetricName::from_static("kube_metrics_server_lists_reused_total");
    const REUSE_WINDOW: MetricName = MetricName::from_static("kube_metrics_server_reuse_lists_for_seconds");

    let help = "Whether the last read of the metrics API for this resource succeeded (1) or not (0).";
    let mut f = w.family(&UP, help, MetricType::Gauge)?;
    for (resource, ok) in [("pods", health.pods_up), ("nodes", health.nodes_up)] {
        f.sample([(&RESOURCE, resource)], if ok { 1.0 } else { 0.0 });
    }
    let help = "Time this scrape took to read and transform, before writing these self-metrics.";
    w.family(&DURATION, help, MetricType::Gauge)?.sample([], health.took.as_secs_f64());
    let help = "How long before this scrape began the metrics lists it serves were read: 0 for a read of its own, less than reuse_lists_for for lists an earlier scrape read.";
    w.family(&LISTS_AGE, help, MetricType::Gauge)?.sample([], health.lists_age.as_secs_f64());
    let help = "Scrapes (each with the requests that joined it) served the metrics lists an earlier scrape read, less than reuse_lists_for before, reading none.";
    w.family(&LISTS_REUSED, help, MetricType::Counter)?
        .sample([], counters.lists_reused.load(Ordering::Relaxed) as f64);
    let help = "reuse_lists_for: how long the metrics lists read are reused by later scrapes (0: never); set it to half the scrape interval, and keep it below the interval.";
    w.family(&REUSE_WINDOW, help, MetricType::Gauge)?.sample([], health.reuse_window.as_secs_f64());
    let help = "Metrics API items dropped because a value was invalid or missing.";
    w.family(&PARSE_ERRORS, help, MetricType::Counter)?
        .sample([], counters.parse_errors.load(Ordering::Relaxed) as f64);
    let help = "Scrapes in which an enricher failed and its labels, or some of them, were left out.";
    let mut f = w.family(&ENRICHER_ERRORS, help, MetricType::Counter)?;
    let counts = counters.enricher_errors.lock().map(|c| c.clone()).unwrap_or_default();
    for (name, n) in &counts {
        f.sample([(&ENRICHER, name.as_str())], *n as f64);
    }
    // A report that fails (a family name already written, an invalid label) costs its own
    // families only: the others, the process' and the build's are still written.
    for report in reports {
        match report.write_metrics(w) {
            Ok(()) => {}
            Err(ExpositionError::Stopped) => return Err(ExpositionError::Stopped),
            Err(e) => log::error!("a self-metrics report: {e}; its families are left out"),
        }
    }
    if process {
        crate::process::write(w);
    }
    let help = "Always 1; the version, git revision, compiler and target of metrics-server-prom.";
    let build = [
        (&VERSION, env!("CARGO_PKG_VERSION")),
        (&REVISION, env!("BUILD_REVISION")),
        (&RUSTC, env!("BUILD_RUSTC")),
        (&TARGET, env!("BUILD_TARGET")),
    ];
    w.family(&BUILD_INFO, help, MetricType::Gauge)?.sample(build, 1.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::Format;

    struct Fixed;

    impl Report for Fixed {
        fn write_metrics(&self, w: &mut Writer<'_>) -> Result<(), ExpositionError> {
            const N: MetricName = MetricName::from_static("kube_metrics_server_test_things");
            w.family(&N, "Things.", MetricType::Gauge)?.sample([], 3.0);
            Ok(())
        }
    }

    #[test]
    fn a_report_that_fails_costs_its_own_families_only() {
        /// Writes a family that is written already.
        struct Again;
        impl Report for Again {
            fn write_metrics(&self, w: &mut Writer<'_>) -> Result<(), ExpositionError> {
                const UP: MetricName = MetricName::from_static("kube_metrics_server_up");
                w.family(&UP, "Again.", MetricType::Gauge)?.sample([], 1.0);
                Ok(())
            }
        }
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::OpenMetrics);
        let health = Health {
            pods_up: true,
            nodes_up: true,
            took: Duration::ZERO,
            lists_age: Duration::ZERO,
            reuse_window: Duration::ZERO,
        };
        write(&mut w, health, &Counters::default(), &[&Again, &Fixed], true).expect("write");
        w.finish();
        assert_eq!(out.matches("# TYPE kube_metrics_server_up gauge").count(), 1, "{out}");
        for line in
            ["kube_metrics_server_test_things 3\n", "process_start_time_seconds ", "kube_metrics_server_build_info{"]
        {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        assert!(out.ends_with("# EOF\n"));
    }

    #[test]
    fn writes_health_counters_and_reports() {
        let counters = Counters::new(["node", "labels"]);
        counters.parse_errors(2);
        counters.enricher_error("labels");
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        let health = Health {
            pods_up: true,
            nodes_up: false,
            took: Duration::from_millis(250),
            lists_age: Duration::ZERO,
            reuse_window: Duration::from_secs(15),
        };
        write(&mut w, health, &counters, &[&Fixed], true).expect("write");
        w.finish();
        for line in [
            "kube_metrics_server_up{resource=\"pods\"} 1\n",
            "kube_metrics_server_up{resource=\"nodes\"} 0\n",
            "kube_metrics_server_scrape_duration_seconds 0.25\n",
            "kube_metrics_server_reuse_lists_for_seconds 15\n",
            "kube_metrics_server_parse_errors_total 2\n",
            "kube_metrics_server_enricher_errors_total{enricher=\"labels\"} 1\n",
            "kube_metrics_server_enricher_errors_total{enricher=\"node\"} 0\n",
            "kube_metrics_server_test_things 3\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }
}
