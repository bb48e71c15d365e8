//! Watch-backed metadata caches (the informer pattern), behind the [`Cluster`] trait.
//!
//! Each resource (pods, nodes, ReplicaSets, Jobs) is listed once, then watched from the
//! list's resourceVersion with bookmarks. A dropped watch resumes from the last
//! resourceVersion seen; only `410 Gone` forces a re-list; errors back off exponentially
//! (0.2 s doubling to 30 s). A cache starts on first use, so an enricher that is not
//! configured costs no watch. In steady state a scrape reads the caches and makes no list
//! request at all.
//!
//! A pod the cache does not know yet (metrics can arrive before the watch event) is served
//! unenriched, and enriched on the next scrape; it never triggers a re-list.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use msp_core::cluster::{self, Controllers, Namespaced, Nodes, Pods, SourceError, Text};
use msp_core::{async_trait, Cluster, ControllerKind, NodeInfo};
use serde::Deserialize;

use crate::kube::{KubeClient, KubeError};

/// One object (JSON) to its `(namespace, name)` and snapshot entry.
type EntryFn<T> = fn(&[u8]) -> Option<(Text, Text, T)>;

/// The node snapshot as a by-name map, and the store snapshot it was made from.
type NodeView = Option<(Arc<Namespaced<NodeInfo>>, Arc<Nodes>)>;

/// How one resource is read and turned into snapshot entries.
struct Kind<T> {
    resource: &'static str,
    path: &'static str,
    metadata_only: bool,
    entry: EntryFn<T>,
}

fn pod_entry(json: &[u8]) -> Option<(Text, Text, msp_core::PodInfo)> {
    let o: cluster::PodObject<'_> = serde_json::from_slice(json).ok()?;
    let (ns, name) = o.metadata.key()?;
    Some((ns, name, o.info()))
}

fn node_entry(json: &[u8]) -> Option<(Text, Text, NodeInfo)> {
    let o: cluster::NodeObject<'_> = serde_json::from_slice(json).ok()?;
    let (ns, name) = o.metadata.key()?;
    Some((ns, name, o.info()))
}

fn controller_entry(json: &[u8]) -> Option<(Text, Text, Option<msp_core::Owner>)> {
    let o: cluster::MetadataObject<'_> = serde_json::from_slice(json).ok()?;
    let (ns, name) = o.metadata.key()?;
    Some((ns, name, o.controller()))
}

#[derive(Deserialize)]
struct ListShape<'a> {
    #[serde(default, borrow)]
    metadata: Option<ListMeta<'a>>,
    #[serde(default, borrow)]
    items: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ListMeta<'a> {
    #[serde(default, borrow, rename = "resourceVersion")]
    resource_version: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    object: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
struct ObjectRv<'a> {
    #[serde(default, borrow)]
    metadata: Option<ListMeta<'a>>,
    #[serde(default)]
    code: Option<u16>,
}

