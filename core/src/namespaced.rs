//! Objects keyed by `(namespace, name)`, each kept behind its own `Arc`.
//!
//! A cache's snapshot is shared with the scrapes and the memo that read it, so the first
//! change after a scrape copies it ([`Arc::make_mut`]). Kept whole in the maps, each pod
//! cost that copy its name and its `PodInfo` (some 120 bytes a slot, the `PodInfo` ~100 of
//! them) and a count on each of their strings (the name, the node, IPs, labels and owner);
//! behind an `Arc`, a 24-byte slot (the name's pointer and the object's) and two counts. A
//! list read again
//! ([`Namespaced::insert_sharing`]) keeps the objects it finds unchanged, so the new store
//! is only new maps beside the old, and the memo sees an object unchanged by its pointer
//! ([`Namespaced::same_at`]) before it compares it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::Text;

/// Objects keyed by `(namespace, name)`; looked up by `&str` without allocating.
#[derive(Debug)]
pub struct Namespaced<T> {
    by_namespace: HashMap<Text, HashMap<Text, Arc<T>>>,
    len: usize,
}

impl<T> Default for Namespaced<T> {
    fn default() -> Self {
        Namespaced { by_namespace: HashMap::new(), len: 0 }
    }
}

/// Copies the maps: the objects are shared, not copied.
impl<T> Clone for Namespaced<T> {
    fn clone(&self) -> Self {
        Namespaced { by_namespace: self.by_namespace.clone(), len: self.len }
    }
}

