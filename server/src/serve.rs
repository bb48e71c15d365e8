//! The accept loop: HTTP/1.1 (async-h1) for a tide app.

use async_std::net::TcpListener;
use futures_lite::StreamExt;

/// Serves `app` on `listener` until the listener fails.
pub async fn serve<S: Clone + Send + Sync + 'static>(
    listener: TcpListener,
    app: tide::Server<S>,
) -> std::io::Result<()> {
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept: {e}");
                continue;
            }
        };
        let app = app.clone();
        async_std::task::spawn(async move {
            let _ = stream.set_nodelay(true);
            let served = async_h1::accept(stream, |req| {
                let app = app.clone();
                async move { app.respond(req).await }
            });
            if let Err(e) = served.await {
                log::debug!("connection: {e}");
            }
        });
    }
    Ok(())
}
