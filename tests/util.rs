//! Helpers for the integration tests: a simulator plus our server on free ports, an HTTP
//! client, promtool, and a small exposition parser to check grouping and uniqueness.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use msp_server::RawConfig;
use msp_server::Transport;
use msp_server::{Exporter, Registry};
use msp_sim::{Sim, SimCluster};

/// The token the simulator starts with.
pub const TOKEN: &str = "test-token-1";

/// A running simulator and server. Dropped, it asks the server to stop first (fields drop in
/// order), then removes its files; the server stops within about 100 ms, and reads no file
/// meanwhile but a token it may re-read, and which it keeps when it is gone.
pub struct Harness {
    _serving: Serving,
    /// The simulated API server.
    pub sim: Sim,
    /// `http://127.0.0.1:PORT` of our server.
    pub url: String,
    /// The exporter behind the server.
    pub exporter: Arc<Exporter>,
    /// Where the CA and token files are: removed with the harness.
    pub dir: TempDir,
}

/// A server in process, shut down when this is dropped: it then lets go of its exporter,
/// whose caches stop (their watches on the simulator close), so that the tests after the
/// one that started it do not share the machine with it.
pub struct Serving(msp_server::Shutdown);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.request();
    }
}

/// A fresh directory under the system temp dir, removed (with what it holds) when this is
/// dropped: a test keeps it for as long as it, or a server it started, reads the files.
pub struct TempDir(tempfile::TempDir);

impl std::ops::Deref for TempDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh [`TempDir`], its name beginning `msp-it-{name}-`.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir(tempfile::Builder::new().prefix(&format!("msp-it-{name}-")).tempdir().expect("temp dir"))
}

/// Starts a simulator of `cluster`, writes its CA and token to files, and returns a
/// configuration pointing at it (as the environment variables would).
pub async fn sim_and_config(cluster: SimCluster) -> (Sim, RawConfig, TempDir) {
    sim_and_config_under(cluster, "").await
}

/// [`sim_and_config`], the simulator serving under `prefix` (as behind a proxy) and the
/// configured URL ending in it.
pub async fn sim_and_config_under(cluster: SimCluster, prefix: &str) -> (Sim, RawConfig, TempDir) {
    let sim = Sim::start_under(cluster, TOKEN, prefix).await.expect("simulator");
    let dir = temp_dir("h");
    std::fs::write(dir.join("ca.crt"), &sim.pki.ca_pem).expect("ca");
    std::fs::write(dir.join("token"), TOKEN).expect("token");
    let mut raw = RawConfig { listen: "127.0.0.1:0".into(), ..RawConfig::default() };
    raw.kubernetes.api_url = Some(sim.url.clone());
    raw.kubernetes.ca_file = Some(dir.join("ca.crt"));
    raw.kubernetes.token_file = Some(dir.join("token"));
    (sim, raw, dir)
}

/// Simulator plus our server (in process), configured by `tweak`.
pub async fn start(cluster: SimCluster, tweak: impl FnOnce(&mut RawConfig)) -> Harness {
    start_with(cluster, tweak, "").await
}

/// [`start`], the simulator set up by `sim` first (its faults, what it streams...).
pub async fn start_sim(
    cluster: SimCluster,
    sim: impl FnOnce(&mut msp_sim::SimState),
    tweak: impl FnOnce(&mut RawConfig),
) -> Harness {
    let (s, raw, dir) = sim_and_config(cluster).await;
    sim(&mut s.state());
    serve_for((s, raw, dir), tweak, "").await
}

/// [`start`], plus enricher sections as TOML (`[labels]`...).
pub async fn start_with(cluster: SimCluster, tweak: impl FnOnce(&mut RawConfig), sections: &str) -> Harness {
    serve_for(sim_and_config(cluster).await, tweak, sections).await
}

/// [`start`], the simulator serving under `prefix` (as behind a proxy).
pub async fn start_under(cluster: SimCluster, prefix: &str) -> Harness {
    serve_for(sim_and_config_under(cluster, prefix).await, |_| {}, "").await
}

