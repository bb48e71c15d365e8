//! Issue 14, [first-hour]: what a platform team meets in its first hour, through the real
//! binary configured only by environment variables.

use std::process::Command;

use msp_sim::{Fault, Route, SimCluster};
use msp_tests::*;

#[async_std::test]
async fn first_hour_service_links_json_logs_readiness_and_self_metrics() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let port = free_port();
    let log = dir.join("stderr.log");
    let mut child = server_command(&sim, &dir, port);
    child
        // What Kubernetes injects for a Service named `msp` beside the pod.
        .env("MSP_PORT", "tcp://10.96.0.7:9100")
        .env("MSP_PORT_9100_TCP", "tcp://10.96.0.7:9100")
        .env("MSP_PORT_9100_TCP_PROTO", "tcp")
        .env("MSP_PORT_9100_TCP_PORT", "9100")
        .env("MSP_PORT_9100_TCP_ADDR", "10.96.0.7")
        .env("MSP_SERVICE_HOST", "10.96.0.7")
        .env("MSP_SERVICE_PORT", "9100")
        .env("MSP_SERVICE_PORT_METRICS", "9100")
        .env("MSP_LOG_FORMAT", "json");
    // Both metrics APIs down from the start (a request during the warm-up scrape joins it,
    // whatever it asks for): still ready, and /metrics says so.
    sim.state().faults.insert(Route::PodMetrics, Fault::Status(503));
    sim.state().faults.insert(Route::NodeMetrics, Fault::Status(503));
    let _child = Killed(spawn_logging(&mut child, &log));
    wait_listening(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let s = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    for resource in ["pods", "nodes"] {
        assert_eq!(find(&s, "kube_metrics_server_up", &[("resource", resource)]).value, 0.0);
    }
    // Ready once the warm-up scrape and the caches it started are done, though both metrics
    // APIs are down.
    let ready = wait_ready(&base).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let reads = sim.count("/apis/metrics.k8s.io");
    for _ in 0..5 {
        get(&format!("{base}/readyz"), &[]).await;
    }
    assert_eq!(sim.count("/apis/metrics.k8s.io"), reads, "readiness makes no upstream call");
    // The caches the enrichers use were filled all the same, without a list to enrich: the
    // first scrape after metrics-server comes back is enriched at once.
    let again = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    for resource in ["pods", "nodes", "replicasets"] {
        let cached = find(&again, "kube_metrics_server_cache_objects", &[("resource", resource)]).value;
        assert!(cached > 0.0, "{resource}: {cached} cached");
    }

    for family in
        ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"]
    {
        assert!(s.iter().any(|x| x.name == family), "{family} is missing");
    }
    let build = find(&s, "kube_metrics_server_build_info", &[]);
    for label in ["version", "revision", "rustc", "target"] {
        assert!(build.label(label).is_some_and(|v| !v.is_empty()), "build_info has no {label}");
    }
    assert!(build.label("rustc").is_some_and(|v| v.starts_with("rustc ")));

    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.trim().is_empty());
    for line in logged.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["time", "level", "msg"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
        let time = v["time"].as_str().expect("time is text");
        assert!(time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'), "RFC 3339: {time}");
    }
}

