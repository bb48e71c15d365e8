//! The simulated cluster's objects, and their JSON as the API server would send it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use msp_core::LabelSelector;

/// A container and its usage, as quantity strings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimContainer {
    /// Name.
    pub name: String,
    /// CPU quantity (`"7338891n"`).
    pub cpu: String,
    /// Memory quantity (`"14520Ki"`).
    pub memory: String,
}

/// A pod.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SimController {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its own controller.
    pub owner: Option<(String, String)>,
}

/// Everything the simulated API server knows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// metrics-server's `--metric-resolution`, in seconds: when set, the samples carry the
    /// start of the current period by the clock, as metrics-server's carry the time they
    /// were collected. When unset, one fixed time, so that the bodies stay the same byte
    /// for byte (tests, benchmarks).
    #[serde(default)]
    pub resolution: Option<u64>,
    /// With a resolution, each period's usage is within ±25% of the values here, the same
    /// for every request in the period: the demo's, so that its graphs move.
    #[serde(default)]
    pub moving_usage: bool,
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

/// The samples' time without a [`SimCluster::resolution`].
const STAMP: &str = "2026-11-24T12:00:00Z";

impl SimCluster {
    /// The samples' time: see [`SimCluster::resolution`]. To the second, as Go writes a
    /// `metav1.Time`.
    fn stamp(&self) -> String {
        let Some(resolution) = self.resolution else { return STAMP.to_owned() };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let start = Duration::from_secs(now - now % resolution.max(1));
        msp_core::format_rfc3339_ms(start).replace(".000Z", "Z")
    }

    /// `usage` (digits, then a suffix: `18449994n`, `125448Ki`) as it is in this period
    /// (see [`SimCluster::moving_usage`]) for the series `key`.
    fn usage_now(&self, usage: &str, key: &str) -> String {
        let (true, Some(resolution)) = (self.moving_usage, self.resolution) else { return usage.to_owned() };
        let digits = usage.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(value) = usage[..digits].parse::<u64>() else { return usage.to_owned() };
        if !usage[digits..].bytes().all(|b| b.is_ascii_alphabetic()) {
            return usage.to_owned();
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // A factor of 750 to 1,250 thousandths, from the key and the period.
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&(key, now / resolution.max(1)), &mut hash);
        let factor = 750 + std::hash::Hasher::finish(&hash) % 501;
        format!("{}{}", value.saturating_mul(factor) / 1000, &usage[digits..])
    }

    /// `PodMetricsList`.
    pub fn pod_metrics(&self, version: &str) -> Value {
        self.pod_metrics_matching(version, &LabelSelector::default())
    }

