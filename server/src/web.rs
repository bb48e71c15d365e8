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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use http_types::headers::{HeaderName, HeaderValue};
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
    http_server_config: Option<RawHttpServer>,
}

/// exporter-toolkit's `http_server_config`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttpServer {
    /// HTTP/2 over TLS: we serve HTTP/1.1 only, which every Prometheus speaks.
    #[serde(default, rename = "http2")]
    _http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// The headers `http_server_config.headers` may set, as exporter-toolkit allows them, each
/// with the only values it takes where it has a few.
const EXTRA_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// `headers`, checked as exporter-toolkit checks them, and as an answer's headers (ASCII,
/// no control character).
fn extra_headers(headers: BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    headers
        .into_iter()
        .map(|(name, value)| {
            let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
                return Err(format!("http_server_config.headers: {name:?} can not be set (only {})", names.join(", ")));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(format!("http_server_config.headers: {name} is one of {allowed:?}, not {value:?}"));
            }
            if value.chars().any(char::is_control) {
                return Err(format!("http_server_config.headers: {name} has a control character"));
            }
            let typed = |e: http_types::Error| format!("http_server_config.headers: {name}: {e}");
            Ok((HeaderName::from_str(&name).map_err(typed)?, HeaderValue::from_str(&value).map_err(typed)?))
        })
        .collect()
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
    /// A hash of the users' highest cost, checked for unknown users.
    dummy_hash: String,
    /// Digests of credentials verified with this configuration.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// `http_server_config.headers`: set on every answer the checks guard.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// At most this many verified credentials are remembered (then the memory starts over).
const VERIFIED_MAX: usize = 256;

/// A user and password from a `Basic` header.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
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
        Self::load_noting(path, &RefCell::default())
    }

    /// [`WebConfig::load`], noting in `read_files` every file it reads or tries to read, with
    /// its modification time just before: a change made while it loads is seen next time.
    fn load_noting(path: &Path, read_files: &RefCell<Stamps>) -> Result<WebConfig, WebConfigError> {
        let invalid = |message: String| WebConfigError::Invalid { path: path.to_owned(), message };
        let read = |p: &Path| {
            read_files.borrow_mut().push((p.to_owned(), modified(p)));
            std::fs::read(p).map_err(|source| WebConfigError::Read { path: p.to_owned(), source })
        };
        let text = read(path)?;
        if text.iter().all(u8::is_ascii_whitespace) {
            // An emptied (or half-written) file must not turn the checks off.
            return Err(invalid("the file is empty".into()));
        }
        let raw: RawFile =
            serde_norway::from_slice(&text).map_err(|source| WebConfigError::Yaml { path: path.to_owned(), source })?;
        let headers = raw.http_server_config.and_then(|h| h.headers).map(extra_headers).transpose().map_err(invalid)?;
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
        // An unknown user is checked against a hash of the users' own cost, so that it takes
        // as long as a known user's wrong password: of the cost most of them have (the
        // higher of two as common), where their costs differ.
        let mut costs = BTreeMap::<u32, usize>::new();
        for (user, hash) in &users {
            match hash.parse::<bcrypt::HashParts>() {
                Ok(parts) if hash.is_ascii() => *costs.entry(parts.get_cost()).or_default() += 1,
                _ => return Err(invalid(format!("basic_auth_users.{user}: not a bcrypt hash"))),
            }
        }
        let dummy_hash = match costs.iter().max_by_key(|&(cost, n)| (n, cost)) {
            None => String::new(),
            Some((&cost, _)) => {
                bcrypt::hash("not a password anyone has", cost).map_err(|e| invalid(format!("bcrypt: {e}")))?
            }
        };
        let headers = headers.unwrap_or_default();
        Ok(WebConfig { tls, users, require_client_cert, dummy_hash, verified: Mutex::default(), headers })
    }

    /// The user and password of a `Basic` `Authorization` header, if it is one. The scheme's
    /// name is case-insensitive (RFC 9110 11.1), as Go's `Request.BasicAuth` reads it.
    pub fn credentials(authorization: Option<&str>) -> Option<Credentials> {
        let (scheme, encoded) = authorization?.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("Basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials { user: user.to_owned(), password: password.to_owned() })
    }

    /// Whether `credentials` passed [`WebConfig::verify`] before (with this configuration):
    /// cheap, no bcrypt. Only a digest of each success is kept, never the password.
    pub fn verified_before(&self, credentials: &Credentials) -> bool {
        let key = self.cache_key(credentials);
        self.verified.lock().is_ok_and(|v| v.contains(&key))
    }

    /// Whether `credentials` are a configured user's: bcrypt, slow by design, so call it off
    /// the request threads. An unknown user costs as much as a wrong password (a dummy
    /// hash of the configured users' highest cost), so timing does not tell which exist.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        let ok = match self.users.get(&credentials.user) {
            Some(hash) => bcrypt::verify(&credentials.password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(&credentials.password, &self.dummy_hash);
                false
            }
        };
        if ok {
            if let Ok(mut verified) = self.verified.lock() {
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
                verified.insert(self.cache_key(credentials));
            }
        }
        ok
    }

    /// SHA-256 of the user's bcrypt hash, the user and the password.
    fn cache_key(&self, c: &Credentials) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let hash = self.users.get(&c.user).map_or("", String::as_str);
        for part in [hash, "\0", &c.user, "\0", &c.password] {
            ctx.update(part.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Whether basic auth is on.
    pub fn has_basic_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// The headers set on every answer the checks guard (`http_server_config.headers`).
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// Whether every request must come with a verified client certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.require_client_cert
    }
}

