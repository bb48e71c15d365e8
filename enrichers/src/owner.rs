//! `owner`: the pod's controller and the workload at the top of its controller chain.
//!
//! `owner_kind`/`owner_name` come from the pod's controller ownerReference. The workload
//! (`workload_kind`/`workload_name`) follows one more step where Kubernetes has one:
//! ReplicaSet to its Deployment, Job to its CronJob; otherwise it is the owner itself (a
//! DaemonSet, a StatefulSet, a bare ReplicaSet or Job). A mirror (static) pod is owned by its
//! Node. A pod with no controller gets none of these labels. ReplicaSets and Jobs are read
//! as metadata only, and only when some pod is owned by one (as the server starts, when
//! some pod in the pod list is: see [`Enricher::warm_up`]).
//!
//! When ReplicaSets (or Jobs) cannot be read (a 403: the ClusterRole lacks them), the pods
//! they own keep `owner_kind`/`owner_name` and go without the workload labels, and every
//! other pod is labelled as ever; the enrichment is [incomplete](Enrichment::incomplete),
//! which counts as this enricher's failure.

use std::fmt;

use msp_core::{
    async_trait, AddedLabel, Cluster, ControllerKind, Depends, EnrichError, Enricher, Enrichment, LabelName, Owner,
    Scrape, Series, SourceError,
};

static OWNER_KIND: LabelName = LabelName::from_static("owner_kind");
static OWNER_NAME: LabelName = LabelName::from_static("owner_name");
static WORKLOAD_KIND: LabelName = LabelName::from_static("workload_kind");
static WORKLOAD_NAME: LabelName = LabelName::from_static("workload_name");

/// The `owner` enricher.
#[derive(Debug, Clone, Default)]
pub struct OwnerEnricher;

#[async_trait]
impl Enricher for OwnerEnricher {
    fn name(&self) -> &str {
        "owner"
    }

    fn depends(&self) -> Depends {
        // Reads only the pod's own entries (see `Depends::Pod`).
        Depends::Pod
    }

    fn labels(&self) -> Vec<AddedLabel> {
        vec![
            AddedLabel::new(
                "owner_kind",
                Series::Pods,
                "Kind of the pod's controller (ReplicaSet, Job, DaemonSet, StatefulSet, Node...).",
            ),
            AddedLabel::new("owner_name", Series::Pods, "Name of the pod's controller."),
            AddedLabel::new(
                "workload_kind",
                Series::Pods,
                "Kind at the top of the controller chain (Deployment, CronJob, or the owner's kind).",
            ),
            AddedLabel::new("workload_name", Series::Pods, "Name at the top of the controller chain."),
        ]
    }

    async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
        let mut out = Enrichment::new(scrape);
        if scrape.pods.is_empty() {
            return Ok(out);
        }
        let pods = cluster.pods().await?;
        let owners: Vec<Option<Owner>> = scrape
            .pods
            .iter()
            .map(|p| {
                let info = pods.get(p.namespace, p.name)?;
                match (&info.controller, &info.node_name) {
                    (Some(c), _) => Some(c.clone()),
                    (None, Some(node)) if info.mirror => Some(Owner { kind: "Node".into(), name: node.clone() }),
                    _ => None,
                }
            })
            .collect();
        let mut tables = Vec::new();
        for kind in [ControllerKind::ReplicaSet, ControllerKind::Job] {
            if owners.iter().flatten().any(|o| &*o.kind == kind.kind()) {
                match cluster.controllers(kind).await {
                    Ok(table) => tables.push((kind, table)),
                    Err(source) => out.incomplete(Unread { kind, source }),
                }
            }
        }
        for (i, (pod, owner)) in scrape.pods.iter().zip(&owners).enumerate() {
            let Some(owner) = owner else { continue };
            out.add_pod_label(i, OWNER_KIND.clone(), owner.kind.clone());
            out.add_pod_label(i, OWNER_NAME.clone(), owner.name.clone());
            let parent = match ControllerKind::from_kind(&owner.kind) {
                None => None,
                Some(kind) => match tables.iter().find(|(t, _)| *t == kind) {
                    Some((_, table)) => table.get(pod.namespace, &owner.name).cloned().flatten(),
                    // Its kind could not be read: no workload rather than a wrong one.
                    None => continue,
                },
            };
            let workload = parent.as_ref().unwrap_or(owner);
            out.add_pod_label(i, WORKLOAD_KIND.clone(), workload.kind.clone());
            out.add_pod_label(i, WORKLOAD_NAME.clone(), workload.name.clone());
        }
        Ok(out)
    }

    /// The pods, then, at once, the controllers of each kind that owns some of them (a
    /// cluster without Jobs is never asked for Jobs): one that fails costs the other
    /// nothing.
    async fn warm_up(&self, cluster: &dyn Cluster) -> Result<(), EnrichError> {
        let pods = cluster.pods().await?;
        let read = |kind: ControllerKind| {
            let owns = pods.iter().any(|(_, _, p)| p.controller.as_ref().is_some_and(|c| &*c.kind == kind.kind()));
            async move {
                if owns {
                    cluster.controllers(kind).await.map(drop)
                } else {
                    Ok(())
                }
            }
        };
        let (replicasets, jobs) =
            futures_lite::future::zip(read(ControllerKind::ReplicaSet), read(ControllerKind::Job)).await;
        replicasets.and(jobs)
    }
}

