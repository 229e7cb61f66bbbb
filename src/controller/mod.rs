//! The reconcile loop. Each reconcile runs fixed steps on the object as it is now, each in its
//! own file: resolve the Secrets it references (`resolve`), check the spec (`check::connection`),
//! connect and probe (`probe`), apply the schema (`schema`), publish the binding (`binding`),
//! and report status and Events (`report`). `watches` feeds it: which objects to look at and when,
//! and what to forget once an object is gone.

mod binding;
mod fresh;
mod probe;
mod report;
mod resolve;
mod schema;
mod settled;
mod watches;

use std::{sync::Arc, time::Instant};

use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Client, Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        controller::Action,
        events::{Recorder, Reporter},
        reflector::{ObjectRef, Store},
    },
};
use tracing::{Instrument, debug, info_span};

use probe::Heard;
pub use watches::{Partition, Scope, run};

use crate::{
    FIELD_MANAGER,
    api::{CredentialsStatus, DatabaseConnection},
    check,
    credentials::Credentials,
    http::Readiness,
    latency::LatencyTracker,
    metrics::{ConnectionLabels, Metrics},
    schedule,
    settings::{ConnectionSettings, SpecError, TlsMode},
    shards::Sharding,
    state::{ConnectionState, Key, Registry},
    status::{Facts, Outcome},
};

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// The DatabaseConnections as the watch sees them now.
    pub connections: Store<DatabaseConnection>,
    /// Every Secret's metadata (no data, annotations or managedFields): enough to tell whether
    /// a referenced Secret changed since it was read, and who owns a binding Secret's name.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    /// Whether `secrets` is current: false from a Secret watch error until it has listed again.
    secrets_fresh: fresh::Freshness,
    /// Where probers ask for a reconcile of their connection.
    wake: UnboundedSender<Key>,
    /// The shards this replica holds, when replicas split the connections.
    sharding: Option<Sharding>,
}

impl Context {
    fn new(
        client: Client,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        connections: Store<DatabaseConnection>,
        secrets: Store<PartialObjectMeta<Secret>>,
        sharding: Option<Sharding>,
    ) -> (Self, UnboundedReceiver<Key>) {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (wake, woken) = mpsc::unbounded();
        let ctx = Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            registry: Registry::default(),
            metrics,
            readiness,
            connections,
            secrets,
            secrets_fresh: fresh::Freshness::default(),
            wake,
            sharding,
        };
        (ctx, woken)
    }

    /// Whether this replica reconciles the object with `uid` (always, without sharding).
    fn owns(&self, uid: &str) -> bool {
        self.sharding.as_ref().is_none_or(|s| s.owns(uid))
    }

    /// The metadata of a Secret in `namespace`, as the watch saw it last.
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<PartialObjectMeta<Secret>>> {
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }

    /// Drops a connection's memory: its pool closes and its metric series go.
    fn forget(&self, state: ConnectionState) {
        if let Some(labels) = &state.labels {
            self.metrics.forget(labels);
        }
        drop(state);
        self.metrics.set_open_pools(self.registry.open_pools());
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

pub async fn reconcile(obj: Arc<DatabaseConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*obj);
    let uid = obj.uid().unwrap_or_default();
    let span = info_span!("reconcile", namespace = %obj.namespace().unwrap_or_default(), name = %obj.name_any());
    if !ctx.owns(&uid) {
        // Another replica's: nothing of it is kept here, and nothing written.
        if let Some(state) = ctx.registry.take(&key) {
            ctx.forget(state);
        }
        return Ok(Action::await_change());
    }
    let _timer = ctx.metrics.reconcile_started();
    let mut state = match ctx.registry.take(&key) {
        Some(state) if state.uid == uid => state,
        other => {
            // Another object had this name before (deleted and recreated): nothing of it
            // carries over, not its pool, its login or its series.
            if let Some(old) = other {
                ctx.forget(old);
            }
            restored_state(&obj, uid.clone())
        }
    };
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
        state: &mut state,
    }
    .run()
    .instrument(span)
    .await;
    watches::keep(&ctx, key, &uid, state);
    result
}

