//! The Kubernetes side: where the API server is, TLS, tokens, and the client.

mod client;
mod endpoint;
mod exec;
mod impersonation;
mod tls;
mod token;
mod transport;

pub use client::{BodySlot, KubeClient, KubeError, Limits, MAX_LIST_OBJECTS};
pub use endpoint::{resolve, EndpointError, Settings};
pub use exec::{kill_runs_under_way, ExecError};
pub use tls::{certificates, client_config, private_key, TlsError, Verify};
pub use token::{InvalidToken, TokenError};
pub use transport::{Transport, Unreached};

/// `url` without any `user:password@`, for showing and logging.
pub fn redacted(url: &http_types::Url) -> String {
    let mut url = url.clone();
    // Only URLs that cannot have a user (`data:`) refuse; ours always can.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}
