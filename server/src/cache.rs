//! Watch-backed metadata caches (the informer pattern), behind the [`Cluster`] trait.
//!
//! Each resource (pods, nodes, ReplicaSets, Jobs) is listed once, as a streaming list where
//! the API server has them (a watch with `sendInitialEvents`, see `cache/stream.rs`), else in
//! pages (`limit`, then `continue`, as client-go's reflector does; a `continue` token that
//! expired, 410, starts the list over; a page that failed for the server's trouble is asked
//! for again from the same token), then watched from the list's resourceVersion with
//! bookmarks.
//! A dropped watch resumes from the last resourceVersion seen. `410 Gone` has the cache list
//! again, and so do three watches in a row failing from one resourceVersion in a way a fresh
//! list may get past (an event too long, an error event, a status other than 429 and 5xx);
//! an API server (or a proxy before it) that cannot be reached or sheds load is watched again,
//! never listed again, as client-go's reflector does. Errors back off exponentially (0.2 s
//! doubling to 30 s, jittered), or for as long as a 429 or 5xx asks with `Retry-After` if
//! that is longer. A cache starts on first use, so an enricher that is not
//! configured costs no watch. In steady state a scrape reads the caches and makes no list
//! request at all.
//!
//! A pod the cache does not know yet (metrics can arrive before the watch event) is served
//! unenriched, and enriched on the next scrape; it never triggers a re-list.
//!
//! - `backoff`: how long a cache waits before trying again.
//! - `lines`: a watch's lines, each bounded, and the events they say.
//! - `silence`: the bound on how long a watch may say nothing.
//! - `stream`: a streaming list, its objects as a watch's events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_std::channel::{Receiver, Sender};
use msp_core::{
    async_trait, nodes_by_name, Cluster, ControllerKind, Controllers, Entry, ExpositionError, Interner, LabelName,
    MetricName, MetricType, Namespaced, NodeInfo, Nodes, ObjectList, Owner, PodInfo, Pods, ReadRefused, SourceError,
    Text, Writer,
};

use crate::kube::{KubeClient, KubeError, MAX_LIST_OBJECTS};
use crate::random::random;
use crate::self_metrics::Report;

mod backoff;
mod lines;
mod silence;
mod stream;

use backoff::Backoff;
use lines::{decode, Lines};
use stream::Streamed;

/// The node snapshot as a by-name map, and the store snapshot it was made from.
type NodeView = Option<(Arc<Namespaced<NodeInfo>>, Arc<Nodes>)>;

/// How one resource is read.
struct Kind {
    resource: &'static str,
    path: &'static str,
    metadata_only: bool,
}

/// How many times an expired `continue` token (410) starts a paged list over before the
/// cache asks for the whole list in one answer, as client-go's pager does at the first
/// (a cluster whose list takes longer than etcd keeps a token would otherwise never sync).
const MAX_LIST_RESTARTS: u32 = 3;

/// How many times a page after the first that failed for the server's trouble (429, 5xx,
/// no answer) is asked for again, from the same `continue` token, before the list fails and
/// starts over (client-go retries a request up to 10 times where `Retry-After` asks).
const MAX_PAGE_RETRIES: u32 = 4;

/// Watch problems, by `(resource, reason)`, for `kube_metrics_server_watch_errors_total`.
type WatchErrors = Mutex<BTreeMap<(&'static str, &'static str), u64>>;

/// One resource's cache.
struct Informer<T> {
    kind: Kind,
    /// One copy of each repeated string (node names, label keys and values, owners).
    interner: Interner,
    store: Mutex<Arc<Namespaced<T>>>,
    synced: AtomicBool,
    started: AtomicBool,
    /// Its last list was refused (403: a role without `list`), which waiting will not
    /// mend: readiness does not wait for it (the scrapes' enricher errors and `CacheStale`
    /// say it). Not a 401, which a token re-read, or a clock set right, may mend.
    refused: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// When the API server last said this cache is current, in milliseconds since the Unix
    /// epoch: a list read whole, a watch's event or bookmark, or a watch the server ended
    /// whole; until its
    /// first list, when the cache started (so that its age is how long it has tried).
    /// A cache that can no longer list or watch (a 403 after an RBAC change) keeps serving
    /// what it holds; this is what shows it.
    current_at: AtomicU64,
    /// What it shares with the other caches of its cluster.
    shared: Shared,
}

/// What the caches of one [`CachedCluster`] share.
#[derive(Clone)]
struct Shared {
    /// Whether to ask for streaming lists (one API server for all the caches): the first to
    /// find it does not stream them spares the others the asking.
    streams: Arc<AtomicBool>,
    /// Closed when the cluster is dropped: its caches' lists and watches end.
    dropped: Receiver<()>,
}

