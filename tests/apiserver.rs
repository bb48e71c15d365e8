//! Issue 12, [apiserver]: a good citizen of real API servers: paginated lists, 429 and
//! `Retry-After`, a `User-Agent`, exec credential plugins, one connection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

fn up(s: &[Sample], resource: &str) -> f64 {
    find(s, "kube_metrics_server_up", &[("resource", resource)]).value
}

fn counted(s: &[Sample], resource: &str, code: &str) -> f64 {
    s.iter()
        .find(|x| {
            x.name == "kube_metrics_server_api_requests_total"
                && x.label("resource") == Some(resource)
                && x.label("code") == Some(code)
        })
        .map_or(0.0, |x| x.value)
}

/// Every pod series has its workload, and there is one per pod.
fn all_enriched(s: &[Sample], pods: usize) -> bool {
    let series: Vec<&Sample> = s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").collect();
    series.len() == pods && series.iter().all(|x| x.label("workload_name").is_some() && x.label("node").is_some())
}

/// How many pod series have their node.
fn with_node(s: &[Sample]) -> usize {
    s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores" && x.label("node").is_some()).count()
}

/// The `limit` of a list request, if it has one.
fn limit_of(path: &str) -> Option<usize> {
    path.split(['?', '&']).find_map(|kv| kv.strip_prefix("limit=")).and_then(|v| v.parse().ok())
}

#[async_std::test]
async fn apiserver_initial_lists_are_paged_and_the_watch_starts_from_the_list() {
    let h = start(SimCluster::synthetic(3000), |_| {}).await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 3000)).await;
    let requests = h.sim.state().requests.clone();
    let pages: Vec<&String> =
        requests.iter().map(|(p, _)| p).filter(|p| p.starts_with("/api/v1/pods?") && !p.contains("watch=")).collect();
    eprintln!("the pod list came in {} pages: {pages:?}", pages.len());
    assert!(pages.len() >= 3, "{pages:?}");
    assert!(pages.iter().all(|p| limit_of(p).is_some_and(|l| l <= 1000)), "{pages:?}");
    assert_eq!(pages.iter().filter(|p| p.contains("continue=")).count(), pages.len() - 1, "{pages:?}");
    // Every cache in use pages, the metadata-only one included (no pod here is a Job's).
    for list in ["/api/v1/nodes?", "/apis/apps/v1/replicasets?"] {
        assert!(requests.iter().any(|(p, _)| p.starts_with(list) && limit_of(p).is_some()), "{list} {requests:?}");
    }
    // The metrics API is not paged.
    assert!(requests
        .iter()
        .filter(|(p, _)| p.starts_with("/apis/metrics.k8s.io/"))
        .all(|(p, _)| limit_of(p).is_none()));
    // The simulator, as an API server without the WatchList feature, refused the streaming
    // lists (422), each cache asking once at most (the first refusal spares those that
    // start after it), and the caches listed in pages from then on.
    let streamed: Vec<_> = requests.iter().filter(|(p, _)| streaming(p)).collect();
    assert!(!streamed.is_empty() && streamed.iter().all(|(_, code)| *code == 422), "{streamed:?}");
    for cache in ["/api/v1/pods?", "/api/v1/nodes?", "/apis/apps/v1/replicasets?"] {
        assert!(streamed.iter().filter(|(p, _)| p.starts_with(cache)).count() <= 1, "{streamed:?}");
    }
    // The watch starts from the list's resourceVersion (the simulator's, 1000: no change yet).
    let watch = requests
        .iter()
        .find(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("watch=1") && !streaming(p))
        .expect("watch");
    assert!(watch.0.contains("resourceVersion=1000"), "{watch:?}");
}

/// Whether a request asks for a streaming list (a watch with the initial events).
fn streaming(path: &str) -> bool {
    path.contains("watch=1") && path.contains("sendInitialEvents=true")
}

/// An embedder that drops its `CachedCluster` (rebuilding its exporter on a new
/// configuration, say) leaves no watch behind on the API server, and opens none again.
#[async_std::test]
async fn apiserver_a_dropped_cluster_closes_its_watches() {
    use msp_core::Cluster as _;
    let (sim, raw, _dir) = sim_and_config(SimCluster::demo()).await;
    let config = raw.check(&msp_server::Registry::builtin()).expect("config");
    let client = Arc::new(msp_server::KubeClient::from_config(&config).expect("client"));
    let cluster = msp_server::CachedCluster::new(client);
    cluster.pods().await.expect("the pods");
    cluster.nodes().await.expect("the nodes");
    let open = || sim.state().open_watches;
    wait_until("the pods and nodes watched", Duration::from_secs(10), || open() == 2).await;
    drop(cluster);
    // The sim finds a client gone at its next bookmark, within a second.
    wait_until("every watch closed", Duration::from_secs(10), || open() == 0).await;
    // Closed, not cut off: a cache still running would have watched again at once.
    let watches = sim.count("/api/v1/pods?") + sim.count("/api/v1/nodes?");
    async_std::task::sleep(Duration::from_secs(1)).await;
    assert_eq!(sim.count("/api/v1/pods?") + sim.count("/api/v1/nodes?"), watches, "asked again");
    assert_eq!(open(), 0);
}

/// Where the API server streams lists (the WatchList feature), each cache is filled by a
/// streaming list and makes no list request at all; its watch goes on, on the same
/// connection, and carries the changes after the objects.
#[async_std::test]
async fn apiserver_caches_stream_their_lists_where_the_server_does() {
    let h = start_sim(SimCluster::synthetic(3000), |s| s.streams_lists = true, |_| {}).await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 3000)).await;
    let requests = h.sim.state().requests.clone();
    for cache in ["/api/v1/pods?", "/api/v1/nodes?", "/apis/apps/v1/replicasets?"] {
        let mine: Vec<_> = requests.iter().filter(|(p, _)| p.starts_with(cache)).collect();
        assert!(mine.iter().all(|(p, _)| p.contains("watch=1")), "no list request: {mine:?}");
        assert_eq!(mine.iter().filter(|(p, _)| streaming(p)).count(), 1, "{mine:?}");
    }
    h.sim.update(|c| c.pods.push(pod("default", "after-stream", "node-a", "10.1.1.1", &[("c", "1m", "1Ki")])));
    scrape_until(&h, Duration::from_secs(8), |s| {
        s.iter().any(|x| x.label("pod") == Some("after-stream") && x.label("node") == Some("node-a"))
    })
    .await;
    let pods: Vec<_> = h.sim.state().requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods?")).cloned().collect();
    assert!(pods.len() == 1 && streaming(&pods[0].0), "the change came on the streaming list's watch: {pods:?}");
}

/// The bound on silence is one timer for a watch, set by its first line: with a 1 s request
/// timeout, it is due a second after the streaming list's first read began (the objects'
/// reads do not move it), long before the watch after them must hear something (5 minutes). Fired early, it is set again, and the
/// watch goes on: a change 3 s later still comes on the streaming list's own watch.
#[async_std::test]
async fn apiserver_a_watch_outlives_the_silence_bound_its_streaming_list_had() {
    let h =
        start_sim(SimCluster::synthetic(300), |s| s.streams_lists = true, |c| c.kubernetes.timeout = "1s".into()).await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 300)).await;
    async_std::task::sleep(Duration::from_secs(3)).await;
    h.sim.update(|c| c.pods.push(pod("default", "after-silence", "node-a", "10.1.1.1", &[("c", "1m", "1Ki")])));
    scrape_until(&h, Duration::from_secs(8), |s| s.iter().any(|x| x.label("pod") == Some("after-silence"))).await;
    let pods: Vec<_> = h.sim.state().requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods?")).cloned().collect();
    assert!(pods.len() == 1 && streaming(&pods[0].0), "the change came on the streaming list's watch: {pods:?}");
}

