//! Issue 14, [first-hour]: the in-cluster install renders and runs what `./scripts/image`
//! builds, grants only what the code uses, and its alerting rules pass their own tests.
//!
//! Needs `kubectl` (Debian's `kubernetes-client`) and `promtool` (Debian's `prometheus`);
//! `./scripts/test` installs both when missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

// One line to change when the workspace moves to serde_norway.
use serde_norway as yaml;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `program args` in the repository's root; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).current_dir(root()).output().unwrap_or_else(|e| {
        panic!(
            "{program}: {e}; run ./scripts/test, which installs kubectl (kubernetes-client) and promtool (prometheus)"
        )
    });
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} failed:\n{report}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// `kubectl kustomize dir`, one value per document (kustomize separates them by `---` lines).
fn kustomize(dir: &str) -> Vec<yaml::Value> {
    let rendered = run("kubectl", &["kustomize", dir]);
    rendered.split("\n---\n").map(|doc| yaml::from_str(doc).expect(dir)).collect()
}

/// The one document of `kind` in `docs`.
fn one<'a>(docs: &'a [yaml::Value], kind: &str) -> &'a yaml::Value {
    let found: Vec<&yaml::Value> = docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn read_yaml(path: &str) -> yaml::Value {
    let text = std::fs::read_to_string(root().join(path)).expect(path);
    yaml::from_str(&text).expect(path)
}

/// The `image=` line of scripts/image: the tag it builds.
fn built_image() -> String {
    let script = std::fs::read_to_string(root().join("scripts/image")).expect("scripts/image");
    let line = script.lines().find_map(|l| l.strip_prefix("image=")).expect("an image= line in scripts/image");
    line.trim().to_owned()
}

fn container(deployment: &yaml::Value) -> &yaml::Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn deploy_runs_the_image_scripts_image_builds() {
    let docs = kustomize("deploy/");
    let deployment = one(&docs, "Deployment");
    let image = built_image();
    assert_eq!(container(deployment)["image"].as_str(), Some(image.as_str()));
    // A loaded (kind, podman) image is used as it is, never pulled.
    assert_eq!(container(deployment)["imagePullPolicy"].as_str(), Some("IfNotPresent"));
}

#[test]
fn deploy_pod_has_no_service_links_and_a_local_readiness_probe() {
    let docs = kustomize("deploy/");
    let deployment = one(&docs, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["enableServiceLinks"].as_bool(), Some(false), "MSP_PORT and friends would stop startup");
    let readiness = &container(deployment)["readinessProbe"];
    assert_eq!(readiness["httpGet"]["path"].as_str(), Some("/readyz"));
    assert!(readiness["timeoutSeconds"].as_u64().is_some_and(|t| t <= 2), "{readiness:?}");
}

/// Each install refuses a metrics list that its memory limit could not hold beside the rest
/// (a quarter of the limit at most), rather than be OOM-killed reading it.
#[test]
fn deploy_refuses_lists_larger_than_its_memory_limit_holds() {
    for (dir, kind) in [("deploy/", "Deployment"), ("deploy/sharded", "StatefulSet")] {
        let docs = kustomize(dir);
        let c = container(one(&docs, kind));
        let limit = c["resources"]["limits"]["memory"].as_str().and_then(|m| m.strip_suffix("Mi")).expect("Mi");
        let limit: u64 = limit.parse::<u64>().expect("a number") << 20;
        let env = c["env"].as_sequence().expect("env");
        let max = env
            .iter()
            .find(|e| e["name"].as_str() == Some("MSP_KUBERNETES__MAX_RESPONSE_BYTES"))
            .and_then(|e| e["value"].as_str()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{dir}: MSP_KUBERNETES__MAX_RESPONSE_BYTES"));
        assert!(max <= limit / 4, "{dir}: {max} bytes against a limit of {limit}");
        assert!(max >= 64 << 20, "{dir}: room for a large cluster's list");
    }
}

#[test]
fn deploy_rbac_is_list_and_watch_only() {
    let docs = kustomize("deploy/");
    let role = one(&docs, "ClusterRole");
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"].as_sequence().expect("verbs").iter().filter_map(|v| v.as_str()).collect();
        for group in rule["apiGroups"].as_sequence().expect("groups") {
            let group = group.as_str().expect("group");
            // The metrics API is listed on each scrape and has no watch.
            let want: &[&str] = if group == "metrics.k8s.io" { &["list"] } else { &["list", "watch"] };
            assert_eq!(verbs, want, "{rule:?}");
            for resource in rule["resources"].as_sequence().expect("resources") {
                granted.insert(format!("{group}/{}", resource.as_str().expect("resource")));
            }
        }
    }
    assert_eq!(
        granted.into_iter().collect::<Vec<_>>(),
        ["/nodes", "/pods", "apps/replicasets", "batch/jobs", "metrics.k8s.io/nodes", "metrics.k8s.io/pods"]
    );
}