#[test]
fn first_hour_help_lists_the_variables_and_no_cluster_suggests_demo() {
    let help = Command::new(binary()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    for want in
        ["--demo", "--config", "MSP_LISTEN", "MSP_KUBERNETES__TIMEOUT", "10s", "MSP_LOG_FORMAT", "MSP_LABELS__DENY"]
    {
        assert!(help.contains(want), "--help lacks {want}:\n{help}");
    }
    let version = Command::new(binary()).arg("--version").output().expect("run");
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.starts_with("metrics-server-prom ") && version.contains("revision"), "{version}");

    let out = Command::new(binary()).env_clear().env("HOME", "/nonexistent").output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["MSP_KUBERNETES__API_URL", "KUBECONFIG", "in-cluster", "--demo"] {
        assert!(err.contains(want), "the no-cluster error lacks {want}: {err}");
    }
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().all(|l| l.len() > 24 && l.as_bytes()[10] == b'T'), "RFC 3339 time on every line: {err}");

    let out = Command::new(binary()).env_clear().env("MSP_KUBERNETES__TIMEOUT", "5").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"5s\""));
    // Asked for JSON logs, a configuration error is one JSON line too.
    let out = Command::new(binary()).env_clear().env("MSP_LOG_FORMAT", "json").env("MSP_TYPO", "1").output();
    let out = out.expect("run");
    assert_eq!(out.status.code(), Some(2));
    let line: serde_json::Value = serde_json::from_slice(&out.stderr).expect("one JSON object");
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().is_some_and(|m| m.contains("`typo`")), "{line}");

    // No cluster, with the log off: the reason still reaches stderr, and it is a
    // configuration error (2), as an API server URL with a password is.
    let out = Command::new(binary()).env_clear().env("HOME", "/nonexistent").env("MSP_LOG_LEVEL", "off").output();
    let out = out.expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster found"), "{out:?}");
    // A kubeconfig found and refused is no missing cluster: its error alone, not where to find one.
    let dir = temp_dir("refused-kubeconfig");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "current-context: a\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443', proxy-url: 'http://127.0.0.1:3128'}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .expect("kubeconfig");
    let out = Command::new(binary()).env_clear().env("MSP_KUBERNETES__KUBECONFIG", &kubeconfig).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("proxy-url, which is not supported") && !err.contains("no cluster found"), "{err}");
    // A kubeconfig named that is not there: that error alone, without the hint to name one.
    for var in ["MSP_KUBERNETES__KUBECONFIG", "KUBECONFIG"] {
        let out = Command::new(binary()).env_clear().env(var, dir.join("missing")).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("reading kubeconfig") && err.contains("missing"), "{var}: {err}");
        assert!(!err.contains("no cluster found"), "{var}: {err}");
    }
    let out = Command::new(binary()).env_clear().env("MSP_KUBERNETES__API_URL", "https://u:p@x:6443").output();
    assert_eq!(out.expect("run").status.code(), Some(2));

    // `--config` without a file is refused, not read as "no file" (which dropped MSP_CONFIG).
    let out = Command::new(binary()).env_clear().env("MSP_CONFIG", "/nonexistent.toml").arg("--config").output();
    let out = out.expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config needs a file"), "{out:?}");
    let out = Command::new(binary()).env_clear().arg("--config=/nonexistent.toml").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"), "{out:?}");
}

#[async_std::test]
async fn first_hour_a_started_server_warms_its_caches_before_the_first_scrape() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let port = free_port();
    let mut child = server_command(&sim, &dir, port);
    let _child = Killed(spawn_logging(&mut child, &dir.join("stderr.log")));
    wait_listening(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_ready(&base).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    // Before anyone scraped: the metrics read once, the caches the enrichers use listed.
    assert!(sim.count("/apis/metrics.k8s.io") >= 2, "{:?}", sim.state().requests);
    assert_eq!(sim.lists("/api/v1/pods"), 1, "{:?}", sim.state().requests);
    let s = parse(&get(&format!("{base}/metrics"), &[]).await.body);
    let cpu = |x: &&Sample| x.name == "kube_metrics_server_container_cpu_usage_cores";
    assert!(s.iter().filter(cpu).count() > 10);
    assert!(s.iter().filter(cpu).all(|x| x.label("node").is_some()), "every series enriched");
    assert!(
        !s.iter().any(|x| x.name == "kube_metrics_server_enricher_errors_total" && x.value > 0.0),
        "no enricher waited or failed"
    );
    assert_eq!(sim.lists("/api/v1/pods"), 1, "the first scrape listed nothing");
}

