//! The Kubernetes side: where the API server is, TLS, tokens, and the client.

pub mod client;
pub mod endpoint;
pub mod tls;
pub mod token;
pub mod transport;

pub use client::{KubeClient, KubeError, Limits};
pub use endpoint::{resolve, Endpoint, EndpointError, Settings};
