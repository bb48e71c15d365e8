//! Where the API server is and how to reach it: a configured URL, in-cluster service
//! account, or a kubeconfig.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use http_types::Url;
use rustls::pki_types::ServerName;
use serde::Deserialize;

use super::exec::{ExecConfig, ExecPlugin, API_VERSIONS};
use super::impersonation::Impersonation;
use super::tls::{self, TlsError, Verify};
use super::token::{Auth, InvalidToken, Secret, TokenError, TokenFile};

/// The service-account token path inside a pod.
pub const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The service-account CA path inside a pod.
pub const SA_CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// How to reach the API server, resolved.
#[derive(Debug)]
pub struct Endpoint {
    /// Base URL (`https://10.96.0.1:443`).
    pub base: Url,
    /// TLS settings for `https`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Bearer token source.
    pub auth: Auth,
    /// Whether certificate verification is off (logged loudly).
    pub insecure: bool,
    /// The name the server's certificate must hold, where it is not the host of `base`
    /// (a kubeconfig's `tls-server-name`).
    pub server_name: Option<ServerName<'static>>,
    /// Whom requests act as (a kubeconfig user's `as`, `as-uid`, `as-groups`).
    pub impersonation: Impersonation,
}

impl Endpoint {
    /// Whether a token goes to the API server unencrypted, to another host than this one:
    /// `http://` with credentials, anywhere but loopback (logged loudly).
    pub fn cleartext_token(&self) -> bool {
        let loopback = match self.base.host() {
            Some(http_types::url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(http_types::url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(http_types::url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        self.base.scheme() == "http" && !matches!(self.auth, Auth::None) && !loopback
    }

    /// Warns of what makes it unsafe (no certificate check, a token in clear), and says
    /// where the API server is.
    pub(crate) fn log(&self) {
        let api = super::redacted(&self.base);
        if self.insecure {
            log::warn!(
                "TLS certificate verification towards the API server ({api}) is OFF (insecure_skip_tls_verify): \
                 anyone on the path can read the token and forge metrics"
            );
        }
        if self.cleartext_token() {
            log::warn!(
                "the API server ({api}) is reached over plain http with a bearer token: anyone on the path can read \
                 the token and forge metrics. Use https, or kubectl proxy on this host"
            );
        }
        log::info!("API server {api}");
    }
}

impl EndpointError {
    /// Whether no cluster was found at all (no `~/.kube/config` to fall back on), rather than
    /// one found and refused, or a kubeconfig named that is not there: only then does a hint
    /// on where to find one help.
    pub fn no_cluster(&self) -> bool {
        matches!(self, EndpointError::NoCluster { .. })
    }
}

/// Why no endpoint could be resolved.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A file (CA, key, kubeconfig) could not be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file could not be used.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A kubeconfig user's `token` cannot be sent.
    #[error("kubeconfig {path}: user {user:?}: {source}")]
    KubeconfigToken {
        /// The kubeconfig.
        path: PathBuf,
        /// The user entry.
        user: String,
        /// What is wrong with the token.
        source: InvalidToken,
    },
    /// A certificate or key was unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The kubeconfig is not valid YAML of the expected shape.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: PathBuf,
        /// The parse error.
        source: serde_norway::Error,
    },
    /// No API server anywhere: none set, not in a cluster, and no kubeconfig where one is
    /// looked for when none is named (`~/.kube/config`; with no `HOME`, nowhere). Says what
    /// to set as the environment names it (an embedder's `Config` has the same keys).
    #[error(
        "no API server: run in a pod (in-cluster, its service account), point KUBECONFIG or MSP_KUBERNETES__KUBECONFIG at a \
         kubeconfig, or set MSP_KUBERNETES__API_URL ({})",
        match looked {
            Some(path) => format!("there is no {}", path.display()),
            None => "HOME is not set, so there is no ~/.kube/config".into(),
        }
    )]
    NoCluster {
        /// The default kubeconfig's path, when `HOME` gave one.
        looked: Option<PathBuf>,
    },
    /// The kubeconfig lacks something.
    #[error("kubeconfig {path}: {message}")]
    Incomplete {
        /// Its path.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// A URL is malformed.
    #[error("invalid API server URL {url:?}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A `user:password@` in the API server URL.
    #[error("{url}: a user and password in the API server URL are not supported (the API server has had no basic authentication since Kubernetes 1.19): remove them, and authenticate with a token (kubernetes.token_file) or a kubeconfig")]
    UserInfo {
        /// The URL, without its user and password.
        url: String,
    },
    /// `https` with nothing to verify the server against.
    #[error("{url} uses https but no CA is configured: set kubernetes.ca_file, MSP_KUBERNETES__CA_FILE (or, knowingly, kubernetes.insecure_skip_tls_verify)")]
    NoCa {
        /// The URL.
        url: Url,
    },
}

/// The inputs to resolution, from the validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `kubernetes.api_url`.
    pub api_url: Option<Url>,
    /// `kubernetes.token_file`.
    pub token_file: Option<PathBuf>,
    /// `kubernetes.ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `kubernetes.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `kubernetes.context`.
    pub context: Option<String>,
    /// `kubernetes.insecure_skip_tls_verify`.
    pub insecure_skip_tls_verify: bool,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, EndpointError> {
    std::fs::read(path).map_err(|source| EndpointError::Read { what, path: path.to_owned(), source })
}

fn existing(path: &str) -> Option<PathBuf> {
    Path::new(path).exists().then(|| PathBuf::from(path))
}

/// Resolves, in order, as controller-runtime's `GetConfig` and kube-rs do: `api_url` if set;
/// a kubeconfig named (`kubeconfig`, else `$KUBECONFIG`); in cluster if
/// `KUBERNETES_SERVICE_HOST` is set, unless a `context` asks for a kubeconfig; else
/// `~/.kube/config`. A kubeconfig named in a pod is meant (another cluster's, mounted):
/// it is read, not the cluster the pod runs in.
pub fn resolve(s: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<Endpoint, EndpointError> {
    if s.api_url.is_some() {
        let unread: Vec<&str> = [
            s.kubeconfig.is_some().then_some("kubernetes.kubeconfig (MSP_KUBERNETES__KUBECONFIG)"),
            s.context.is_some().then_some("kubernetes.context (MSP_KUBERNETES__CONTEXT)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !unread.is_empty() {
            log::warn!("{} set, but not read: kubernetes.api_url is set, and comes first", unread.join(" and "));
        }
    }
    if let Some(url) = &s.api_url {
        no_user_info(url)?;
        // Over plain http (`kubectl proxy`, which authenticates itself), the pod's own token
        // only if asked for.
        let token = s.token_file.clone().or_else(|| if url.scheme() == "https" { existing(SA_TOKEN) } else { None });
        if token.is_none() && url.scheme() == "http" && existing(SA_TOKEN).is_some() {
            log::warn!(
                "the service account's token is not sent over plain http ({}): set kubernetes.token_file \
                 (MSP_KUBERNETES__TOKEN_FILE) to {SA_TOKEN} to send it anyway",
                super::redacted(url)
            );
        }
        let ca = s.ca_file.clone().or_else(|| existing(SA_CA));
        return direct(url.clone(), token, ca, s.insecure_skip_tls_verify);
    }
    let named = s
        .kubeconfig
        .clone()
        .or_else(|| env("KUBECONFIG").and_then(|k| k.split(':').find(|p| !p.is_empty()).map(PathBuf::from)));
    if let Some(path) = named {
        return kubeconfig("kubeconfig", &path, s);
    }
    if let Some(host) = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty() && s.context.is_none()) {
        let port = env("KUBERNETES_SERVICE_PORT").filter(|p| !p.is_empty()).unwrap_or_else(|| "443".into());
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
        let raw = format!("https://{host}:{port}");
        let url = Url::parse(&raw).map_err(|e| EndpointError::Url { url: raw, message: e.to_string() })?;
        let token = s.token_file.clone().unwrap_or_else(|| SA_TOKEN.into());
        let ca = s.ca_file.clone().unwrap_or_else(|| SA_CA.into());
        return direct(url, Some(token), Some(ca), s.insecure_skip_tls_verify);
    }
    let path = env("HOME").map(|h| Path::new(&h).join(".kube/config"));
    match path {
        // One that cannot be told apart from absent (a directory not ours) is read, and says why.
        Some(path) if path.try_exists().unwrap_or(true) => kubeconfig("the default kubeconfig", &path, s),
        looked => Err(EndpointError::NoCluster { looked }),
    }
}

/// Refuses a URL with a `user:password@`: we would never send it, and it must not look as
/// if we did.
fn no_user_info(url: &Url) -> Result<(), EndpointError> {
    if url.username().is_empty() && url.password().is_none() {
        Ok(())
    } else {
        Err(EndpointError::UserInfo { url: super::redacted(url) })
    }
}

fn direct(url: Url, token: Option<PathBuf>, ca: Option<PathBuf>, insecure: bool) -> Result<Endpoint, EndpointError> {
    let auth = match token {
        Some(path) => Auth::File(TokenFile::open(path)?),
        None => Auth::None,
    };
    let tls = match url.scheme() {
        "http" => None,
        "https" => {
            let verify_pem;
            let what;
            let verify = if insecure {
                Verify::Insecure
            } else {
                let ca = ca.ok_or_else(|| EndpointError::NoCa { url: url.clone() })?;
                verify_pem = read("CA file", &ca)?;
                what = ca.display().to_string();
                Verify::Ca { pem: &verify_pem, what: &what }
            };
            Some(tls::client_config(verify, None)?)
        }
        other => {
            return Err(EndpointError::Url {
                url: url.to_string(),
                message: format!("scheme {other} is not http or https"),
            })
        }
    };
    Ok(Endpoint { base: url, tls, auth, insecure, server_name: None, impersonation: Impersonation::default() })
}

// ---- kubeconfig ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user", alias = "extension")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry {
    server: Option<String>,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
    #[serde(default)]
    disable_compression: bool,
    #[serde(default)]
    extensions: Vec<Named<serde_norway::Value>>,
}

#[derive(Deserialize, Default)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct UserEntry {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<ExecEntry>,
    auth_provider: Option<serde_norway::Value>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
    as_uid: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    as_groups: Vec<String>,
    #[serde(flatten)]
    _rest: BTreeMap<String, serde_norway::Value>,
}

