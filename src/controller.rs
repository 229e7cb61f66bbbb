//! The reconcile loop: read the Secret, validate, probe through the engine, report. It decides;
//! `credentials`, `settings`, `engine` and `status` do the work.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use k8s_openapi::{api::core::v1::Secret, jiff::Timestamp};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Event, EventType, Recorder, Reporter},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    api::{
        BindingStatus, CredentialsStatus, DatabaseConnection, DatabaseConnectionSpec,
        DatabaseConnectionStatus, ServerInfo,
    },
    binding,
    conditions::{self, READY, TLS_VERIFIED},
    credentials::{self, Credentials},
    engine::{self, EngineError},
    http::Readiness,
    latency::LatencyTracker,
    metrics::{ConnectionLabels, Metrics},
    schedule,
    schema_apply::{self, SchemaReport},
    settings::{self, ConnectionSettings, TlsMode},
    state::{ConnectionState, Key, PoolEntry, Registry, pool_fingerprint},
    status::{self, Facts, Outcome},
    status_write::{self, ApiStatus, Written},
};

pub const FIELD_MANAGER: &str = "dbconn-operator";

/// How soon to look again while an index is still populating.
const SCHEMA_RECHECK: Duration = Duration::from_secs(5);

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry: Registry::default(),
            metrics,
            readiness,
        }
    }
}

/// Only Kubernetes API failures end a reconcile with an error; database failures are outcomes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write status: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("object has no namespace")]
    NotNamespaced,
}

/// Which namespace to watch: one, or all.
#[derive(Clone, Debug)]
pub enum Scope {
    All,
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Scope::All => Api::all(client.clone()),
            Scope::Namespace(ns) => Api::namespaced(client.clone(), ns),
        }
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: Scope,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let connections: Api<DatabaseConnection> = scope.api(&ctx.client);
    let secrets: Api<Secret> = scope.api(&ctx.client);
    let controller = Controller::new(connections, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(concurrency))
        .trigger_backoff(schedule::WatchBackoff::default());
    let store = controller.store();
    let synced = (store.clone(), ctx.readiness.clone());
    tokio::spawn(async move {
        // `Store::wait_until_ready` wakes only its latest waiter, which is the controller's own
        // runner, so this side checks on a timer instead of awaiting it.
        loop {
            if let Some(result) = synced.0.wait_until_ready().now_or_never() {
                synced.1.set(result.is_ok());
                info!("watches synced; ready");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mapper_ctx = ctx.clone();
    controller
        .watches(secrets, watcher::Config::default().any_semantic(), move |secret| {
            connections_using(&store, &secret, &mapper_ctx.registry)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok(_) => {}
                    Err(controller::Error::ObjectNotFound(gone)) => {
                        let key = Key::new(&gone.name).within(gone.namespace.as_deref().unwrap_or_default());
                        if let Some(state) = ctx.registry.forget(&key) {
                            if let Some(labels) = &state.labels {
                                ctx.metrics.forget(labels);
                            }
                            drop(state);
                            ctx.metrics.set_open_pools(ctx.registry.open_pools());
                            info!(namespace = ?gone.namespace, name = %gone.name, "connection deleted; pool closed, metrics removed");
                        }
                    }
                    Err(controller::Error::ReconcilerFailed(error, obj)) => {
                        ctx.metrics.reconcile_failed();
                        warn!(namespace = ?obj.namespace, name = %obj.name, %error, "reconcile failed; will retry");
                    }
                    Err(error) => warn!(%error, "controller error"),
                }
            }
        })
        .await;
}

/// Maps a changed Secret to the connections that read it, and marks them so their next
/// reconcile reads the Secret again instead of using the credentials it remembers.
fn connections_using(
    store: &Store<DatabaseConnection>,
    secret: &Secret,
    registry: &Registry,
) -> Vec<Key> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    store
        .state()
        .into_iter()
        .filter(|conn| conn.namespace() == namespace && references(&conn.spec, &name))
        .map(|conn| {
            let key = ObjectRef::from_obj(&*conn);
            registry.mark_secret_changed(key.clone());
            key
        })
        .collect()
}

