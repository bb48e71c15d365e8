//! # msp-sim
//!
//! A simulated Kubernetes API server for metrics-server-prom's demo, tests and benchmarks:
//! `metrics.k8s.io` (v1 and v1beta1) pods (filtered by `labelSelector`) and nodes, the pod
//! and node lists, and ReplicaSets and Jobs as metadata, over real TLS with a CA generated
//! at start, behind a bearer token.
//! Tests change its cluster, rotate its token and inject faults while it runs.

pub mod cluster;
mod files;
pub mod go_json;
pub mod server;
pub mod tls;

pub use cluster::{SimCluster, SimContainer, SimController, SimNode, SimPod};
pub use server::{Fault, Route, Sim, SimError, SimState};
pub use tls::TestPki;
