//! The simulated cluster's objects, and their JSON as the API server would send it.

use serde_json::{json, Value};

/// A container and its usage, as quantity strings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimContainer {
    /// Name.
    pub name: String,
    /// CPU quantity (`"7338891n"`).
    pub cpu: String,
    /// Memory quantity (`"14520Ki"`).
    pub memory: String,
}

/// A pod.
#[derive(Debug, Clone, PartialEq)]
pub struct SimPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `spec.nodeName`.
    pub node: String,
    /// `status.podIP`.
    pub ip: String,
    /// `status.hostIP`.
    pub host_ip: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Controller owner `(kind, name)`.
    pub owner: Option<(String, String)>,
    /// A mirror (static) pod.
    pub mirror: bool,
    /// Containers with usage.
    pub containers: Vec<SimContainer>,
    /// Listed by the pods API (false: deleted, but metrics-server still reports it).
    pub listed: bool,
}

/// A node.
#[derive(Debug, Clone, PartialEq)]
pub struct SimNode {
    /// Name.
    pub name: String,
    /// InternalIP.
    pub ip: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// CPU quantity.
    pub cpu: String,
    /// Memory quantity.
    pub memory: String,
}

/// A ReplicaSet or Job and its controller `(kind, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimController {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its own controller.
    pub owner: Option<(String, String)>,
}

/// Everything the simulated API server knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimCluster {
    /// Pods.
    pub pods: Vec<SimPod>,
    /// Nodes.
    pub nodes: Vec<SimNode>,
    /// ReplicaSets.
    pub replicasets: Vec<SimController>,
    /// Jobs.
    pub jobs: Vec<SimController>,
    /// Whether PodMetrics carry `metadata.labels` (metrics-server 0.5 and later).
    pub labels_in_metrics: bool,
}

