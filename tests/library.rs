//! Issue 10, [library]: the examples an embedder starts from, run as a new user would.

use std::process::Command;
use std::time::{Duration, Instant};

use msp_tests::*;

/// An example binary beside the test (`./scripts/test` builds them first).
fn example(name: &str) -> std::path::PathBuf {
    let bin = binary().parent().expect("target dir").join("examples").join(name);
    assert!(bin.exists(), "{} is missing: run ./scripts/test (it builds the examples)", bin.display());
    bin
}

fn fixture(name: &str) -> std::path::PathBuf {
    // The published samples, copied into the repository (see core/fixtures/).
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/fixtures").join(name)
}

#[test]
fn library_render_once_prints_exact_values_for_the_published_samples() {
    let out = Command::new(example("render_once"))
        .arg(fixture("podmetrics-list-kubernetes-website.json"))
        .arg(fixture("nodemetrics-kubernetes-website.json"))
        .output()
        .expect("run render_once");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    promtool_check(&text);
    let s = parse(&text);
    let coredns = [("namespace", "kube-system"), ("pod", "coredns-78fcd69978-f6pqv"), ("container", "coredns")];
    assert_eq!(find(&s, "kube_metrics_server_container_cpu_usage_cores", &coredns).value, 0.007338891);
    let minikube = find(&s, "kube_metrics_server_node_memory_working_set_bytes", &[("node", "minikube")]);
    assert_eq!(minikube.value, (732212u64 * 1024) as f64);

    let bad = Command::new(example("render_once")).arg("/nonexistent.json").output().expect("run");
    assert_eq!(bad.status.code(), Some(2), "usage error");
}

/// An embedder's own metadata (a `StaticCluster`, as from its own reflectors) with the
/// metrics API read over the server's client, built from the same settings.
#[async_std::test]
async fn library_the_kubernetes_client_is_built_from_settings_beside_an_embedders_cluster() {
    let (_sim, raw, _dir) = sim_and_config(msp_sim::SimCluster::demo()).await;
    let config = raw.check(&msp_server::Registry::builtin()).expect("config");
    let client = std::sync::Arc::new(msp_server::KubeClient::from_config(&config).expect("client"));
    let exporter = msp_server::Exporter::new(
        std::sync::Arc::new(msp_server::MetricsApi::new(client)),
        std::sync::Arc::new(msp_core::StaticCluster::default()),
    );
    let text = exporter.scrape(msp_core::Format::Text, None).await;
    assert!(text.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "{text}");
    assert!(text.contains("pod=\"frontend-7c9d8f6b5-8xk2d\""), "{text}");
}

/// The same with the `[kubernetes]` settings alone, no whole configuration (no listen
/// address, no enrichers): `KubeClient::new` took a type no embedder could name.
#[async_std::test]
async fn library_the_kubernetes_client_is_built_from_its_settings_alone() {
    let (_sim, raw, _dir) = sim_and_config(msp_sim::SimCluster::demo()).await;
    let settings = msp_server::Settings {
        api_url: Some(raw.kubernetes.api_url.expect("url").parse().expect("a URL")),
        ca_file: raw.kubernetes.ca_file,
        token_file: raw.kubernetes.token_file,
        ..Default::default()
    };
    let client = msp_server::KubeClient::from_settings(&settings, msp_server::Limits::default()).expect("client");
    let api = msp_server::MetricsApi::new(std::sync::Arc::new(client));
    let body = msp_core::MetricsSource::pod_metrics(&api, None).await.expect("pod metrics");
    let pods = msp_core::PodMetricsList::parse(&body).expect("a PodMetricsList");
    assert!(pods.items.iter().any(|p| p.metadata.name.as_deref() == Some("frontend-7c9d8f6b5-8xk2d")));
}

