//! The streaming list: a watch with `sendInitialEvents=true` whose first events are the
//! collection's objects, ended by a bookmark annotated `k8s.io/initial-events-end`, as
//! client-go's reflector reads it with its `WatchListClient` feature (kube-rs: `streaming
//! lists`). The API server sends it from its watch cache, one object an event: no page to
//! hold, and no `continue` token to expire, however long it takes.
//!
//! A server without it refuses the request as invalid (422: the `WatchList` feature is off,
//! or, before Kubernetes 1.27, `resourceVersionMatch` on a watch; or 400), and the caches
//! list in pages from then on. So do they after a server that ignores the parameters: one
//! that sends nothing at all within [`FIRST_EVENT`], or a bookmark without the end's
//! annotation (the API server sends no other before the end; one that ignored the request
//! sends its own, after the objects of a watch of old, or in place of them). Any other
//! failure (a dropped connection, an `ERROR` event, silence partway, objects past
//! [`INITIAL_EVENTS`] or past a list's bound) costs only this list, which the cache then
//! reads in pages: the next list streams again. A 429 or 5xx (with a `Retry-After` or not)
//! or a 401 is waited out, and the streaming list asked again: pages would fail alike. The
//! watch goes on on the same connection, from the end's resourceVersion.

use msp_core::{Entry, Namespaced};

use super::{count, decode, Informer, Lines, WatchErrors};
use crate::kube::{KubeClient, KubeError, MAX_LIST_OBJECTS};

/// Why a streaming list gave no list.
pub(super) enum Streamed {
    /// The server does not stream lists: the caches list in pages from now.
    Unsupported(String),
    /// It failed as any request can: this list is read in pages, unless the server is in
    /// trouble (a 429 or 5xx) or refuses the token (401).
    Failed(KubeError),
}

impl<T: Entry + Clone + PartialEq + Send + Sync + 'static> Informer<T> {
    /// Reads the collection as a streaming list, and publishes it as the new store at the
    /// bookmark that ends it; returns that bookmark's resourceVersion and the watch, which
    /// goes on from it.
    pub(super) async fn stream_list(
        &self,
        client: &KubeClient,
        errors: &WatchErrors,
    ) -> Result<(String, Lines), Streamed> {
        let resource = self.kind.resource;
        let path = stream_path(self.kind.path, super::watch_timeout());
        let res = client.watch(resource, &path, self.kind.metadata_only).await.map_err(|e| match e.status() {
            Some(400 | 422) => Streamed::Unsupported(format!("it answered {e}")),
            _ => Streamed::Failed(e),
        })?;
        let mut lines = Lines::new(res, client, &path);
        let mut store = Namespaced::default();
        // What it holds now (nothing, the first time): the objects the list repeats are kept
        // once, not read anew beside them.
        let earlier = self.snapshot();
        let mut objects = 0usize;
        let deadline = std::time::Instant::now() + INITIAL_EVENTS;
        loop {
            if std::time::Instant::now() > deadline {
                return Err(Streamed::Failed(KubeError::UnendedStream { path, objects, closed: false }));
            }
            // The objects come one after the other, the first as soon as the API server's
            // watch cache has caught up with the request; one that ignored
            // `sendInitialEvents` (and bookmarks) would say nothing until an object changes.
            let timeout = client.limits().timeout;
            let silence = if objects == 0 { FIRST_EVENT.min(timeout) } else { timeout };
            let line = match lines.next(silence, resource, errors).await {
                Ok(Some(line)) => line,
                Ok(None) => return Err(Streamed::Failed(KubeError::UnendedStream { path, objects, closed: true })),
                Err(KubeError::Timeout { after, .. }) if objects == 0 => {
                    return Err(Streamed::Unsupported(format!("neither an object nor the end within {after:?}")));
                }
                Err(e) => return Err(Streamed::Failed(e)),
            };
            let Some(event) = decode(line, resource, errors) else {
                if objects == 0 {
                    // A list's body, say, answered to a watch.
                    return Err(Streamed::Unsupported("its answer is not a watch's events".into()));
                }
                continue;
            };
            let deleted = match &*event.kind {
                "ADDED" | "MODIFIED" => false,
                "DELETED" => true,
                "BOOKMARK" if event.initial_events_end() => {
                    let Some(rv) = event.resource_version() else {
                        return Err(Streamed::Failed(KubeError::NoEndVersion { path }));
                    };
                    self.publish(store);
                    log::debug!(resource = resource; "{resource} cache: {objects} objects streamed, at resourceVersion {rv}");
                    return Ok((rv, lines));
                }
                "BOOKMARK" => {
                    return Err(Streamed::Unsupported(format!(
                        "a bookmark without the end's annotation after {objects} objects"
                    )));
                }
                "ERROR" => {
                    count(errors, resource, "error_event", 1);
                    let status = event.object.get().to_owned();
                    return Err(Streamed::Failed(KubeError::WatchError { path, status }));
                }
                other => {
                    log::debug!(resource = resource; "{resource} watch: ignoring an event of unknown type {other:?}");
                    count(errors, resource, "unknown_type", 1);
                    continue;
                }
            };
            objects += 1;
            if objects as u64 > u64::from(MAX_LIST_OBJECTS) {
                return Err(Streamed::Failed(KubeError::UnendedStream { path, objects, closed: false }));
            }
            let Some((ns, name, value)) = T::from_object(event.object.get().as_bytes(), &self.interner) else {
                count(errors, resource, "invalid_object", 1);
                continue;
            };
            if deleted {
                store.remove(&ns, &name);
            } else {
                store.insert_sharing(ns, name, value, &earlier);
            }
        }
    }
}

/// How long the first event of a streaming list may take: the API server sends it once its
/// watch cache has caught up with the request (a consistent read; for an empty collection,
/// the end, at its next bookmark tick, about a second). It waits up to 3 s for that, then
/// answers with an error ("Too large resource version"), so a busy server's first event
/// may come at 3 s and a little: this leaves it room. A server that ignored the request, on
/// an empty collection, would otherwise hold the cache for the request timeout, or until
/// its first bookmark. One silent this long costs the streaming lists until the process
/// restarts, not the caches: they list in pages.
const FIRST_EVENT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the objects of a streaming list may take, all told: a server that sends events
/// but never the end (one that ignored the request, on a busy cluster) would otherwise hold
/// the cache unsynced, or frozen at its last list, for as long as its watch lasts. At
/// 150,000 pods, a copy of the stand-in streamed in 8 s.
const INITIAL_EVENTS: std::time::Duration = std::time::Duration::from_secs(120);

/// The streaming list of `path`: a watch from a consistent read (no resourceVersion, at
/// least as new as the request), with the initial events and bookmarks.
fn stream_path(path: &str, timeout: u64) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{sep}watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds={timeout}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_path_asks_for_the_initial_events_from_a_consistent_read() {
        assert_eq!(
            stream_path("/api/v1/pods", 290),
            "/api/v1/pods?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=290"
        );
        assert!(stream_path("/api/v1/pods?fieldSelector=x", 290).starts_with("/api/v1/pods?fieldSelector=x&watch=1&"));
    }
}
