//! Configuration: built-in defaults, then a TOML file (`--config FILE` or `MSP_CONFIG`),
//! then `MSP_` environment variables (nested keys joined by `__`), extracted by figment
//! into [`RawConfig`] and checked once into [`Config`]. Nothing downstream sees raw strings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use http_types::Url;
use msp_core::duration::GoDuration;
use msp_core::Naming;
use serde::{Deserialize, Serialize};

use crate::kube::{Limits, Settings};
use crate::registry::Registry;

/// The configuration as written, before checking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to serve on.
    pub listen: String,
    /// Enrichers by name, in order (earlier wins a label name).
    pub enrichers: Vec<String>,
    /// `prometheus` or `seed`.
    pub naming: String,
    /// Write metrics-server's sample timestamps.
    pub timestamps: bool,
    /// `error`, `warn`, `info`, `debug` or `trace` (third-party crates stay at `warn`).
    pub log_level: String,
    /// The API server.
    pub kubernetes: RawKubernetes,
    /// Options of the `labels` enricher.
    pub labels: msp_enrichers::LabelsOptions,
    /// Which namespaces' pods to export.
    pub namespaces: RawNamespaces,
    /// A label selector passed to the metrics API's pod list.
    pub label_selector: Option<String>,
    /// How `/metrics` itself is served.
    pub web: RawWeb,
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
    pub context: Option<String>,
    /// Per-request timeout, a Go duration.
    pub timeout: String,
    /// Turn off server certificate verification (logged loudly).
    pub insecure_skip_tls_verify: bool,
    /// Largest response body accepted.
    pub max_response_bytes: u64,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "0.0.0.0:9100".into(),
            enrichers: msp_enrichers::DEFAULT.iter().map(|s| s.to_string()).collect(),
            naming: "prometheus".into(),
            timestamps: false,
            log_level: "info".into(),
            kubernetes: RawKubernetes {
                api_url: None,
                token_file: None,
                ca_file: None,
                kubeconfig: None,
                context: None,
                timeout: "10s".into(),
                insecure_skip_tls_verify: false,
                max_response_bytes: 256 * 1024 * 1024,
            },
            labels: Default::default(),
            namespaces: RawNamespaces { allow: vec!["*".into()], deny: vec![] },
            label_selector: None,
            web: RawWeb::default(),
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// Enrichers by name, in order; each is known to the registry.
    pub enrichers: Vec<String>,
    /// Metric naming.
    pub naming: Naming,
    /// Write sample timestamps.
    pub timestamps: bool,
    /// Log level for our own crates.
    pub log_level: log::LevelFilter,
    /// How to find the API server.
    pub kubernetes: Settings,
    /// Request limits.
    pub limits: Limits,
    /// Options for the built-in enrichers.
    pub enricher_options: msp_enrichers::Options,
    /// Which pods to export.
    pub scope: crate::exporter::Scope,
    /// The web-config file, checked at load.
    pub web_config: Option<PathBuf>,
}

/// A configuration error; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// figment could not read or extract (its message names the key and the source).
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    /// A value was read but is not valid.
    #[error("configuration key `{key}`: {message}")]
    Invalid {
        /// The key, dotted (`kubernetes.timeout`).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

/// The layered figment: defaults, then `file` (if any), then `MSP_` variables.
pub fn figment(file: Option<PathBuf>) -> Figment {
    let mut f = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(file) = file {
        f = f.merge(Toml::file_exact(file));
    }
    f.merge(Env::prefixed("MSP_").split("__").ignore(&["config"]))
}

impl Config {
    /// Reads and checks the configuration.
    pub fn load(file: Option<PathBuf>, registry: &Registry) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment(file).extract().map_err(Box::new)?;
        raw.check(registry)
    }
}

