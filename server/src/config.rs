//! Configuration: built-in defaults, then a TOML file (`--config FILE` or `MSP_CONFIG`),
//! then `MSP_` environment variables (nested keys joined by `__`), extracted by figment
//! into [`RawConfig`] and checked once into [`Config`]. Nothing downstream sees raw strings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::{Figment, Provider as _};
use http_types::Url;
use msp_core::{Enricher, Filter, GoDuration, LabelSelector, Naming};
use serde::{Deserialize, Serialize};

use crate::kube::{Limits, Settings};
use crate::logging::LogFormat;
use crate::registry::Registry;
use crate::scope::Scope;
use crate::shard::Shard;

/// The configuration as written, before checking. Top-level keys beyond these are the
/// sections of registered enrichers (`[labels]`, an embedder's `[team]`); any other is
/// refused by [`Config::load`]. Every section of ours is strict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawConfig {
    /// Address to serve on.
    #[serde(deserialize_with = "text_or_number")]
    pub listen: String,
    /// Enrichers by name, in order (earlier wins a label name).
    pub enrichers: Vec<String>,
    /// `prometheus` or `seed`.
    pub naming: String,
    /// Write metrics-server's sample timestamps.
    pub timestamps: bool,
    /// `error`, `warn`, `info`, `debug` or `trace` (third-party crates stay at `warn`).
    pub log_level: String,
    /// `text` or `json` (one object per line).
    pub log_format: String,
    /// The API server.
    pub kubernetes: RawKubernetes,
    /// Which namespaces' pods to export.
    pub namespaces: RawNamespaces,
    /// A label selector passed to the metrics API's pod list.
    #[serde(default, deserialize_with = "opt_text_or_number")]
    pub label_selector: Option<String>,
    /// A scrape that begins less than this (a Go duration) after the last read of the
    /// metrics lists began serves those lists instead of reading them; `0s`: never.
    #[serde(deserialize_with = "text_or_number")]
    pub reuse_lists_for: String,
    /// How `/metrics` itself is served.
    pub web: RawWeb,
    /// This replica's share, when several split the cluster.
    pub shard: RawShard,
}

/// The longest `reuse_lists_for`: metrics-server's longest usual resolution (its own
/// default, where its manifests do not set one).
const MAX_REUSE: Duration = Duration::from_secs(60);

/// `[shard]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    /// How many replicas share the pods and nodes.
    pub total: u32,
    /// This replica, `0..total`; unset: the ordinal at the end of `POD_NAME` or `HOSTNAME`.
    pub index: Option<u32>,
}

/// `[web]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// An exporter-toolkit web-config file (TLS, client certificates, basic auth).
    pub config_file: Option<PathBuf>,
}

/// `[namespaces]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamespaces {
    /// Globs of namespaces to keep.
    pub allow: Vec<String>,
    /// Globs of namespaces to drop, after `allow`.
    pub deny: Vec<String>,
}

/// `[kubernetes]` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKubernetes {
    /// API server URL; unset: in cluster, else kubeconfig.
    pub api_url: Option<String>,
    /// Bearer token file.
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM).
    pub ca_file: Option<PathBuf>,
    /// Kubeconfig path.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    #[serde(default, deserialize_with = "opt_text_or_number")]
    pub context: Option<String>,
    /// Per-request timeout, a Go duration (a bare number is read, and refused with an example).
    #[serde(deserialize_with = "text_or_number")]
    pub timeout: String,
    /// Turn off server certificate verification (logged loudly).
    pub insecure_skip_tls_verify: bool,
    /// Largest response body accepted.
    pub max_response_bytes: u64,
    /// Items per page when the caches list (`limit`).
    pub list_page_size: u32,
    /// Ask for streaming lists (a watch with `sendInitialEvents`) before pages.
    pub streaming_lists: bool,
}

/// A string, or a number or `true`/`false` kept as its text: figment reads
/// `MSP_LISTEN=9100`, `MSP_KUBERNETES__TIMEOUT=5` or `MSP_LABEL_SELECTOR=true` as a number
/// or a bool, though the user wrote text. A number comes back as figment read it, so
/// `007` is `7` and `1.10` is `1.1`: quoted (`'"1.10"'`) it is kept as written. Anything
/// else (a list, a table) is refused as not a string.
///
/// For an embedder's own section too: `#[serde(deserialize_with = "msp_server::text_or_number")]`
/// on a `String` field takes `MSP_TEAM__CHANNEL=42` as `"42"`, as ours do.
pub fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Text;
    impl serde::de::Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Text)
}

/// [`text_or_number`], for a key that may be unset.
fn opt_text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Text(#[serde(deserialize_with = "text_or_number")] String);
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "[::]:9100".into(),
            enrichers: msp_enrichers::DEFAULT.iter().map(|s| s.to_string()).collect(),
            naming: "prometheus".into(),
            timestamps: false,
            log_level: "info".into(),
            log_format: "text".into(),
            kubernetes: RawKubernetes {
                api_url: None,
                token_file: None,
                ca_file: None,
                kubeconfig: None,
                context: None,
                timeout: "10s".into(),
                insecure_skip_tls_verify: false,
                max_response_bytes: 256 * 1024 * 1024,
                list_page_size: 500,
                streaming_lists: true,
            },
            namespaces: RawNamespaces { allow: vec!["*".into()], deny: vec![] },
            label_selector: None,
            reuse_lists_for: "0s".into(),
            web: RawWeb::default(),
            shard: RawShard { total: 1, index: None },
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// The enrichers, built from the registry in the configured order.
    pub enrichers: Enrichers,
    /// Metric naming.
    pub naming: Naming,
    /// Write sample timestamps.
    pub timestamps: bool,
    /// Log level for our own crates.
    pub log_level: log::LevelFilter,
    /// Log line format.
    pub log_format: LogFormat,
    /// How to find the API server.
    pub kubernetes: Settings,
    /// Request limits.
    pub limits: Limits,
    /// Items per page when the caches list.
    pub list_page_size: u32,
    /// Whether the caches ask for streaming lists first.
    pub streaming_lists: bool,
    /// Which pods to export.
    pub scope: Scope,
    /// How long the metrics lists read are reused by later scrapes (zero: not at all).
    pub reuse_lists_for: Duration,
    /// The web-config file, checked at load.
    pub web_config: Option<PathBuf>,
}

