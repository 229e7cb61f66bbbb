//! Step 3: connect and probe. The pool is reused only while it was built from exactly the
//! settings and login in force now; a probe is bounded by `healthCheck.timeout`.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use kube::runtime::{
    events::{Event, EventType},
    reflector::ObjectRef,
};
use tracing::debug;

use super::{Error, Reconciliation, binding};
use crate::{
    api::DatabaseConnection,
    credentials::Credentials,
    engine::{EngineError, FailureClass},
    latency::LatencyTracker,
    members::MemberFacts,
    prober::{self, News, Probed, Prober, bounded},
    schedule,
    settings::ConnectionSettings,
    state::{ConnectionState, PoolEntry, pool_fingerprint},
    status::{Facts, Outcome},
};

/// How soon to look again while an index is still populating.
const SCHEMA_RECHECK: Duration = Duration::from_secs(5);

/// A probe is forced when any of these change; otherwise it waits for its time.
pub fn inputs(
    obj: &DatabaseConnection,
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> u64 {
    let mut hasher = DefaultHasher::new();
    obj.metadata.uid.hash(&mut hasher);
    obj.metadata.generation.hash(&mut hasher);
    pool_fingerprint(settings, credentials).hash(&mut hasher);
    hasher.finish()
}

/// Opens (or reuses) the pool and probes it within the health-check timeout.
pub async fn run(
    state: &mut ConnectionState,
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Result<Probed, EngineError> {
    let now = Instant::now();
    let built_from = pool_fingerprint(settings, credentials);
    let reusable = state
        .pool
        .as_ref()
        .is_some_and(|entry| entry.built_from == built_from && !entry.expired(settings, now));
    if !reusable {
        // Replacing the entry drops the old pool: after a rotation the old login is not kept
        // in reserve, whatever the new one's fate.
        state.pool = None;
        let pool = (settings.engine.open)(settings, credentials)?;
        state.pool = Some(PoolEntry {
            pool,
            built_from,
            created: now,
            last_used: now,
            server: None,
        });
    }
    let entry = state.pool.as_mut().expect("pool was just ensured");
    let identify = entry.server.is_none();
    let attempt = async {
        if identify {
            entry.pool.identify().await.map(Some)
        } else {
            entry.pool.ping().await.map(|()| None)
        }
    };
    let outcome = bounded(settings, credentials, attempt).await;
    entry.last_used = Instant::now();
    let (server, latency) = outcome?;
    // Only a new pool's first probe identifies the server; it paid for opening the connection.
    let cold = server.is_some();
    if cold {
        entry.server = server;
    }
    Ok(Probed { latency, cold })
}

/// What a reconcile hears from the connection's prober.
pub enum Heard {
    /// No prober ran, or it ran for other inputs: probe as scheduled.
    Nothing,
    /// It is probing and has nothing to report.
    StillProbing,
    /// It stopped on this probe, which the reconcile reports instead of probing again.
    Probed(Result<Probed, EngineError>),
}

/// Takes the prober's news, if any; a prober that stopped leaves the connection's memory.
pub fn listen(state: &mut ConnectionState, inputs: u64) -> Heard {
    let Some(prober) = &state.prober else {
        return Heard::Nothing;
    };
    if prober.inputs != inputs {
        // The spec or a Secret changed: its pool is not the one to probe now.
        state.prober = None;
        return Heard::Nothing;
    }
    let Some((news, latency)) = prober.news() else {
        return Heard::StillProbing;
    };
    state.prober = None;
    state.latency = latency;
    if let Some(entry) = &mut state.pool {
        entry.last_used = std::time::Instant::now();
    }
    match news {
        News::Probed(result) => Heard::Probed(result),
        News::Renew => {
            state.next_probe = None;
            Heard::Nothing
        }
    }
}

impl Reconciliation<'_> {
    /// The probe succeeded: apply the schema, publish the binding, report. Returns the delay
    /// until the next probe.
    pub(super) async fn connected(
        &mut self,
        settings: &Arc<ConnectionSettings>,
        credentials: &Credentials,
        facts: Facts,
        probed: Probed,
        inputs: u64,
    ) -> Result<Duration, Error> {
        self.state.unreported_failure = None;
        self.state.consecutive_failures = 0;
        let login = credentials.fingerprint();
        // Only a different login counts as a reload: a Secret whose metadata alone changed,
        // or the first probe after a restart, is not one.
        let reloaded = self.state.verified.is_some_and(|before| before != login);
        self.state.verified = Some(login);
        self.state.accepted = true;
        let entry = self
            .state
            .pool
            .as_ref()
            .expect("a successful probe has a pool");
        let server = entry.server.clone().unwrap_or_default();
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.probe_succeeded(labels, probed.latency);
            if let Some(usage) = entry.pool.usage() {
                self.ctx.metrics.pool_usage(labels, usage.open, usage.idle);
            }
        }
        let members = self.members(settings);
        // With several hosts listed, the one sessions went to.
        let endpoint = members
            .as_ref()
            .and_then(|m| m.found.iter().find(|m| m.serving))
            .map_or(settings.endpoint.clone(), |m| m.address.clone());
        let schema_pass = self.sync_schema(&server, settings).await;
        // Schema drift and members' figures are found by full reconciles; a plain connection
        // is probed between them.
        let probe_between =
            schema_pass.is_none() && members.as_ref().is_none_or(|m| m.found.is_empty());
        let binding = binding::sync(self.ctx, self.obj, self.state, settings, credentials).await;
        let facts = Facts {
            schema: self.state.schema.clone(),
            binding,
            members,
            ..facts
        };
        let outcome = Outcome::Connected {
            server: &server,
            endpoint: &endpoint,
            user: credentials.login.as_ref().map(|l| l.username.as_str()),
        };
        // Scheduled after the status write: should it fail, the retry probes again, which is
        // cheap once logged in, and brings status up to date.
        self.report_with_latency(&outcome, facts, probed.latency, probed.cold)
            .await?;
        if reloaded {
            self.announce_reload(credentials).await;
        }
        let next = schedule::after_success(settings, rand::random());
        let delay = if schema_pass == Some(true) {
            next.min(SCHEMA_RECHECK)
        } else {
            next
        };
        self.state.next_probe = Some(Instant::now() + delay);
        if probe_between {
            self.start_prober(settings, credentials, inputs);
            return Ok(schedule::resync());
        }
        Ok(delay)
    }

    fn start_prober(
        &mut self,
        settings: &Arc<ConnectionSettings>,
        credentials: &Credentials,
        inputs: u64,
    ) {
        let entry = self
            .state
            .pool
            .as_ref()
            .expect("a successful probe has a pool");
        self.state.prober = Some(Prober::start(prober::Start {
            key: ObjectRef::from_obj(self.obj),
            inputs,
            pool: entry.pool.clone(),
            pool_created: entry.created,
            settings: settings.clone(),
            credentials: credentials.clone(),
            labels: self.state.labels.clone(),
            latency: self.state.latency.clone(),
            metrics: self.ctx.metrics.clone(),
            wake: self.ctx.wake.clone(),
        }));
    }

    /// A reconcile while the prober has nothing new: status says what the probes find
    /// (restored, should someone else have changed it), and the binding Secret is as it should
    /// be. No probe: the prober's are recent enough, and `latency` holds them.
    pub(super) async fn reassert(
        &mut self,
        settings: &ConnectionSettings,
        credentials: &Credentials,
        facts: Facts,
        mut latency: LatencyTracker,
    ) -> Result<(), Error> {
        let binding = binding::sync(self.ctx, self.obj, self.state, settings, credentials).await;
        let server = self
            .state
            .pool
            .as_ref()
            .and_then(|entry| entry.server.clone())
            .unwrap_or_default();
        let outcome = Outcome::Connected {
            server: &server,
            endpoint: &settings.endpoint,
            user: credentials.login.as_ref().map(|l| l.username.as_str()),
        };
        let shown = self.obj.status.as_ref().and_then(|s| s.probe.as_ref());
        latency.shown(shown.and_then(|p| p.latency.as_deref()));
        let figure = latency
            .median()
            .filter(|typical| latency.worth_recording(*typical));
        let facts = Facts {
            binding,
            latency: figure,
            ..facts
        };
        self.report(&outcome, facts).await
    }

    /// The probe failed: count it, schedule the retry, report. Returns the retry delay.
    pub(super) async fn failed(
        &mut self,
        settings: &ConnectionSettings,
        error: EngineError,
        facts: Facts,
    ) -> Result<Duration, Error> {
        self.state.consecutive_failures = self.state.consecutive_failures.saturating_add(1);
        let failures = self.state.consecutive_failures;
        debug!(%error, failures, "probe failed");
        if error.class() == FailureClass::Authentication {
            // The binding Secret must not be rewritten from a login the server refuses.
            self.state.accepted = false;
        }
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.probe_failed(labels, error.reason());
        }
        let outcome = Outcome::Failed {
            error: &error,
            consecutive_failures: failures,
            failure_threshold: settings.health.failure_threshold,
        };
        let delay = schedule::after_failure(settings, error.class(), failures, rand::random());
        // Scheduled before the status write: if the write fails (the apiserver is away), the
        // retries in between re-send this report instead of probing again.
        self.state.next_probe = Some(Instant::now() + delay);
        self.state.unreported_failure = Some(error.clone());
        let facts = Facts {
            schema: self.state.schema.clone(),
            members: self.members(settings),
            ..facts
        };
        self.report(&outcome, facts).await?;
        self.state.unreported_failure = None;
        Ok(delay)
    }

    /// The members the last probe found, for status and metrics; `None` when no pool opened.
    fn members(&self, settings: &ConnectionSettings) -> Option<MemberFacts> {
        let found = self.state.pool.as_ref()?.pool.members();
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.members(labels, &found);
        }
        Some(MemberFacts {
            found,
            max_lag: settings.health.max_replication_lag,
        })
    }

    async fn announce_reload(&self, credentials: &Credentials) {
        if let Some(labels) = &self.state.labels {
            self.ctx.metrics.credentials_reloaded(labels);
        }
        let mut using: Vec<String> = Vec::new();
        if let Some(login) = &credentials.login {
            using.push(format!(
                "the login from Secret {:?} (resourceVersion {})",
                login.secret_name, login.secret_resource_version
            ));
        }
        if let Some(cert) = &credentials.client_cert {
            using.push(format!(
                "the client certificate from Secret {:?} (resourceVersion {})",
                cert.secret_name, cert.secret_resource_version
            ));
        }
        if using.is_empty() {
            using.push("the CA bundle from spec.tls.caSecretRef as it is now".into());
        }
        let note = format!(
            "Now using {}; the previous pool was closed.",
            using.join(" and ")
        );
        let event = Event {
            type_: EventType::Normal,
            reason: "CredentialsReloaded".into(),
            note: Some(note),
            action: "ReloadCredentials".into(),
            secondary: None,
        };
        self.publish(event).await;
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use futures::{FutureExt, StreamExt, channel::mpsc, future::BoxFuture};

    use super::*;
    use crate::{
        api::ServerInfo,
        engine::Pool,
        fixtures,
        latency::LatencyTracker,
        metrics::Metrics,
        prober::Start,
        state::{Key, PoolEntry},
    };

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Answers pings from a script: `Ok(latency)` after that long, or the error at once.
    struct Scripted(Mutex<VecDeque<Result<Duration, EngineError>>>);

    impl Pool for Scripted {
        fn ping(&self) -> BoxFuture<'_, Result<(), EngineError>> {
            let answer = self.0.lock().unwrap().pop_front().expect("script ran out");
            async move {
                tokio::time::sleep(answer.clone().unwrap_or_default()).await;
                answer.map(drop)
            }
            .boxed()
        }

        fn identify(&self) -> BoxFuture<'_, Result<ServerInfo, EngineError>> {
            unreachable!("a prober only pings")
        }
    }

    /// A connection's memory with a prober running on `script`, and where it wakes.
    fn probing(
        script: Vec<Result<Duration, EngineError>>,
        settings: ConnectionSettings,
    ) -> (ConnectionState, mpsc::UnboundedReceiver<Key>) {
        let pool: Arc<dyn Pool> = Arc::new(Scripted(Mutex::new(script.into())));
        let (wake, woken) = mpsc::unbounded();
        let mut latency = LatencyTracker::default();
        latency.shown(Some("2ms"));
        let now = std::time::Instant::now();
        let state = ConnectionState {
            pool: Some(PoolEntry {
                pool: pool.clone(),
                built_from: 0,
                created: now,
                last_used: now,
                server: None,
            }),
            prober: Some(Prober::start(Start {
                key: Key::new("graph").within("apps"),
                inputs: 7,
                pool,
                pool_created: now,
                settings: Arc::new(settings),
                credentials: Credentials::default(),
                labels: None,
                latency,
                metrics: Arc::new(Metrics::default()),
                wake,
            })),
            ..Default::default()
        };
        (state, woken)
    }

    #[tokio::test(start_paused = true)]
    async fn steady_probes_wake_no_one_and_a_failure_is_handed_over() {
        let refused = EngineError::Unreachable {
            endpoint: "127.0.0.1:7687".into(),
            detail: "connection refused".into(),
        };
        let mut script = vec![Ok(MS(2)); 20];
        script.push(Err(refused));
        let (mut state, mut woken) = probing(script, fixtures::neo4j_settings());
        tokio::task::yield_now().await;
        assert!(matches!(listen(&mut state, 7), Heard::StillProbing));
        let key = woken.next().await.expect("woken");
        assert_eq!(key.name, "graph");
        match listen(&mut state, 7) {
            Heard::Probed(Err(EngineError::Unreachable { detail, .. })) => {
                assert_eq!(detail, "connection refused");
            }
            _ => panic!("the failure is handed over"),
        }
        assert!(state.prober.is_none(), "a prober that stopped is gone");
        assert_eq!(
            state.latency.median(),
            Some(MS(2)),
            "its latencies come back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_material_latency_move_is_handed_over_unrecorded() {
        let mut script = vec![Ok(MS(2)); 5];
        script.extend(vec![Ok(MS(400)); 10]);
        let (mut state, mut woken) = probing(script, fixtures::neo4j_settings());
        woken.next().await.expect("woken");
        let Heard::Probed(Ok(probed)) = listen(&mut state, 7) else {
            panic!("a latency move is handed over");
        };
        assert_eq!(probed.latency, MS(400));
        let typical = state.latency.observe(probed.latency);
        assert!(
            state.latency.worth_recording(typical),
            "the reconcile finds it worth a status write, as the prober did"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn other_inputs_stop_the_prober() {
        let (mut state, mut woken) = probing(vec![Ok(MS(2)); 100], fixtures::neo4j_settings());
        assert!(matches!(listen(&mut state, 8), Heard::Nothing));
        assert!(state.prober.is_none());
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(
            woken.next().now_or_never().flatten().is_none(),
            "a stopped prober wakes no one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_past_its_lifetime_is_renewed_by_a_probe_at_once() {
        let mut settings = fixtures::neo4j_settings();
        settings.pool.max_lifetime = settings.health.interval * 3;
        let (mut state, mut woken) = probing(vec![Ok(MS(2)); 100], settings);
        state.next_probe = Some(std::time::Instant::now() + Duration::from_secs(3600));
        woken.next().await.expect("woken");
        assert!(matches!(listen(&mut state, 7), Heard::Nothing));
        assert_eq!(state.next_probe, None, "a probe is due now");
    }
}
