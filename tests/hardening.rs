//! Issue 11, [hardening]: HTTP edge cases, deadlines, bad items and a web-config that fails
//! closed, through the real server against the simulator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::io::{ReadExt, WriteExt};
use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

fn up(s: &[Sample], resource: &str) -> f64 {
    find(s, "kube_metrics_server_up", &[("resource", resource)]).value
}

/// Sends `bytes` on one connection, half-closes, and reads everything back.
async fn raw_exchange(url: &str, bytes: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut tcp = async_std::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    tcp.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    async_std::future::timeout(Duration::from_secs(10), tcp.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    answer
}

#[async_std::test]
async fn hardening_http_1_0_and_pipelined_requests_are_answered() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let answer = raw_exchange(&h.url, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");

    let two = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(&h.url, two).await;
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
    assert!(answer.find("ok\n").expect("healthz") < answer.find("kube_metrics_server_up").expect("metrics"));

    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100 * 1024));
    assert!(raw_exchange(&h.url, long.as_bytes()).await.starts_with("HTTP/1.1 414 "));
    let big = format!("GET /metrics HTTP/1.1\r\nCookie: {}\r\n\r\n", "c".repeat(1024 * 1024));
    assert!(raw_exchange(&h.url, big.as_bytes()).await.starts_with("HTTP/1.1 431 "));
    assert!(raw_exchange(&h.url, b"\x00\x01garbage\r\n\r\n").await.starts_with("HTTP/1.1 400 "));
}

#[async_std::test]
async fn hardening_every_scrape_keeps_its_own_deadline() {
    let h = start(SimCluster::demo(), |c| c.kubernetes.timeout = "30s".into()).await;
    scrape(&h).await;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Hang);
    let url = format!("{}/metrics", h.url);
    // A 10 s scrape is in flight; a 3 s one joins it and must answer on its own time.
    let slow_url = url.clone();
    let reads = || h.sim.arrivals("/apis/metrics.k8s.io/v1/pods");
    let before = reads();
    let slow =
        async_std::task::spawn(async move { get(&slow_url, &[("X-Prometheus-Scrape-Timeout-Seconds", "10")]).await });
    wait_until("the 10 s scrape reading", Duration::from_secs(10), || reads() > before).await;
    let started = Instant::now();
    let joined = get(&url, &[("X-Prometheus-Scrape-Timeout-Seconds", "3")]).await;
    let took = started.elapsed();
    // By its own deadline (2.5 s), not the leader's (9.5 s).
    assert!(took < Duration::from_secs(5), "the joiner answered after {took:?}");
    assert_eq!(up(&parse(&joined.body), "pods"), 0.0);
    assert_eq!(reads(), before + 1, "the 3 s scrape joined the read in flight");

    let got = slow.await;
    let s = parse(&got.body);
    assert_eq!(up(&s, "pods"), 0.0);
    let timeouts =
        find(&s, "kube_metrics_server_api_requests_total", &[("resource", "pod_metrics"), ("code", "timeout")]);
    assert!(timeouts.value >= 1.0, "a read cut off by the deadline is counted as a timeout");
}

#[async_std::test]
async fn hardening_an_absurd_scrape_timeout_is_only_a_long_one() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let url = format!("{}/metrics", h.url);
    // Finite and positive, so taken, but past what a deadline can hold: it once panicked the
    // request's task, which then answered nothing.
    for huge in ["1e19", "1e300"] {
        let got = get(&url, &[("X-Prometheus-Scrape-Timeout-Seconds", huge)]).await;
        assert_eq!(got.status, 200, "{huge}");
        assert_eq!(up(&parse(&got.body), "pods"), 1.0, "{huge}");
    }
    assert_eq!(get(&format!("{}/healthz", h.url), &[]).await.status, 200, "still serving");
}

