//! Issue 2, [spine].

use std::process::{Command, Stdio};
use std::time::Duration;

use msp_sim::{SimCluster, SimNode};
use msp_tests::*;

/// The cluster of the acceptance criteria: every CPU and memory form, and two pods with
/// one name in two namespaces.
fn forms_cluster() -> SimCluster {
    let cpus = ["7m", "1500000n", "12345u", "0", "0.5", "2", "250000000n"];
    let mems = ["125448Ki", "52Mi", "1e6", "1000", "1Gi", "2147483648", "0"];
    let containers: Vec<(String, &str, &str)> =
        cpus.iter().zip(mems).enumerate().map(|(i, (c, m))| (format!("c{i}"), *c, m)).collect();
    let containers: Vec<(&str, &str, &str)> = containers.iter().map(|(n, c, m)| (n.as_str(), *c, *m)).collect();
    let mut gone = pod("default", "gone", "node-b", "10.0.0.9", &[("main", "7m", "1Ki")]);
    gone.listed = false;
    SimCluster {
        pods: vec![
            pod("default", "forms", "node-a", "10.0.0.1", &containers),
            pod("team-a", "web", "node-a", "10.0.1.1", &[("app", "1m", "1Mi")]),
            pod("team-b", "web", "node-b", "10.0.2.1", &[("app", "2m", "2Mi")]),
            gone,
        ],
        nodes: vec![node("node-a", "192.0.2.10"), SimNode { cpu: "3".into(), ..node("node-b", "192.0.2.11") }],
        ..Default::default()
    }
}

const EXPECTED: [(&str, f64, f64); 7] = [
    ("c0", 0.007, 128_458_752.0),
    ("c1", 0.0015, 54_525_952.0),
    ("c2", 0.012345, 1_000_000.0),
    ("c3", 0.0, 1000.0),
    ("c4", 0.5, 1_073_741_824.0),
    ("c5", 2.0, 2_147_483_648.0),
    ("c6", 0.25, 0.0),
];

async fn wait_for(url: &str) -> String {
    for _ in 0..100 {
        if let Ok(Ok(res)) = async_std::future::timeout(Duration::from_secs(5), async {
            let client = surf::Client::with_http_client(msp_server::Transport::new(None));
            let mut r = client.get(url).await?;
            r.body_string().await
        })
        .await
        {
            return res;
        }
        async_std::task::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never answered");
}

/// The acceptance run: the real binary, configured only by environment variables.
#[async_std::test]
async fn spine_exact_values_via_the_binary_and_env() {
    let (sim, _raw, dir) = sim_and_config(forms_cluster()).await;
    let port = free_port();
    let child = server_command(&sim, &dir, port)
        .env("MSP_ENRICHERS", r#"["node"]"#)
        .env("MSP_NAMING", "prometheus")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the binary");
    let _child = Killed(child);
    let text = wait_for(&format!("http://127.0.0.1:{port}/metrics")).await;
    promtool_check(&text);
    let samples = parse(&text);
    for (container, cpu, mem) in EXPECTED {
        let want = [("namespace", "default"), ("pod", "forms"), ("container", container)];
        let c = find(&samples, "kube_metrics_server_container_cpu_usage_cores", &want);
        assert_eq!(c.value.to_bits(), cpu.to_bits(), "{container} cpu {}", c.value);
        let m = find(&samples, "kube_metrics_server_container_memory_working_set_bytes", &want);
        assert_eq!(m.value.to_bits(), mem.to_bits(), "{container} memory {}", m.value);
        assert_eq!(c.label("node"), Some("node-a"));
        assert_eq!(c.label("pod_ip"), Some("10.0.0.1"));
    }
    // Exact sums over the containers.
    let pod_cpu = find(&samples, "kube_metrics_server_pod_cpu_usage_cores", &[("pod", "forms")]);
    assert_eq!(pod_cpu.value, 2.770845);
    let pod_mem = find(&samples, "kube_metrics_server_pod_memory_working_set_bytes", &[("pod", "forms")]);
    assert_eq!(pod_mem.value, 3_405_211_176.0);
    // Same name, two namespaces: each its own node and IP.
    let a = find(&samples, "kube_metrics_server_pod_cpu_usage_cores", &[("namespace", "team-a"), ("pod", "web")]);
    let b = find(&samples, "kube_metrics_server_pod_cpu_usage_cores", &[("namespace", "team-b"), ("pod", "web")]);
    assert_eq!((a.label("node"), a.label("pod_ip")), (Some("node-a"), Some("10.0.1.1")));
    assert_eq!((b.label("node"), b.label("pod_ip")), (Some("node-b"), Some("10.0.2.1")));
    // Deleted between the reads: still there, without what can't be known.
    let gone = find(&samples, "kube_metrics_server_container_cpu_usage_cores", &[("pod", "gone")]);
    assert_eq!(gone.value, 0.007);
    assert_eq!(gone.label("node"), None);
    let node_b = find(&samples, "kube_metrics_server_node_cpu_usage_cores", &[("node", "node-b")]);
    assert_eq!((node_b.value, node_b.label("internal_ip")), (3.0, Some("192.0.2.11")));
}

#[async_std::test]
async fn spine_seed_naming_has_exactly_the_original_label_set() {
    let h = start(forms_cluster(), |c| {
        c.naming = "seed".into();
        c.enrichers = vec!["node".into(), "labels".into(), "owner".into()];
    })
    .await;
    let text = scrape(&h).await;
    promtool_check(&text);
    let samples = parse(&text);
    let families: std::collections::BTreeSet<&str> = samples
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| n.starts_with("kube_metrics_server_") && (n.contains("_cpu") || n.contains("_mem")))
        .collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        [
            "kube_metrics_server_node_cpu",
            "kube_metrics_server_node_mem",
            "kube_metrics_server_pod_cpu",
            "kube_metrics_server_pod_mem"
        ]
    );
    for s in
        samples.iter().filter(|s| s.name == "kube_metrics_server_pod_cpu" || s.name == "kube_metrics_server_pod_mem")
    {
        let names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["node", "pod", "ip", "container", "namespace"], "{s:?}");
    }
    for s in
        samples.iter().filter(|s| s.name == "kube_metrics_server_node_cpu" || s.name == "kube_metrics_server_node_mem")
    {
        assert_eq!(s.labels.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["node"]);
    }
    let c = find(&samples, "kube_metrics_server_pod_cpu", &[("pod", "forms"), ("container", "c0")]);
    assert_eq!((c.value, c.label("node"), c.label("ip")), (0.007, Some("node-a"), Some("10.0.0.1")));
    assert!(text.contains("# HELP kube_metrics_server_pod_cpu CPU usage of a container in cores"));
}

