//! Issue 6, [ecosystem]: the parts covered so far.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use msp_core::Quantity;
use msp_sim::SimCluster;
use msp_tests::*;

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

#[async_std::test]
async fn ecosystem_openmetrics_and_gzip() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let url = format!("{}/metrics", h.url);
    let om = get(&url, &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")]).await;
    assert_eq!(om.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert_eq!(om.content_encoding, "gzip");
    assert_eq!(&om.raw[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om
        .body
        .contains("# TYPE kube_metrics_server_parse_errors counter\nkube_metrics_server_parse_errors_total 0\n"));
    let text = get(&url, &[("Accept", "text/plain")]).await;
    assert_eq!(text.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(text.content_encoding, "");
    assert!(!text.body.contains("# EOF"));
    promtool_check(&text.body);
    let unknown = get(&url, &[("Accept", "application/json")]).await;
    assert_eq!(unknown.content_type, "text/plain; version=0.0.4; charset=utf-8", "never a type we don't write");
}

/// Debian's prometheus, scraping `target` (host:port) every second; and a query of its API.
struct Prometheus {
    _child: Killed,
    /// Its configuration and storage, removed after it has been stopped (fields drop in order).
    _dir: TempDir,
    api: String,
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        Prometheus::scraping_jobs(&[("msp", &[target])])
    }

    /// Scraping each job's targets (host:port).
    fn scraping_jobs(jobs: &[(&str, &[&str])]) -> Prometheus {
        let dir = temp_dir("prometheus");
        let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
            config += &format!("  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n", targets.join(", "));
        }
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: run ./scripts/test, or apt-get install prometheus");
        Prometheus { _child: Killed(child), _dir: dir, api: format!("http://127.0.0.1:{port}/api/v1") }
    }

    /// The API's answer to `path`, if it answered in time.
    async fn api(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("{}/{path}", self.api);
        let body = async_std::future::timeout(Duration::from_secs(5), async {
            let client = surf::Client::with_http_client(msp_server::Transport::new(None));
            client.get(url).await?.body_string().await
        })
        .await
        .ok()?
        .ok()?;
        serde_json::from_str(&body).ok()
    }

    /// The target's health (`up` once scraped well).
    async fn health(&self) -> String {
        let targets = self.api("targets").await.unwrap_or_default();
        targets["data"]["activeTargets"][0]["health"].as_str().unwrap_or("").to_owned()
    }

    /// The value of an instant query's first result.
    async fn value(&self, q: &str) -> Option<String> {
        self.query(q).await?.into_iter().next().map(|(_, value)| value)
    }

    /// An instant query's result: each series' labels and value.
    async fn query(&self, q: &str) -> Option<Vec<(serde_json::Value, String)>> {
        self.query_at(q, None).await
    }

    /// An instant query's result at `time` (Unix seconds; now if `None`).
    async fn query_at(&self, q: &str, time: Option<f64>) -> Option<Vec<(serde_json::Value, String)>> {
        let encoded: String = q
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
            .collect();
        let at = time.map(|t| format!("&time={t:.3}")).unwrap_or_default();
        let v = self.api(&format!("query?query={encoded}{at}")).await?;
        if v["status"] != "success" {
            return None;
        }
        let rows = v["data"]["result"].as_array()?;
        rows.iter().map(|r| Some((r["metric"].clone(), r["value"][1].as_str()?.to_owned()))).collect()
    }

    /// The values of `queries`, once every one has a value and the target's last scrape was
    /// `up` (within a minute). A scrape of a second (an unoptimised build on two busy cores)
    /// may run over between the queries: then they are all asked again.
    async fn values(&self, queries: &[&str]) -> Vec<String> {
        let started = Instant::now();
        let mut health = String::new();
        loop {
            assert!(started.elapsed() < Duration::from_secs(60), "prometheus never stored the series ({health:?})");
            async_std::task::sleep(Duration::from_millis(500)).await;
            let mut values = Vec::new();
            for q in queries {
                values.extend(self.value(q).await);
            }
            health = self.health().await;
            if values.len() == queries.len() && health == "up" {
                return values;
            }
        }
    }
}

/// Debian's prometheus scrapes the server and stores the exact value of a known container.
#[async_std::test]
async fn ecosystem_real_prometheus_stores_exact_values() {
    let mut cluster = SimCluster::demo();
    let debug = cluster.pods.iter_mut().find(|p| p.name == "debug-shell").expect("debug-shell");
    debug.containers[0].cpu = "1500000n".into();
    debug.containers[0].memory = "125448Ki".into();
    let h = start(cluster, |_| {}).await;
    let prometheus = Prometheus::scraping(h.url.trim_start_matches("http://"));
    let values = prometheus
        .values(&[
            r#"kube_metrics_server_container_cpu_usage_cores{pod="debug-shell",container="debug"}"#,
            r#"kube_metrics_server_container_memory_working_set_bytes{pod="debug-shell",container="debug"}"#,
        ])
        .await;
    assert_eq!(values, ["0.0015", "128458752"]);
}

/// With `timestamps`, Prometheus' own request (OpenMetrics) gets each sample's time, in
/// seconds as OpenMetrics says, and Prometheus stores the sample at that time.
#[async_std::test]
async fn ecosystem_real_prometheus_stores_openmetrics_timestamps_at_the_sample_time() {
    let mut cluster = SimCluster::demo();
    cluster.resolution = Some(15);
    let h = start(cluster, |c| c.timestamps = true).await;
    let epoch =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64();
    let started = epoch();
    let prometheus = Prometheus::scraping(h.url.trim_start_matches("http://"));
    let query = r#"timestamp(kube_metrics_server_container_cpu_usage_cores{pod="debug-shell",container="debug"})"#;
    let values = prometheus.values(&[query]).await;
    let stamp: f64 = values[0].parse().expect("a timestamp");
    assert_eq!(stamp % 15.0, 0.0, "the sample's own time, at the start of a 15 s period: {stamp}");
    assert!(started - 15.0 <= stamp && stamp <= epoch(), "{stamp} is not of a period since {started}");
}

/// Prometheus asks for gzip: at 3,000 pods the body is many deflate blocks of our own
/// encoder, and Go's decompressor reads every series of it. The pods' label names change
/// from one pod to the next (one fewer, one more at the end, one more between), as another
/// workload's do, so the encoder's compare merges them.
#[async_std::test]
async fn ecosystem_real_prometheus_reads_our_gzip_whole() {
    let mut cluster = SimCluster::synthetic(3000);
    for (i, pod) in cluster.pods.iter_mut().enumerate() {
        match i % 4 {
            1 => pod.labels.retain(|(key, _)| key != "app"),
            2 => pod.labels.push(("helm.sh/chart".into(), format!("chart-{}", i % 7))),
            3 => pod.labels.push(("component".into(), "api".into())),
            _ => {}
        }
    }
    let last = cluster.pods.last().expect("pods").clone();
    let h = start(cluster, |_| {}).await;
    let got = get(&format!("{}/metrics", h.url), &[("Accept", PROMETHEUS_ACCEPT), ("Accept-Encoding", "gzip")]).await;
    assert_eq!(got.content_encoding, "gzip");
    assert!(got.raw.len() * 10 < got.body.len(), "compressed {} to {}", got.body.len(), got.raw.len());
    let prometheus = Prometheus::scraping(h.url.trim_start_matches("http://"));
    let values = prometheus
        .values(&[
            "count(kube_metrics_server_container_cpu_usage_cores)",
            "count(kube_metrics_server_pod_memory_working_set_bytes)",
            &format!(r#"kube_metrics_server_container_cpu_usage_cores{{pod="{}",container="app"}}"#, last.name),
            r#"count(kube_metrics_server_container_cpu_usage_cores{label_app=""})"#,
            r#"count(kube_metrics_server_container_memory_working_set_bytes{label_helm_sh_chart=~"chart-[0-6]"})"#,
            r#"count(kube_metrics_server_pod_cpu_usage_cores{label_component="api",label_app!=""})"#,
        ])
        .await;
    let cpu: Quantity = last.containers[0].cpu.parse().expect("quantity");
    let want = ["6000", "3000", &cpu.as_f64().to_string(), "1500", "1500", "750"];
    assert_eq!(values, want);
}

/// The sharding alerts' expressions, as deploy/rules/ writes them, read by Debian's prometheus
/// from three shards' own answers: one job scrapes all three, one only shards 0 and 2 (shard 1's
/// pod gone), one two unsharded replicas side by side.
#[async_std::test]
async fn ecosystem_real_prometheus_finds_a_missing_shard() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/rules/metrics-server-prom.rules.yaml");
    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).expect("rules")).expect("yaml");
    let expr = |alert: &str| -> String {
        let rules = rules["groups"]
            .as_sequence()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_sequence().expect("rules").iter());
        let mut found = rules.filter(|r| r["alert"].as_str() == Some(alert));
        found.next().and_then(|r| r["expr"].as_str()).expect(alert).to_owned()
    };
    let cluster = SimCluster::synthetic(300);
    let mut shards = Vec::new();
    for index in 0..3 {
        shards.push(
            start(cluster.clone(), |c| {
                c.shard.total = 3;
                c.shard.index = Some(index);
            })
            .await,
        );
    }
    let (a, b) = (start(cluster.clone(), |_| {}).await, start(cluster, |_| {}).await);
    let hosts: Vec<&str> = shards.iter().chain([&a, &b]).map(|h| h.url.trim_start_matches("http://")).collect();
    let prometheus = Prometheus::scraping_jobs(&[
        ("metrics-server-prom-whole", &hosts[..3]),
        ("metrics-server-prom", &[hosts[0], hosts[2]]),
        ("metrics-server-prom-ha", &hosts[3..]),
    ]);
    // Asked, all at one moment, until all seven were scraped in time for it: a scrape that
    // runs over its second (two busy cores) leaves its target's series stale for a while.
    let started = Instant::now();
    let (missing, mismatch) = loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970");
        let at = Some(now.as_secs_f64() - 0.5);
        // (None until Prometheus answers.)
        let up = prometheus.query_at("count(kube_metrics_server_shard_ordinal)", at).await;
        let missing = prometheus.query_at(&expr("MetricsServerPromShardsMissing"), at).await;
        let mismatch = prometheus.query_at(&expr("MetricsServerPromShardingMismatch"), at).await;
        let seven = up.as_ref().and_then(|rows| rows.first()).is_some_and(|(_, count)| count == "7");
        if let (true, Some(missing), Some(mismatch)) = (seven, missing, mismatch) {
            break (missing, mismatch);
        }
        assert!(started.elapsed() < Duration::from_secs(60), "prometheus never scraped all seven ({up:?})");
        async_std::task::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(missing.len(), 1, "only the job without shard 1: {missing:?}");
    assert_eq!(missing[0].0["job"], "metrics-server-prom");
    assert_eq!(missing[0].1, "2", "2^3 - 1 - (2^0 + 2^2)");
    assert_eq!(mismatch, [], "every replica says the same total within its job");
}

