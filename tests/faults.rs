//! Issue 5, [faults]: the parts covered so far.

use std::time::{Duration, Instant};

use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

fn up(s: &[Sample], resource: &str) -> f64 {
    find(s, "kube_metrics_server_up", &[("resource", resource)]).value
}

#[async_std::test]
async fn faults_pod_metrics_failures_keep_node_series() {
    for fault in [Fault::Status(503), Fault::Status(403), Fault::Status(500), Fault::Truncate, Fault::NotJson] {
        let h = start(SimCluster::demo(), |_| {}).await;
        h.sim.state().faults.insert(Route::PodMetrics, fault.clone());
        let got = get(&format!("{}/metrics", h.url), &[]).await;
        assert_eq!(got.status, 200);
        promtool_check(&got.body);
        let s = parse(&got.body);
        assert_eq!((up(&s, "pods"), up(&s, "nodes")), (0.0, 1.0), "{fault:?}");
        assert_eq!(s.iter().filter(|x| x.name == "kube_metrics_server_node_cpu_usage_cores").count(), 3, "{fault:?}");
    }
}

#[async_std::test]
async fn faults_hung_metrics_api_answers_within_the_timeout() {
    let h = start(SimCluster::demo(), |c| c.kubernetes.timeout = "2s".into()).await;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Hang);
    let started = Instant::now();
    let s = parse(&scrape(&h).await);
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    assert_eq!((up(&s, "pods"), up(&s, "nodes")), (0.0, 1.0));
}

#[async_std::test]
async fn faults_one_bad_quantity_drops_one_item() {
    let mut cluster = SimCluster::demo();
    cluster.pods[0].containers[0].cpu = "12 cores".into();
    let bad = (cluster.pods[0].namespace.clone(), cluster.pods[0].name.clone());
    let total = cluster.pods.len();
    let h = start(cluster, |_| {}).await;
    let s = parse(&scrape(&h).await);
    let pods: Vec<_> = s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").collect();
    assert_eq!(pods.len(), total - 1);
    assert!(!pods.iter().any(|p| p.label("namespace") == Some(&bad.0) && p.label("pod") == Some(&bad.1)));
    assert_eq!(find(&s, "kube_metrics_server_parse_errors_total", &[]).value, 1.0);
    assert_eq!(up(&s, "pods"), 1.0);
}
