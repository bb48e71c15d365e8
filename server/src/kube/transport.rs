//! surf's HTTP backend: async-h1 over TCP, with TLS from rustls 0.23 (futures-rustls), and
//! keep-alive connections kept in a small pool.
//!
//! surf's own `h1-client-rustls` feature pins rustls 0.18, webpki 0.21 and ring 0.16, which
//! carry known vulnerabilities, so we give surf this [`HttpClient`] instead.
//!
//! async-h1's client sends one request on a stream it takes, and hands the stream to the
//! response's body reader. We give it one handle of a shared connection and keep another:
//! once the body has been read to its end (its `Content-Length`, or the last chunk) the
//! connection is at a message boundary, and our handle goes back to the pool. A body
//! dropped half-read, a response framed by closing the connection, or `Connection: close`
//! leave the connection out of the pool, and it closes with its last handle. At most
//! [`MAX_IDLE_PER_HOST`] idle connections per host are kept, each at most [`IDLE_TIMEOUT`]
//! (below the API server's and most load balancers'), and none is taken from the pool
//! [`MAX_AGE`] after it was opened (each is given 80-100% of it). A pooled connection that
//! fails before any byte of the answer arrives (the server closed it while idle) is replaced
//! by a fresh one and the request sent again, once: we only send GETs. The other idle
//! connections to that host are dropped with it: what closed one (a restart of the API
//! server, a load balancer's idle timeout) has most likely closed them all. Watches
//! (`watch=1`) always get a connection of their own and never return it.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_std::net::TcpStream;
use futures_lite::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader};
use futures_rustls::TlsConnector;
use http_client::{Config, Error, HttpClient, Request, Response};
use http_types::url::Host;
use http_types::StatusCode;
use rustls::pki_types::ServerName;

/// Idle connections kept per host.
pub const MAX_IDLE_PER_HOST: usize = 4;

/// How long an idle connection is kept (the API server's own idle timeout is 90 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection is used for requests, from when it was opened, at most: then it
/// is closed once its answer is read, and the next request opens another. Behind a load
/// balancer that spreads the next one to another API server replica: a pool kept busy by
/// scrapes would otherwise hold to one replica for good, where client-go's HTTP/2 is moved
/// on by the servers' GOAWAY (`--goaway-chance`). Each connection is given between 80% and
/// all of it (4 to 5 minutes), drawn as it opens (see [`lifetime`]), so that connections
/// opened together (as the server starts, or all at once after an API server's restart)
/// are not all replaced together ever after, as the watches' timeouts are drawn.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// A connection's time to carry requests: `max_age` less up to a fifth of it, by `random`.
fn lifetime(max_age: Duration, random: u64) -> Duration {
    max_age.mul_f64(1.0 - 0.2 * crate::random::fraction(random))
}

/// How long a TCP connect, and then a TLS handshake, may take, at most: an API server
/// answers both in milliseconds, so one that takes longer is not reached (packets dropped),
/// and is told apart from a request that got no answer within `kubernetes.timeout` (client-go
/// bounds them too: 30 s and 10 s). A client bounds them by half its request timeout where
/// that is shorter (see [`Transport::with_connect_timeout`]).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What TLS reads from TCP at a time, at most. rustls asks for a few KiB a read: a 10,000-pod
/// metrics list took about 510 `recvfrom` calls a scrape, 73 with this buffer below it, for
/// some 1-2 ms of CPU a scrape less (measured side by side, 2026-12-07; see the README's
/// Benchmark). It costs 64 KiB a connection, a few of them.
const TLS_READ_BUFFER: usize = 64 * 1024;

/// A byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connection, shared between async-h1 (which consumes one handle per request) and us.
type Conn = async_dup::Arc<async_dup::Mutex<Box<dyn Io>>>;

/// Idle connections by `scheme://host:port`, with when each stops carrying requests and
/// when it went idle.
type Idle = Mutex<HashMap<String, Vec<Pooled>>>;

/// An idle connection.
struct Pooled {
    conn: Conn,
    /// Its [`lifetime`] from when it was opened.
    ends: Instant,
    since: Instant,
}

impl Pooled {
    /// Whether it may carry another request: not idle too long, nor past its lifetime.
    fn usable(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && Instant::now() < self.ends
    }
}