/// Every metric and label name the dashboard's queries use is one we emit.
#[test]
fn ecosystem_dashboard_uses_only_our_names() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/dashboard/metrics-server-prom.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    let metrics: BTreeSet<&str> = [
        "kube_metrics_server_container_cpu_usage_cores",
        "kube_metrics_server_container_memory_working_set_bytes",
        "kube_metrics_server_pod_cpu_usage_cores",
        "kube_metrics_server_pod_memory_working_set_bytes",
        "kube_metrics_server_node_cpu_usage_cores",
        "kube_metrics_server_node_memory_working_set_bytes",
        "kube_metrics_server_up",
        "kube_metrics_server_enricher_errors_total",
    ]
    .into();
    let labels: BTreeSet<&str> = [
        "namespace",
        "pod",
        "container",
        "node",
        "workload_kind",
        "workload_name",
        "owner_kind",
        "owner_name",
        "resource",
        "enricher",
        // Not ours: the label that tells clusters apart behind one Prometheus or Thanos,
        // which the recording rules keep too.
        "cluster",
    ]
    .into();
    let mut exprs: Vec<String> = dash["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(String::from))
        .collect();
    exprs.extend(
        dash["templating"]["list"]
            .as_array()
            .expect("vars")
            .iter()
            .filter_map(|v| v["query"].as_str().map(String::from))
            .filter(|q| q.contains('(')),
    );
    assert!(exprs.len() >= 8);
    for expr in &exprs {
        let words: Vec<&str> =
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
        for w in &words {
            if w.starts_with("kube_") {
                assert!(metrics.contains(w), "{expr}: unknown metric {w}");
            }
        }
        // Label names: inside by (...) and before =~ / = in matchers.
        for group in expr.split("by (").skip(1) {
            for l in group.split(')').next().unwrap_or("").split(',') {
                assert!(labels.contains(l.trim()), "{expr}: unknown label {l}");
            }
        }
        for matcher in expr.split('{').skip(1) {
            let inner = matcher.split('}').next().unwrap_or("");
            for m in inner.split(',').filter(|m| !m.is_empty()) {
                let name = m.split(['=', '!', '~']).next().unwrap_or("").trim();
                assert!(labels.contains(name), "{expr}: unknown label {name}");
            }
        }
    }
}

