//! What the operator remembers per connection between reconciles: the pool, the server it
//! found, when to probe next. Everything here can be rebuilt from the apiserver after a restart.

use std::{
    collections::{HashMap, HashSet},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::runtime::reflector::ObjectRef;

use crate::{
    api::{DatabaseConnection, ServerInfo},
    credentials::Credentials,
    engine::{EngineError, Pool},
    latency::LatencyTracker,
    metrics::ConnectionLabels,
    settings::ConnectionSettings,
};

pub type Key = ObjectRef<DatabaseConnection>;

/// An open pool and what it was built from.
pub struct PoolEntry {
    pub pool: Arc<dyn Pool>,
    /// Hash of the settings and credentials the pool was built with.
    pub built_from: u64,
    pub created: Instant,
    pub last_used: Instant,
    /// Set once the server has identified itself through this pool.
    pub server: Option<ServerInfo>,
}

impl PoolEntry {
    /// Past `maxLifetime`, or unused for longer than `idleTimeout`: renew rather than reuse.
    pub fn expired(&self, settings: &ConnectionSettings, now: Instant) -> bool {
        now.duration_since(self.created) > settings.pool.max_lifetime
            || now.duration_since(self.last_used) > settings.pool.idle_timeout
    }
}

/// Per-connection memory.
#[derive(Default)]
pub struct ConnectionState {
    pub pool: Option<PoolEntry>,
    /// The credentials last read, reused until the Secret watch says the Secret changed.
    pub credentials: Option<Credentials>,
    /// Hash of the inputs the last probe ran with (uid, generation, credentials).
    pub probed_inputs: Option<u64>,
    pub next_probe: Option<Instant>,
    pub consecutive_failures: u32,
    /// Recent probe latencies and the one status shows.
    pub latency: LatencyTracker,
    /// The metric labels this connection's series were written under.
    pub labels: Option<ConnectionLabels>,
    /// Hash of what the binding Secret was last written from.
    pub binding_written: Option<u64>,
    /// A failed probe whose status write failed, to report again before the next probe is due.
    pub unreported_failure: Option<EngineError>,
}

impl ConnectionState {
    /// How long the next probe can wait: `None` when it is due now, because its time has come
    /// or because the inputs differ from those of the last probe.
    pub fn wait_before_probe(&self, inputs: u64, now: Instant) -> Option<Duration> {
        match (self.probed_inputs, self.next_probe) {
            (Some(last), Some(next)) if last == inputs && next > now => Some(next - now),
            _ => None,
        }
    }
}

/// Hash of what the pool is built from. Health-check and retry settings are left out:
/// changing them must not reopen connections.
pub fn pool_fingerprint(settings: &ConnectionSettings, credentials: &Credentials) -> u64 {
    let mut hasher = DefaultHasher::new();
    settings.engine.hash(&mut hasher);
    settings.uri.hash(&mut hasher);
    settings.tls.hash(&mut hasher);
    settings.database.hash(&mut hasher);
    settings.pool.hash(&mut hasher);
    credentials.fingerprint().hash(&mut hasher);
    hasher.finish()
}

/// All connections' state. The controller never reconciles one object twice at once, so a
/// reconcile takes its entry out, works on it without holding the lock, and puts it back.
#[derive(Default)]
pub struct Registry {
    states: Mutex<HashMap<Key, ConnectionState>>,
    /// Connections whose Secret changed since their last reconcile.
    secret_changed: Mutex<HashSet<Key>>,
}

impl Registry {
    pub fn take(&self, key: &Key) -> Option<ConnectionState> {
        self.states().remove(key)
    }

    pub fn put(&self, key: Key, state: ConnectionState) {
        self.states().insert(key, state);
    }

    /// Forgets a deleted connection and returns what it had; dropping that closes its pool.
    pub fn forget(&self, key: &Key) -> Option<ConnectionState> {
        self.changed_secrets().remove(key);
        self.states().remove(key)
    }

    pub fn open_pools(&self) -> usize {
        self.states().values().filter(|s| s.pool.is_some()).count()
    }

    pub fn mark_secret_changed(&self, key: Key) {
        self.changed_secrets().insert(key);
    }

    pub fn take_secret_changed(&self, key: &Key) -> bool {
        self.changed_secrets().remove(key)
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<Key, ConnectionState>> {
        self.states.lock().expect("registry lock poisoned")
    }

    fn changed_secrets(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        self.secret_changed.lock().expect("registry lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_is_skipped_only_for_the_same_inputs_before_it_is_due() {
        let now = Instant::now();
        let state = ConnectionState {
            probed_inputs: Some(7),
            next_probe: Some(now + Duration::from_secs(10)),
            ..Default::default()
        };
        assert_eq!(
            state.wait_before_probe(7, now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(state.wait_before_probe(8, now), None);
        assert_eq!(
            state.wait_before_probe(7, now + Duration::from_secs(11)),
            None
        );
        assert_eq!(ConnectionState::default().wait_before_probe(7, now), None);
    }
}
