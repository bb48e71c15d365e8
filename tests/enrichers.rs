//! Issue 3, [enrichers].

use std::process::Command;

use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

fn pod_series<'a>(samples: &'a [Sample], ns: &str, pod: &str) -> &'a Sample {
    find(samples, "kube_metrics_server_pod_cpu_usage_cores", &[("namespace", ns), ("pod", pod)])
}

#[async_std::test]
async fn enrichers_defaults_resolve_every_workload() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let text = scrape(&h).await;
    promtool_check(&text);
    let s = parse(&text);
    let web = pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d");
    assert_eq!(web.label("label_app"), Some("frontend"));
    assert_eq!(web.label("label_app_kubernetes_io_name"), Some("frontend"));
    assert_eq!(web.label("label_pod_template_hash"), None);
    assert_eq!((web.label("owner_kind"), web.label("owner_name")), (Some("ReplicaSet"), Some("frontend-7c9d8f6b5")));
    assert_eq!((web.label("workload_kind"), web.label("workload_name")), (Some("Deployment"), Some("frontend")));
    let staging = pod_series(&s, "shop-staging", "frontend-7c9d8f6b5-8xk2d");
    assert_eq!(
        staging.label("workload_name"),
        Some("frontend-canary"),
        "same-named ReplicaSet resolves in its own namespace"
    );
    let job = pod_series(&s, "batch", "report-28394810-abcde");
    assert_eq!(
        (job.label("owner_kind"), job.label("workload_kind"), job.label("workload_name")),
        (Some("Job"), Some("CronJob"), Some("report"))
    );
    let ds = pod_series(&s, "kube-system", "kube-proxy-x7k2p");
    assert_eq!((ds.label("workload_kind"), ds.label("workload_name")), (Some("DaemonSet"), Some("kube-proxy")));
    let sts = pod_series(&s, "shop", "redis-0");
    assert_eq!((sts.label("workload_kind"), sts.label("workload_name")), (Some("StatefulSet"), Some("redis")));
    let mirror = pod_series(&s, "kube-system", "etcd-node-a");
    assert_eq!((mirror.label("owner_kind"), mirror.label("owner_name")), (Some("Node"), Some("node-a")));
    let lone = pod_series(&s, "default", "debug-shell");
    assert!(["owner_kind", "owner_name", "workload_kind", "workload_name"].iter().all(|l| lone.label(l).is_none()));
    let node = find(&s, "kube_metrics_server_node_cpu_usage_cores", &[("node", "node-b")]);
    assert_eq!(node.label("label_topology_kubernetes_io_zone"), Some("zone-b"));
    // Container series carry the pod's labels too.
    let c = find(
        &s,
        "kube_metrics_server_container_memory_working_set_bytes",
        &[("namespace", "shop"), ("pod", "redis-0")],
    );
    assert_eq!(c.label("workload_name"), Some("redis"));
}

#[async_std::test]
async fn enrichers_selection_and_allow() {
    let h = start(SimCluster::demo(), |c| c.enrichers = vec!["owner".into()]).await;
    let s = parse(&scrape(&h).await);
    let web = pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d");
    let names: Vec<&str> = web.labels.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["namespace", "pod", "owner_kind", "owner_name", "workload_kind", "workload_name"]);
    assert_eq!(h.sim.count("/api/v1/nodes"), 0, "owner alone reads no nodes");

    let h = start_with(
        SimCluster::demo(),
        |c| c.enrichers = vec!["labels".into()],
        "[labels]\nallow = [\"app.kubernetes.io/*\"]\n",
    )
    .await;
    let s = parse(&scrape(&h).await);
    let web = pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d");
    let names: Vec<&str> = web.labels.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["namespace", "pod", "label_app_kubernetes_io_name"]);
}