/// The configured enrichers, in order: each name known to the registry, none twice, each
/// built from its section of the configuration.
#[derive(Clone, Default)]
pub struct Enrichers {
    built: Vec<Arc<dyn Enricher>>,
    /// The registry's names not configured: registered, not enabled.
    unused: Vec<String>,
    /// Sections set in the configuration that only enrichers not enabled read.
    idle: Vec<String>,
    /// `(selected as, calls itself)` for each enricher whose `name()` is not the name it was
    /// registered, and selected, by.
    renamed: Vec<(String, String)>,
}

impl std::fmt::Debug for Enrichers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Enrichers {
    /// Checks `names` against `registry` and builds each from `figment`.
    fn build(names: &[String], registry: &Registry, figment: &Figment) -> Result<Self, ConfigError> {
        let (mut built, mut renamed) = (Vec::with_capacity(names.len()), Vec::new());
        for (i, name) in names.iter().enumerate() {
            if let Some(first) = names[..i].iter().position(|n| n == name) {
                return Err(invalid(
                    "enrichers",
                    format!("{name:?} is listed twice (positions {} and {}); list each once", first + 1, i + 1),
                ));
            }
            match registry.build(name, figment) {
                None => {
                    return Err(invalid(
                        "enrichers",
                        format!("unknown enricher {name:?}; known enrichers: {}", registry.names().join(", ")),
                    ))
                }
                Some(Err(e)) => return Err(ConfigError::Enricher { name: name.clone(), source: e }),
                Some(Ok(enricher)) => {
                    if enricher.name() != name {
                        renamed.push((name.clone(), enricher.name().to_owned()));
                    }
                    built.push(enricher)
                }
            }
        }
        let unused: Vec<String> =
            registry.names().into_iter().filter(|n| !names.iter().any(|c| c == n)).map(String::from).collect();
        // The section of an enricher not enabled is checked all the same: a typo in it is no
        // less a typo, and enabling the enricher later must not be what finds it.
        for name in &unused {
            registry
                .check_section(name, figment)
                .map_err(|e| ConfigError::Enricher { name: name.clone(), source: e })?;
        }
        let read = |section: &str| names.iter().any(|n| registry.section(n) == Some(section));
        let idle: std::collections::BTreeSet<String> = unused
            .iter()
            .filter_map(|n| registry.section(n))
            .filter(|s| figment.contains(s) && !read(s))
            .map(String::from)
            .collect();
        let idle = idle.into_iter().collect();
        Ok(Enrichers { built, unused, idle, renamed })
    }

    /// `(selected as, calls itself)` for each enricher whose [`Enricher::name`] differs from
    /// the name its registry entry has: the configuration selects it by the one, the log, the
    /// landing page and `kube_metrics_server_enricher_errors_total` say the other.
    pub fn renamed(&self) -> &[(String, String)] {
        &self.renamed
    }

    /// Sections set in the configuration (`labels`, say) that only enrichers not enabled
    /// read: they do nothing.
    pub fn idle_sections(&self) -> &[String] {
        &self.idle
    }

    /// Their names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.built.iter().map(|e| e.name()).collect()
    }

    /// The names the registry knows that the configuration does not enable (an embedder's
    /// registered enricher is not used until it is listed in `enrichers`).
    pub fn not_enabled(&self) -> &[String] {
        &self.unused
    }

    /// Adds `enricher` last, unless one of its name is already there.
    pub fn push(&mut self, enricher: Arc<dyn Enricher>) {
        if !self.names().contains(&enricher.name()) {
            self.unused.retain(|n| n != enricher.name());
            self.built.push(enricher);
        }
    }

    /// The enrichers, in order.
    pub fn to_vec(&self) -> Vec<Arc<dyn Enricher>> {
        self.built.clone()
    }
}

