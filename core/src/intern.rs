//! One shared copy of each repeated string in the metadata snapshots: node names, host IPs,
//! label keys and values, owner kinds and names repeat across thousands of pods.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::cluster::Text;

/// More distinct strings than this and the table starts over: memory stays bounded when
/// values churn (hashes in labels); strings already shared stay shared.
const MAX: usize = 200_000;

/// A table of shared strings.
#[derive(Debug, Default)]
pub struct Interner(Mutex<HashSet<Text>>);

impl Interner {
    /// The shared copy of `s`.
    pub fn text(&self, s: &str) -> Text {
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
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

    /// How many distinct strings it holds.
    pub fn len(&self) -> usize {
        self.0.lock().map(|t| t.len()).unwrap_or(0)
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
}