impl<T: Entry + Clone + PartialEq + Send + Sync + 'static> Informer<T> {
    fn new(kind: Kind, shared: &Shared) -> Arc<Self> {
        Arc::new(Informer {
            kind,
            interner: Interner::default(),
            store: Mutex::new(Arc::new(Namespaced::default())),
            synced: AtomicBool::new(false),
            started: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            last_error: Mutex::new(None),
            current_at: AtomicU64::new(0),
            shared: shared.clone(),
        })
    }

    fn snapshot(&self) -> Arc<Namespaced<T>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Started, not yet listed once, and not refused.
    fn syncing(&self) -> bool {
        self.started.load(Ordering::Relaxed)
            && !self.synced.load(Ordering::Acquire)
            && !self.refused.load(Ordering::Relaxed)
    }

    /// Why its last list or watch failed, until one works.
    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// The snapshot, starting the cache on first use and waiting (up to `wait`) for its
    /// first list.
    async fn get(
        self: &Arc<Self>,
        client: &Arc<KubeClient>,
        errors: &Arc<WatchErrors>,
        wait: Duration,
    ) -> Result<Arc<Namespaced<T>>, SourceError> {
        if !self.started.swap(true, Ordering::SeqCst) {
            self.current();
            let (me, client, errors) = (self.clone(), client.clone(), errors.clone());
            let dropped = self.shared.dropped.clone();
            // Until the cluster is dropped: then the list or watch in flight is dropped too,
            // which closes its connection.
            let ends = async move { while dropped.recv().await.is_ok() {} };
            async_std::task::spawn(futures_lite::future::or(me.run(client, errors), ends));
        }
        let deadline = std::time::Instant::now() + wait;
        // Wait for the first list, but not past a failure: a cache that can't list (a 403,
        // say) fails fast, and keeps retrying in the background with backoff. That read is
        // refused (`ReadRefused`: the memo keeps what was enriched without it) until a list
        // succeeds; one that waited out `wait` failed for now.
        while !self.synced.load(Ordering::Acquire) {
            let resource = self.kind.resource;
            if let Some(failed) = self.last_error() {
                return Err(Box::new(ReadRefused::new(format!("{resource} cache not synced: {failed}"))));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!("{resource} cache not synced: no answer yet").into());
            }
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
        Ok(self.snapshot())
    }

    /// The API server has just said this cache is current.
    fn current(&self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.current_at.store(now.as_millis() as u64, Ordering::Relaxed);
    }

    /// Its resource, the objects it holds and when it was last current (seconds), if it
    /// is in use (started).
    fn in_use(&self) -> Option<(&'static str, usize, f64)> {
        let current_at = self.current_at.load(Ordering::Relaxed) as f64 / 1000.0;
        self.started.load(Ordering::Relaxed).then(|| (self.kind.resource, self.len(), current_at))
    }

    /// Logs a failure, with when the cache tries again (`again_in`, and whether a
    /// `Retry-After` set it), and keeps it for the scrapes that wait on the cache.
    fn fail(&self, e: &dyn std::fmt::Display, again_in: Duration, retry_after: Option<Duration>) {
        let message = e.to_string();
        let asked = match retry_after {
            Some(asked) => format!(" (Retry-After: {}s)", asked.as_secs()),
            None => String::new(),
        };
        log::warn!(
            resource = self.kind.resource;
            "{} cache: {message}; again in {again_in:.1?}{asked}", self.kind.resource
        );
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
    }

    async fn run(self: Arc<Self>, client: Arc<KubeClient>, errors: Arc<WatchErrors>) {
        let resource = self.kind.resource;
        // Reset only by a watch that lived: a list that works followed by a watch that
        // does not (410 at once, closed at once) must not loop without a pause.
        let mut backoff = Backoff::default();
        // Watches that could not be opened since one last was, for the line that says one
        // is again; kept across re-lists (an outage may end in one).
        let mut failed = 0;
        loop {
            let (mut rv, mut streamed) = match self.sync(&client, &errors).await {
                Ok(synced) => synced,
                Err((list, e)) => {
                    self.refused.store(e.status() == Some(403), Ordering::Relaxed);
                    let wait = backoff.next(e.retry_after());
                    self.fail(&format_args!("{list}: {e}"), wait, e.retry_after());
                    async_std::task::sleep(wait).await;
                    continue;
                }
            };
            // Watch, resuming from the last resourceVersion, until 410 Gone or until the
            // watches fail from the same resourceVersion too often; the first goes on where
            // a streaming list ended, on its connection.
            let mut stuck = 0;
            loop {
                let (started, from) = (std::time::Instant::now(), rv.clone());
                let after_list = streamed.is_some();
                let end = match streamed.take() {
                    Some(lines) => self.follow(lines, &mut rv, &errors).await,
                    None => self.watch(&client, &mut rv, &errors, &mut failed).await,
                };
                // No event, not even a bookmark, and over within a second: as client-go
                // says, a "very short watch".
                let short = rv == from && started.elapsed() < MIN_WATCH;
                // A watch that lived (it brought news, or lasted), however it ended, ends
                // the failures before it: the next begins at the shortest wait again, not at
                // the 30 s an outage earlier grew it to.
                if started.elapsed() >= LIVED || (rv != from && started.elapsed() >= MIN_WATCH) {
                    backoff.reset();
                }
                // Failures count toward a re-list from one resourceVersion only.
                if rv != from {
                    stuck = 0;
                }
                match end {
                    Ok(WatchEnd::Closed) if !short => {
                        // Ended by the server, whole: current until then. (Opened is not
                        // enough: a watch cut off each time it begins, or a list that never
                        // ends, must still show as stale.)
                        self.current();
                        backoff.reset();
                        stuck = 0;
                    }
                    Ok(WatchEnd::Closed) if after_list => {
                        log::warn!(
                            resource = resource;
                            "{resource} watch: closed right after the streaming list's end, with no event since; \
                             waiting before the next"
                        );
                        backoff.wait_at_least(None).await;
                    }
                    Ok(WatchEnd::Closed) => {
                        log::warn!(resource = resource; "{resource} watch: closed at once, with no event; waiting before the next");
                        backoff.wait_at_least(None).await;
                    }
                    // A resourceVersion that expires as soon as it is watched from would have
                    // the cache list again and again without a pause (an adversarial trial:
                    // 1,100 lists a second), whatever events came before the 410: a watch
                    // that did not live a second waits its backoff first.
                    Ok(WatchEnd::Expired) => {
                        log::info!(resource = resource; "{resource} cache: resourceVersion {rv} expired (410); re-listing");
                        if started.elapsed() < MIN_WATCH {
                            backoff.wait_at_least(None).await;
                        }
                        break;
                    }
                    Err(e) if e.status() == Some(410) => {
                        log::info!(resource = resource; "{resource} cache: the watch from resourceVersion {rv} answered 410; re-listing");
                        if started.elapsed() < MIN_WATCH {
                            backoff.wait_at_least(None).await;
                        }
                        break;
                    }
                    // The API server's watch cache is behind the resourceVersion (one of its
                    // replicas lagging, or after an etcd restore): a fresh list gets past it,
                    // but the next watch may meet a lagging replica again, so it waits its
                    // backoff first, growing while this goes on.
                    Ok(WatchEnd::TooLarge { retry_after }) => {
                        log::info!(resource = resource; "{resource} cache: resourceVersion {rv} is ahead of the API server's watch cache (504); re-listing");
                        backoff.wait_at_least(retry_after).await;
                        break;
                    }
                    Err(e) => {
                        if matches!(e, KubeError::Status { .. }) && relist_may_help(&e) {
                            // Refused when asked for (a 403 where the role can list but
                            // not watch): each third has the cache list again, which keeps
                            // it current, so only this count shows it. (The server's
                            // troubles, 429 and 5xx, are `api_requests_total`'s, and
                            // `CacheStale`'s when they last.)
                            count(&errors, resource, "status", 1);
                        }
                        // In a row: a failure of the server's between two of these ends
                        // the run.
                        stuck = if relist_may_help(&e) { stuck + 1 } else { 0 };
                        let wait = backoff.next(e.retry_after());
                        self.fail(&format_args!("watch: {e}"), wait, e.retry_after());
                        async_std::task::sleep(wait).await;
                        if stuck >= MAX_STUCK_WATCHES {
                            // The same event would end the next one too (one too long, an
                            // error event): a fresh list gets past it.
                            log::warn!(resource = resource; "{resource} watch: failed {stuck} times from resourceVersion {rv}; re-listing");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Fills the store afresh: by a streaming list while the API server has them, whose
    /// watch goes on (its lines, returned); else, or after one that failed, in pages. Returns
    /// the resourceVersion the watch goes on from. A failure comes with which list failed.
    async fn sync(
        &self,
        client: &KubeClient,
        errors: &WatchErrors,
    ) -> Result<(String, Option<Lines>), (Listing, KubeError)> {
        let resource = self.kind.resource;
        if self.shared.streams.load(Ordering::Relaxed) {
            match self.stream_list(client, errors).await {
                Ok((rv, lines)) => return Ok((rv, Some(lines))),
                Err(Streamed::Unsupported(why)) => {
                    // One API server for all the caches: the others are spared asking.
                    self.shared.streams.store(false, Ordering::Relaxed);
                    log::info!(
                        resource = resource;
                        "{resource} cache: the API server does not stream lists ({why}); the caches list in pages"
                    );
                }
                // Waited out, and the streaming list asked again.
                Err(Streamed::Failed(e)) if pages_fail_alike(&e) => return Err((Listing::Streaming, e)),
                // Tried again at the next list.
                Err(Streamed::Failed(e)) => {
                    log::warn!(resource = resource; "{resource} cache: the streaming list failed ({e}); listing in pages")
                }
            }
        }
        let rv = self.list(client, errors).await.map_err(|e| (Listing::Pages, e))?;
        Ok((rv, None))
    }

    /// Lists every page, then publishes the result as the new store; returns the list's
    /// resourceVersion, for the watch to start from.
    async fn list(&self, client: &KubeClient, errors: &WatchErrors) -> Result<String, KubeError> {
        let mut restarts = 0;
        let mut limit = Some(client.list_page_size());
        let (store, rv) = loop {
            match self.list_pages(client, errors, limit).await {
                Err((e, true)) if e.status() == Some(410) && restarts < MAX_LIST_RESTARTS => {
                    restarts += 1;
                    log::info!(
                        resource = self.kind.resource;
                        "{} list: the continue token expired (410); listing again from the start",
                        self.kind.resource
                    );
                }
                Err((e, true)) if e.status() == Some(410) && limit.is_some() => {
                    limit = None;
                    log::warn!(
                        resource = self.kind.resource;
                        "{} list: the continue token expired {} times; listing everything in one answer",
                        self.kind.resource,
                        restarts + 1
                    );
                }
                Err((e, _)) => return Err(e),
                Ok(done) => break done,
            }
        };
        self.publish(store);
        Ok(rv)
    }

    /// A whole list read: the store from now, and the cache synced.
    fn publish(&self, store: Namespaced<T>) {
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
        self.synced.store(true, Ordering::Release);
        self.current();
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }

    /// One list from the start, in pages of `limit` (`None`: one answer): the objects and
    /// the resourceVersion. An error says whether it answered a `continue` request.
    async fn list_pages(
        &self,
        client: &KubeClient,
        errors: &WatchErrors,
        limit: Option<u32>,
    ) -> Result<(Namespaced<T>, String), (KubeError, bool)> {
        let base = self.kind.path;
        let mut store = Namespaced::default();
        // What it holds now (nothing, the first time): the objects the list repeats are kept
        // once, not read anew beside them.
        let earlier = self.snapshot();
        let mut token: Option<String> = None;
        let mut pages = Pages::new(limit);
        let (mut backoff, mut retried) = (Backoff::default(), 0);
        loop {
            let path = page_path(base, limit, token.as_deref());
            let fetched = if self.kind.metadata_only {
                client.get_metadata(self.kind.resource, &path).await
            } else {
                client.get(self.kind.resource, &path).await
            };
            let body = match fetched {
                // The pages read so far are kept, and the token lives for minutes: the list
                // goes on where it was, rather than read again, under a load that a list
                // from the start would only add to (API Priority and Fairness shedding it).
                Err(e) if token.is_some() && server_trouble(&e) && retried < MAX_PAGE_RETRIES => {
                    retried += 1;
                    let wait = backoff.next(e.retry_after());
                    log::info!(
                        resource = self.kind.resource;
                        "{} list: a page failed ({e}); asking for it again in {wait:.1?} ({retried}/{MAX_PAGE_RETRIES})",
                        self.kind.resource
                    );
                    async_std::task::sleep(wait).await;
                    continue;
                }
                fetched => fetched.map_err(|e| (e, token.is_some()))?,
            };
            retried = 0;
            backoff.reset();
            let list = ObjectList::parse(&body)
                .map_err(|source| (KubeError::Decode { path: base.into(), source }, token.is_some()))?;
            let (entries, bad) = list.entries::<T>(&self.interner);
            if bad > 0 {
                log::warn!(resource = self.kind.resource; "{} list: skipped {bad} item(s) that are not valid objects", self.kind.resource);
                count(errors, self.kind.resource, "invalid_object", bad as u64);
            }
            for (ns, name, v) in entries {
                store.insert_sharing(ns, name, v, &earlier);
            }
            match list.continue_token() {
                Some(next) => {
                    pages.next(token.as_deref(), next).map_err(|(pages, repeated)| {
                        (KubeError::EndlessList { path: base.into(), pages, repeated }, true)
                    })?;
                    token = Some(next.to_owned())
                }
                None => return Ok((store, list.resource_version().unwrap_or_default().to_owned())),
            }
        }
    }

    /// Opens a watch from `rv` and follows it; `failed`, the watches that could not be
    /// opened before it, if any, are said to be over once it is (as a failing metrics read
    /// says it is read again).
    async fn watch(
        &self,
        client: &KubeClient,
        rv: &mut String,
        errors: &WatchErrors,
        failed: &mut u32,
    ) -> Result<WatchEnd, KubeError> {
        let resource = self.kind.resource;
        let path = watch_path(self.kind.path, rv, watch_timeout());
        let res = match client.watch(resource, &path, self.kind.metadata_only).await {
            Ok(res) => res,
            // Said as the answer rather than as an event: the same end.
            Err(e) if too_large_resource_version(&e) => {
                *failed += 1;
                return Ok(WatchEnd::TooLarge { retry_after: e.retry_after() });
            }
            Err(e) => {
                *failed += 1;
                return Err(e);
            }
        };
        if *failed > 0 {
            log::info!(resource = resource, failed = *failed; "{resource} watch: open again, after {failed} failed watch(es)");
            *failed = 0;
        }
        self.follow(Lines::new(res, client, &path), rv, errors).await
    }

    /// Applies a watch's events to the store, keeping `rv` the last resourceVersion seen,
    /// until the watch ends.
    async fn follow(&self, mut lines: Lines, rv: &mut String, errors: &WatchErrors) -> Result<WatchEnd, KubeError> {
        let resource = self.kind.resource;
        let path = lines.path.clone();
        loop {
            // A live watch carries bookmarks; silence for 5 minutes means a dead connection.
            let Some(line) = lines.next(SILENCE, resource, errors).await? else { return Ok(WatchEnd::Closed) };
            self.current();
            let Some(event) = decode(line, resource, errors) else { continue };
            let deleted = match &*event.kind {
                "ADDED" | "MODIFIED" => false,
                "DELETED" => true,
                "BOOKMARK" => {
                    if let Some(v) = event.resource_version() {
                        *rv = v;
                    }
                    continue;
                }
                "ERROR" => {
                    if event.status_code() == Some(410) {
                        return Ok(WatchEnd::Expired);
                    }
                    let said = event.object.get();
                    if event.status_code() == Some(504) && says_too_large_resource_version(said) {
                        let retry_after = serde_json::from_str::<serde_json::Value>(said)
                            .ok()
                            .and_then(|s| s["details"]["retryAfterSeconds"].as_u64())
                            .map(Duration::from_secs);
                        return Ok(WatchEnd::TooLarge { retry_after });
                    }
                    count(errors, resource, "error_event", 1);
                    return Err(KubeError::WatchError { path, status: said.to_owned() });
                }
                other => {
                    log::debug!(resource = resource; "{resource} watch: ignoring an event of unknown type {other:?}");
                    count(errors, resource, "unknown_type", 1);
                    continue;
                }
            };
            if let Some(v) = event.resource_version() {
                *rv = v;
            }
            let Some((ns, name, value)) = T::from_object(event.object.get().as_bytes(), &self.interner) else {
                count(errors, resource, "invalid_object", 1);
                continue;
            };
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            apply(&mut store, deleted, ns, name, value);
        }
    }
}

/// How long a watch may say nothing, bookmarks included, before it is taken for dead.
const SILENCE: Duration = Duration::from_secs(300);

/// The pages of one list, read so far: a list must end. A server that sends back the
/// `continue` token it was sent, or pages past [`MAX_LIST_OBJECTS`] objects' worth, would
/// otherwise be read for ever, the sync never done.
struct Pages {
    read: u32,
    max: u32,
}

impl Pages {
    fn new(limit: Option<u32>) -> Self {
        Pages { read: 0, max: limit.map_or(1, |l| MAX_LIST_OBJECTS / l.max(1)).max(1) }
    }

    /// Page `sent` (its token; `None` for the first) was read, and said to go on at `next`:
    /// `Err((pages, repeated))` when that would not end.
    fn next(&mut self, sent: Option<&str>, next: &str) -> Result<(), (u32, bool)> {
        self.read += 1;
        if sent == Some(next) {
            return Err((self.read, true));
        }
        if self.read >= self.max {
            return Err((self.read, false));
        }
        Ok(())
    }
}

/// `path?limit=N`, plus `&continue=TOKEN` (URL-encoded) after the first page; no limit,
/// `path` itself.
fn page_path(path: &str, limit: Option<u32>, token: Option<&str>) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let Some(limit) = limit else { return path.to_owned() };
    match token {
        Some(token) => format!("{path}{sep}limit={limit}&continue={}", query_value(token)),
        None => format!("{path}{sep}limit={limit}"),
    }
}

/// The watch of `path` from resourceVersion `rv` (URL-encoded: it is opaque, and only etcd
/// makes it digits), with bookmarks.
fn watch_path(path: &str, rv: &str, timeout: u64) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds={timeout}&resourceVersion={}", query_value(rv))
}

/// A watch's `timeoutSeconds`: 240 to 290, drawn afresh for each, so that the watches of
/// every cache and replica, cut off together (an API server restarting), do not all end
/// and open again together every time after (client-go draws 5 to 10 minutes). Below
/// [`SILENCE`], so that a server that sends no bookmark still ends the watch first.
fn watch_timeout() -> u64 {
    240 + random() % 51
}

/// `value` percent-encoded for a query: all but RFC 3986's unreserved characters.
fn query_value(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

/// Every `reason` [`count`] is given: each cache in use exports all of them from 0, so
/// that `increase()` sees a first error too (a series born at 1 shows no increase).
const WATCH_ERROR_REASONS: [&str; 7] =
    ["undecodable", "error_event", "unknown_type", "invalid_object", "line_too_long", "read", "status"];

fn count(errors: &WatchErrors, resource: &'static str, reason: &'static str, n: u64) {
    if let Ok(mut e) = errors.lock() {
        *e.entry((resource, reason)).or_default() += n;
    }
}

/// Applies one watch event to a snapshot. An event that changes nothing we keep (a pod's
/// status conditions, a ReplicaSet's replica counts, a node's heartbeat) leaves the snapshot
/// as it is, the very same `Arc`, so the enrichment memo sees nothing to redo. A change
/// copies the snapshot only if someone (a scrape, the memo) still holds the current one.
fn apply<T: Clone + PartialEq>(store: &mut Arc<Namespaced<T>>, deleted: bool, ns: Text, name: Text, value: T) {
    let current = store.get(&ns, &name);
    if deleted {
        if current.is_some() {
            Arc::make_mut(store).remove(&ns, &name);
        }
    } else if current != Some(&value) {
        Arc::make_mut(store).insert(ns, name, value);
    }
}

/// Whether a request failed so because the API server is out of reach or in trouble, not
/// because of what was asked: it cannot be reached (refused, reset, no answer, TLS, HTTP
/// framing), or it sheds load (429), or it or a proxy before it fails (5xx: `kubectl proxy`
/// answers 500 to a connection refused, load balancers 502 and 504); or the exec plugin
/// fails. A watch that fails so is asked again after a backoff, and no list of everything
/// is tried in its stead, which would only add to the load. (client-go's reflector watches
/// again after a refused connection or a 429, and lists again after a 5xx; we watch again
/// after a 5xx too, on purpose: a restart behind a proxy had every cache list again.)
fn server_trouble(e: &KubeError) -> bool {
    match e {
        // A line that is not UTF-8 is skipped, never an error.
        KubeError::Transport { .. } | KubeError::Timeout { .. } | KubeError::Credentials { .. } => true,
        // A watch cache that will not catch up with a resourceVersion (one from before an
        // etcd restore) is got past by a fresh list, as client-go's reflector gets past it.
        e if too_large_resource_version(e) => false,
        KubeError::Status { status, .. } => matches!(status, 429 | 500..=599),
        // The answer's own: an event too long, an `ERROR` event, an answer that is no watch.
        KubeError::TooLarge { .. }
        | KubeError::EventTooLarge { .. }
        | KubeError::WatchError { .. }
        | KubeError::Decode { .. }
        | KubeError::EndlessList { .. }
        | KubeError::UnendedStream { .. }
        | KubeError::NoEndVersion { .. } => false,
    }
}

/// Whether a 504's `Status` (its JSON, or its message) says that the API server's watch
/// cache has not caught up with the resourceVersion asked for (cause
/// `ResourceVersionTooLarge`, message `Too large resource version`: one from before an etcd
/// restore, or from an API server replica that is ahead of another), as client-go's
/// `isTooLargeResourceVersionError` reads it. A watch cache says it as a watch's `ERROR`
/// event, and an answer to a request as its status.
fn says_too_large_resource_version(said: &str) -> bool {
    said.contains("\"ResourceVersionTooLarge\"") || said.contains("Too large resource version")
}

/// Whether `e` is a 504 that [says](says_too_large_resource_version) the watch cache is
/// behind: a fresh list gets past it, where watching from the same resourceVersion fails
/// alike.
fn too_large_resource_version(e: &KubeError) -> bool {
    matches!(e, KubeError::Status { status: 504, message, .. } if says_too_large_resource_version(message))
}

/// Whether pages, asked for after a streaming list failed so, would fail alike or only add
/// to the trouble: an API server (or a proxy before it) that answers 429 or 5xx, with a
/// `Retry-After` or not (a trial counted two failed requests a retry through `kubectl
/// proxy`); a 401; a request that never reached the server or was never sent (refused, a
/// TLS handshake that failed, no credentials from the exec plugin: the operator's trial saw
/// two log lines a retry). A 403 is read in pages: a role may list but not watch, and a
/// streaming list is a watch. So is a connection lost or silent partway: a proxy that holds
/// a watch's answer back until it ends would never let a streaming list through.
fn pages_fail_alike(e: &KubeError) -> bool {
    e.unreached() || matches!(e, KubeError::Credentials { .. }) || matches!(e.status(), Some(401 | 429 | 500..=599))
}

/// Whether a watch that failed so may fail alike from the same resourceVersion, where a fresh
/// list would get past it: not when the server is in trouble ([`server_trouble`]), which a
/// list of everything would only add to (an API server restarting had every cache of every
/// replica list again after a second or two).
fn relist_may_help(e: &KubeError) -> bool {
    !server_trouble(e)
}

/// A watch that ends sooner than this having said nothing counts as failed (client-go's
/// "very short watch"): the next waits its backoff.
const MIN_WATCH: Duration = Duration::from_secs(1);

/// A watch that lasted this long has lived, whatever it said: the backoff starts over.
const LIVED: Duration = Duration::from_secs(30);

/// Watches failing in a row from one resourceVersion before the cache lists afresh.
const MAX_STUCK_WATCHES: u32 = 3;

enum WatchEnd {
    /// The server ended the watch (its timeout): resume.
    Closed,
    /// 410 Gone: re-list.
    Expired,
    /// 504, the watch cache behind the resourceVersion: re-list after the backoff, or
    /// `Retry-After` (its `retryAfterSeconds`) if longer.
    TooLarge { retry_after: Option<Duration> },
}

/// Which list failed, for the log.
#[derive(Debug, Clone, Copy)]
enum Listing {
    /// A watch with `sendInitialEvents=true`.
    Streaming,
    /// A list, in pages.
    Pages,
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Listing::Streaming => "streaming list",
            Listing::Pages => "list",
        })
    }
}

/// The watch-backed [`Cluster`] the server uses. Each cache starts on first use, and they
/// all stop when the cluster is dropped: the lists and watches in flight are closed.
pub struct CachedCluster {
    client: Arc<KubeClient>,
    wait: Duration,
    errors: Arc<WatchErrors>,
    pods: Arc<Informer<PodInfo>>,
    nodes: Arc<Informer<NodeInfo>>,
    replicasets: Arc<Informer<Option<Owner>>>,
    jobs: Arc<Informer<Option<Owner>>>,
    node_snapshot: Mutex<NodeView>,
    /// Never sent on: dropped with the cluster, it ends its caches' work (see [`Informer::get`]).
    _drop: Sender<()>,
}

impl CachedCluster {
    /// Caches over `client`; the first read of each waits up to the request timeout.
    pub fn new(client: Arc<KubeClient>) -> Self {
        let wait = client.limits().timeout;
        let (sender, dropped) = async_std::channel::bounded(1);
        let shared = &Shared { streams: Arc::new(AtomicBool::new(client.streaming_lists())), dropped };
        CachedCluster {
            client,
            wait,
            errors: Arc::default(),
            pods: Informer::new(Kind { resource: "pods", path: "/api/v1/pods", metadata_only: false }, shared),
            nodes: Informer::new(Kind { resource: "nodes", path: "/api/v1/nodes", metadata_only: false }, shared),
            replicasets: Informer::new(
                Kind { resource: "replicasets", path: "/apis/apps/v1/replicasets", metadata_only: true },
                shared,
            ),
            jobs: Informer::new(Kind { resource: "jobs", path: "/apis/batch/v1/jobs", metadata_only: true }, shared),
            node_snapshot: Mutex::new(None),
            _drop: sender,
        }
    }

    /// Objects held, and when the cache was last current (seconds), by resource (only
    /// caches in use).
    fn sizes(&self) -> Vec<(&'static str, usize, f64)> {
        [self.pods.in_use(), self.nodes.in_use(), self.replicasets.in_use(), self.jobs.in_use()]
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Report for CachedCluster {
    /// `kube_metrics_server_cache_objects`, `kube_metrics_server_cache_last_sync_timestamp_seconds`
    /// and `kube_metrics_server_watch_errors_total`.
    fn write_metrics(&self, w: &mut Writer<'_>) -> Result<(), ExpositionError> {
        const OBJECTS: MetricName = MetricName::from_static("kube_metrics_server_cache_objects");
        const CURRENT: MetricName = MetricName::from_static("kube_metrics_server_cache_last_sync_timestamp_seconds");
        const ERRORS: MetricName = MetricName::from_static("kube_metrics_server_watch_errors_total");
        const RESOURCE: LabelName = LabelName::from_static("resource");
        const REASON: LabelName = LabelName::from_static("reason");
        let help = "Objects held in the watch-backed metadata caches, by resource.";
        let sizes = self.sizes();
        let mut f = w.family(&OBJECTS, help, MetricType::Gauge)?;
        for &(resource, n, _) in &sizes {
            f.sample([(&RESOURCE, resource)], n as f64);
        }
        let help = "When the API server last said this cache is current (a list read whole, a watch event or bookmark, a watch the server ended whole), in seconds since the Unix epoch; until its first list, when the cache started. A healthy cache's is under 5 minutes old (a watch ends every 290 s and is opened again).";
        let mut f = w.family(&CURRENT, help, MetricType::Gauge)?;
        for &(resource, _, current_at) in &sizes {
            f.sample([(&RESOURCE, resource)], current_at);
        }
        let help = "Watch and list problems: undecodable lines, ERROR events, unknown event types, invalid objects, oversized lines, read errors, watches refused when lists are not.";
        let mut f = w.family(&ERRORS, help, MetricType::Counter)?;
        let mut errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        for &(resource, _, _) in &sizes {
            for reason in WATCH_ERROR_REASONS {
                errors.entry((resource, reason)).or_default();
            }
        }
        for ((resource, reason), n) in errors {
            f.sample([(&RESOURCE, resource), (&REASON, reason)], n as f64);
        }
        Ok(())
    }
}

#[async_trait]
impl Cluster for CachedCluster {
    async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
        self.pods.get(&self.client, &self.errors, self.wait).await
    }

    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
        let snap = self.nodes.get(&self.client, &self.errors, self.wait).await?;
        let mut cached = self.node_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, nodes)) = &*cached {
            if Arc::ptr_eq(from, &snap) {
                return Ok(nodes.clone());
            }
        }
        let nodes: Arc<Nodes> = Arc::new(nodes_by_name(&snap));
        *cached = Some((snap, nodes.clone()));
        Ok(nodes)
    }

    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
        match kind {
            ControllerKind::ReplicaSet => self.replicasets.get(&self.client, &self.errors, self.wait).await,
            ControllerKind::Job => self.jobs.get(&self.client, &self.errors, self.wait).await,
        }
    }

    /// Each cache still syncing, with why its last list failed, if it did (`/readyz` says
    /// it: an on-call engineer sees the 401 there, not only in the log).
    fn syncing(&self) -> Vec<String> {
        let caches = [
            ("pods", self.pods.syncing(), self.pods.last_error()),
            ("nodes", self.nodes.syncing(), self.nodes.last_error()),
            ("replicasets", self.replicasets.syncing(), self.replicasets.last_error()),
            ("jobs", self.jobs.syncing(), self.jobs.last_error()),
        ];
        let said = |(name, _, failed): (&str, bool, Option<String>)| match failed {
            Some(failed) => format!("{name} (last failure: {failed})"),
            None => name.to_owned(),
        };
        caches.into_iter().filter(|(_, syncing, _)| *syncing).map(said).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_that_change_nothing_keep_the_snapshot() {
        let mut store: Arc<Namespaced<u32>> = Arc::default();
        apply(&mut store, false, "a".into(), "p".into(), 1);
        let held = store.clone();
        apply(&mut store, false, "a".into(), "p".into(), 1);
        apply(&mut store, true, "a".into(), "gone".into(), 0);
        assert!(Arc::ptr_eq(&held, &store), "no change, no copy: the same snapshot");
        apply(&mut store, false, "a".into(), "p".into(), 2);
        assert!(!Arc::ptr_eq(&held, &store), "a change makes a new snapshot");
        assert_eq!((held.get("a", "p"), store.get("a", "p")), (Some(&1), Some(&2)), "the held one is untouched");
        apply(&mut store, true, "a".into(), "p".into(), 0);
        assert!(store.is_empty());
    }

    #[test]
    fn only_failures_a_fresh_list_may_get_past_lead_to_one() {
        let path = || "/api/v1/pods".to_owned();
        let io = |kind| KubeError::Transport { path: path(), source: std::io::Error::new(kind, "x").into() };
        let status = |status| KubeError::Status { path: path(), status, message: String::new(), retry_after: None };
        let cases = [
            (io(std::io::ErrorKind::ConnectionRefused), false),
            (io(std::io::ErrorKind::ConnectionReset), false),
            (io(std::io::ErrorKind::UnexpectedEof), false),
            (io(std::io::ErrorKind::InvalidData), false),
            (KubeError::Timeout { path: path(), after: Duration::from_secs(1), bound: "x" }, false),
            (status(429), false),
            (status(503), false),
            (status(502), false),
            (status(500), false),
            (status(504), false),
            (status(404), true),
            (
                KubeError::Status {
                    path: path(),
                    status: 504,
                    message: "Timeout: Too large resource version: 1001, current: 1000".into(),
                    retry_after: Some(Duration::from_secs(1)),
                },
                true,
            ),
            (status(403), true),
            (KubeError::EventTooLarge { path: path(), limit: 1 }, true),
            (KubeError::WatchError { path: path(), status: "{}".into() }, true),
        ];
        for (e, want) in cases {
            assert_eq!(relist_may_help(&e), want, "{e}");
        }
    }

    #[test]
    fn a_streaming_list_is_followed_by_pages_only_where_they_may_get_further() {
        let path = || "/api/v1/pods".to_owned();
        let io = |kind| KubeError::Transport { path: path(), source: std::io::Error::new(kind, "x").into() };
        let status = |status| KubeError::Status { path: path(), status, message: String::new(), retry_after: None };
        let unreached = crate::kube::Unreached::Failed {
            stage: "connect to",
            addr: "10.0.0.1:443".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let exec = crate::kube::ExecError::Spawn {
            command: "aws".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
            hint: String::new(),
        };
        let cases = [
            (KubeError::Transport { path: path(), source: Box::new(unreached) }, false),
            (KubeError::Credentials { path: path(), source: exec }, false),
            (status(401), false),
            (status(429), false),
            (status(500), false),
            (status(503), false),
            (status(403), true),
            (status(404), true),
            (io(std::io::ErrorKind::ConnectionReset), true),
            (io(std::io::ErrorKind::UnexpectedEof), true),
            (KubeError::Timeout { path: path(), after: Duration::from_secs(1), bound: "x" }, true),
            (KubeError::WatchError { path: path(), status: "{}".into() }, true),
        ];
        for (e, paged) in cases {
            assert_eq!(!pages_fail_alike(&e), paged, "{e}");
        }
    }

    #[test]
    fn page_paths_encode_the_continue_token() {
        assert_eq!(page_path("/api/v1/pods", Some(500), None), "/api/v1/pods?limit=500");
        assert_eq!(
            page_path("/api/v1/pods", Some(500), Some("eyJ2Ijoi+/=")),
            "/api/v1/pods?limit=500&continue=eyJ2Ijoi%2B%2F%3D"
        );
        assert_eq!(page_path("/x?a=b", Some(2), None), "/x?a=b&limit=2");
        assert_eq!(page_path("/api/v1/pods", None, None), "/api/v1/pods", "the whole list");
    }

    #[test]
    fn watch_paths_encode_the_resource_version() {
        assert_eq!(
            watch_path("/api/v1/pods", "1234", 290),
            "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion=1234"
        );
        // Opaque: a server other than etcd's may put anything there, and it must not add
        // parameters or break the request line.
        assert_eq!(
            watch_path("/api/v1/pods?fieldSelector=x", "7&watch=0 HTTP/1.1\r\n", 290),
            "/api/v1/pods?fieldSelector=x&watch=1&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion=7%26watch%3D0%20HTTP%2F1.1%0D%0A"
        );
    }

    #[test]
    fn watches_end_at_different_times_below_the_silence_bound() {
        let drawn: std::collections::BTreeSet<u64> = (0..200).map(|_| watch_timeout()).collect();
        assert!(drawn.iter().all(|t| (240..=290).contains(t)), "{drawn:?}");
        assert!(drawn.len() > 10, "spread: {drawn:?}");
        assert!(Duration::from_secs(290) < SILENCE);
    }

    #[test]
    fn a_list_must_end() {
        // A token sent back as it came: at once.
        let mut pages = Pages::new(Some(500));
        assert_eq!(pages.next(None, "a"), Ok(()));
        assert_eq!(pages.next(Some("a"), "b"), Ok(()));
        assert_eq!(pages.next(Some("b"), "b"), Err((3, true)));
        // New tokens for ever: at 5 million objects' worth of pages.
        let mut pages = Pages::new(Some(500));
        let ends = (0..20_000).map(|i| pages.next(Some(&i.to_string()), &(i + 1).to_string())).position(|r| r.is_err());
        assert_eq!(ends, Some(9_999), "10,000 pages of 500");
        assert_eq!(pages.next(Some("x"), "y"), Err((10_001, false)));
        // Small pages are allowed as many more.
        let mut pages = Pages::new(Some(1));
        assert!((0..150_000).all(|i| pages.next(Some(&i.to_string()), &(i + 1).to_string()).is_ok()));
    }
}
