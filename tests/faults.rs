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

/// Go writes `&`, `<` and `>` as `\u0026`, `\u003c` and `\u003e`: a metrics list with them
/// is read by serde, and its text unescaped is the list's own, not the body's (labels are
/// copied; a name makes the scrape keep the lists). Every pod is still exported, with that
/// text.
#[async_std::test]
async fn faults_escaped_strings_in_the_metrics_list_cost_nothing() {
    fn containers<'s>(s: &'s [Sample], pod: &str) -> Vec<&'s Sample> {
        s.iter()
            .filter(|x| x.name == "kube_metrics_server_container_cpu_usage_cores" && x.label("pod") == Some(pod))
            .collect()
    }
    for rename in [false, true] {
        let mut cluster = SimCluster::demo();
        cluster.pods[0].labels.push(("team".into(), "r&d".into()));
        if rename {
            cluster.pods[1].containers[0].name = "side<car>".into();
        }
        let (labelled, other) = (cluster.pods[0].name.clone(), cluster.pods[1].name.clone());
        let total = cluster.pods.len();
        let h = start(cluster, |_| {}).await;
        let s = parse(&scrape(&h).await);
        let pods = s.iter().filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").count();
        assert_eq!(pods, total);
        assert_eq!(find(&s, "kube_metrics_server_parse_errors_total", &[]).value, 0.0);
        assert_eq!(up(&s, "pods"), 1.0);
        let (labelled, other) = (containers(&s, &labelled), containers(&s, &other));
        assert!(!labelled.is_empty() && labelled.iter().all(|x| x.label("label_team") == Some("r&d")), "{labelled:?}");
        assert_eq!(other.iter().any(|x| x.label("container") == Some("side<car>")), rename, "{other:?}");
    }
}

#[async_std::test]
async fn faults_prometheus_scrape_timeout_header_is_honoured() {
    let h = start(SimCluster::demo(), |c| c.kubernetes.timeout = "30s".into()).await;
    scrape(&h).await;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Hang);
    let started = Instant::now();
    let got = get(&format!("{}/metrics", h.url), &[("X-Prometheus-Scrape-Timeout-Seconds", "2")]).await;
    let took = started.elapsed();
    // The server gives up on the read by its deadline (1.6 s); the wall clock, taken by a
    // client that shares two cores with other tests, only shows it did not wait the 30 s.
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let s = parse(&got.body);
    assert_eq!((up(&s, "pods"), up(&s, "nodes")), (0.0, 1.0));
    let read = find(&s, "kube_metrics_server_scrape_duration_seconds", &[]).value;
    assert!(read < 2.5, "read and transformed in {read} s");
}

#[async_std::test]
async fn faults_response_larger_than_the_bound_is_refused() {
    let h = start(SimCluster::synthetic(200), |c| c.kubernetes.max_response_bytes = 16 * 1024).await;
    let s = parse(&scrape(&h).await);
    assert_eq!(up(&s, "pods"), 0.0, "the pod metrics list is larger than 16 KiB");
    assert_eq!(up(&s, "nodes"), 1.0);
    assert_eq!(
        find(&s, "kube_metrics_server_api_requests_total", &[("resource", "pod_metrics"), ("code", "too_large")]).value,
        1.0
    );
}

/// The log says which build starts, and when a failing metrics API read works again (an
/// outage's last line is otherwise its last error), and when a failing watch opens again; a
/// retry after a 429 names its resource.
#[async_std::test]
async fn faults_the_log_names_the_build_and_the_end_of_an_outage() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let (port, log, _child) = spawn_server(&sim, &dir).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    sim.state().faults.insert(Route::PodMetrics, Fault::Status(503));
    for _ in 0..2 {
        assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 0"));
    }
    sim.state().faults.clear();
    assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    sim.state().faults.insert(Route::PodMetrics, Fault::RetryAfter { status: 429, seconds: 1, times: 1 });
    assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    // Watches refused for a while, then open again: the log says so.
    sim.state().faults.insert(Route::Nodes, Fault::WatchStatus(503));
    sim.drop_watches();
    let refused = || {
        sim.state()
            .requests
            .iter()
            .any(|(p, code)| p.starts_with("/api/v1/nodes?") && p.contains("watch=") && *code == 503)
    };
    wait_until("a nodes watch refused", Duration::from_secs(15), refused).await;
    sim.state().faults.clear();
    let logged = wait_logged(&log, "nodes watch: open again, after ", Duration::from_secs(15)).await;
    let retry = logged.lines().find(|l| l.contains("429") && l.contains("as Retry-After asks"));
    assert!(retry.is_some_and(|l| l.ends_with("resource=pod_metrics")), "{logged}");
    let first = logged.lines().next().unwrap_or_default();
    assert!(
        first.contains(&format!("metrics-server-prom {} (revision ", env!("CARGO_PKG_VERSION"))),
        "the first line names the build: {logged}"
    );
    assert!(
        logged.contains("pod metrics: read again, after 2 failed read(s) resource=pod_metrics failed=2"),
        "{logged}"
    );
    assert!(logged.lines().any(|l| l.contains("ERROR") && l.ends_with("resource=pod_metrics")), "{logged}");
    assert!(!logged.contains("node metrics: read again"), "{logged}");
}

