//! The HTTP routes, as a tide app over an [`Exporter`]; tests drive it with `respond()`,
//! without a port, and embedders `nest()` it under a prefix of their own.

use std::sync::Arc;

use tide::{Request, Response, StatusCode};

use crate::auth::Auth;
use crate::exporter::Exporter;
use crate::negotiate;
use crate::web::WebConfigFile;

/// The app's state.
pub type State = Arc<Exporter>;

/// `GET /metrics`, `/healthz`, `/readyz` and `/`. With a web-config, `/metrics` and `/`
/// are behind its checks wherever the app is mounted; the probes stay open.
pub fn app(exporter: Arc<Exporter>, web: Option<Arc<WebConfigFile>>) -> tide::Server<State> {
    let mut app = tide::with_state(exporter);
    let auth = web.map(Auth::new);
    let mut metrics_route = app.at("/metrics");
    if let Some(auth) = &auth {
        metrics_route.with(auth.clone());
    }
    metrics_route.get(metrics);
    let mut landing_route = app.at("/");
    if let Some(auth) = &auth {
        landing_route.with(auth.clone());
    }
    landing_route.get(landing);
    app.at("/healthz").get(|_| async { Ok(text(StatusCode::Ok, "ok\n")) });
    app.at("/readyz").get(readyz);
    app.with(allow);
    app
}

/// Every route takes GET (and HEAD), and a 405 must say so (RFC 9110 15.5.6).
fn allow<'a>(
    req: Request<State>,
    next: tide::Next<'a, State>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = tide::Result> + Send + 'a>> {
    Box::pin(async move {
        let mut res = next.run(req).await;
        if res.status() == StatusCode::MethodNotAllowed && res.header("Allow").is_none() {
            res.insert_header("Allow", "GET, HEAD");
        }
        Ok(res)
    })
}

/// Mounts `exporter` (from [`app`]) in `outer` under `prefix` (`/exporter`): its routes at
/// `prefix/metrics` and so on, its landing page at `prefix/`, and a redirect from `prefix`
/// to `prefix/` so the page's relative links resolve under the prefix. A prefix without its
/// leading `/` (`exporter`) is taken with it. At `/` (or `""`), its routes are `outer`'s own
/// (the landing page answers `/` unless `outer` routed `/` first).
pub fn mount<S: Clone + Send + Sync + 'static>(
    outer: &mut tide::Server<S>,
    prefix: &str,
    exporter: tide::Server<State>,
) {
    // The redirect's Location is the prefix as given: `a/b/` would be relative, and resolve
    // to `/a/a/b/`.
    let prefix = format!("/{}", prefix.trim_matches('/'));
    let prefix = prefix.trim_end_matches('/').to_owned();
    let slash = format!("{prefix}/");
    outer.at(&slash).nest(exporter);
    if prefix.is_empty() {
        // `prefix` would be `/` again: a redirect to itself, in place of the landing page.
        return;
    }
    outer.at(&prefix).get(move |_| {
        let to = slash.clone();
        async move { Ok(tide::Redirect::permanent(to)) }
    });
}

/// The longest scrape timeout taken as given; a longer one (`1e300`, say) is read as this.
/// Prometheus' own timeouts are seconds; the limit is only there so that no header can
/// overflow the deadline's arithmetic.
const MAX_SCRAPE_TIMEOUT_SECS: f64 = 24.0 * 3600.0;

/// When to stop waiting for upstream, from Prometheus' scrape timeout: 80% of it (at most
/// 0.5 s short of it), leaving time to write and send the answer.
fn scrape_deadline(header: Option<&str>) -> Option<std::time::Instant> {
    let secs: f64 = header?.trim().parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0)?;
    let secs = secs.min(MAX_SCRAPE_TIMEOUT_SECS);
    let budget = (secs * 0.8).max(secs - 0.5).min(secs - 0.1).max(0.05);
    std::time::Instant::now().checked_add(std::time::Duration::from_secs_f64(budget))
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
    let mut res = Response::new(StatusCode::Ok);
    // A HEAD gets the headers a GET would, without a scrape (it would read the API for nothing).
    if req.method() == tide::http::Method::Head {
        // No length, as a GET has none (RFC 9110, 8.6).
        res.set_body(tide::Body::from_reader(futures_lite::io::empty(), None));
    } else {
        let body = match req.state().stream(format, gzip, deadline).await {
            Ok(body) => body,
            // As Prometheus' client libraries answer past MaxRequestsInFlight.
            Err(busy) => {
                log::debug!("/metrics: refused: {busy}");
                let mut res = text(StatusCode::ServiceUnavailable, format!("too busy: {busy}; try again later\n"));
                res.insert_header("Retry-After", "1");
                return Ok(res);
            }
        };
        res.insert_ext(crate::http1::Evictable(body.evicted()));
        // Written as it is sent: no length, so HTTP/1.1 gets it chunked.
        res.set_body(tide::Body::from_reader(body, None));
    }
    res.insert_header("Content-Type", format.content_type());
    if gzip {
        res.insert_header("Content-Encoding", "gzip");
    }
    res.insert_header("Vary", "Accept, Accept-Encoding");
    Ok(res)
}