/// A busy API server waits up to 3 s for its watch cache to catch up before a streaming
/// list's first event: one that takes 4 s is still streamed, not taken for a server that
/// ignores the request (which would turn streaming lists off until a restart).
#[async_std::test]
async fn apiserver_a_streaming_list_whose_first_event_takes_4_s_is_still_streamed() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.streams_lists = true;
            s.first_event_delay = Duration::from_secs(4);
        },
        |_| {},
    )
    .await;
    scrape_until(&h, Duration::from_secs(30), |s| all_enriched(s, 1200)).await;
    let requests = h.sim.state().requests.clone();
    for cache in ["/api/v1/pods?", "/api/v1/nodes?", "/apis/apps/v1/replicasets?"] {
        let mine: Vec<_> = requests.iter().filter(|(p, _)| p.starts_with(cache)).collect();
        assert!(mine.iter().all(|(p, code)| streaming(p) && *code == 200), "streamed only: {mine:?}");
    }
    assert_eq!(h.sim.pages("/api/v1/"), 0, "no pages: {requests:?}");
}

/// A streaming list whose first event does not come within the request timeout (here 2 s,
/// the first event 30 s away) is given up on at that bound, and the caches list in pages:
/// the bound on a watch's silence fires, though it is now one timer for the whole watch.
#[async_std::test]
async fn apiserver_a_streaming_list_silent_past_the_timeout_is_given_up_and_paged() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.streams_lists = true;
            s.first_event_delay = Duration::from_secs(30);
        },
        |c| c.kubernetes.timeout = "2s".into(),
    )
    .await;
    // At the 2 s bound, long before the first event would come (30 s).
    scrape_until(&h, Duration::from_secs(15), |s| all_enriched(s, 1200)).await;
    assert!(h.sim.pages("/api/v1/pods") >= 3, "listed in pages");
    let arrived = h.sim.state().arrived.clone();
    assert!(arrived.iter().any(|p| p.starts_with("/api/v1/pods?") && streaming(p)), "asked for one first: {arrived:?}");
}

/// A 503 with `Retry-After` on a streaming list is waited out, and the streaming list asked
/// again (as client-go does), not followed at once by pages that add to the load.
#[async_std::test]
async fn apiserver_a_streaming_list_told_to_retry_after_is_asked_again_not_paged() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.streams_lists = true;
            s.fail_streams = 1;
            s.fail_streams_retry_after = Some(1);
        },
        |_| {},
    )
    .await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 1200)).await;
    let requests = h.sim.state().requests.clone();
    let streamed: Vec<u16> = requests.iter().filter(|(p, _)| streaming(p)).map(|(_, code)| *code).collect();
    assert_eq!(streamed.iter().filter(|&&c| c == 503).count(), 1, "{streamed:?}");
    assert!(streamed.iter().filter(|&&c| c == 200).count() >= 3, "every cache streamed: {streamed:?}");
    assert_eq!(h.sim.pages("/api/v1/"), 0, "no pages: {requests:?}");
}

/// A list that fails is logged with which it was (a streaming list or pages), when the
/// cache tries again, and the `Retry-After` that set that (a trial found only the status).
#[async_std::test]
async fn apiserver_a_failed_list_is_logged_with_which_and_when_it_is_asked_again() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    {
        let mut s = sim.state();
        s.streams_lists = true;
        s.fail_streams = 1;
        s.fail_streams_retry_after = Some(2);
    }
    let log = dir.join("stderr.log");
    let _child = Killed(spawn_logging(&mut server_command(&sim, &dir, free_port()), &log));
    let logged = wait_logged(&log, "cache: streaming list: ", Duration::from_secs(20)).await;
    let line = logged.lines().find(|l| l.contains("cache: streaming list: ")).unwrap_or_default();
    for want in ["HTTP 503", "; again in 2.", "s (Retry-After: 2s)"] {
        assert!(line.contains(want), "{want:?} in {line}");
    }
}

/// An API server that sheds load on watches (429), or that fails (500: `kubectl proxy`'s
/// answer to a connection refused), is watched again, never listed again: a list of
/// everything by every cache of every replica is what it can least afford (trials saw each
/// restart of the API server have all four caches of every shard list again, directly and
/// through `kubectl proxy`).
#[async_std::test]
async fn apiserver_watches_refused_for_load_are_asked_again_not_relisted() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape_until(&h, Duration::from_secs(10), |s| s.iter().any(|x| x.label("node").is_some())).await;
    let (pods, nodes) = (h.sim.lists("/api/v1/pods"), h.sim.lists("/api/v1/nodes"));
    {
        let mut s = h.sim.state();
        s.faults.insert(Route::Pods, Fault::Status(429));
        s.faults.insert(Route::Nodes, Fault::Status(500));
    }
    h.sim.drop_watches();
    let refused = |prefix: &str, code| {
        let requests = h.sim.state().requests.clone();
        requests.iter().filter(|(p, c)| p.starts_with(prefix) && p.contains("watch=1") && *c == code).count()
    };
    // Four refusals each (the backoff's waits: 0.1-0.2, 0.2-0.4, 0.4-0.8 s...), one past
    // the three that had the cache list again.
    let started = Instant::now();
    while refused("/api/v1/pods?", 429) < 4 || refused("/api/v1/nodes?", 500) < 4 {
        assert!(started.elapsed() < Duration::from_secs(20), "not asked again");
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.sim.lists("/api/v1/pods"), pods, "pods: watched again, never listed");
    assert_eq!(h.sim.lists("/api/v1/nodes"), nodes, "nodes: watched again, never listed");
}

/// A role that may list but not watch: each third refused watch has the cache list again,
/// which keeps it current, so `watch_errors_total{reason="status"}` is what shows it (and
/// `MetricsServerPromWatchErrors` fires on it).
#[async_std::test]
async fn apiserver_a_watch_refused_when_the_list_is_not_is_counted() {
    // From the start, where the server streams lists (which are watches): the cache lists
    // in pages instead, and syncs.
    let h = start_sim(
        SimCluster::demo(),
        |s| {
            s.streams_lists = true;
            s.faults.insert(Route::Nodes, Fault::WatchStatus(403));
        },
        |_| {},
    )
    .await;
    scrape_until(&h, Duration::from_secs(15), |s| {
        s.iter().any(|x| {
            x.name == "kube_metrics_server_node_cpu_usage_cores"
                && x.label("label_topology_kubernetes_io_zone").is_some()
        })
    })
    .await;
    assert!(h.sim.pages("/api/v1/nodes") >= 1, "listed in pages");
    let lists = h.sim.lists("/api/v1/nodes?");
    let refused = |s: &[Sample], resource| {
        find(s, "kube_metrics_server_watch_errors_total", &[("resource", resource), ("reason", "status")]).value
    };
    // Counted, and listed again after three.
    let s = scrape_until(&h, Duration::from_secs(15), |s| {
        refused(s, "nodes") >= 3.0 && h.sim.lists("/api/v1/nodes?") > lists
    })
    .await;
    let refused_nodes = refused(&s, "nodes");
    let s = parse(&scrape(&h).await);
    assert_eq!(refused(&s, "pods"), 0.0, "{refused_nodes} for nodes, none for pods");
}

