//! The accept loop: HTTP/1.1 (async-h1) for a tide app, over TLS when a web-config file
//! says so, with graceful shutdown: on the shutdown signal it stops accepting, lets
//! requests in flight finish (up to a grace period), and returns. Authorization is the
//! app's own middleware ([`crate::auth`]); this loop only marks requests whose client
//! presented a verified certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{OverTls, VerifiedClient};
use crate::http1::Limits;
use crate::waiting::{Closed, Place, Waiting};
use crate::web::WebConfigFile;
use async_std::net::TcpListener;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::StreamExt;

/// How long in-flight requests get after shutdown starts.
pub const GRACE: Duration = Duration::from_secs(4);

/// Connections served at once. Each holds its buffers (80 KiB) and a file descriptor, so
/// without a bound a client opening connections and sending nothing could spend them all.
/// Past it, the connection that has waited longest for a request (or in its TLS
/// handshake) is closed to make room for the new one (see `waiting.rs`); when every one is
/// answering a request, the new one is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 512;

/// Connections the kernel queues, made but not yet accepted. std asks for 128, so a burst
/// of more than that (clients holding [`MAX_CONNECTIONS`], and Prometheus reconnecting
/// behind them) overflows the queue while the accept loop is busy: the kernel drops the
/// overflow's handshakes and they come in later, out of order, and the one that had waited
/// longest is no longer the oldest accepted. Twice the bound (nginx asks for 511, Go for
/// `somaxconn`); the kernel caps it at `net.core.somaxconn` (4096 since Linux 5.4, 128
/// before).
pub const BACKLOG: usize = 2 * MAX_CONNECTIONS;

/// Whether binding failed for want of IPv6 in the kernel.
fn no_ipv6(e: &std::io::Error) -> bool {
    let errno = rustix::io::Errno::from_io_error(e);
    errno == Some(rustix::io::Errno::AFNOSUPPORT) || errno == Some(rustix::io::Errno::ADDRNOTAVAIL)
}

/// The most a listener may queue, as Linux says (`net.core.somaxconn`), if it says.
fn somaxconn() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?.trim().parse().ok()
}

/// A listener on `addr` with a queue of [`BACKLOG`] connections, for [`serve`] and
/// [`serve_with`]; a warning if the kernel allows fewer.
///
/// `[::]` (the default's) is every address, IPv6 and IPv4, as Go's `:9100` is for
/// node_exporter and `::` for kube-state-metrics: an IPv6 socket takes IPv4 connections too
/// unless `net.ipv6.bindv6only` is 1, which is warned of. Where the kernel has no IPv6
/// (booted with `ipv6.disable=1`), it listens on `0.0.0.0`, and says so.
pub async fn listen(addr: impl async_std::net::ToSocketAddrs) -> std::io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().await?.collect();
    let every = |a: &SocketAddr| a.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let listener = match TcpListener::bind(&addrs[..]).await {
        Err(e) if no_ipv6(&e) && !addrs.is_empty() && addrs.iter().all(every) => {
            let v4: Vec<SocketAddr> =
                addrs.iter().map(|a| SocketAddr::from((Ipv4Addr::UNSPECIFIED, a.port()))).collect();
            log::info!("IPv6 is not available here ({e}): listening on IPv4 only, {}", v4[0]);
            TcpListener::bind(&v4[..]).await?
        }
        bound => bound?,
    };
    if listener.local_addr().is_ok_and(|a| every(&a))
        && matches!(rustix::net::sockopt::ipv6_v6only(&listener), Ok(true))
    {
        log::warn!(
            "net.ipv6.bindv6only is 1, so [::] takes IPv6 connections only: set listen (MSP_LISTEN) to \
             0.0.0.0:PORT for IPv4"
        );
    }
    // A second listen(2) on a listening socket sets its backlog (Linux, macOS, the BSDs).
    rustix::net::listen(&listener, BACKLOG as i32)?;
    if let Some(most) = somaxconn() {
        if most < BACKLOG {
            log::warn!(
                "net.core.somaxconn is {most}: the kernel queues at most {most} connections not yet accepted, \
                 not {BACKLOG}, so a burst of connections may be accepted late and out of order"
            );
        }
    }
    Ok(listener)
}

