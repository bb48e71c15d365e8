//! `./scripts/bench [SIZES...]`: prints, for synthetic clusters of 1k, 10k and 100k pods with
//! two containers each:
//!
//! - (a) transform time (JSON bytes to exposition text, with the node, labels and owner
//!   enrichers over fixed metadata) and its throughput in MB/s of input, in steady state
//!   (the enrichment memo warm: no pod changed), and cold (every pod enriched afresh);
//! - the cost of gzip on that output (Prometheus asks for gzip by default), and its size;
//! - (b) the floor: serde_json parsing the same JSON into `IgnoredAny`, and the ratio a/b;
//! - (c) end-to-end scrape latency over HTTP, p50 and p99, of the release server binary
//!   against the simulator (a separate process) over TLS;
//! - (d) the server's CPU time per scrape (`/proc/PID/schedstat`) and peak RSS (`VmHWM`);
//! - (e) API requests per steady-state scrape, from the server's own counters, and how many of
//!   them were metadata lists.
//!
//! `--transform N` runs only (a) and (b), for profilers; `MSP_BENCH_RUNS` sets the repeats.
//!
//! `--sim N DIR` (used by the benchmark itself) runs a simulator of N pods and writes its URL,
//! CA and token into DIR.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msp_core::{
    controllers_from_list, enrich, nodes_from_list, pods_from_list, render_prepared, Memo, NodeMetricsList,
    PodMetricsList, RenderOptions, Scrape, StaticCluster, Unguarded,
};
use msp_sim::{Sim, SimCluster};

const TOKEN: &str = "bench-token";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

struct Transform {
    input_mb: f64,
    transform_ms: f64,
    cold_ms: f64,
    floor_ms: f64,
    output_mb: f64,
    gzip_ms: f64,
    gzip_mb: f64,
}

