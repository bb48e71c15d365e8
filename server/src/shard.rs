//! Sharding, as kube-state-metrics does it: `total` replicas each export the pods whose
//! stable hash of `(namespace, name)` falls in their share, and the nodes whose hash of the
//! name does. The union of all shards is exactly the unsharded output; no series appears
//! twice. Prometheus scrapes every shard; there is no coordination of our own.
//!
//! The hash is 64-bit FNV-1a over the namespace, a `/`, and the name (the node name alone for
//! nodes): fixed by its definition, so every version and architecture shards alike.

use msp_core::{ExpositionError, LabelName, MetricName, MetricType, Writer};

/// This replica's share: only [`Shard::new`] makes one, so its index is always below its
/// total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    total: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, total: 1 }
    }
}

/// A shard that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// `total` is 0.
    #[error("shard.total must be at least 1")]
    NoShards,
    /// The index is not below `total`.
    #[error(
        "shard.index {index} is not below shard.total {total}: set shard.total (MSP_SHARD__TOTAL) to the \
         number of shards, and the index (MSP_SHARD__INDEX) from 0 to one less"
    )]
    OutOfRange {
        /// The index.
        index: u32,
        /// The total.
        total: u32,
    },
    /// No index was given, and the pod name ends in an ordinal not below `total` (a
    /// StatefulSet scaled past it).
    #[error(
        "shard.total is {total} but {source_name}={name:?} is replica {index}, past the last shard ({last}): set \
         shard.total (MSP_SHARD__TOTAL) to the StatefulSet's replicas",
        last = total.saturating_sub(1)
    )]
    OrdinalOutOfRange {
        /// The ordinal.
        index: u32,
        /// The total.
        total: u32,
        /// Where the name came from (`POD_NAME`, `HOSTNAME`).
        source_name: &'static str,
        /// The name.
        name: String,
    },
    /// No index was given, and the pod name has no ordinal.
    #[error(
        "shard.total is {total} but no shard.index was given, and {source_name}={name:?} does not end in an ordinal \
         (a StatefulSet pod is NAME-0, NAME-1...): set MSP_SHARD__INDEX"
    )]
    NoOrdinal {
        /// The total.
        total: u32,
        /// Where the name came from (`POD_NAME`, `HOSTNAME`).
        source_name: &'static str,
        /// The name.
        name: String,
    },
    /// No index was given, and the pod name ends in a number too large for any shard.
    #[error("shard.total is {total} but {source_name}={name:?} ends in an ordinal past any shard.index: set MSP_SHARD__INDEX")]
    OrdinalTooLarge {
        /// The total.
        total: u32,
        /// Where the name came from (`POD_NAME`, `HOSTNAME`).
        source_name: &'static str,
        /// The name.
        name: String,
    },
    /// No index, and neither `POD_NAME` nor `HOSTNAME` is set.
    #[error("shard.total is {0} but no shard.index was given, and neither POD_NAME nor HOSTNAME is set")]
    NoName(u32),
}

/// 64-bit FNV-1a.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

