//! Any string: parsing never panics; a parsed quantity converts to the nearest f64 (as
//! the standard library's decimal parser rounds its nano-units), and its canonical form
//! parses back to the same value. A string that starts with a digit reads as it does with
//! a `+` before it, which takes the general path past the shortcut for digits and a suffix.
//! A usage (not negative) is written in a container's series as its f64 is written by
//! `Family::sample`, byte for byte, though the series writes it from its digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::{render, Format, MetricName, MetricType, NodeMetricsList, PodMetricsList};
use msp_core::{Quantity, RenderOptions, Scrape, Writer};

/// The value `render` writes for a container whose CPU usage is `q`.
fn rendered(q: Quantity) -> String {
    let pods = format!(
        r#"{{"items":[{{"metadata":{{"name":"p","namespace":"n"}},"containers":[{{"name":"c","usage":{{"cpu":"{q}","memory":"1"}}}}]}}]}}"#
    );
    let pods = PodMetricsList::parse(pods.as_bytes()).expect("a pod list");
    let nodes = NodeMetricsList::default();
    let scrape = Scrape::new(&pods, &nodes);
    assert!(scrape.errors.is_empty(), "{q}: {:?}", scrape.errors);
    let mut out = String::new();
    render(&mut out, &scrape, &[], &RenderOptions::default()).expect("render");
    let line = out.lines().find(|l| l.starts_with("kube_metrics_server_container_cpu_usage_cores{")).expect("a series");
    line.rsplit(' ').next().expect("a value").to_owned()
}

/// The value `Family::sample` writes for `v`.
fn sampled(v: f64) -> String {
    let mut out = String::new();
    let mut w = Writer::new(&mut out, Format::Text);
    let name = MetricName::new("x").expect("a name");
    w.family(&name, "x", MetricType::Gauge).expect("a family").sample([], v);
    w.finish();
    let line = out.lines().find(|l| l.starts_with("x ")).expect("a sample");
    line.rsplit(' ').next().expect("a value").to_owned()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = text.parse::<Quantity>();
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        let general = format!("+{text}").parse::<Quantity>();
        assert_eq!(parsed.as_ref().ok(), general.as_ref().ok(), "{text:?}");
    }
    match parsed {
        Ok(q) => {
            let f = q.as_f64();
            assert!(!f.is_nan(), "{text:?} gave NaN");
            let nearest: f64 = format!("{}e-9", q.nanos()).parse().expect("a decimal number");
            assert_eq!(f, nearest, "{text:?}");
            let back: Quantity = q.to_string().parse().expect("canonical form parses");
            assert_eq!(back, q, "{text:?}");
            if q >= Quantity::ZERO {
                assert_eq!(rendered(q), sampled(f), "{text:?}");
            }
        }
        Err(e) => assert_eq!(e.input, text),
    }
});