/// After a restart, the failure count and the latency shown come back from status; everything
/// else is learned again.
fn restored_state(obj: &DatabaseConnection, uid: String) -> ConnectionState {
    let probe = obj.status.as_ref().and_then(|s| s.probe.as_ref());
    ConnectionState {
        uid,
        consecutive_failures: probe.map_or(0, |p| p.consecutive_failures),
        latency: LatencyTracker::restored(probe.and_then(|p| p.latency.as_deref())),
        ..Default::default()
    }
}

struct Reconciliation<'a> {
    obj: &'a DatabaseConnection,
    ctx: &'a Context,
    state: &'a mut ConnectionState,
}

impl Reconciliation<'_> {
    async fn run(mut self) -> Result<Action, Error> {
        let namespace = self.obj.namespace().ok_or(Error::NotNamespaced)?;
        if self.obj.spec.suspend {
            self.close();
            // Suspended on purpose: no series, so no "connection down" alert.
            if let Some(labels) = &self.state.labels {
                self.ctx.metrics.forget(labels);
            }
            self.report(&Outcome::Suspended, Facts::default()).await?;
            return Ok(Action::await_change());
        }
        let settings = match self.settings(&namespace) {
            Ok(settings) => settings,
            Err(error) => {
                self.close();
                self.report(&Outcome::InvalidSpec(&error), Facts::default())
                    .await?;
                return Ok(Action::await_change());
            }
        };
        let insecure_tls = Some(settings.tls == TlsMode::InsecureSkipVerify);

        let cached = self.state.credentials.take();
        let read =
            match resolve::credentials(self.ctx, self.obj, settings.engine, &namespace, cached)
                .await
            {
                Ok(read) => read,
                Err(error) => {
                    self.close();
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
            };
        let credentials = read.credentials.clone();
        self.state.credentials = Some(read);
        let facts = Facts {
            insecure_tls,
            credentials: Some(credentials.login.as_ref().map(|login| CredentialsStatus {
                secret_name: login.secret_name.clone(),
                secret_resource_version: login.secret_resource_version.clone(),
            })),
            ..Default::default()
        };

        let inputs = probe::inputs(self.obj, &settings, &credentials);
        let result = match probe::listen(self.state, inputs) {
            Heard::StillProbing => {
                self.between_probes(&settings, &credentials, facts).await?;
                return Ok(Action::requeue(schedule::resync()));
            }
            Heard::Probed(result) => result,
            Heard::Nothing => {
                if let Some(wait) = self.state.wait_before_probe(inputs, Instant::now()) {
                    self.between_probes(&settings, &credentials, facts).await?;
                    debug!(?wait, "probe not due");
                    return Ok(Action::requeue(wait));
                }
                probe::run(self.state, &settings, &credentials).await
            }
        };
        self.state.probed_inputs = Some(inputs);
        let delay = match result {
            Ok(probed) => {
                self.connected(&settings, &credentials, facts, probed, inputs)
                    .await?
            }
            Err(error) => self.failed(&settings, error, facts).await?,
        };
        Ok(Action::requeue(delay))
    }

    /// The spec's settings, parsed again only when its generation moved (parsing every
    /// reconcile was 7 % of a reconcile's CPU).
    fn settings(&mut self, namespace: &str) -> Result<Arc<ConnectionSettings>, SpecError> {
        let generation = self.obj.metadata.generation;
        if let Some((parsed, settings)) = &self.state.settings
            && generation == Some(*parsed)
        {
            return Ok(settings.clone());
        }
        let settings = Arc::new(check::connection(self.obj, Some(namespace))?);
        self.state.settings = generation.map(|generation| (generation, settings.clone()));
        Ok(settings)
    }

    /// A reconcile with no probe due (a watch event, or a requeue): re-send a failure whose
    /// status write failed, and keep the binding Secret as it should be (repaired at once if
    /// someone deleted or edited it).
    async fn between_probes(
        &mut self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
        facts: Facts,
    ) -> Result<(), Error> {
        if let Some(error) = self.state.unreported_failure.clone() {
            // For a refused login, probing again now would be an attempt before its time.
            let outcome = Outcome::Failed {
                error: &error,
                consecutive_failures: self.state.consecutive_failures,
                failure_threshold: settings.health.failure_threshold,
            };
            self.report(&outcome, facts).await?;
            self.state.unreported_failure = None;
            return Ok(());
        }
        if let Some(prober) = &self.state.prober {
            let latency = prober.latency();
            return self.reassert(settings, credentials, facts, latency).await;
        }
        let binding = binding::sync(self.ctx, self.obj, self.state, settings, credentials).await;
        if binding.is_some() {
            let facts = Facts { binding, ..facts };
            self.report(&Outcome::Unchanged, facts).await?;
        }
        Ok(())
    }

    /// Drops the pool and every cached input; keeps only what status already shows.
    fn close(&mut self) {
        *self.state = ConnectionState {
            uid: std::mem::take(&mut self.state.uid),
            consecutive_failures: self.state.consecutive_failures,
            latency: self.state.latency.clone(),
            labels: self.state.labels.clone(),
            ..Default::default()
        };
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.connection_down(labels);
        }
    }

    fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        self.obj.object_ref(&())
    }
}