fn references(spec: &DatabaseConnectionSpec, secret: &str) -> bool {
    spec.credentials.secret_ref.name == secret
        || spec
            .tls
            .as_ref()
            .and_then(|tls| tls.ca_secret_ref.as_ref())
            .is_some_and(|ca| ca.name == secret)
}

fn error_policy(_obj: Arc<DatabaseConnection>, _error: &Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_secs(5) + jitter(Duration::from_secs(5)))
}

pub async fn reconcile(obj: Arc<DatabaseConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*obj);
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let _timer = ctx.metrics.reconcile_started();
    let mut state = ctx
        .registry
        .take(&key)
        .unwrap_or_else(|| restored_state(&obj));
    let labels = ConnectionLabels {
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        engine: obj.spec.engine.as_str().to_owned(),
    };
    if let Some(old) = state
        .labels
        .replace(labels.clone())
        .filter(|old| *old != labels)
    {
        ctx.metrics.forget(&old);
    }
    let result = Reconciliation {
        obj: &obj,
        ctx: &ctx,
        key: &key,
        state: &mut state,
    }
    .run()
    .instrument(span)
    .await;
    ctx.registry.put(key, state);
    ctx.metrics.set_open_pools(ctx.registry.open_pools());
    result
}

/// After a restart, the failure count comes back from status; everything else is re-learned.
fn restored_state(obj: &DatabaseConnection) -> ConnectionState {
    let consecutive_failures = obj
        .status
        .as_ref()
        .and_then(|s| s.probe.as_ref())
        .map_or(0, |p| p.consecutive_failures);
    let shown_latency = obj
        .status
        .as_ref()
        .and_then(|s| s.probe.as_ref())
        .and_then(|p| p.latency.as_deref());
    ConnectionState {
        consecutive_failures,
        latency: LatencyTracker::restored(shown_latency),
        ..Default::default()
    }
}

struct Reconciliation<'a> {
    obj: &'a DatabaseConnection,
    ctx: &'a Context,
    key: &'a Key,
    state: &'a mut ConnectionState,
}