/// A watch answered 410 as soon as it is asked for has the cache list again, with its
/// backoff between: not as fast as the server answers (an adversarial trial saw 20 lists
/// and watches a second per cache).
#[async_std::test]
async fn apiserver_watches_that_expire_at_once_relist_with_backoff() {
    let h = start_sim(SimCluster::demo(), |s| s.expire_watches = true, |_| {}).await;
    scrape(&h).await;
    let lists = || h.sim.lists("/api/v1/pods");
    wait_until("the pods listed again after their watch expired", Duration::from_secs(10), || lists() >= 2).await;
    let before = lists();
    async_std::task::sleep(Duration::from_secs(3)).await;
    let more = lists() - before;
    eprintln!("{more} pod lists in 3 s more of watches expiring at once");
    // Without the backoff, hundreds (a list, a watch answered 410, a list...).
    assert!(more <= 8, "{more} lists");
}

/// A streaming list refused for its token (401) is not asked again in pages, which would be
/// refused alike: each retry had sent, and logged, the refusal twice. (A 403 is: see
/// above.)
#[async_std::test]
async fn apiserver_a_streaming_list_unauthorized_is_not_asked_again_in_pages() {
    let h = start_sim(
        SimCluster::demo(),
        |s| {
            s.streams_lists = true;
            s.faults.insert(Route::Nodes, Fault::Status(401));
        },
        |_| {},
    )
    .await;
    scrape(&h).await;
    // Long enough for a few retries, at the backoff's 0.1-0.4 s.
    async_std::task::sleep(Duration::from_secs(2)).await;
    let requests = h.sim.state().requests.clone();
    let nodes: Vec<_> = requests.iter().filter(|(p, _)| p.starts_with("/api/v1/nodes")).collect();
    assert!(nodes.len() >= 2, "retried: {nodes:?}");
    assert!(nodes.iter().all(|(p, code)| streaming(p) && *code == 401), "never in pages: {nodes:?}");
}

/// `kubernetes.streaming_lists = false`: pages only, whatever the server has.
#[async_std::test]
async fn apiserver_streaming_lists_off_lists_in_pages_only() {
    let h =
        start_sim(SimCluster::synthetic(1200), |s| s.streams_lists = true, |c| c.kubernetes.streaming_lists = false)
            .await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 1200)).await;
    assert!(h.sim.pages("/api/v1/pods") >= 3);
    assert!(!h.sim.state().requests.iter().any(|(p, _)| streaming(p)));
}

/// A server that ignores `sendInitialEvents` (a watch with bookmarks and no objects, as
/// the independent stand-in API server sends): the cache lists in pages, and syncs.
#[async_std::test]
async fn apiserver_a_server_that_ignores_streaming_lists_is_listed_in_pages() {
    let h = start_sim(SimCluster::synthetic(1200), |s| s.ignore_send_initial_events = true, |_| {}).await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 1200)).await;
    assert!(h.sim.pages("/api/v1/pods") >= 3, "listed in pages");
    let requests = h.sim.state().requests.clone();
    assert!(requests.iter().any(|(p, _)| streaming(p)), "asked for one first");
    for cache in ["/api/v1/pods?", "/api/v1/nodes?", "/apis/apps/v1/replicasets?"] {
        let streamed = requests.iter().filter(|(p, _)| p.starts_with(cache) && streaming(p)).count();
        assert!(streamed <= 1, "{cache}: tried once at most, not again: {requests:?}");
    }
}

/// A streaming list that fails for the server's trouble (here a 503 without `Retry-After`, as
/// a load balancer answers) is waited out and asked again as a streaming list, never read in
/// pages instead, which would double the requests that fail (a trial counted two a retry
/// through `kubectl proxy`); it stays on, for every cache.
#[async_std::test]
async fn apiserver_a_streaming_list_that_fails_for_the_servers_trouble_is_asked_again_not_paged() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.streams_lists = true;
            // Every cache's first streaming list fails.
            s.fail_streams = 4;
        },
        |_| {},
    )
    .await;
    scrape_until(&h, Duration::from_secs(20), |s| all_enriched(s, 1200)).await;
    let pods: Vec<(String, u16)> =
        h.sim.state().requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods?")).cloned().collect();
    assert_eq!(pods.first().map(|(p, code)| (streaming(p), *code)), Some((true, 503)), "{pods:?}");
    assert!(pods.iter().any(|(p, code)| streaming(p) && *code == 200), "streamed again: {pods:?}");
    assert_eq!(h.sim.pages("/api/v1/"), 0, "no pages: {pods:?}");
}

/// A request that never reaches the API server (here a TLS handshake with a certificate the
/// CA does not sign) fails the pages alike: the streaming list is asked again after the
/// backoff, never followed by pages, so each retry is one request and one log line (the
/// operator's trial saw two WARN lines a retry).
#[async_std::test]
async fn apiserver_a_streaming_list_that_never_reached_the_server_is_asked_again_not_paged() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let other = temp_dir("another-ca");
    std::fs::write(other.join("ca.crt"), msp_sim::TestPki::generate().expect("pki").ca_pem).expect("ca");
    let port = free_port();
    let log = dir.join("stderr.log");
    let mut cmd = server_command(&sim, &dir, port);
    cmd.env("MSP_KUBERNETES__CA_FILE", other.join("ca.crt"));
    let _child = Killed(spawn_logging(&mut cmd, &log));
    let tried = "WARN  msp_server::cache: pods cache: streaming list: GET /api/v1/pods: TLS handshake with ";
    let started = Instant::now();
    let logged = loop {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        if logged.matches(tried).count() >= 3 {
            break logged;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "three retries:\n{logged}");
        async_std::task::sleep(Duration::from_millis(50)).await;
    };
    let pods: Vec<&str> = logged.lines().filter(|l| l.contains("pods cache: ")).collect();
    assert!(
        pods.iter().all(|l| l.contains(tried) && l.contains("invalid peer certificate") && l.contains("; again in ")),
        "{pods:#?}"
    );
    assert!(!logged.contains("listing in pages"), "{logged}");
}