impl<T> Namespaced<T> {
    /// The object at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.get_shared(namespace, name).map(|(_, v)| &**v)
    }

    /// The object at `namespace/name`, with the name as kept (to share it).
    pub fn get_key_value(&self, namespace: &str, name: &str) -> Option<(&Text, &T)> {
        self.get_shared(namespace, name).map(|(k, v)| (k, &**v))
    }

    /// The object at `namespace/name` as kept, with its name.
    pub fn get_shared(&self, namespace: &str, name: &str) -> Option<(&Text, &Arc<T>)> {
        self.by_namespace.get(namespace)?.get_key_value(name)
    }

    /// Whether `self` and `other` hold the same object at `namespace/name`: the very same
    /// copy, or equal ones (or neither holds one).
    pub fn same_at(&self, other: &Namespaced<T>, namespace: &str, name: &str) -> bool
    where
        T: PartialEq,
    {
        match (self.get_shared(namespace, name), other.get_shared(namespace, name)) {
            (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b) || a == b,
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    /// Adds or replaces an object; returns the one it replaced.
    pub fn insert(&mut self, namespace: Text, name: Text, value: T) -> Option<Arc<T>> {
        self.insert_shared(namespace, name, Arc::new(value))
    }

    /// [`Namespaced::insert`] of an object kept elsewhere too.
    pub fn insert_shared(&mut self, namespace: Text, name: Text, value: Arc<T>) -> Option<Arc<T>> {
        let old = self.by_namespace.entry(namespace).or_default().insert(name, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// [`Namespaced::insert`], but where `earlier` holds an equal object at the same place,
    /// that copy and its name are kept instead: a list read again over a store it mostly
    /// repeats holds the unchanged objects once, not twice.
    pub fn insert_sharing(&mut self, namespace: Text, name: Text, value: T, earlier: &Namespaced<T>) -> Option<Arc<T>>
    where
        T: PartialEq,
    {
        match earlier.get_shared(&namespace, &name) {
            Some((kept_name, kept)) if **kept == value => {
                let (kept_name, kept) = (kept_name.clone(), kept.clone());
                self.insert_shared(namespace, kept_name, kept)
            }
            _ => self.insert(namespace, name, value),
        }
    }

    /// Removes an object.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<Arc<T>> {
        let names = self.by_namespace.get_mut(namespace)?;
        let old = names.remove(name);
        if names.is_empty() {
            self.by_namespace.remove(namespace);
        }
        self.len -= usize::from(old.is_some());
        old
    }

    /// Keeps only the objects for which `keep(namespace, name, object)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str, &T) -> bool) {
        let mut len = 0;
        self.by_namespace.retain(|ns, names| {
            names.retain(|name, v| keep(ns, name, v));
            len += names.len();
            !names.is_empty()
        });
        self.len = len;
    }

    /// The objects of one namespace (`""` for cluster-scoped ones).
    pub fn iter_namespace<'s>(&'s self, namespace: &str) -> impl Iterator<Item = (&'s Text, &'s T)> + 's {
        self.by_namespace.get(namespace).into_iter().flat_map(|m| m.iter().map(|(k, v)| (k, &**v)))
    }

    /// Every object, with its namespace and name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &Text, &T)> + '_ {
        self.by_namespace.iter().flat_map(|(ns, names)| names.iter().map(move |(name, v)| (ns, name, &**v)))
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_index_counts() {
        let mut idx = Namespaced::default();
        assert!(idx.insert("a".into(), "x".into(), 1).is_none());
        assert_eq!(idx.insert("a".into(), "x".into(), 2).as_deref(), Some(&1));
        idx.insert("b".into(), "x".into(), 3);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.remove("a", "x").as_deref(), Some(&2));
        assert_eq!(idx.remove("a", "x"), None);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get("b", "x"), Some(&3));
        idx.insert("b".into(), "y".into(), 4);
        let mut all: Vec<_> = idx.iter().map(|(ns, name, v)| (ns.to_string(), name.to_string(), *v)).collect();
        all.sort();
        assert_eq!(all, [("b".into(), "x".into(), 3), ("b".into(), "y".into(), 4)]);
        idx.retain(|_, name, v| name == "y" && *v == 4);
        assert_eq!((idx.len(), idx.get("b", "y"), idx.get("b", "x")), (1, Some(&4), None));
    }

    #[test]
    fn a_copy_shares_the_objects_and_a_change_to_it_is_its_own() {
        let mut first = Namespaced::default();
        first.insert("ns".into(), "a".into(), String::from("one"));
        first.insert("ns".into(), "b".into(), String::from("two"));
        let mut second = first.clone();
        let (Some((_, a1)), Some((_, a2))) = (first.get_shared("ns", "a"), second.get_shared("ns", "a")) else {
            panic!("both hold a")
        };
        assert!(Arc::ptr_eq(a1, a2), "a copy shares each object");
        second.insert("ns".into(), "a".into(), String::from("uno"));
        second.remove("ns", "b");
        assert_eq!((first.get("ns", "a"), first.get("ns", "b")), (Some(&"one".into()), Some(&"two".into())));
        assert_eq!((second.get("ns", "a"), second.get("ns", "b"), second.len()), (Some(&"uno".into()), None, 1));
    }

    #[test]
    fn a_list_read_again_keeps_the_earlier_copies_of_what_it_did_not_change() {
        let mut earlier = Namespaced::default();
        earlier.insert("ns".into(), "a".into(), String::from("one"));
        earlier.insert("ns".into(), "b".into(), String::from("two"));
        let mut again = Namespaced::default();
        again.insert_sharing("ns".into(), "a".into(), String::from("one"), &earlier);
        again.insert_sharing("ns".into(), "b".into(), String::from("deux"), &earlier);
        again.insert_sharing("ns".into(), "c".into(), String::from("three"), &earlier);
        again.insert_sharing("other".into(), "a".into(), String::from("one"), &earlier);
        let shared = |ns: &str, name: &str| {
            let (Some((k1, v1)), Some((k2, v2))) = (earlier.get_shared(ns, name), again.get_shared(ns, name)) else {
                return false;
            };
            assert_eq!(Arc::ptr_eq(k1, k2), Arc::ptr_eq(v1, v2), "{ns}/{name}: the name goes with the object");
            Arc::ptr_eq(v1, v2)
        };
        assert!(shared("ns", "a"), "unchanged: the earlier copy");
        assert!(!shared("ns", "b"), "changed: its own");
        assert_eq!(again.get("ns", "b"), Some(&"deux".into()));
        assert_eq!(
            (again.get("ns", "c"), again.get("other", "a"), again.len()),
            (Some(&"three".into()), Some(&"one".into()), 4)
        );
    }

    #[test]
    fn the_same_object_is_the_same_copy_or_an_equal_one() {
        let mut old = Namespaced::default();
        old.insert("ns".into(), "a".into(), 1);
        old.insert("ns".into(), "b".into(), 2);
        old.insert("ns".into(), "c".into(), 3);
        let mut new = old.clone();
        new.insert("ns".into(), "b".into(), 2);
        new.insert("ns".into(), "c".into(), 4);
        new.insert("ns".into(), "d".into(), 5);
        assert!(new.same_at(&old, "ns", "a"), "the same copy");
        assert!(new.same_at(&old, "ns", "b"), "an equal copy");
        assert!(!new.same_at(&old, "ns", "c"), "changed");
        assert!(!new.same_at(&old, "ns", "d") && !old.same_at(&new, "ns", "d"), "only in one");
        assert!(new.same_at(&old, "ns", "e") && new.same_at(&old, "elsewhere", "a"), "in neither");
        // NaN equals nothing, itself neither: only the pointer says it is the same copy.
        let mut old = Namespaced::default();
        old.insert("ns".into(), "nan".into(), f64::NAN);
        let mut new = old.clone();
        assert!(new.same_at(&old, "ns", "nan"), "the same copy, by its pointer");
        new.insert("ns".into(), "nan".into(), f64::NAN);
        assert!(!new.same_at(&old, "ns", "nan"), "another copy, compared");
    }
}