fn labels(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

fn owner_refs(owner: &Option<(String, String)>) -> Value {
    match owner {
        Some((kind, name)) => {
            json!([{"apiVersion": "v1", "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}])
        }
        None => json!([]),
    }
}

const STAMP: &str = "2026-11-24T12:00:00Z";

impl SimCluster {
    /// `PodMetricsList`.
    pub fn pod_metrics(&self, version: &str) -> Value {
        let items: Vec<Value> = self
            .pods
            .iter()
            .map(|p| {
                let mut meta = json!({"name": p.name, "namespace": p.namespace, "creationTimestamp": STAMP});
                if self.labels_in_metrics {
                    meta["labels"] = labels(&p.labels);
                }
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|c| json!({"name": c.name, "usage": {"cpu": c.cpu, "memory": c.memory}}))
                    .collect();
                json!({"metadata": meta, "timestamp": STAMP, "window": "15.009s", "containers": containers})
            })
            .collect();
        json!({"kind": "PodMetricsList", "apiVersion": format!("metrics.k8s.io/{version}"), "metadata": {}, "items": items})
    }

    /// `NodeMetricsList`.
    pub fn node_metrics(&self, version: &str) -> Value {
        let items: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({"metadata": {"name": n.name, "labels": labels(&n.labels), "creationTimestamp": STAMP},
                       "timestamp": STAMP, "window": "20.05s", "usage": {"cpu": n.cpu, "memory": n.memory}})
            })
            .collect();
        json!({"kind": "NodeMetricsList", "apiVersion": format!("metrics.k8s.io/{version}"), "metadata": {}, "items": items})
    }

    /// `PodList`.
    pub fn pod_list(&self) -> Value {
        let items: Vec<Value> = self
            .pods
            .iter()
            .filter(|p| p.listed)
            .map(|p| {
                let mut meta = json!({"name": p.name, "namespace": p.namespace, "labels": labels(&p.labels),
                                      "ownerReferences": owner_refs(&p.owner), "uid": format!("uid-{}-{}", p.namespace, p.name)});
                if p.mirror {
                    meta["annotations"] = json!({"kubernetes.io/config.mirror": "a1b2c3", "kubernetes.io/config.source": "file"});
                }
                json!({"metadata": meta, "spec": {"nodeName": p.node, "containers": p.containers.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>()},
                       "status": {"phase": "Running", "podIP": p.ip, "hostIP": p.host_ip}})
            })
            .collect();
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"}, "items": items})
    }

    /// `NodeList`.
    pub fn node_list(&self) -> Value {
        let items: Vec<Value> = self
            .nodes
            .iter()
            .map(|n| {
                json!({"metadata": {"name": n.name, "labels": labels(&n.labels)},
                       "status": {"addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}]}})
            })
            .collect();
        json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"}, "items": items})
    }

    /// A list of ReplicaSets or Jobs as `PartialObjectMetadataList`.
    pub fn controller_list(controllers: &[SimController]) -> Value {
        let items: Vec<Value> = controllers
            .iter()
            .map(|c| {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": {"name": c.name, "namespace": c.namespace, "ownerReferences": owner_refs(&c.owner)}})
            })
            .collect();
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1000"}, "items": items})
    }

    /// The demo cluster: 3 nodes in 2 zones, 6 namespaces, 25 pods, every owner kind
    /// (Deployments through ReplicaSets, a CronJob through a Job, a bare Job, DaemonSets,
    /// StatefulSets, mirror pods, an unowned pod), nanocore and `Ki` quantities.
    pub fn demo() -> Self {
        let mut c = SimCluster { labels_in_metrics: false, ..Default::default() };
        let zones =
            [("node-a", "10.0.0.11", "zone-a"), ("node-b", "10.0.0.12", "zone-b"), ("node-c", "10.0.0.13", "zone-a")];
        for (i, (name, ip, zone)) in zones.iter().enumerate() {
            c.nodes.push(SimNode {
                name: name.to_string(),
                ip: ip.to_string(),
                labels: vec![
                    ("kubernetes.io/hostname".into(), name.to_string()),
                    ("topology.kubernetes.io/zone".into(), zone.to_string()),
                    ("node.kubernetes.io/instance-type".into(), "m5.large".into()),
                ],
                cpu: format!("{}n", 487_558_164 + i as u64 * 101_234_567),
                memory: format!("{}Ki", 3_732_212 + i as u64 * 250_000),
            });
        }
        let mut seq = 0u64;
        let mut add = |c: &mut SimCluster,
                       ns: &str,
                       name: &str,
                       node: usize,
                       app: &str,
                       owner: Option<(&str, &str)>,
                       extra: &[(&str, &str)]| {
            seq += 1;
            let mut labels =
                vec![("app".to_string(), app.to_string()), ("app.kubernetes.io/name".to_string(), app.to_string())];
            labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let containers = vec![SimContainer {
                name: app.to_string(),
                cpu: format!("{}n", 1_234_567 * seq + 7_338_891),
                memory: format!("{}Ki", 14_520 + 1024 * seq),
            }];
            let n = &zones[node % zones.len()];
            c.pods.push(SimPod {
                namespace: ns.into(),
                name: name.into(),
                node: n.0.into(),
                ip: format!("10.244.{}.{}", node % zones.len(), 10 + seq),
                host_ip: n.1.into(),
                labels,
                owner: owner.map(|(k, v)| (k.to_string(), v.to_string())),
                mirror: false,
                containers,
                listed: true,
            });
        };
        // kube-system
        for (i, node) in ["node-a", "node-b", "node-c"].iter().enumerate() {
            add(
                &mut c,
                "kube-system",
                &format!("kube-proxy-{}", ["x7k2p", "m4n8q", "b2v9w"][i]),
                i,
                "kube-proxy",
                Some(("DaemonSet", "kube-proxy")),
                &[("controller-revision-hash", "6b9c7d5f4"), ("pod-template-generation", "1")],
            );
            let _ = node;
        }
        for name in ["coredns-5d78c9869d-f6pqv", "coredns-5d78c9869d-tz8xl"] {
            add(
                &mut c,
                "kube-system",
                name,
                if name.ends_with('v') { 0 } else { 1 },
                "coredns",
                Some(("ReplicaSet", "coredns-5d78c9869d")),
                &[("pod-template-hash", "5d78c9869d"), ("k8s-app", "kube-dns")],
            );
        }
        add(
            &mut c,
            "kube-system",
            "metrics-server-7cd5fcb6b7-q9m2x",
            2,
            "metrics-server",
            Some(("ReplicaSet", "metrics-server-7cd5fcb6b7")),
            &[("pod-template-hash", "7cd5fcb6b7")],
        );
        for comp in ["etcd", "kube-apiserver"] {
            add(
                &mut c,
                "kube-system",
                &format!("{comp}-node-a"),
                0,
                comp,
                Some(("Node", "node-a")),
                &[("tier", "control-plane")],
            );
            if let Some(p) = c.pods.last_mut() {
                p.mirror = true;
            }
        }
        c.replicasets.push(SimController {
            namespace: "kube-system".into(),
            name: "coredns-5d78c9869d".into(),
            owner: Some(("Deployment".into(), "coredns".into())),
        });
        c.replicasets.push(SimController {
            namespace: "kube-system".into(),
            name: "metrics-server-7cd5fcb6b7".into(),
            owner: Some(("Deployment".into(), "metrics-server".into())),
        });
        // shop
        for (i, s) in ["8xk2d", "p9q4r", "z3w7m"].iter().enumerate() {
            add(
                &mut c,
                "shop",
                &format!("frontend-7c9d8f6b5-{s}"),
                i,
                "frontend",
                Some(("ReplicaSet", "frontend-7c9d8f6b5")),
                &[("pod-template-hash", "7c9d8f6b5"), ("tier", "web")],
            );
        }
        for (i, s) in ["h2j4k", "n5b6v"].iter().enumerate() {
            add(
                &mut c,
                "shop",
                &format!("cart-6f7b8c9d4-{s}"),
                i + 1,
                "cart",
                Some(("ReplicaSet", "cart-6f7b8c9d4")),
                &[("pod-template-hash", "6f7b8c9d4")],
            );
        }
        for i in 0..2 {
            add(
                &mut c,
                "shop",
                &format!("redis-{i}"),
                i,
                "redis",
                Some(("StatefulSet", "redis")),
                &[
                    ("controller-revision-hash", "redis-5b7d9c"),
                    ("statefulset.kubernetes.io/pod-name", &format!("redis-{i}")),
                ],
            );
            add(&mut c, "shop", &format!("api-{i}"), i, "api", Some(("StatefulSet", "api")), &[]);
        }
        c.replicasets.push(SimController {
            namespace: "shop".into(),
            name: "frontend-7c9d8f6b5".into(),
            owner: Some(("Deployment".into(), "frontend".into())),
        });
        c.replicasets.push(SimController {
            namespace: "shop".into(),
            name: "cart-6f7b8c9d4".into(),
            owner: Some(("Deployment".into(), "cart".into())),
        });
        // shop-staging: the same pod and ReplicaSet names as shop, other nodes and owners.
        add(
            &mut c,
            "shop-staging",
            "frontend-7c9d8f6b5-8xk2d",
            2,
            "frontend",
            Some(("ReplicaSet", "frontend-7c9d8f6b5")),
            &[("pod-template-hash", "7c9d8f6b5")],
        );
        add(&mut c, "shop-staging", "api-0", 2, "api", Some(("StatefulSet", "api")), &[]);
        c.replicasets.push(SimController {
            namespace: "shop-staging".into(),
            name: "frontend-7c9d8f6b5".into(),
            owner: Some(("Deployment".into(), "frontend-canary".into())),
        });
        // batch
        add(
            &mut c,
            "batch",
            "report-28394810-abcde",
            1,
            "report",
            Some(("Job", "report-28394810")),
            &[
                ("batch.kubernetes.io/controller-uid", "0f1e2d3c"),
                ("controller-uid", "0f1e2d3c"),
                ("job-name", "report-28394810"),
            ],
        );
        add(
            &mut c,
            "batch",
            "migrate-x2c4v",
            2,
            "migrate",
            Some(("Job", "migrate")),
            &[("batch.kubernetes.io/job-name", "migrate")],
        );
        c.jobs.push(SimController {
            namespace: "batch".into(),
            name: "report-28394810".into(),
            owner: Some(("CronJob".into(), "report".into())),
        });
        c.jobs.push(SimController { namespace: "batch".into(), name: "migrate".into(), owner: None });
        // monitoring: a DaemonSet
        for (i, s) in ["q1w2e", "r3t4y", "u5i6o"].iter().enumerate() {
            add(
                &mut c,
                "monitoring",
                &format!("node-exporter-{s}"),
                i,
                "node-exporter",
                Some(("DaemonSet", "node-exporter")),
                &[("controller-revision-hash", "7f8d9c6b5")],
            );
        }
        // default: an unowned pod with two containers.
        add(&mut c, "default", "debug-shell", 0, "debug", None, &[]);
        if let Some(p) = c.pods.last_mut() {
            p.containers.push(SimContainer { name: "sidecar".into(), cpu: "250000000n".into(), memory: "52Mi".into() });
        }
        c
    }

    /// A synthetic cluster of `pods` pods with two containers each, on `pods / 100` nodes
    /// (at least one), all owned by Deployments through ReplicaSets, for benchmarks.
    pub fn synthetic(pods: usize) -> Self {
        let mut c = SimCluster::default();
        let nodes = (pods / 100).max(1);
        for n in 0..nodes {
            c.nodes.push(SimNode {
                name: format!("node-{n:05}"),
                ip: format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256),
                labels: vec![("topology.kubernetes.io/zone".into(), format!("zone-{}", n % 3))],
                cpu: format!("{}n", 1_000_000_000 + n * 7919),
                memory: format!("{}Ki", 8_000_000 + n * 13),
            });
        }
        let per_rs = 10;
        for i in 0..pods {
            let ns = format!("ns-{:03}", (i / per_rs) % 50);
            let rs = format!("app-{}-5d78c9869d", i / per_rs);
            if i % per_rs == 0 {
                let deployment = format!("app-{}", i / per_rs);
                c.replicasets.push(SimController {
                    namespace: ns.clone(),
                    name: rs.clone(),
                    owner: Some(("Deployment".into(), deployment)),
                });
            }
            let node = i % nodes;
            c.pods.push(SimPod {
                namespace: ns,
                name: format!("{rs}-{i:06}"),
                node: format!("node-{node:05}"),
                ip: format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
                host_ip: format!("10.{}.{}.{}", node / 65536, (node / 256) % 256, node % 256),
                labels: vec![
                    ("app".into(), format!("app-{}", i / per_rs)),
                    ("app.kubernetes.io/name".into(), format!("app-{}", i / per_rs)),
                    ("pod-template-hash".into(), "5d78c9869d".into()),
                ],
                owner: Some(("ReplicaSet".into(), rs)),
                mirror: false,
                containers: vec![
                    SimContainer {
                        name: "app".into(),
                        cpu: format!("{}n", 1_000_000 + i * 17),
                        memory: format!("{}Ki", 100_000 + i % 1000),
                    },
                    SimContainer {
                        name: "sidecar".into(),
                        cpu: format!("{}n", 500_000 + i * 3),
                        memory: format!("{}Ki", 20_000 + i % 100),
                    },
                ],
                listed: true,
            });
        }
        c
    }
}