/// A watch cache behind the resourceVersion watched from (after an etcd restore) sends an
/// `ERROR` event of code 504, `ResourceVersionTooLarge`, to every watch from it: the cache
/// lists afresh (after its backoff, or the event's `retryAfterSeconds`), as client-go does,
/// not after three watches failing alike.
#[async_std::test]
async fn apiserver_a_watch_from_a_resource_version_too_large_relists_without_watching_again() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    let watching = |s: &msp_sim::SimState| {
        s.arrived.iter().any(|p| p.starts_with("/api/v1/nodes?") && p.contains("&resourceVersion="))
    };
    let started = Instant::now();
    while !watching(&h.sim.state()) {
        assert!(started.elapsed() < Duration::from_secs(20), "the nodes cache watches");
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    let (from, sent) = {
        let mut s = h.sim.state();
        s.watch_too_large_resource_version(Route::Nodes);
        (s.arrived.len(), Instant::now())
    };
    let relist =
        |p: &String| p.starts_with("/api/v1/nodes?") && (!p.contains("watch=") || p.contains("sendInitialEvents"));
    let relisted = loop {
        let arrived = h.sim.state().arrived[from..].to_vec();
        if let Some(at) = arrived.iter().position(relist) {
            break arrived[..at].to_vec();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "re-listed: {arrived:?}");
        async_std::task::sleep(Duration::from_millis(20)).await;
    };
    assert!(!relisted.iter().any(|p| p.starts_with("/api/v1/nodes?")), "no watch tried before the list: {relisted:?}");
    assert!(sent.elapsed() >= Duration::from_secs(1), "not before the event's retryAfterSeconds, 1");
}

/// The pods' page requests: how many first pages, how many answered 503, and all of them.
fn pod_pages(h: &Harness) -> (usize, usize, Vec<(String, u16)>) {
    let requests = h.sim.state().requests.clone();
    let pages: Vec<(String, u16)> =
        requests.into_iter().filter(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("limit=")).collect();
    let first = pages.iter().filter(|(p, _)| !p.contains("continue=")).count();
    let failed = pages.iter().filter(|(_, code)| *code == 503).count();
    (first, failed, pages)
}

/// A page after the first that fails for the server's trouble (503, as API Priority and
/// Fairness or a proxy sheds load) is asked for again from the same `continue` token: the
/// list goes on where it was, and the first page is read once.
#[async_std::test]
async fn apiserver_a_page_that_fails_partway_is_asked_again_not_the_whole_list() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.faults.insert(Route::Pods, Fault::ContinuedPages { status: 503, times: 2 });
        },
        |c| {
            c.enrichers = vec!["node".into()];
            c.kubernetes.list_page_size = 500;
        },
    )
    .await;
    scrape_until(&h, Duration::from_secs(20), |s| with_node(s) == 1200).await;
    let (first, failed, pods) = pod_pages(&h);
    assert_eq!((first, failed), (1, 2), "one first page, two failed pages asked again: {pods:?}");
}

/// A page that keeps failing is asked for again 4 times, then the list starts over.
#[async_std::test]
async fn apiserver_a_page_that_keeps_failing_starts_the_list_over() {
    let h = start_sim(
        SimCluster::synthetic(1200),
        |s| {
            s.faults.insert(Route::Pods, Fault::ContinuedPages { status: 503, times: 5 });
        },
        |c| c.enrichers = vec!["node".into()],
    )
    .await;
    scrape_until(&h, Duration::from_secs(30), |s| with_node(s) == 1200).await;
    let (first, failed, pods) = pod_pages(&h);
    assert_eq!((first, failed), (2, 5), "five failures of one page, then a list from the start: {pods:?}");
}

/// The simulator refuses, as a real API server's option validation does (422), the
/// parameters that must go together and do not: so a client that dropped one would fail
/// these tests, as it would fail a real cluster. Every other test has our caches send them.
#[async_std::test]
async fn apiserver_the_simulator_refuses_what_a_real_server_refuses() {
    let (_sim, raw, _dir) = sim_and_config(SimCluster::demo()).await;
    let config = raw.check(&msp_server::Registry::builtin()).expect("config");
    let client = msp_server::KubeClient::from_config(&config).expect("client");
    let refused = [
        ("/api/v1/pods?limit=5&continue=sim-5-1000&resourceVersion=1000", 400),
        ("/api/v1/pods?sendInitialEvents=true", 422),
        ("/api/v1/pods?watch=1&sendInitialEvents=true&allowWatchBookmarks=true", 422),
        ("/api/v1/pods?watch=1&resourceVersionMatch=NotOlderThan&resourceVersion=1000", 422),
    ];
    for (path, code) in refused {
        let e = client.get("pods", path).await.expect_err(path);
        assert_eq!(e.status(), Some(code), "{path}: {e}");
    }
    assert!(client.get("pods", "/api/v1/pods?limit=5&continue=sim-5-1000&resourceVersion=0").await.is_ok());
    assert!(client.get("pods", "/api/v1/pods?limit=5").await.is_ok());
}