#[test]
fn deploy_renders_the_alerting_rules() {
    let docs = kustomize("deploy/");
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"].as_str(), Some("monitoring"));
    let plain = read_yaml("deploy/rules/metrics-server-prom.rules.yaml");
    assert_eq!(rule["spec"]["groups"], plain["groups"], "run ./scripts/rules");
}

#[test]
fn deploy_plain_overlays_are_the_installs_without_the_operators_objects() {
    for (operator, plain) in [("deploy/", "deploy/plain"), ("deploy/sharded", "deploy/sharded/plain")] {
        let with = kustomize(operator);
        let without = kustomize(plain);
        let kinds = |docs: &[yaml::Value]| -> BTreeSet<String> {
            docs.iter().filter_map(|d| d["kind"].as_str().map(String::from)).collect()
        };
        let operators: BTreeSet<String> =
            ["PodMonitor", "PrometheusRule", "ServiceMonitor"].iter().map(|k| k.to_string()).collect();
        assert!(kinds(&without).is_disjoint(&operators), "{plain}: {:?}", kinds(&without));
        assert_eq!(kinds(&without), kinds(&with).difference(&operators).cloned().collect(), "{plain}");
        // Every other object is the same, image and namespace included.
        for doc in &without {
            assert!(with.contains(doc), "{plain}: {doc:?} differs from {operator}'s");
        }
    }
}

#[test]
fn deploy_kube_prometheus_stack_example_adds_the_release_label() {
    let docs = kustomize("examples/kube-prometheus-stack");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        let labels = &one(&docs, kind)["metadata"]["labels"];
        assert_eq!(labels["release"].as_str(), Some("kube-prometheus-stack"), "{kind}");
        assert_eq!(labels["app.kubernetes.io/name"].as_str(), Some("metrics-server-prom"), "{kind}");
    }
    assert_eq!(container(one(&docs, "Deployment"))["image"].as_str(), Some(built_image().as_str()));
    // Only the two objects that chart selects by label are touched.
    assert!(one(&docs, "Deployment")["metadata"]["labels"]["release"].is_null());
    // The sharded install's, likewise, with the same release name.
    let sharded = kustomize("examples/kube-prometheus-stack/sharded");
    for kind in ["PodMonitor", "PrometheusRule"] {
        assert_eq!(
            one(&sharded, kind)["metadata"]["labels"]["release"].as_str(),
            Some("kube-prometheus-stack"),
            "{kind}"
        );
    }
    assert!(one(&sharded, "StatefulSet")["metadata"]["labels"]["release"].is_null());
    let patch = |dir: &str| std::fs::read_to_string(root().join(dir).join("release-label.yaml")).expect("patch");
    assert_eq!(patch("examples/kube-prometheus-stack"), patch("examples/kube-prometheus-stack/sharded"));
}

