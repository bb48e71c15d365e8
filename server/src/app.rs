//! The HTTP routes, as a tide app over an [`Exporter`]; tests drive it without a port.

use std::sync::Arc;

use tide::{Request, Response, StatusCode};

use crate::exporter::{Exporter, Exposition};
use crate::negotiate;

/// The app's state.
pub type State = Arc<Exporter>;

/// `GET /metrics`, `/healthz`, `/readyz` and `/`.
pub fn app(exporter: Arc<Exporter>) -> tide::Server<State> {
    let mut app = tide::with_state(exporter);
    app.at("/metrics").get(metrics);
    app.at("/healthz").get(|_| async { Ok(text(StatusCode::Ok, "ok\n")) });
    app.at("/readyz").get(readyz);
    app.at("/").get(landing);
    app
}

/// When to stop waiting for upstream, from Prometheus' scrape timeout: 80% of it (at most
/// 0.5 s short of it), leaving time to write and send the answer.
fn scrape_deadline(header: Option<&str>) -> Option<std::time::Instant> {
    let secs: f64 = header?.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0)?;
    let budget = (secs * 0.8).max(secs - 0.5).min(secs - 0.1).max(0.05);
    Some(std::time::Instant::now() + std::time::Duration::from_secs_f64(budget))
}

/// A shared exposition as response bytes.
struct SharedBody(Arc<Exposition>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut res = Response::new(status);
    res.set_content_type("text/plain; charset=utf-8");
    res.set_body(body.into());
    res
}

async fn metrics(req: Request<State>) -> tide::Result {
    let format = negotiate::format(req.header("Accept").map(|h| h.as_str()));
    let gzip = negotiate::gzip(req.header("Accept-Encoding").map(|h| h.as_str()));
    let deadline = scrape_deadline(req.header("X-Prometheus-Scrape-Timeout-Seconds").map(|h| h.as_str()));
    let body = req.state().scrape_shared(format, gzip, deadline).await;
    let mut res = Response::new(StatusCode::Ok);
    let len = body.len();
    // Served straight from the shared buffer, without a copy.
    res.set_body(tide::Body::from_reader(futures_lite::io::Cursor::new(SharedBody(body)), Some(len)));
    res.insert_header("Content-Type", format.content_type());
    if gzip {
        res.insert_header("Content-Encoding", "gzip");
    }
    res.insert_header("Vary", "Accept, Accept-Encoding");
    Ok(res)
}

async fn readyz(req: Request<State>) -> tide::Result {
    Ok(match req.state().ready().await {
        Ok(()) => text(StatusCode::Ok, "ok\n"),
        Err(e) => text(StatusCode::ServiceUnavailable, format!("metrics API not ready: {e}\n")),
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn landing(req: Request<State>) -> tide::Result {
    let exporter = req.state();
    let mut rows = String::new();
    for e in exporter.enrichers() {
        for l in e.labels() {
            rows.push_str(&format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>\n",
                html_escape(e.name()),
                html_escape(&l.name),
                l.series,
                html_escape(&l.help)
            ));
        }
    }
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>metrics-server-prom</title></head><body>\n\
         <h1>metrics-server-prom {version}</h1>\n\
         <p>Kubernetes resource metrics (metrics.k8s.io) as Prometheus metrics, from {api}.</p>\n\
         <ul><li><a href=\"/metrics\">/metrics</a></li><li><a href=\"/healthz\">/healthz</a></li><li><a href=\"/readyz\">/readyz</a></li></ul>\n\
         <h2>Enrichers</h2>\n<table><tr><th>enricher</th><th>label</th><th>on series</th><th>meaning</th></tr>\n{rows}</table>\n</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        api = html_escape(exporter.client().base().as_str()),
    );
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("text/html; charset=utf-8");
    res.set_body(body);
    Ok(res)
}