#[async_std::test]
async fn apiserver_an_empty_metadata_only_list_says_null_and_still_syncs() {
    // Pods owned by Jobs that are gone (the Job deleted, its pods not yet): the Job cache
    // starts, and the API server answers its metadata-only list with `"items": null`, as the
    // simulator does. That once failed every time: the cache never synced, /readyz stayed
    // 503 and every pod lost its owner labels.
    let mut cluster = SimCluster::demo();
    assert!(!cluster.jobs.is_empty());
    cluster.jobs.clear();
    let h = start(cluster, |_| {}).await;
    let s = scrape_until(&h, Duration::from_secs(20), |s| {
        s.iter().any(|x| {
            x.name == "kube_metrics_server_pod_cpu_usage_cores" && x.label("workload_kind") == Some("Deployment")
        })
    })
    .await;
    // Ready (every cache synced, the Jobs' too), and then watching: on busy cores the Job
    // cache may come after the scrape above, which needs only the ReplicaSets'.
    let ready = wait_ready(&h.url).await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok\n"));
    let watched = Instant::now();
    // A watch from the list's resourceVersion (not the streaming list the simulator refuses).
    while !h.sim.state().arrived.iter().any(|p| p.starts_with("/apis/batch/v1/jobs") && p.contains("resourceVersion="))
    {
        assert!(watched.elapsed() < Duration::from_secs(20), "listed, so watching");
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    let requests = h.sim.state().requests.clone();
    let jobs: Vec<&(String, u16)> = requests.iter().filter(|(p, _)| p.starts_with("/apis/batch/v1/jobs")).collect();
    assert!(jobs.iter().any(|(p, code)| !p.contains("watch=") && *code == 200), "{jobs:?}");
    let errors: f64 = s.iter().filter(|x| x.name == "kube_metrics_server_enricher_errors_total").map(|x| x.value).sum();
    assert_eq!(errors, 0.0, "the owner enricher never failed");
}

#[async_std::test]
async fn apiserver_a_path_in_the_server_url_is_kept() {
    // An API server behind a proxy (Rancher's `/k8s/clusters/ID`): every request goes under
    // the path, the metrics reads and the caches' lists and watches alike.
    let h = start_under(SimCluster::demo(), "/k8s/clusters/c-1").await;
    assert!(h.sim.url.ends_with("/k8s/clusters/c-1"), "{}", h.sim.url);
    let s = scrape_until(&h, Duration::from_secs(20), |s| {
        s.iter().any(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores" && x.label("workload_name").is_some())
    })
    .await;
    assert_eq!(up(&s, "pods"), 1.0);
    assert_eq!(up(&s, "nodes"), 1.0);
    let requests = h.sim.state().requests.clone();
    assert!(requests.iter().any(|(p, code)| p.starts_with("/api/v1/pods") && *code == 200), "{requests:?}");
}

/// The watch requests on `route` so far.
fn watches(h: &Harness, prefix: &str) -> usize {
    h.sim
        .state()
        .requests
        .iter()
        .filter(|(p, _)| p.starts_with(prefix) && p.contains("watch=1") && !streaming(p))
        .count()
}

#[async_std::test]
async fn apiserver_watches_cut_off_at_once_are_retried_with_backoff() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    h.sim.state().faults.insert(Route::Nodes, Fault::WatchBody(Arc::new(Vec::new())));
    h.sim.drop_watches();
    let before = watches(&h, "/api/v1/nodes?");
    async_std::task::sleep(Duration::from_secs(4)).await;
    let during = watches(&h, "/api/v1/nodes?") - before;
    // Backing off from 0.2 s, doubling: about five in 4 s. Without a pause, thousands.
    assert!((2..=10).contains(&during), "{during} node watches in 4 s");
    // The cache still serves what it listed.
    let s = parse(&scrape(&h).await);
    assert!(s.iter().any(|x| x.name == "kube_metrics_server_node_cpu_usage_cores"
        && x.label("label_topology_kubernetes_io_zone").is_some()));
}

/// `kube_metrics_server_cache_last_sync_timestamp_seconds` for `resource`, if exported.
fn last_sync(s: &[Sample], resource: &str) -> Option<f64> {
    s.iter()
        .find(|x| {
            x.name == "kube_metrics_server_cache_last_sync_timestamp_seconds" && x.label("resource") == Some(resource)
        })
        .map(|x| x.value)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

#[async_std::test]
async fn apiserver_a_cache_that_can_no_longer_list_or_watch_shows_in_its_last_sync() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let s = parse(&scrape(&h).await);
    let (listed, now) = (last_sync(&s, "nodes").expect("the nodes cache is in use"), unix_now());
    // Every reason from 0, so that increase() sees the first error too.
    for reason in ["undecodable", "error_event", "unknown_type", "invalid_object", "line_too_long", "read", "status"] {
        let zero = find(&s, "kube_metrics_server_watch_errors_total", &[("resource", "nodes"), ("reason", reason)]);
        assert_eq!(zero.value, 0.0, "{reason}");
    }
    assert!(listed > now - 60.0 && listed <= now, "listed at {listed}, now {now}");
    // An RBAC change: the nodes cache can neither watch nor list any more, and keeps
    // serving what it holds. The pods cache watches again at once.
    h.sim.state().faults.insert(Route::Nodes, Fault::Status(403));
    h.sim.drop_watches();
    // Only once the nodes cache has been refused: a bookmark of its old watch may still
    // come after the drop (the simulator sends one every 500 ms).
    let refused =
        |h: &Harness| h.sim.state().requests.iter().any(|(p, c)| p.starts_with("/api/v1/nodes?") && *c == 403);
    let started = Instant::now();
    while !refused(&h) {
        assert!(started.elapsed() < Duration::from_secs(10), "the nodes cache asked nothing after the drop");
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    let cut = unix_now();
    let s = scrape_until(&h, Duration::from_secs(8), |s| last_sync(s, "pods").is_some_and(|t| t > cut)).await;
    async_std::task::sleep(Duration::from_secs(2)).await;
    let s2 = parse(&scrape(&h).await);
    for s in [&s, &s2] {
        let nodes = last_sync(s, "nodes").expect("still exported");
        assert!(nodes <= cut, "the nodes cache said current at {nodes}, after the 403s began at {cut}");
    }
    assert!(h.sim.count("/api/v1/nodes?") > 1, "the nodes cache kept trying");
    assert!(s2.iter().any(|x| x.name == "kube_metrics_server_node_cpu_usage_cores"
        && x.label("label_topology_kubernetes_io_zone").is_some()));
    // Allowed again: it lists, and says so.
    h.sim.state().faults.clear();
    scrape_until(&h, Duration::from_secs(35), |s| last_sync(s, "nodes").is_some_and(|t| t > cut)).await;
}

#[async_std::test]
async fn apiserver_a_watch_that_fails_on_the_same_event_relists() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    // Every watch fails on the same event (an `ERROR` event, as it would on one too long):
    // re-watching from the same resourceVersion would meet it for ever.
    let error = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}}"#;
    h.sim.state().faults.insert(Route::Nodes, Fault::WatchBody(Arc::new([&error[..], b"\n"].concat())));
    let lists = h.sim.lists("/api/v1/nodes?");
    h.sim.drop_watches();
    let started = Instant::now();
    while h.sim.lists("/api/v1/nodes?") == lists {
        assert!(started.elapsed() < Duration::from_secs(15), "no re-list after failed watches");
        async_std::task::sleep(Duration::from_millis(100)).await;
    }
    assert!(watches(&h, "/api/v1/nodes?") >= 3);
    let s = parse(&scrape(&h).await);
    let errors: f64 = s
        .iter()
        .filter(|x| x.name == "kube_metrics_server_watch_errors_total" && x.label("resource") == Some("nodes"))
        .map(|x| x.value)
        .sum();
    assert!(errors >= 3.0, "each failed watch is counted: {errors}");
}

/// A watch line that is not UTF-8 (which no API server sends) is skipped and counted, as
/// one that is not JSON is: it ends no watch, and has the cache list nothing again.
#[async_std::test]
async fn apiserver_a_watch_line_that_is_not_utf8_is_skipped() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    let line = b"{\"type\":\"ADDED\",\"x\":\"\xff\xfe\"}\n".to_vec();
    h.sim.state().faults.insert(Route::Nodes, Fault::WatchBody(Arc::new(line)));
    let lists = h.sim.lists("/api/v1/nodes?");
    h.sim.drop_watches();
    let skipped = |s: &[Sample]| {
        let counted = |x: &&Sample| {
            x.name == "kube_metrics_server_watch_errors_total"
                && x.label("resource") == Some("nodes")
                && x.label("reason") == Some("undecodable")
        };
        s.iter().find(counted).map(|x| x.value)
    };
    // Lines skipped and counted.
    let s = scrape_until(&h, Duration::from_secs(15), |s| skipped(s).is_some_and(|n| n >= 3.0)).await;
    let skipped = skipped(&s).unwrap_or_default();
    assert!(watches(&h, "/api/v1/nodes?") >= 3, "{skipped} skipped");
    assert_eq!(h.sim.lists("/api/v1/nodes?"), lists, "no re-list");
}

#[async_std::test]
async fn apiserver_expired_continue_token_restarts_the_list() {
    let h = start(SimCluster::synthetic(1200), |c| c.enrichers = vec!["node".into()]).await;
    h.sim.state().expire_continue = 1;
    scrape_until(&h, Duration::from_secs(20), |s| with_node(s) == 1200).await;
    let requests = h.sim.state().requests.clone();
    let pages: Vec<&(String, u16)> =
        requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods?") && !p.contains("watch=")).collect();
    eprintln!("pod list requests: {pages:?}");
    // 1200 pods at 500 a page: page 1, page 2 (410), then pages 1, 2, 3 again.
    let statuses: Vec<u16> = pages.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [200, 410, 200, 200, 200], "{pages:?}");
    assert!(!pages[2].0.contains("continue="), "the list starts over: {pages:?}");
}