/// The controllers of one kind could not be read: the pods they own go without workload
/// labels.
#[derive(Debug)]
struct Unread {
    kind: ControllerKind,
    source: SourceError,
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s: {}; the pods they own get no workload labels", self.kind, self.source)
    }
}

impl std::error::Error for Unread {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, pod_labels, scrape_lists};

    #[async_std::test]
    async fn every_owner_kind() {
        let pods = r#"{"items":[
          {"metadata":{"name":"web","namespace":"a","ownerReferences":[{"kind":"ReplicaSet","name":"web-7d","controller":true}]}},
          {"metadata":{"name":"web","namespace":"b","ownerReferences":[{"kind":"ReplicaSet","name":"web-7d","controller":true}]}},
          {"metadata":{"name":"rep","namespace":"a","ownerReferences":[{"kind":"Job","name":"rep-123","controller":true}]}},
          {"metadata":{"name":"ds","namespace":"a","ownerReferences":[{"kind":"DaemonSet","name":"agent","controller":true}]}},
          {"metadata":{"name":"etcd-n1","namespace":"kube-system","annotations":{"kubernetes.io/config.mirror":"x"}},"spec":{"nodeName":"n1"}},
          {"metadata":{"name":"lone","namespace":"a"}}]}"#;
        let controllers = r#"{"items":[
          {"metadata":{"name":"web-7d","namespace":"a","ownerReferences":[{"kind":"Deployment","name":"web","controller":true}]}},
          {"metadata":{"name":"web-7d","namespace":"b","ownerReferences":[{"kind":"Deployment","name":"web-canary","controller":true}]}},
          {"metadata":{"name":"rep-123","namespace":"a","ownerReferences":[{"kind":"CronJob","name":"rep","controller":true}]}}]}"#;
        let c = cluster(pods, r#"{"items":[]}"#, controllers);
        let (pm, nm) = scrape_lists(&["a/web", "b/web", "a/rep", "a/ds", "kube-system/etcd-n1", "a/lone"], &[]);
        let scrape = Scrape::new(&pm, &nm);
        let e = OwnerEnricher.enrich(&scrape, &c).await.expect("enrich");
        let at = |ns: &str, name: &str| pod_labels(&e, scrape.pod_index(ns, name).expect("pod"));
        let four = |ok: &'static str, on: &'static str, wk: &'static str, wn: &'static str| {
            vec![("owner_kind", ok), ("owner_name", on), ("workload_kind", wk), ("workload_name", wn)]
        };
        assert_eq!(at("a", "web"), four("ReplicaSet", "web-7d", "Deployment", "web"));
        assert_eq!(at("b", "web"), four("ReplicaSet", "web-7d", "Deployment", "web-canary"));
        assert_eq!(at("a", "rep"), four("Job", "rep-123", "CronJob", "rep"));
        assert_eq!(at("a", "ds"), four("DaemonSet", "agent", "DaemonSet", "agent"));
        assert_eq!(at("kube-system", "etcd-n1"), four("Node", "n1", "Node", "n1"));
        assert!(at("a", "lone").is_empty());
    }

    #[async_std::test]
    async fn controllers_that_cannot_be_read_cost_only_the_workloads_they_give() {
        let pods = r#"{"items":[
          {"metadata":{"name":"web","namespace":"a","ownerReferences":[{"kind":"ReplicaSet","name":"web-7d","controller":true}]}},
          {"metadata":{"name":"rep","namespace":"a","ownerReferences":[{"kind":"Job","name":"rep-123","controller":true}]}},
          {"metadata":{"name":"ds","namespace":"a","ownerReferences":[{"kind":"DaemonSet","name":"agent","controller":true}]}},
          {"metadata":{"name":"db-0","namespace":"a","ownerReferences":[{"kind":"StatefulSet","name":"db","controller":true}]}}]}"#;
        let controllers = r#"{"items":[
          {"metadata":{"name":"rep-123","namespace":"a","ownerReferences":[{"kind":"CronJob","name":"rep","controller":true}]}}]}"#;
        let refusing =
            crate::testing::Refusing(cluster(pods, r#"{"items":[]}"#, controllers), ControllerKind::ReplicaSet);
        let (pm, nm) = scrape_lists(&["a/web", "a/rep", "a/ds", "a/db-0"], &[]);
        let scrape = Scrape::new(&pm, &nm);
        let e = OwnerEnricher.enrich(&scrape, &refusing).await.expect("labels, not an error");
        let at = |name: &str| pod_labels(&e, scrape.pod_index("a", name).expect("pod"));
        assert_eq!(at("web"), [("owner_kind", "ReplicaSet"), ("owner_name", "web-7d")], "no workload, not a wrong one");
        let four = |ok: &'static str, on: &'static str, wk: &'static str, wn: &'static str| {
            vec![("owner_kind", ok), ("owner_name", on), ("workload_kind", wk), ("workload_name", wn)]
        };
        assert_eq!(at("rep"), four("Job", "rep-123", "CronJob", "rep"));
        assert_eq!(at("ds"), four("DaemonSet", "agent", "DaemonSet", "agent"));
        assert_eq!(at("db-0"), four("StatefulSet", "db", "StatefulSet", "db"));
        let why = e.incompleteness().expect("incomplete").to_string();
        assert_eq!(why, "ReplicaSets: HTTP 403; the pods they own get no workload labels");
    }

    #[async_std::test]
    async fn warms_up_the_pods_then_the_controllers_they_name() {
        let warmed = |pods: &str| {
            let reads = crate::testing::Reads(cluster(pods, r#"{"items":[]}"#, r#"{"items":[]}"#), Default::default());
            async_std::task::block_on(OwnerEnricher.warm_up(&reads)).expect("warm");
            reads.taken()
        };
        let owned = |kind: &str| {
            format!(
                r#"{{"items":[{{"metadata":{{"name":"p","namespace":"a","ownerReferences":[{{"kind":"{kind}","name":"x","controller":true}}]}}}},
                   {{"metadata":{{"name":"q","namespace":"a"}}}}]}}"#
            )
        };
        assert_eq!(warmed(&owned("ReplicaSet")), ["pods", "ReplicaSet"], "no Job, so no Jobs asked for");
        assert_eq!(warmed(&owned("Job")), ["pods", "Job"]);
        assert_eq!(warmed(&owned("DaemonSet")), ["pods"]);
        let both = owned("ReplicaSet").replace(
            r#"{"name":"q","namespace":"a"}"#,
            r#"{"name":"q","namespace":"a","ownerReferences":[{"kind":"Job","name":"j","controller":true}]}"#,
        );
        assert_eq!(warmed(&both), ["pods", "ReplicaSet", "Job"]);
    }
}
