//! Prometheus metrics: the families, their registry, and removal of a deleted connection's series.
//! Labels are typed structs, so only namespace, name, engine and a fixed reason can become labels.

use std::{
    collections::HashMap,
    sync::{Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::engine::{Member, Role};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub namespace: String,
    pub name: String,
    pub engine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub namespace: String,
    pub name: String,
    pub engine: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub namespace: String,
    pub name: String,
    pub engine: String,
    /// `open` or `idle`.
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub namespace: String,
    pub name: String,
    pub engine: String,
    /// `host:port` as listed in spec.uri.
    pub member: String,
}

#[derive(Clone)]
struct ProbeBuckets;

impl MetricConstructor<Histogram> for ProbeBuckets {
    fn new_metric(&self) -> Histogram {
        // 0.5 ms .. ~16 s
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

pub struct Metrics {
    registry: Registry,
    connection_up: Family<ConnectionLabels, Gauge>,
    probe_duration: Family<ConnectionLabels, Histogram, ProbeBuckets>,
    probe_failures: Family<FailureLabels, Counter>,
    credential_reloads: Family<ConnectionLabels, Counter>,
    schema_operations: Family<ConnectionLabels, Counter>,
    schema_drift: Family<ConnectionLabels, Gauge>,
    pool_connections: Family<PoolLabels, Gauge>,
    member_up: Family<MemberLabels, Gauge>,
    member_primary: Family<MemberLabels, Gauge>,
    member_lag_seconds: Family<MemberLabels, Gauge<f64, AtomicU64>>,
    member_lag_bytes: Family<MemberLabels, Gauge>,
    /// The members each connection has series for, so that a host taken out of spec.uri, or
    /// a deleted connection, leaves none behind.
    members_seen: Mutex<HashMap<ConnectionLabels, Vec<String>>>,
    reconciles: Counter,
    reconcile_errors: Counter,
    reconcile_duration: Histogram,
    status_writes: Counter,
    open_pools: Gauge,
    shards_held: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dbconn");
        let metrics = Self {
            connection_up: Family::default(),
            probe_duration: Family::new_with_constructor(ProbeBuckets),
            probe_failures: Family::default(),
            credential_reloads: Family::default(),
            schema_operations: Family::default(),
            schema_drift: Family::default(),
            pool_connections: Family::default(),
            member_up: Family::default(),
            member_primary: Family::default(),
            member_lag_seconds: Family::default(),
            member_lag_bytes: Family::default(),
            members_seen: Mutex::default(),
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            status_writes: Counter::default(),
            open_pools: Gauge::default(),
            shards_held: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connection_up",
            "1 when the last probe succeeded, 0 otherwise",
            metrics.connection_up.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Duration of successful probes",
            metrics.probe_duration.clone(),
        );
        registry.register(
            "probe_failures",
            "Failed probes by reason",
            metrics.probe_failures.clone(),
        );
        registry.register(
            "credential_reloads",
            "Times new credentials from the Secret took effect",
            metrics.credential_reloads.clone(),
        );
        registry.register(
            "schema_operations",
            "Constraints and indexes created or dropped",
            metrics.schema_operations.clone(),
        );
        registry.register(
            "schema_drift",
            "Declared schema items that are not in place as declared",
            metrics.schema_drift.clone(),
        );
        registry.register(
            "pool_connections",
            "Pool connections by state (open, idle), where the driver reports them",
            metrics.pool_connections.clone(),
        );
        registry.register(
            "member_up",
            "For a URI listing several hosts: 1 when the host answered the last probe",
            metrics.member_up.clone(),
        );
        registry.register(
            "member_primary",
            "For a URI listing several hosts: 1 for a primary, 0 for a standby",
            metrics.member_primary.clone(),
        );
        registry.register(
            "member_replication_lag_seconds",
            "A standby's replay delay at the last probe",
            metrics.member_lag_seconds.clone(),
        );
        registry.register(
            "member_replication_lag_bytes",
            "WAL bytes a standby had yet to replay at the last probe",
            metrics.member_lag_bytes.clone(),
        );
        registry.register("reconciles", "Reconciles run", metrics.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed on the Kubernetes API",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "status_writes",
            "Status updates sent to the apiserver",
            metrics.status_writes.clone(),
        );
        registry.register(
            "open_pools",
            "Connection pools currently open",
            metrics.open_pools.clone(),
        );
        registry.register(
            "shards_held",
            "Shards of the connections this replica holds (with --shards)",
            metrics.shards_held.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    pub fn probe_succeeded(&self, labels: &ConnectionLabels, latency: Duration) {
        self.connection_up.get_or_create(labels).set(1);
        self.probe_duration
            .get_or_create(labels)
            .observe(latency.as_secs_f64());
    }

    pub fn probe_failed(&self, labels: &ConnectionLabels, reason: &'static str) {
        self.connection_up.get_or_create(labels).set(0);
        self.probe_failures
            .get_or_create(&FailureLabels {
                namespace: labels.namespace.clone(),
                name: labels.name.clone(),
                engine: labels.engine.clone(),
                reason,
            })
            .inc();
    }

    /// Not probing (bad spec, missing Secret, suspended): the connection is not up.
    pub fn connection_down(&self, labels: &ConnectionLabels) {
        self.connection_up.get_or_create(labels).set(0);
    }

    pub fn credentials_reloaded(&self, labels: &ConnectionLabels) {
        self.credential_reloads.get_or_create(labels).inc();
    }

    pub fn pool_usage(&self, labels: &ConnectionLabels, open: usize, idle: usize) {
        for (state, value) in [("open", open), ("idle", idle)] {
            self.pool_connections
                .get_or_create(&pool_labels(labels, state))
                .set(value as i64);
        }
    }

    /// Every listed host as the last probe found it; series of hosts no longer listed go.
    pub fn members(&self, labels: &ConnectionLabels, members: &[Member]) {
        let addresses: Vec<String> = members.iter().map(|m| m.address.clone()).collect();
        // Most connections list one host and have no members: they keep no entry.
        let before = if addresses.is_empty() {
            self.members_seen().remove(labels)
        } else {
            self.members_seen()
                .insert(labels.clone(), addresses.clone())
        }
        .unwrap_or_default();
        for gone in before.iter().filter(|a| !addresses.contains(a)) {
            self.remove_member(labels, gone);
        }
        for member in members {
            let series = member_labels(labels, &member.address);
            self.member_up
                .get_or_create(&series)
                .set(i64::from(member.role.is_some()));
            match member.role {
                Some(role) => {
                    self.member_primary
                        .get_or_create(&series)
                        .set(i64::from(role == Role::Primary));
                }
                None => {
                    self.member_primary.remove(&series);
                }
            }
            match member.lag {
                Some(lag) => {
                    self.member_lag_seconds
                        .get_or_create(&series)
                        .set(lag.as_secs_f64());
                }
                None => {
                    self.member_lag_seconds.remove(&series);
                }
            }
            match member.lag_bytes {
                Some(bytes) => {
                    self.member_lag_bytes
                        .get_or_create(&series)
                        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
                }
                None => {
                    self.member_lag_bytes.remove(&series);
                }
            }
        }
    }

    fn remove_member(&self, labels: &ConnectionLabels, address: &str) {
        let series = member_labels(labels, address);
        self.member_up.remove(&series);
        self.member_primary.remove(&series);
        self.member_lag_seconds.remove(&series);
        self.member_lag_bytes.remove(&series);
    }

    fn members_seen(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionLabels, Vec<String>>> {
        self.members_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn schema_problems(&self, labels: &ConnectionLabels, problems: usize) {
        self.schema_drift.get_or_create(labels).set(problems as i64);
    }

    pub fn schema_changed(&self, labels: &ConnectionLabels, operations: usize) {
        if operations > 0 {
            self.schema_operations
                .get_or_create(labels)
                .inc_by(operations as u64);
        }
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn set_open_pools(&self, count: usize) {
        self.open_pools.set(count as i64);
    }

    pub fn set_shards_held(&self, count: usize) {
        self.shards_held.set(count as i64);
    }

    pub fn reconcile_failed(&self) {
        self.reconcile_errors.inc();
    }

    /// Counts a reconcile and observes its duration when the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            started: Instant::now(),
            histogram: &self.reconcile_duration,
        }
    }

    /// Removes every series of a connection that was deleted (or changed engine).
    pub fn forget(&self, labels: &ConnectionLabels) {
        self.connection_up.remove(labels);
        self.probe_duration.remove(labels);
        self.credential_reloads.remove(labels);
        self.schema_operations.remove(labels);
        self.schema_drift.remove(labels);
        for state in ["open", "idle"] {
            self.pool_connections.remove(&pool_labels(labels, state));
        }
        let members = self.members_seen().remove(labels).unwrap_or_default();
        for address in &members {
            self.remove_member(labels, address);
        }
        // Every reason any engine can fail with, so a deleted connection's series all go.
        for reason in crate::engine::failure_reasons() {
            self.probe_failures.remove(&FailureLabels {
                namespace: labels.namespace.clone(),
                name: labels.name.clone(),
                engine: labels.engine.clone(),
                reason,
            });
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

fn pool_labels(labels: &ConnectionLabels, state: &'static str) -> PoolLabels {
    PoolLabels {
        namespace: labels.namespace.clone(),
        name: labels.name.clone(),
        engine: labels.engine.clone(),
        state,
    }
}

fn member_labels(labels: &ConnectionLabels, member: &str) -> MemberLabels {
    MemberLabels {
        namespace: labels.namespace.clone(),
        name: labels.name.clone(),
        engine: labels.engine.clone(),
        member: member.to_owned(),
    }
}

pub struct ReconcileTimer<'a> {
    started: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    fn labels(name: &str) -> ConnectionLabels {
        ConnectionLabels {
            namespace: "apps".into(),
            name: name.into(),
            engine: "neo4j".into(),
        }
    }

    #[test]
    fn member_series_go_with_their_host_and_single_hosts_keep_no_entry() {
        let metrics = Metrics::default();
        let member = |address: &str| Member {
            address: address.into(),
            role: Some(Role::Primary),
            problem: None,
            serving: true,
            lag: None,
            lag_bytes: None,
        };
        metrics.members(&labels("pg"), &[member("a:5432"), member("b:5432")]);
        assert!(metrics.encode().contains("member=\"b:5432\""));
        metrics.members(&labels("pg"), &[member("a:5432")]);
        assert!(!metrics.encode().contains("member=\"b:5432\""));
        metrics.members(&labels("pg"), &[]);
        assert!(!metrics.encode().contains("member=\"a:5432\""));
        metrics.members(&labels("single"), &[]);
        assert!(metrics.members_seen().is_empty());
    }

    #[test]
    fn up_gauge_and_failure_counter_follow_probes() {
        let metrics = Metrics::default();
        metrics.probe_succeeded(&labels("a"), Duration::from_millis(3));
        assert!(
            metrics
                .encode()
                .contains(r#"dbconn_connection_up{namespace="apps",name="a",engine="neo4j"} 1"#)
        );
        metrics.probe_failed(&labels("a"), "Unreachable");
        let text = metrics.encode();
        assert!(
            text.contains(r#"dbconn_connection_up{namespace="apps",name="a",engine="neo4j"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"dbconn_probe_failures_total{namespace="apps",name="a",engine="neo4j",reason="Unreachable"} 1"#), "{text}");
    }

    #[test]
    fn forget_removes_every_series_of_one_connection_only() {
        let metrics = Metrics::default();
        metrics.probe_succeeded(&labels("gone"), Duration::from_millis(3));
        metrics.probe_failed(&labels("gone"), "Timeout");
        metrics.credentials_reloaded(&labels("gone"));
        metrics.pool_usage(&labels("gone"), 2, 1);
        metrics.schema_problems(&labels("gone"), 1);
        metrics.probe_succeeded(&labels("kept"), Duration::from_millis(3));
        metrics.forget(&labels("gone"));
        let text = metrics.encode();
        assert!(!text.contains(r#"name="gone""#), "{text}");
        assert!(text.contains(r#"name="kept""#), "{text}");
    }

    #[test]
    fn every_engine_failure_reason_is_listed_for_removal() {
        let errors = [
            EngineError::Unreachable {
                endpoint: String::new(),
                detail: String::new(),
            },
            EngineError::Timeout {
                endpoint: String::new(),
                timeout: Duration::ZERO,
            },
            EngineError::AuthenticationFailed {
                user: String::new(),
                detail: String::new(),
            },
            EngineError::DatabaseNotFound {
                database: String::new(),
            },
            EngineError::Tls(String::new()),
            EngineError::Transient(String::new()),
            EngineError::PermissionDenied {
                user: String::new(),
                detail: String::new(),
                needs: "",
            },
            EngineError::QueryFailed(String::new()),
            EngineError::Configuration(String::new()),
        ];
        let engine_errors = crate::engine::ENGINES
            .iter()
            .flat_map(|e| e.reasons)
            .map(|reason| EngineError::Engine {
                reason,
                detail: String::new(),
            });
        let errors: Vec<EngineError> = errors.into_iter().chain(engine_errors).collect();
        let listed: Vec<&str> = crate::engine::failure_reasons().collect();
        for error in errors {
            assert!(listed.contains(&error.reason()), "{}", error.reason());
        }
    }
}