/// Our server (in process) for a simulator and configuration from [`sim_and_config`],
/// set up beforehand as a test needs, configured by `tweak` and `sections`.
pub async fn serve_for(
    (sim, mut raw, dir): (Sim, RawConfig, TempDir),
    tweak: impl FnOnce(&mut RawConfig),
    sections: &str,
) -> Harness {
    use figment::providers::{Format as _, Serialized, Toml};
    tweak(&mut raw);
    let registry = Registry::builtin();
    let figment = figment::Figment::from(Serialized::defaults(&raw)).merge(Toml::string(sections));
    let config = raw.check_with(&registry, &figment).expect("config");
    let exporter = Arc::new(msp_server::build(&config).expect("build"));
    let listener = msp_server::listen("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = msp_server::app(exporter.clone(), None);
    let shutdown = msp_server::Shutdown::default();
    async_std::task::spawn(msp_server::serve(listener, app, shutdown.clone()));
    Harness { sim, url, dir, exporter, _serving: Serving(shutdown) }
}

/// The exporter for `raw` and the web-config file `web_yml`, as `main` builds them.
pub fn exporter_and_web_config(raw: RawConfig, web_yml: PathBuf) -> (Arc<Exporter>, Arc<msp_server::WebConfigFile>) {
    let config = raw.check(&Registry::builtin()).expect("config");
    let exporter = Arc::new(msp_server::build(&config).expect("build"));
    (exporter, Arc::new(msp_server::WebConfigFile::open(web_yml).expect("web config")))
}

/// A fresh test PKI, its server certificate and key written to `dir` as `web.crt` and
/// `web.key`, for a web-config's `tls_server_config`.
pub fn write_web_tls(dir: &std::path::Path) -> msp_sim::TestPki {
    let pki = msp_sim::TestPki::generate().expect("pki");
    std::fs::write(dir.join("web.crt"), &pki.server_cert_pem).expect("crt");
    std::fs::write(dir.join("web.key"), &pki.server_key_pem).expect("key");
    pki
}

/// Our server (in process) for `raw`, behind the web-config file `web_yml` (TLS, basic auth,
/// re-read when it changes), as `main` serves it: the address it listens on, and the server.
pub async fn serve_web_config(raw: RawConfig, web_yml: PathBuf) -> (std::net::SocketAddr, Serving) {
    let (exporter, web) = exporter_and_web_config(raw, web_yml);
    let listener = msp_server::listen("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = msp_server::app(exporter, Some(web.clone()));
    let shutdown = msp_server::Shutdown::default();
    async_std::task::spawn(msp_server::serve_with(listener, app, shutdown.clone(), Some(web)));
    (addr, Serving(shutdown))
}

/// A response: status, content type, body.
pub struct Got {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Content-Encoding`.
    pub content_encoding: String,
    /// Body text (decompressed when gzipped).
    pub body: String,
    /// The raw body bytes.
    pub raw: Vec<u8>,
}

/// `GET url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    let client = surf::Client::with_http_client(Transport::new(None));
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut res = req.await.expect("request");
    let content_type = res.header("Content-Type").map(|h| h.as_str().to_owned()).unwrap_or_default();
    let content_encoding = res.header("Content-Encoding").map(|h| h.as_str().to_owned()).unwrap_or_default();
    let raw = res.body_bytes().await.expect("body");
    let body = if content_encoding == "gzip" {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text).expect("gunzip");
        text
    } else {
        String::from_utf8(raw.clone()).expect("utf-8")
    };
    Got { status: res.status().into(), content_type, content_encoding, body, raw }
}

/// `GET /metrics`, asserting 200.
pub async fn scrape(h: &Harness) -> String {
    let got = get(&format!("{}/metrics", h.url), &[]).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

/// Scrapes until `ready` holds for the parsed samples, up to `within`; returns them.
pub async fn scrape_until(h: &Harness, within: std::time::Duration, ready: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let started = std::time::Instant::now();
    loop {
        let samples = parse(&scrape(h).await);
        if ready(&samples) {
            return samples;
        }
        if started.elapsed() >= within {
            let pods: Vec<String> = samples
                .iter()
                .filter(|s| s.name == "kube_metrics_server_pod_cpu_usage_cores")
                .map(|s| {
                    format!(
                        "{}/{} node={:?}",
                        s.label("namespace").unwrap_or(""),
                        s.label("pod").unwrap_or(""),
                        s.label("node")
                    )
                })
                .collect();
            panic!("not ready within {within:?}; pods: {pods:?}");
        }
        async_std::task::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runs `promtool check metrics` on `text`; panics with its output if it objects.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run .ci/run, or apt-get install prometheus");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics failed:\n{report}");
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses text-format samples, and checks as it goes: every family's samples are together
/// after its TYPE line, no series repeats, label names are unique in a series.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current = String::new();
    let mut series = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().expect("family").to_owned();
            assert!(finished.insert(family.clone()), "family {family} appears twice");
            current = family;
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, rest) = line.split_at(line.find(['{', ' ']).expect("sample"));
        assert!(
            name == current || name.strip_suffix("_total") == Some(&current) || name.starts_with(&current),
            "{name} outside its family {current}"
        );
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(r) => parse_labels_from(r),
            None => (Vec::new(), rest),
        };
        let value: f64 = match rest.trim().split(' ').next().expect("value") {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        let mut names: Vec<&String> = labels.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), labels.len(), "repeated label in {line}");
        let key = format!("{name}{labels:?}");
        assert!(series.insert(key), "duplicate series {line}");
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

