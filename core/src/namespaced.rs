//! Objects keyed by `(namespace, name)`, each kept with its name behind its own `Arc`.
//!
//! A cache's snapshot is shared with the scrapes and the memo that read it, so the first
//! change after a scrape copies it ([`Arc::make_mut`]). Kept whole in the maps, each pod
//! cost that copy its name and its `PodInfo` (some 120 bytes a slot, the `PodInfo` ~100 of
//! them) and a count on each of their strings (the name, the node, IPs, labels and owner);
//! behind one `Arc` with its name, an 8-byte slot (and the table's spare room) and one
//! count. A list read again
//! ([`Namespaced::insert_sharing`]) keeps the objects it finds unchanged, so the new store
//! is only new maps beside the old, and the memo sees an object unchanged by its pointer
//! ([`Namespaced::same_at`]) before it compares it.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::cluster::Text;

/// Objects keyed by `(namespace, name)`; looked up by `&str` without allocating.
#[derive(Debug)]
pub struct Namespaced<T> {
    by_namespace: HashMap<Text, HashSet<Slot<T>>>,
    len: usize,
}

/// An object and its name, shared by the snapshots that hold it unchanged.
#[derive(Debug)]
struct Named<T> {
    name: Text,
    value: T,
}

/// A map's slot: the object, found by its name (hashed and compared as the name alone, as
/// `str` is, so that a `&str` finds it).
#[derive(Debug)]
struct Slot<T>(Arc<Named<T>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot(Arc::clone(&self.0))
    }
}

impl<T> Borrow<str> for Slot<T> {
    fn borrow(&self) -> &str {
        &self.0.name
    }
}

impl<T> Hash for Slot<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        <str as Hash>::hash(&self.0.name, state)
    }
}

/// By name alone, as the set finds a slot: not whether two slots hold equal objects (see
/// [`Namespaced::same_at`]).
impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        *self.0.name == *other.0.name
    }
}