#[async_std::test]
async fn first_hour_demo_samples_are_as_fresh_as_metrics_servers_so_timestamps_can_be_on() {
    // With a fixed sample time, Prometheus would drop every sample written with
    // `MSP_TIMESTAMPS` as too old. The demo's follow the clock, at metrics-server's default
    // resolution of 15 s.
    let port = free_port();
    let program = binary();
    let epoch_ms =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis();
    let started_ms = epoch_ms();
    let child = demo_command(&program, port)
        .env("MSP_TIMESTAMPS", "true")
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    let _child = Killed(child);
    wait_listening(port).await;
    let got = get(&format!("http://127.0.0.1:{port}/metrics"), &[]).await;
    let now_ms = epoch_ms();
    let stamps: Vec<u128> = got
        .body
        .lines()
        .filter(|l| l.starts_with("kube_metrics_server_container_cpu_usage_cores{"))
        .map(|l| {
            let stamp = l.rsplit(' ').next().expect("a field");
            stamp.parse().unwrap_or_else(|e| panic!("no timestamp ({e}): {l}"))
        })
        .collect();
    assert!(!stamps.is_empty(), "{}", got.body);
    for stamp in stamps {
        assert_eq!(stamp % 15_000, 0, "at the start of a 15 s period: {stamp}");
        // Read once the demo started (possibly by its warm-up scrape, a while before this
        // one): of the period it started in, or one since.
        let first = started_ms - started_ms % 15_000;
        assert!(
            first <= stamp && stamp <= now_ms,
            "{stamp} is not of a period since the start ({first}, now {now_ms})"
        );
    }
}

#[async_std::test]
async fn first_hour_demo_removes_its_temporary_files() {
    let port = free_port();
    let mut child = Killed(spawn_demo(&binary(), port));
    wait_listening(port).await;
    let dir = std::env::temp_dir().join(format!("metrics-server-prom-demo-{}", child.0.id()));
    assert!(dir.join("ca.crt").exists(), "{} holds the demo CA", dir.display());
    let killed = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let status = child.0.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[async_std::test]
async fn first_hour_the_log_names_the_port_bound_and_the_enrichers() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let log = dir.join("stderr.log");
    let mut command = server_command(&sim, &dir, 0);
    command.env("MSP_ENRICHERS", r#"["owner","node"]"#);
    let _child = Killed(spawn_logging(&mut command, &log));
    let mut port = None;
    // Up to 30 s, as `wait_ready` allows on two busy cores.
    for _ in 0..1200 {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        port = logged.split("serving on http://127.0.0.1:").nth(1).and_then(|rest| {
            let (port, path) = rest.split_once('/')?;
            assert!(path.starts_with("metrics"), "{logged}");
            port.parse::<u16>().ok()
        });
        if port.is_some() {
            break;
        }
        async_std::task::sleep(std::time::Duration::from_millis(25)).await;
    }
    let port = port.expect("a `serving on` line with the port");
    assert_ne!(port, 0);
    let health = get(&format!("http://127.0.0.1:{port}/healthz"), &[]).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("enrichers: owner, node\n"), "{logged}");
    assert!(
        logged.contains("enrichers registered but not enabled: labels (list them in `enrichers`, MSP_ENRICHERS"),
        "{logged}"
    );
}

/// An allow pattern that deny takes back whole (deny comes after allow) is warned of at
/// start, for namespaces and for label keys alike.
#[async_std::test]
async fn first_hour_an_allow_that_deny_takes_back_is_warned_of() {
    let (sim, _raw, dir) = sim_and_config(SimCluster::demo()).await;
    let log = dir.join("stderr.log");
    let mut command = server_command(&sim, &dir, 0);
    command
        .env("MSP_NAMESPACES__ALLOW", r#"["shop-*","default"]"#)
        .env("MSP_NAMESPACES__DENY", r#"["shop*"]"#)
        .env("MSP_LABELS__ALLOW", r#"["app","app.kubernetes.io/*"]"#)
        .env("MSP_LABELS__DENY", r#"["app.*"]"#);
    let _child = Killed(spawn_logging(&mut command, &log));
    let logged = wait_logged(&log, "serving on ", std::time::Duration::from_secs(30)).await;
    for want in [
        "namespaces.allow has \"shop-*\", and namespaces.deny takes it all back",
        "labels.allow has \"app.kubernetes.io/*\", and labels.deny takes it all back",
    ] {
        assert!(logged.contains(want), "{want} in\n{logged}");
    }
    assert!(!logged.contains("allow has \"default\"") && !logged.contains("allow has \"app\""), "{logged}");
}