/// The web-config file, re-read when its modification time, or that of a file it names
/// (a certificate renewed in place, say), changes. A change that does not load (malformed,
/// empty, half-written, unreadable) is logged and the last good configuration kept: the
/// checks never fail open.
#[derive(Debug)]
pub struct WebConfigFile {
    path: PathBuf,
    current: Mutex<(Stamps, Option<Arc<WebConfig>>)>,
}

/// The files the last load read or tried to read, with their modification times then.
type Stamps = Vec<(PathBuf, Option<SystemTime>)>;

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads `path`, with the stamps of every file the attempt read.
fn load_stamped(path: &Path) -> (Result<WebConfig, WebConfigError>, Stamps) {
    let read_files = RefCell::new(Vec::new());
    let loaded = WebConfig::load_noting(path, &read_files);
    // Each file with its time before its first read.
    let mut stamps: Stamps = Vec::new();
    for (file, stamp) in read_files.into_inner() {
        if !stamps.iter().any(|(p, _)| *p == file) {
            stamps.push((file, stamp));
        }
    }
    if stamps.is_empty() {
        stamps.push((path.to_owned(), modified(path)));
    }
    (loaded, stamps)
}

impl WebConfigFile {
    /// Loads `path`; it must load now.
    pub fn open(path: PathBuf) -> Result<Self, WebConfigError> {
        let (loaded, stamps) = load_stamped(&path);
        Ok(WebConfigFile { current: Mutex::new((stamps, Some(Arc::new(loaded?)))), path })
    }

