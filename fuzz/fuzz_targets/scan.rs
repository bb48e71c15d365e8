//! Any text: where the fast path reads a metrics list, serde reads the same items from it;
//! a shard's scrape of a list parsed for it is its scrape of the whole list; a scrape that
//! takes the list (`Scrape::from_lists`) is the one that borrows it; and one read straight
//! from the body (`Scrape::from_pods_body`) is made exactly where the fast path reads the
//! list, and is the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::{All, ListItem, NodeMetricsList, PodMetrics, PodMetricsList, Scrape, Select};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(bound(deserialize = "U: Deserialize<'de>"))]
struct Serde<U> {
    #[serde(default)]
    items: Option<Vec<U>>,
}

fn agree<'a, T: ListItem<'a> + std::fmt::Debug>(text: &'a str) {
    if let Some(fast) = T::scan(text) {
        let serde = serde_json::from_str::<Serde<T>>(text).expect("serde reads what the fast path read");
        assert_eq!(format!("{fast:?}"), format!("{:?}", serde.items.unwrap_or_default()));
    }
}

/// Keeps the pods whose name has an odd length, and every node.
struct Odd;

impl Select for Odd {
    fn pod(&self, _: &str, name: &str) -> bool {
        name.len() % 2 == 1
    }
    fn node(&self, _: &str) -> bool {
        true
    }
}

fn selects_alike(text: &str) {
    let data = text.as_bytes();
    let nodes = NodeMetricsList::default();
    let straight_part = Scrape::from_pods_body(data, NodeMetricsList::default(), &Odd).ok();
    let straight_whole = Scrape::from_pods_body(data, NodeMetricsList::default(), &All).ok();
    assert_eq!(straight_part.is_some(), PodMetrics::scan_selected(text, &Odd).is_some());
    assert_eq!(straight_whole.is_some(), PodMetrics::scan(text).is_some());
    match (PodMetricsList::parse(data), PodMetricsList::parse_selected(data, &Odd)) {
        (Ok(whole), Ok(part)) => {
            let scrape = Scrape::select(&part, &nodes, &Odd);
            assert!(Scrape::select(&whole, &nodes, &Odd) == scrape);
            let mut held = None;
            assert!(Scrape::from_lists(part.clone(), NodeMetricsList::default(), &Odd, &mut held) == scrape);
            assert!(straight_part.is_none_or(|s| s == scrape));
            assert!(straight_whole.is_none_or(|s| s == Scrape::new(&whole, &nodes)));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            assert!(straight_part.is_none() && straight_whole.is_none());
        }
        (a, b) => panic!("whole list: {:?}, for the shard: {:?}", a.is_ok(), b.is_ok()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    agree::<msp_core::PodMetrics<'_>>(text);
    agree::<msp_core::NodeMetrics<'_>>(text);
    let _ = NodeMetricsList::parse(data);
    selects_alike(text);
});