/// Ready once the warm-up is done and the caches in use have filled once (or been refused:
/// see [`Exporter::syncing`]), and from then on; answered from what the process already
/// knows, never by asking the API server. An outage of metrics-server is reported in
/// `/metrics` (`kube_metrics_server_up 0`), not by going unready and vanishing.
async fn readyz(req: Request<State>) -> tide::Result {
    let syncing = req.state().syncing();
    Ok(if syncing.is_empty() {
        text(StatusCode::Ok, "ok\n")
    } else {
        text(StatusCode::ServiceUnavailable, format!("caches still syncing: {}\n", syncing.join(", ")))
    })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The landing page. Its links are relative, so they work under any mount prefix.
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
         <p>Kubernetes resource metrics (metrics.k8s.io) as Prometheus metrics, from {source}.</p>\n\
         <ul><li><a href=\"metrics\">metrics</a></li><li><a href=\"healthz\">healthz</a></li><li><a href=\"readyz\">readyz</a></li></ul>\n\
         <h2>Enrichers</h2>\n<table><tr><th>enricher</th><th>label</th><th>on series</th><th>meaning</th></tr>\n{rows}</table>\n</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        source = html_escape(&exporter.describe_source()),
    );
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("text/html; charset=utf-8");
    res.set_body(body);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::{async_trait, MetricsSource, SourceError, StaticCluster};

    struct Empty;

    #[async_trait]
    impl MetricsSource for Empty {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            Ok(br#"{"items":[{"metadata":{"name":"p","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1","memory":"2"}}]}]}"#.to_vec())
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Err("metrics-server is down".into())
        }
        fn describe(&self) -> String {
            "a <test> source".into()
        }
    }

    fn routes() -> tide::Server<State> {
        app(Arc::new(Exporter::new(Arc::new(Empty), Arc::new(StaticCluster::default()))), None)
    }

    async fn get(app: &tide::Server<State>, path: &str) -> (StatusCode, String) {
        let req = http_types::Request::get(format!("http://exporter.test{path}").as_str());
        let mut res: http_types::Response = app.respond(req).await.expect("respond");
        (res.status(), res.body_string().await.expect("body"))
    }

    #[test]
    fn any_scrape_timeout_gives_a_deadline_or_none() {
        let now = std::time::Instant::now();
        let within = |header: &str| scrape_deadline(Some(header)).map(|d| d.saturating_duration_since(now));
        let ten = within("10").expect("10 s");
        assert!(ten > std::time::Duration::from_millis(9400) && ten <= std::time::Duration::from_secs(10), "{ten:?}");
        // Finite and positive, but past what a Duration or an Instant can hold: no panic.
        for huge in ["1e19", "1e300", "1.7976931348623157e308"] {
            let d = within(huge).expect(huge);
            assert!(d <= std::time::Duration::from_secs_f64(MAX_SCRAPE_TIMEOUT_SECS), "{huge}: {d:?}");
        }
        for none in ["0", "-1", "NaN", "inf", "ten", ""] {
            assert!(scrape_deadline(Some(none)).is_none(), "{none:?}");
        }
    }

    #[test]
    fn routes_answer_without_a_port() {
        async_std::task::block_on(async {
            let app = routes();
            let (status, body) = get(&app, "/metrics").await;
            assert_eq!(status, StatusCode::Ok);
            assert!(body.contains("kube_metrics_server_up{resource=\"nodes\"} 0\n"), "{body}");
            assert_eq!(get(&app, "/healthz").await.0, StatusCode::Ok);
            assert_eq!(get(&app, "/readyz").await, (StatusCode::Ok, "ok\n".into()), "metrics-server down: still ready");
            let (status, page) = get(&app, "/").await;
            assert_eq!(status, StatusCode::Ok);
            assert!(page.contains("href=\"metrics\"") && !page.contains("href=\"/"), "relative links only");
            assert!(page.contains("a &lt;test&gt; source"));
        });
    }

    #[test]
    fn a_head_of_metrics_reads_nothing() {
        struct Counting(std::sync::atomic::AtomicUsize);
        #[async_trait]
        impl MetricsSource for Counting {
            async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(br#"{"items":[]}"#.to_vec())
            }
            async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
                Ok(br#"{"items":[]}"#.to_vec())
            }
            fn describe(&self) -> String {
                "counting".into()
            }
        }
        let source = Arc::new(Counting(Default::default()));
        let app = app(Arc::new(Exporter::new(source.clone(), Arc::new(StaticCluster::default()))), None);
        async_std::task::block_on(async {
            let mut req = http_types::Request::new(http_types::Method::Head, "http://exporter.test/metrics");
            req.insert_header("Accept-Encoding", "gzip");
            let res: http_types::Response = app.respond(req).await.expect("respond");
            assert_eq!(res.status(), StatusCode::Ok);
            assert_eq!(res.header("Content-Encoding").map(|h| h.as_str()), Some("gzip"), "the headers a GET gets");
            assert_eq!(res.len(), None, "no length, as a GET has none");
            assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 0, "no scrape");
            assert!(get(&app, "/metrics").await.1.contains("kube_metrics_server_up"));
            assert_eq!(source.0.load(std::sync::atomic::Ordering::SeqCst), 1, "a GET scrapes");
        });
    }

    #[test]
    fn a_method_not_allowed_says_which_are() {
        let app = app(Arc::new(Exporter::new(Arc::new(Empty), Arc::new(StaticCluster::default()))), None);
        async_std::task::block_on(async {
            for path in ["/metrics", "/healthz", "/"] {
                let req =
                    http_types::Request::new(http_types::Method::Post, format!("http://exporter.test{path}").as_str());
                let res: http_types::Response = app.respond(req).await.expect("respond");
                assert_eq!(res.status(), StatusCode::MethodNotAllowed, "{path}");
                assert_eq!(res.header("Allow").map(|h| h.as_str()), Some("GET, HEAD"), "{path}");
            }
        });
    }

    #[test]
    fn mounted_under_a_prefix() {
        async_std::task::block_on(async {
            let mut outer = tide::new();
            outer.at("/other").get(|_| async { Ok("theirs") });
            mount(&mut outer, "/exporter", routes());
            for path in ["/exporter/metrics", "/exporter/", "/exporter/healthz", "/exporter/readyz", "/other"] {
                let req = http_types::Request::get(format!("http://embedder.test{path}").as_str());
                let res: http_types::Response = outer.respond(req).await.expect("respond");
                assert_eq!(res.status(), StatusCode::Ok, "{path}");
            }
            let req = http_types::Request::get("http://embedder.test/exporter");
            let res: http_types::Response = outer.respond(req).await.expect("respond");
            assert_eq!(res.status(), StatusCode::PermanentRedirect);
            assert_eq!(res.header("Location").map(|h| h.as_str()), Some("/exporter/"));
        });
    }

    #[test]
    fn a_prefix_without_its_leading_slash_is_taken_with_it() {
        async_std::task::block_on(async {
            for prefix in ["a/b", "a/b/", "/a/b"] {
                let mut outer = tide::new();
                mount(&mut outer, prefix, routes());
                let req = http_types::Request::get("http://embedder.test/a/b");
                let res: http_types::Response = outer.respond(req).await.expect("respond");
                assert_eq!(res.header("Location").map(|h| h.as_str()), Some("/a/b/"), "{prefix:?}");
                for path in ["/a/b/", "/a/b/metrics"] {
                    let req = http_types::Request::get(format!("http://embedder.test{path}").as_str());
                    let res: http_types::Response = outer.respond(req).await.expect("respond");
                    assert_eq!(res.status(), StatusCode::Ok, "{prefix:?}: {path}");
                }
            }
        });
    }

    #[test]
    fn mounted_at_the_root_the_landing_page_is_served_not_a_redirect_to_itself() {
        async_std::task::block_on(async {
            for prefix in ["/", ""] {
                let mut outer = tide::new();
                outer.at("/other").get(|_| async { Ok("theirs") });
                mount(&mut outer, prefix, routes());
                for path in ["/", "/metrics", "/healthz", "/other"] {
                    let req = http_types::Request::get(format!("http://embedder.test{path}").as_str());
                    let mut res: http_types::Response = outer.respond(req).await.expect("respond");
                    assert_eq!(res.status(), StatusCode::Ok, "{prefix:?}: {path}");
                    if path == "/" {
                        assert!(
                            res.body_string().await.expect("body").contains("metrics"),
                            "{prefix:?}: the landing page"
                        );
                    }
                }
            }
        });
    }
}