/// Parses `name="value",...}` up to the closing brace; returns the labels and what follows.
fn parse_labels_from(s: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    let mut pos = 0;
    loop {
        let eq = s[pos..].find("=\"").expect("=") + pos;
        let name = s[pos..eq].to_owned();
        let mut value = String::new();
        let mut i = eq + 2;
        let bytes = s.as_bytes();
        loop {
            match bytes[i] {
                b'\\' => {
                    value.push(match bytes[i + 1] {
                        b'n' => '\n',
                        c => c as char,
                    });
                    i += 2;
                }
                b'"' => break,
                _ => {
                    let c = s[i..].chars().next().expect("char");
                    value.push(c);
                    i += c.len_utf8();
                }
            }
        }
        labels.push((name, value));
        match bytes[i + 1] {
            b',' => pos = i + 2,
            b'}' => return (labels, &s[i + 2..]),
            c => panic!("unexpected {:?}", c as char),
        }
    }
}

/// Samples of one metric, keyed by their labels rendered `k=v,...`.
pub fn by_labels<'a>(samples: &'a [Sample], name: &str) -> BTreeMap<String, &'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| (s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), s))
        .collect()
}

/// The one sample of `name` whose labels include all of `want`.
pub fn find<'a>(samples: &'a [Sample], name: &str, want: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> =
        samples.iter().filter(|s| s.name == name && want.iter().all(|(k, v)| s.label(k) == Some(v))).collect();
    assert_eq!(found.len(), 1, "{name} {want:?}: {found:?}");
    found[0]
}

/// A pod for test clusters.
pub fn pod(ns: &str, name: &str, node: &str, ip: &str, containers: &[(&str, &str, &str)]) -> msp_sim::SimPod {
    msp_sim::SimPod {
        namespace: ns.into(),
        name: name.into(),
        node: node.into(),
        ip: ip.into(),
        host_ip: "192.0.2.1".into(),
        labels: vec![("app".into(), name.into())],
        owner: None,
        mirror: false,
        containers: containers
            .iter()
            .map(|(n, c, m)| msp_sim::SimContainer { name: n.to_string(), cpu: c.to_string(), memory: m.to_string() })
            .collect(),
        listed: true,
    }
}

/// A node for test clusters.
pub fn node(name: &str, ip: &str) -> msp_sim::SimNode {
    msp_sim::SimNode {
        name: name.into(),
        ip: ip.into(),
        labels: vec![],
        cpu: "250000000n".into(),
        memory: "1Gi".into(),
    }
}

/// The `metrics-server-prom` binary beside this test (`./scripts/test` builds it first).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("metrics-server-prom");
    assert!(bin.exists(), "{} is missing: run ./scripts/test (or cargo build -p msp-server first)", bin.display());
    bin
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768-60999 unless
/// `net.ipv4.ip_local_port_range` says otherwise), which the kernel picks from for `bind` to
/// port 0 and for outgoing connections.
const PORTS: std::ops::Range<u16> = 10_000..32_000;

/// Ports a test process takes in turn, from a block chosen by its pid.
const BLOCK: u16 = 200;