#[async_std::test]
async fn apiserver_continue_tokens_that_always_expire_end_in_one_whole_list() {
    let h = start(SimCluster::synthetic(1200), |c| c.enrichers = vec!["node".into()]).await;
    h.sim.state().expire_continue = 1000;
    scrape_until(&h, Duration::from_secs(20), |s| with_node(s) == 1200).await;
    let requests = h.sim.state().requests.clone();
    let lists: Vec<&(String, u16)> = requests
        .iter()
        .filter(|(p, _)| (p == "/api/v1/pods" || p.starts_with("/api/v1/pods?")) && !p.contains("watch="))
        .collect();
    eprintln!("pod list requests: {lists:?}");
    // The first page and its expired next, four times (the first try and three restarts),
    // then everything in one answer, without a limit.
    let statuses: Vec<u16> = lists.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [200, 410, 200, 410, 200, 410, 200, 410, 200], "{lists:?}");
    assert_eq!(lists[8].0, "/api/v1/pods", "{lists:?}");
}

#[async_std::test]
async fn apiserver_a_list_that_never_ends_is_cut_off_and_tried_again() {
    // From the first list on, every page gives back the continue token it was sent.
    let h =
        start_sim(SimCluster::synthetic(1200), |s| s.loop_continue = true, |c| c.enrichers = vec!["node".into()]).await;
    let s = parse(&scrape(&h).await);
    assert_eq!(with_node(&s), 0, "the pods cache never synced");
    assert_eq!(up(&s, "pods"), 1.0, "usage is still served");
    let failed = find(&s, "kube_metrics_server_enricher_errors_total", &[("enricher", "node")]);
    assert!(failed.value >= 1.0, "reported in /metrics");
    async_std::task::sleep(Duration::from_secs(1)).await;
    // Each list stops at the page that came back as sent, and is retried with backoff: a
    // few requests, not thousands.
    let pages = |h: &Harness| {
        h.sim.state().requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods?") && p.contains("continue=")).count()
    };
    let cut = pages(&h);
    assert!((1..=10).contains(&cut), "{cut} continue requests in over a second");
    h.sim.state().loop_continue = false;
    scrape_until(&h, Duration::from_secs(20), |s| with_node(s) == 1200).await;
}

/// An HA pair's second Prometheus, scraping within `reuse_lists_for` of the first, costs the
/// API server nothing; a read that failed is not reused.
#[async_std::test]
async fn apiserver_a_scrape_within_reuse_lists_for_of_the_last_read_reads_nothing() {
    let h = start(SimCluster::demo(), |c| c.reuse_lists_for = "1m".into()).await;
    let reads =
        |h: &Harness| (h.sim.count("/apis/metrics.k8s.io/v1/pods"), h.sim.count("/apis/metrics.k8s.io/v1/nodes"));
    let reused = |s: &[Sample]| find(s, "kube_metrics_server_lists_reused_total", &[]).value;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Status(500));
    let failed = parse(&scrape(&h).await);
    assert_eq!((up(&failed, "pods"), up(&failed, "nodes")), (0.0, 1.0));
    h.sim.state().faults.remove(&Route::PodMetrics);

    let before = reads(&h);
    let first = parse(&scrape(&h).await);
    assert_eq!((up(&first, "pods"), reused(&first)), (1.0, 0.0), "the failed read was tried again");
    assert_eq!(reads(&h), (before.0 + 1, before.1 + 1));
    // The other Prometheus, with its own request: OpenMetrics, gzipped.
    let accept = [("Accept", "application/openmetrics-text;version=1.0.0"), ("Accept-Encoding", "gzip")];
    let got = get(&format!("{}/metrics", h.url), &accept).await;
    assert_eq!(got.status, 200);
    let second = parse(&got.body);
    assert_eq!(reads(&h), (before.0 + 1, before.1 + 1), "no read for the second scrape");
    assert_eq!(reused(&second), 1.0);
    let usage = |s: &[Sample]| {
        let mut u: Vec<String> = s
            .iter()
            .filter(|x| x.name.contains("_usage_"))
            .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
            .collect();
        u.sort();
        u
    };
    assert!(!usage(&first).is_empty());
    assert_eq!(usage(&first), usage(&second), "the same lists, enriched alike");
}

#[async_std::test]
async fn apiserver_429_with_retry_after_is_waited_out_in_the_same_scrape() {
    let cluster = SimCluster::demo();
    let pods = cluster.pods.iter().filter(|p| !p.containers.is_empty()).count();
    let h = start(cluster, |_| {}).await;
    scrape(&h).await;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::RetryAfter { status: 429, seconds: 1, times: 1 });
    let before = h.sim.count("/apis/metrics.k8s.io/v1/pods");
    let started = Instant::now();
    let s = parse(&scrape(&h).await);
    let took = started.elapsed();
    eprintln!("the scrape with one 429 (Retry-After: 1) took {took:?}");
    assert!(took >= Duration::from_secs(1), "retried after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!((up(&s, "pods"), up(&s, "nodes")), (1.0, 1.0));
    assert_eq!(s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").count(), pods);
    assert_eq!(counted(&s, "pod_metrics", "429"), 1.0);
    assert_eq!(h.sim.count("/apis/metrics.k8s.io/v1/pods") - before, 2, "one 429, one retry");
    // A 503 or a 504 with Retry-After is treated alike (the API server's watch cache answers
    // 504 when it has not caught up within 3 s), as client-go treats any 5xx.
    for code in [503, 504] {
        h.sim.state().faults.insert(Route::NodeMetrics, Fault::RetryAfter { status: code, seconds: 1, times: 2 });
        let s = parse(&scrape(&h).await);
        assert_eq!((up(&s, "pods"), up(&s, "nodes")), (1.0, 1.0), "{code}");
        assert_eq!(counted(&s, "node_metrics", &code.to_string()), 2.0);
    }
}

#[async_std::test]
async fn apiserver_retry_after_never_runs_past_the_scrape_deadline() {
    let h = start(SimCluster::demo(), |_| {}).await;
    scrape(&h).await;
    // Three seconds to wait, two to answer in: the scrape gives up, and nothing is sent after.
    h.sim.state().faults.insert(Route::PodMetrics, Fault::RetryAfter { status: 429, seconds: 3, times: 1 });
    let before = h.sim.count("/apis/metrics.k8s.io/v1/pods");
    let started = Instant::now();
    let got = get(&format!("{}/metrics", h.url), &[("X-Prometheus-Scrape-Timeout-Seconds", "2")]).await;
    let s = parse(&got.body);
    assert_eq!((up(&s, "pods"), up(&s, "nodes")), (0.0, 1.0));
    // Not the 3 s Retry-After waited out: the server gave up at its deadline (1.6 s), as its
    // own measure says (the wall clock, taken by a client that shares two cores with other
    // tests, only shows it did not hang).
    let read = find(&s, "kube_metrics_server_scrape_duration_seconds", &[]).value;
    assert!(read < 2.5, "read and transformed in {read} s");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    async_std::task::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.sim.count("/apis/metrics.k8s.io/v1/pods") - before, 1, "no retry after the scrape gave up");
    // A Retry-After longer than we wait (10 s) fails at once: well under those 10 s (a
    // scrape of the demo takes milliseconds, but this client shares two cores with the
    // other tests).
    h.sim.state().faults.insert(Route::PodMetrics, Fault::RetryAfter { status: 429, seconds: 60, times: 1 });
    let started = Instant::now();
    let s = parse(&scrape(&h).await);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(up(&s, "pods"), 0.0);
}

