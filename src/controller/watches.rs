//! What the controller watches, and what it forgets. Two watches feed it: DatabaseConnections
//! (full objects) and Secrets (metadata only). Each keeps a store that reconciles read as the
//! truth of "now"; their events only say when to look, and only once the store shows them
//! (`settled`). Deletes are acted on as the watch sees them, in whatever state the connection
//! was, so no pool, series or memory outlives its object.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Config},
        reflector::{self, ObjectRef, Store},
        watcher::{self, Event, watcher},
    },
};
use tracing::{debug, info, warn};

use super::{Context, error_policy, fresh::secret_watch, reconcile, settled::settled_objects};
use crate::{
    api::DatabaseConnection,
    http::Readiness,
    metrics::{ConnectionLabels, Metrics},
    schedule::WatchBackoff,
    shards::{self, Sharding},
    state::{ConnectionState, Key},
};

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

/// Which connections this replica reconciles.
#[derive(Clone)]
pub struct Partition {
    pub scope: Scope,
    /// Only connections with these labels (`--selector`), for teams that split by label.
    pub selector: Option<String>,
    /// Only connections of the shards this replica holds (`--shards`).
    pub sharding: Option<Sharding>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    partition: Partition,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (connections, connections_writer) = reflector::store();
    let (secrets, secrets_writer) = reflector::store();
    let (ctx, woken) = Context::new(
        client.clone(),
        metrics,
        readiness,
        connections.clone(),
        secrets.clone(),
        partition.sharding.clone(),
    );
    let ctx = Arc::new(ctx);
    let config = watcher::Config::default().any_semantic();
    let connection_config = match &partition.selector {
        Some(selector) => config.clone().labels(selector),
        None => config.clone(),
    };
    let scope = partition.scope;
    let observer = ctx.clone();
    let connection_events = watcher(scope.api::<DatabaseConnection>(&client), connection_config)
        .backoff(WatchBackoff::default())
        // Nothing reads who set which field, or kubectl's copy of the manifest: at 10,000
        // connections both would be kept in memory for nothing.
        .modify(|conn| {
            conn.managed_fields_mut().clear();
            conn.annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(connections_writer)
        .inspect_ok(move |event| observe(&observer, event));
    let connection_events = settled_objects(connection_events, connections.clone());
    // Metadata only: an `Api` of `PartialObjectMeta` makes metadata-only requests. A broken
    // Secret watch lists afresh, so the store is known current again at the list's end.
    let fresh = ctx.clone();
    let secret_events = secret_watch(scope.api::<PartialObjectMeta<Secret>>(&client), config)
        .backoff(WatchBackoff::default())
        // A Secret applied with kubectl carries its data in an annotation: keep none of them.
        .modify(|secret| {
            secret.annotations_mut().clear();
            secret.managed_fields_mut().clear();
        })
        .reflect(secrets_writer)
        .inspect(move |item| fresh.secrets_fresh.observe(item));
    let secret_events = settled_objects(secret_events, secrets.clone());
    tokio::spawn(report_ready(ctx.clone()));
    if let Some(sharding) = partition.sharding {
        tokio::spawn(follow_shards(ctx.clone(), sharding));
    }
    let referenced_by = connections.clone();
    Controller::for_stream(connection_events, connections)
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(secret_events, move |secret| {
            connections_using(&referenced_by, &secret)
        })
        // A prober found something to report.
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok(_) | Err(controller::Error::ObjectNotFound(_)) => {}
                    Err(controller::Error::ReconcilerFailed(error, obj)) => {
                        ctx.metrics.reconcile_failed();
                        let namespace = obj.namespace.as_deref().unwrap_or_default();
                        warn!(%namespace, name = %obj.name, %error, "reconcile failed; will retry");
                    }
                    // 410 Gone: the watch's resourceVersion left the apiserver's window; kube
                    // lists afresh, which is routine, not a fault.
                    Err(controller::Error::QueueError(watcher::Error::WatchError(status)))
                        if status.code == 410 =>
                    {
                        debug!(%status, "watch expired; listing again");
                    }
                    Err(error) => warn!(%error, "controller error"),
                }
            }
        })
        .await;
}

