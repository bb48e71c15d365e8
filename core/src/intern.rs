//! One shared copy of each repeated string in the metadata snapshots: node names, host IPs,
//! label keys and values, owner kinds and names repeat across thousands of pods. And one of
//! each set of labels: the pods of one ReplicaSet carry the same.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::cluster::{LabelSet, Text};

/// More distinct strings than this and the table starts over: memory stays bounded when
/// values churn (hashes in labels); strings already shared stay shared.
const MAX: usize = 200_000;

/// Label sets held before those no object uses any more are let go.
const MIN_SETS: usize = 4096;

/// A table of shared strings, and one of shared label sets.
#[derive(Debug, Default)]
pub struct Interner {
    texts: Mutex<HashSet<Text>>,
    sets: Mutex<Sets>,
}

#[derive(Debug, Default)]
struct Sets {
    table: HashSet<LabelSet>,
    /// When the table is this full, the sets only it holds are dropped.
    sweep_at: usize,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn text(&self, s: &str) -> Text {
        let mut table = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = table.get(s) {
            return t.clone();
        }
        if table.len() >= MAX {
            table.clear();
        }
        let t: Text = s.into();
        table.insert(t.clone());
        t
    }

    /// The shared copy of `labels` (sorted, as snapshots keep them). A set no object uses
    /// any more is let go when the table next fills up (at twice the sets in use, and no
    /// fewer than a few thousand), so churning labels cost no more than the live ones.
    pub fn labels(&self, labels: &[(Text, Text)]) -> LabelSet {
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = sets.table.get(labels) {
            return set.clone();
        }
        if sets.table.len() >= sets.sweep_at {
            sets.table.retain(|set| std::sync::Arc::strong_count(set) > 1);
            sets.sweep_at = (2 * sets.table.len()).max(MIN_SETS);
        }
        let set: LabelSet = labels.into();
        sets.table.insert(set.clone());
        set
    }

    /// How many distinct strings it holds.
    pub fn len(&self) -> usize {
        self.texts.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let i = Interner::default();
        let (a, b) = (i.text("node-a"), i.text(&String::from("node-a")));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert!(!std::sync::Arc::ptr_eq(&a, &i.text("node-b")));
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn equal_label_sets_share_one_copy_while_they_are_used() {
        let i = Interner::default();
        let set = |v: &str| vec![(i.text("app"), i.text(v))];
        let (a, b) = (i.labels(&set("web")), i.labels(&set("web")));
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, &set("web")[..]);
        assert!(!std::sync::Arc::ptr_eq(&a, &i.labels(&set("db"))));
        // Sets nothing else holds are let go as the table fills; those in use stay shared.
        for n in 0..3 * MIN_SETS {
            drop(i.labels(&set(&n.to_string())));
        }
        let held = i.sets.lock().expect("sets").table.len();
        assert!(held <= MIN_SETS + 1, "{held} sets held");
        assert!(std::sync::Arc::ptr_eq(&a, &i.labels(&set("web"))));
    }
}