#[async_std::test]
async fn apiserver_caches_wait_out_429_on_lists() {
    let h = start(SimCluster::demo(), |_| {}).await;
    h.sim.state().faults.insert(Route::Pods, Fault::RetryAfter { status: 429, seconds: 5, times: 1 });
    scrape(&h).await;
    let pods = || {
        h.sim.state().requests.iter().filter(|(p, _)| p.starts_with("/api/v1/pods")).map(|r| r.1).collect::<Vec<_>>()
    };
    wait_until("the pods cache told to retry after 5 s", Duration::from_secs(10), || pods().contains(&429)).await;
    let told = pods().len();
    // Its backoff alone would have asked again within half a second.
    async_std::task::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods().len(), told, "asked again before Retry-After's 5 s: {:?}", pods());
    let s = scrape_until(&h, Duration::from_secs(10), |s| {
        s.iter().any(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores" && x.label("workload_name").is_some())
    })
    .await;
    assert_eq!(counted(&s, "pods", "429"), 1.0);
}

#[async_std::test]
async fn apiserver_every_request_carries_the_user_agent() {
    let h = start(SimCluster::demo(), |_| {}).await;
    for _ in 0..3 {
        scrape(&h).await;
    }
    h.sim.drop_watches();
    async_std::task::sleep(Duration::from_millis(500)).await;
    scrape(&h).await;
    let s = h.sim.state();
    assert_eq!(s.user_agents.len(), s.requests.len());
    let want = format!("metrics-server-prom/{} (", env!("CARGO_PKG_VERSION"));
    for ((path, _), agent) in s.requests.iter().zip(&s.user_agents) {
        assert!(agent.starts_with(&want) && agent.ends_with(')'), "{path}: User-Agent {agent:?}");
    }
    // `resourceVersion=`: a watch from a list (the streaming list has none).
    for kind in ["/apis/metrics.k8s.io/", "/api/v1/pods?limit", "resourceVersion="] {
        assert!(s.requests.iter().any(|(p, _)| p.contains(kind)), "no {kind} request to check");
    }
    eprintln!("User-Agent: {:?}", s.user_agents.first());
}

/// Our server (in process) reaching `sim` through a kubeconfig in `dir` (which holds its
/// CA as `ca.crt`) whose user has the token, with `cluster` and `user` lines added to those
/// entries.
async fn serve_kubeconfig(sim: msp_sim::Sim, dir: TempDir, cluster: &str, user: &str) -> Harness {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n    certificate-authority: ca.crt\n{cluster}contexts:\n- name: sim\n  context: {{cluster: sim, user: u}}\nusers:\n- name: u\n  user:\n    token: {TOKEN}\n{user}",
        url = sim.url,
    );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).expect("kubeconfig");
    let mut raw = msp_server::RawConfig { listen: "127.0.0.1:0".into(), ..Default::default() };
    raw.kubernetes.kubeconfig = Some(dir.join("kubeconfig"));
    serve_for((sim, raw, dir), |_| {}, "").await
}