/// A list that may be written `null`, as an empty one (as Go reads it).
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `users[].user.exec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecEntry {
    api_version: Option<String>,
    command: Option<PathBuf>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<ExecEnv>,
    install_hint: Option<String>,
    #[serde(default)]
    provide_cluster_info: bool,
    interactive_mode: Option<String>,
}

#[derive(Deserialize)]
struct ExecEnv {
    name: String,
    #[serde(default)]
    value: String,
}

/// Reads the kubeconfig at `path`; `what` says how it was found, in an error.
fn kubeconfig(what: &'static str, path: &Path, s: &Settings) -> Result<Endpoint, EndpointError> {
    let text = read(what, path)?;
    let config: Kubeconfig = serde_norway::from_slice(&text)
        .map_err(|source| EndpointError::Kubeconfig { path: path.to_owned(), source })?;
    let incomplete = |message: String| EndpointError::Incomplete { path: path.to_owned(), message };
    let ctx_name = s
        .context
        .clone()
        .or(config.current_context.clone())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| incomplete("no current-context and no kubernetes.context".into()))?;
    let find = |list_name: &str, name: &str| incomplete(format!("{list_name} {name:?} not found"));
    let ctx = config
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| find("context", &ctx_name))?;
    let cluster_name = ctx.cluster.clone().unwrap_or_default();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.value.as_ref())
        .ok_or_else(|| find("cluster", &cluster_name))?;
    let default_user = UserEntry::default();
    let user = match &ctx.user {
        Some(u) => {
            config.users.iter().find(|x| &x.name == u).and_then(|x| x.value.as_ref()).ok_or_else(|| find("user", u))?
        }
        None => &default_user,
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let rel = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base_dir.join(p) };
    let b64 = |what: &str, data: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| incomplete(format!("{what}: invalid base64: {e}")))
    };

    let server = cluster.server.clone().ok_or_else(|| incomplete(format!("cluster {cluster_name:?} has no server")))?;
    let base = Url::parse(&server).map_err(|e| EndpointError::Url { url: server.clone(), message: e.to_string() })?;
    no_user_info(&base)?;
    let insecure = cluster.insecure_skip_tls_verify || s.insecure_skip_tls_verify;
    let user_name = ctx.user.clone().unwrap_or_default();
    unsupported(cluster, &cluster_name, user, &user_name).map_err(incomplete)?;

    let auth = if let Some(file) = &s.token_file {
        Auth::File(TokenFile::open(file)?)
    } else if let Some(token) = &user.token {
        Auth::Token(Secret::bearer(token.clone()).map_err(|source| EndpointError::KubeconfigToken {
            path: path.to_owned(),
            user: user_name.clone(),
            source,
        })?)
    } else if let Some(file) = &user.token_file {
        Auth::File(TokenFile::open(rel(file))?)
    } else if let Some(exec) = &user.exec {
        let cluster_info = || -> Result<serde_json::Value, EndpointError> {
            let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
                (Some(data), _) => Some(data.trim().to_owned()),
                (None, Some(f)) => {
                    Some(base64::engine::general_purpose::STANDARD.encode(read("certificate-authority", &rel(f))?))
                }
                _ => None,
            };
            let mut info = serde_json::json!({ "server": server });
            let fields = [
                ("tls-server-name", cluster.tls_server_name.clone().map(serde_json::Value::from)),
                ("insecure-skip-tls-verify", cluster.insecure_skip_tls_verify.then_some(true.into())),
                ("certificate-authority-data", ca.map(serde_json::Value::from)),
                ("proxy-url", cluster.proxy_url.clone().map(serde_json::Value::from)),
                ("disable-compression", cluster.disable_compression.then_some(true.into())),
            ];
            for (key, value) in fields {
                if let Some(value) = value {
                    info[key] = value;
                }
            }
            let extension = cluster.extensions.iter().find(|e| e.name == "client.authentication.k8s.io/exec");
            if let Some(config) = extension.and_then(|e| e.value.as_ref()) {
                info["config"] = serde_json::to_value(config)
                    .map_err(|e| incomplete(format!("cluster {cluster_name:?}: its exec extension: {e}")))?;
            }
            Ok(info)
        };
        let config = exec_config(exec, &user_name, cluster_info).map_err(|e| match e {
            ExecConfigError::Incomplete(message) => incomplete(message),
            ExecConfigError::Endpoint(e) => e,
        })?;
        Auth::Exec(ExecPlugin::new(config.relative_to(base_dir)))
    } else if user.auth_provider.is_some() {
        return Err(incomplete(format!(
            "user {user_name:?} uses an auth-provider, which is not supported (client-go dropped them in Kubernetes 1.26): \
             use an exec plugin (users[].user.exec) such as kubelogin or gke-gcloud-auth-plugin, or a token"
        )));
    } else {
        Auth::None
    };

    let tls = if base.scheme() == "https" {
        let ca_pem = match (&s.ca_file, &cluster.certificate_authority_data, &cluster.certificate_authority) {
            (Some(f), _, _) => Some(read("CA file", f)?),
            (None, Some(data), _) => Some(b64("certificate-authority-data", data)?),
            (None, None, Some(f)) => Some(read("certificate-authority", &rel(f))?),
            _ => None,
        };
        let verify = match (&ca_pem, insecure) {
            (_, true) => Verify::Insecure,
            (Some(pem), false) => Verify::Ca { pem, what: "the kubeconfig's certificate authority" },
            (None, false) => return Err(EndpointError::NoCa { url: base }),
        };
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(d), _) => Some(b64("client-certificate-data", d)?),
            (None, Some(f)) => Some(read("client-certificate", &rel(f))?),
            _ => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(d), _) => Some(b64("client-key-data", d)?),
            (None, Some(f)) => Some(read("client-key", &rel(f))?),
            _ => None,
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => {
                Some((tls::certificates(&c, "client certificate")?, tls::private_key(&k, "client key")?))
            }
            (None, None) => None,
            _ => return Err(incomplete("client certificate and key must be given together".into())),
        };
        Some(tls::client_config(verify, identity)?)
    } else {
        None
    };
    let server_name = match cluster.tls_server_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => Some(
            ServerName::try_from(name.to_owned())
                .map_err(|e| incomplete(format!("cluster {cluster_name:?}: tls-server-name {name:?}: {e}")))?,
        ),
        None => None,
    };
    let impersonation = Impersonation::new(user.impersonate.clone(), user.as_uid.clone(), user.as_groups.clone())
        .map_err(|e| incomplete(format!("user {user_name:?}: {e}")))?;
    Ok(Endpoint { base, tls, auth, insecure, server_name, impersonation })
}

/// Refuses what client-go would do and we would not, rather than read the API otherwise
/// than the kubeconfig says: without the extra fields of an impersonation (with other rights
/// than meant), directly where it names a proxy, or without the basic authentication it
/// gives.
fn unsupported(cluster: &ClusterEntry, cluster_name: &str, user: &UserEntry, user_name: &str) -> Result<(), String> {
    // Empty (or null) is as good as absent, as client-go reads them.
    let given = |key: &str| {
        user._rest.get(key).is_some_and(|v| match v {
            serde_norway::Value::Null => false,
            serde_norway::Value::String(s) => !s.is_empty(),
            serde_norway::Value::Mapping(m) => !m.is_empty(),
            serde_norway::Value::Sequence(s) => !s.is_empty(),
            _ => true,
        })
    };
    if given("as-user-extra") {
        return Err(format!(
            "user {user_name:?} impersonates with extra fields (as-user-extra), which are not supported: we \
             would act without them. Use as, as-uid and as-groups only, or credentials of the exporter's own"
        ));
    }
    if let Some(key) = ["username", "password"].into_iter().find(|k| given(k)) {
        return Err(format!(
            "user {user_name:?} has a {key}: basic authentication is not supported (the API server has had \
             none since Kubernetes 1.19). Use a token or an exec plugin"
        ));
    }
    if cluster.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(format!(
            "cluster {cluster_name:?} has a proxy-url, which is not supported: we would connect to the \
             server directly. Reach it without the proxy, or run kubectl proxy and set kubernetes.api_url to it"
        ));
    }
    Ok(())
}

/// Why an `exec` entry cannot be used.
enum ExecConfigError {
    Incomplete(String),
    Endpoint(EndpointError),
}

/// Checks a kubeconfig `exec` entry: a known `apiVersion`, a command, an `interactiveMode`
/// that does not need a terminal; `spec.cluster` from `cluster_info` when asked for.
fn exec_config(
    exec: &ExecEntry,
    user: &str,
    cluster_info: impl FnOnce() -> Result<serde_json::Value, EndpointError>,
) -> Result<ExecConfig, ExecConfigError> {
    let bad = |m: String| ExecConfigError::Incomplete(format!("user {user:?}: exec: {m}"));
    let api_version = exec.api_version.clone().unwrap_or_default();
    if !API_VERSIONS.contains(&api_version.as_str()) {
        return Err(bad(format!("apiVersion {api_version:?} is not one of {API_VERSIONS:?}")));
    }
    let command = exec.command.clone().filter(|c| !c.as_os_str().is_empty()).ok_or_else(|| bad("no command".into()))?;
    // We never have a terminal: `IfAvailable` (the default) and `Never` are alike here, and
    // `Always` cannot work.
    match exec.interactive_mode.as_deref() {
        None | Some("" | "IfAvailable" | "Never") => {}
        Some("Always") => {
            return Err(bad(
                "interactiveMode is Always, but metrics-server-prom never has a terminal to give the plugin: \
                 use a plugin mode that needs no prompt (IfAvailable or Never)"
                    .into(),
            ))
        }
        Some(other) => return Err(bad(format!("interactiveMode {other:?} is not Never, IfAvailable or Always"))),
    }
    let cluster =
        if exec.provide_cluster_info { Some(cluster_info().map_err(ExecConfigError::Endpoint)?) } else { None };
    Ok(ExecConfig {
        api_version,
        command,
        args: exec.args.clone(),
        env: exec.env.iter().map(|e| (e.name.clone(), e.value.clone())).collect(),
        cluster,
        install_hint: exec.install_hint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn in_cluster_brackets_ipv6_hosts() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let (ca, _) = test_ca();
        std::fs::write(dir.join("ca.crt"), ca).expect("ca");
        std::fs::write(dir.join("token"), "t").expect("token");
        let s =
            Settings { token_file: Some(dir.join("token")), ca_file: Some(dir.join("ca.crt")), ..Default::default() };
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("6443".to_owned()),
            _ => None,
        };
        let ep = resolve(&s, &env).expect("in cluster");
        assert_eq!(ep.base.as_str(), "https://[fd00::1]:6443/");
        assert!(ep.tls.is_some() && !ep.insecure);
        assert_eq!(ep.auth.bearer().expect("token").expose(), "t");
    }

    #[test]
    fn kubeconfig_with_data_fields_and_context() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let (ca, _) = test_ca();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        std::fs::write(dir.join("tok"), "from-file").expect("tok");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {}\n- name: c2\n  cluster:\n    server: http://127.0.0.1:8001\ncontexts:\n- name: a\n  context: {{cluster: c1, user: u1}}\n- name: b\n  context: {{cluster: c2, user: u2}}\nusers:\n- name: u1\n  user:\n    token: inline\n- name: u2\n  user:\n    tokenFile: tok\n",
            b64(ca.as_bytes())
        );
        let path = dir.join("config");
        std::fs::write(&path, yaml).expect("write");
        let s = Settings { kubeconfig: Some(path.clone()), ..Default::default() };
        let ep = resolve(&s, &no_env).expect("current context");
        assert_eq!(ep.base.as_str(), "https://127.0.0.1:6443/");
        assert_eq!(ep.auth.bearer().expect("token").expose(), "inline");
        let s = Settings { kubeconfig: Some(path.clone()), context: Some("b".into()), ..Default::default() };
        let ep = resolve(&s, &no_env).expect("context b");
        assert!(ep.tls.is_none());
        assert_eq!(ep.auth.bearer().expect("token").expose(), "from-file", "tokenFile relative to the kubeconfig");
        let s = Settings { kubeconfig: Some(path.clone()), context: Some("zzz".into()), ..Default::default() };
        let err = resolve(&s, &no_env).expect_err("unknown context").to_string();
        assert!(err.contains("context \"zzz\" not found"), "{err}");

        // In a pod, a kubeconfig named (another cluster's, mounted) is read, not the pod's
        // own cluster; by `$KUBECONFIG` too. A context asks for a kubeconfig: without one
        // named, `~/.kube/config`, not the pod's cluster.
        let in_pod = |kubeconfig: Option<&Path>| {
            let kubeconfig = kubeconfig.map(|p| p.to_string_lossy().into_owned());
            move |k: &str| match k {
                "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
                "KUBECONFIG" => kubeconfig.clone(),
                "HOME" => Some("/nonexistent".to_owned()),
                _ => None,
            }
        };
        let s = Settings { kubeconfig: Some(path.clone()), ..Default::default() };
        assert_eq!(resolve(&s, &in_pod(None)).expect("named").base.as_str(), "https://127.0.0.1:6443/");
        let ep = resolve(&Settings::default(), &in_pod(Some(&path))).expect("$KUBECONFIG");
        assert_eq!(ep.base.as_str(), "https://127.0.0.1:6443/");
        let s = Settings { context: Some("b".into()), ..Default::default() };
        let err = resolve(&s, &in_pod(None)).expect_err("no kubeconfig for the context").to_string();
        assert!(err.contains("/nonexistent/.kube/config"), "{err}");
    }

    #[test]
    fn no_cluster_is_only_nothing_found_where_one_is_looked_for() {
        let home = |home: Option<&Path>| {
            let home = home.map(|p| p.to_string_lossy().into_owned());
            move |k: &str| if k == "HOME" { home.clone() } else { None }
        };
        let err = resolve(&Settings::default(), &home(None)).expect_err("no HOME");
        assert!(matches!(&err, EndpointError::NoCluster { looked: None }), "{err:?}");
        let err = resolve(&Settings::default(), &home(Some(Path::new("/nonexistent")))).expect_err("no kubeconfig");
        assert!(err.no_cluster() && err.to_string().ends_with("(there is no /nonexistent/.kube/config)"), "{err}");
        // One there but unreadable, or named and missing, is no missing cluster.
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        std::fs::create_dir_all(dir.join(".kube/config")).expect("a directory where the file goes");
        let err = resolve(&Settings::default(), &home(Some(dir))).expect_err("a directory");
        assert!(!err.no_cluster() && err.to_string().starts_with("reading the default kubeconfig"), "{err}");
        let s = Settings { kubeconfig: Some(dir.join("missing")), ..Default::default() };
        assert!(!resolve(&s, &no_env).expect_err("named, missing").no_cluster());
    }

    #[test]
    fn a_kubeconfig_token_that_cannot_be_sent_is_refused() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let yaml = "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:8001\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n    token: \"sekrit\\u00a0\"\n";
        let path = dir.join("config");
        std::fs::write(&path, yaml).expect("write");
        let s = Settings { kubeconfig: Some(path), ..Default::default() };
        let err = resolve(&s, &no_env).expect_err("a no-break space");
        assert!(matches!(&err, EndpointError::KubeconfigToken { user, .. } if user == "u"), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("U+00A0 at byte 6") && !text.contains("sekrit"), "{text}");
    }

    #[test]
    fn a_token_over_plain_http_is_only_the_one_asked_for_and_said_to_be_cleartext_off_loopback() {
        let scratch = tempfile::tempdir().expect("dir");
        let token = scratch.path().join("token");
        std::fs::write(&token, "t\n").expect("token");
        let endpoint = |url: &str, token_file: Option<&PathBuf>| {
            let s = Settings {
                api_url: Some(Url::parse(url).expect("url")),
                token_file: token_file.cloned(),
                ..Default::default()
            };
            resolve(&s, &no_env).expect("an endpoint")
        };
        // Not the service account's, even where its file exists: kubectl proxy needs none.
        let proxy = endpoint("http://127.0.0.1:8001", None);
        assert!(matches!(proxy.auth, Auth::None) && !proxy.cleartext_token());
        for url in ["http://127.0.0.1:8001", "http://[::1]:8001", "http://LOCALHOST:8001"] {
            assert!(!endpoint(url, Some(&token)).cleartext_token(), "{url}: loopback");
        }
        assert!(endpoint("http://192.0.2.2:8080", Some(&token)).cleartext_token());
        assert!(!endpoint("http://192.0.2.2:8080", None).cleartext_token(), "no token to read");
        let s = Settings {
            api_url: Some(Url::parse("https://192.0.2.2:6443").expect("url")),
            token_file: Some(token.clone()),
            insecure_skip_tls_verify: true,
            ..Default::default()
        };
        assert!(!resolve(&s, &no_env).expect("https").cleartext_token(), "encrypted (its own warning)");
    }

    #[test]
    fn https_without_ca_is_refused() {
        let s = Settings { api_url: Some(Url::parse("https://127.0.0.1:1").expect("url")), ..Default::default() };
        if Path::new(SA_CA).exists() {
            return;
        }
        let err = resolve(&s, &no_env).expect_err("no CA");
        assert!(matches!(err, EndpointError::NoCa { .. }));
    }

    #[test]
    fn user_info_in_the_url_is_refused() {
        let s = Settings {
            api_url: Some(Url::parse("https://admin:hunter2@127.0.0.1:6443").expect("url")),
            insecure_skip_tls_verify: true,
            ..Default::default()
        };
        let err = resolve(&s, &no_env).expect_err("user info").to_string();
        assert!(err.contains("not supported") && err.contains("https://127.0.0.1:6443/"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("admin"), "{err}");
    }

    #[test]
    fn kubeconfig_exec_entries_are_checked() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let resolve_user = |user: &str| {
            let yaml = format!(
                "current-context: a\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:8001\n    extensions:\n    - name: client.authentication.k8s.io/exec\n      extension: {{audience: x}}\ncontexts:\n- name: a\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n{user}"
            );
            let path = dir.join("config");
            std::fs::write(&path, yaml).expect("write");
            resolve(&Settings { kubeconfig: Some(path), ..Default::default() }, &no_env)
        };
        let exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: bin/plugin\n      args: [a]\n      env: [{name: K, value: V}]\n      provideClusterInfo: true\n";
        let ep = resolve_user(&format!("{exec}      interactiveMode: IfAvailable\n")).expect("exec");
        let Auth::Exec(plugin) = &ep.auth else { panic!("{:?}", ep.auth) };
        let shown = format!("{plugin:?}");
        assert!(shown.contains(&format!("{:?}", dir.join("bin/plugin"))), "relative to the kubeconfig: {shown}");
        assert!(!shown.contains("\"V\""), "env values are not shown: {shown}");
        for (mode, want) in [("Always", "never has a terminal"), ("Sometimes", "is not Never, IfAvailable or Always")] {
            let err = resolve_user(&format!("{exec}      interactiveMode: {mode}\n")).expect_err(mode).to_string();
            assert!(err.contains(want), "{err}");
        }
        let err =
            resolve_user("    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: x\n")
                .expect_err("alpha")
                .to_string();
        assert!(err.contains("v1alpha1"), "{err}");
        let err = resolve_user("    auth-provider:\n      name: oidc\n      config: {id-token: x}\n")
            .expect_err("auth-provider")
            .to_string();
        assert!(err.contains("auth-provider, which is not supported"), "{err}");
    }

    #[test]
    fn kubeconfig_impersonation_is_read_and_what_we_cannot_honour_refused_not_ignored() {
        let scratch = tempfile::tempdir().expect("dir");
        let dir = scratch.path();
        let resolve_with = |cluster: &str, user: &str| {
            let yaml = format!(
                "current-context: a\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:8001\n{cluster}contexts:\n- name: a\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user:\n    token: t\n{user}"
            );
            let path = dir.join("config");
            std::fs::write(&path, yaml).expect("write");
            resolve(&Settings { kubeconfig: Some(path), ..Default::default() }, &no_env)
        };
        assert!(resolve_with("", "").is_ok(), "the same without them");
        for empty in [
            "    username: \"\"\n    password: \"\"\n",
            "    username: null\n",
            "    as-user-extra: {}\n",
            "    as-user-extra: null\n",
            "    as: a\n    as-groups: null\n",
        ] {
            assert!(resolve_with("", empty).is_ok(), "empty is absent: {empty}");
        }
        let who = resolve_with("", "    as: limited-user\n    as-groups: [restricted]\n    as-uid: \"1\"\n")
            .expect("impersonation")
            .impersonation;
        assert_eq!(format!("{who:?}"), r#"Impersonation { user: Some("limited-user"), groups: ["restricted"] }"#);
        for (user, want) in [
            ("    as: limited-user\n    as-user-extra: {scopes: [view]}\n", "extra fields (as-user-extra)"),
            ("    as-groups: [restricted]\n", "as-groups without `as`"),
            ("    username: admin\n    password: hunter2\n", "basic authentication is not supported"),
        ] {
            let err = resolve_with("", user).expect_err(user).to_string();
            assert!(err.contains(want) && err.contains("\"u\""), "{user}: {err}");
            assert!(!err.contains("hunter2") && !err.contains("limited-user"), "{err}");
        }
        let err = resolve_with("    proxy-url: http://127.0.0.1:3128\n", "").expect_err("proxy").to_string();
        assert!(err.contains("cluster \"c\" has a proxy-url, which is not supported"), "{err}");
    }

    fn test_ca() -> (String, String) {
        let ca = msp_sim::tls::TestPki::generate().expect("pki");
        (ca.ca_pem.clone(), ca.server_key_pem.clone())
    }
}