/// Started while the API server answers nothing but 503: not Ready (the caches cannot list,
/// as a controller waits for its informers), then, once it is back, Ready; and the owner's
/// ReplicaSets, which its warm-up could only ask for after the pods were listed, are listed
/// by that warm-up made again in the background, before any scrape.
#[async_std::test]
async fn faults_started_while_the_api_server_is_down_ready_once_it_is_back_with_the_caches_filled() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let routes = [Route::PodMetrics, Route::NodeMetrics, Route::Pods, Route::Nodes, Route::ReplicaSets, Route::Jobs];
    for route in routes {
        sim.state().faults.insert(route, Fault::Status(503));
    }
    let (port, log, _child) = spawn_server(&sim, &dir).await;
    let base = format!("http://127.0.0.1:{port}");
    // Not "done": every enricher's warm-up failed.
    let logged = wait_logged(&log, "to warm up again, every second", Duration::from_secs(20)).await;
    assert!(logged.contains("node, labels, owner to warm up again"), "{logged}");
    assert!(!logged.contains("warm-up done"), "{logged}");
    let ready = get(&format!("{base}/readyz"), &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("pods") && ready.body.contains("nodes"), "{}", ready.body);
    // And why: the on-call engineer reads it there too.
    assert!(ready.body.contains("pods (last failure: ") && ready.body.contains("HTTP 503"), "{}", ready.body);
    sim.state().faults.clear();
    let ready = wait_ready(&base).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    // No scrape has run an enricher: the owner's ReplicaSets are listed by its warm-up,
    // made again once the pods could be listed, and Ready waited for them (the pods listed
    // between two of its tries once made it Ready with the ReplicaSets not yet asked for).
    let listed = |prefix: &str| sim.state().requests.iter().any(|(p, code)| p.starts_with(prefix) && *code == 200);
    assert!(listed("/apis/apps/v1/replicasets?"), "Ready before the ReplicaSets were listed");
    wait_logged(&log, "warm-up: enricher owner: warmed up", Duration::from_secs(20)).await;
    let s = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    for resource in ["pods", "nodes", "replicasets"] {
        let cached = find(&s, "kube_metrics_server_cache_objects", &[("resource", resource)]).value;
        assert!(cached > 0.0, "{resource}: {cached} cached");
    }
}

/// The waits the nodes cache logged after its failed watches, in seconds, in order.
fn nodes_watch_waits(log: &std::path::Path) -> Vec<f64> {
    let logged = std::fs::read_to_string(log).expect("log");
    let waits = logged.lines().filter(|l| l.contains("nodes cache: watch: ")).filter_map(|l| {
        let wait = l.split("; again in ").nth(1)?.split([' ', '(']).next()?;
        let (number, scale) = match wait {
            w if w.ends_with("ms") => (&w[..w.len() - 2], 1e-3),
            w if w.ends_with("µs") => (&w[..w.len() - "µs".len()], 1e-6),
            w => (w.strip_suffix('s')?, 1.0),
        };
        Some(number.parse::<f64>().ok()? * scale)
    });
    waits.collect()
}

/// A watch that lived (it brought news, and lasted a second) starts the backoff over,
/// however it ends: after an outage grew the wait past 0.8 s, an error ending such a watch
/// is followed by the shortest wait, not the outage's next.
#[async_std::test]
async fn faults_a_watch_that_lived_starts_the_backoff_over() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let (port, log, _child) = spawn_server(&sim, &dir).await;
    assert_eq!(wait_ready(&format!("http://127.0.0.1:{port}")).await.status, 200);
    let until = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // An outage of the nodes' watches: five failures, the backoff doubling.
    sim.state().faults.insert(Route::Nodes, Fault::WatchStatus(503));
    sim.drop_watches();
    until("five failed watches", &|| nodes_watch_waits(&log).len() >= 5);
    let grown = nodes_watch_waits(&log)[4];
    assert!(grown >= 0.8, "the fifth wait, {grown} s, is at least half of 1.6 s");
    // Over: a watch opens, brings news, lasts a second, then meets an error.
    sim.state().faults.clear();
    wait_logged(&log, "nodes watch: open again", Duration::from_secs(30)).await;
    sim.update(|c| c.nodes[0].labels.push(("touched".into(), "1".into())));
    async_std::task::sleep(Duration::from_millis(1500)).await;
    let before = nodes_watch_waits(&log).len();
    sim.state().watch_error(Route::Nodes, 500);
    until("the error logged", &|| nodes_watch_waits(&log).len() > before);
    let after = nodes_watch_waits(&log)[before];
    assert!(after <= 0.2, "the backoff started over: {after} s after {grown} s");
}