/// A configuration error; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// figment could not read or extract (its message names the key and the source).
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    /// The configuration file cannot be read.
    #[error("configuration file {}: {source}", path.display())]
    File {
        /// The file (`--config` or `MSP_CONFIG`).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An enricher refused its section of the configuration.
    #[error("configuration of enricher {name:?}: {source}")]
    Enricher {
        /// The enricher.
        name: String,
        /// Why.
        source: msp_core::EnrichError,
    },
    /// A key nothing reads (a typo, or the section of an enricher that is not registered).
    #[error("configuration key `{key}`{from} is not known; known keys: {known}")]
    Unknown {
        /// The key.
        key: String,
        /// Where it was set (the file or the `MSP_` variables).
        from: String,
        /// The keys that are.
        known: String,
    },
    /// A value of another type than the key's (`MSP_ENRICHERS=node`, `MSP_TIMESTAMPS=yes`).
    #[error("configuration key `{key}`{from}: {}", wrong_type(key, found, expected))]
    WrongType {
        /// The key, dotted.
        key: String,
        /// Where it was set (the file or the `MSP_` variables).
        from: String,
        /// What was found (`string "yes"`).
        found: String,
        /// What the key takes, as serde says it (`a boolean`, `u32`, `a sequence`).
        expected: String,
    },
    /// A value was read but is not valid; its `MSP_` variable is named too, as the value
    /// mostly comes from there.
    #[error("configuration key `{key}` ({}): {message}", variable(key))]
    Invalid {
        /// The key, dotted (`kubernetes.timeout`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The `MSP_` variable of `key` (dotted): `kubernetes.timeout` is `MSP_KUBERNETES__TIMEOUT`.
pub(crate) fn variable(key: &str) -> String {
    format!("MSP_{}", key.replace('.', "__").to_uppercase())
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// `text`, the value of `key`, read as a Go duration; refused with `example` beside it.
fn duration(key: &'static str, text: &str, example: &str) -> Result<Duration, ConfigError> {
    let parsed = text.parse::<GoDuration>();
    parsed
        .map(Into::into)
        .map_err(|e| invalid(key, format!("{e}; write a duration with its unit, for example {example:?}")))
}

/// Whether `key` (after the `MSP_` prefix, lowercased) is one of the variables Kubernetes
/// injects for a Service named `msp` in the pod's namespace (service links): `MSP_PORT`,
/// `MSP_PORT_9100_TCP[_PROTO|_PORT|_ADDR]`, `MSP_SERVICE_HOST`, `MSP_SERVICE_PORT[_NAME]`.
fn service_link(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    if key == "port" || key == "service_host" || key == "service_port" || key.starts_with("service_port_") {
        return true;
    }
    let Some(rest) = key.strip_prefix("port_") else { return false };
    let mut parts = rest.splitn(3, '_');
    let number = parts.next().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let proto = parts.next().is_some_and(|p| matches!(p, "tcp" | "udp" | "sctp"));
    number && proto
}

/// The layered figment [`Config::load`] reads: defaults (with `enrichers` the registry's
/// [defaults](Registry::defaults)), then `file` (else `MSP_CONFIG`'s, if set), then `MSP_`
/// variables (but for Kubernetes' service-link variables). For an embedder that merges
/// providers of its own over it before [`RawConfig::check_with`].
pub fn figment(file: Option<PathBuf>, registry: &Registry) -> Figment {
    let defaults = RawConfig { enrichers: registry.defaults().to_vec(), ..RawConfig::default() };
    let mut f = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file_or_msp_config(file) {
        f = f.merge(Toml::file_exact(file));
    }
    f.merge(Env::prefixed("MSP_").split("__").ignore(&["config"]).filter(|k| !service_link(k.as_str())))
}

/// `file`, else `MSP_CONFIG`'s if that is set and not empty.
fn file_or_msp_config(file: Option<PathBuf>) -> Option<PathBuf> {
    file.or_else(|| std::env::var_os("MSP_CONFIG").filter(|f| !f.is_empty()).map(PathBuf::from))
}

impl Config {
    /// Reads and checks the configuration: the TOML `file`, else `MSP_CONFIG`'s if that is
    /// set, under the `MSP_` variables; `enrichers`, unset, is the registry's
    /// [defaults](Registry::defaults).
    pub fn load(file: Option<PathBuf>, registry: &Registry) -> Result<Config, ConfigError> {
        let file = file_or_msp_config(file);
        if let Some(path) = &file {
            std::fs::File::open(path).map_err(|source| ConfigError::File { path: path.clone(), source })?;
        }
        let figment = figment(file, registry);
        let raw: RawConfig = figment.extract().map_err(extract_error)?;
        raw.check_with(registry, &figment)
    }
}

/// What a value of the wrong type for `key` (dotted) should have been, with its `MSP_`
/// variable written right: serde's `u32` or `a sequence` say little to an operator.
pub(crate) fn wrong_type(key: &str, found: &str, expected: &str) -> String {
    let env = variable(key);
    match expected {
        "a sequence" => {
            format!("found {found}, but it is a list, written as a TOML array ([\"a\", \"b\"]; {env}='[\"a\",\"b\"]')")
        }
        "a boolean" => format!("found {found}, expected true or false ({env}=true)"),
        "u8" | "u16" | "u32" | "u64" | "usize" => {
            let most = match expected {
                "u8" => u64::from(u8::MAX),
                "u16" => u64::from(u16::MAX),
                "u32" => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            // serde says `unsigned int` of a whole number only when it is too large for
            // the type; `float` of any number with a point, `3.0` too.
            if found.starts_with("unsigned int") || (found.starts_with("signed int") && !found.contains('-')) {
                format!("found {found}, more than the most it takes, {most} ({env})")
            } else if found.starts_with("float") {
                format!("found {found}, expected a whole number, without a decimal point ({env})")
            } else {
                format!("found {found}, expected a whole number in digits, without a unit ({env})")
            }
        }
        other => format!("found {found}, expected {other}"),
    }
}

/// figment's error, or ours where its message would be awkward: an unknown nested key (its
/// `expected` list nests serde's backquotes in figment's), a value of the wrong type.
fn extract_error(e: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let key = |field: Option<&str>| {
        let mut path = e.path.clone();
        if let Some(field) = field.filter(|f| path.last().map(String::as_str) != Some(*f)) {
            path.push(field.to_owned());
        }
        path.join(".")
    };
    let metadata = e.metadata.as_ref();
    match &e.kind {
        Kind::UnknownField(field, known) => {
            let parent = e.path.strip_suffix(std::slice::from_ref(field)).unwrap_or(&e.path);
            let known = known_beside(metadata, parent, known);
            let key = key(Some(field));
            ConfigError::Unknown { from: origin(metadata, &key), key, known }
        }
        // A negative number where a whole one goes (`-1`) is serde's invalid value.
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            let key = key(None).to_lowercase();
            ConfigError::WrongType {
                from: origin(metadata, &key),
                key,
                found: found.to_string(),
                expected: expected.clone(),
            }
        }
        _ => ConfigError::Figment(Box::new(e)),
    }
}

/// Whether a value came from our `MSP_` variables (not an embedder's own `Env` provider).
fn from_environment(metadata: Option<&figment::Metadata>) -> bool {
    metadata.is_some_and(|m| m.name.starts_with("`MSP_` "))
}

/// Where `key` (dotted) was set, for an error: ` (MSP_KUBERNETES__TIMEOUT)`, ` (in TOML
/// file msp.toml)`; nothing where figment does not say.
pub(crate) fn origin(metadata: Option<&figment::Metadata>, key: &str) -> String {
    match metadata {
        Some(_) if from_environment(metadata) => format!(" ({})", variable(key)),
        Some(m) => match &m.source {
            Some(source) => format!(" (in {} {source})", m.name),
            None => format!(" (in {})", m.name),
        },
        None => String::new(),
    }
}

/// `key` (dotted) as it is written where `metadata` says it was set: its `MSP_` variable, or
/// `written` (the key in the file).
pub(crate) fn set_as(metadata: Option<&figment::Metadata>, key: &str, written: &str) -> String {
    if from_environment(metadata) {
        variable(key)
    } else {
        written.to_owned()
    }
}

/// The keys `known` beside an unknown one under the section at `parent` (its path), for an
/// error, named as [`set_as`] names them.
pub(crate) fn known_beside(metadata: Option<&figment::Metadata>, parent: &[String], known: &[&str]) -> String {
    let named = known.iter().map(|k| {
        let key: Vec<&str> = parent.iter().map(String::as_str).chain([*k]).collect();
        set_as(metadata, &key.join("."), k)
    });
    named.collect::<Vec<_>>().join(", ")
}

/// What a key left unset means (`KUBERNETES__CA_FILE`), for `--help`.
fn unset(key: &str) -> &'static str {
    match key {
        "KUBERNETES__API_URL" => "(unset: in a cluster, the service's; else the kubeconfig's server)",
        "KUBERNETES__CA_FILE" => "(unset: the service account's ca.crt, or the kubeconfig's)",
        "KUBERNETES__TOKEN_FILE" => "(unset: the service account's token, or the kubeconfig's user)",
        "KUBERNETES__KUBECONFIG" => "(unset: $KUBECONFIG, else ~/.kube/config, outside a cluster)",
        "KUBERNETES__CONTEXT" => "(unset: the kubeconfig's current-context)",
        "LABEL_SELECTOR" => "(unset: every pod)",
        "SHARD__INDEX" => "(unset: the ordinal ending POD_NAME, else HOSTNAME)",
        "WEB__CONFIG_FILE" => "(unset: plain HTTP, no authentication)",
        _ => "(unset)",
    }
}

/// Every `MSP_` variable with its default, from the same defaults the configuration uses
/// (for `--help`): `(variable, default)`, nested keys joined by `__`.
pub fn variables() -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key =
                        if prefix.is_empty() { k.to_uppercase() } else { format!("{prefix}__{}", k.to_uppercase()) };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::Null => out.push((format!("MSP_{prefix}"), unset(prefix).into())),
            serde_json::Value::String(s) => out.push((format!("MSP_{prefix}"), s.clone())),
            other => out.push((format!("MSP_{prefix}"), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(RawConfig::default()).unwrap_or_default(), &mut out);
    let labels = serde_json::to_value(msp_enrichers::LabelsOptions::default()).unwrap_or_default();
    walk("LABELS", &labels, &mut out);
    out
}

/// Refuses top-level keys that neither [`RawConfig`] nor a registered enricher reads.
fn check_keys(figment: &Figment, registry: &Registry) -> Result<(), ConfigError> {
    let defaults = serde_json::to_value(RawConfig::default()).unwrap_or_default();
    let ours: Vec<(&str, bool)> =
        defaults.as_object().map(|o| o.iter().map(|(k, v)| (k.as_str(), v.is_object())).collect()).unwrap_or_default();
    let data = figment.data().map_err(Box::new)?;
    for dict in data.values() {
        for (key, value) in dict {
            if !ours.iter().any(|(k, _)| k == key) && !registry.owns_section(key) {
                let sections = registry.sections().into_iter().map(|s| (s, true));
                let mut known: Vec<(&str, bool)> = ours.iter().copied().chain(sections).collect();
                known.sort_unstable();
                let metadata = figment.find_metadata(key);
                // Named as they were set: `MSP_` variables (a section as `MSP_KUBERNETES__*`),
                // or the file's keys; the key set, to its first value (`MSP_TEAM__CHANNEL`).
                let name = |(k, section): (&str, bool)| {
                    set_as(metadata, k, k) + if section && from_environment(metadata) { "__*" } else { "" }
                };
                let known: Vec<String> = known.into_iter().map(name).collect();
                let mut leaf = key.clone();
                let mut at = value;
                while let Some((k, v)) = at.as_dict().and_then(|d| d.iter().next()) {
                    leaf = format!("{leaf}.{k}");
                    at = v;
                }
                let from = origin(metadata, &leaf);
                return Err(ConfigError::Unknown { key: key.clone(), from, known: known.join(", ") });
            }
        }
    }
    Ok(())
}

/// `address:port`; `:port`, as Go's exporters write it (node_exporter's
/// `--web.listen-address`), for every address, as `[::]:port` is; or `host:port` with the
/// host resolved as Go's `net.Listen` resolves it (`localhost:9100`): its first IPv4
/// address, else its first.
fn parse_listen(listen: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let every = listen.strip_prefix(':').map(|port| format!("[::]:{port}"));
    let literal = match every.as_deref().unwrap_or(listen).parse() {
        Ok(addr) => return Ok(addr),
        Err(e) => e,
    };
    // Only a name with a numeric port is looked up: `nowhere` and `host:http` stay errors,
    // and so does what C's inet_aton would read as an address, which Go refuses (`0:9100`,
    // `127.1:9100`, `0x7f.1:9100`).
    let named = listen.rsplit_once(':').and_then(|(host, port)| {
        let name = !host.is_empty() && !host.contains(':') && !inet_aton_reads(host);
        Some((host, port.parse::<u16>().ok()?)).filter(|_| name)
    });
    let Some((host, port)) = named else { return Err(format!("is not an address:port ({literal})")) };
    let looked_up = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("is not an address:port, and {host:?} could not be resolved ({e})"))?;
    let addrs: Vec<SocketAddr> = looked_up.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| "resolves to no address".to_owned())
}