/// Connects over `http://`, or `https://` with the given TLS configuration, reusing idle
/// connections.
#[derive(Clone)]
pub struct Transport {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the server's certificate is checked against (and sent as SNI), where it
    /// is not the URL's host (a kubeconfig's `tls-server-name`).
    server_name: Option<ServerName<'static>>,
    config: Config,
    idle: Arc<Idle>,
    connects: Arc<AtomicU64>,
    max_age: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("tls", &self.tls.is_some()).finish()
    }
}

impl Transport {
    /// A transport for `http://` only (`tls: None`) or for both schemes.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Transport {
            tls,
            server_name: None,
            config: Config::new(),
            idle: Arc::default(),
            connects: Arc::default(),
            max_age: MAX_AGE,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// Checks the server's certificate against `name` (a DNS name or an IP address), and
    /// sends it as SNI, rather than the URL's host: a kubeconfig's `tls-server-name`, for an
    /// API server reached at an address its certificate does not name.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// Bounds a TCP connect, and then a TLS handshake, by `timeout` (at most 5 s): within a
    /// request's own timeout, so that a connection that cannot be opened fails as such (an
    /// `Unreached` error), not as that request's timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(CONNECT_TIMEOUT);
        self
    }

    /// TCP connections opened so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// An idle connection to `key` that has not timed out nor grown too old, and when its
    /// lifetime ends; drops the ones that have.
    fn take_idle(&self, key: &str) -> Option<(Conn, Instant)> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.get_mut(key)?;
        conns.retain(Pooled::usable);
        conns.pop().map(|p| (p.conn, p.ends))
    }

    /// Drops every idle connection to `key`.
    fn forget_idle(&self, key: &str) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Opens a connection: TCP, then TLS for `https`, each within its connect timeout.
    async fn dial(&self, url: &http_types::Url) -> Result<Conn, Error> {
        let setup = |message: String| Error::new(StatusCode::BadGateway, Unreached::Setup(message));
        let host = url.host().ok_or_else(|| setup(format!("{url}: no host")))?;
        let port = url.port_or_known_default().ok_or_else(|| setup(format!("{url}: no port")))?;
        let host_str = url.host_str().unwrap_or_default();
        let addr = format!("{host_str}:{port}");
        let bound = self.connect_timeout;
        let tcp = async_std::future::timeout(bound, TcpStream::connect(&addr)).await;
        let tcp = bounded("connect to", &addr, bound, tcp)?;
        self.connects.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match url.scheme() {
            "http" => Box::new(tcp),
            "https" => {
                let tls = self.tls.clone().ok_or_else(|| setup(format!("{url}: https without a TLS configuration")))?;
                let name = match (&self.server_name, host) {
                    (Some(name), _) => name.clone(),
                    (None, Host::Domain(d)) => {
                        ServerName::try_from(d.to_owned()).map_err(|e| setup(format!("{d}: {e}")))?
                    }
                    (None, Host::Ipv4(ip)) => ServerName::IpAddress(std::net::IpAddr::V4(ip).into()),
                    (None, Host::Ipv6(ip)) => ServerName::IpAddress(std::net::IpAddr::V6(ip).into()),
                };
                let tcp = BufReader::with_capacity(TLS_READ_BUFFER, tcp);
                let stream = async_std::future::timeout(bound, TlsConnector::from(tls).connect(name, tcp)).await;
                Box::new(bounded("TLS handshake with", &addr, bound, stream)?)
            }
            other => return Err(setup(format!("{url}: unsupported scheme {other}"))),
        };
        Ok(async_dup::Arc::new(async_dup::Mutex::new(io)))
    }

    /// Sends `req` on `conn`; says whether any byte of an answer arrived.
    async fn exchange(&self, conn: &Conn, req: Request) -> (Result<Response, Error>, bool) {
        let answered = Arc::new(AtomicBool::new(false));
        let stream = Tracked { conn: conn.clone(), answered: answered.clone() };
        let result = async_h1::connect(stream, req).await;
        (result, answered.load(Ordering::Relaxed))
    }
}

/// The pool key: scheme, host and port.
fn key(url: &http_types::Url) -> String {
    format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0))
}

/// What a step of [`Transport::dial`] bounded by `bound` came to.
fn bounded<T>(
    stage: &'static str,
    addr: &str,
    bound: Duration,
    result: Result<std::io::Result<T>, async_std::future::TimeoutError>,
) -> Result<T, Error> {
    let done = result.unwrap_or_else(|_| {
        let after = format!("no answer within {bound:?}");
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, after))
    });
    done.map_err(|source| {
        Error::new(StatusCode::BadGateway, Unreached::Failed { stage, addr: addr.to_owned(), source })
    })
}

