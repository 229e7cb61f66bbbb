//! Sending status: the whole status is replaced, with the resourceVersion it was computed from as
//! precondition. Replacing (rather than server-side apply) means nothing another writer added
//! survives, whichever field manager owns it; the precondition means no write is based on a
//! status that changed meanwhile. On a conflict the object is read again and the status
//! recomputed from what is stored now, so the write is retried, not lost.

use std::{borrow::Cow, future::Future};

use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
    core::Status,
};
use serde_json::json;
use tracing::debug;

use crate::{
    FIELD_MANAGER,
    api::{DatabaseConnection, DatabaseConnectionStatus},
    deadline,
};

/// Attempts at one status write that keeps meeting resourceVersion conflicts; after the last,
/// the conflict goes to the controller's error policy, which retries later.
pub const ATTEMPTS: u32 = 5;

/// Reads and replaces one connection's status: the apiserver, or a fake in unit tests.
pub trait StatusStore {
    fn get(&self) -> impl Future<Output = Result<DatabaseConnection, kube::Error>> + Send;
    /// Replaces the status of `obj` if the stored resourceVersion is still `obj`'s; a 409
    /// Conflict otherwise.
    fn replace_status(
        &self,
        obj: &DatabaseConnection,
    ) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

/// One connection's status on the apiserver, through the verbs the operator's role has: list
/// (not get) connections, patch (not update) their status. It borrows only, so building one for a report that writes nothing costs nothing.
pub struct ApiStatus<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ApiStatus<'_> {
    fn api(&self) -> Api<DatabaseConnection> {
        Api::namespaced(self.client.clone(), self.namespace)
    }
}

impl StatusStore for ApiStatus<'_> {
    async fn get(&self) -> Result<DatabaseConnection, kube::Error> {
        let by_name = ListParams::default().fields(&format!("metadata.name={}", self.name));
        self.api().list(&by_name).await?.items.pop().ok_or_else(|| {
            let gone = Status::failure(&format!("{} is gone", self.name), "NotFound");
            kube::Error::Api(Box::new(gone.with_code(404)))
        })
    }

    async fn replace_status(&self, obj: &DatabaseConnection) -> Result<(), kube::Error> {
        // A JSON Patch that sets the resourceVersion makes it a precondition, as an update would.
        let patch = json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": obj.metadata.resource_version},
            {"op": "add", "path": "/status", "value": obj.status},
        ]);
        let patch = serde_json::from_value(patch).expect("a well-formed JSON Patch");
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api()
            .patch_status(self.name, &params, &Patch::<()>::Json(patch))
            .await?;
        Ok(())
    }
}

/// A status write that happened: the status it replaced, and the one written.
#[derive(Debug)]
pub struct Written {
    pub previous: DatabaseConnectionStatus,
    pub next: DatabaseConnectionStatus,
}

/// Replaces `obj`'s status with `desired(its status)` when that differs, within
/// [`deadline::API_CALL`]; returns `None` when nothing changed. The object is copied only for a
/// write, not for every report.
pub async fn write(
    store: &impl StatusStore,
    obj: &DatabaseConnection,
    desired: impl Fn(&DatabaseConnectionStatus) -> DatabaseConnectionStatus,
) -> Result<Option<Written>, kube::Error> {
    if let Some(shown) = &obj.status
        && desired(shown) == *shown
    {
        return Ok(None);
    }
    // Boxed: most reports end above, and the reconcile awaiting this (spawned whole as a task
    // of its own) should not carry room for the API calls below, 15 KB copied at each spawn.
    Box::pin(deadline::api("writing status", send(store, obj, desired))).await
}