/// A role that may not list ReplicaSets (403): readiness does not wait for a cache that
/// waiting will not fill; the owner's labels are what it costs.
#[async_std::test]
async fn faults_a_cache_the_role_may_not_list_does_not_hold_readiness() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    sim.state().faults.insert(Route::ReplicaSets, Fault::Status(403));
    let port = free_port();
    let _child = Killed(spawn_logging(&mut server_command(&sim, &dir, port), &dir.join("stderr.log")));
    wait_listening(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_ready(&base).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(sim.count("/apis/apps/v1/replicasets") > 0, "asked, and refused");
    let s = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    assert!(find(&s, "kube_metrics_server_enricher_errors_total", &[("enricher", "owner")]).value > 0.0);
}

/// SIGTERM: the scrape in flight finishes, then the process exits 0 within 5 s. And at
/// trace level, through a token rotation, the token never reaches the log.
#[async_std::test]
async fn faults_sigterm_drains_and_no_token_in_logs() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let port = free_port();
    let log = dir.join("stderr.log");
    let mut child = Killed(spawn_logging(
        server_command(&sim, &dir, port).env("MSP_KUBERNETES__TIMEOUT", "2s").env("MSP_LOG_LEVEL", "trace"),
        &log,
    ));
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    // Rotate the token (a 401, a re-read, a retry), all logged at trace level.
    sim.state().token = "rotated-secret-token".into();
    std::fs::write(dir.join("token"), "rotated-secret-token").expect("rotate");
    assert!(get(&url, &[]).await.body.contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    // A slow scrape in flight when SIGTERM arrives.
    sim.state().faults.insert(Route::PodMetrics, Fault::Hang);
    let asked = sim.arrivals("/apis/metrics.k8s.io/v1/pods");
    let in_flight = async_std::task::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await }
    });
    // In flight once the server has asked for the pod metrics (however busy the machine).
    let waiting = Instant::now();
    while sim.arrivals("/apis/metrics.k8s.io/v1/pods") == asked {
        assert!(waiting.elapsed() < Duration::from_secs(20), "the scrape never asked for the pod metrics");
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let got = in_flight.await;
    assert_eq!(got.status, 200, "the scrape in flight finished");
    assert!(got.body.contains("kube_metrics_server_up{resource=\"pods\"} 0"));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(5), "still running 5 s after SIGTERM");
        async_std::task::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("401"), "the rotation was logged: {logged}");
    // Woken by the signal itself, not by the fallback that looks for it once a second.
    assert!(!logged.contains("signals' socket"), "{logged}");
    for secret in [TOKEN, "rotated-secret-token"] {
        assert!(!logged.contains(secret), "the token {secret:?} appears in the log");
    }
}