#[async_std::test]
async fn hardening_connections_that_say_nothing_cannot_keep_a_new_one_out() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..msp_server::MAX_CONNECTIONS {
        held.push(async_std::net::TcpStream::connect(&addr).await.expect("connect"));
    }
    // Every slot is held by a connection that says nothing, and a new client is still
    // served: the one that has waited longest is closed to make room, long before a head's
    // 10 s.
    assert_eq!(get(&format!("{}/healthz", h.url), &[]).await.status, 200, "served past the bound");
    let mut byte = [0u8; 1];
    let read = async_std::future::timeout(Duration::from_secs(3), held[0].read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the oldest was closed at once: {read:?}");
    // The others are still open.
    let read = async_std::future::timeout(Duration::from_millis(300), held[1].read(&mut byte)).await;
    assert!(read.is_err(), "a newer held connection stays open until its head times out: {read:?}");
    // And Prometheus, scraping again and again on new connections, is served each time.
    for _ in 0..3 {
        let got = get(&format!("{}/metrics", h.url), &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(up(&parse(&got.body), "pods"), 1.0);
    }
}

/// The demo cluster served over TLS (a web-config with a certificate of a fresh CA): the
/// simulator, the PKI, the port, and what to keep for as long as it is served.
async fn serve_tls() -> (msp_sim::Sim, msp_sim::TestPki, u16, (Serving, TempDir)) {
    let (sim, raw, dir) = sim_and_config(SimCluster::demo()).await;
    let pki = write_web_tls(&dir);
    let web_yml = dir.join("web.yml");
    std::fs::write(&web_yml, "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\n").expect("web.yml");
    let (addr, serving) = serve_web_config(raw, web_yml).await;
    (sim, pki, addr.port(), (serving, dir))
}

/// A client trusting `pki`'s CA gets 200 for `/healthz` over TLS on `port`.
async fn assert_healthz_over_tls(pki: &msp_sim::TestPki, port: u16) {
    let tls = msp_server::client_config(msp_server::Verify::Ca { pem: pki.ca_pem.as_bytes(), what: "test CA" }, None)
        .expect("tls");
    let client = surf::Client::with_http_client(msp_server::Transport::new(Some(tls)));
    let res = client.get(format!("https://localhost:{port}/healthz")).await.expect("healthz over TLS");
    assert_eq!(u16::from(res.status()), 200);
}

#[async_std::test]
async fn hardening_a_tls_handshake_that_never_comes_is_cut_off() {
    let (_sim, pki, port, _served) = serve_tls().await;
    // Connected, and not a byte of a ClientHello: the server gives up as it does on a slow
    // request head (10 s), instead of holding the connection and its task for ever.
    let mut silent = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = async_std::future::timeout(Duration::from_secs(20), silent.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after 20 s");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(9), "cut off after the head's time, not before: {took:?}");
    // A real client is served all along.
    assert_healthz_over_tls(&pki, port).await;
}

/// Plain HTTP to the TLS port is answered as Go's servers answer it, not with a TLS alert
/// that a client (Prometheus with the wrong scheme) reports as a malformed response.
#[async_std::test]
async fn hardening_plain_http_to_the_tls_port_is_told_so() {
    let (_sim, pki, port, _served) = serve_tls().await;
    let mut plain = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    plain.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    async_std::future::timeout(Duration::from_secs(10), plain.read_to_string(&mut answer))
        .await
        .expect("answered and closed")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{answer}");
    assert!(answer.ends_with("Client sent an HTTP request to an HTTPS server.\n"), "{answer}");
    // TLS is served as before.
    assert_healthz_over_tls(&pki, port).await;
}

/// A failed TLS handshake is logged with its peer, as Go's servers log it (a kubelet probe or
/// a Prometheus left on plain HTTP, a client without the certificate asked for), at most
/// once a second with a count of those held back.
#[async_std::test]
async fn hardening_failed_tls_handshakes_are_logged_with_their_peer_and_throttled() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    write_web_tls(&dir);
    let web_yml = dir.join("web.yml");
    std::fs::write(&web_yml, "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\n").expect("web.yml");
    let port = free_port();
    let log = dir.join("handshakes.log");
    let _child = Killed(spawn_logging(server_command(&sim, &dir, port).env("MSP_WEB__CONFIG_FILE", &web_yml), &log));
    wait_listening(port).await;
    // Twenty at once (each answer lingers a second before it closes); none from the
    // connects that only checked the port was open, which sent nothing.
    let mut all = Vec::new();
    for _ in 0..20 {
        let mut plain = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        all.push(plain);
    }
    for mut plain in all {
        let _ = async_std::future::timeout(Duration::from_secs(5), plain.read_to_string(&mut String::new())).await;
    }
    async_std::task::sleep(Duration::from_millis(1500)).await;
    let mut plain = async_std::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let _ = async_std::future::timeout(Duration::from_secs(5), plain.read_to_string(&mut String::new())).await;
    // Logged once the answer's linger ends and the connection is dropped.
    let logged = wait_logged(&log, "more since the last report)", Duration::from_secs(10)).await;
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("TLS handshake error from 127.0.0.1:")).collect();
    assert!((2..=4).contains(&lines.len()), "one line a second, not one a connection: {logged}");
    assert!(lines.iter().all(|l| l.contains("WARN") && l.contains("plain HTTP")), "{logged}");
    assert!(lines.iter().any(|l| l.contains("more since the last report)")), "{logged}");
}

