//! Any text: where the fast path reads a metrics list, serde reads the same items from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::{ListItem, NodeMetricsList, PodMetricsList};
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    agree::<msp_core::PodMetrics<'_>>(text);
    agree::<msp_core::NodeMetrics<'_>>(text);
    let _ = (PodMetricsList::parse(data), NodeMetricsList::parse(data));
});
