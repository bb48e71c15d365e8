//! Which pods a scrape exports: namespaces by glob, and a label selector the metrics API
//! applies itself.

use msp_core::{Filter, Scrape};

/// Which pods a scrape exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Namespaces to keep (`namespaces.allow`, then `namespaces.deny`).
    pub namespaces: Filter,
    /// Passed to the metrics API as `labelSelector` on the pod list.
    pub label_selector: Option<String>,
}

impl Scope {
    /// Drops the pods of namespaces outside the scope.
    pub fn apply(&self, scrape: &mut Scrape<'_>) {
        if !self.namespaces.keeps_all() {
            scrape.pods.retain(|p| self.namespaces.keeps(p.namespace));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_pods_of_namespaces_in_scope() {
        let pods = serde_json::from_str(
            r#"{"items":[
              {"metadata":{"name":"a","namespace":"kube-system"},"containers":[]},
              {"metadata":{"name":"b","namespace":"shop"},"containers":[]},
              {"metadata":{"name":"c","namespace":"kube-public"},"containers":[]}]}"#,
        )
        .expect("pods");
        let nodes = Default::default();
        let mut scrape = Scrape::new(&pods, &nodes);
        let scope = Scope {
            namespaces: Filter::new(&["kube-*", "shop"], &["kube-public"]).expect("filter"),
            label_selector: None,
        };
        scope.apply(&mut scrape);
        let kept: Vec<&str> = scrape.pods.iter().map(|p| p.name).collect();
        assert_eq!(kept, ["a", "b"]);

        let mut all = Scrape::new(&pods, &nodes);
        Scope::default().apply(&mut all);
        assert_eq!(all.pods.len(), 3);
    }
}