    /// The configuration now, re-read if the file or one it names changed since; `None`
    /// if no good one was ever loaded (then nothing may be served without its checks).
    pub fn current(&self) -> Option<Arc<WebConfig>> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0.iter().any(|(file, stamp)| modified(file) != *stamp) {
            let (loaded, stamps) = load_stamped(&self.path);
            cur.0 = stamps;
            match loaded {
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

    fn config_with(hash: &str) -> (WebConfig, PathBuf) {
        let dir = std::env::temp_dir().join(format!("msp-web-auth-{}-{}", std::process::id(), hash.len()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n  prometheus: {hash}\n")).expect("write");
        (WebConfig::load(&path).expect("load"), dir)
    }

    fn basic(user: &str, password: &str) -> Credentials {
        let header =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        WebConfig::credentials(Some(&header)).expect("credentials")
    }

    #[test]
    fn http_server_config_headers_are_checked_as_exporter_toolkit_checks_them() {
        let dir = std::env::temp_dir().join(format!("msp-web-headers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("web.yml");
        let load = |headers: &str| {
            std::fs::write(&path, format!("http_server_config:\n  http2: true\n  headers:\n{headers}")).expect("write");
            WebConfig::load(&path).map(|c| c.headers().to_vec()).map_err(|e| e.to_string())
        };
        let ok = load("    X-Content-Type-Options: nosniff\n    Content-Security-Policy: default-src 'none'\n");
        let ok: Vec<(String, String)> =
            ok.expect("allowed").iter().map(|(n, v)| (n.as_str().to_owned(), v.as_str().to_owned())).collect();
        assert_eq!(
            ok,
            [
                ("content-security-policy".to_owned(), "default-src 'none'".to_owned()),
                ("x-content-type-options".to_owned(), "nosniff".to_owned())
            ]
        );
        for (headers, why) in [
            ("    Server: x\n", "\"Server\" can not be set"),
            ("    X-Frame-Options: allow\n", "X-Frame-Options is one of [\"deny\", \"sameorigin\"]"),
            ("    X-XSS-Protection: \"1\\r\\nSet-Cookie: x\"\n", "control character"),
            ("    Content-Security-Policy: default-src https://bücher.example\n", "ASCII"),
        ] {
            let err = load(headers).expect_err(headers);
            assert!(err.contains(why), "{headers}: {err}");
        }
        std::fs::write(&path, "http_server_config:\n  typo: 1\n").expect("write");
        assert!(WebConfig::load(&path).is_err(), "an unknown key is refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_basic_scheme_is_read_in_any_case() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("prometheus:pa ss:word");
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let c = WebConfig::credentials(Some(&format!("{scheme} {encoded}"))).expect(scheme);
            assert_eq!((c.user.as_str(), c.password.as_str()), ("prometheus", "pa ss:word"), "{scheme}");
        }
        for header in [format!("Basicx {encoded}"), format!("Bearer {encoded}"), encoded.clone(), "Basic".into()] {
            assert!(WebConfig::credentials(Some(&header)).is_none(), "{header}");
        }
    }

    #[test]
    fn unknown_users_are_checked_at_the_users_cost_and_successes_remembered() {
        let (config, dir) = config_with(&bcrypt::hash("s3cret", 5).expect("hash"));
        let dummy: bcrypt::HashParts = config.dummy_hash.parse().expect("dummy hash");
        assert_eq!(dummy.get_cost(), 5, "the user's own cost (htpasswd -B's default), no dearer: its time would tell");
        assert!(!config.verify(&basic("mallory", "s3cret")));
        assert!(!config.verify(&basic("prometheus", "wrong")));
        assert!(!config.verified_before(&basic("prometheus", "s3cret")));
        assert!(config.verify(&basic("prometheus", "s3cret")));
        assert!(config.verified_before(&basic("prometheus", "s3cret")), "remembered");
        assert!(!config.verified_before(&basic("prometheus", "s3cret2")));
        assert!(WebConfig::credentials(Some("Bearer x")).is_none());
        let (costly, dir2) = config_with(&bcrypt::hash("x", 11).expect("hash"));
        assert_eq!(costly.dummy_hash.parse::<bcrypt::HashParts>().expect("dummy").get_cost(), 11);
        let _ = (std::fs::remove_dir_all(dir), std::fs::remove_dir_all(dir2));
        let mixed = std::env::temp_dir().join(format!("msp-web-auth-mixed-{}.yml", std::process::id()));
        let users: String = [("a", 4), ("b", 6), ("c", 6), ("d", 5)]
            .iter()
            .map(|(u, cost)| format!("  {u}: {}\n", bcrypt::hash("x", *cost).expect("hash")))
            .collect();
        std::fs::write(&mixed, format!("basic_auth_users:\n{users}")).expect("write");
        let mixed_config = WebConfig::load(&mixed).expect("load");
        let dummy: bcrypt::HashParts = mixed_config.dummy_hash.parse().expect("dummy hash");
        assert_eq!(dummy.get_cost(), 6, "the cost most users have");
        let _ = std::fs::remove_file(mixed);
    }

    #[test]
    fn an_emptied_file_keeps_the_last_good_configuration() {
        let scratch = tempfile::tempdir().expect("dir");
        let path = scratch.path().join("web.yml");
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
            file.current.lock().expect("lock").0[0].1 = None;
            let c = file.current().expect("still the last good one");
            assert!(c.has_basic_auth(), "{broken:?} must not turn basic auth off");
        }
        assert!(WebConfig::load(&path).is_err());
        // A good file is read again as ever: basic auth taken off on purpose.
        std::fs::write(&path, "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n").expect("write");
        file.current.lock().expect("lock").0[0].1 = None;
        assert!(file.current().is_some_and(|c| !c.has_basic_auth()), "the good file read");
    }

    /// Sets `path`'s modification time `secs` from now: a change seen within one mtime tick.
    fn touch(path: &Path, secs: u64) {
        let file = std::fs::File::options().write(true).open(path).expect("open");
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(secs)).expect("set mtime");
    }

    #[test]
    fn a_certificate_renewed_in_place_is_served_without_touching_the_file() {
        let dir = std::env::temp_dir().join(format!("msp-web-renew-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write_pki = || {
            let pki = msp_sim::tls::TestPki::generate().expect("pki");
            std::fs::write(dir.join("web.crt"), &pki.server_cert_pem).expect("crt");
            std::fs::write(dir.join("web.key"), &pki.server_key_pem).expect("key");
        };
        write_pki();
        let path = dir.join("web.yml");
        std::fs::write(&path, "tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\n").expect("yml");
        let file = WebConfigFile::open(path.clone()).expect("open");
        let first = file.current().expect("loaded");
        assert!(Arc::ptr_eq(&first, &file.current().expect("loaded")), "nothing changed: not re-read");
        // cert-manager renews the Secret: new certificate and key, the same web-config file.
        write_pki();
        touch(&dir.join("web.crt"), 10);
        touch(&dir.join("web.key"), 10);
        let renewed = file.current().expect("reloaded");
        assert!(!Arc::ptr_eq(&first, &renewed), "the renewed certificate is loaded");
        assert!(renewed.tls.is_some());
        // A key half-written: the renewed configuration stays.
        std::fs::write(dir.join("web.key"), "-----BEGIN PRIVATE KEY-----\n").expect("key");
        touch(&dir.join("web.key"), 20);
        assert!(Arc::ptr_eq(&renewed, &file.current().expect("kept")), "a bad key keeps the last good one");
        let _ = std::fs::remove_dir_all(dir);
    }
}
