//! What the operator remembers per connection between reconciles: the pool, the credentials
//! last read, when to probe next. All of it is an optimisation: each entry belongs to one object
//! (its uid) and each cached value remembers the exact inputs it was built from, so a reconcile
//! reuses it only while those inputs are what the object and its Secrets say now. Everything
//! here can be rebuilt from the apiserver after a restart.

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use kube::runtime::reflector::ObjectRef;

use crate::{
    api::{DatabaseConnection, SchemaStatus, ServerInfo},
    conditions::Desired,
    credentials::{Credentials, SecretInputs},
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

/// Credentials as read, with the references and Secret versions they were read from.
#[derive(Clone, Debug)]
pub struct ReadCredentials {
    pub credentials: Credentials,
    pub inputs: SecretInputs,
}

/// The binding Secret as last written or checked: its name, what it holds (a hash), and the
/// resourceVersion it had then. Any difference from what is wanted or stored now means a look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingWritten {
    pub name: String,
    pub content: u64,
    pub resource_version: String,
}

/// Per-connection memory, for one object (one uid).
#[derive(Default)]
pub struct ConnectionState {
    /// The object this memory belongs to; another uid under the same name starts afresh.
    pub uid: String,
    /// The spec checked and parsed, with the generation it was parsed from: the apiserver moves
    /// the generation at every spec change, so an equal one means the same settings.
    pub settings: Option<(i64, Arc<ConnectionSettings>)>,
    pub pool: Option<PoolEntry>,
    pub credentials: Option<ReadCredentials>,
    /// The login (`Credentials::fingerprint`) the server last accepted.
    pub verified: Option<u64>,
    /// False once the server refuses that login, until it accepts one again.
    pub accepted: bool,
    /// Hash of the inputs the last probe ran with (uid, generation, credentials).
    pub probed_inputs: Option<u64>,
    pub next_probe: Option<Instant>,
    pub consecutive_failures: u32,
    /// Recent probe latencies and the one status shows.
    pub latency: LatencyTracker,
    /// The metric labels this connection's series were written under.
    pub labels: Option<ConnectionLabels>,
    pub binding: Option<BindingWritten>,
    /// The last schema pass's result: status keeps it (claims included) until the next pass,
    /// even if another writer replaced status meanwhile.
    pub schema: Option<(SchemaStatus, Desired)>,
    /// A failed probe whose status write failed, to report again before the next probe is due.
    pub unreported_failure: Option<EngineError>,
    /// Probes the healthy connection between reconciles; stopped when dropped.
    pub prober: Option<crate::prober::Prober>,
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
    settings.engine.name.hash(&mut hasher);
    settings.uri.hash(&mut hasher);
    settings.tls.hash(&mut hasher);
    settings.database.hash(&mut hasher);
    settings.pool.hash(&mut hasher);
    settings.http.hash(&mut hasher);
    credentials.fingerprint().hash(&mut hasher);
    hasher.finish()
}

/// All connections' state. The controller never reconciles one object twice at once, so a
/// reconcile takes its entry out, works on it without holding the lock, and puts it back.
#[derive(Default)]
pub struct Registry {
    states: Mutex<States>,
}

/// The entries, and how many of them hold a pool: counted as they come and go, because a
/// count by scanning on every reconcile made each reconcile cost O(connections).
#[derive(Default)]
struct States {
    entries: HashMap<Key, ConnectionState>,
    pools: usize,
}

impl States {
    fn remove(&mut self, key: &Key) -> Option<ConnectionState> {
        let state = self.entries.remove(key)?;
        self.pools -= usize::from(state.pool.is_some());
        Some(state)
    }

    fn insert(&mut self, key: Key, state: ConnectionState) {
        self.pools += usize::from(state.pool.is_some());
        if let Some(old) = self.entries.insert(key, state) {
            self.pools -= usize::from(old.pool.is_some());
        }
    }
}

impl Registry {
    pub fn take(&self, key: &Key) -> Option<ConnectionState> {
        self.states().remove(key)
    }

    pub fn put(&self, key: Key, state: ConnectionState) {
        self.states().insert(key, state);
    }

