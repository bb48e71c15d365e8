//! `./scripts/bench [SIZES...]`: prints, for synthetic clusters of 1k, 10k, 100k and 150k pods
//! with two containers each:
//!
//! - (a) transform time (JSON bytes to exposition text, with the node, labels and owner
//!   enrichers over fixed metadata) and its throughput in MB/s of input, in steady state
//!   (the enrichment memo warm: no pod changed), and cold (every pod enriched afresh). The
//!   text goes into one buffer kept between runs (as an embedder rendering once into a
//!   buffer it reuses), and, streamed, into chunks of [`msp_server::GZIP_CHUNK`] handed on
//!   as they fill (as the server writes every body, gzipped or not: it never holds one
//!   whole);
//! - the cost of gzip on that output (Prometheus asks for gzip by default), and its size;
//! - (b) the floor: serde_json parsing the same JSON into `IgnoredAny`, and the ratio a/b;
//! - (c) end-to-end scrape latency over HTTP, p50 and p99, of the server binary built beside
//!   this one (the `dist` profile, by ./scripts/bench) against the simulator (a separate
//!   process) over TLS, asked as curl asks (text) and as Prometheus asks (OpenMetrics with
//!   gzip), and from 10k pods up also as an HA pair (two such requests at once each time:
//!   one read, two bodies), as Prometheus while every cache re-lists (the simulator
//!   forgets its history and closes the watches: each next watch gets 410), as Prometheus
//!   while 20 pods a second change (each a new IP, a watch event; scrapes 2 s apart) and
//!   as each of 3 shards: from the request to the last byte of the answer (the benchmark
//!   decompresses and reads an answer after that, untimed);
//! - (d) the server's CPU time per scrape (its threads' `schedstat`, or `/proc/PID/stat` if
//!   a thread exited meanwhile) and peak RSS (`VmHWM`);
//! - (e) API requests per steady-state scrape, from the server's own counters, how many of
//!   them were metadata lists, and how many new connections to the API server they opened.
//!
//! `MSP_BENCH_CLUSTER=realistic` measures `SimCluster::realistic` instead (8 labels a pod, real
//! name lengths, usage that looks measured), here and in the simulator process;
//! `MSP_BENCH_REPLICAS=N` gives it N pods a ReplicaSet instead of 10.
//!
//! `--transform N` runs only (a) and (b), for profilers; `MSP_BENCH_RUNS` sets the repeats,
//! and `MSP_BENCH_SHARD=I` makes (a) shard I of 3's (as `MSP_SHARD__INDEX`).
//!
//! `--sim N DIR` (used by the benchmark itself) runs a simulator of N pods and writes its URL,
//! CA and token into DIR.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msp_core::{
    controllers_from_list, enrich, nodes_from_list, pods_from_list, render_prepared, write_families, Format, Memo,
    NodeMetricsList, RenderOptions, Scrape, StaticCluster, Unguarded, Writer,
};
use msp_sim::{Fault, Route, Sim, SimCluster};

const TOKEN: &str = "bench-token";

/// The benchmark's cluster of `pods` pods: [`SimCluster::synthetic`], or with
/// `MSP_BENCH_CLUSTER=realistic` [`SimCluster::realistic`] (8 labels a pod, usage that looks
/// measured), with `MSP_BENCH_REPLICAS` pods a ReplicaSet (10 unless set).
fn cluster(pods: usize) -> SimCluster {
    if realistic() {
        SimCluster::realistic_replicas(pods, replicas())
    } else {
        SimCluster::synthetic(pods)
    }
}

/// `MSP_BENCH_REPLICAS`, as [`SimCluster::realistic_replicas`] takes it.
fn replicas() -> usize {
    match std::env::var("MSP_BENCH_REPLICAS") {
        Ok(r) => r
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("MSP_BENCH_REPLICAS={r}: not a number"))
            .clamp(1, SimCluster::REALISTIC_MAX_REPLICAS),
        Err(_) => 10,
    }
}

fn realistic() -> bool {
    std::env::var("MSP_BENCH_CLUSTER").is_ok_and(|c| c == "realistic")
}

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
    /// The same, the text written in chunks as the server writes it for gzip.
    streamed_ms: f64,
    cold_ms: f64,
    floor_ms: f64,
    output_mb: f64,
    gzip_ms: f64,
    gzip_mb: f64,
}