impl Shard {
    /// This replica, `0..total`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many replicas share the cluster.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// The shard for `total` and `index`; without an index (and `total` > 1), the ordinal
    /// at the end of the pod's name (`metrics-server-prom-2` → 2), from `POD_NAME` (the
    /// downward API) or else `HOSTNAME`, as `env` gives them.
    pub fn new(total: u32, index: Option<u32>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ShardError> {
        if total == 0 {
            return Err(ShardError::NoShards);
        }
        let index = match index {
            Some(index) => index,
            None if total == 1 => 0,
            None => {
                let (source_name, name) = pod_name(env).ok_or(ShardError::NoName(total))?;
                match ordinal(&name) {
                    Some(Ok(index)) if index >= total => {
                        return Err(ShardError::OrdinalOutOfRange { index, total, source_name, name })
                    }
                    Some(Ok(ordinal)) => ordinal,
                    Some(Err(_)) => return Err(ShardError::OrdinalTooLarge { total, source_name, name }),
                    None => return Err(ShardError::NoOrdinal { total, source_name, name }),
                }
            }
        };
        if index >= total {
            return Err(ShardError::OutOfRange { index, total });
        }
        Ok(Shard { index, total })
    }

    /// What to warn of when the pod's name (as [`Shard::new`] reads it) says another replica
    /// than this shard: an index set for every replica alike (a `[shard] index` in a
    /// ConfigMap they all mount makes each the same shard, and the others' pods go
    /// unexported), or no sharding in a StatefulSet's later replica (each exports
    /// everything; from `POD_NAME` only, which the StatefulSet sets, since a Deployment's
    /// pod or a machine's `HOSTNAME` may end in digits too).
    pub fn pod_name_disagrees(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<ShardWarning> {
        let (source_name, name) = pod_name(env)?;
        let replica = ordinal(&name)?.ok()?;
        if self.total > 1 && replica != self.index {
            Some(ShardWarning::IndexIsNotTheOrdinal { index: self.index, replica, source_name, name })
        } else if self.total == 1 && replica > 0 && source_name == "POD_NAME" {
            Some(ShardWarning::UnshardedReplica { replica, name })
        } else {
            None
        }
    }

    /// Whether this shard exports the pod `namespace/name`.
    pub fn owns_pod(&self, namespace: &str, name: &str) -> bool {
        self.total == 1
            || fnv1a(&[namespace.as_bytes(), b"/", name.as_bytes()]) % u64::from(self.total) == u64::from(self.index)
    }

    /// Whether this shard exports the node `name`.
    pub fn owns_node(&self, name: &str) -> bool {
        self.total == 1 || fnv1a(&[name.as_bytes()]) % u64::from(self.total) == u64::from(self.index)
    }
}

/// A shard whose pod's name says another replica: see [`Shard::pod_name_disagrees`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardWarning {
    /// `shard.index` was set, and the name's ordinal is another.
    #[error(
        "shard.index (MSP_SHARD__INDEX) is {index} but {source_name}={name:?} is replica {replica}: replicas of a \
         StatefulSet that are given one index export one shard between them, and the others go unexported; \
         leave shard.index unset to take each replica's from its name"
    )]
    IndexIsNotTheOrdinal {
        /// The index set.
        index: u32,
        /// The name's ordinal.
        replica: u32,
        /// `POD_NAME` or `HOSTNAME`.
        source_name: &'static str,
        /// The name.
        name: String,
    },
    /// Not sharded, in a replica whose `POD_NAME` ends in an ordinal above 0.
    #[error(
        "not sharded (shard.total is 1), but POD_NAME={name:?} is replica {replica}: if this is a StatefulSet of \
         several replicas, each exports every pod; set shard.total (MSP_SHARD__TOTAL) to its replicas"
    )]
    UnshardedReplica {
        /// The name's ordinal.
        replica: u32,
        /// The name.
        name: String,
    },
}

/// Where the pod's name comes from (`POD_NAME`, else `HOSTNAME`), and the name.
fn pod_name(env: &dyn Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    ["POD_NAME", "HOSTNAME"].into_iter().find_map(|k| env(k).filter(|v| !v.is_empty()).map(|v| (k, v)))
}

/// The ordinal at the end of a StatefulSet pod's `name` (`metrics-server-prom-2`), if its
/// last part is digits; an error if they are too many.
fn ordinal(name: &str) -> Option<Result<u32, std::num::ParseIntError>> {
    let digits =
        name.rsplit_once('-').map(|(_, n)| n).filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    digits.map(str::parse::<u32>)
}

impl crate::self_metrics::Report for Shard {
    /// `kube_metrics_server_shard{index,total} 1`, and the same two numbers as values, for
    /// rules (PromQL cannot read a number from a label): `kube_metrics_server_total_shards`
    /// and `kube_metrics_server_shard_ordinal`, as kube-state-metrics exports them.
    fn write_metrics(&self, w: &mut Writer<'_>) -> Result<(), ExpositionError> {
        const SHARD: MetricName = MetricName::from_static("kube_metrics_server_shard");
        const TOTAL_SHARDS: MetricName = MetricName::from_static("kube_metrics_server_total_shards");
        const ORDINAL: MetricName = MetricName::from_static("kube_metrics_server_shard_ordinal");
        const INDEX: LabelName = LabelName::from_static("index");
        const TOTAL: LabelName = LabelName::from_static("total");
        let (index, total) = (self.index.to_string(), self.total.to_string());
        let help = "Always 1; which share of the pods and nodes this replica exports.";
        w.family(&SHARD, help, MetricType::Gauge)?.sample([(&INDEX, index.as_str()), (&TOTAL, total.as_str())], 1.0);
        let help = "How many replicas share the pods and nodes (shard.total).";
        w.family(&TOTAL_SHARDS, help, MetricType::Gauge)?.sample([], f64::from(self.total));
        let help = "Which of them this replica is, 0 to total - 1 (shard.index).";
        w.family(&ORDINAL, help, MetricType::Gauge)?.sample([], f64::from(self.index));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_hash_is_fnv1a_and_never_changes() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
    }