/// (a) and (b), in this process.
fn transform(pods: usize) -> Transform {
    let cluster = SimCluster::synthetic(pods);
    let pod_json = cluster.pod_metrics("v1").to_string();
    let node_json = cluster.node_metrics("v1").to_string();
    let meta = StaticCluster {
        pods: Arc::new(pods_from_list(cluster.pod_list().to_string().as_bytes()).expect("pods")),
        nodes: Arc::new(nodes_from_list(cluster.node_list().to_string().as_bytes()).expect("nodes")),
        controllers: Arc::new(
            controllers_from_list(SimCluster::controller_list(&cluster.replicasets).to_string().as_bytes())
                .expect("rs"),
        ),
    };
    // The same enrichers, built the same way, as the server's default configuration.
    let config = msp_server::RawConfig::default().check(&msp_server::Registry::builtin()).expect("default config");
    let enrichers = config.enrichers.to_vec();
    let runs = match std::env::var("MSP_BENCH_RUNS").ok().and_then(|r| r.parse().ok()) {
        Some(r) => r,
        None if pods >= 100_000 => 5,
        None => 15,
    };
    let mut times = Vec::new();
    let mut colds = Vec::new();
    let mut floors = Vec::new();
    let mut out_len = 0;
    let mut last = String::new();
    let steady = Memo::default();
    // The first runs start from an empty memo each (a server's first scrape, or a cluster
    // where every pod changed); the rest share one (steady state, nothing changed).
    let cold_runs = runs.min(5);
    for run in 0..cold_runs + runs {
        let cold = run < cold_runs;
        let fresh = Memo::default();
        let memo = if cold { &fresh } else { &steady };
        let t = Instant::now();
        let p = PodMetricsList::parse(pod_json.as_bytes()).expect("pods");
        let n = NodeMetricsList::parse(node_json.as_bytes()).expect("nodes");
        let parsed = t.elapsed();
        let scrape = Scrape::new(&p, &n);
        let checked = t.elapsed();
        // The production pipeline, exactly as the server calls it.
        let enriched = async_std::task::block_on(enrich(&scrape, &meta, &enrichers, Some(memo), &Unguarded));
        assert!(enriched.failures.is_empty(), "enrichers failed: {:?}", enriched.failures);
        let prepared = enriched.prepared;
        let enriched = t.elapsed();
        let mut out = String::with_capacity(pods * 1500);
        render_prepared(&mut out, &scrape, &prepared, &RenderOptions::default()).expect("render");
        if std::env::var_os("MSP_BENCH_STAGES").is_some() {
            eprintln!(
                "stages ({}): parse {parsed:?}, check {:?}, enrich {:?}, render {:?}",
                if cold { "cold" } else { "warm" },
                checked - parsed,
                enriched - checked,
                t.elapsed() - enriched
            );
        }
        out_len = out.len();
        last = black_box(out);
        if cold {
            colds.push(t.elapsed().as_secs_f64() * 1e3);
            continue;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);

        let t = Instant::now();
        black_box(serde_json::from_str::<serde::de::IgnoredAny>(&pod_json).expect("floor"));
        black_box(serde_json::from_str::<serde::de::IgnoredAny>(&node_json).expect("floor"));
        floors.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut gzips = Vec::new();
    let mut gzip_len = 0;
    for _ in 0..runs.min(5) {
        let t = Instant::now();
        gzip_len = black_box(msp_server::compress(last.as_bytes()).expect("gzip")).len();
        gzips.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Transform {
        gzip_ms: median(gzips),
        gzip_mb: gzip_len as f64 / 1e6,
        input_mb: (pod_json.len() + node_json.len()) as f64 / 1e6,
        transform_ms: median(times),
        cold_ms: median(colds),
        floor_ms: median(floors),
        output_mb: out_len as f64 / 1e6,
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time of every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn api_requests(text: &str) -> (f64, f64) {
    let (mut all, mut lists) = (0.0, 0.0);
    for line in text.lines().filter(|l| l.starts_with("kube_metrics_server_api_requests_total{")) {
        let v: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        all += v;
        if !line.contains("_metrics\"") {
            lists += v;
        }
    }
    (all, lists)
}

struct EndToEnd {
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms: f64,
    rss_mib: f64,
    requests: f64,
    lists: f64,
    series: usize,
}

async fn get(url: &str) -> String {
    let client = surf::Client::with_http_client(msp_server::Transport::new(None));
    let mut res = client.get(url).await.expect("scrape");
    res.body_string().await.expect("body")
}

/// (c), (d), (e): the release server binary against a simulator process.
async fn end_to_end(pods: usize, scrapes: usize) -> EndToEnd {
    let exe = std::env::current_exe().expect("exe");
    let dir = std::env::temp_dir().join(format!("msp-bench-{}-{pods}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let _sim = Killed(
        Command::new(&exe).args(["--sim", &pods.to_string()]).arg(&dir).stdout(Stdio::null()).spawn().expect("sim"),
    );
    let url_file = dir.join("url");
    let started = Instant::now();
    while !url_file.exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "simulator did not start");
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
    let api = std::fs::read_to_string(&url_file).expect("url");
    let server_bin = exe.parent().expect("dir").join("metrics-server-prom");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let server = Killed(
        Command::new(&server_bin)
            .env_clear()
            .env("MSP_LISTEN", format!("127.0.0.1:{port}"))
            .env("MSP_KUBERNETES__API_URL", api.trim())
            .env("MSP_KUBERNETES__CA_FILE", dir.join("ca.crt"))
            .env("MSP_KUBERNETES__TOKEN_FILE", dir.join("token"))
            .env("MSP_KUBERNETES__TIMEOUT", "30s")
            .env("MSP_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (build it: cargo build --release)", server_bin.display())),
    );
    let pid = server.0.id();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let mut text = String::new();
    for _ in 0..600 {
        if let Ok(Ok(t)) = async_std::future::timeout(Duration::from_secs(60), async {
            let client = surf::Client::with_http_client(msp_server::Transport::new(None));
            client.get(&metrics).await?.body_string().await
        })
        .await
        {
            text = t;
            break;
        }
        async_std::task::sleep(Duration::from_millis(100)).await;
    }
    // Warm-up: caches synced and every enricher enriching.
    for _ in 0..3 {
        text = get(&metrics).await;
    }
    let series = text
        .lines()
        .filter(|l| l.starts_with("kube_metrics_server_container_cpu_usage_cores{") && l.contains("workload_name="))
        .count();
    let (req0, lists0) = api_requests(&text);
    let cpu0 = cpu_ns(pid);
    let mut latencies = Vec::new();
    for _ in 0..scrapes {
        let t = Instant::now();
        text = get(&metrics).await;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_ns(pid) - cpu0) as f64 / 1e6 / scrapes as f64;
    let (req1, lists1) = api_requests(&text);
    EndToEnd {
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        cpu_ms: cpu,
        rss_mib: peak_rss_mib(pid),
        requests: (req1 - req0) / scrapes as f64,
        lists: (lists1 - lists0) / scrapes as f64,
        series,
    }
}

async fn run_sim(pods: usize, dir: &str) {
    let sim = Sim::start(SimCluster::synthetic(pods), TOKEN).await.expect("sim");
    let dir = std::path::Path::new(dir);
    std::fs::write(dir.join("ca.crt"), &sim.pki.ca_pem).expect("ca");
    std::fs::write(dir.join("token"), TOKEN).expect("token");
    std::fs::write(dir.join("url.tmp"), &sim.url).expect("url");
    std::fs::rename(dir.join("url.tmp"), dir.join("url")).expect("url");
    loop {
        async_std::task::sleep(Duration::from_secs(3600)).await;
    }
}

#[async_std::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--sim") {
        let pods = args.get(1).and_then(|n| n.parse().ok()).expect("--sim N DIR");
        return run_sim(pods, args.get(2).expect("--sim N DIR")).await;
    }
    if args.first().map(String::as_str) == Some("--transform") {
        // For profilers (valgrind --tool=callgrind): the in-process transform alone.
        let pods = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        let t = transform(pods);
        println!(
            "{pods} pods: transform {:.1} ms (cold memo {:.1} ms), parse floor {:.1} ms",
            t.transform_ms, t.cold_ms, t.floor_ms
        );
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    println!("metrics-server-prom benchmark: synthetic clusters, 2 containers a pod, enrichers node+labels+owner");
    println!();
    println!(
        "| pods | input MB | output MB | (a) transform ms | (a) MB/s | (a) cold ms | (b) parse floor ms | a/b | gzip ms (MB) | (c) scrape p50 ms | (c) p99 ms | (d) server CPU ms/scrape | (d) peak RSS MiB | (e) API req/scrape | (e) lists/scrape |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pods in sizes {
        let t = transform(pods);
        let scrapes = if pods >= 100_000 { 10 } else { 30 };
        let e = end_to_end(pods, scrapes).await;
        assert_eq!(e.series, pods * 2, "every container series present and enriched");
        println!(
            "| {pods} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {:.1} ({:.1}) | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |",
            t.input_mb,
            t.output_mb,
            t.transform_ms,
            t.input_mb / (t.transform_ms / 1e3),
            t.cold_ms,
            t.floor_ms,
            t.transform_ms / t.floor_ms,
            t.gzip_ms,
            t.gzip_mb,
            e.p50_ms,
            e.p99_ms,
            e.cpu_ms,
            e.rss_mib,
            e.requests,
            e.lists,
        );
    }
}