/// One resource's cache.
struct Informer<T> {
    kind: Kind<T>,
    store: Mutex<Arc<Namespaced<T>>>,
    synced: AtomicBool,
    started: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Informer<T> {
    fn new(kind: Kind<T>) -> Arc<Self> {
        Arc::new(Informer {
            kind,
            store: Mutex::new(Arc::new(Namespaced::default())),
            synced: AtomicBool::new(false),
            started: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    fn snapshot(&self) -> Arc<Namespaced<T>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// The snapshot, starting the cache on first use and waiting (up to `wait`) for its
    /// first list.
    async fn get(
        self: &Arc<Self>,
        client: &Arc<KubeClient>,
        wait: Duration,
    ) -> Result<Arc<Namespaced<T>>, SourceError> {
        if !self.started.swap(true, Ordering::SeqCst) {
            let (me, client) = (self.clone(), client.clone());
            async_std::task::spawn(async move { me.run(client).await });
        }
        let deadline = std::time::Instant::now() + wait;
        // Wait for the first list, but not past a failure: a cache that can't list (a 403,
        // say) fails fast, and keeps retrying in the background with backoff.
        while !self.synced.load(Ordering::Acquire) {
            let failed = self.last_error.lock().ok().and_then(|e| e.clone());
            if failed.is_some() || std::time::Instant::now() >= deadline {
                let why = failed.unwrap_or_else(|| "no answer yet".into());
                return Err(format!("{} cache not synced: {why}", self.kind.resource).into());
            }
            async_std::task::sleep(Duration::from_millis(10)).await;
        }
        Ok(self.snapshot())
    }

    fn fail(&self, e: &dyn std::fmt::Display) {
        let message = e.to_string();
        log::warn!("{} cache: {message}", self.kind.resource);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message);
        }
    }

    async fn run(self: Arc<Self>, client: Arc<KubeClient>) {
        let mut backoff = Backoff::default();
        loop {
            let rv = match self.list(&client).await {
                Ok(rv) => {
                    backoff.reset();
                    rv
                }
                Err(e) => {
                    self.fail(&e);
                    backoff.wait().await;
                    continue;
                }
            };
            let mut rv = rv;
            // Watch, resuming from the last resourceVersion, until 410 Gone.
            loop {
                match self.watch(&client, &mut rv).await {
                    Ok(WatchEnd::Expired) => {
                        log::info!("{} cache: resourceVersion {rv} expired (410); re-listing", self.kind.resource);
                        break;
                    }
                    Ok(WatchEnd::Closed) => backoff.reset(),
                    Err(e) if e.status() == Some(410) => break,
                    Err(e) => {
                        self.fail(&e);
                        backoff.wait().await;
                    }
                }
            }
        }
    }

    async fn list(&self, client: &KubeClient) -> Result<String, KubeError> {
        let path = self.kind.path;
        let body = if self.kind.metadata_only {
            client.get_metadata(self.kind.resource, path).await?
        } else {
            client.get(self.kind.resource, path).await?
        };
        let bad = |e: serde_json::Error| KubeError::Transport {
            path: path.into(),
            message: format!("invalid list JSON: {e}"),
        };
        let list: ListShape<'_> = serde_json::from_slice(&body).map_err(bad)?;
        let mut store = Namespaced::default();
        for item in &list.items {
            if let Some((ns, name, v)) = (self.kind.entry)(item.get().as_bytes()) {
                store.insert(ns, name, v);
            }
        }
        let rv = list.metadata.and_then(|m| m.resource_version).map(|c| c.into_owned()).unwrap_or_default();
        *self.store.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(store);
        self.synced.store(true, Ordering::Release);
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        Ok(rv)
    }

    async fn watch(&self, client: &KubeClient, rv: &mut String) -> Result<WatchEnd, KubeError> {
        let sep = if self.kind.path.contains('?') { '&' } else { '?' };
        let path =
            format!("{}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion={rv}", self.kind.path);
        let res = client.watch(self.kind.resource, &path, self.kind.metadata_only).await?;
        let limit = client.limits().max_response_bytes;
        let mut lines = BufReader::new(res);
        let mut line = String::new();
        loop {
            line.clear();
            // A live watch carries bookmarks; silence for 5 minutes means a dead connection.
            let mut bounded = (&mut lines).take(limit as u64);
            let read = async_std::future::timeout(Duration::from_secs(300), bounded.read_line(&mut line));
            let n = match read.await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(KubeError::Transport { path, message: format!("watch: {e}") }),
                Err(_) => return Err(KubeError::Transport { path, message: "watch went silent".into() }),
            };
            if n == 0 {
                return Ok(WatchEnd::Closed);
            }
            let Ok(event) = serde_json::from_str::<Event<'_>>(line.trim_end()) else {
                log::warn!("{} watch: skipping a malformed event", self.kind.resource);
                continue;
            };
            let meta: Option<ObjectRv<'_>> = serde_json::from_str(event.object.get()).ok();
            if event.kind == "ERROR" {
                if meta.as_ref().and_then(|m| m.code) == Some(410) {
                    return Ok(WatchEnd::Expired);
                }
                return Err(KubeError::Transport {
                    path,
                    message: format!("watch error event: {}", event.object.get()),
                });
            }
            if let Some(v) = meta.and_then(|m| m.metadata).and_then(|m| m.resource_version) {
                *rv = v.into_owned();
            }
            if event.kind == "BOOKMARK" {
                continue;
            }
            let Some((ns, name, value)) = (self.kind.entry)(event.object.get().as_bytes()) else { continue };
            let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
            apply(&mut store, event.kind == "DELETED", ns, name, value);
        }
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

enum WatchEnd {
    /// The server ended the watch (its timeout): resume.
    Closed,
    /// 410 Gone: re-list.
    Expired,
}

/// Exponential backoff, 0.2 s doubling to 30 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    fn reset(&mut self) {
        self.0 = 0;
    }

