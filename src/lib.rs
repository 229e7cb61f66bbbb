//! dbconn-operator: declarative, checked database connections for Kubernetes.

pub mod api;
pub mod binding;
pub mod check;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod deadline;
pub mod duration;
pub mod engine;
pub mod http;
pub mod latency;
pub mod leader;
pub mod members;
pub mod metrics;
pub mod prober;
pub mod schedule;
pub mod schema;
pub mod schema_apply;
pub mod settings;
pub mod shards;
pub mod state;
pub mod status;
pub mod status_write;
pub mod telemetry;
pub mod validate;

/// The operator's name as a field manager, Event reporter and binding `provider`.
pub const FIELD_MANAGER: &str = "dbconn-operator";

#[cfg(test)]
mod fixtures;
