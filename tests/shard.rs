//! Issue 13, [scale-out]: shards split the pods and nodes exactly, with no series twice.

use std::collections::BTreeMap;

use msp_sim::SimCluster;
use msp_tests::*;

/// The usage series of a scrape, by family and labels, with their values.
fn usage(text: &str) -> BTreeMap<String, f64> {
    parse(text)
        .into_iter()
        .filter(|s| s.name.ends_with("_cpu_usage_cores") || s.name.ends_with("_memory_working_set_bytes"))
        .map(|s| (format!("{}{:?}", s.name, s.labels), s.value))
        .collect()
}

fn pods_of(series: &BTreeMap<String, f64>) -> usize {
    series.keys().filter(|k| k.starts_with("kube_metrics_server_pod_cpu_usage_cores")).count()
}

#[async_std::test]
async fn shard_three_shards_split_exactly_the_unsharded_output() {
    let cluster = SimCluster::synthetic(3000);
    let whole = start(cluster.clone(), |_| {}).await;
    let all = usage(&scrape(&whole).await);
    assert_eq!(pods_of(&all), 3000);

    let mut union = BTreeMap::new();
    for index in 0..3 {
        let h = start(cluster.clone(), |c| {
            c.shard.total = 3;
            c.shard.index = Some(index);
        })
        .await;
        let text = scrape(&h).await;
        let shard = parse(&text);
        let info = find(&shard, "kube_metrics_server_shard", &[]);
        assert_eq!((info.label("index"), info.label("total")), (Some(index.to_string().as_str()), Some("3")));
        // The same as values, which the alerts in deploy/rules/ add up.
        assert_eq!(find(&shard, "kube_metrics_server_total_shards", &[]).value, 3.0);
        assert_eq!(find(&shard, "kube_metrics_server_shard_ordinal", &[]).value, f64::from(index));
        let part = usage(&text);
        let share = pods_of(&part) as f64 / 3000.0;
        assert!((0.25..=0.42).contains(&share), "shard {index} holds {:.1}% of the pods", share * 100.0);
        for (series, value) in part {
            assert!(union.insert(series.clone(), value).is_none(), "{series} is in two shards");
        }
    }
    assert_eq!(union, all, "the union of the shards is the unsharded output, labels and values");
}

#[async_std::test]
async fn shard_index_from_the_statefulset_pod_name() {
    let cluster = SimCluster::synthetic(300);
    let (sim, _raw, dir) = sim_and_config(cluster.clone()).await;
    let port = free_port();
    let log = dir.join("stderr.log");
    let mut command = server_command(&sim, &dir, port);
    command.env("MSP_SHARD__TOTAL", "3").env("POD_NAME", "metrics-server-prom-1");
    let _child = Killed(spawn_logging(&mut command, &log));
    wait_listening(port).await;
    let got = get(&format!("http://127.0.0.1:{port}/metrics"), &[]).await;
    let from_name = usage(&got.body);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("shard 1 of 3: exporting the pods and nodes"), "the log says which shard: {logged}");

    let h = start(cluster, |c| {
        c.shard.total = 3;
        c.shard.index = Some(1);
    })
    .await;
    assert_eq!(from_name, usage(&scrape(&h).await), "POD_NAME=...-1 exports exactly shard 1");
    assert!(pods_of(&from_name) > 0);

    let out = std::process::Command::new(binary())
        .env_clear()
        .env("MSP_SHARD__TOTAL", "3")
        .env("POD_NAME", "metrics-server-prom-7")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("POD_NAME=\"metrics-server-prom-7\" is replica 7, past the last shard (2)")
            && stderr.contains("MSP_SHARD__TOTAL"),
        "{stderr}"
    );
}