/// Acts on the shards this replica holds as they change: the connections of a shard lost are
/// forgotten at once (pools closed, probers stopped), those of a shard gained reconciled now.
async fn follow_shards(ctx: Arc<Context>, sharding: Sharding) {
    let mut changes = sharding.changes();
    let mut before = BTreeSet::new();
    loop {
        let held = changes.borrow_and_update().clone();
        ctx.metrics.set_shards_held(held.len());
        for state in ctx.registry.sweep(|_, uid| sharding.owns(uid)) {
            ctx.forget(state);
        }
        for obj in ctx.connections.state() {
            let shard = shards::shard_of(&obj.uid().unwrap_or_default(), sharding.count);
            if held.contains(&shard) && !before.contains(&shard) {
                let _ = ctx.wake.unbounded_send(ObjectRef::from_obj(&*obj));
            }
        }
        before = held;
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// `/readyz` turns 200 once both watches have listed everything.
async fn report_ready(ctx: Arc<Context>) {
    // `Store::wait_until_ready` wakes only its latest waiter, which is the controller's own
    // runner, so this side checks on a timer instead of awaiting it.
    loop {
        let connections = ctx.connections.wait_until_ready().now_or_never();
        let secrets = ctx.secrets.wait_until_ready().now_or_never();
        if let (Some(connections), Some(secrets)) = (connections, secrets) {
            ctx.readiness.set(connections.is_ok() && secrets.is_ok());
            info!("watches synced; ready");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Acts on what the connection watch saw: a delete forgets that object at once; a re-list
/// (after the watch was interrupted, when deletes may have gone unseen) forgets every object
/// the store no longer holds.
fn observe(ctx: &Context, event: &Event<DatabaseConnection>) {
    match event {
        Event::Delete(obj) => {
            let key = ObjectRef::from_obj(obj);
            let forgotten = ctx.registry.forget(&key, obj.uid().as_deref());
            // A reconcile may hold the memory right now; `keep` drops it when it hands it back.
            // The series are named by the object, so they go either way.
            ctx.metrics.forget(&labels(obj));
            if let Some(state) = forgotten {
                ctx.forget(state);
            }
            let namespace = obj.namespace().unwrap_or_default();
            info!(%namespace, name = %obj.name_any(), "connection deleted; pool closed, metrics removed");
        }
        Event::InitDone => {
            let gone = ctx
                .registry
                .sweep(|key, uid| is_current(&ctx.connections, key, uid));
            if !gone.is_empty() {
                info!(
                    count = gone.len(),
                    "connections deleted while the watch was down; forgotten"
                );
            }
            for state in gone {
                ctx.forget(state);
            }
        }
        Event::Apply(_) | Event::Init | Event::InitApply(_) => {}
    }
}

/// Hands a reconcile's memory back, unless its object was deleted (or replaced by another of
/// the same name) while the reconcile ran: then it is dropped, so memory follows the store.
pub(super) fn keep(ctx: &Context, key: Key, uid: &str, state: ConnectionState) {
    // A shard lost while the reconcile ran: the connection is another replica's now.
    if is_current(&ctx.connections, &key, uid) && ctx.owns(uid) {
        ctx.registry.put(key, state);
        ctx.metrics.set_open_pools(ctx.registry.open_pools());
    } else {
        ctx.forget(state);
    }
}

fn is_current(store: &Store<DatabaseConnection>, key: &Key, uid: &str) -> bool {
    store
        .get(key)
        .is_some_and(|obj| obj.metadata.uid.as_deref() == Some(uid))
}

fn labels(obj: &DatabaseConnection) -> ConnectionLabels {
    ConnectionLabels {
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        engine: obj.spec.engine.as_str().to_owned(),
    }
}

/// The connections a Secret matters to: those that read it (login or CA) and those whose
/// binding Secret has its name (to repair it when edited or deleted, or to notice that a
/// conflicting Secret went away).
fn connections_using(
    store: &Store<DatabaseConnection>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<Key> {
    let name = secret.name_any();
    let namespace = secret.namespace();
    store
        .state()
        .into_iter()
        .filter(|conn| conn.namespace() == namespace && concerns(conn, &name))
        .map(|conn| ObjectRef::from_obj(&*conn))
        .collect()
}

fn concerns(conn: &DatabaseConnection, secret: &str) -> bool {
    let spec = &conn.spec;
    spec.credentials
        .as_ref()
        .is_some_and(|c| c.secret_ref.name == secret)
        || spec
            .tls
            .as_ref()
            .and_then(|tls| tls.ca_secret_ref.as_ref())
            .is_some_and(|ca| ca.name == secret)
        || spec.client_cert_secret() == Some(secret)
        || conn
            .binding_secret_name()
            .is_some_and(|name| name == secret)
        || conn
            .status
            .as_ref()
            .and_then(|s| s.binding.as_ref())
            .is_some_and(|b| b.name == secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{BindingSpec, CaSecretRef, ClientCertSecretRef, TlsSpec},
        fixtures,
    };

    #[test]
    fn a_secret_concerns_a_connection_as_login_ca_or_binding() {
        let mut conn = DatabaseConnection::new("graph", fixtures::neo4j_spec("login"));
        assert!(concerns(&conn, "login"));
        assert!(!concerns(&conn, "ca"));
        assert!(!concerns(&conn, "graph-binding"));
        conn.spec.tls = Some(TlsSpec {
            ca_secret_ref: Some(CaSecretRef {
                name: "ca".into(),
                key: "ca.crt".into(),
                namespace: None,
            }),
            insecure_skip_verify: false,
            client_cert_secret_ref: Some(ClientCertSecretRef {
                name: "client".into(),
            }),
        });
        conn.spec.binding = Some(BindingSpec::default());
        assert!(concerns(&conn, "ca"));
        assert!(concerns(&conn, "client"));
        assert!(concerns(&conn, "graph-binding"));
    }
}