/// A web-config with TLS and basic auth rejects wrong credentials and serves right ones;
/// a change to the file (requiring client certificates) applies without a restart.
#[async_std::test]
async fn faults_web_config_tls_basic_auth_and_reload() {
    use base64::Engine as _;
    use msp_server::{certificates, client_config, private_key, Verify};
    let (sim, raw, dir) = sim_and_config(SimCluster::demo()).await;
    let pki = write_web_tls(&dir);
    std::fs::write(dir.join("web-ca.crt"), &pki.ca_pem).expect("ca");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web_yml = dir.join("web.yml");
    std::fs::write(
        &web_yml,
        format!(
            "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\nbasic_auth_users:\n  prometheus: {hash}\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
             Strict-Transport-Security: max-age=31536000\n"
        ),
    )
    .expect("web.yml");
    let (addr, _serving) = serve_web_config(raw, web_yml.clone()).await;
    let port = addr.port();

    let client = |identity: Option<(String, String)>| {
        let identity = identity.map(|(c, k)| {
            (certificates(c.as_bytes(), "client").expect("c"), private_key(k.as_bytes(), "key").expect("k"))
        });
        let tls = client_config(Verify::Ca { pem: pki.ca_pem.as_bytes(), what: "test CA" }, identity).expect("tls");
        surf::Client::with_http_client(msp_server::Transport::new(Some(tls)))
    };
    let basic = |user: &str, pass: &str| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
    };
    let url = format!("https://localhost:{port}/metrics");
    let status = |res: surf::Result<surf::Response>| res.map(|r| u16::from(r.status())).unwrap_or(0);

    let c = client(None);
    // http_server_config's headers go with every answer the checks guard, a refusal too.
    let refused = c.get(&url).await.expect("refused");
    assert_eq!(u16::from(refused.status()), 401, "no credentials");
    assert_eq!(refused.header("X-Frame-Options").map(|h| h.as_str()), Some("deny"));
    assert_eq!(refused.header("Strict-Transport-Security").map(|h| h.as_str()), Some("max-age=31536000"));
    assert_eq!(status(c.get(&url).header("Authorization", basic("prometheus", "wrong")).await), 401);
    assert_eq!(status(c.get(&url).header("Authorization", basic("mallory", "s3cret")).await), 401);
    let mut ok = c.get(&url).header("Authorization", basic("prometheus", "s3cret")).await.expect("scrape");
    assert_eq!(u16::from(ok.status()), 200);
    assert_eq!(ok.header("X-Frame-Options").map(|h| h.as_str()), Some("deny"));
    assert!(ok.body_string().await.expect("body").contains("kube_metrics_server_up{resource=\"pods\"} 1"));
    assert_eq!(status(c.get(format!("https://localhost:{port}/healthz")).await), 200, "probes stay open");
    // Plain HTTP to the TLS port gets no metrics.
    {
        use async_std::io::{ReadExt, WriteExt};
        let mut tcp = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        let _ = async_std::future::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer)).await;
        assert!(!String::from_utf8_lossy(&answer).contains("kube_metrics_server"), "served metrics over plain HTTP");
    }

    // Require client certificates from now on: no restart.
    async_std::task::sleep(Duration::from_millis(20)).await;
    std::fs::write(
        &web_yml,
        format!("tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: web-ca.crt\nbasic_auth_users:\n  prometheus: {hash}\n"),
    )
    .expect("rewrite");
    let without = client(None).get(&url).header("Authorization", basic("prometheus", "s3cret")).await;
    assert!(
        without.is_err() || u16::from(without.expect("res").status()) != 200,
        "a client without a certificate is refused"
    );
    let with = client(Some(pki.client_cert("prometheus").expect("client cert")));
    assert_eq!(status(with.get(&url).header("Authorization", basic("prometheus", "s3cret")).await), 200);
    drop(sim);
}

/// The app under a web-config with TLS, served by something that does not apply the file's
/// TLS (tide's own `listen`, as an embedder might): refused with 403 and a message naming
/// `serve_with`, never served in clear, right password or not.
#[async_std::test]
async fn faults_a_tls_web_config_served_without_tls_refuses_to_serve() {
    use base64::Engine as _;
    let (_sim, raw, dir) = sim_and_config(SimCluster::demo()).await;
    write_web_tls(&dir);
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    let web_yml = dir.join("web.yml");
    let yml = format!(
        "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\nbasic_auth_users:\n  prometheus: {hash}\n"
    );
    std::fs::write(&web_yml, yml).expect("web.yml");
    let (exporter, web) = exporter_and_web_config(raw, web_yml);
    let port = free_port();
    let app = msp_server::app(exporter, Some(web));
    async_std::task::spawn(app.listen(format!("127.0.0.1:{port}")));
    wait_listening(port).await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("prometheus:s3cret"));
    let got = get(&format!("http://127.0.0.1:{port}/metrics"), &[("Authorization", &basic)]).await;
    assert_eq!(got.status, 403, "{}", got.body);
    assert!(got.body.contains("serve_with") && !got.body.contains("kube_metrics_server_up"), "{}", got.body);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/"), &[("Authorization", &basic)]).await.status, 403);
    assert_eq!(get(&format!("http://127.0.0.1:{port}/healthz"), &[]).await.status, 200, "probes stay open");
}

/// Turning TLS verification off works, and says so loudly at startup.
#[async_std::test]
async fn faults_insecure_skip_tls_verify_warns_loudly() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let port = free_port();
    let log = dir.join("insecure.log");
    let child = Killed(spawn_logging(
        server_command(&sim, &dir, port)
            .env_remove("MSP_KUBERNETES__CA_FILE")
            .env("MSP_KUBERNETES__INSECURE_SKIP_TLS_VERIFY", "true"),
        &log,
    ));
    wait_listening(port).await;
    let body = get(&format!("http://127.0.0.1:{port}/metrics"), &[]).await.body;
    drop(child);
    assert!(body.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "no CA given, verification off: it connects");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.contains("WARN") && logged.contains("verification towards the API server") && logged.contains("is OFF"),
        "{logged}"
    );
}
