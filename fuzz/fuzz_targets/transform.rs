//! Any bytes as a PodMetricsList and NodeMetricsList: the transform never panics, and every
//! sample line it writes ends in a value Prometheus parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::{NodeMetricsList, PodMetricsList};
use msp_core::{render, RenderOptions, Scrape};

fuzz_target!(|data: &[u8]| {
    // Split the input: the first part is the pod list, the rest the node list.
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (pods, nodes) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    // As the server reads them (the fast path first, then serde).
    let pods = PodMetricsList::parse(pods).unwrap_or_default();
    let nodes = NodeMetricsList::parse(nodes).unwrap_or_default();
    let scrape = Scrape::new(&pods, &nodes);
    let mut out = String::new();
    render(&mut out, &scrape, &[], &RenderOptions::default()).expect("render");
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value), "{line:?}");
        assert!(!line.contains('\n'));
    }
});