#[async_std::test]
async fn hardening_each_bad_item_costs_only_its_own_pod() {
    let good = |name: &str| {
        format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"shop"}},"containers":[{{"name":"c","usage":{{"cpu":"5m","memory":"1Ki"}}}}]}}"#
        )
    };
    let bad = [
        r#"{"metadata":{"name":"null-container","namespace":"shop"},"containers":[null]}"#,
        r#"{"metadata":{"name":"null-label","namespace":"shop","labels":{"app":null}},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]}"#,
        r#"{"metadata":{"name":"surrogate","namespace":"shop","labels":{"app":"\udcff"}},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]}"#,
        r#"{"metadata":{"name":"numeric-cpu","namespace":"shop"},"containers":[{"name":"c","usage":{"cpu":5,"memory":"1Ki"}}]}"#,
        r#"{"metadata":{"name":"negative","namespace":"shop"},"containers":[{"name":"c","usage":{"cpu":"-5m","memory":"1Ki"}}]}"#,
    ];
    let body = format!(
        r#"{{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1","items":[{},{},{}]}}"#,
        good("before"),
        bad.join(","),
        good("after")
    );
    let h = start(SimCluster::demo(), |_| {}).await;
    h.sim.state().faults.insert(Route::PodMetrics, Fault::Body(Arc::new(body)));
    let s = parse(&scrape(&h).await);
    let pods: Vec<&str> = s
        .iter()
        .filter(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores")
        .filter_map(|x| x.label("pod"))
        .collect();
    assert_eq!(pods, ["after", "before"]);
    assert_eq!(up(&s, "pods"), 1.0);
    assert_eq!(find(&s, "kube_metrics_server_parse_errors_total", &[]).value, 5.0);
}

#[async_std::test]
async fn hardening_an_emptied_web_config_never_serves_metrics_without_credentials() {
    let (sim, raw, dir) = sim_and_config(SimCluster::demo()).await;
    let web_yml = dir.join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&web_yml, format!("basic_auth_users:\n  prometheus: {hash}\n")).expect("web.yml");
    let (addr, _serving) = serve_web_config(raw, web_yml.clone()).await;
    let url = format!("http://{addr}/metrics");

    assert_eq!(get(&url, &[]).await.status, 401);
    for broken in ["", "basic_auth_users:\n  prometheus: [\n", "\n\n"] {
        async_std::task::sleep(Duration::from_millis(20)).await;
        std::fs::write(&web_yml, broken).expect("rewrite");
        // A new modification time, even within the file system's clock tick.
        let later = std::time::SystemTime::now() + Duration::from_secs(1);
        std::fs::File::options().write(true).open(&web_yml).and_then(|f| f.set_modified(later)).expect("mtime");
        let got = get(&url, &[]).await;
        assert_eq!(got.status, 401, "{broken:?} must not turn basic auth off");
    }
    // A good file is read again as ever: basic auth taken off on purpose.
    std::fs::write(&web_yml, "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
        .expect("rewrite");
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options().write(true).open(&web_yml).and_then(|f| f.set_modified(later)).expect("mtime");
    assert_eq!(get(&url, &[]).await.status, 200, "the good file read");
    drop(sim);
}

