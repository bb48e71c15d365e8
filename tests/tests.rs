//! Integration tests: the real server against the simulated API server over real TLS, with
//! a generated CA and a bearer token. Named after the issue they guard.

mod apiserver;
mod deploy;
mod ecosystem;
mod enrichers;
mod faults;
mod first_hour;
mod hardening;
mod library;
mod scale;
mod shard;
mod spine;
