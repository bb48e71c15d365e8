//! Serving `/metrics` over TLS and/or behind basic auth, configured by an exporter-toolkit
//! web-config file (the format node_exporter and kube-state-metrics use):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
//!   client_ca_file: ca.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...                          # bcrypt
//! ```
//!
//! Relative paths are relative to the file. The file (and the files it names) is re-read
//! when it changes, without a restart; a change that does not load is logged and the
//! previous configuration kept. `/healthz` and `/readyz` stay open for kubelet probes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use serde::Deserialize;

use crate::kube::{certificates, private_key};

/// A web-config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid YAML of the expected shape.
    #[error("{path}: {source}")]
    Yaml {
        /// Its path.
        path: PathBuf,
        /// The parse error.
        source: serde_norway::Error,
    },
    /// A value is not usable.
    #[error("{path}: {message}")]
    Invalid {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    http_server_config: Option<serde_norway::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    min_version: Option<String>,
}

/// A loaded web configuration.
pub struct WebConfig {
    /// TLS for the listener, if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users and their bcrypt hashes; empty: no basic auth.
    users: BTreeMap<String, String>,
    /// `client_auth_type: RequireAndVerifyClientCert`.
    require_client_cert: bool,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `path` and the files it names.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid { path: path.to_owned(), message };
        let read = |p: &Path| std::fs::read(p).map_err(|source| WebConfigError::Read { path: p.to_owned(), source });
        let text = read(path)?;
        if text.iter().all(u8::is_ascii_whitespace) {
            // An emptied (or half-written) file must not turn the checks off.
            return Err(invalid("the file is empty".into()));
        }
        let raw: RawFile =
            serde_norway::from_slice(&text).map_err(|source| WebConfigError::Yaml { path: path.to_owned(), source })?;
        let _ = raw.http_server_config;
        let dir = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &PathBuf| if p.is_absolute() { p.clone() } else { dir.join(p) };
        let require_client_cert = raw
            .tls_server_config
            .as_ref()
            .is_some_and(|t| t.client_auth_type.as_deref() == Some("RequireAndVerifyClientCert"));
        let tls = match raw.tls_server_config {
            None => None,
            Some(t) => {
                let cert_path = rel(&t.cert_file);
                let key_path = rel(&t.key_file);
                let certs = certificates(&read(&cert_path)?, &cert_path.display().to_string())
                    .map_err(|e| invalid(e.to_string()))?;
                let key = private_key(&read(&key_path)?, &key_path.display().to_string())
                    .map_err(|e| invalid(e.to_string()))?;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let versions: &[&rustls::SupportedProtocolVersion] = match t.min_version.as_deref() {
                    None | Some("TLS12") => &[&rustls::version::TLS13, &rustls::version::TLS12],
                    Some("TLS13") => &[&rustls::version::TLS13],
                    Some(other) => return Err(invalid(format!("min_version {other:?}: use TLS12 or TLS13"))),
                };
                let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| invalid(e.to_string()))?;
                let client_ca =
                    |required: bool| -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, WebConfigError> {
                        let ca_path = rel(t
                            .client_ca_file
                            .as_ref()
                            .ok_or_else(|| invalid("client_ca_file is required for this client_auth_type".into()))?);
                        let mut roots = rustls::RootCertStore::empty();
                        for c in certificates(&read(&ca_path)?, &ca_path.display().to_string())
                            .map_err(|e| invalid(e.to_string()))?
                        {
                            roots.add(c).map_err(|e| invalid(e.to_string()))?;
                        }
                        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                            Arc::new(roots),
                            provider.clone(),
                        );
                        let v = if required { v } else { v.allow_unauthenticated() };
                        v.build().map_err(|e| invalid(e.to_string()))
                    };
                let builder = match t.client_auth_type.as_deref() {
                    None | Some("NoClientCert") => builder.with_no_client_auth(),
                    Some("VerifyClientCertIfGiven") => builder.with_client_cert_verifier(client_ca(false)?),
                    Some("RequireAndVerifyClientCert") => builder.with_client_cert_verifier(client_ca(true)?),
                    Some(other) => {
                        return Err(invalid(format!(
                            "client_auth_type {other:?} is not supported (certificates are always verified): use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                        )))
                    }
                };
                Some(Arc::new(builder.with_single_cert(certs, key).map_err(|e| invalid(e.to_string()))?))
            }
        };
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if !hash.is_ascii() || hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(format!("basic_auth_users.{user}: not a bcrypt hash")));
            }
        }
        Ok(WebConfig { tls, users, require_client_cert })
    }

    /// Whether the `Authorization` header carries a configured user and password (always,
    /// when no users are configured).
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(encoded) = authorization.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(decoded) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = decoded.split_once(':') else { return false };
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            // Spend the same time on unknown users as on wrong passwords.
            None => {
                let _ = bcrypt::verify(password, "$2y$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3e6aMQ1b1Y5ZXZk6t3.v4yq");
                false
            }
        }
    }

    /// Whether basic auth is on.
    pub fn has_basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether every request must come with a verified client certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.require_client_cert
    }
}

/// The web-config file, re-read when its modification time changes. A change that does
/// not load (malformed, empty, half-written, unreadable) is logged and the last good
/// configuration kept: the checks never fail open.
#[derive(Debug)]
pub struct WebConfigFile {
    path: PathBuf,
    current: Mutex<(Option<SystemTime>, Option<Arc<WebConfig>>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl WebConfigFile {
    /// Loads `path`; it must load now.
    pub fn open(path: PathBuf) -> Result<Self, WebConfigError> {
        let config = WebConfig::load(&path)?;
        Ok(WebConfigFile { current: Mutex::new((modified(&path), Some(Arc::new(config)))), path })
    }

    /// The configuration now, re-read if the file changed since; `None` if no good one was
    /// ever loaded (then nothing may be served without its checks).
    pub fn current(&self) -> Option<Arc<WebConfig>> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = modified(&self.path);
        if now != cur.0 {
            cur.0 = now;
            match WebConfig::load(&self.path) {
                Ok(c) => {
                    log::info!("web config {} reloaded", self.path.display());
                    cur.1 = Some(Arc::new(c));
                }
                Err(e) => log::error!("web config: {e}; keeping the last good configuration"),
            }
        }
        cur.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emptied_file_keeps_the_last_good_configuration() {
        let dir = std::env::temp_dir().join(format!("msp-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("web.yml");
        // bcrypt of "secret", cost 4.
        let hash = bcrypt::hash("secret", 4).expect("hash");
        std::fs::write(&path, format!("basic_auth_users:\n  prometheus: {hash}\n")).expect("write");
        let file = WebConfigFile::open(path.clone()).expect("open");
        assert!(file.current().is_some_and(|c| c.has_basic_auth()));
        for broken in [
            "",
            "  \n",
            "basic_auth_users:\n  prometheus: [",
            "tls_server_config:\n  cert_file: /nope\n  key_file: /nope\n",
        ] {
            std::fs::write(&path, broken).expect("write");
            // Make the change visible even within one mtime tick.
            file.current.lock().expect("lock").0 = None;
            let c = file.current().expect("still the last good one");
            assert!(c.has_basic_auth(), "{broken:?} must not turn basic auth off");
        }
        assert!(WebConfig::load(&path).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