    async fn wait(&mut self) {
        let ms = (200u64 << self.0.min(8)).min(30_000);
        self.0 += 1;
        async_std::task::sleep(Duration::from_millis(ms)).await;
    }
}

/// The watch-backed [`Cluster`] the server uses.
pub struct CachedCluster {
    client: Arc<KubeClient>,
    wait: Duration,
    pods: Arc<Informer<msp_core::PodInfo>>,
    nodes: Arc<Informer<NodeInfo>>,
    replicasets: Arc<Informer<Option<msp_core::Owner>>>,
    jobs: Arc<Informer<Option<msp_core::Owner>>>,
    node_snapshot: Mutex<NodeView>,
}

impl CachedCluster {
    /// Caches over `client`; the first read of each waits up to the request timeout.
    pub fn new(client: Arc<KubeClient>) -> Self {
        let wait = client.limits().timeout;
        CachedCluster {
            client,
            wait,
            pods: Informer::new(Kind {
                resource: "pods",
                path: "/api/v1/pods",
                metadata_only: false,
                entry: pod_entry,
            }),
            nodes: Informer::new(Kind {
                resource: "nodes",
                path: "/api/v1/nodes",
                metadata_only: false,
                entry: node_entry,
            }),
            replicasets: Informer::new(Kind {
                resource: "replicasets",
                path: "/apis/apps/v1/replicasets",
                metadata_only: true,
                entry: controller_entry,
            }),
            jobs: Informer::new(Kind {
                resource: "jobs",
                path: "/apis/batch/v1/jobs",
                metadata_only: true,
                entry: controller_entry,
            }),
            node_snapshot: Mutex::new(None),
        }
    }

    /// Objects held, by resource (only caches in use).
    pub fn sizes(&self) -> Vec<(&'static str, usize)> {
        let mut out = Vec::new();
        for (name, started, len) in [
            ("pods", self.pods.started.load(Ordering::Relaxed), self.pods.len()),
            ("nodes", self.nodes.started.load(Ordering::Relaxed), self.nodes.len()),
            ("replicasets", self.replicasets.started.load(Ordering::Relaxed), self.replicasets.len()),
            ("jobs", self.jobs.started.load(Ordering::Relaxed), self.jobs.len()),
        ] {
            if started {
                out.push((name, len));
            }
        }
        out
    }
}

#[async_trait]
impl Cluster for CachedCluster {
    async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
        self.pods.get(&self.client, self.wait).await
    }

    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
        let snap = self.nodes.get(&self.client, self.wait).await?;
        let mut cached = self.node_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((from, nodes)) = &*cached {
            if Arc::ptr_eq(from, &snap) {
                return Ok(nodes.clone());
            }
        }
        let nodes: Arc<Nodes> = Arc::new(snap_nodes(&snap));
        *cached = Some((snap, nodes.clone()));
        Ok(nodes)
    }

    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
        match kind {
            ControllerKind::ReplicaSet => self.replicasets.get(&self.client, self.wait).await,
            ControllerKind::Job => self.jobs.get(&self.client, self.wait).await,
        }
    }
}

/// Nodes are cluster-scoped: the namespaced store holds them under "".
fn snap_nodes(store: &Namespaced<NodeInfo>) -> HashMap<Text, NodeInfo> {
    store.iter_namespace("").map(|(k, v)| (k.clone(), v.clone())).collect()
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
}
