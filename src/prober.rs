//! Probes between reconciles. Once a connection is healthy, a timer task of its own probes it:
//! the ping and its metric, nothing else. It wakes the reconcile only when there is something
//! to report (a failure, a latency move worth a status write, or a pool due for renewal) and
//! hands it what it found, so nothing is probed twice. A reconcile per probe (status computed,
//! spec parsed, controller queue) cost several times the ping itself.
//!
//! The reconcile's side (what it hears from a prober) is in `controller::probe`. The task
//! belongs to the connection's memory: dropping the [`Prober`] (a new pool, a closed
//! connection, a forgotten object) stops it.

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    api::DatabaseConnection,
    credentials::Credentials,
    engine::{EngineError, Pool},
    latency::LatencyTracker,
    metrics::{ConnectionLabels, Metrics},
    schedule,
    settings::ConnectionSettings,
};

/// A running prober, and what it found.
pub struct Prober {
    /// The probe inputs (`probe::inputs`) it was started for: other inputs mean probing anew.
    pub inputs: u64,
    found: Arc<Mutex<Found>>,
    task: AbortHandle,
}

/// What the prober knows: the latencies of its probes, and what it handed back, if anything.
struct Found {
    latency: LatencyTracker,
    news: Option<News>,
}

/// Why the prober stopped and woke the reconcile.
pub enum News {
    /// A probe worth reporting: it failed, or its latency moved materially. Its latency is
    /// not yet in the tracker handed back with it.
    Probed(Result<Probed, EngineError>),
    /// The pool passed `pool.maxLifetime`: the reconcile opens a new one.
    Renew,
}

/// Everything a prober works with, cloned from the reconcile that starts it.
pub struct Start {
    /// The connection whose reconcile it wakes (`state::Key`, spelled out: state.rs holds
    /// the prober, so the prober does not depend on it).
    pub key: ObjectRef<DatabaseConnection>,
    pub inputs: u64,
    pub pool: Arc<dyn Pool>,
    pub pool_created: std::time::Instant,
    /// Shared with the connection's memory, which keeps the parsed spec.
    pub settings: Arc<ConnectionSettings>,
    pub credentials: Credentials,
    pub labels: Option<ConnectionLabels>,
    pub latency: LatencyTracker,
    pub metrics: Arc<Metrics>,
    pub wake: UnboundedSender<ObjectRef<DatabaseConnection>>,
}

impl Prober {
    pub fn start(start: Start) -> Self {
        let found = Arc::new(Mutex::new(Found {
            latency: start.latency.clone(),
            news: None,
        }));
        let inputs = start.inputs;
        let task = tokio::spawn(probe_until_news(start, found.clone())).abort_handle();
        Self {
            inputs,
            found,
            task,
        }
    }

    /// `None` while it is still probing with nothing to report; otherwise why it stopped, and
    /// the latency tracker as it left it. A task that ended without news (it cannot, short of
    /// a panic) asks for a probe rather than leave the connection unwatched.
    pub fn news(&self) -> Option<(News, LatencyTracker)> {
        let mut found = lock(&self.found);
        let news = match found.news.take() {
            Some(news) => news,
            None if self.task.is_finished() => News::Renew,
            None => return None,
        };
        Some((news, found.latency.clone()))
    }

    /// The latencies of its probes so far.
    pub fn latency(&self) -> LatencyTracker {
        lock(&self.found).latency.clone()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Probes start on a beat of 250 ms (or a quarter of the interval, if shorter): the probes due
/// within one beat share a wake-up of the runtime and its threads. Woken one by one, a few
/// milliseconds apart, each probe cost 2-3 times as much CPU (the switches, not the query).
const BEAT: Duration = Duration::from_millis(250);

/// `due`, delayed to the next beat of `beat` (counted from the process's first beat).
fn on_the_beat(due: Instant, beat: Duration) -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let beat = beat.as_nanos().max(1);
    let since = due.saturating_duration_since(start).as_nanos();
    let late = (beat - since % beat) % beat;
    due + Duration::from_nanos(late as u64)
}

fn lock(found: &Mutex<Found>) -> MutexGuard<'_, Found> {
    found.lock().expect("prober lock poisoned")
}

async fn probe_until_news(start: Start, found: Arc<Mutex<Found>>) {
    let settings = &start.settings;
    let news = loop {
        let due = Instant::now() + schedule::after_success(settings, rand::random());
        let beat = BEAT.min(settings.health.interval / 4);
        tokio::time::sleep_until(on_the_beat(due, beat)).await;
        let age = Instant::from_std(start.pool_created).elapsed();
        if age > settings.pool.max_lifetime {
            break News::Renew;
        }
        let latency = match bounded(settings, &start.credentials, start.pool.ping()).await {
            Ok(((), latency)) => latency,
            Err(error) => break News::Probed(Err(error)),
        };
        {
            let mut found = lock(&found);
            if found.latency.would_record(latency) {
                // The reconcile records this probe (metric and tracker) as its own.
                break News::Probed(Ok(Probed {
                    latency,
                    cold: false,
                }));
            }
            found.latency.observe(latency);
        }
        if let Some(labels) = &start.labels {
            start.metrics.probe_succeeded(labels, latency);
        }
    };
    lock(&found).news = Some(news);
    // The controller may be shutting down; then there is no one left to tell.
    let _ = start.wake.unbounded_send(start.key);
}

/// A successful probe: its round trip, and whether it was the pool's first (which includes
/// opening a connection, so it says little about the server's usual latency).
pub struct Probed {
    pub latency: Duration,
    pub cold: bool,
}

/// Runs one probe within `healthCheck.timeout`; returns its answer and round trip.
pub async fn bounded<T>(
    settings: &ConnectionSettings,
    credentials: &Credentials,
    attempt: impl Future<Output = Result<T, EngineError>>,
) -> Result<(T, Duration), EngineError> {
    // tokio's clock, which tests can pause and advance; the same as the system's otherwise.
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(settings.health.timeout, attempt).await {
        Ok(Ok(answer)) => Ok((answer, started.elapsed())),
        Ok(Err(error)) => Err(crate::engine::tls::refused_client_cert(error, credentials)),
        Err(_elapsed) => Err(EngineError::Timeout {
            endpoint: settings.endpoint.clone(),
            timeout: settings.health.timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test(start_paused = true)]
    async fn probes_start_on_the_next_beat() {
        let beat = MS(250);
        let first = on_the_beat(Instant::now() + MS(10), beat);
        for offset in [0, 1, 240, 250, 251, 4999] {
            let due = first + MS(offset);
            let start = on_the_beat(due, beat);
            assert!(start >= due && start - due < beat, "{offset} ms");
            assert_eq!(
                (start - first).as_millis() % 250,
                0,
                "{offset} ms: on a beat"
            );
        }
    }
}