/// A request that was never sent: its connection could not be opened. The error
/// [`Transport`] returns then, so that a caller can tell it from a request that failed on
/// its way (see [`KubeError::unreached`](crate::kube::KubeError::unreached)).
#[derive(Debug)]
pub enum Unreached {
    /// TCP or TLS failed, or did not finish within the connect timeout (packets dropped: a
    /// network policy, an address nothing answers at).
    Failed {
        /// `connect to` or `TLS handshake with`.
        stage: &'static str,
        /// `host:port`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The URL or the TLS configuration cannot make a connection (no host, another scheme).
    Setup(String),
}

impl fmt::Display for Unreached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreached::Failed { stage, addr, source } => write!(f, "{stage} {addr}: {source}"),
            Unreached::Setup(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Unreached {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Unreached::Failed { source, .. } => Some(source),
            Unreached::Setup(_) => None,
        }
    }
}

/// Whether the connection can carry another request once this response's body is read:
/// the body is framed by a length or chunks, and nobody asked to close.
fn reusable(res: &Response) -> bool {
    let close = res.header("Connection").is_some_and(|v| v.iter().any(|v| v.as_str().eq_ignore_ascii_case("close")));
    let framed = res.header("Content-Length").is_some()
        || res.header("Transfer-Encoding").is_some_and(|v| v.last().as_str().eq_ignore_ascii_case("chunked"));
    framed && !close
}

#[async_trait::async_trait]
impl HttpClient for Transport {
    async fn send(&self, req: Request) -> Result<Response, Error> {
        let url = req.url().clone();
        let key = key(&url);
        let watch = url.query_pairs().any(|(k, v)| k == "watch" && (v == "1" || v == "true"));
        // Only a request without a body can be sent again as it is.
        let mut again = (req.len() == Some(0)).then(|| req.clone());
        let mut req = req;
        // Whether an idle connection may be taken: not for a watch, nor for the request sent
        // again after one failed (another idle one would most likely fail as well).
        let mut reuse = !watch;
        loop {
            let (conn, ends, pooled) = match reuse.then(|| self.take_idle(&key)).flatten() {
                Some((conn, ends)) => (conn, ends, true),
                None => {
                    let conn = self.dial(&url).await?;
                    (conn, Instant::now() + lifetime(self.max_age, crate::random::random()), false)
                }
            };
            let (result, answered) = self.exchange(&conn, req).await;
            let mut res = match result {
                Ok(res) => res,
                Err(e) if pooled && !answered => match again.take() {
                    Some(retry) => {
                        log::debug!(
                            "{}: an idle connection failed ({e}); sending on a new one",
                            crate::kube::redacted(&url)
                        );
                        self.forget_idle(&key);
                        req = retry;
                        reuse = false;
                        continue;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            };
            if !watch && reusable(&res) {
                let len = res.len();
                let body = res.take_body().into_reader();
                let idle = self.idle.clone();
                let body = ReturnOnEof { body, left: len, conn: Some(conn), ends, idle, key };
                res.set_body(http_types::Body::from_reader(BufReader::new(body), len));
            }
            return Ok(res);
        }
    }

    fn set_config(&mut self, config: Config) -> http_types::Result<()> {
        self.config = config;
        Ok(())
    }

    fn config(&self) -> &Config {
        &self.config
    }
}

/// The handle async-h1 consumes: records whether any byte was read.
struct Tracked {
    conn: Conn,
    answered: Arc<AtomicBool>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.conn).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            if *n > 0 {
                self.answered.store(true, Ordering::Relaxed);
            }
        }
        polled.map_err(closed_without_notify)
    }
}

/// A TLS connection closed without `close_notify` (an API server restarting, a proxy) ends
/// in rustls' `UnexpectedEof`, whose text links to its manual; the caches log it for each
/// watch it cuts off, so it is said in the log's words. (Over plain TCP an end is no error.)
fn closed_without_notify(e: std::io::Error) -> std::io::Error {
    if e.kind() != std::io::ErrorKind::UnexpectedEof {
        return e;
    }
    std::io::Error::new(e.kind(), "the connection was closed without a TLS close_notify (the API server restarting?)")
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.conn).poll_close(cx)
    }
}

