//! Probes between reconciles. Once a connection is healthy, a timer task of its own probes it:
//! the ping and its metric, nothing else. It wakes the reconcile only when there is something
//! to report (a failure, a latency move worth a status write, or a pool due for renewal) and
//! hands it what it found, so nothing is probed twice. A reconcile per probe (status computed,
//! spec parsed, controller queue) cost several times the ping itself.
//!
//! The task belongs to the connection's memory: dropping the [`Prober`] (a new pool, a closed
//! connection, a forgotten object) stops it.

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use futures::channel::mpsc::UnboundedSender;
use tokio::{task::AbortHandle, time::Instant};

use super::probe::{self, Probed};
use crate::{
    credentials::Credentials,
    engine::{EngineError, Pool},
    latency::LatencyTracker,
    metrics::{ConnectionLabels, Metrics},
    schedule,
    settings::ConnectionSettings,
    state::{ConnectionState, Key},
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
enum News {
    /// A probe worth reporting: it failed, or its latency moved materially. Its latency is
    /// not yet in the tracker handed back with it.
    Probed(Result<Probed, EngineError>),
    /// The pool passed `pool.maxLifetime`: the reconcile opens a new one.
    Renew,
}

/// Everything a prober works with, cloned from the reconcile that starts it.
pub struct Start {
    pub key: Key,
    pub inputs: u64,
    pub pool: Arc<dyn Pool>,
    pub pool_created: std::time::Instant,
    pub settings: ConnectionSettings,
    pub credentials: Credentials,
    pub labels: Option<ConnectionLabels>,
    pub latency: LatencyTracker,
    pub metrics: Arc<Metrics>,
    pub wake: UnboundedSender<Key>,
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
    fn news(&self) -> Option<(News, LatencyTracker)> {
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
        let latency = match probe::bounded(settings, &start.credentials, start.pool.ping()).await {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures::{FutureExt, StreamExt, channel::mpsc, future::BoxFuture};

    use super::*;
    use crate::{api::ServerInfo, fixtures, state::PoolEntry};

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
                settings,
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