impl<T> Eq for Slot<T> {}

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
    fn slot(&self, namespace: &str, name: &str) -> Option<&Arc<Named<T>>> {
        self.by_namespace.get(namespace)?.get(name).map(|slot| &slot.0)
    }

    /// The object at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.slot(namespace, name).map(|n| &n.value)
    }

    /// The object at `namespace/name`, with the name as kept (to share it).
    pub fn get_key_value(&self, namespace: &str, name: &str) -> Option<(&Text, &T)> {
        self.slot(namespace, name).map(|n| (&n.name, &n.value))
    }

    /// Whether `self` and `other` hold the very same copy of the object at
    /// `namespace/name` (and of its name), as a store and the copy it was made from do
    /// where it did not change.
    pub fn shares(&self, other: &Namespaced<T>, namespace: &str, name: &str) -> bool {
        matches!((self.slot(namespace, name), other.slot(namespace, name)), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// Whether `self` and `other` hold the same object at `namespace/name`: the very same
    /// copy, or equal ones (or neither holds one).
    pub fn same_at(&self, other: &Namespaced<T>, namespace: &str, name: &str) -> bool
    where
        T: PartialEq,
    {
        self.get_same_at(other, namespace, name).1
    }

    /// [`Namespaced::get`] and [`Namespaced::same_at`] at once, with one lookup in each
    /// store: the object `self` holds at `namespace/name`, and whether `other` holds the
    /// same (the memo follows a pod it finds unchanged to its node and controller).
    pub fn get_same_at(&self, other: &Namespaced<T>, namespace: &str, name: &str) -> (Option<&T>, bool)
    where
        T: PartialEq,
    {
        match (self.slot(namespace, name), other.slot(namespace, name)) {
            (Some(a), Some(b)) => (Some(&a.value), Arc::ptr_eq(a, b) || a.value == b.value),
            (a, b) => (a.map(|a| &a.value), a.is_none() && b.is_none()),
        }
    }

    /// Adds or replaces an object; returns whether it replaced one (`true`: there was
    /// one, as `HashMap::insert`'s `Some`). A replaced object's name is kept as it was, as
    /// a map keeps its key: whoever shares it (the memo, for a pod) goes on sharing it.
    pub fn insert(&mut self, namespace: Text, name: Text, value: T) -> bool {
        let kept = self.slot(&namespace, &name).map(|held| Arc::clone(&held.name));
        self.put(namespace, Arc::new(Named { name: kept.unwrap_or(name), value }))
    }

    fn put(&mut self, namespace: Text, named: Arc<Named<T>>) -> bool {
        let replaced = self.by_namespace.entry(namespace).or_default().replace(Slot(named)).is_some();
        self.len += usize::from(!replaced);
        replaced
    }

    /// [`Namespaced::insert`], but where `earlier` holds an equal object at the same place,
    /// that copy and its name are kept instead: a list read again over a store it mostly
    /// repeats holds the unchanged objects once, not twice.
    pub fn insert_sharing(&mut self, namespace: Text, name: Text, value: T, earlier: &Namespaced<T>) -> bool
    where
        T: PartialEq,
    {
        match earlier.slot(&namespace, &name) {
            Some(kept) if kept.value == value => {
                let kept = Arc::clone(kept);
                self.put(namespace, kept)
            }
            _ => self.insert(namespace, name, value),
        }
    }

    /// Removes an object; returns whether there was one.
    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let Some(names) = self.by_namespace.get_mut(namespace) else { return false };
        let removed = names.remove(name);
        if names.is_empty() {
            self.by_namespace.remove(namespace);
        }
        self.len -= usize::from(removed);
        removed
    }

    /// Keeps only the objects for which `keep(namespace, name, object)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str, &T) -> bool) {
        let mut len = 0;
        self.by_namespace.retain(|ns, names| {
            names.retain(|slot| keep(ns, &slot.0.name, &slot.0.value));
            len += names.len();
            !names.is_empty()
        });
        self.len = len;
    }

    /// The objects of one namespace (`""` for cluster-scoped ones).
    pub fn iter_namespace<'s>(&'s self, namespace: &str) -> impl Iterator<Item = (&'s Text, &'s T)> + 's {
        self.by_namespace.get(namespace).into_iter().flat_map(|m| m.iter().map(|slot| (&slot.0.name, &slot.0.value)))
    }

    /// Every object, with its namespace and name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &Text, &T)> + '_ {
        self.by_namespace.iter().flat_map(|(ns, names)| names.iter().map(move |slot| (ns, &slot.0.name, &slot.0.value)))
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
        assert!(!idx.insert("a".into(), "x".into(), 1), "new");
        let name = Arc::clone(idx.get_key_value("a", "x").expect("inserted").0);
        assert!(idx.insert("a".into(), "x".into(), 2), "replaced");
        assert_eq!(idx.get("a", "x"), Some(&2));
        let kept = idx.get_key_value("a", "x").expect("replaced").0;
        assert!(Arc::ptr_eq(kept, &name), "a replaced object keeps the name it had, as a map keeps its key");
        idx.insert("b".into(), "x".into(), 3);
        assert_eq!(idx.len(), 2);
        assert!(idx.remove("a", "x"));
        assert!(!idx.remove("a", "x"));
        assert!(!idx.remove("nowhere", "x"));
        assert_eq!((idx.len(), idx.get("a", "x")), (1, None));
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
        assert!(second.shares(&first, "ns", "a") && second.shares(&first, "ns", "b"), "a copy shares each object");
        second.insert("ns".into(), "a".into(), String::from("uno"));
        second.remove("ns", "b");
        assert_eq!((first.get("ns", "a"), first.get("ns", "b")), (Some(&"one".into()), Some(&"two".into())));
        assert_eq!((second.get("ns", "a"), second.get("ns", "b"), second.len()), (Some(&"uno".into()), None, 1));
        assert!(!second.shares(&first, "ns", "a") && !second.shares(&first, "ns", "b"));
        assert!(!first.shares(&first, "ns", "c"), "none to share");
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
            let shares = again.shares(&earlier, ns, name);
            let (Some((k1, _)), Some((k2, _))) = (earlier.get_key_value(ns, name), again.get_key_value(ns, name))
            else {
                return shares;
            };
            assert_eq!(Arc::ptr_eq(k1, k2), shares, "{ns}/{name}: the name goes with the object");
            shares
        };
        assert!(shared("ns", "a"), "unchanged: the earlier copy");
        assert!(!shared("ns", "b"), "changed: its own");
        assert!(!shared("ns", "c") && !shared("other", "a"), "not held before: new copies");
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
        // With the object `new` holds, as the memo follows a pod to its node and owner.
        assert_eq!(new.get_same_at(&old, "ns", "b"), (Some(&2), true));
        assert_eq!(new.get_same_at(&old, "ns", "c"), (Some(&4), false));
        assert_eq!(new.get_same_at(&old, "ns", "d"), (Some(&5), false));
        assert_eq!(old.get_same_at(&new, "ns", "d"), (None, false));
        assert_eq!(new.get_same_at(&old, "ns", "e"), (None, true));
        // NaN equals nothing, itself neither: only the pointer says it is the same copy.
        let mut old = Namespaced::default();
        old.insert("ns".into(), "nan".into(), f64::NAN);
        let mut new = old.clone();
        assert!(new.same_at(&old, "ns", "nan"), "the same copy, by its pointer");
        new.insert("ns".into(), "nan".into(), f64::NAN);
        assert!(!new.same_at(&old, "ns", "nan"), "another copy, compared");
    }
}
