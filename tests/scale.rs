//! Issue 4, [scale]: watch-backed metadata and shared fetches.

use std::time::Duration;

use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

const LISTS: [&str; 4] = ["/api/v1/pods", "/api/v1/nodes", "/apis/apps/v1/replicasets", "/apis/batch/v1/jobs"];

fn lists(h: &Harness) -> Vec<usize> {
    LISTS.iter().map(|p| h.sim.lists(p)).collect()
}

#[async_std::test]
async fn scale_steady_state_scrapes_make_no_list_requests() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    assert_eq!(lists(&h), [1, 1, 1, 1], "one list each to start the caches");
    let metrics_before = h.sim.count("/apis/metrics.k8s.io/");
    for _ in 0..10 {
        let s = parse(&scrape(&h).await);
        assert!(
            find(&s, "kube_metrics_server_pod_cpu_usage_cores", &[("pod", "redis-0")]).label("workload_name")
                == Some("redis")
        );
    }
    assert_eq!(lists(&h), [1, 1, 1, 1], "no list request in steady state");
    assert_eq!(h.sim.count("/apis/metrics.k8s.io/") - metrics_before, 20, "two metrics requests a scrape");
    let text = scrape(&h).await;
    assert!(text.contains(r#"kube_metrics_server_cache_objects{resource="pods"} 25"#), "{text}");
}

/// Pods changing one event at a time (the simulator's churn, as the benchmark drives it):
/// each change reaches its pod's series through the watch, every other pod keeps its
/// labels, and nothing is listed again.
#[async_std::test]
async fn scale_pods_changing_one_event_at_a_time_are_enriched_anew_and_no_other() {
    let h = start(SimCluster::synthetic(300), |c| c.enrichers = vec!["node".into()]).await;
    let before = parse(&scrape(&h).await);
    let ip = |s: &[Sample], pod: &str| {
        find(s, "kube_metrics_server_pod_cpu_usage_cores", &[("pod", pod)]).label("pod_ip").map(str::to_owned)
    };
    let names: Vec<String> = h.sim.state().cluster.pods.iter().map(|p| p.name.clone()).collect();
    let listed = lists(&h);
    for (i, new) in [(7, "10.250.0.7"), (150, "10.250.0.150"), (7, "10.250.1.7")] {
        h.sim.state().change_pod(i, |p| p.ip = new.into());
    }
    let after = scrape_until(&h, Duration::from_secs(8), |s| {
        ip(s, &names[7]).as_deref() == Some("10.250.1.7") && ip(s, &names[150]).as_deref() == Some("10.250.0.150")
    })
    .await;
    for name in names.iter().enumerate().filter(|(i, _)| ![7, 150].contains(i)).map(|(_, n)| n) {
        assert_eq!(ip(&after, name), ip(&before, name), "{name}");
    }
    assert_eq!(lists(&h), listed, "watched, not listed again");
}

#[async_std::test]
async fn scale_watch_resumes_and_relists_only_on_410() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    // A dropped connection: resume from the last resourceVersion, no re-list.
    h.sim.update(|c| c.pods.retain(|p| p.name != "debug-shell"));
    async_std::task::sleep(Duration::from_millis(200)).await;
    // Watches from a resourceVersion (not the streaming list the simulator refuses).
    let watches = |h: &Harness| {
        h.sim
            .state()
            .requests
            .iter()
            .filter(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("resourceVersion="))
            .count()
    };
    let before = watches(&h);
    h.sim.drop_watches();
    h.sim.update(|c| c.pods.push(pod("default", "after-drop", "node-a", "10.1.1.1", &[("c", "1m", "1Ki")])));
    scrape_until(&h, Duration::from_secs(8), |s| {
        s.iter().any(|x| x.label("pod") == Some("after-drop") && x.label("node") == Some("node-a"))
    })
    .await;
    assert_eq!(lists(&h), [1, 1, 1, 1], "resumed without re-listing");
    assert!(watches(&h) > before, "watched again after the drop");
    // History compacted: the resume gets 410 and the cache re-lists once.
    h.sim.state().compact();
    h.sim.drop_watches();
    h.sim.update(|c| c.pods.push(pod("default", "after-410", "node-b", "10.1.1.2", &[("c", "1m", "1Ki")])));
    scrape_until(&h, Duration::from_secs(8), |s| {
        s.iter().any(|x| x.label("pod") == Some("after-410") && x.label("node") == Some("node-b"))
    })
    .await;
    assert_eq!(h.sim.lists("/api/v1/pods"), 2, "re-listed after 410 Gone");
}

