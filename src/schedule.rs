//! When to probe next: the health-check interval after a success, exponential backoff after a
//! failure, and a slow cadence for failures only the user can fix. Jitter keeps thousands of
//! connections from probing in lockstep. Also the watches' pause after an error.

use std::time::Duration;

use kube::runtime::utils::Backoff;

use crate::{engine::FailureClass, settings::ConnectionSettings};

/// Retry cadence after a refused login. Neo4j locks an account after a few failed attempts
/// (`dbms.security.auth_max_failed_attempts`, default 3), so the operator tries rarely and
/// relies on the Secret watch to retry at once when the credentials change.
pub const AUTH_RETRY: Duration = Duration::from_secs(300);

/// Retry cadence while the Secret is missing or malformed; the Secret watch reacts sooner.
pub const WAIT_FOR_USER: Duration = Duration::from_secs(300);

/// Retry after a reconcile that failed on the Kubernetes API (a status write), plus up to as
/// much again of jitter.
pub const AFTER_API_ERROR: Duration = Duration::from_secs(5);

/// How often a healthy connection whose probes run between reconciles is reconciled anyway:
/// the level-triggered look at everything, in case a watch event was missed.
pub const RESYNC: Duration = Duration::from_secs(300);

/// [`RESYNC`] minus up to 10 %, so resyncs spread out.
pub fn resync() -> Duration {
    RESYNC - jitter(RESYNC / 10)
}

/// A random part of `max`, so retries of many objects spread out.
pub fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

/// Delay before the next probe after a healthy one: the interval minus up to 10 %.
pub fn after_success(settings: &ConnectionSettings, random: f64) -> Duration {
    settings
        .health
        .interval
        .mul_f64(1.0 - 0.1 * random.clamp(0.0, 1.0))
}

/// Delay before the next attempt after `failures` consecutive failures of `class`.
pub fn after_failure(
    settings: &ConnectionSettings,
    class: FailureClass,
    failures: u32,
    random: f64,
) -> Duration {
    match class {
        FailureClass::Authentication => AUTH_RETRY.max(settings.health.interval),
        FailureClass::Permanent => settings.health.interval.max(settings.retry.max_delay),
        FailureClass::Transient => backoff(
            settings.retry.initial_delay,
            settings.retry.max_delay,
            failures,
            random,
        ),
    }
}

/// `initial * 2^(failures-1)`, capped at `max`, minus up to 20 % jitter.
pub fn backoff(initial: Duration, max: Duration, failures: u32, random: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let raw = initial.saturating_mul(1u32 << exponent).min(max);
    raw.mul_f64(1.0 - 0.2 * random.clamp(0.0, 1.0))
}

/// The pause after a watch error (for all watches: they share it) until the next attempt:
/// 0.5 s doubling up to 5 s, and from 0.5 s again once an event arrives. After an apiserver
/// restart every watch fails in turn (refused, then 410 Gone for its old resourceVersion), each
/// failure lengthening the pause; with client-go's 30 s cap that added up to over a minute of
/// changes unseen after the apiserver was back.
#[derive(Debug, Default)]
pub struct WatchBackoff {
    failures: u32,
}

const WATCH_INITIAL: Duration = Duration::from_millis(500);
const WATCH_MAX: Duration = Duration::from_secs(5);

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        Some(backoff(
            WATCH_INITIAL,
            WATCH_MAX,
            self.failures,
            rand::random(),
        ))
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let delays: Vec<_> = (1..=7).map(|n| backoff(S(1), S(16), n, 0.0)).collect();
        assert_eq!(delays, [S(1), S(2), S(4), S(8), S(16), S(16), S(16)]);
    }

    #[test]
    fn jitter_only_shortens_and_by_at_most_a_fifth() {
        assert_eq!(backoff(S(1), S(16), 5, 1.0), Duration::from_millis(12_800));
        assert_eq!(backoff(S(10), S(16), 1, 0.5), S(9));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        assert_eq!(backoff(S(1), S(16), u32::MAX, 0.0), S(16));
    }

    #[test]
    fn authentication_failures_wait_minutes_not_seconds() {
        let settings = fixtures::neo4j_settings();
        assert_eq!(
            after_failure(&settings, FailureClass::Authentication, 1, 0.0),
            AUTH_RETRY
        );
        assert!(after_failure(&settings, FailureClass::Transient, 1, 0.0) <= S(1));
    }

    #[test]
    fn watch_errors_pause_at_most_five_seconds_and_start_over_after_an_event() {
        let mut watch = WatchBackoff::default();
        let pauses: Vec<_> = watch.by_ref().take(10).collect();
        assert!(pauses[0] <= WATCH_INITIAL);
        assert!(pauses.iter().all(|p| *p <= WATCH_MAX));
        assert!(pauses[9] >= WATCH_MAX.mul_f64(0.8));
        watch.reset();
        assert!(watch.next().unwrap() <= WATCH_INITIAL);
    }

    #[test]
    fn success_waits_about_one_interval() {
        let settings = fixtures::neo4j_settings();
        let interval = settings.health.interval;
        assert_eq!(after_success(&settings, 0.0), interval);
        assert_eq!(after_success(&settings, 1.0), interval.mul_f64(0.9));
    }
}