pub(crate) fn error_policy(
    _obj: Arc<DatabaseConnection>,
    _error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    Action::requeue(schedule::AFTER_API_ERROR + schedule::jitter(schedule::AFTER_API_ERROR))
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector;

    use super::*;
    use crate::fixtures;

    /// A Context whose client has no server behind it: for what a reconcile does before it calls
    /// the apiserver.
    fn offline_context() -> Context {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client, not connected");
        let (connections, _) = reflector::store();
        let (secrets, _) = reflector::store();
        let (ctx, _woken) = Context::new(
            client,
            Arc::default(),
            Arc::default(),
            connections,
            secrets,
            None,
        );
        ctx
    }

    /// Every reconcile is a task of its own, allocated and copied whole at each spawn; the API
    /// and database calls that most reconciles never make are boxed where they are awaited.
    /// Unboxed, this future was 22 KB and the allocation alone a tenth of the operator's CPU.
    #[tokio::test]
    async fn a_reconcile_spawns_a_small_task() {
        let obj = DatabaseConnection::new("db", fixtures::postgres_spec("login"));
        let reconcile = reconcile(Arc::new(obj), Arc::new(offline_context()));
        let size = std::mem::size_of_val(&reconcile);
        assert!(size <= 8 * 1024, "the reconcile future is {size} bytes");
    }

    /// The parsed spec is kept while the generation stays; an edit (a new generation) is
    /// parsed again, and an object without a generation is parsed every time.
    #[tokio::test]
    async fn settings_are_parsed_again_when_the_generation_moves() {
        let ctx = offline_context();
        let mut state = ConnectionState::default();
        let mut obj = DatabaseConnection::new("db", fixtures::postgres_spec("login"));
        let mut settings = |obj: &DatabaseConnection| {
            Reconciliation {
                obj,
                ctx: &ctx,
                state: &mut state,
            }
            .settings("apps")
            .expect("a valid spec")
        };
        let unversioned = settings(&obj);
        assert!(!Arc::ptr_eq(&unversioned, &settings(&obj)));

        obj.metadata.generation = Some(1);
        let first = settings(&obj);
        assert!(Arc::ptr_eq(&first, &settings(&obj)));

        obj.spec.uri = "postgres://db.apps:5433/app".into();
        obj.metadata.generation = Some(2);
        let edited = settings(&obj);
        assert_eq!((edited.host.as_str(), edited.port), ("db.apps", 5433));
        assert!(Arc::ptr_eq(&edited, &settings(&obj)));
    }
}
