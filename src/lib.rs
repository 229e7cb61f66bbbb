//! dbconn-operator: declarative, checked database connections for Kubernetes.

pub mod api;
pub mod binding;
pub mod conditions;
pub mod controller;
pub mod credentials;
pub mod duration;
pub mod engine;
pub mod http;
pub mod latency;
pub mod leader;
pub mod metrics;
pub mod schedule;
pub mod schema;
pub mod schema_apply;
pub mod settings;
pub mod state;
pub mod status;
pub mod status_write;
pub mod telemetry;
pub mod validate;

#[cfg(test)]
mod fixtures;