/// A cache that lists again (its watch's history compacted: 410 Gone) keeps each pod the
/// new list repeats as the very copy it held, and its name, so that at 150,000 pods the
/// new store is new maps beside the old, not every pod twice; a pod changed meanwhile is
/// read anew, and one deleted is gone. In pages (3 of them), and streamed.
#[async_std::test]
async fn scale_a_list_read_again_keeps_the_pods_it_held() {
    use msp_core::Cluster as _;
    use std::sync::Arc;
    for streams in [false, true] {
        let (sim, mut raw, _dir) = sim_and_config(SimCluster::synthetic(300)).await;
        sim.state().streams_lists = streams;
        raw.kubernetes.list_page_size = 100;
        let config = raw.check(&msp_server::Registry::builtin()).expect("config");
        let client = Arc::new(msp_server::KubeClient::from_config(&config).expect("client"));
        let cluster = msp_server::CachedCluster::new(client);
        let before = cluster.pods().await.expect("the pods");
        assert_eq!(before.len(), 300);
        let listed = |sim: &msp_sim::Sim| match streams {
            false => sim.lists("/api/v1/pods"),
            true => {
                let requests = &sim.state().requests;
                requests
                    .iter()
                    .filter(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("sendInitialEvents=true"))
                    .count()
            }
        };
        let lists = listed(&sim);
        let (changed, deleted) = {
            let pods = &sim.state().cluster.pods;
            ((pods[7].namespace.clone(), pods[7].name.clone()), (pods[150].namespace.clone(), pods[150].name.clone()))
        };
        {
            // One change and one deletion, then the history forgotten (their events with it,
            // under the same lock): they reach the cache only by the list its watch's 410
            // asks for.
            let mut state = sim.state();
            state.update(|c| {
                c.pods[7].labels.push(("tier".into(), "changed".into()));
                c.pods.remove(150);
            });
            state.compact();
        }
        sim.drop_watches();
        let started = std::time::Instant::now();
        let after = loop {
            let now = cluster.pods().await.expect("the pods");
            if !Arc::ptr_eq(&now, &before) {
                break now;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "streams {streams}: never listed again");
            async_std::task::sleep(Duration::from_millis(20)).await;
        };
        let pages = if streams { 1 } else { 3 };
        assert_eq!(listed(&sim), lists + pages, "streams {streams}: listed again, once");
        assert_eq!(after.len(), 299);
        assert!(after.get(&deleted.0, &deleted.1).is_none(), "streams {streams}: the deleted pod kept");
        let tier =
            after.get(&changed.0, &changed.1).and_then(|p| p.labels.iter().find(|(k, _)| &**k == "tier").cloned());
        assert_eq!(tier.map(|(_, v)| v.to_string()).as_deref(), Some("changed"), "streams {streams}: the change");
        for (ns, name, _) in before.iter().filter(|(ns, name, _)| (&***ns, &***name) != (&*deleted.0, &*deleted.1)) {
            let (Some((k1, _)), Some((k2, _))) = (before.get_key_value(ns, name), after.get_key_value(ns, name)) else {
                panic!("{ns}/{name}: lost")
            };
            let kept = (ns.to_string(), name.to_string()) != changed;
            assert_eq!(after.shares(&before, ns, name), kept, "streams {streams}: {ns}/{name} kept {kept}");
            assert_eq!(Arc::ptr_eq(k1, k2), kept, "streams {streams}: {ns}/{name}'s name kept {kept}");
        }
    }
}

#[async_std::test]
async fn scale_a_request_with_no_scrape_timeout_joins_the_warm_up_scrape() {
    // metrics-server answers after 2 s: the request below arrives while the warm-up reads.
    let slow =
        |s: &mut msp_sim::SimState| drop(s.faults.insert(Route::PodMetrics, Fault::Delay(Duration::from_secs(2))));
    let h = start_sim(SimCluster::synthetic(200), slow, |c| c.enrichers = vec!["node".into()]).await;
    let warming = async_std::task::spawn(h.exporter.warm_up());
    let pods = "/apis/metrics.k8s.io/v1/pods";
    let started = std::time::Instant::now();
    while h.sim.arrivals(pods) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the warm-up never read");
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    // As curl asks: no X-Prometheus-Scrape-Timeout-Seconds.
    let got = get(&format!("{}/metrics", h.url), &[]).await;
    assert!(got.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "{}", got.body);
    warming.await;
    assert_eq!(h.sim.arrivals(pods), 1, "it joined the warm-up's read instead of reading beside it");
}

#[async_std::test]
async fn scale_concurrent_scrapes_share_upstream_fetches() {
    let h = start(SimCluster::synthetic(2000), |c| c.enrichers = vec!["node".into()]).await;
    scrape(&h).await;
    // metrics-server answers after 2 s: every request below arrives while a read is in flight,
    // even on a busy machine.
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Delay(Duration::from_secs(2)));
    let concurrently = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let url = format!("{}/metrics", h.url);
                async_std::task::spawn(async move { get(&url, &[]).await })
            })
            .collect();
        async move {
            let mut got = Vec::new();
            for t in tasks {
                got.push(t.await);
            }
            got
        }
    };
    let before = h.sim.count("/apis/metrics.k8s.io/v1/pods");
    for got in concurrently(msp_server::MAX_BODIES).await {
        assert_eq!(got.status, 200);
        assert!(got.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    }
    let upstream = h.sim.count("/apis/metrics.k8s.io/v1/pods") - before;
    assert_eq!(upstream, 1, "{} concurrent scrapes, one read", msp_server::MAX_BODIES);

    // Past the bound, a request is refused at once, and every body served is whole.
    let got = concurrently(40).await;
    for g in &got {
        match g.status {
            200 => assert!(g.body.contains("kube_metrics_server_up{resource=\"pods\"} 1")),
            503 => assert!(g.body.starts_with("too busy: "), "{}", g.body),
            other => panic!("{other}: {}", g.body),
        }
    }
    let served = got.iter().filter(|g| g.status == 200).count();
    assert_eq!(served, msp_server::MAX_BODIES, "all 40 arrived during one read");
    h.sim.state().faults.clear();
    let text = scrape(&h).await;
    let samples = parse(&text);
    let refused = |limit| find(&samples, "kube_metrics_server_refused_total", &[("limit", limit)]).value;
    assert_eq!((refused("bodies"), refused("scrapes")), (24.0, 0.0));
}