#[async_std::test]
async fn library_embed_tide_serves_the_exporter_and_every_link_under_the_prefix() {
    let port = free_port();
    let mut child = Killed(spawn_demo(&example("embed_tide"), port));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let landing = loop {
        if async_std::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            let got = get(&format!("{base}/exporter/"), &[]).await;
            if got.status == 200 {
                break got.body;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(15), "embed_tide did not serve /exporter/");
        async_std::task::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(get(&format!("{base}/"), &[]).await.status, 200, "the embedder's own route");
    // Ready once its warm-up scrape is done, which the example starts as `run` does.
    assert_eq!(wait_ready(&format!("{base}/exporter")).await.status, 200, "/exporter/readyz");
    let links: Vec<&str> = landing.split("href=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    assert!(links.len() >= 3, "{landing}");
    for link in links {
        assert!(!link.starts_with('/') && !link.contains("://"), "{link} is not relative");
        let got = get(&format!("{base}/exporter/{link}"), &[]).await;
        assert_eq!(got.status, 200, "/exporter/{link}");
    }
    let metrics = get(&format!("{base}/exporter/metrics"), &[]).await.body;
    let s = parse(&metrics);
    assert_eq!(find(&s, "kube_metrics_server_up", &[("resource", "pods")]).value, 1.0);

    // SIGTERM stops it cleanly: the demo's CA and token go with it.
    let pid = child.0.id();
    let dir = std::env::temp_dir().join(format!("metrics-server-prom-demo-{pid}"));
    assert!(dir.join("ca.crt").exists(), "{} holds the demo CA", dir.display());
    assert!(Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill").success());
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

/// The custom enricher example, as an embedder copies it: its own section read, its label
/// on the demo's pods, its configuration warning logged, and a configuration it refuses
/// said as the service says it.
#[async_std::test]
async fn library_custom_enricher_reads_its_section_and_warns_of_it() {
    let port = free_port();
    let dir = temp_dir("custom-enricher");
    let log = dir.join("stderr.log");
    let mut command = demo_command(&example("custom_enricher"), port);
    command.env("MSP_TEAM__OWNERS", r#"{""="everyone",shop="commerce"}"#);
    let _child = Killed(spawn_logging(&mut command, &log));
    wait_listening(port).await;
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(wait_ready(&base).await.status, 200);
    let s = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    let teams: std::collections::BTreeSet<&str> = s
        .iter()
        .filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores")
        .filter_map(|x| x.label("team"))
        .collect();
    assert_eq!(teams.into_iter().collect::<Vec<_>>(), ["everyone"], "the empty prefix owns them all");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains(r#"enricher "team": team.owners has "" = "everyone""#), "{logged}");

    let out = Command::new(example("custom_enricher")).env_clear().env("MSP_TEAM__TYPO", "1").output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("custom_enricher: configuration of enricher \"team\""), "{err}");
    assert!(!err.contains("Enricher {"), "said, not debugged: {err}");
}

/// `scrape_with` hands an embedder the samples and labels a scrape is written from, not
/// text: rendered with the exporter's options, they are the scrape's families exactly.
#[async_std::test]
async fn library_scrape_with_hands_over_what_the_scrape_is_written_from() {
    let (_sim, mut raw, _dir) = sim_and_config(msp_sim::SimCluster::demo()).await;
    // The second read reuses the first's lists: the same usage both times.
    raw.reuse_lists_for = "60s".into();
    let config = raw.check(&msp_server::Registry::builtin()).expect("config");
    let exporter = msp_server::build(&config).expect("build");
    let text = exporter.scrape(msp_core::Format::Text, None).await;
    let (rendered, frontend) = exporter
        .scrape_with(None, |sampled| {
            assert!(sampled.pods_up && sampled.nodes_up);
            assert!(sampled.enriched.failures.is_empty(), "{:?}", sampled.enriched.failures);
            let scrape = sampled.scrape;
            let (_, containers, labels) =
                sampled.pods().find(|(p, _, _)| p.name == "frontend-7c9d8f6b5-8xk2d").expect("the pod");
            let labels: Vec<(String, String)> = labels.pairs().map(|(n, v)| (n.to_owned(), v.into_owned())).collect();
            let frontend = (containers[0].name.to_owned(), labels);
            let mut out = String::new();
            msp_core::render_prepared(&mut out, scrape, &sampled.enriched.prepared, exporter.options())
                .expect("render");
            (out, frontend)
        })
        .await;
    assert!(rendered.contains("kube_metrics_server_container_cpu_usage_cores{"), "{rendered}");
    assert!(text.starts_with(&rendered), "the scrape's families, then its self-metrics:\n{rendered}\n---\n{text}");
    assert!(text[rendered.len()..].contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    let (container, labels) = frontend;
    assert_eq!(container, "frontend");
    let label = |name: &str| labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert!(label("node").is_some_and(|n| !n.is_empty()), "{labels:?}");
    assert_eq!((label("owner_kind"), label("workload_name")), (Some("ReplicaSet"), Some("frontend")), "{labels:?}");
}