#[test]
fn enrichers_unknown_name_stops_startup() {
    let out = Command::new(binary()).env_clear().env("MSP_ENRICHERS", r#"["node","gpu"]"#).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown enricher \"gpu\"") && err.contains("labels, node, owner"), "{err}");
}

#[async_std::test]
async fn enrichers_fresh_data_without_restart() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    let changed = std::time::Instant::now();
    h.sim.update(|c| {
        let mut p = pod("shop", "newcomer", "node-b", "10.9.9.9", &[("app", "3m", "3Mi")]);
        p.labels = vec![("app".into(), "newcomer".into())];
        c.pods.push(p);
        let web =
            c.pods.iter_mut().find(|p| p.name == "frontend-7c9d8f6b5-8xk2d" && p.namespace == "shop").expect("web");
        web.labels.push(("release".into(), "canary".into()));
    });
    let s = scrape_until(&h, std::time::Duration::from_secs(8), |s| {
        s.iter().any(|x| x.label("pod") == Some("newcomer") && x.label("label_app") == Some("newcomer"))
            && s.iter().any(|x| x.label("label_release") == Some("canary"))
    })
    .await;
    eprintln!("new pod and label change visible after {:?}", changed.elapsed());
    let new = pod_series(&s, "shop", "newcomer");
    assert_eq!((new.label("node"), new.label("label_app")), (Some("node-b"), Some("newcomer")));
    assert_eq!(pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d").label("label_release"), Some("canary"));
}

#[async_std::test]
async fn enrichers_source_failure_keeps_the_series() {
    let h = start(SimCluster::demo(), |c| c.kubernetes.timeout = "2s".into()).await;
    h.sim.state().faults.insert(Route::Pods, Fault::Status(403));
    let text = scrape(&h).await;
    promtool_check(&text);
    let s = parse(&text);
    let web = pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d");
    assert_eq!(web.label("node"), None, "node enricher failed: no node label");
    assert_eq!(web.label("owner_kind"), None);
    assert!(web.value > 0.0);
    let node = find(&s, "kube_metrics_server_node_cpu_usage_cores", &[("node", "node-a")]);
    assert_eq!(node.label("label_topology_kubernetes_io_zone"), None, "an enricher that fails adds nothing at all");
    assert!(node.value > 0.0);
    for e in ["node", "owner", "labels"] {
        let v = find(&s, "kube_metrics_server_enricher_errors_total", &[("enricher", e)]).value;
        assert_eq!(v, 1.0, "{e}");
    }
    // With the pod list back, the cache's retry (with backoff) brings the labels back.
    h.sim.state().faults.clear();
    scrape_until(&h, std::time::Duration::from_secs(8), |s| {
        s.iter().any(|x| x.label("pod") == Some("frontend-7c9d8f6b5-8xk2d") && x.label("node") == Some("node-a"))
    })
    .await;
}

/// The operator's trial: a ClusterRole without ReplicaSets (a 403 on them) cost every owner
/// label, DaemonSets' and StatefulSets' too. Now only the workload of the pods ReplicaSets
/// own is missing; the failure is counted and logged as the owner enricher's, and once
/// ReplicaSets can be read the workloads come back.
#[async_std::test]
async fn enrichers_replicasets_forbidden_cost_only_their_workloads() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    sim.state().faults.insert(Route::ReplicaSets, Fault::Status(403));
    let (port, log, _child) = spawn_server(&sim, &dir).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = get(&url, &[]).await.body;
    promtool_check(&text);
    let s = parse(&text);
    let web = pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d");
    assert_eq!((web.label("owner_kind"), web.label("owner_name")), (Some("ReplicaSet"), Some("frontend-7c9d8f6b5")));
    assert_eq!((web.label("workload_kind"), web.label("workload_name")), (None, None), "unknown, not wrong");
    assert_eq!(web.label("node"), Some("node-a"), "the other enrichers are untouched");
    let job = pod_series(&s, "batch", "report-28394810-abcde");
    assert_eq!((job.label("workload_kind"), job.label("workload_name")), (Some("CronJob"), Some("report")));
    let ds = pod_series(&s, "kube-system", "kube-proxy-x7k2p");
    assert_eq!((ds.label("workload_kind"), ds.label("workload_name")), (Some("DaemonSet"), Some("kube-proxy")));
    let sts = pod_series(&s, "shop", "redis-0");
    assert_eq!((sts.label("owner_kind"), sts.label("workload_name")), (Some("StatefulSet"), Some("redis")));
    let errors = find(&s, "kube_metrics_server_enricher_errors_total", &[("enricher", "owner")]);
    assert!(errors.value >= 1.0, "counted (the warm-up's scrape may count it too)");
    let again = parse(&get(&url, &[]).await.body);
    let counted = find(&again, "kube_metrics_server_enricher_errors_total", &[("enricher", "owner")]).value;
    assert_eq!(counted, errors.value + 1.0, "once a scrape");
    let logged = wait_logged(&log, "enricher owner: ReplicaSets", std::time::Duration::from_secs(5)).await;
    let line = logged.lines().find(|l| l.contains("enricher owner: ReplicaSets")).unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains("403") && line.contains("the labels it could add are kept"),
        "{line}"
    );

    sim.state().faults.clear();
    let back = std::time::Instant::now();
    loop {
        let s = parse(&get(&url, &[]).await.body);
        if pod_series(&s, "shop", "frontend-7c9d8f6b5-8xk2d").label("workload_name") == Some("frontend") {
            break;
        }
        assert!(back.elapsed() < std::time::Duration::from_secs(15), "workloads never came back");
        async_std::task::sleep(std::time::Duration::from_millis(200)).await;
    }
}