/// Answers a plain HTTP request sent to the TLS port as Go's servers do (400, and why),
/// rather than with a TLS alert that a client reads as a broken response; then reads what
/// the client still sends, for a moment, so that closing does not reset the answer away.
async fn plain_http_to_https(mut stream: async_std::net::TcpStream) {
    use futures_lite::io::AsyncWriteExt;
    const ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
        connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    if stream.write_all(ANSWER).await.is_ok() {
        crate::http1::linger(&mut stream, Duration::from_secs(1)).await;
    }
}

/// One connection counted in [`serve_with`]'s open connections, until it is dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A warning given at most once a second, saying how many were held back since.
#[derive(Default)]
struct Throttled {
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    /// `Some(" (N more since the last report)")`, or `Some("")`, when it is time to log;
    /// `None` (and one more held back) when not.
    fn due(&mut self) -> Option<String> {
        if self.last_log.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            self.suppressed += 1;
            return None;
        }
        let more = if self.suppressed > 0 {
            format!(" ({} more since the last report)", self.suppressed)
        } else {
            String::new()
        };
        self.last_log = Some(Instant::now());
        self.suppressed = 0;
        Some(more)
    }
}

/// Set to stop serving; [`signals`] sets it on SIGTERM and SIGINT.
///
/// Those waiting for it are woken when it is set, not polled: an idle server wakes for
/// nothing (polled every 50 ms, until 2026-12-07, its two waiters cost some 10 ms of CPU a
/// second on a 2-core VM, doing nothing).
#[derive(Debug, Clone)]
pub struct Shutdown {
    requested: Arc<AtomicBool>,
    /// Nothing is sent on it: [`Shutdown::request`] closes it, which wakes every receiver.
    started: (async_std::channel::Sender<()>, async_std::channel::Receiver<()>),
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { requested: Arc::default(), started: async_std::channel::bounded(1) }
    }
}

impl Shutdown {
    /// Whether shutdown has started.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Starts shutdown.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.started.0.close();
    }

    /// Until shutdown has started.
    pub(crate) async fn wait(&self) {
        // Nothing is ever sent: `recv` ends when the channel is closed.
        while !self.requested() && self.started.1.recv().await.is_ok() {}
    }
}

/// A [`Shutdown`] set by SIGTERM or SIGINT.
///
/// The signal handler sets the flag and writes a byte to a socket (the self-pipe pattern:
/// nothing else is safe in a handler); a task reading the socket then wakes the waiters.
pub fn signals() -> std::io::Result<Shutdown> {
    let s = Shutdown::default();
    let (read, write) = UnixStream::pair()?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, s.requested.clone())?;
        signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
    }
    async_std::task::spawn(wake_on_signals(read, async_io::Async::new, s.clone()));
    Ok(s)
}

/// Requests `shutdown` whenever a byte arrives on `read`, the signals' socket, once
/// `register`ed with the reactor. It keeps the socket open for good: a signal after the first
/// (a second Ctrl-C) must not find its peer closed (the handler's write would raise SIGPIPE,
/// which a program that embeds us may not ignore). If the socket cannot be registered or
/// read, the flag the handlers set all the same is looked at once a second, as a last resort.
async fn wake_on_signals(
    read: UnixStream,
    register: fn(UnixStream) -> std::io::Result<async_io::Async<UnixStream>>,
    shutdown: Shutdown,
) {
    use futures_lite::AsyncReadExt;
    // A second handle, held for good: the socket stays open whatever becomes of the one read.
    let _held = read.try_clone();
    let failed = match register(read) {
        Ok(mut read) => {
            let mut byte = [0u8];
            // Only a signal writes to it, and its write end is never closed.
            loop {
                match read.read(&mut byte).await {
                    Ok(1) => shutdown.request(),
                    Ok(n) => break format!("{n} bytes read"),
                    Err(e) => break e.to_string(),
                }
            }
        }
        Err(e) => format!("registering it: {e}"),
    };
    log::warn!("reading the signals' socket: {failed}; SIGTERM and SIGINT are looked for once a second");
    while !shutdown.requested() {
        async_std::task::sleep(Duration::from_secs(1)).await;
    }
    shutdown.request();
    std::future::pending::<()>().await
}

/// Serves `app` on `listener` until `shutdown`, then drains requests in flight.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    app: tide::Server<S>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, None).await
}