/// The ClusterRole grants only list/watch on what we read; the Deployment is hardened.
#[test]
fn ecosystem_deploy_is_least_privilege_and_hardened() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/");
    let read = |f: &str| -> serde_norway::Value {
        serde_norway::from_str(&std::fs::read_to_string(format!("{dir}{f}")).expect(f)).expect(f)
    };
    // The kustomization's resources, and those of its bases (base/, rules/).
    fn kinds_of(read: &dyn Fn(&str) -> serde_norway::Value, prefix: &str, kinds: &mut BTreeSet<String>) {
        let kustomization = read(&format!("{prefix}kustomization.yaml"));
        for r in kustomization["resources"].as_sequence().expect("resources") {
            let doc = read(&format!("{prefix}{}", r.as_str().expect("name")));
            kinds.insert(doc["kind"].as_str().expect("kind").to_owned());
        }
        for b in kustomization["bases"].as_sequence().into_iter().flatten() {
            kinds_of(read, &format!("{prefix}{}/", b.as_str().expect("base")), kinds);
        }
    }
    let mut kinds = BTreeSet::new();
    kinds_of(&read, "", &mut kinds);
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    let role = read("base/clusterrole.yaml");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"].as_sequence().expect("verbs").iter().filter_map(|v| v.as_str()).collect();
        // No get; no watch on the metrics API (tests/deploy.rs checks the rendered role).
        assert!(verbs == ["list", "watch"] || verbs == ["list"], "{rule:?}");
        for g in rule["apiGroups"].as_sequence().expect("groups") {
            for r in rule["resources"].as_sequence().expect("resources") {
                granted.insert(format!("{}/{}", g.as_str().expect("g"), r.as_str().expect("r")));
            }
        }
    }
    assert_eq!(
        granted.into_iter().collect::<Vec<_>>(),
        ["/nodes", "/pods", "apps/replicasets", "batch/jobs", "metrics.k8s.io/nodes", "metrics.k8s.io/pods"]
    );
    let deploy = read("app/deployment.yaml");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    for k in ["requests", "limits"] {
        assert!(c["resources"][k]["cpu"].is_string() && c["resources"][k]["memory"].is_string(), "{k}");
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert!(c["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .all(|e| e["name"].as_str().is_some_and(|n| n.starts_with("MSP_"))));
    let svc = read("app/service.yaml");
    assert_eq!(svc["spec"]["ports"][0]["name"].as_str(), Some("metrics"));
}

#[async_std::test]
async fn ecosystem_namespace_filters_and_label_selector() {
    let h = start(SimCluster::demo(), |c| {
        c.namespaces.allow = vec!["shop*".into(), "batch".into()];
        c.namespaces.deny = vec!["shop-staging".into()];
        c.label_selector = Some("tier!=control-plane,app in (frontend,cart)".into());
    })
    .await;
    let s = parse(&scrape(&h).await);
    let namespaces: BTreeSet<&str> = s
        .iter()
        .filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores")
        .filter_map(|x| x.label("namespace"))
        .collect();
    // batch is allowed but none of its pods is selected; shop-staging's frontend is
    // selected but its namespace denied.
    assert_eq!(namespaces.into_iter().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(
        s.iter().filter(|x| x.name == "kube_metrics_server_node_cpu_usage_cores").count(),
        3,
        "nodes are not filtered"
    );
    let requests = h.sim.state().requests.clone();
    let want = "/apis/metrics.k8s.io/v1/pods?labelSelector=tier%21%3Dcontrol-plane%2Capp+in+%28frontend%2Ccart%29";
    assert!(requests.iter().any(|(p, _)| p == want), "{requests:?}");
    assert!(requests.iter().any(|(p, _)| p == "/apis/metrics.k8s.io/v1/nodes"), "no selector on nodes");
}
