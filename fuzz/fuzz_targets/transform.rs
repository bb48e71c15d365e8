//! Any bytes as a PodMetricsList and NodeMetricsList: the transform never panics, the scrape
//! holds each pod once, in order, with its own containers, and every sample line it writes
//! ends in a value Prometheus parses.
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
    // Pods in (namespace, name) order, each once, each with its own containers in name
    // order, summed; every item either kept or reported.
    assert!(scrape.pods.windows(2).all(|w| (w[0].namespace, w[0].name) < (w[1].namespace, w[1].name)));
    for p in &scrape.pods {
        let containers = scrape.containers_of(p);
        assert!(containers.windows(2).all(|w| w[0].name < w[1].name));
        let cpu = containers.iter().fold(msp_core::Quantity::ZERO, |s, c| s.saturating_add(c.cpu));
        let memory = containers.iter().fold(msp_core::Quantity::ZERO, |s, c| s.saturating_add(c.memory));
        assert_eq!((cpu, memory), (p.cpu(), p.memory()));
        let own = pods.items.iter().any(|i| {
            (i.metadata.namespace.as_deref(), i.metadata.name.as_deref()) == (Some(p.namespace), Some(p.name))
                && i.containers.len() == containers.len()
        });
        assert!(own, "a pod's containers are its own");
    }
    let reported = scrape.errors.iter().filter(|e| e.resource == "pod").count();
    assert_eq!(scrape.pods.len() + reported, pods.items.len() + pods.invalid.len());
    let mut out = String::new();
    render(&mut out, &scrape, &[], &RenderOptions::default()).expect("render");
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().expect("value");
        assert!(value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value), "{line:?}");
        assert!(!line.contains('\n'));
    }
});