#[async_std::test]
async fn spine_token_rotation_401_then_reread() {
    let h = start(forms_cluster(), |_| {}).await;
    assert!(scrape(&h).await.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    // Rotate: the API server now accepts only the new token, which is in the file.
    h.sim.state().token = "test-token-2".into();
    std::fs::write(h.dir.join("token"), "test-token-2\n").expect("rotate");
    let text = scrape(&h).await;
    assert!(text.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "{text}");
    assert!(text.contains("kube_metrics_server_up{resource=\"nodes\"} 1"));
    let statuses: Vec<u16> = h.sim.state().requests.iter().map(|(_, s)| *s).collect();
    assert!(statuses.contains(&401), "the old token was refused once: {statuses:?}");
    assert!(text.contains(r#"kube_metrics_server_api_requests_total{resource="pod_metrics",code="401"} 1"#), "{text}");
    assert_eq!(parse(&text).iter().filter(|s| s.name == "kube_metrics_server_container_cpu_usage_cores").count(), 10);
}

#[async_std::test]
async fn spine_metrics_v1_404_falls_back_to_v1beta1() {
    let h = start(forms_cluster(), |_| {}).await;
    h.sim.state().serve_v1 = false;
    let text = scrape(&h).await;
    assert!(text.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "{text}");
    let requests = h.sim.state().requests.clone();
    assert!(requests.contains(&("/apis/metrics.k8s.io/v1/pods".into(), 404)), "{requests:?}");
    assert!(requests.contains(&("/apis/metrics.k8s.io/v1beta1/pods".into(), 200)), "{requests:?}");
    // The next scrape goes straight to v1beta1.
    let before = h.sim.count("/apis/metrics.k8s.io/v1/");
    scrape(&h).await;
    assert_eq!(h.sim.count("/apis/metrics.k8s.io/v1/"), before);
    // With v1 served, it is used.
    let h = start(forms_cluster(), |_| {}).await;
    scrape(&h).await;
    assert!(h.sim.count("/apis/metrics.k8s.io/v1/pods") == 1 && h.sim.count("/apis/metrics.k8s.io/v1beta1/") == 0);
}

#[async_std::test]
async fn spine_the_v1beta1_fallback_is_logged_once() {
    // The pod and node lists find v1 missing together, on the first scrape; one line says so.
    let (sim, _raw, dir) = sim_and_config(forms_cluster()).await;
    sim.state().serve_v1 = false;
    let (port, log, _child) = spawn_server(&sim, &dir).await;
    for _ in 0..3 {
        let got = get(&format!("http://127.0.0.1:{port}/metrics"), &[]).await;
        assert!(got.body.contains("kube_metrics_server_up{resource=\"nodes\"} 1"), "{}", got.body);
    }
    assert!(sim.count("/apis/metrics.k8s.io/v1/nodes") >= 1, "the node list tried v1 too");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert_eq!(logged.matches("metrics.k8s.io/v1 is not served").count(), 1, "{logged}");
}

#[async_std::test]
async fn spine_demo_cluster_is_enriched_and_promtool_clean() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let got = get(&format!("{}/metrics", h.url), &[]).await;
    assert_eq!(got.content_type, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check(&got.body);
    let samples = parse(&got.body);
    let pods: Vec<_> = samples.iter().filter(|s| s.name == "kube_metrics_server_pod_cpu_usage_cores").collect();
    let nodes: Vec<_> = samples.iter().filter(|s| s.name == "kube_metrics_server_node_cpu_usage_cores").collect();
    assert!(pods.len() >= 20 && nodes.len() >= 2, "{} pods, {} nodes", pods.len(), nodes.len());
    assert!(pods.iter().all(|p| p.label("node").is_some() && p.label("pod_ip").is_some()));
    assert!(nodes.iter().all(|n| n.label("internal_ip").is_some()));
    for path in ["/healthz", "/readyz", "/"] {
        assert_eq!(get(&format!("{}{path}", h.url), &[]).await.status, 200, "{path}");
    }
}

#[test]
fn spine_invalid_config_exits_nonzero_naming_the_key() {
    let out = Command::new(binary()).env_clear().env("MSP_KUBERNETES__TIMEOUT", "soon").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubernetes.timeout"), "{err}");
}