/// Whether C's `inet_aton` (under glibc's `getaddrinfo`) would read `host` as an IPv4
/// address: one to four parts, each decimal, octal or `0x` hexadecimal digits.
fn inet_aton_reads(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    let number = |p: &str| match p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
    };
    parts.len() <= 4 && parts.iter().all(|p| number(p))
}

impl RawConfig {
    /// Checks and types every value, for a configuration built in code (enrichers' own
    /// sections then keep their defaults).
    pub fn check(self, registry: &Registry) -> Result<Config, ConfigError> {
        let figment = Figment::from(Serialized::defaults(&self));
        self.check_with(registry, &figment)
    }

    /// Checks and types every value; `figment` holds the enrichers' own sections.
    pub fn check_with(self, registry: &Registry, figment: &Figment) -> Result<Config, ConfigError> {
        check_keys(figment, registry)?;
        let listen = parse_listen(&self.listen).map_err(|e| invalid("listen", format!("{:?} {e}", self.listen)))?;
        let enrichers = Enrichers::build(&self.enrichers, registry, figment)?;
        // In any case, as `log_level` and `log_format` are read.
        let naming = match self.naming.to_ascii_lowercase().as_str() {
            "prometheus" => Naming::Prometheus,
            "seed" => Naming::Seed,
            _ => return Err(invalid("naming", format!("{:?} is neither \"prometheus\" nor \"seed\"", self.naming))),
        };
        let log_level = self.log_level.parse().map_err(|_| {
            invalid("log_level", format!("{:?} is not off, error, warn, info, debug or trace", self.log_level))
        })?;
        let log_format = self
            .log_format
            .parse()
            .map_err(|e: crate::logging::ParseLogFormatError| invalid("log_format", e.to_string()))?;
        let k = self.kubernetes;
        let api_url = k
            .api_url
            .filter(|u| !u.is_empty())
            .map(|u| match Url::parse(&u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
                Ok(_) => Err(invalid("kubernetes.api_url", format!("{u:?} is not an http:// or https:// URL"))),
                Err(e) => Err(invalid("kubernetes.api_url", format!("{u:?}: {e}"))),
            })
            .transpose()?;
        let timeout = duration("kubernetes.timeout", &k.timeout, "5s")?;
        if timeout.is_zero() {
            return Err(invalid("kubernetes.timeout", "must be more than 0"));
        }
        if k.list_page_size == 0 {
            return Err(invalid("kubernetes.list_page_size", "must be at least 1"));
        }
        if k.max_response_bytes < 1024 {
            return Err(invalid("kubernetes.max_response_bytes", "must be at least 1024"));
        }
        let ns = self.namespaces;
        let namespaces = Filter::new(&ns.allow, &ns.deny).map_err(|e| invalid("namespaces", e.to_string()))?;
        // Parsed as the API server parses it, so that one it would refuse (with a 400 at
        // every scrape) stops the exporter here.
        let label_selector = match self.label_selector.as_deref().map(str::parse::<LabelSelector>) {
            Some(Err(e)) => return Err(invalid("label_selector", e.to_string())),
            Some(Ok(selector)) if !selector.is_empty() => Some(selector),
            _ => None,
        };
        let reuse_lists_for = duration("reuse_lists_for", &self.reuse_lists_for, "15s")?;
        if reuse_lists_for > MAX_REUSE {
            return Err(invalid(
                "reuse_lists_for",
                format!(
                    "{} is more than {MAX_REUSE:?}: metrics-server's figures change every resolution \
                     (15 s in its manifests), and each scrape would serve older ones; \
                     set it below the scrape interval, to half of it for an HA pair \
                     (at most {MAX_REUSE:?}: past a 2m interval, less than half)",
                    self.reuse_lists_for
                ),
            ));
        }
        let web_config = self.web.config_file.filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = &web_config {
            crate::web::WebConfig::load(path).map_err(|e| invalid("web.config_file", e.to_string()))?;
        }
        let shard = Shard::new(self.shard.total, self.shard.index, &|k| std::env::var(k).ok())
            .map_err(|e| invalid("shard", e.to_string()))?;
        let scope = Scope { namespaces, label_selector, shard };
        Ok(Config {
            listen,
            enrichers,
            naming,
            timestamps: self.timestamps,
            log_level,
            log_format,
            kubernetes: Settings {
                api_url,
                token_file: k.token_file,
                ca_file: k.ca_file,
                kubeconfig: k.kubeconfig,
                context: k.context.filter(|c| !c.is_empty()),
                insecure_skip_tls_verify: k.insecure_skip_tls_verify,
            },
            list_page_size: k.list_page_size,
            streaming_lists: k.streaming_lists,
            limits: Limits { timeout, max_response_bytes: usize::try_from(k.max_response_bytes).unwrap_or(usize::MAX) },
            scope,
            reuse_lists_for,
            web_config,
        })
    }
}