/// A kubeconfig user that impersonates another (`as`, `as-uid`, `as-groups`): every request,
/// lists, watches and metrics alike, says whom it acts as.
#[async_std::test]
async fn apiserver_kubeconfig_impersonation_goes_with_every_request() {
    let (sim, _, dir) = sim_and_config(SimCluster::demo()).await;
    let impersonation = "    as: metrics-reader\n    as-uid: \"42\"\n    as-groups: [readers, auditors]\n";
    let h = serve_kubeconfig(sim, dir, "", impersonation).await;
    let s = parse(&get(&format!("{}/metrics", h.url), &[]).await.body);
    assert_eq!((up(&s, "pods"), up(&s, "nodes")), (1.0, 1.0));
    let state = h.sim.state();
    let mut want: Vec<(String, String)> = [
        ("impersonate-user", "metrics-reader"),
        ("impersonate-uid", "42"),
        ("impersonate-group", "readers"),
        ("impersonate-group", "auditors"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    want.sort();
    for kind in ["/apis/metrics.k8s.io/", "/api/v1/pods?limit", "resourceVersion="] {
        assert!(state.requests.iter().any(|(p, _)| p.contains(kind)), "no {kind} request to check");
    }
    for ((path, _), headers) in state.requests.iter().zip(&state.impersonation) {
        let mut headers = headers.clone();
        headers.sort();
        assert_eq!(headers, want, "{path}");
    }
}

/// An API server whose certificate names `kubernetes.default.svc` only, reached at
/// 127.0.0.1 (through a tunnel, say): a kubeconfig's `tls-server-name` is what its
/// certificate is checked against; without it the address is, and the handshake fails.
#[async_std::test]
async fn apiserver_kubeconfig_tls_server_name_is_the_name_the_certificate_is_checked_against() {
    for server_name in [Some("kubernetes.default.svc"), None, Some("other.example")] {
        let sim = msp_sim::Sim::start_named(SimCluster::demo(), TOKEN, &["kubernetes.default.svc"]).await.expect("sim");
        let dir = temp_dir("tls-server-name");
        std::fs::write(dir.join("ca.crt"), &sim.pki.ca_pem).expect("ca");
        let line = server_name.map(|n| format!("    tls-server-name: {n}\n")).unwrap_or_default();
        let h = serve_kubeconfig(sim, dir, &line, "").await;
        let s = parse(&get(&format!("{}/metrics", h.url), &[]).await.body);
        let want = if server_name == Some("kubernetes.default.svc") { 1.0 } else { 0.0 };
        assert_eq!((up(&s, "pods"), up(&s, "nodes")), (want, want), "tls-server-name {server_name:?}");
        assert_eq!(h.sim.count("/apis/metrics.k8s.io/") > 0, want == 1.0, "no request without a handshake");
    }
}

/// An exec plugin that hangs (one waiting for a login in a browser, say) runs in a process
/// group of its own, which a terminal's Ctrl-C does not reach: it is killed as the server
/// stops, not left running.
#[async_std::test]
async fn apiserver_a_hung_exec_plugin_is_killed_when_the_server_stops() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    // The plugin's `sleep`, told apart from every other process by this.
    let marker = format!("1003.{}", std::process::id());
    write_script(&dir.join("plugin.sh"), &format!("touch \"$PLUGIN_STARTED\"\nsleep {marker}"));
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n    certificate-authority: ca.crt\ncontexts:\n- name: sim\n  context: {{cluster: sim, user: exec-user}}\nusers:\n- name: exec-user\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin.sh\n      env:\n      - {{name: PLUGIN_STARTED, value: {dir}/started}}\n      interactiveMode: Never\n",
        url = sim.url,
        dir = dir.display()
    );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).expect("kubeconfig");
    let running = || {
        std::fs::read_dir("/proc").expect("/proc").flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
    };
    let port = free_port();
    let mut server = Killed(spawn_logging(
        server_command(&sim, &dir, port)
            .env_remove("MSP_KUBERNETES__API_URL")
            .env_remove("MSP_KUBERNETES__TOKEN_FILE")
            .env_remove("MSP_KUBERNETES__CA_FILE")
            .env("MSP_KUBERNETES__KUBECONFIG", dir.join("kubeconfig"))
            .env("PATH", std::env::var("PATH").unwrap_or_default()),
        &dir.join("stderr.log"),
    ));
    // The warm-up scrape runs the plugin, which hangs.
    let until = |what: &str, done: &mut dyn FnMut() -> bool| {
        let end = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < end, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    until("the plugin started", &mut || dir.join("started").exists() && running());

    let pid = rustix::process::Pid::from_raw(server.0.id() as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    until("the server stopped", &mut || server.0.try_wait().expect("wait").is_some());
    until("the plugin was killed with it", &mut || !running());
}

/// A kubeconfig whose user is an exec plugin (v1, with `args` and `env`), the real binary,
/// a token valid for 10 minutes, then revoked.
#[async_std::test]
async fn apiserver_exec_plugin_token_cached_rerun_after_revocation_never_logged() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    sim.state().token = "exec-secret-token-1".into();
    std::fs::write(dir.join("current-token"), "exec-secret-token-1").expect("token");
    write_script(
        &dir.join("plugin.sh"),
        r#"echo run >> "$PLUGIN_COUNTER"
[ "$1" = --token-file ] || { echo "bad args: $*" >&2; exit 2; }
printf '%s' "$KUBERNETES_EXEC_INFO" > "$(dirname "$PLUGIN_COUNTER")/exec-info.json"
expires=$(date -u -d '+10 minutes' +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$(cat "$2")" "$expires""#,
    );
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sim\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n    certificate-authority: ca.crt\ncontexts:\n- name: sim\n  context: {{cluster: sim, user: exec-user}}\nusers:\n- name: exec-user\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./plugin.sh\n      args: [--token-file, {dir}/current-token]\n      env:\n      - {{name: PLUGIN_COUNTER, value: {dir}/runs}}\n      interactiveMode: IfAvailable\n      provideClusterInfo: true\n",
        url = sim.url,
        dir = dir.display()
    );
    std::fs::write(dir.join("kubeconfig"), kubeconfig).expect("kubeconfig");
    let runs = || std::fs::read_to_string(dir.join("runs")).map(|r| r.lines().count()).unwrap_or(0);

    let port = free_port();
    let log = dir.join("stderr.log");
    let _child = Killed(spawn_logging(
        server_command(&sim, &dir, port)
            .env_remove("MSP_KUBERNETES__API_URL")
            .env_remove("MSP_KUBERNETES__TOKEN_FILE")
            .env_remove("MSP_KUBERNETES__CA_FILE")
            .env("MSP_KUBERNETES__KUBECONFIG", dir.join("kubeconfig"))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MSP_LOG_LEVEL", "trace"),
        &log,
    ));
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    for i in 0..5 {
        let s = parse(&get(&url, &[]).await.body);
        assert_eq!((up(&s, "pods"), up(&s, "nodes")), (1.0, 1.0), "scrape {i}");
    }
    let before = runs();
    eprintln!("5 scrapes ran the plugin {before} time(s)");
    assert!((1..=2).contains(&before), "{before} runs");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("exec-info.json")).expect("exec info")).expect("json");
    assert_eq!((&info["kind"], &info["spec"]["interactive"]), (&"ExecCredential".into(), &false.into()));
    assert_eq!(info["spec"]["cluster"]["server"], sim.url.as_str());
    assert!(info["spec"]["cluster"]["certificate-authority-data"].is_string());

    // Revoked: the API server takes only the token the plugin will print next.
    sim.state().token = "exec-secret-token-2".into();
    std::fs::write(dir.join("current-token"), "exec-secret-token-2").expect("token");
    let mut recovered = None;
    for i in 0..3 {
        let s = parse(&get(&url, &[]).await.body);
        if up(&s, "pods") == 1.0 && up(&s, "nodes") == 1.0 {
            recovered = Some(i);
            break;
        }
    }
    eprintln!("after the revocation, scrape {recovered:?} succeeded; the plugin ran {} time(s) in all", runs());
    assert!(recovered.is_some(), "no scrape succeeded after the revocation");
    assert!(runs() > before && runs() <= before + 2, "{} runs", runs());
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("401"), "the revocation was logged");
    for secret in ["exec-secret-token-1", "exec-secret-token-2"] {
        assert!(!logged.contains(secret), "the token {secret:?} appears in the log");
    }
}

/// Keep-alive: steady-state scrapes reuse the pooled connections to the API server.
#[async_std::test]
async fn apiserver_metrics_requests_reuse_connections() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let connections = |s: &[Sample]| find(s, "kube_metrics_server_api_connections_total", &[]).value;
    let before = connections(&parse(&scrape(&h).await));
    let requests = h.sim.count("/apis/metrics.k8s.io/");
    for _ in 0..10 {
        let s = parse(&scrape(&h).await);
        assert_eq!((up(&s, "pods"), up(&s, "nodes")), (1.0, 1.0));
    }
    let after = connections(&parse(&scrape(&h).await));
    let requests = h.sim.count("/apis/metrics.k8s.io/") - requests;
    eprintln!("10 scrapes (+1 to read the counter): {requests} metrics requests, {} new connections", after - before);
    assert!(after - before <= 2.0, "{} connections for {requests} requests", after - before);
}

/// `label_selector` is the API server's to apply: against the simulator, which filters pod
/// metrics by `labelSelector` as metrics-server does, only the selected pods are exported.
/// (One the API server cannot parse stops the exporter at startup: `config.rs` tests that.)
#[async_std::test]
async fn apiserver_label_selector_exports_only_the_selected_pods() {
    let h = start(SimCluster::demo(), |c| c.label_selector = Some("app in (frontend, cart),tier!=web".into())).await;
    let s = parse(&scrape(&h).await);
    let pods: BTreeSet<(&str, &str)> =
        s.iter().filter_map(|x| Some((x.label("namespace")?, x.label("pod")?))).collect();
    let want = BTreeSet::from([
        ("shop", "cart-6f7b8c9d4-h2j4k"),
        ("shop", "cart-6f7b8c9d4-n5b6v"),
        ("shop-staging", "frontend-7c9d8f6b5-8xk2d"),
    ]);
    assert_eq!(pods, want, "every series with a pod label is a selected pod's");
    let cpu = s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").count();
    assert_eq!((cpu, up(&s, "pods")), (want.len(), 1.0));
    let requests = h.sim.state().requests.clone();
    let sent = "labelSelector=app+in+%28frontend%2C+cart%29%2Ctier%21%3Dweb";
    assert!(requests.iter().any(|(p, code)| p.contains(sent) && *code == 200), "as written: {requests:?}");
}

/// A server whose `Shutdown` is requested (the harness requests it when dropped) lets go of
/// its exporter once it has stopped, and the exporter of its caches: no watch is left open.
#[async_std::test]
async fn apiserver_a_server_shut_down_leaves_no_watch_open() {
    let h = start(SimCluster::demo(), |_| {}).await;
    assert!(scrape(&h).await.contains("workload_name=\"frontend\""), "enriched");
    let sim = h.sim.clone();
    let open = || sim.state().open_watches;
    wait_until("pods, nodes, ReplicaSets and Jobs watched", Duration::from_secs(10), || open() == 4).await;
    drop(h);
    wait_until("every watch closed", Duration::from_secs(10), || open() == 0).await;
}