#[async_std::test]
async fn hardening_watch_streams_ignore_unknown_events_and_count_errors() {
    let h = start(SimCluster::demo(), |_| {}).await;
    let s = parse(&scrape(&h).await);
    let pod = s.iter().find(|x| x.name == "kube_metrics_server_pod_cpu_usage_cores").expect("a pod");
    let (ns, name) = (pod.label("namespace").expect("ns").to_owned(), pod.label("pod").expect("pod").to_owned());
    let app_before = pod.label("label_app").map(str::to_owned);
    {
        let mut state = h.sim.state();
        for (kind, object) in [
            (
                "BOGUS",
                serde_json::json!({"kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "bogus"}}}),
            ),
            (
                "ERROR",
                serde_json::json!({"kind": "Status", "status": "Failure", "message": "internal error", "code": 500}),
            ),
        ] {
            state.resource_version += 1;
            let rv = state.resource_version;
            let mut object = object;
            object["metadata"]["resourceVersion"] = serde_json::json!(rv.to_string());
            state.events.push((Route::Pods, rv, kind, object));
        }
    }
    let counted = |s: &[Sample], reason: &str| {
        s.iter().any(|x| {
            x.name == "kube_metrics_server_watch_errors_total"
                && x.label("resource") == Some("pods")
                && x.label("reason") == Some(reason)
                && x.value >= 1.0
        })
    };
    let s =
        scrape_until(&h, Duration::from_secs(10), |s| counted(s, "unknown_type") && counted(s, "error_event")).await;
    let same = find(&s, "kube_metrics_server_pod_cpu_usage_cores", &[("namespace", &ns), ("pod", &name)]);
    assert_eq!(same.label("label_app").map(str::to_owned), app_before, "an event of unknown type is not applied");
}

#[async_std::test]
async fn hardening_out_of_file_descriptors_backs_off_quietly() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let port = free_port();
    let log = dir.join("stderr.log");
    // 40 descriptors: the process's own, a few listeners and caches, then accept fails.
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=40:40").arg(binary());
    let server = server_command(&sim, &dir, port);
    cmd.env_clear().envs(server.get_envs().filter_map(|(k, v)| Some((k, v?))));
    let _child = Killed(spawn_logging(&mut cmd, &log));
    wait_listening(port).await;
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(Ok(c)) = async_std::future::timeout(
            Duration::from_millis(200),
            async_std::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            held.push(c);
        }
    }
    async_std::task::sleep(Duration::from_secs(3)).await;
    let logged = std::fs::read_to_string(&log).expect("log");
    let accept_lines = logged.lines().filter(|l| l.contains("accept:")).count();
    assert!(accept_lines >= 1, "running out of descriptors is reported: {logged}");
    assert!(accept_lines <= 6, "at most about one line a second, not a flood: {accept_lines} lines");
    drop(held);
    // Once descriptors are free again, it serves.
    let started = Instant::now();
    loop {
        let got =
            async_std::future::timeout(Duration::from_secs(2), get(&format!("http://127.0.0.1:{port}/healthz"), &[]))
                .await;
        if got.is_ok_and(|g| g.status == 200) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "it serves again");
    }
}

#[test]
fn hardening_a_password_in_the_api_url_is_refused_and_never_printed() {
    let out = std::process::Command::new(binary())
        .env_clear()
        .env("MSP_KUBERNETES__API_URL", "https://admin:hunter2@127.0.0.1:6443")
        .env("MSP_LOG_LEVEL", "trace")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("127.0.0.1:6443"), "the error names the URL: {printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}