#[test]
fn deploy_rules_pass_promtool() {
    run("promtool", &["check", "rules", "deploy/rules/metrics-server-prom.rules.yaml"]);
    let tested = run("promtool", &["test", "rules", "deploy/rules/tests.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// During a rollout two replicas export the same pods and nodes: every dashboard panel over
/// the usage series themselves (not the recording rules) counts each once, by promtool.
#[test]
fn deploy_dashboard_counts_each_pod_and_node_once_while_two_replicas_export_them() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/dashboard/metrics-server-prom.json")).expect("dashboard"),
    )
    .expect("json");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let usage = ["_cpu_usage_cores", "_memory_working_set_bytes"].iter().any(|f| expr.contains(f));
            if usage && !expr.contains(':') {
                exprs.push(expr.replace("$namespace", ".*"));
            }
        }
    }
    assert!(exprs.len() >= 4, "{exprs:?}");
    let mut series = String::new();
    for instance in ["monitoring/metrics-server-prom-old", "monitoring/metrics-server-prom-new"] {
        let target = format!(r#"job="metrics-server-prom",instance="{instance}""#);
        for (family, value) in [("cpu_usage_cores", 1.5), ("memory_working_set_bytes", 2048.0)] {
            series += &format!(
                "      - series: 'kube_metrics_server_node_{family}{{{target},node=\"node-a\"}}'\n        values: '{value}x5'\n"
            );
            series += &format!(
                "      - series: 'kube_metrics_server_pod_{family}{{{target},namespace=\"shop\",pod=\"web-1\"}}'\n        values: '{}x5'\n",
                value / 4.0
            );
        }
    }
    let mut checks = String::new();
    for expr in &exprs {
        let one = if expr.contains("_node_") { 1.5 } else { 0.375 };
        let value = if expr.contains("_cpu_") { one } else { one / 1.5 * 2048.0 };
        // One series, of one replica's value.
        for (wrapped, want) in [(format!("count({expr})"), 1.0), (format!("sum({expr})"), value)] {
            checks += &format!(
                "      - expr: '{}'\n        eval_time: 2m\n        exp_samples:\n          - labels: '{{}}'\n            value: {want}\n",
                wrapped.replace('\'', "''")
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("msp-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("dashboard-tests.yaml");
    let test = format!(
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series}    promql_expr_test:\n{checks}"
    );
    std::fs::write(&file, test).expect("write");
    let tested = run("promtool", &["test", "rules", &file.to_string_lossy()]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    drop(std::fs::remove_dir_all(&dir));
}

/// Every alert has a test that expects it to fire and one that expects it to stay quiet;
/// every recording rule is checked.
#[test]
fn deploy_rules_tests_cover_every_rule() {
    let plain = read_yaml("deploy/rules/metrics-server-prom.rules.yaml");
    let tests = read_yaml("deploy/rules/tests.yaml");
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for case in tests["tests"].as_sequence().expect("tests") {
        for t in case["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = t["alertname"].as_str().expect("alertname").to_owned();
            match t["exp_alerts"].as_sequence().map(Vec::len) {
                Some(0) | None => quiet.insert(name),
                Some(_) => fires.insert(name),
            };
        }
        for t in case["promql_expr_test"].as_sequence().into_iter().flatten() {
            checked.insert(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    let mut alerts = BTreeSet::new();
    let mut records = BTreeSet::new();
    for group in plain["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            if let Some(alert) = rule["alert"].as_str() {
                alerts.insert(alert.to_owned());
            }
            if let Some(record) = rule["record"].as_str() {
                records.insert(record.to_owned());
            }
        }
    }
    assert!(alerts.len() >= 6, "{alerts:?}");
    assert_eq!(fires, alerts, "alerts tested firing");
    assert_eq!(quiet, alerts, "alerts tested quiet");
    assert_eq!(checked, records, "recording rules tested");
}

/// The recording rules the dashboard queries exist; the alerts' job matcher and the slow-scrape
/// fallback agree with the shipped scrape configurations.
#[test]
fn deploy_rules_agree_with_the_dashboard_and_scrape_configs() {
    let rules = std::fs::read_to_string(root().join("deploy/rules/metrics-server-prom.rules.yaml")).expect("rules");
    let plain: yaml::Value = yaml::from_str(&rules).expect("rules");
    let records: BTreeSet<String> = plain["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| r["record"].as_str().map(String::from))
        .collect();
    let dashboard =
        std::fs::read_to_string(root().join("deploy/dashboard/metrics-server-prom.json")).expect("dashboard");
    let used: BTreeSet<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.contains(':') && w.contains("kube_metrics_server_"))
        .map(String::from)
        .collect();
    assert!(used.len() >= 4, "{used:?}");
    assert!(used.is_subset(&records), "dashboard uses {used:?}; rules record {records:?}");

    // The job label: the Service's name under the Operator (no jobLabel), job_name otherwise.
    assert!(rules.contains(r#"job=~".*metrics-server-prom.*""#));
    let monitor = read_yaml("deploy/servicemonitor.yaml");
    assert!(monitor["spec"]["jobLabel"].is_null());
    assert_eq!(read_yaml("deploy/app/service.yaml")["metadata"]["name"].as_str(), Some("metrics-server-prom"));
    let scrape = read_yaml("deploy/prometheus-scrape-config.yaml");
    assert_eq!(scrape[0]["job_name"].as_str(), Some("metrics-server-prom"));
    // Our namespace, pod and container labels win over the target's (the Operator adds its
    // own of those names), and every pod behind the Service is a target (every shard).
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["honorLabels"].as_bool(), Some(true));
    assert_eq!(endpoint["relabelings"][0]["action"].as_str(), Some("labeldrop"), "nodes carry no exporter pod");
    let instance = &endpoint["relabelings"][1];
    let pod = ["__meta_kubernetes_namespace", "__meta_kubernetes_pod_name"];
    let sources = |l: &yaml::Value| -> Vec<String> {
        l.as_sequence().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect()
    };
    assert_eq!(sources(&instance["sourceLabels"]), pod, "{instance:?}");
    assert_eq!(instance["separator"].as_str(), Some("/"));
    assert_eq!(instance["targetLabel"].as_str(), Some("instance"), "the exporter's pod names the target");
    assert_eq!(scrape[0]["honor_labels"].as_bool(), Some(true));
    let plain_instance = scrape[0]["relabel_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|r| r["target_label"].as_str() == Some("instance"))
        .expect("the plain job names its targets too");
    assert_eq!(sources(&plain_instance["source_labels"]), pod);
    assert_eq!(plain_instance["separator"].as_str(), Some("/"));
    assert_eq!(scrape[0]["kubernetes_sd_configs"][0]["role"].as_str(), Some("endpointslice"));

    // MetricsServerPromScrapeSlow's fallback threshold is 80% of the timeout both ship with.
    let seconds = |s: Option<&str>| -> f64 {
        s.and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse().ok()).expect("a timeout in seconds")
    };
    let timeout = seconds(monitor["spec"]["endpoints"][0]["scrapeTimeout"].as_str());
    assert_eq!(seconds(scrape[0]["scrape_timeout"].as_str()), timeout);
    let threshold = format!("scrape_duration_seconds{{job=~\".*metrics-server-prom.*\"}} > {}\n", 0.8 * timeout);
    assert!(rules.contains(&threshold), "want `{threshold}` in the rules");
}

/// Seconds in a manifest's duration (`15s`, `1m`).
fn seconds(d: &str) -> u64 {
    match d.strip_suffix('s') {
        Some(s) => s.parse().expect("seconds"),
        None => d.strip_suffix('m').expect("s or m").parse::<u64>().expect("minutes") * 60,
    }
}

#[test]
fn deploy_reuses_the_lists_for_half_the_scrape_interval() {
    let plain: yaml::Value = read_yaml("deploy/prometheus-scrape-config.yaml");
    let plain = seconds(plain[0]["scrape_interval"].as_str().expect("scrape_interval"));
    for (dir, kind, monitor) in
        [("deploy/", "Deployment", "ServiceMonitor"), ("deploy/sharded", "StatefulSet", "PodMonitor")]
    {
        let docs = kustomize(dir);
        let env = container(one(&docs, kind))["env"].as_sequence().expect("env");
        let reuse = env
            .iter()
            .find(|e| e["name"].as_str() == Some("MSP_REUSE_LISTS_FOR"))
            .and_then(|e| e["value"].as_str())
            .map(seconds)
            .unwrap_or_else(|| panic!("{dir}: MSP_REUSE_LISTS_FOR"));
        let monitor = one(&docs, monitor);
        let endpoints =
            monitor["spec"]["endpoints"].as_sequence().or(monitor["spec"]["podMetricsEndpoints"].as_sequence());
        let interval = seconds(endpoints.expect("endpoints")[0]["interval"].as_str().expect("interval"));
        // An HA pair reads once an interval whatever its offsets; one Prometheus alone never
        // reuses its own read.
        assert_eq!(reuse * 2, interval, "{dir}");
        assert_eq!(reuse * 2, plain, "{dir} and the plain job");
    }
}

#[test]
fn deploy_sharded_is_a_statefulset_of_three_shards_scraped_pod_by_pod() {
    let docs = kustomize("deploy/sharded");
    assert!(docs.iter().all(|d| d["kind"].as_str() != Some("Deployment")), "no single Deployment beside the shards");
    let set = one(&docs, "StatefulSet");
    assert_eq!(set["spec"]["replicas"].as_u64(), Some(3));
    let env = container(set)["env"].as_sequence().expect("env");
    let var = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name)).unwrap_or_else(|| panic!("{name}"));
    assert_eq!(var("MSP_SHARD__TOTAL")["value"].as_str(), Some("3"));
    assert_eq!(var("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.name"));
    assert_eq!(container(set)["image"].as_str(), Some(built_image().as_str()));
    assert_eq!(set["spec"]["template"]["spec"]["enableServiceLinks"].as_bool(), Some(false));
    // A drain takes one shard at a time, and the shards spread over nodes where they can.
    let pods = &set["spec"]["template"]["metadata"]["labels"];
    let budget = one(&docs, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"].as_u64(), Some(1));
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pods, "the budget covers the shards");
    let spread = &set["spec"]["template"]["spec"]["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"].as_str(), Some("kubernetes.io/hostname"));
    assert_eq!(spread["whenUnsatisfiable"].as_str(), Some("ScheduleAnyway"), "preferred: few nodes still run them");
    assert_eq!(&spread["labelSelector"]["matchLabels"], pods);
    let service = one(&docs, "Service");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"), "headless");
    assert_eq!(set["spec"]["serviceName"], service["metadata"]["name"]);
    let monitor = one(&docs, "PodMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"], set["spec"]["template"]["metadata"]["labels"],
        "the PodMonitor scrapes every shard's pod"
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["honorLabels"].as_bool(), Some(true), "our pod labels win");
    assert_eq!(endpoint["relabelings"], read_yaml("deploy/servicemonitor.yaml")["spec"]["endpoints"][0]["relabelings"]);
    one(&docs, "ClusterRole");
    one(&docs, "PrometheusRule");
}

/// deploy/networkpolicy, applied beside either install, lets Prometheus reach the metrics
/// port of every replica and shard, and lets the exporter reach only the API server's ports.
#[test]
fn deploy_networkpolicy_admits_prometheus_and_the_api_server_to_every_install() {
    let docs = kustomize("deploy/networkpolicy");
    let policy = one(&docs, "NetworkPolicy");
    assert_eq!(docs.len(), 1, "the policy alone: it goes beside an install");
    let selected = policy["spec"]["podSelector"]["matchLabels"].as_mapping().expect("matchLabels");
    for (install, kind) in [("deploy/", "Deployment"), ("deploy/sharded", "StatefulSet")] {
        let installed = kustomize(install);
        let workload = one(&installed, kind);
        assert_eq!(policy["metadata"]["namespace"], workload["metadata"]["namespace"], "{install}");
        let labels = workload["spec"]["template"]["metadata"]["labels"].as_mapping().expect("labels");
        for (k, v) in selected {
            assert_eq!(labels.get(k), Some(v), "{install}'s pods carry the policy's {k:?}");
        }
        let ports = container(workload)["ports"].as_sequence().expect("ports");
        for rule in policy["spec"]["ingress"].as_sequence().expect("ingress") {
            for port in rule["ports"].as_sequence().expect("ports") {
                assert!(
                    ports.iter().any(|p| p["name"] == port["port"] && p["protocol"].as_str().unwrap_or("TCP") == "TCP"),
                    "{install}: the policy's port {:?} is a port of the container",
                    port["port"]
                );
            }
        }
    }
    let types: Vec<&str> =
        policy["spec"]["policyTypes"].as_sequence().expect("types").iter().flat_map(|t| t.as_str()).collect();
    assert_eq!(types, ["Ingress", "Egress"]);
    let from = &policy["spec"]["ingress"][0]["from"][0];
    assert_eq!(from["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str(), Some("prometheus"));
    let egress = policy["spec"]["egress"].as_sequence().expect("egress");
    for rule in egress {
        let keys: Vec<&str> = rule.as_mapping().expect("a rule").keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(keys, ["ports"], "ports only, to wherever the API server is: {rule:?}");
        assert!(rule["ports"].as_sequence().is_some_and(|p| !p.is_empty()), "no rule that allows every port");
    }
    let out: BTreeSet<u64> = egress
        .iter()
        .flat_map(|r| r["ports"].as_sequence().into_iter().flatten())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(out, BTreeSet::from([443, 6443]), "the API server's ports, and nothing else");
}

/// The README's overlay for another number of shards changes the replicas and the total
/// together, and the total is replaced, not added beside the old one.
#[test]
fn deploy_sharded_overlay_for_four_shards_changes_replicas_and_total_together() {
    // Inside the repository (kustomize takes no absolute path to a base), where `.gitignore`
    // keeps it out: `target/`.
    let dir = root().join("target").join(format!("msp-four-shards-{}", std::process::id()));
    let overlay = dir.join("overlay");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&overlay).expect("dir");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let start = readme.find("  # kustomization.yaml, in your overlay's directory").expect("the README's overlay");
    let block: String = readme[start..]
        .lines()
        .take_while(|l| l.trim() != "```")
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    let block = block.replace("../metrics-server-prom/deploy/sharded", "../../../deploy/sharded");
    std::fs::write(overlay.join("kustomization.yaml"), block).expect("write");
    let docs = kustomize(overlay.to_str().expect("utf-8 path"));
    let set = one(&docs, "StatefulSet");
    assert_eq!(set["spec"]["replicas"].as_u64(), Some(4));
    let env = container(set)["env"].as_sequence().expect("env");
    let totals: Vec<&yaml::Value> =
        env.iter().filter(|e| e["name"].as_str() == Some("MSP_SHARD__TOTAL")).map(|e| &e["value"]).collect();
    assert_eq!(totals, [&yaml::Value::from("4")], "one total, replaced");
    let before = kustomize("deploy/sharded");
    assert_eq!(env.len(), container(one(&before, "StatefulSet"))["env"].as_sequence().expect("env").len());
    std::fs::remove_dir_all(&dir).ok();
}