    #[test]
    fn every_pod_and_node_belongs_to_exactly_one_shard() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(3, Some(i), &none).expect("shard")).collect();
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let (ns, name) = (format!("ns-{}", i % 7), format!("pod-{i}"));
            let owners: Vec<usize> = (0..3).filter(|&s| shards[s].owns_pod(&ns, &name)).collect();
            assert_eq!(owners.len(), 1, "{ns}/{name}");
            counts[owners[0]] += 1;
            let node = format!("node-{i}");
            assert_eq!(shards.iter().filter(|s| s.owns_node(&node)).count(), 1);
        }
        assert!(counts.iter().all(|&c| (750..=1260).contains(&c)), "{counts:?}");
        assert!(Shard::default().owns_pod("a", "b") && Shard::default().owns_node("n"));
    }

    #[test]
    fn a_pod_name_that_says_another_replica_is_warned_of() {
        let pod = |name: &'static str| move |k: &str| (k == "POD_NAME").then(|| name.to_owned());
        let shard = |total, index| Shard::new(total, Some(index), &none).expect("shard");
        let warned = shard(3, 0).pod_name_disagrees(&pod("metrics-server-prom-2")).expect("a warning").to_string();
        assert_eq!(
            warned,
            "shard.index (MSP_SHARD__INDEX) is 0 but POD_NAME=\"metrics-server-prom-2\" is replica 2: replicas of a \
             StatefulSet that are given one index export one shard between them, and the others go unexported; \
             leave shard.index unset to take each replica's from its name"
        );
        assert_eq!(shard(3, 2).pod_name_disagrees(&pod("metrics-server-prom-2")), None, "they agree");
        let unsharded = shard(1, 0).pod_name_disagrees(&pod("metrics-server-prom-1")).expect("a warning");
        assert_eq!(unsharded, ShardWarning::UnshardedReplica { replica: 1, name: "metrics-server-prom-1".into() });
        assert!(unsharded.to_string().contains("(MSP_SHARD__TOTAL) to its replicas"), "{unsharded}");
        let host = |k: &str| (k == "HOSTNAME").then(|| "ci-3".to_owned());
        assert_eq!(shard(1, 0).pod_name_disagrees(&host), None, "a machine's name that ends in digits");
        assert_eq!(shard(1, 0).pod_name_disagrees(&pod("metrics-server-prom-0")), None, "one replica");
        for deployment in ["metrics-server-prom-7c9d8f6b5-x2kqp", "", "metrics-server-prom"] {
            assert_eq!(shard(3, 1).pod_name_disagrees(&pod(deployment)), None, "{deployment:?}: no ordinal");
            assert_eq!(shard(1, 0).pod_name_disagrees(&pod(deployment)), None, "{deployment:?}: no ordinal");
        }
        assert_eq!(shard(3, 1).pod_name_disagrees(&none), None, "no name");
    }

    #[test]
    fn the_index_comes_from_config_or_the_pod_name() {
        let env = |pod: Option<&'static str>, host: Option<&'static str>| {
            move |k: &str| match k {
                "POD_NAME" => pod.map(String::from),
                "HOSTNAME" => host.map(String::from),
                _ => None,
            }
        };
        assert_eq!(
            Shard::new(3, None, &env(Some("metrics-server-prom-1"), Some("x-2"))),
            Ok(Shard { index: 1, total: 3 })
        );
        assert_eq!(Shard::new(3, None, &env(None, Some("metrics-server-prom-2"))), Ok(Shard { index: 2, total: 3 }));
        assert_eq!(Shard::new(3, Some(0), &env(Some("x-2"), None)), Ok(Shard { index: 0, total: 3 }), "config wins");
        assert_eq!(Shard::new(1, None, &none), Ok(Shard::default()));
        let past = Shard::new(3, None, &env(Some("metrics-server-prom-3"), None)).expect_err("scaled past total");
        assert_eq!(
            past.to_string(),
            "shard.total is 3 but POD_NAME=\"metrics-server-prom-3\" is replica 3, past the last shard (2): set \
             shard.total (MSP_SHARD__TOTAL) to the StatefulSet's replicas"
        );
        assert!(matches!(
            Shard::new(3, Some(5), &env(Some("metrics-server-prom-1"), None)),
            Err(ShardError::OutOfRange { index: 5, total: 3 })
        ));
        assert!(matches!(
            Shard::new(3, None, &env(Some("metrics-server-prom"), None)),
            Err(ShardError::NoOrdinal { .. })
        ));
        assert!(matches!(
            Shard::new(3, None, &env(Some("metrics-server-prom-99999999999999999999"), None)),
            Err(ShardError::OrdinalTooLarge { total: 3, source_name: "POD_NAME", .. })
        ));
        for no_ordinal in ["metrics-server-prom-", "metrics-server-prom-+1", "metrics-server-prom-1a"] {
            assert!(matches!(Shard::new(3, None, &env(Some(no_ordinal), None)), Err(ShardError::NoOrdinal { .. })));
        }
        assert!(matches!(Shard::new(3, None, &none), Err(ShardError::NoName(3))));
        assert!(matches!(Shard::new(0, None, &none), Err(ShardError::NoShards)));
    }

    #[test]
    fn says_which_shard_as_labels_and_as_values() {
        use crate::self_metrics::Report;
        let mut out = String::new();
        let mut w = Writer::new(&mut out, msp_core::Format::OpenMetrics);
        Shard { index: 2, total: 3 }.write_metrics(&mut w).expect("write");
        w.finish();
        for line in [
            "kube_metrics_server_shard{index=\"2\",total=\"3\"} 1\n",
            "kube_metrics_server_total_shards 3\n",
            "kube_metrics_server_shard_ordinal 2\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }
}
