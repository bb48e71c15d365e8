//! The accept loop: HTTP/1.1 (async-h1) for a tide app, with graceful shutdown: on the
//! shutdown signal it stops accepting, lets requests in flight finish (up to a grace
//! period), and returns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::net::TcpListener;
use futures_lite::StreamExt;

/// How long in-flight requests get after shutdown starts.
pub const GRACE: Duration = Duration::from_secs(4);

/// Set to stop serving; [`signals`] sets it on SIGTERM and SIGINT.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Whether shutdown has started.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Starts shutdown.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst)
    }

    async fn wait(&self) {
        while !self.requested() {
            async_std::task::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A [`Shutdown`] set by SIGTERM or SIGINT.
pub fn signals() -> std::io::Result<Shutdown> {
    let s = Shutdown::default();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, s.0.clone())?;
    }
    Ok(s)
}

/// Serves `app` on `listener` until `shutdown`, then drains requests in flight.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    app: tide::Server<S>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut incoming = listener.incoming();
    loop {
        let next = futures_lite::future::or(async { Some(incoming.next().await) }, async {
            shutdown.wait().await;
            None
        });
        let stream = match next.await {
            None | Some(None) => break,
            Some(Some(Ok(s))) => s,
            Some(Some(Err(e))) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        let (app, in_flight) = (app.clone(), in_flight.clone());
        async_std::task::spawn(async move {
            let _ = stream.set_nodelay(true);
            let served = async_h1::accept(stream, |req| {
                let (app, in_flight) = (app.clone(), in_flight.clone());
                async move {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    let res = app.respond(req).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    res
                }
            });
            if let Err(e) = served.await {
                log::debug!("connection: {e}");
            }
        });
    }
    drop(incoming);
    let started = Instant::now();
    log::info!("shutting down: {} request(s) in flight", in_flight.load(Ordering::SeqCst));
    while in_flight.load(Ordering::SeqCst) > 0 && started.elapsed() < GRACE {
        async_std::task::sleep(Duration::from_millis(20)).await;
    }
    // Let the last responses flush.
    async_std::task::sleep(Duration::from_millis(50)).await;
    Ok(())
}