    /// Removes the memory of `key` if it belongs to `uid` (any uid when `None`) and returns it;
    /// dropping it closes the pool.
    pub fn forget(&self, key: &Key, uid: Option<&str>) -> Option<ConnectionState> {
        let mut states = self.states();
        let matches = states
            .entries
            .get(key)
            .is_some_and(|state| uid.is_none_or(|uid| state.uid == uid));
        if matches { states.remove(key) } else { None }
    }

    /// Removes every entry `keep` refuses (given key and uid), and returns them.
    pub fn sweep(&self, keep: impl Fn(&Key, &str) -> bool) -> Vec<ConnectionState> {
        let mut states = self.states();
        let gone: Vec<Key> = states
            .entries
            .iter()
            .filter(|(key, state)| !keep(key, &state.uid))
            .map(|(key, _)| key.clone())
            .collect();
        gone.iter().filter_map(|key| states.remove(key)).collect()
    }

    pub fn len(&self) -> usize {
        self.states().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn open_pools(&self) -> usize {
        self.states().pools
    }

    fn states(&self) -> MutexGuard<'_, States> {
        self.states.lock().expect("registry lock poisoned")
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

    fn state(uid: &str) -> ConnectionState {
        ConnectionState {
            uid: uid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn forgetting_needs_the_same_uid() {
        let registry = Registry::default();
        let key = Key::new("graph").within("apps");
        registry.put(key.clone(), state("new"));
        assert!(
            registry.forget(&key, Some("old")).is_none(),
            "another object's memory stays"
        );
        assert_eq!(registry.forget(&key, Some("new")).unwrap().uid, "new");
        assert!(registry.is_empty());
    }

    struct NoServer;

    impl Pool for NoServer {
        fn ping(&self) -> futures::future::BoxFuture<'_, Result<(), EngineError>> {
            unreachable!("never probed")
        }

        fn identify(&self) -> futures::future::BoxFuture<'_, Result<ServerInfo, EngineError>> {
            unreachable!("never probed")
        }
    }

    fn with_pool(uid: &str) -> ConnectionState {
        let now = Instant::now();
        ConnectionState {
            pool: Some(PoolEntry {
                pool: Arc::new(NoServer),
                built_from: 0,
                created: now,
                last_used: now,
                server: None,
            }),
            ..state(uid)
        }
    }

    #[test]
    fn open_pools_are_counted_as_entries_come_and_go() {
        let registry = Registry::default();
        let (a, b) = (Key::new("a").within("apps"), Key::new("b").within("apps"));
        registry.put(a.clone(), with_pool("1"));
        registry.put(b.clone(), state("2"));
        assert_eq!(registry.open_pools(), 1);
        registry.put(b.clone(), with_pool("2"));
        assert_eq!(
            registry.open_pools(),
            2,
            "an entry replaced by one with a pool"
        );
        let taken = registry.take(&a).unwrap();
        assert_eq!(registry.open_pools(), 1, "a reconcile holds one");
        registry.put(a.clone(), taken);
        registry.put(b.clone(), state("2"));
        assert_eq!(registry.open_pools(), 1, "an entry replaced by one without");
        assert!(registry.forget(&a, Some("1")).is_some());
        assert_eq!(registry.open_pools(), 0);
        registry.put(a.clone(), with_pool("3"));
        registry.sweep(|_, _| false);
        assert_eq!(registry.open_pools(), 0, "swept");
    }

    #[test]
    fn a_sweep_removes_what_is_no_longer_there() {
        let registry = Registry::default();
        registry.put(Key::new("kept").within("apps"), state("1"));
        registry.put(Key::new("deleted").within("apps"), state("2"));
        registry.put(Key::new("recreated").within("apps"), state("3"));
        let gone = registry
            .sweep(|key, uid| key.name == "kept" || (key.name == "recreated" && uid == "4"));
        let mut uids: Vec<_> = gone.iter().map(|s| s.uid.as_str()).collect();
        uids.sort();
        assert_eq!(uids, ["2", "3"]);
        assert_eq!(registry.len(), 1);
    }
}