/// The write itself, read again and retried on conflicts.
async fn send(
    store: &impl StatusStore,
    obj: &DatabaseConnection,
    desired: impl Fn(&DatabaseConnectionStatus) -> DatabaseConnectionStatus,
) -> Result<Option<Written>, kube::Error> {
    let mut stored = Cow::Borrowed(obj);
    let mut attempt = 1;
    loop {
        let previous = stored.status.clone().unwrap_or_default();
        let next = desired(&previous);
        if next == previous {
            return Ok(None);
        }
        let mut sent = stored.into_owned();
        sent.status = Some(next.clone());
        match store.replace_status(&sent).await {
            Ok(()) => return Ok(Some(Written { previous, next })),
            Err(kube::Error::Api(status)) if status.is_conflict() && attempt < ATTEMPTS => {
                debug!(
                    attempt,
                    "status changed since it was read; reading it again"
                );
                attempt += 1;
                stored = Cow::Owned(store.get().await?);
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::fixtures;

    /// Stores one object; each of the first `conflicts` replaces fails because someone else
    /// wrote `foreign` just before.
    struct Fake {
        stored: Mutex<DatabaseConnection>,
        conflicts: Mutex<u32>,
        foreign: DatabaseConnectionStatus,
        sent: Mutex<Vec<DatabaseConnection>>,
    }

    impl Fake {
        fn new(status: DatabaseConnectionStatus, conflicts: u32) -> Self {
            let mut obj = DatabaseConnection::new("app", fixtures::neo4j_spec("login"));
            obj.metadata.resource_version = Some("1".into());
            obj.status = Some(status);
            Self {
                stored: Mutex::new(obj),
                conflicts: Mutex::new(conflicts),
                foreign: DatabaseConnectionStatus {
                    conditions: vec![condition("Stalled", "Foreign")],
                    ..Default::default()
                },
                sent: Mutex::default(),
            }
        }

        fn stored(&self) -> DatabaseConnection {
            self.stored.lock().unwrap().clone()
        }
    }

    impl StatusStore for Fake {
        async fn get(&self) -> Result<DatabaseConnection, kube::Error> {
            Ok(self.stored())
        }

        async fn replace_status(&self, obj: &DatabaseConnection) -> Result<(), kube::Error> {
            self.sent.lock().unwrap().push(obj.clone());
            let mut stored = self.stored.lock().unwrap();
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                *conflicts -= 1;
                let version: u64 = stored
                    .metadata
                    .resource_version
                    .as_ref()
                    .unwrap()
                    .parse()
                    .unwrap();
                stored.metadata.resource_version = Some((version + 1).to_string());
                stored.status = Some(self.foreign.clone());
                let conflict =
                    Status::failure("the object has been modified", "Conflict").with_code(409);
                return Err(kube::Error::Api(Box::new(conflict)));
            }
            assert_eq!(
                obj.metadata.resource_version, stored.metadata.resource_version,
                "written against the stored resourceVersion"
            );
            stored.status = obj.status.clone();
            Ok(())
        }
    }

    fn condition(type_: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: "True".into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        }
    }

    /// What the operator would decide: Ready, and no Stalled condition.
    fn ready(previous: &DatabaseConnectionStatus) -> DatabaseConnectionStatus {
        let mut next = previous.clone();
        next.conditions
            .retain(|c| c.type_ != "Stalled" && c.type_ != "Ready");
        next.conditions.push(condition("Ready", "Connected"));
        next.observed_generation = Some(1);
        next
    }

    fn types(status: &DatabaseConnectionStatus) -> Vec<&str> {
        status.conditions.iter().map(|c| c.type_.as_str()).collect()
    }

    #[tokio::test]
    async fn a_conflict_is_retried_from_the_status_stored_now() {
        let fake = Fake::new(DatabaseConnectionStatus::default(), 1);
        let written = write(&fake, &fake.stored(), ready).await.unwrap().unwrap();
        let sent = fake.sent.lock().unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].metadata.resource_version.as_deref(), Some("2"));
        assert_eq!(
            types(&written.previous),
            ["Stalled"],
            "recomputed from the foreign write"
        );
        assert_eq!(
            types(&written.next),
            ["Ready"],
            "the foreign condition is gone"
        );
        assert_eq!(fake.stored().status.unwrap(), written.next);
    }

    #[tokio::test]
    async fn an_unchanged_status_is_not_written() {
        let fake = Fake::new(ready(&DatabaseConnectionStatus::default()), 0);
        assert!(write(&fake, &fake.stored(), ready).await.unwrap().is_none());
        assert!(fake.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn endless_conflicts_end_in_an_error_for_the_error_policy() {
        let fake = Fake::new(DatabaseConnectionStatus::default(), u32::MAX);
        let error = write(&fake, &fake.stored(), ready).await.unwrap_err();
        assert!(matches!(error, kube::Error::Api(s) if s.is_conflict()));
        assert_eq!(fake.sent.lock().unwrap().len() as u32, ATTEMPTS);
    }
}