impl Reconciliation<'_> {
    async fn run(mut self) -> Result<Action, Error> {
        let namespace = self.obj.namespace().ok_or(Error::NotNamespaced)?;
        if self.obj.spec.suspend {
            self.forget_connection();
            // Suspended on purpose: no series, so no "connection down" alert.
            if let Some(labels) = &self.state.labels {
                self.ctx.metrics.forget(labels);
            }
            self.report(&Outcome::Suspended, Facts::default()).await?;
            return Ok(Action::await_change());
        }
        let checked = settings::check_secret_namespaces(&self.obj.spec, Some(&namespace))
            .and_then(|()| ConnectionSettings::from_spec(&self.obj.spec));
        let settings = match checked {
            Ok(settings) => settings,
            Err(error) => {
                self.forget_connection();
                self.report(&Outcome::InvalidSpec(&error), Facts::default())
                    .await?;
                return Ok(Action::await_change());
            }
        };
        let insecure_tls = Some(settings.tls == TlsMode::InsecureSkipVerify);

        let secret_changed = self.ctx.registry.take_secret_changed(self.key);
        if secret_changed || self.state.credentials.is_none() {
            let tls_ca = self
                .obj
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.ca_secret_ref.as_ref());
            match credentials::load(
                &self.ctx.client,
                &namespace,
                &self.obj.spec.credentials.secret_ref,
                tls_ca,
            )
            .await
            {
                Ok(credentials) => self.state.credentials = Some(credentials),
                Err(error) => {
                    self.forget_connection();
                    let facts = Facts {
                        insecure_tls,
                        ..Default::default()
                    };
                    self.report(&Outcome::Credentials(&error), facts).await?;
                    let retry = if error.needs_user() {
                        schedule::WAIT_FOR_USER
                    } else {
                        settings.retry.max_delay
                    };
                    return Ok(Action::requeue(retry));
                }
            }
        }
        let credentials = self
            .state
            .credentials
            .clone()
            .expect("credentials were just loaded");

        let facts_base = Facts {
            insecure_tls,
            credentials: Some(CredentialsStatus {
                secret_name: credentials.secret_name.clone(),
                secret_resource_version: credentials.secret_resource_version.clone(),
            }),
            latency: None,
            schema: None,
            binding: None,
        };
        let now = Instant::now();
        let inputs = self.probe_inputs(&settings, &credentials);
        if let Some(wait) = self.state.wait_before_probe(inputs, now) {
            if let Some(error) = self.state.unreported_failure.clone() {
                // The last failure's status write failed: send the report again, not the probe
                // (for a refused login, another attempt would come before its time).
                let outcome = Outcome::Failed {
                    error: &error,
                    consecutive_failures: self.state.consecutive_failures,
                    failure_threshold: settings.health.failure_threshold,
                };
                self.report(&outcome, facts_base).await?;
                self.state.unreported_failure = None;
            }
            debug!(?wait, "probe not due");
            return Ok(Action::requeue(wait));
        }
        self.state.probed_inputs = Some(inputs);

        let result = self.probe(&settings, &credentials).await;
        let delay = match result {
            Ok((latency, cold)) => {
                self.state.unreported_failure = None;
                self.state.consecutive_failures = 0;
                let entry = self
                    .state
                    .pool
                    .as_ref()
                    .expect("a successful probe has a pool");
                if let Some(labels) = &self.state.labels {
                    self.ctx.metrics.probe_succeeded(labels, latency);
                    if let Some(usage) = entry.pool.usage() {
                        self.ctx.metrics.pool_usage(labels, usage.open, usage.idle);
                    }
                }
                let server = entry.server.clone().unwrap_or_default();
                let schema = self.sync_schema(&server).await;
                let check_soon = schema.as_ref().is_some_and(|r| r.check_soon);
                let binding = self.sync_binding(&settings, &credentials).await;
                let facts = Facts {
                    schema: schema.map(|r| (r.status, r.condition)),
                    binding,
                    ..facts_base
                };
                let outcome = Outcome::Connected {
                    server: &server,
                    endpoint: &settings.endpoint,
                    user: &credentials.username,
                };
                // Scheduled after the status write: should it fail, the retry probes again,
                // which is cheap once logged in, and brings status up to date.
                self.report_with_latency(&outcome, facts, latency, cold)
                    .await?;
                let next = schedule::after_success(&settings, rand::random());
                let delay = if check_soon {
                    next.min(SCHEMA_RECHECK)
                } else {
                    next
                };
                self.state.next_probe = Some(Instant::now() + delay);
                delay
            }
            Err(error) => {
                self.state.consecutive_failures = self.state.consecutive_failures.saturating_add(1);
                let failures = self.state.consecutive_failures;
                debug!(%error, failures, "probe failed");
                if let Some(labels) = &self.state.labels {
                    self.ctx.metrics.probe_failed(labels, error.reason());
                }
                let outcome = Outcome::Failed {
                    error: &error,
                    consecutive_failures: failures,
                    failure_threshold: settings.health.failure_threshold,
                };
                let delay =
                    schedule::after_failure(&settings, error.class(), failures, rand::random());
                // Scheduled before the status write: if the write fails (the apiserver is away),
                // the retries in between re-send this report instead of probing again.
                self.state.next_probe = Some(Instant::now() + delay);
                self.state.unreported_failure = Some(error.clone());
                self.report(&outcome, facts_base).await?;
                self.state.unreported_failure = None;
                delay
            }
        };
        Ok(Action::requeue(delay))
    }

    /// Runs a schema pass when the manifest declares a schema (or the operator still owns items
    /// from an earlier one), and announces what it changed.
    async fn sync_schema(&self, server: &ServerInfo) -> Option<SchemaReport> {
        let previous = self.obj.status.as_ref().and_then(|s| s.schema.as_ref());
        let declared = self.obj.spec.schema.as_ref();
        if declared.is_none() && previous.is_none_or(|p| p.managed.is_empty()) {
            return None;
        }
        let spec = declared.cloned().unwrap_or_default();
        let pool = self.state.pool.as_ref()?;
        if let Some(ops) = pool.pool.extensions() {
            let report = schema_apply::reconcile_extensions(ops, &spec.extensions, previous).await;
            self.announce_schema(&report).await;
            return Some(report);
        }
        let Some(ops) = pool.pool.schema() else {
            let condition = conditions::Desired::new(
                conditions::SCHEMA_READY,
                conditions::Status::False,
                "SchemaNotSupported",
                format!(
                    "engine {} has no declarative schema; remove spec.schema",
                    self.obj.spec.engine.as_str()
                ),
            );
            return Some(SchemaReport::unsupported(condition));
        };
        let report = schema_apply::reconcile(ops, &spec, previous, server).await;
        self.announce_schema(&report).await;
        Some(report)
    }

    /// Counts schema changes and announces them (and repairs) as Events.
    async fn announce_schema(&self, report: &SchemaReport) {
        if let Some(labels) = &self.state.labels {
            self.ctx
                .metrics
                .schema_problems(labels, report.status.problems.len());
            self.ctx
                .metrics
                .schema_changed(labels, report.changes.len());
        }
        let reference = self.obj.object_ref(&());
        let mut events = Vec::new();
        if !report.repaired.is_empty() {
            events.push(Event {
                type_: EventType::Warning,
                reason: "SchemaDrift".into(),
                note: Some(format!(
                    "{} went missing on the server and was created again.",
                    report.repaired.join(", ")
                )),
                action: "ApplySchema".into(),
                secondary: None,
            });
        }
        if !report.changes.is_empty() {
            info!(changes = ?report.changes, "schema changed");
            events.push(Event {
                type_: EventType::Normal,
                reason: "SchemaApplied".into(),
                note: Some(report.changes.join("; ")),
                action: "ApplySchema".into(),
                secondary: None,
            });
        }
        for event in events {
            if let Err(error) = self.ctx.recorder.publish(&event, &reference).await {
                warn!(%error, "cannot publish event");
            }
        }
    }

    /// Keeps the binding Secret in step with the verified credentials, or removes it once
    /// `spec.binding` is gone. Returns the status change, if any.
    async fn sync_binding(
        &mut self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
    ) -> Option<Option<BindingStatus>> {
        let previous = self.obj.status.as_ref().and_then(|s| s.binding.clone());
        let namespace = self.obj.namespace().unwrap_or_default();
        let Some(name) = binding::secret_name(self.obj) else {
            let old = previous?;
            self.state.binding_written = None;
            return match binding::delete(&self.ctx.client, &namespace, &old.name).await {
                Ok(()) => Some(None),
                Err(error) => {
                    warn!(%error, secret = %old.name, "cannot delete the binding Secret; will retry");
                    None
                }
            };
        };
        let mut hasher = DefaultHasher::new();
        (
            &name,
            &settings.uri,
            &settings.database,
            credentials.fingerprint(),
        )
            .hash(&mut hasher);
        let key = hasher.finish();
        let unchanged = previous.as_ref().is_some_and(|b| b.name == name);
        if unchanged && self.state.binding_written == Some(key) {
            return None;
        }
        let secret = binding::desired(self.obj, &name, settings, credentials);
        if let Err(error) = binding::write(&self.ctx.client, &secret).await {
            warn!(%error, secret = %name, "cannot write the binding Secret; will retry");
            let event = Event {
                type_: EventType::Warning,
                reason: "BindingFailed".into(),
                note: Some(format!(
                    "Cannot write the binding Secret {name:?}: {error}. Check the operator's RBAC for Secrets."
                )),
                action: "WriteBinding".into(),
                secondary: None,
            };
            let _ = self
                .ctx
                .recorder
                .publish(&event, &self.obj.object_ref(&()))
                .await;
            return None;
        }
        self.state.binding_written = Some(key);
        if let Some(old) = previous.filter(|b| b.name != name) {
            let _ = binding::delete(&self.ctx.client, &namespace, &old.name).await;
        }
        Some(Some(BindingStatus { name }))
    }

    /// A probe is forced when any of these change; otherwise it waits for its time.
    fn probe_inputs(&self, settings: &ConnectionSettings, credentials: &Credentials) -> u64 {
        let mut hasher = DefaultHasher::new();
        self.obj.metadata.uid.hash(&mut hasher);
        self.obj.metadata.generation.hash(&mut hasher);
        pool_fingerprint(settings, credentials).hash(&mut hasher);
        hasher.finish()
    }

    /// Drops the pool and every cached input; keeps only what status already shows.
    fn forget_connection(&mut self) {
        *self.state = ConnectionState {
            consecutive_failures: self.state.consecutive_failures,
            latency: self.state.latency.clone(),
            labels: self.state.labels.clone(),
            ..Default::default()
        };
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.connection_down(labels);
        }
    }

    /// Opens (or reuses) the pool and probes it within the health-check timeout. Returns the
    /// latency, and whether the probe was the pool's first (which includes opening a connection).
    async fn probe(
        &mut self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
    ) -> Result<(Duration, bool), EngineError> {
        let now = Instant::now();
        let built_from = pool_fingerprint(settings, credentials);
        let reusable =
            self.state.pool.as_ref().is_some_and(|entry| {
                entry.built_from == built_from && !entry.expired(settings, now)
            });
        if !reusable {
            // Replacing the entry drops the old pool: after a rotation the old login is not kept
            // in reserve, whatever the new one's fate.
            let pool = engine::for_engine(settings.engine).open(settings, credentials)?;
            self.state.pool = Some(PoolEntry {
                pool,
                built_from,
                created: now,
                last_used: now,
                server: None,
            });
        }
        let entry = self.state.pool.as_mut().expect("pool was just ensured");
        let started = Instant::now();
        let identify = entry.server.is_none();
        let attempt = async {
            if identify {
                entry.pool.identify().await.map(Some)
            } else {
                entry.pool.ping().await.map(|()| None)
            }
        };
        let outcome = tokio::time::timeout(settings.health.timeout, attempt).await;
        let latency = started.elapsed();
        entry.last_used = Instant::now();
        match outcome {
            Ok(Ok(Some(server))) => {
                entry.server = Some(server);
                Ok((latency, true))
            }
            Ok(Ok(None)) => Ok((latency, false)),
            Ok(Err(error)) => Err(error),
            Err(_elapsed) => Err(EngineError::Timeout {
                endpoint: settings.endpoint.clone(),
                timeout: settings.health.timeout,
            }),
        }
    }

    /// Reports a success; the latency is written only when it moved materially or when
    /// status is being written anyway.
    async fn report_with_latency(
        &mut self,
        outcome: &Outcome<'_>,
        facts: Facts,
        latency: Duration,
        cold: bool,
    ) -> Result<(), Error> {
        let previous = self.obj.status.clone().unwrap_or_default();
        let without_latency = status::desired(
            &previous,
            outcome,
            &facts,
            self.obj.metadata.generation,
            Timestamp::now(),
        );
        let typical = if cold {
            self.state.latency.observe_cold(latency)
        } else {
            self.state.latency.observe(latency)
        };
        let shown = previous.probe.as_ref().and_then(|p| p.latency.as_deref());
        self.state.latency.shown(shown);
        if without_latency == previous && !self.state.latency.worth_recording(typical) {
            return Ok(());
        }
        self.report(
            outcome,
            Facts {
                latency: Some(typical),
                ..facts
            },
        )
        .await
    }

    /// Writes status if it changed (see `status_write`), and emits an Event when `Ready` changes.
    async fn report(&self, outcome: &Outcome<'_>, facts: Facts) -> Result<(), Error> {
        let store = ApiStatus {
            api: Api::namespaced(
                self.ctx.client.clone(),
                &self.obj.namespace().unwrap_or_default(),
            ),
            name: self.obj.name_any(),
        };
        let desired = |previous: &DatabaseConnectionStatus| {
            status::desired(
                previous,
                outcome,
                &facts,
                self.obj.metadata.generation,
                Timestamp::now(),
            )
        };
        let written = status_write::write(&store, self.obj, desired)
            .await
            .map_err(Error::StatusWrite)?;
        if let Some(Written { previous, next }) = written {
            self.ctx.metrics.status_written();
            self.announce(&previous, &next).await;
        }
        Ok(())
    }

    /// Events on transitions only: `Ready` changing, a new credentials version in use, and
    /// certificate checks turned off.
    async fn announce(&self, previous: &DatabaseConnectionStatus, next: &DatabaseConnectionStatus) {
        let mut events = Vec::new();
        let before = conditions::find(&previous.conditions, READY);
        if let Some(after) = conditions::find(&next.conditions, READY) {
            let changed =
                before.is_none_or(|b| b.status != after.status || b.reason != after.reason);
            if changed {
                info!(ready = %after.status, reason = %after.reason, message = %after.message, "Ready changed");
                let type_ = if after.status == "True" {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                events.push(Event {
                    type_,
                    reason: after.reason.clone(),
                    note: Some(after.message.clone()),
                    action: "Probe".into(),
                    secondary: None,
                });
            }
        }
        if let (Some(old), Some(new)) = (&previous.credentials, &next.credentials)
            && old != new
            && conditions::is_true(&next.conditions, READY)
        {
            if let Some(labels) = &self.state.labels {
                self.ctx.metrics.credentials_reloaded(labels);
            }
            events.push(Event {
                type_: EventType::Normal,
                reason: "CredentialsReloaded".into(),
                note: Some(format!(
                    "Now using Secret {:?} at resourceVersion {}; the previous pool was closed.",
                    new.secret_name, new.secret_resource_version
                )),
                action: "ReloadCredentials".into(),
                secondary: None,
            });
        }
        // Once, when it starts (or starts again): `kubectl get events` and alerting on Warning
        // Events should show an unauthenticated server, not only the condition.
        if let Some(tls) = conditions::find(&next.conditions, TLS_VERIFIED)
            && tls.status == "False"
            && conditions::find(&previous.conditions, TLS_VERIFIED).is_none()
        {
            events.push(Event {
                type_: EventType::Warning,
                reason: "InsecureTLS".into(),
                note: Some(tls.message.clone()),
                action: "Probe".into(),
                secondary: None,
            });
        }
        let reference = self.obj.object_ref(&());
        for event in events {
            if let Err(error) = self.ctx.recorder.publish(&event, &reference).await {
                warn!(%error, reason = %event.reason, "cannot publish event");
            }
        }
    }
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{CaSecretRef, TlsSpec},
        fixtures,
    };

    #[test]
    fn a_secret_is_referenced_by_login_or_ca() {
        let mut spec = fixtures::neo4j_spec("login");
        assert!(references(&spec, "login"));
        assert!(!references(&spec, "ca"));
        spec.tls = Some(TlsSpec {
            ca_secret_ref: Some(CaSecretRef {
                name: "ca".into(),
                key: "ca.crt".into(),
                namespace: None,
            }),
            insecure_skip_verify: false,
        });
        assert!(references(&spec, "ca"));
    }
}
