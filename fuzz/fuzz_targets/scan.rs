//! Any text: where the fast path reads a metrics list, serde reads the same items from it;
//! a shard's scrape of a list parsed for it is its scrape of the whole list; and a scrape
//! that takes the list (`Scrape::from_lists`) is the one that borrows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::{ListItem, NodeMetricsList, PodMetricsList, Scrape, Select};
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

fn selects_alike(data: &[u8]) {
    let nodes = NodeMetricsList::default();
    match (PodMetricsList::parse(data), PodMetricsList::parse_selected(data, &Odd)) {
        (Ok(whole), Ok(part)) => {
            let scrape = Scrape::select(&part, &nodes, &Odd);
            assert!(Scrape::select(&whole, &nodes, &Odd) == scrape);
            let taken = PodMetricsList::parse_selected(data, &Odd).expect("read again as it was read");
            let mut held = None;
            assert!(Scrape::from_lists(taken, NodeMetricsList::default(), &Odd, &mut held) == scrape);
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("whole list: {:?}, for the shard: {:?}", a.is_ok(), b.is_ok()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    agree::<msp_core::PodMetrics<'_>>(text);
    agree::<msp_core::NodeMetrics<'_>>(text);
    let _ = NodeMetricsList::parse(data);
    selects_alike(data);
});