/// Serves one connection; `verified`: its TLS client certificate was verified.
async fn connection<S, IO>(
    io: IO,
    app: tide::Server<S>,
    in_flight: Arc<AtomicUsize>,
    verified: bool,
    scheme: &'static str,
    place: &Place,
) where
    S: Clone + Send + Sync + 'static,
    IO: AsyncRead + AsyncWrite + Clone + Send + Sync + Unpin + 'static,
{
    let mark = |req: &mut http_types::Request| {
        if scheme == "https" {
            req.ext_mut().insert(OverTls);
        }
        if verified {
            req.ext_mut().insert(VerifiedClient);
        }
    };
    crate::http1::serve_connection(io, app, Limits::default(), scheme, mark, &in_flight, place).await;
}

/// Accept errors back off (EMFILE and ENFILE would otherwise spin a core) and are logged
/// at most once a second.
#[derive(Default)]
struct AcceptErrors {
    delay: Duration,
    log: Throttled,
}

impl AcceptErrors {
    async fn failed(&mut self, e: &std::io::Error) {
        if let Some(more) = self.log.due() {
            log::warn!("accept: {e}{more}; backing off {:?}", self.delay.max(Duration::from_millis(10)));
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        async_std::task::sleep(self.delay).await;
    }

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// [`serve`], over TLS when the web-config file (re-read when it changes) configures it.
pub async fn serve_with<S: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    app: tide::Server<S>,
    shutdown: Shutdown,
    web: Option<Arc<WebConfigFile>>,
) -> std::io::Result<()> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let waiting = Arc::new(Waiting::default());
    // Connections closed at MAX_CONNECTIONS: the new one, or one waiting to make room.
    let mut refused = Throttled::default();
    // Apart, so that one kind of closing never hides the other in the other's count.
    let (mut made_room, mut made_room_answering) = (Throttled::default(), Throttled::default());
    let mut errors = AcceptErrors::default();
    // Failed TLS handshakes, as Go's servers log them ("TLS handshake error from ..."): a
    // probe or monitor speaking plain HTTP, or without the client certificate asked for.
    let handshakes = Arc::new(std::sync::Mutex::new(Throttled::default()));
    let mut incoming = listener.incoming();
    loop {
        let next = futures_lite::future::or(async { Some(incoming.next().await) }, async {
            shutdown.wait().await;
            None
        });
        let stream = match next.await {
            None | Some(None) => break,
            Some(Some(Ok(s))) => {
                errors.succeeded();
                s
            }
            Some(Some(Err(e))) => {
                errors.failed(&e).await;
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let Some(closed) = waiting.close_longest() else {
                if let Some(more) = refused.due() {
                    log::warn!(
                        "{MAX_CONNECTIONS} connections open, each answering a request (or pipelining for under \
                         a second): closed a new one{more}"
                    );
                }
                drop(stream);
                continue;
            };
            let (throttle, which) = match closed {
                Closed::Waiting => {
                    (&mut made_room, "the one that had waited longest (for a request, or on its client)")
                }
                Closed::Answering => (
                    &mut made_room_answering,
                    "none waiting, the one that had been answering pipelined requests longest",
                ),
            };
            if let Some(more) = throttle.due() {
                log::warn!("{MAX_CONNECTIONS} connections open: closed {which}{more}");
            }
        }
        open.fetch_add(1, Ordering::SeqCst);
        let guard = Open(open.clone());
        let place = waiting.join();
        let (app, in_flight) = (app.clone(), in_flight.clone());
        let tls = web.as_ref().and_then(|w| w.current()).and_then(|c| c.tls.clone());
        let handshakes = handshakes.clone();
        async_std::task::spawn(async move {
            let _open = guard;
            let _ = stream.set_nodelay(true);
            match tls {
                // A handshake gets the time a request head gets: a client that connects and
                // says nothing must not hold the connection.
                // Closed for room, it ends too.
                Some(tls) => {
                    let probe_peer = stream.peer_addr().ok();
                    let probe = stream.clone();
                    let accept = async move {
                        // A TLS connection begins with a handshake record (0x16); plain HTTP
                        // with its method, in capitals.
                        let mut first = [0u8; 1];
                        match probe.peek(&mut first).await {
                            Ok(1) if first[0].is_ascii_uppercase() => return Err(Some(probe)),
                            // Closed before a byte: a check that the port is open (a tcpSocket
                            // probe, a load balancer's, which may close with a reset), not a
                            // handshake that failed.
                            Ok(0) => return Err(None),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::ConnectionAborted
                                        | std::io::ErrorKind::UnexpectedEof
                                ) =>
                            {
                                return Err(None)
                            }
                            _ => {}
                        }
                        Ok(futures_rustls::TlsAcceptor::from(tls).accept(stream).await)
                    };
                    let handshake = async_std::future::timeout(Limits::default().head, async {
                        match accept.await {
                            Ok(accepted) => accepted.map_err(Some),
                            Err(Some(plain)) => {
                                plain_http_to_https(plain).await;
                                Err(Some(std::io::Error::other("plain HTTP, answered 400")))
                            }
                            Err(None) => Err(None),
                        }
                    });
                    let handshake = futures_lite::future::or(async { Some(handshake.await) }, async {
                        place.closed().await;
                        None
                    });
                    match handshake.await {
                        Some(Ok(Ok(tls))) => {
                            let verified = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                            let shared = async_dup::Arc::new(async_dup::Mutex::new(tls));
                            connection(shared, app, in_flight, verified, "https", &place).await
                        }
                        Some(Ok(Err(None))) => log::debug!("TLS: a connection closed before a byte"),
                        Some(Ok(Err(Some(e)))) => {
                            let peer = probe_peer.map_or_else(|| "?".to_owned(), |a| a.to_string());
                            let due = handshakes.lock().map_or(None, |mut t| t.due());
                            if let Some(more) = due {
                                log::warn!("TLS handshake error from {peer}: {e}{more}");
                            }
                        }
                        Some(Err(_)) => log::debug!("TLS handshake: not done within {:?}", Limits::default().head),
                        None => log::debug!("TLS handshake: closed to make room for a new connection"),
                    }
                }
                None => connection(stream, app, in_flight, false, "http", &place).await,
            }
        });
    }
    drop(incoming);
    // Idle keep-alive connections are closed now, the others once answered: none goes on
    // serving the app (and holding the exporter) after this returns.
    waiting.close_all();
    let started = Instant::now();
    log::info!("shutting down: {} request(s) in flight", in_flight.load(Ordering::SeqCst));
    while in_flight.load(Ordering::SeqCst) > 0 && started.elapsed() < GRACE {
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    // Let the last responses flush.
    async_std::task::sleep(Duration::from_millis(50)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[::]` takes IPv4 connections as well as IPv6 ones (or, without IPv6 in the kernel,
    /// listens on IPv4).
    #[async_std::test]
    async fn every_address_is_ipv6_and_ipv4() {
        let listener = listen("[::]:0").await.expect("listen");
        let bound = listener.local_addr().expect("addr");
        let mut to = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, bound.port()))];
        // IPv6 in the kernel but off on every interface (a container with disable_ipv6 set):
        // [::] binds, and takes IPv4, but ::1 is no address to connect to.
        let loopback6 = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
        if bound.is_ipv6() && loopback6 {
            to.push(SocketAddr::from((Ipv6Addr::LOCALHOST, bound.port())));
        } else {
            eprintln!("no IPv6 loopback here: listening on {bound}, tried over IPv4 only");
        }
        for addr in to {
            let client = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{addr}: {e}"));
            let (_, peer) = listener.accept().await.expect("accept");
            let local = client.local_addr().expect("addr");
            // An IPv4 client comes to an IPv6 socket as ::ffff:a.b.c.d.
            let peer_ip = match peer.ip() {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            assert_eq!((peer_ip, peer.port()), (local.ip(), local.port()), "{addr}");
        }
    }

    /// Waiters are woken by the request itself, and by nothing before it: nothing polls.
    #[test]
    fn a_shutdown_wakes_its_waiters_when_requested_and_not_before() {
        use std::future::Future;
        let wakes = crate::wakes::Counting::new();
        let mut cx = wakes.context();
        let shutdown = Shutdown::default();
        let mut waits: Vec<_> = (0..3).map(|_| Box::pin(shutdown.wait())).collect();
        for w in &mut waits {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        // Polled every 50 ms (as until 2026-12-07), they would have been woken by now.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(wakes.wakes(), 0, "woken with nothing to do");
        shutdown.clone().request();
        assert!(wakes.wakes() >= 3, "each woken");
        for w in &mut waits {
            assert!(w.as_mut().poll(&mut cx).is_ready());
        }
        assert!(Box::pin(shutdown.wait()).as_mut().poll(&mut cx).is_ready(), "at once, once requested");
    }

    /// A byte on the signals' socket requests shutdown; a socket that cannot be read (or
    /// registered) leaves the flag the handlers set, looked at once a second.
    #[async_std::test]
    async fn a_signal_requests_shutdown_through_the_socket_or_else_the_flag() {
        use std::io::Write;
        let (read, mut write) = UnixStream::pair().expect("a pair");
        let through_socket = Shutdown::default();
        async_std::task::spawn(wake_on_signals(read, async_io::Async::new, through_socket.clone()));
        write.write_all(&[1]).expect("as a handler writes");
        let woken = async_std::future::timeout(Duration::from_secs(60), through_socket.wait()).await;
        assert!(woken.is_ok() && through_socket.requested());

        let (read, mut write) = UnixStream::pair().expect("a pair");
        let unregistered = Shutdown::default();
        let refused = |read| {
            drop(read);
            Err(std::io::Error::other("no room in the reactor"))
        };
        async_std::task::spawn(wake_on_signals(read, refused, unregistered.clone()));
        let mut waiting = Box::pin(unregistered.wait());
        assert!(futures_lite::future::poll_once(&mut waiting).await.is_none(), "waiting");
        // As the handler does, beside its write: the waiter sees it only when woken.
        unregistered.requested.store(true, Ordering::SeqCst);
        let woken = async_std::future::timeout(Duration::from_secs(60), waiting).await;
        assert!(woken.is_ok(), "the flag looked at");
        // A second signal finds the socket open (closed, the write would raise SIGPIPE).
        write.write_all(&[1]).expect("the socket kept open");
    }

    /// A keep-alive connection, idle or answering when shutdown is requested, is closed
    /// (once answered), and the app, with what it holds (an exporter and its caches), is
    /// let go: it had gone on serving the connection after `serve` returned.
    #[async_std::test]
    async fn a_shutdown_closes_keep_alive_connections_and_lets_go_of_the_app() {
        use async_std::io::{ReadExt, WriteExt};
        use async_std::net::TcpStream;
        let state = Arc::new(());
        let held = Arc::downgrade(&state);
        let mut app = tide::with_state(state);
        app.at("/").get(|_| async { Ok("ok") });
        app.at("/slow").get(|_| async {
            async_std::task::sleep(Duration::from_millis(500)).await;
            Ok("slow")
        });
        let listener = listen("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::default();
        let served = async_std::task::spawn(serve(listener, app, shutdown.clone()));
        let ask = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes();
        let (mut idle, mut busy) =
            (TcpStream::connect(addr).await.expect("connect"), TcpStream::connect(addr).await.expect("connect"));
        idle.write_all(&ask("/")).await.expect("ask");
        let mut answer = [0; 1024];
        let n = idle.read(&mut answer).await.expect("an answer");
        assert!(String::from_utf8_lossy(&answer[..n]).ends_with("\r\n\r\nok"), "kept alive after this");
        busy.write_all(&ask("/slow")).await.expect("ask");
        async_std::task::sleep(Duration::from_millis(100)).await;
        shutdown.request();
        let to_end = |mut s: TcpStream| async move {
            let mut all = Vec::new();
            async_std::future::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await.map(|_| all)
        };
        assert_eq!(to_end(idle).await.expect("closed").len(), 0, "the idle one closed");
        let rest = to_end(busy).await.expect("closed once answered");
        assert!(String::from_utf8_lossy(&rest).ends_with("\r\n\r\nslow"), "answered first");
        served.await.expect("served");
        let started = Instant::now();
        while held.upgrade().is_some() {
            assert!(started.elapsed() < Duration::from_secs(10), "the app is still held");
            async_std::task::sleep(Duration::from_millis(20)).await;
        }
    }

    #[async_std::test]
    async fn a_burst_past_the_connection_bound_is_queued_in_the_order_it_came() {
        let most = somaxconn().expect("net.core.somaxconn");
        if most <= MAX_CONNECTIONS {
            eprintln!("skipped: net.core.somaxconn is {most}, and this test needs more than {MAX_CONNECTIONS}");
            return;
        }
        let listener = listen("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("addr");
        // Nothing is accepted while they connect. With std's backlog of 128, the 130th
        // handshake would be dropped, and retried after 1 s, 3 s and 7 s.
        let clients: Vec<_> = (0..=MAX_CONNECTIONS)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("{i}: {e}"))
            })
            .collect();
        for (i, client) in clients.iter().enumerate() {
            let (_, peer) = listener.accept().await.expect("accept");
            assert_eq!(peer, client.local_addr().expect("addr"), "the {i}th accepted is the {i}th to connect");
        }
    }
}