/// A response body that puts its connection back in the pool when read to its end: its
/// last byte, when its length is known (http-types stops reading a body of known length
/// there, without asking for the end), else the end of the last chunk.
struct ReturnOnEof {
    body: Box<dyn AsyncBufRead + Unpin + Send + Sync + 'static>,
    left: Option<usize>,
    conn: Option<Conn>,
    /// Its connection's [`Pooled::ends`].
    ends: Instant,
    idle: Arc<Idle>,
    key: String,
}

impl ReturnOnEof {
    fn release(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(std::mem::take(&mut self.key)).or_default();
        conns.retain(Pooled::usable);
        let pooled = Pooled { conn, ends: self.ends, since: Instant::now() };
        // Too old, it closes as its last handle goes.
        if conns.len() < MAX_IDLE_PER_HOST && pooled.usable() {
            conns.push(pooled);
        }
    }
}

impl AsyncRead for ReturnOnEof {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.body).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            let n = *n;
            let done = match &mut self.left {
                Some(left) => {
                    *left = left.saturating_sub(n);
                    *left == 0
                }
                None => n == 0 && !buf.is_empty(),
            };
            if done {
                self.release();
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::io::{ReadExt, WriteExt};

    #[test]
    fn a_tls_connection_closed_without_close_notify_is_said_without_a_link() {
        let rustls = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        let said = closed_without_notify(rustls);
        assert_eq!(said.kind(), std::io::ErrorKind::UnexpectedEof, "still read as a lost connection");
        assert!(said.to_string().contains("without a TLS close_notify") && !said.to_string().contains("https://"));
        let reset = closed_without_notify(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset);
    }
    use async_std::net::TcpListener;

    /// A plain HTTP/1.1 server that answers `per_connection` requests on each connection
    /// (with a `Content-Length` body, or chunked, each 50 ms after it came), then closes it.
    async fn server(per_connection: usize, chunked: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        async_std::task::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { return };
                async_std::task::spawn(async move {
                    for n in 0..per_connection {
                        let mut head = Vec::new();
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        // Slow enough that two requests sent together are both in flight
                        // before either answer arrives, however loaded the machine.
                        async_std::task::sleep(std::time::Duration::from_millis(50)).await;
                        let body = format!("answer {n}");
                        let res = if chunked {
                            format!(
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                                body.len()
                            )
                        } else {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                        };
                        if tcp.write_all(res.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    async fn get(t: &Transport, url: &str) -> String {
        let req = Request::new(http_types::Method::Get, http_types::Url::parse(url).expect("url"));
        let mut res = t.send(req).await.expect("send");
        res.body_string().await.expect("body")
    }

    #[test]
    fn a_request_that_never_reached_the_server_says_so() {
        async_std::task::block_on(async {
            // A port nothing listens on (bound, then closed).
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
            let t = Transport::new(None);
            let client = surf::Client::with_http_client(t);
            let e = client.get(format!("http://127.0.0.1:{port}/")).await.expect_err("refused");
            let unreached = e.downcast_ref::<Unreached>().map(ToString::to_string).unwrap_or_default();
            assert!(unreached.starts_with(&format!("connect to 127.0.0.1:{port}: ")), "{e}");
        });
    }

    #[test]
    fn a_tls_handshake_that_never_ends_is_unreached_after_the_connect_timeout() {
        async_std::task::block_on(async {
            // Takes the connection and says nothing: a TLS handshake waits for its answer.
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let held = async_std::task::spawn(async move { listener.accept().await.map(|(s, _)| s) });
            let tls = crate::kube::client_config(crate::kube::Verify::Insecure, None).expect("tls");
            let t = Transport::new(Some(tls)).with_connect_timeout(Duration::from_millis(300));
            assert_eq!(
                Transport::new(None).with_connect_timeout(Duration::from_secs(8)).connect_timeout,
                CONNECT_TIMEOUT
            );
            let client = surf::Client::with_http_client(t);
            let e = client.get(format!("https://127.0.0.1:{port}/")).await.expect_err("no handshake");
            let Some(Unreached::Failed { stage, source, .. }) = e.downcast_ref::<Unreached>() else { panic!("{e}") };
            assert_eq!((*stage, source.kind()), ("TLS handshake with", std::io::ErrorKind::TimedOut), "{e}");
            assert!(e.to_string().ends_with("no answer within 300ms"), "{e}");
            drop(held.await);
        });
    }

    #[test]
    fn connections_are_reused_once_the_body_is_read() {
        async_std::task::block_on(async {
            for chunked in [false, true] {
                let url = server(100, chunked).await;
                let t = Transport::new(None);
                for n in 0..5 {
                    assert_eq!(get(&t, &url).await, format!("answer {n}"), "chunked: {chunked}");
                }
                assert_eq!(t.connects(), 1, "chunked: {chunked}");
                // Two at once need two connections; both are kept.
                let (a, b) = futures_lite::future::zip(get(&t, &url), get(&t, &url)).await;
                assert!(a.starts_with("answer") && b.starts_with("answer"));
                assert_eq!(t.connects(), 2);
                get(&t, &url).await;
                get(&t, &url).await;
                assert_eq!(t.connects(), 2, "chunked: {chunked}");
            }
        });
    }

    #[test]
    fn connections_are_given_lifetimes_spread_below_max_age() {
        assert_eq!(lifetime(MAX_AGE, 0), MAX_AGE);
        assert!(lifetime(MAX_AGE, u64::MAX) >= MAX_AGE * 4 / 5);
        let drawn: std::collections::BTreeSet<Duration> =
            (0..200).map(|_| lifetime(MAX_AGE, crate::random::random())).collect();
        assert!(drawn.iter().all(|d| (MAX_AGE * 4 / 5..=MAX_AGE).contains(d)), "{drawn:?}");
        assert!(drawn.len() > 100, "spread: {drawn:?}");
        let below = |secs: u64| drawn.iter().filter(|d| d.as_secs() < secs).count();
        assert!(below(260) > 0 && below(280) < 200, "over the whole span: {drawn:?}");
    }

    #[test]
    fn a_connection_past_its_age_is_not_reused() {
        async_std::task::block_on(async {
            let url = server(100, false).await;
            // A lifetime of 0.8 to 1 s (see `lifetime`).
            let t = Transport { max_age: Duration::from_secs(1), ..Transport::new(None) };
            get(&t, &url).await;
            get(&t, &url).await;
            assert_eq!(t.connects(), 1, "reused while young");
            async_std::task::sleep(Duration::from_millis(1050)).await;
            get(&t, &url).await;
            assert_eq!(t.connects(), 2, "too old to take from the pool: a new one");
            get(&t, &url).await;
            assert_eq!(t.connects(), 2, "the new one is reused");
        });
    }

    #[test]
    fn a_connection_closed_while_idle_is_replaced() {
        async_std::task::block_on(async {
            let url = server(1, false).await;
            let t = Transport::new(None);
            for _ in 0..3 {
                assert_eq!(get(&t, &url).await, "answer 0");
                async_std::task::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(t.connects(), 3, "a fresh connection after each close");
        });
    }

    #[test]
    fn a_request_sent_again_after_an_idle_connection_failed_goes_on_a_new_one() {
        async_std::task::block_on(async {
            let url = server(1, false).await;
            let t = Transport::new(None);
            // Two connections, both kept, both then closed by the server (as in a restart).
            let (a, b) = futures_lite::future::zip(get(&t, &url), get(&t, &url)).await;
            assert_eq!((a.as_str(), b.as_str()), ("answer 0", "answer 0"));
            async_std::task::sleep(Duration::from_millis(50)).await;
            // The first idle one fails; the request goes again on a new connection, not on
            // the other idle one, which is dropped too.
            assert_eq!(get(&t, &url).await, "answer 0");
            assert_eq!(t.connects(), 3);
            async_std::task::sleep(Duration::from_millis(50)).await;
            assert_eq!(get(&t, &url).await, "answer 0");
            assert_eq!(t.connects(), 4, "the third idle one failed, and nothing else was tried");
        });
    }

    #[test]
    fn a_body_dropped_half_read_keeps_its_connection_out_of_the_pool() {
        async_std::task::block_on(async {
            let url = server(100, false).await;
            let t = Transport::new(None);
            let req = Request::new(http_types::Method::Get, http_types::Url::parse(&url).expect("url"));
            drop(t.send(req).await.expect("send"));
            assert_eq!(get(&t, &url).await, "answer 0", "a new connection: its first answer");
            assert_eq!(t.connects(), 2);
        });
    }
}