impl RawConfig {
    /// Checks and types every value.
    pub fn check(self, registry: &Registry) -> Result<Config, ConfigError> {
        let listen = self
            .listen
            .parse()
            .map_err(|e| invalid("listen", format!("{:?} is not an address:port ({e})", self.listen)))?;
        for name in &self.enrichers {
            if !registry.contains(name) {
                return Err(invalid(
                    "enrichers",
                    format!("unknown enricher {name:?}; known enrichers: {}", registry.names().join(", ")),
                ));
            }
        }
        let mut enrichers = self.enrichers.clone();
        enrichers.dedup();
        let naming = match self.naming.as_str() {
            "prometheus" => Naming::Prometheus,
            "seed" => Naming::Seed,
            other => return Err(invalid("naming", format!("{other:?} is neither \"prometheus\" nor \"seed\""))),
        };
        let log_level = self.log_level.parse().map_err(|_| {
            invalid("log_level", format!("{:?} is not error, warn, info, debug or trace", self.log_level))
        })?;
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
        let timeout: Duration =
            k.timeout.parse::<GoDuration>().map_err(|e| invalid("kubernetes.timeout", e.to_string()))?.into();
        if timeout.is_zero() {
            return Err(invalid("kubernetes.timeout", "must be more than 0"));
        }
        if k.max_response_bytes < 1024 {
            return Err(invalid("kubernetes.max_response_bytes", "must be at least 1024"));
        }
        let ns = self.namespaces;
        if let Some(p) = ns.allow.iter().chain(&ns.deny).find(|p| p.is_empty()) {
            return Err(invalid("namespaces", format!("empty pattern {p:?}")));
        }
        let label_selector = self.label_selector.filter(|s| !s.trim().is_empty());
        if let Some(sel) = &label_selector {
            if sel.chars().any(|c| c.is_control()) {
                return Err(invalid("label_selector", format!("{sel:?} has control characters")));
            }
        }
        let web_config = self.web.config_file.filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = &web_config {
            crate::web::WebConfig::load(path).map_err(|e| invalid("web.config_file", e.to_string()))?;
        }
        let scope = crate::exporter::Scope { allow: ns.allow, deny: ns.deny, label_selector };
        let enricher_options =
            msp_enrichers::Options::new(self.labels).map_err(|e| invalid("labels", e.to_string()))?;
        Ok(Config {
            listen,
            enrichers,
            naming,
            timestamps: self.timestamps,
            log_level,
            kubernetes: Settings {
                api_url,
                token_file: k.token_file,
                ca_file: k.ca_file,
                kubeconfig: k.kubeconfig,
                context: k.context.filter(|c| !c.is_empty()),
                insecure_skip_tls_verify: k.insecure_skip_tls_verify,
            },
            limits: Limits { timeout, max_response_bytes: usize::try_from(k.max_response_bytes).unwrap_or(usize::MAX) },
            enricher_options,
            scope,
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
        Jail::expect_with(|_| {
            let c = load(None)?;
            assert_eq!(c.listen, "0.0.0.0:9100".parse().expect("addr"));
            assert_eq!(c.enrichers, ["node", "labels", "owner"]);
            assert_eq!(c.naming, Naming::Prometheus);
            assert_eq!(c.limits.timeout, Duration::from_secs(10));
            assert!(c.kubernetes.api_url.is_none());
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
            assert_eq!(c.enrichers, ["node"]);
            assert_eq!(c.naming, Naming::Seed, "the file still applies where env is silent");

            jail.set_env("MSP_CONFIG", "msp.toml");
            assert!(load(None).is_ok(), "MSP_CONFIG is not a key");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("MSP_LISTEN", "nowhere", "`listen`"),
            ("MSP_NAMING", "fancy", "`naming`"),
            ("MSP_KUBERNETES__TIMEOUT", "10 parsecs", "`kubernetes.timeout`"),
            ("MSP_KUBERNETES__API_URL", "ftp://x", "`kubernetes.api_url`"),
            ("MSP_ENRICHERS", r#"["node","gpu"]"#, "unknown enricher \"gpu\"; known enrichers: labels, node, owner"),
            ("MSP_KUBERNETES__TYPO", "1", "typo"),
            ("MSP_KUBERNETES__MAX_RESPONSE_BYTES", "lots", "KUBERNETES.MAX_RESPONSE_BYTES"),
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