    /// `PodMetricsList` of the pods whose labels `selector` matches, sorted by namespace and
    /// name, as metrics-server sorts it ("the same ordering invariant as the Kube API").
    pub fn pod_metrics_matching(&self, version: &str, selector: &LabelSelector) -> Value {
        let stamp = self.stamp();
        let mut pods: Vec<&SimPod> = self.pods.iter().filter(|p| selector.matches(&p.labels)).collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let items: Vec<Value> = pods
            .into_iter()
            .map(|p| {
                let mut meta = json!({"name": p.name, "namespace": p.namespace, "creationTimestamp": stamp});
                if self.labels_in_metrics {
                    meta["labels"] = labels(&p.labels);
                }
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|c| {
                        let key = format!("{}/{}/{}", p.namespace, p.name, c.name);
                        let (cpu, memory) = (self.usage_now(&c.cpu, &key), self.usage_now(&c.memory, &key));
                        json!({"name": c.name, "usage": {"cpu": cpu, "memory": memory}})
                    })
                    .collect();
                json!({"metadata": meta, "timestamp": stamp, "window": "15.009s", "containers": containers})
            })
            .collect();
        json!({"kind": "PodMetricsList", "apiVersion": format!("metrics.k8s.io/{version}"), "metadata": {}, "items": items})
    }

    /// `NodeMetricsList`, sorted by name, as metrics-server sorts it.
    pub fn node_metrics(&self, version: &str) -> Value {
        let stamp = self.stamp();
        let mut nodes: Vec<&SimNode> = self.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let items: Vec<Value> = nodes
            .into_iter()
            .map(|n| {
                let (cpu, memory) = (self.usage_now(&n.cpu, &n.name), self.usage_now(&n.memory, &n.name));
                json!({"metadata": {"name": n.name, "labels": labels(&n.labels), "creationTimestamp": stamp},
                       "timestamp": stamp, "window": "20.05s", "usage": {"cpu": cpu, "memory": memory}})
            })
            .collect();
        json!({"kind": "NodeMetricsList", "apiVersion": format!("metrics.k8s.io/{version}"), "metadata": {}, "items": items})
    }

    /// `PodList`.
    pub fn pod_list(&self) -> Value {
        let items: Vec<Value> = self.pods.iter().filter(|p| p.listed).map(Self::pod_object).collect();
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"}, "items": items})
    }

    /// One `Pod`, as [`SimCluster::pod_list`] lists it.
    pub fn pod_object(p: &SimPod) -> Value {
        let mut meta = json!({"name": p.name, "namespace": p.namespace, "labels": labels(&p.labels),
                              "ownerReferences": owner_refs(&p.owner), "uid": format!("uid-{}-{}", p.namespace, p.name)});
        if p.mirror {
            meta["annotations"] =
                json!({"kubernetes.io/config.mirror": "a1b2c3", "kubernetes.io/config.source": "file"});
        }
        json!({"metadata": meta, "spec": {"nodeName": p.node, "containers": p.containers.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>()},
               "status": {"phase": "Running", "podIP": p.ip, "hostIP": p.host_ip}})
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
        // Empty, the API server writes `null` (its items are appended to a nil slice).
        let items = if items.is_empty() { Value::Null } else { Value::Array(items) };
        json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1000"}, "items": items})
    }

    /// The demo cluster: 3 nodes in 2 zones, 6 namespaces, 25 pods, every owner kind
    /// (Deployments through ReplicaSets, a CronJob through a Job, a bare Job, DaemonSets,
    /// StatefulSets, mirror pods, an unowned pod), nanocore and `Ki` quantities.
    pub fn demo() -> Self {
        // Parsed from a fixture compiled into the binary; a test checks that it parses.
        let cluster: SimCluster =
            serde_json::from_str(DEMO).unwrap_or_else(|e| unreachable!("the demo fixture is valid: {e}"));
        // metrics-server's default resolution: the demo's samples are as fresh as theirs.
        SimCluster { resolution: Some(15), ..cluster }
    }

    /// A synthetic cluster of `pods` pods with two containers each, on `pods / 100` nodes
    /// (at least one), all owned by Deployments through ReplicaSets, for benchmarks; its
    /// PodMetrics carry labels.
    pub fn synthetic(pods: usize) -> Self {
        // PodMetrics carry the pods' labels, as metrics-server 0.5 and later write them.
        let mut c = SimCluster { labels_in_metrics: true, ..SimCluster::default() };
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

impl SimCluster {
    /// `pods` pods shaped like a real cluster's, for the benchmark: [`SimCluster::synthetic`]'s
    /// layout (10 pods a ReplicaSet, 100 a node, 2 containers a pod), but 8 labels a pod
    /// (`app`, `app.kubernetes.io/{name,instance,version}`, `pod-template-hash`, `team`,
    /// `tier`, `environment`), workload names of real length, pod names ending in
    /// Kubernetes' random suffixes, EKS-style node names, and usage that looks measured (it
    /// compresses as real usage does, not as a counter does). Deterministic: the same `pods`
    /// give the same cluster.
    pub fn realistic(pods: usize) -> Self {
        SimCluster::realistic_replicas(pods, 10)
    }

    /// The most pods a ReplicaSet of [`SimCluster::realistic_replicas`] has: the last
    /// character of a pod's name tells them apart.
    pub const REALISTIC_MAX_REPLICAS: usize = ALPHABET.len();

    /// [`SimCluster::realistic`] with `replicas` pods a ReplicaSet (1 to
    /// [`SimCluster::REALISTIC_MAX_REPLICAS`]; clamped) instead of 10: most workloads of a
    /// real cluster run 1 to 3, and each change of workload from one pod to the next changes
    /// most label values (6 of the 8).
    pub fn realistic_replicas(pods: usize, replicas: usize) -> Self {
        const WORDS: [&str; 12] = [
            "checkout",
            "payments",
            "catalog",
            "search",
            "inventory",
            "shipping",
            "accounts",
            "pricing",
            "recommendations",
            "notifications",
            "reviews",
            "frontend",
        ];
        const KINDS: [&str; 4] = ["service", "api", "worker", "gateway"];
        const TEAMS: [&str; 6] = ["commerce", "platform", "growth", "data", "identity", "fulfilment"];
        const TIERS: [&str; 3] = ["frontend", "backend", "batch"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            // splitmix64
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let word = |n: usize, next: &mut dyn FnMut() -> u64| -> String {
            (0..n).map(|_| char::from(ALPHABET[(next() % ALPHABET.len() as u64) as usize])).collect()
        };
        let mut c = SimCluster { labels_in_metrics: true, ..SimCluster::default() };
        let nodes = (pods / 100).max(1);
        for n in 0..nodes {
            c.nodes.push(SimNode {
                name: format!("ip-10-{}-{}-{}.ec2.internal", n / 65536, (n / 256) % 256, n % 256),
                ip: format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256),
                labels: vec![
                    ("topology.kubernetes.io/zone".into(), format!("eu-west-1{}", ["a", "b", "c"][n % 3])),
                    ("node.kubernetes.io/instance-type".into(), "m6i.4xlarge".into()),
                ],
                cpu: format!("{}n", 2_000_000_000 + next() % 12_000_000_000),
                memory: format!("{}Ki", 20_000_000 + next() % 40_000_000),
            });
        }
        let per_rs = replicas.clamp(1, Self::REALISTIC_MAX_REPLICAS);
        let mut rs = String::new();
        let mut hash = String::new();
        for i in 0..pods {
            let w = i / per_rs;
            let team = TEAMS[(w / 7) % TEAMS.len()];
            let ns = format!("{team}-{}-prod", (w / 3) % 9);
            let deployment = format!("{}-{}-{}", WORDS[w % WORDS.len()], KINDS[(w / 12) % KINDS.len()], w);
            if i % per_rs == 0 {
                hash = word(10, &mut next);
                rs = format!("{deployment}-{hash}");
                c.replicasets.push(SimController {
                    namespace: ns.clone(),
                    name: rs.clone(),
                    owner: Some(("Deployment".into(), deployment.clone())),
                });
            }
            let node = (next() % nodes as u64) as usize;
            c.pods.push(SimPod {
                namespace: ns,
                // The last character tells the pods of one ReplicaSet apart: no name twice.
                name: format!("{rs}-{}{}", word(4, &mut next), char::from(ALPHABET[i % per_rs])),
                node: c.nodes[node].name.clone(),
                ip: format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
                host_ip: c.nodes[node].ip.clone(),
                labels: vec![
                    ("app".into(), deployment.clone()),
                    ("app.kubernetes.io/name".into(), deployment.clone()),
                    ("app.kubernetes.io/instance".into(), format!("{deployment}-prod")),
                    ("app.kubernetes.io/version".into(), format!("1.{}.{}", w % 40, w % 7)),
                    ("pod-template-hash".into(), hash.clone()),
                    ("team".into(), team.into()),
                    ("tier".into(), TIERS[w % TIERS.len()].into()),
                    ("environment".into(), "production".into()),
                ],
                owner: Some(("ReplicaSet".into(), rs.clone())),
                mirror: false,
                containers: vec![
                    SimContainer {
                        name: "app".into(),
                        cpu: format!("{}n", 1_000_000 + next() % 900_000_000),
                        memory: format!("{}Ki", 50_000 + next() % 2_000_000),
                    },
                    SimContainer {
                        name: "istio-proxy".into(),
                        cpu: format!("{}n", 500_000 + next() % 60_000_000),
                        memory: format!("{}Ki", 40_000 + next() % 200_000),
                    },
                ],
                listed: true,
            });
        }
        c
    }
}

/// Kubernetes' alphabet for generated names (no vowels, no 0, 1 or 3).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The demo cluster: 25 pods in 6 namespaces on 3 nodes, every owner kind.
const DEMO: &str = include_str!("../fixtures/demo-cluster.json");

#[cfg(test)]
mod tests {
    #[test]
    fn moving_usage_stays_within_a_quarter_of_the_values_and_keeps_their_unit() {
        let still = super::SimCluster::demo();
        let moving = super::SimCluster { moving_usage: true, ..super::SimCluster::demo() };
        assert_eq!(still.usage_now("18449994n", "k"), "18449994n", "only where asked");
        for key in ["shop/frontend/frontend", "node-a", "x"] {
            for (usage, base, unit) in [("18449994n", 18_449_994u64, "n"), ("125448Ki", 125_448, "Ki")] {
                let now = moving.usage_now(usage, key);
                let value: u64 = now.trim_end_matches(unit).parse().expect("digits, then the unit");
                assert!(now.ends_with(unit) && (base * 3 / 4..=base * 5 / 4).contains(&value), "{usage} {key}: {now}");
            }
        }
        assert_eq!(moving.usage_now("1.5Gi", "k"), "1.5Gi", "left as it is where not digits and a unit");
    }

    #[test]
    fn metrics_lists_are_sorted_as_metrics_server_sorts_them() {
        for cluster in [super::SimCluster::synthetic(1200), super::SimCluster::realistic(1200)] {
            sorted_as_metrics_server_sorts(&cluster, 1200);
        }
    }

    #[test]
    fn a_realistic_cluster_of_few_replicas_has_no_pod_twice() {
        for replicas in [1, 3, 27, 100] {
            let c = super::SimCluster::realistic_replicas(600, replicas);
            let names: std::collections::BTreeSet<(&str, &str)> =
                c.pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect();
            assert_eq!(names.len(), 600, "{replicas} replicas");
            let per_set = replicas.clamp(1, super::SimCluster::REALISTIC_MAX_REPLICAS);
            assert_eq!(c.replicasets.len(), 600_usize.div_ceil(per_set), "{replicas} replicas");
            sorted_as_metrics_server_sorts(&c, 600);
        }
    }

    #[test]
    fn the_realistic_cluster_is_the_same_each_time_and_unique() {
        let (a, b) = (super::SimCluster::realistic(500), super::SimCluster::realistic(500));
        assert_eq!(a.pod_metrics("v1"), b.pod_metrics("v1"));
        let names: std::collections::BTreeSet<(&str, &str)> =
            a.pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect();
        assert_eq!(names.len(), 500, "no pod twice");
        assert!(a.pods.iter().all(|p| p.labels.len() == 8));
    }

    fn sorted_as_metrics_server_sorts(cluster: &super::SimCluster, count: usize) {
        let pods = cluster.pod_metrics("v1beta1");
        let keys: Vec<(&str, &str)> = pods["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| (p["metadata"]["namespace"].as_str().expect("ns"), p["metadata"]["name"].as_str().expect("name")))
            .collect();
        assert_eq!(keys.len(), count);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "by namespace, then name");
        let nodes = cluster.node_metrics("v1beta1");
        let names: Vec<&str> = nodes["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|n| n["metadata"]["name"].as_str().expect("name"))
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "by name");
    }

    #[test]
    fn the_demo_fixture_parses() {
        let demo = super::SimCluster::demo();
        assert_eq!((demo.pods.len(), demo.nodes.len()), (25, 3));
    }
}