/// (a) and (b), in this process.
fn transform(pods: usize) -> Transform {
    let cluster = cluster(pods);
    let pod_json = msp_sim::go_json::to_string(&cluster.pod_metrics("v1"));
    let node_json = msp_sim::go_json::to_string(&cluster.node_metrics("v1"));
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
    let mut streams = Vec::new();
    let mut colds = Vec::new();
    let mut floors = Vec::new();
    let mut out_len = 0;
    let steady = Memo::default();
    let scope = match std::env::var("MSP_BENCH_SHARD").ok().and_then(|i| i.parse().ok()) {
        Some(i) => msp_server::Scope {
            shard: msp_server::Shard::new(3, Some(i), &|_| None).expect("shard"),
            ..Default::default()
        },
        None => msp_server::Scope::default(),
    };
    // Rendering once, into a buffer kept between runs.
    let mut out = String::new();
    // The first runs start from an empty memo each (a server's first scrape, or a cluster
    // where every pod changed); the rest share one (steady state, nothing changed).
    let cold_runs = runs.min(5);
    for run in 0..cold_runs + runs {
        let cold = run < cold_runs;
        let fresh = Memo::default();
        let memo = if cold { &fresh } else { &steady };
        let t = Instant::now();
        // As the server reads them: the pods straight from their body (metrics-server's shape).
        let n = NodeMetricsList::parse_selected(node_json.as_bytes(), &scope).expect("nodes");
        let scrape = Scrape::from_pods_body(pod_json.as_bytes(), n, &scope).expect("pods in metrics-server's shape");
        let checked = t.elapsed();
        // The production pipeline, exactly as the server calls it.
        let enriched = async_std::task::block_on(enrich(&scrape, &meta, &enrichers, Some(memo), &Unguarded));
        assert!(enriched.failures.is_empty(), "enrichers failed: {:?}", enriched.failures);
        let prepared = enriched.prepared;
        let enriched = t.elapsed();
        out.clear();
        render_prepared(&mut out, &scrape, &prepared, &RenderOptions::default()).expect("render");
        if std::env::var_os("MSP_BENCH_STAGES").is_some() {
            eprintln!(
                "stages ({}): read and check {checked:?}, enrich {:?}, render {:?}",
                if cold { "cold" } else { "warm" },
                enriched - checked,
                t.elapsed() - enriched
            );
        }
        out_len = out.len();
        black_box(&out);
        if cold {
            colds.push(t.elapsed().as_secs_f64() * 1e3);
            continue;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        // As the server writes: into a chunk handed on (to gzip, or to the client) whenever
        // it fills, so that the whole text is never held.
        let s = Instant::now();
        let mut chunk = String::new();
        let mut handed = 0;
        let mut sink = |text: &str| {
            handed += black_box(text).len();
            std::ops::ControlFlow::Continue(())
        };
        let mut w = Writer::spilling(&mut chunk, Format::Text, msp_server::GZIP_CHUNK, &mut sink);
        write_families(&mut w, &scrape, &prepared, &RenderOptions::default()).expect("render");
        w.finish();
        assert_eq!(handed, out_len, "the same text, streamed");
        streams.push((enriched + s.elapsed()).as_secs_f64() * 1e3);

        let t = Instant::now();
        black_box(serde_json::from_str::<serde::de::IgnoredAny>(&pod_json).expect("floor"));
        black_box(serde_json::from_str::<serde::de::IgnoredAny>(&node_json).expect("floor"));
        floors.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut gzips = Vec::new();
    let mut gzip_len = 0;
    for _ in 0..runs.min(5) {
        let t = Instant::now();
        gzip_len = black_box(msp_core::compress(out.as_bytes())).len();
        gzips.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Transform {
        gzip_ms: median(gzips),
        gzip_mb: gzip_len as f64 / 1e6,
        input_mb: (pod_json.len() + node_json.len()) as f64 / 1e6,
        transform_ms: median(times),
        streamed_ms: median(streams),
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

/// A process's CPU time read two ways: each live thread's to the nanosecond
/// (`/proc/PID/task/*/schedstat`), which forgets a thread once it has exited, and the whole
/// process's, exited threads included, in 10 ms ticks (`/proc/PID/stat`).
struct CpuReading {
    threads: HashMap<String, u64>,
    process_ticks: u64,
}

impl CpuReading {
    /// Linux's `USER_HZ`, the unit of `/proc/PID/stat`'s times.
    const TICKS_A_SECOND: f64 = 100.0;

    fn of(pid: u32) -> Self {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| {
                let ns = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
                Some((t.file_name().to_string_lossy().into_owned(), ns.split_whitespace().next()?.parse().ok()?))
            })
            .collect();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let process_ticks = Self::ticks(&stat).unwrap_or_else(|| panic!("/proc/{pid}/stat: no times in {stat:?}"));
        Self { threads, process_ticks }
    }

    /// utime + stime from a `/proc/PID/stat` line: its 14th and 15th fields, the 12th and
    /// 13th after the command's `)` (a command may hold spaces and parentheses).
    fn ticks(stat: &str) -> Option<u64> {
        let (_, after) = stat.rsplit_once(')')?;
        let mut times = after.split_whitespace().skip(11);
        Some(times.next()?.parse::<u64>().ok()? + times.next()?.parse::<u64>().ok()?)
    }

    /// Milliseconds of CPU since `before`: the threads' figure, unless the process's says
    /// more than its two readings' ticks can be off by (threads exited in between, and their
    /// time is only in the process's).
    fn ms_since(&self, before: &Self) -> f64 {
        let threads_ns: u64 =
            self.threads.iter().map(|(tid, ns)| ns.saturating_sub(before.threads.get(tid).copied().unwrap_or(0))).sum();
        let threads = threads_ns as f64 / 1e6;
        let process = self.process_ticks.saturating_sub(before.process_ticks) as f64 * 1e3 / Self::TICKS_A_SECOND;
        if process > threads + 2e3 / Self::TICKS_A_SECOND {
            process
        } else {
            threads
        }
    }
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

struct EndToEnd {
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms: f64,
    rss_mib: f64,
    requests: f64,
    lists: f64,
    connects: f64,
    /// Container series carrying the workload (every one, when enrichment works).
    series: usize,
    /// Pod series.
    pods: usize,
    /// Body size as sent (gzipped when asked), and its text.
    sent_mb: f64,
    text_mb: f64,
    /// The server's CPU a second with no scrape, over [`IDLE`] after the scrapes, when
    /// measured.
    idle_ms_per_s: Option<f64>,
}

/// How long a server is left without a scrape to measure its CPU at rest.
const IDLE: Duration = Duration::from_secs(10);

/// How many ask at once, each time.
#[derive(Clone, Copy, PartialEq)]
enum AtOnce {
    One,
    /// Two at once, as a Prometheus HA pair scrapes: one read, a body for each.
    Pair,
}

/// What the caches do while the scrapes are timed.
#[derive(Clone, Copy, PartialEq)]
enum Caches {
    /// Watch, as they do between re-lists.
    Watching,
    /// Re-list: just before the first timed scrape the simulator forgets its history and
    /// closes every watch, as etcd's compaction beside an API server restart would; each
    /// cache's next watch is answered 410 and it lists everything again, beside the scrapes.
    Relisting,
    /// Follow [`CHURN`] pods changing a second (each a new IP), as a large cluster's pods
    /// are scheduled, get their IPs, and come and go all the time.
    Changing,
    /// Never list ReplicaSets: the simulator refuses them (403) from before the server
    /// starts, as a ClusterRole without them would, so the owner enricher fails in part at
    /// every scrape (until the memo kept such scrapes, every pod was then enriched again
    /// at every scrape).
    Refusing,
}

/// How many pods a second change in [`Caches::Changing`].
const CHURN: u32 = 20;

/// What a scrape asks for.
#[derive(Clone, Copy, PartialEq)]
enum Ask {
    /// No `Accept`: text 0.0.4, uncompressed (curl).
    Text,
    /// What Prometheus sends: OpenMetrics first, gzip, and its scrape timeout (its default,
    /// 10 s), with which a request that arrives while the server warms up joins the warm-up
    /// scrape, as Prometheus' do (until 7194310 a request without one read the cluster a
    /// second time beside it: at 150,000 pods, some 200 MiB more at once).
    Prometheus,
}

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// A scrape's answer as it arrived: its body, and whether that is gzipped.
struct Answer {
    body: Vec<u8>,
    gzipped: bool,
}

impl Answer {
    /// The size sent, and the exposition, decompressed if need be.
    fn into_text(self) -> (usize, String) {
        let sent = self.body.len();
        if !self.gzipped {
            return (sent, String::from_utf8(self.body).expect("utf-8"));
        }
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&self.body[..]).read_to_string(&mut text).expect("gunzip");
        (sent, text)
    }
}

/// One scrape, asked as `ask` asks: its answer as it arrived.
async fn fetch(url: &str, ask: Ask) -> Answer {
    let client = surf::Client::with_http_client(msp_server::Transport::new(None));
    let mut req = client.get(url);
    if ask == Ask::Prometheus {
        req = req
            .header("Accept", PROMETHEUS_ACCEPT)
            .header("Accept-Encoding", "gzip")
            .header("X-Prometheus-Scrape-Timeout-Seconds", "10");
    }
    let mut res = req.await.expect("scrape");
    let gzipped = res.header("Content-Encoding").is_some_and(|h| h.as_str() == "gzip");
    Answer { body: res.body_bytes().await.expect("body"), gzipped }
}

/// One scrape: the size sent, and the exposition.
async fn get(url: &str, ask: Ask) -> (usize, String) {
    fetch(url, ask).await.into_text()
}

fn counter(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A simulator process of `pods` pods, described in a folder, which is removed once the
/// process has been (fields drop in order).
struct SimProcess {
    _child: Killed,
    dir: tempfile::TempDir,
    url: String,
}

async fn start_sim(pods: usize) -> SimProcess {
    let exe = std::env::current_exe().expect("exe");
    let dir =
        tempfile::Builder::new().prefix(&format!("msp-bench-{pods}-")).tempdir().expect("a folder for the simulator");
    let child = Killed(
        Command::new(&exe)
            .args(["--sim", &pods.to_string()])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("sim"),
    );
    let url_file = dir.path().join("url");
    let started = Instant::now();
    while !url_file.exists() {
        assert!(started.elapsed() < Duration::from_secs(300), "simulator did not start");
        async_std::task::sleep(Duration::from_millis(50)).await;
    }
    let url = std::fs::read_to_string(&url_file).expect("url").trim().to_owned();
    SimProcess { _child: child, dir, url }
}

/// (c), (d), (e): a fresh server process (the binary beside this one) against `sim`, asked
/// `ask` (by two at once for a pair), as shard `shard` of 3 when given.
async fn end_to_end(
    sim: &SimProcess,
    scrapes: usize,
    ask: Ask,
    shard: Option<u32>,
    at_once: AtOnce,
    caches: Caches,
) -> EndToEnd {
    let exe = std::env::current_exe().expect("exe");
    let server_bin = exe.parent().expect("dir").join("metrics-server-prom");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    if caches == Caches::Refusing {
        std::fs::write(sim.dir.path().join(REFUSE), "").expect("ask the simulator to refuse ReplicaSets");
        // It looks every tenth of a second.
        async_std::task::sleep(Duration::from_millis(300)).await;
    }
    let mut cmd = Command::new(&server_bin);
    cmd.env_clear()
        .env("MSP_LISTEN", format!("127.0.0.1:{port}"))
        .env("MSP_KUBERNETES__API_URL", &sim.url)
        .env("MSP_KUBERNETES__CA_FILE", sim.dir.path().join("ca.crt"))
        .env("MSP_KUBERNETES__TOKEN_FILE", sim.dir.path().join("token"))
        .env("MSP_KUBERNETES__TIMEOUT", "60s")
        .env("MSP_LOG_LEVEL", "warn")
        // As the image runs it (see the Dockerfile).
        .env("MALLOC_ARENA_MAX", "1")
        .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456")
        .stdout(Stdio::null());
    if let Some(index) = shard {
        cmd.env("MSP_SHARD__TOTAL", "3").env("MSP_SHARD__INDEX", index.to_string());
    }
    if caches == Caches::Refusing {
        // The owner enricher's warning at every scrape is expected: not in the table.
        cmd.env("MSP_LOG_LEVEL", "error");
    }
    let server = Killed(
        cmd.spawn().unwrap_or_else(|e| panic!("{}: {e} (build both with ./scripts/bench)", server_bin.display())),
    );
    let pid = server.0.id();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    // Ready: its warm-up done and every cache listed. (A first list can fail: at 150,000 pods
    // the simulator, busy writing the other lists, once let a TLS handshake wait past its
    // 5 s bound; the list is tried again, and scrapes before it ends are not enriched.)
    let readyz = format!("http://127.0.0.1:{port}/readyz");
    let waited = Instant::now();
    loop {
        let client = surf::Client::with_http_client(msp_server::Transport::new(None));
        if client.get(&readyz).await.is_ok_and(|r| r.status() == surf::StatusCode::Ok) {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(600), "the server never became ready");
        async_std::task::sleep(Duration::from_millis(200)).await;
    }
    // Warm-up: every enricher enriching.
    let mut last = (0, String::new());
    for _ in 0..3 {
        last = get(&metrics, ask).await;
    }
    let requests = |t: &str| counter(t, "kube_metrics_server_api_requests_total{");
    let lists = |t: &str| {
        requests(t)
            - counter(t, "kube_metrics_server_api_requests_total{resource=\"pod_metrics\"")
            - counter(t, "kube_metrics_server_api_requests_total{resource=\"node_metrics\"")
    };
    let connects = |t: &str| counter(t, "kube_metrics_server_api_connections_total");
    let (req0, lists0, conn0) = (requests(&last.1), lists(&last.1), connects(&last.1));
    match caches {
        Caches::Relisting => std::fs::write(sim.dir.path().join(RELIST), "").expect("ask the simulator to re-list"),
        Caches::Changing => std::fs::write(sim.dir.path().join(CHURN_FILE), CHURN.to_string()).expect("ask for churn"),
        Caches::Watching | Caches::Refusing => {}
    }
    let cpu0 = CpuReading::of(pid);
    let mut latencies = Vec::new();
    let mut answer = None;
    for _ in 0..scrapes {
        let t = Instant::now();
        let other = (at_once == AtOnce::Pair).then(|| {
            let metrics = metrics.clone();
            async_std::task::spawn(async move { fetch(&metrics, ask).await })
        });
        let arrived = fetch(&metrics, ask).await;
        if let Some(other) = other {
            drop(other.await);
        }
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        if caches == Caches::Changing {
            // Changes fall between scrapes, as between Prometheus' (the first after a scrape
            // copies the pods' snapshot it and the memo hold); their CPU counts.
            async_std::task::sleep(Duration::from_secs(2)).await;
        }
        // The answer before is let go of outside the timed span (at 150k, text, 558 MB).
        answer = Some(arrived);
    }
    let cpu = CpuReading::of(pid).ms_since(&cpu0) / scrapes as f64;
    if caches == Caches::Changing {
        std::fs::remove_file(sim.dir.path().join(CHURN_FILE)).expect("stop the churn");
    }
    if caches == Caches::Refusing {
        std::fs::remove_file(sim.dir.path().join(REFUSE)).expect("stop refusing");
    }
    if let Some(answer) = answer {
        last = answer.into_text();
    }
    if caches == Caches::Relisting {
        // The peak is read once every cache has listed again: scraped on, untimed, until
        // the scrapes of 3 s in a row see no list request more.
        let (mut seen, mut since) = (lists(&last.1), Instant::now());
        let started = Instant::now();
        while since.elapsed() < Duration::from_secs(3) {
            assert!(started.elapsed() < Duration::from_secs(600), "the caches never stopped listing");
            let now = lists(&get(&metrics, ask).await.1);
            if now != seen {
                (seen, since) = (now, Instant::now());
            }
        }
    }
    // At rest: what its caches' watches, timers and threads cost between scrapes (once, on
    // the one Prometheus row).
    let at_rest = ask == Ask::Prometheus && shard.is_none() && at_once == AtOnce::One && caches == Caches::Watching;
    let mut idle_ms_per_s = None;
    if at_rest {
        // (Once the last scrape has handed back its lists.)
        async_std::task::sleep(Duration::from_secs(1)).await;
        let before = CpuReading::of(pid);
        async_std::task::sleep(IDLE).await;
        idle_ms_per_s = Some(CpuReading::of(pid).ms_since(&before) / IDLE.as_secs_f64());
    }
    let text = &last.1;
    let per = |a: f64, b: f64| (a - b) / scrapes as f64;
    EndToEnd {
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        cpu_ms: cpu,
        rss_mib: peak_rss_mib(pid),
        requests: per(requests(text), req0),
        lists: per(lists(text), lists0),
        connects: per(connects(text), conn0),
        series: text
            .lines()
            .filter(|l| l.starts_with("kube_metrics_server_container_cpu_usage_cores{") && l.contains("workload_name="))
            .count(),
        pods: text.lines().filter(|l| l.starts_with("kube_metrics_server_pod_cpu_usage_cores{")).count(),
        sent_mb: last.0 as f64 / 1e6,
        text_mb: text.len() as f64 / 1e6,
        idle_ms_per_s,
    }
}

/// The file in a simulator's directory that asks it to make every cache re-list
/// ([`Caches::Relisting`]); it removes the file when it has.
const RELIST: &str = "relist";

/// The file in a simulator's directory that holds how many pods a second it changes, while
/// it is there ([`Caches::Changing`]).
const CHURN_FILE: &str = "churn";

/// The file in a simulator's directory whose presence makes it refuse ReplicaSets
/// ([`Caches::Refusing`]).
const REFUSE: &str = "refuse-replicasets";

async fn run_sim(pods: usize, dir: &str) {
    let sim = Sim::start(cluster(pods), TOKEN).await.expect("sim");
    let dir = std::path::Path::new(dir);
    sim.write_files(dir, TOKEN).expect("sim files");
    let mut changed = 0usize;
    loop {
        async_std::task::sleep(Duration::from_millis(100)).await;
        if std::fs::remove_file(dir.join(RELIST)).is_ok() {
            sim.state().compact();
            sim.drop_watches();
        }
        let churn = std::fs::read_to_string(dir.join(CHURN_FILE)).ok().and_then(|r| r.trim().parse::<usize>().ok());
        let churn = churn.unwrap_or(0);
        let refuse = dir.join(REFUSE).exists();
        let mut state = sim.state();
        if refuse && !state.faults.contains_key(&Route::ReplicaSets) {
            state.faults.insert(Route::ReplicaSets, Fault::Status(403));
        } else if !refuse {
            state.faults.remove(&Route::ReplicaSets);
        }
        drop(state);
        // A tenth of the rate every tenth of a second: round the pods, each to a new IP.
        for _ in 0..churn.div_ceil(10) {
            let n = changed;
            sim.state().change_pod(n % pods, |p| p.ip = format!("10.250.{}.{}", (n >> 8) & 255, n & 255));
            changed += 1;
        }
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
            "{pods} pods: transform {:.1} ms (streamed {:.1} ms, cold memo {:.1} ms), parse floor {:.1} ms, gzip {:.1} ms ({:.1} MB)",
            t.transform_ms, t.streamed_ms, t.cold_ms, t.floor_ms, t.gzip_ms, t.gzip_mb
        );
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 10_000, 100_000, 150_000]
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    let shape = if realistic() {
        format!("realistic clusters (8 labels a pod, measured-looking usage, {} pods a ReplicaSet)", replicas())
    } else {
        "synthetic clusters".to_owned()
    };
    println!("metrics-server-prom benchmark: {shape}, 2 containers a pod, enrichers node+labels+owner");
    println!();
    println!("In process, per scrape: (a) the transform, steady state and cold, into a buffer kept between runs (rendering once) and streamed in the server's {} KiB chunks (as the server writes, before gzip); (b) the IgnoredAny parse floor; gzip of the text.", msp_server::GZIP_CHUNK / 1024);
    println!();
    println!("| pods | input MB | output MB | (a) transform ms | (a) streamed ms | (a) MB/s | (a) cold ms | (b) parse floor ms | a/b (streamed) | gzip ms (MB) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &pods in &sizes {
        let t = transform(pods);
        println!(
            "| {pods} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} ({:.2}) | {:.1} ({:.1}) |",
            t.input_mb,
            t.output_mb,
            t.transform_ms,
            t.streamed_ms,
            t.input_mb / (t.transform_ms / 1e3),
            t.cold_ms,
            t.floor_ms,
            t.transform_ms / t.floor_ms,
            t.streamed_ms / t.floor_ms,
            t.gzip_ms,
            t.gzip_mb,
        );
    }
    println!();
    println!(
        "End to end: a fresh server process per row (built beside this benchmark: the dist profile by ./scripts/bench), against the simulator (a separate process) over TLS."
    );
    println!("'text' asks as curl does; 'prometheus' as Prometheus does (OpenMetrics, gzip). 'HA pair': two such requests at once each time (latency to both answers, CPU for both). 'every cache re-listing': the simulator forgets its history and closes the watches as the scrapes begin, so each cache lists everything again beside them. 'pods changing': the simulator gives that many pods a second a new IP while the scrapes run, 2 s apart (the CPU of the changes between them counts). 'ReplicaSets refused': the simulator answers 403 to ReplicaSets from before the server starts, so the owner enricher fails in part at every scrape. 'shard i/3': MSP_SHARD__TOTAL=3.");
    println!();
    println!("| pods | request | sent MB (text MB) | (c) p50 ms | (c) p99 ms | (d) server CPU ms/scrape | (d) peak RSS MiB | (e) API req/scrape | (e) lists/scrape | connects/scrape | pods exported |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut idle = Vec::new();
    for &pods in &sizes {
        let sim = start_sim(pods).await;
        let scrapes = if pods >= 100_000 { 10 } else { 30 };
        let (one, watching) = (AtOnce::One, Caches::Watching);
        let mut cases: Vec<(Ask, Option<u32>, AtOnce, Caches, String)> = vec![
            (Ask::Text, None, one, watching, "text".into()),
            (Ask::Prometheus, None, one, watching, "prometheus".into()),
        ];
        if pods >= 10_000 {
            cases.push((Ask::Prometheus, None, AtOnce::Pair, watching, "prometheus, HA pair (2 at once)".into()));
            cases.push((Ask::Prometheus, None, one, Caches::Relisting, "prometheus, every cache re-listing".into()));
            let changing = format!("prometheus, {CHURN} pods changing a second");
            cases.push((Ask::Prometheus, None, one, Caches::Changing, changing));
            cases.push((Ask::Prometheus, None, one, Caches::Refusing, "prometheus, ReplicaSets refused (403)".into()));
            cases.extend((0..3).map(|i| (Ask::Prometheus, Some(i), one, watching, format!("prometheus, shard {i}/3"))));
        }
        let mut shard_pods = 0;
        for (ask, shard, at_once, caches, label) in cases {
            let e = end_to_end(&sim, scrapes, ask, shard, at_once, caches).await;
            if caches == Caches::Relisting {
                // Pods, nodes and ReplicaSets listed again (the synthetic pods have no Job).
                assert!(e.lists * scrapes as f64 >= 3.0, "the caches re-listed during the scrapes");
            }
            if caches == Caches::Refusing {
                // Every pod a ReplicaSet's: none has a workload.
                assert_eq!((e.series, e.pods), (0, pods), "every pod exported, without workloads");
            } else if shard.is_none() {
                assert_eq!(e.series, pods * 2, "every container series present and enriched");
            } else {
                shard_pods += e.pods;
            }
            println!(
                "| {pods} | {label} | {:.2} ({:.1}) | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
                e.sent_mb, e.text_mb, e.p50_ms, e.p99_ms, e.cpu_ms, e.rss_mib, e.requests, e.lists, e.connects, e.pods
            );
            idle.extend(e.idle_ms_per_s.map(|ms| (pods, ms)));
        }
        if pods >= 10_000 {
            assert_eq!(shard_pods, pods, "the three shards together export every pod once");
        }
    }
    println!();
    println!(
        "At rest: the server's CPU a second over {} s with no scrape, after the 'prometheus' row's scrapes (the simulator sends each of the 3 watches a bookmark every 500 ms; an API server sends one about once a minute).",
        IDLE.as_secs()
    );
    println!();
    println!("| pods | CPU ms a second |");
    println!("|---:|---:|");
    for (pods, ms) in idle {
        println!("| {pods} | {ms:.2} |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_stat_line_gives_its_user_and_system_ticks_whatever_its_command() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(CpuReading::ticks(line), Some(175));
        assert_eq!(CpuReading::ticks("4242 (cut short) S 1"), None);
        assert_eq!(CpuReading::ticks("no command at all"), None);
        let own = std::fs::read_to_string("/proc/self/stat").expect("stat");
        assert!(CpuReading::ticks(&own).is_some(), "{own}");
    }
}