#[cfg(test)]
// figment's `Jail` closures return `figment::Error`, which is large; that is its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(file: Option<&str>) -> Result<Config, String> {
        Config::load(file.map(PathBuf::from), &Registry::builtin()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        Jail::expect_with(|jail| {
            let c = load(None)?;
            assert_eq!(c.listen, "[::]:9100".parse().expect("addr"));
            jail.set_env("MSP_LISTEN", ":9200");
            assert_eq!(load(None)?.listen, "[::]:9200".parse().expect("addr"), "Go's way of saying every address");
            jail.set_env("MSP_LISTEN", "localhost:9200");
            assert_eq!(
                load(None)?.listen,
                "127.0.0.1:9200".parse().expect("addr"),
                "a name, as Go's net.Listen takes it"
            );
            jail.clear_env();
            assert_eq!(c.enrichers.names(), ["node", "labels", "owner"]);
            assert_eq!(c.naming, Naming::Prometheus);
            assert_eq!(c.limits.timeout, Duration::from_secs(10));
            assert_eq!(c.limits, crate::Limits::default(), "the library's defaults are the server's");
            assert!(c.kubernetes.api_url.is_none());
            assert_eq!(c.reuse_lists_for, Duration::ZERO, "every scrape reads");
            assert!(c.streaming_lists);
            Ok(())
        });
    }

    #[test]
    fn reuse_lists_for_is_a_duration_of_at_most_a_minute() {
        Jail::expect_with(|jail| {
            jail.set_env("MSP_REUSE_LISTS_FOR", "15s");
            assert_eq!(load(None)?.reuse_lists_for, Duration::from_secs(15));
            jail.set_env("MSP_KUBERNETES__STREAMING_LISTS", "false");
            assert!(!load(None)?.streaming_lists);
            for (value, says) in [("15", "for example \"15s\""), ("2m", "set it below the scrape interval")] {
                jail.set_env("MSP_REUSE_LISTS_FOR", value);
                let e = load(None).expect_err(value);
                assert!(
                    e.starts_with("configuration key `reuse_lists_for` (MSP_REUSE_LISTS_FOR): ") && e.contains(says),
                    "{e}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn file_then_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "msp.toml",
                r#"
                listen = "127.0.0.1:9200"
                naming = "seed"
                [kubernetes]
                api_url = "https://10.0.0.1:6443"
                timeout = "3s"
                "#,
            )?;
            let c = load(Some("msp.toml"))?;
            assert_eq!(c.listen.port(), 9200);
            assert_eq!(c.naming, Naming::Seed);
            assert_eq!(c.limits.timeout, Duration::from_secs(3));

            jail.set_env("MSP_LISTEN", "127.0.0.1:9300");
            jail.set_env("MSP_KUBERNETES__TIMEOUT", "1m0s");
            jail.set_env("MSP_KUBERNETES__API_URL", "http://127.0.0.1:8001");
            jail.set_env("MSP_ENRICHERS", r#"["node"]"#);
            let c = load(Some("msp.toml"))?;
            assert_eq!(c.listen.port(), 9300, "environment beats the file");
            assert_eq!(c.limits.timeout, Duration::from_secs(60));
            assert_eq!(c.kubernetes.api_url.as_ref().map(Url::as_str), Some("http://127.0.0.1:8001/"));
            assert_eq!(c.enrichers.names(), ["node"]);
            assert_eq!(c.enrichers.not_enabled(), ["labels", "owner"]);
            assert!(c.enrichers.idle_sections().is_empty());
            assert_eq!(c.naming, Naming::Seed, "the file still applies where env is silent");
            jail.set_env("MSP_NAMING", "Seed");
            jail.set_env("MSP_LOG_FORMAT", "JSON");
            let c = load(Some("msp.toml"))?;
            assert_eq!((c.naming, c.log_format), (Naming::Seed, LogFormat::Json), "in any case, as the level");
            jail.set_env("MSP_LABELS__DENY", r#"["x"]"#);
            assert_eq!(load(Some("msp.toml"))?.enrichers.idle_sections(), ["labels"], "set, but read by none in use");
            jail.set_env("MSP_ENRICHERS", r#"["labels"]"#);
            assert!(load(Some("msp.toml"))?.enrichers.idle_sections().is_empty());
            let err = load(Some("none.toml")).expect_err("no such file");
            assert!(err.starts_with("configuration file none.toml: ") && !err.contains('\n'), "{err}");

            jail.set_env("MSP_CONFIG", "msp.toml");
            let c = load(None).expect("MSP_CONFIG is not a key");
            assert_eq!(c.naming, Naming::Seed, "without a file given, MSP_CONFIG's is read");
            jail.set_env("MSP_CONFIG", "none.toml");
            assert!(load(None).expect_err("MSP_CONFIG names no file").starts_with("configuration file none.toml: "));
            jail.set_env("MSP_CONFIG", "");
            assert!(load(None).is_ok(), "an empty MSP_CONFIG is unset");
            Ok(())
        });
    }

    #[test]
    fn a_label_selector_is_parsed_as_the_api_server_parses_it() {
        Jail::expect_with(|jail| {
            jail.set_env("MSP_LABEL_SELECTOR", " app in (frontend, cart),tier!=web ");
            let c = load(None)?;
            let selector = c.scope.label_selector.expect("a selector");
            assert_eq!(selector.as_str(), "app in (frontend, cart),tier!=web", "sent as written, trimmed");
            assert!(selector.matches(&[("app", "cart"), ("tier", "db")]));
            jail.set_env("MSP_LABEL_SELECTOR", "  ");
            assert_eq!(load(None)?.scope.label_selector, None, "blank is unset");
            for bad in ["app in (", "app=a b", "Example.com/team=shop", "app\u{1}=x"] {
                jail.set_env("MSP_LABEL_SELECTOR", bad);
                let err = load(None).expect_err(bad);
                assert!(
                    err.starts_with(
                        "configuration key `label_selector` (MSP_LABEL_SELECTOR): unable to parse label selector"
                    ),
                    "{bad}: {err}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn values_that_look_like_numbers_or_bools_are_text_where_text_is_wanted() {
        Jail::expect_with(|jail| {
            jail.set_env("MSP_LABEL_SELECTOR", "true");
            jail.set_env("MSP_KUBERNETES__CONTEXT", "123");
            jail.set_env("MSP_KUBERNETES__API_URL", "https://10.0.0.1:6443");
            let c = load(None)?;
            assert_eq!(c.scope.label_selector.as_ref().map(LabelSelector::as_str), Some("true"));
            assert_eq!(c.kubernetes.context.as_deref(), Some("123"));
            jail.set_env("MSP_LISTEN", "9100");
            let err = load(None).expect_err("a port alone is no address");
            assert!(err.contains("`listen`") && err.contains("9100") && !err.contains("unsigned int"), "{err}");
            // From a file, a value of another kind is still refused as not a string.
            jail.clear_env();
            jail.create_file("msp.toml", "listen = [\"x\"]\n[kubernetes]\ncontext = {}\n")?;
            let err = load(Some("msp.toml")).expect_err("a list is no address");
            assert!(err.contains("expected a string") && err.contains("msp.toml"), "{err}");
            // An enricher's section names its key and the file.
            jail.create_file("msp.toml", "[labels]\ntypo = 1\n")?;
            let err = load(Some("msp.toml")).expect_err("strict section");
            assert!(
                err.contains("key `labels.typo` (in TOML file ")
                    && err.contains("msp.toml) is not known; known keys: allow, deny"),
                "{err}"
            );
            // So does the section of an enricher that is registered but not enabled.
            jail.create_file("msp.toml", "enrichers = [\"node\"]\n[labels]\ntypo = 1\n")?;
            let err = load(Some("msp.toml")).expect_err("strict section, enricher not enabled");
            assert!(err.contains("enricher \"labels\"") && err.contains("key `labels.typo`"), "{err}");
            jail.create_file("msp.toml", "enrichers = [\"node\"]\n[labels]\ndeny = [\"x\"]\n")?;
            assert_eq!(load(Some("msp.toml"))?.enrichers.names(), ["node"], "a good one is read and left unused");
            // An unknown key, and one value for a list, name the file, and the key as written.
            jail.create_file("msp.toml", "[kubernetes]\nTimeout = \"5s\"\n")?;
            let err = load(Some("msp.toml")).expect_err("unknown key");
            assert!(
                err.contains("`kubernetes.Timeout` (in TOML file ") && err.contains("msp.toml) is not known"),
                "{err}"
            );
            jail.create_file("msp.toml", "enrichers = \"node\"\n")?;
            let err = load(Some("msp.toml")).expect_err("not a list");
            assert!(err.contains("`enrichers` (in TOML file ") && err.contains("but it is a list"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn listen_takes_an_address_or_a_name_as_go_does() {
        let cases = [
            ("[::]:9100", Ok("[::]:9100")),
            ("[::1]:9100", Ok("[::1]:9100")),
            ("127.0.0.1:9100", Ok("127.0.0.1:9100")),
            (":9100", Ok("[::]:9100")),
            // Looked up in /etc/hosts: its first IPv4 address.
            ("localhost:9100", Ok("127.0.0.1:9100")),
            ("nowhere", Err("is not an address:port (invalid socket address syntax)")),
            ("localhost:http", Err("is not an address:port")),
            ("::1:9100", Err("is not an address:port")),
            ("0:9100", Err("is not an address:port")),
            ("127.1:9100", Err("is not an address:port")),
            ("0x7f.1:9100", Err("is not an address:port")),
            ("0x7f000001:9100", Err("is not an address:port")),
            (":http", Err("is not an address:port")),
        ];
        // Names, looked up (not here: a test does not ask DNS), whatever they begin with.
        for name in ["4f3c2a1b9e8d", "1password", "node-1.example", "a.0x1g"] {
            assert!(!inet_aton_reads(name), "{name}");
        }
        for (listen, want) in cases {
            let got = parse_listen(listen);
            match want {
                Ok(addr) => assert_eq!(got, Ok(addr.parse().expect("addr")), "{listen}"),
                Err(said) => assert!(got.as_ref().is_err_and(|e| e.starts_with(said)), "{listen}: {got:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("MSP_LISTEN", "nowhere", "`listen`"),
            ("MSP_NAMING", "Fancy", "`naming` (MSP_NAMING): \"Fancy\" is neither"),
            ("MSP_KUBERNETES__TIMEOUT", "10 parsecs", "`kubernetes.timeout`"),
            ("MSP_KUBERNETES__API_URL", "ftp://x", "`kubernetes.api_url`"),
            ("MSP_ENRICHERS", r#"["node","gpu"]"#, "unknown enricher \"gpu\"; known enrichers: labels, node, owner"),
            (
                "MSP_KUBERNETES__TYPO",
                "1",
                "`kubernetes.typo` (MSP_KUBERNETES__TYPO) is not known; known keys: MSP_KUBERNETES__API_URL, MSP_KUBERNETES__TOKEN_FILE,",
            ),
            (
                "MSP_ENRICHERS",
                "node",
                "`enrichers` (MSP_ENRICHERS): found string \"node\", but it is a list",
            ),
            ("MSP_NAMESPACES__ALLOW", "shop", "MSP_NAMESPACES__ALLOW='[\"a\",\"b\"]'"),
            ("MSP_LOG_LEVEL", "loud", "is not off, error,"),
            (
                "MSP_KUBERNETES__KUBERNETES",
                "1",
                "`kubernetes.kubernetes` (MSP_KUBERNETES__KUBERNETES) is not known; known keys: MSP_KUBERNETES__API_URL,",
            ),
            ("MSP_TYPO", "1", "`typo` (MSP_TYPO) is not known; known keys: MSP_ENRICHERS, MSP_KUBERNETES__*, MSP_LABEL_SELECTOR, MSP_LABELS__*, MSP_LISTEN,"),
            ("MSP_ENRICHERS", r#"["node","labels","node"]"#, "\"node\" is listed twice (positions 1 and 3)"),
            ("MSP_LABELS__ALLOW", r#"["app", ""]"#, "enricher \"labels\": empty pattern"),
            ("MSP_LABELS__TYPO", "1", "key `labels.typo` (MSP_LABELS__TYPO) is not known; known keys: MSP_LABELS__ALLOW, MSP_LABELS__DENY"),
            ("MSP_KUBERNETES__TIMEOUT", "5", "`kubernetes.timeout` (MSP_KUBERNETES__TIMEOUT): "),
            ("MSP_KUBERNETES__TIMEOUT", "5", "for example \"5s\""),
            (
                "MSP_KUBERNETES__MAX_RESPONSE_BYTES",
                "lots",
                "`kubernetes.max_response_bytes` (MSP_KUBERNETES__MAX_RESPONSE_BYTES): found string \"lots\", expected a whole number in digits, without a unit (MSP_KUBERNETES__MAX_RESPONSE_BYTES)",
            ),
            (
                "MSP_KUBERNETES__MAX_RESPONSE_BYTES",
                "-1",
                "`kubernetes.max_response_bytes` (MSP_KUBERNETES__MAX_RESPONSE_BYTES): found signed int `-1`, expected a whole number in digits",
            ),
            (
                "MSP_SHARD__TOTAL",
                "99999999999",
                "`shard.total` (MSP_SHARD__TOTAL): found unsigned int `99999999999`, more than the most it takes, 4294967295 (MSP_SHARD__TOTAL)",
            ),
            (
                "MSP_SHARD__TOTAL",
                "3.0",
                "`shard.total` (MSP_SHARD__TOTAL): found float `3`, expected a whole number, without a decimal point (MSP_SHARD__TOTAL)",
            ),
            ("MSP_TIMESTAMPS", "yes", "`timestamps` (MSP_TIMESTAMPS): found string \"yes\", expected true or false (MSP_TIMESTAMPS=true)"),
            ("MSP_LABELS__ALLOW", "app", "key `labels.allow` (MSP_LABELS__ALLOW): found string \"app\", but it is a list, written as a TOML array ([\"a\", \"b\"]; MSP_LABELS__ALLOW='[\"a\",\"b\"]')"),
            ("MSP_SHARD__INDEX", "1", "set shard.total (MSP_SHARD__TOTAL)"),
        ];
        for &(var, value, want) in cases {
            Jail::expect_with(|jail| {
                jail.set_env(var, value);
                let err = load(None).expect_err(var);
                assert!(err.contains(want), "{var}={value}: {err}");
                Ok(())
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod embedder_tests {
    use super::*;
    use figment::Jail;
    use msp_core::{async_trait, AddedLabel, Cluster, EnrichError, Enrichment, Scrape};

    /// An embedder's enricher with its own `[team]` section.
    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct TeamOptions {
        #[serde(deserialize_with = "crate::text_or_number")]
        channel: String,
    }

    struct Team(String);

    #[async_trait]
    impl Enricher for Team {
        fn name(&self) -> &str {
            &self.0
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            Ok(Enrichment::new(scrape))
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::builtin();
        r.register_with("team", "team", |o: TeamOptions| {
            if o.channel.is_empty() {
                return Err("team.channel is required".into());
            }
            Ok(Arc::new(Team(format!("team:{}", o.channel))))
        });
        r
    }

    #[test]
    fn an_embedders_enricher_enabled_by_default_runs_after_the_built_ins_unless_enrichers_is_set() {
        Jail::expect_with(|jail| {
            let mut teams = Registry::builtin();
            teams.register_with("team", "team", |_: TeamOptions| Ok(Arc::new(Team("team".into()))));
            teams.enable_by_default("team").enable_by_default("team");
            let c = Config::load(None, &teams).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node", "labels", "owner", "team"]);
            jail.set_env("MSP_ENRICHERS", r#"["owner"]"#);
            let c = Config::load(None, &teams).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["owner"], "set, it says it all");
            assert!(Registry::default().defaults().is_empty());

            // An embedder's own figment, built on ours, has them too.
            jail.clear_env();
            let figment = figment(None, &teams).merge(("log_level", "debug"));
            let raw: RawConfig = figment.extract()?;
            let c = raw.check_with(&teams, &figment).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node", "labels", "owner", "team"]);
            Ok(())
        });
    }

    #[test]
    fn an_embedders_enricher_reads_its_own_section() {
        Jail::expect_with(|jail| {
            jail.create_file("msp.toml", "enrichers = [\"node\", \"team\"]\n[team]\nchannel = \"#sre\"\n")?;
            let c = Config::load(Some("msp.toml".into()), &registry()).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node", "team:#sre"]);
            assert_eq!(c.enrichers.renamed(), [("team".to_owned(), "team:#sre".to_owned())], "to be warned of");

            jail.set_env("MSP_TEAM__CHANNEL", "#platform");
            let c = Config::load(Some("msp.toml".into()), &registry()).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node", "team:#platform"], "env reaches the section too");
            jail.set_env("MSP_TEAM__CHANNEL", "42");
            let c = Config::load(Some("msp.toml".into()), &registry()).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node", "team:42"], "a number is its text, as in our sections");

            jail.set_env("MSP_TEAM__TYPO", "x");
            let err = Config::load(Some("msp.toml".into()), &registry()).expect_err("strict section");
            assert!(err.to_string().contains("typo"), "{err}");

            let err = Config::load(Some("msp.toml".into()), &Registry::builtin()).expect_err("nobody reads [team]");
            assert!(err.to_string().contains("`team` (MSP_TEAM__CHANNEL) is not known"), "{err}");

            // Not enabled, it is not built: its section is read, but its factory (which would
            // refuse an empty channel here) is not run.
            jail.clear_env();
            jail.create_file("msp.toml", "enrichers = [\"node\"]\n[team]\nchannel = \"\"\n")?;
            let c = Config::load(Some("msp.toml".into()), &registry()).map_err(|e| e.to_string())?;
            assert_eq!(c.enrichers.names(), ["node"]);

            // The known keys name the sections, whatever the enrichers that read them are called.
            jail.clear_env();
            jail.create_file("msp.toml", "[tem]\nchannel = \"#sre\"\n")?;
            let mut teams = Registry::builtin();
            teams.register_with("team", "teams", |_: TeamOptions| Ok(Arc::new(Team("team".into()))));
            let err = Config::load(Some("msp.toml".into()), &teams).expect_err("a typo").to_string();
            assert!(err.contains("`tem`") && err.contains("labels, ") && err.contains("teams"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn kubernetes_service_links_are_ignored() {
        Jail::expect_with(|jail| {
            for (k, v) in [
                ("MSP_PORT", "tcp://10.96.0.7:9100"),
                ("MSP_PORT_9100_TCP", "tcp://10.96.0.7:9100"),
                ("MSP_PORT_9100_TCP_PROTO", "tcp"),
                ("MSP_PORT_9100_TCP_PORT", "9100"),
                ("MSP_PORT_9100_TCP_ADDR", "10.96.0.7"),
                ("MSP_SERVICE_HOST", "10.96.0.7"),
                ("MSP_SERVICE_PORT", "9100"),
                ("MSP_SERVICE_PORT_METRICS", "9100"),
            ] {
                jail.set_env(k, v);
            }
            Config::load(None, &Registry::builtin()).map_err(|e| e.to_string())?;
            jail.set_env("MSP_PORTS", "1");
            assert!(Config::load(None, &Registry::builtin()).is_err(), "other unknown keys are still refused");
            Ok(())
        });
    }
}