/// A TCP port on 127.0.0.1 that was free when asked, for a child to bind later. Taken
/// from `PORTS` in turn (no two calls in a process get the same one) and checked free,
/// not from the kernel's `bind` to port 0: a port the kernel picked and freed can be picked
/// again, for another test's listener or as a connection's own port, before the child binds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    let blocks = u32::from((PORTS.end - PORTS.start) / BLOCK);
    let first = std::process::id() % blocks * u32::from(BLOCK);
    let span = u32::from(PORTS.end - PORTS.start);
    for _ in 0..span {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        let port = PORTS.start + u16::try_from((first + n) % span).expect("within the range");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORTS:?}");
}

/// A child process stopped (and reaped) when dropped: asked with SIGTERM, as Kubernetes and
/// a terminal ask, so that it cleans up after itself (the demo's CA and token directory),
/// then killed if it has not stopped within 3 s.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        use rustix::process::{kill_process, Pid, Signal};
        // Reaped already (its id may be another process' by now): nothing to stop.
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let asked = Pid::from_raw(self.0.id() as i32).map(|pid| kill_process(pid, Signal::TERM));
        if matches!(asked, Some(Ok(()))) {
            let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while std::time::Instant::now() < end {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary pointed at `sim` (its CA and token files in `dir`), listening on
/// 127.0.0.1:`port`, with nothing else in its environment: callers add what they test.
pub fn server_command(sim: &Sim, dir: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("MSP_KUBERNETES__API_URL", &sim.url)
        .env("MSP_KUBERNETES__TOKEN_FILE", dir.join("token"))
        .env("MSP_KUBERNETES__CA_FILE", dir.join("ca.crt"))
        .env("MSP_LISTEN", format!("127.0.0.1:{port}"));
    cmd
}

/// The server binary against `sim` ([`server_command`]), its stderr in `dir/stderr.log`,
/// once it listens: its port, its log and the process (stopped when dropped).
pub async fn spawn_server(sim: &Sim, dir: &std::path::Path) -> (u16, PathBuf, Killed) {
    let port = free_port();
    let log = dir.join("stderr.log");
    let child = Killed(spawn_logging(&mut server_command(sim, dir, port), &log));
    wait_listening(port).await;
    (port, log, child)
}

/// Starts `cmd` with its output discarded and its stderr written to `log`.
pub fn spawn_logging(cmd: &mut Command, log: &std::path::Path) -> std::process::Child {
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(log).expect("log")).spawn().expect("spawn")
}

/// `program --demo` on 127.0.0.1:`port`, with nothing else in its environment and its
/// output discarded, to add to before it is spawned.
pub fn demo_command(program: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--demo")
        .env_clear()
        .env("MSP_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts [`demo_command`].
pub fn spawn_demo(program: &std::path::Path, port: u16) -> std::process::Child {
    demo_command(program, port).spawn().unwrap_or_else(|e| panic!("{}: {e}", program.display()))
}

/// Waits (up to 30 s: a warm-up on two busy cores) until `base`/readyz answers 200, each
/// answer before it 503; returns the last answer.
pub async fn wait_ready(base: &str) -> Got {
    let mut ready = get(&format!("{base}/readyz"), &[]).await;
    for _ in 0..1200 {
        if ready.status == 200 {
            break;
        }
        assert_eq!(ready.status, 503, "{}", ready.body);
        async_std::task::sleep(std::time::Duration::from_millis(25)).await;
        ready = get(&format!("{base}/readyz"), &[]).await;
    }
    ready
}

/// Waits (up to 5 s) until something listens on 127.0.0.1:`port`.
pub async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if async_std::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        async_std::task::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}

/// Waits (up to `within`) until the log at `log` holds `needle`; the whole log then.
pub async fn wait_logged(log: &std::path::Path, needle: &str, within: std::time::Duration) -> String {
    let started = std::time::Instant::now();
    loop {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        if logged.contains(needle) {
            return logged;
        }
        assert!(started.elapsed() < within, "{needle:?} was never logged:\n{logged}");
        async_std::task::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits (up to `within`) until `holds` does, else fails saying `what` never happened.
pub async fn wait_until(what: &str, within: std::time::Duration, holds: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !holds() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        async_std::task::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Writes an executable script (`#!/bin/bash` plus `body`) to `path`.
pub fn write_script(path: &std::path::Path, body: &str) {
    std::fs::write(path, format!("#!/bin/bash\n{body}\n")).expect("script");
    let chmod = Command::new("chmod").arg("+x").arg(path).status().expect("chmod");
    assert!(chmod.success());
}
