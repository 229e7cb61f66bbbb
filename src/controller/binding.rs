//! Step 5: the binding Secret, managed as an owned child. It is written only from a login the
//! server accepted, only where no Secret of that name exists or the one there is this
//! connection's (see `crate::binding::owned_by`); anything else is a conflict, reported and left
//! untouched. A Secret of ours edited or deleted by hand is put back on the next reconcile,
//! which the Secret watch triggers at once.

use kube::ResourceExt;
use tracing::debug;

use crate::{
    api::{BindingStatus, DatabaseConnection},
    binding,
    conditions::{BINDING_READY, Change, Desired, Status},
    credentials::Credentials,
    settings::ConnectionSettings,
    state::{BindingWritten, ConnectionState},
    status::BindingFacts,
};

use super::Context;

/// Brings the binding Secret in line with the spec; `None` when status needs no change.
pub async fn sync(
    ctx: &Context,
    obj: &DatabaseConnection,
    state: &mut ConnectionState,
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Option<BindingFacts> {
    let namespace = obj.namespace().unwrap_or_default();
    let uid = obj.uid().unwrap_or_default();
    let previous = obj.status.as_ref().and_then(|s| s.binding.clone());
    let Some(name) = obj.binding_secret_name() else {
        state.binding = None;
        let old = previous?;
        return match Box::pin(remove_owned(ctx, &namespace, &old.name, &uid)).await {
            Ok(()) => Some(BindingFacts {
                status: None,
                condition: Change::Remove(BINDING_READY),
            }),
            Err(error) => {
                debug!(%error, secret = %old.name, "cannot delete the binding Secret; will retry");
                None
            }
        };
    };
    if !state.accepted || state.verified != Some(credentials.fingerprint()) {
        // Only a login the server accepted is published; the last one stays until then.
        return None;
    }
    let desired = binding::desired(obj, &name, settings, credentials);
    let content = binding::fingerprint(&desired);
    let stored = ctx
        .secret(&namespace, &name)
        .and_then(|meta| meta.metadata.resource_version.clone());
    let unchanged = state.binding.as_ref().is_some_and(|written| {
        written.name == name
            && written.content == content
            && Some(&written.resource_version) == stored.as_ref()
    });
    if unchanged {
        return Some(written(&name, &desired));
    }
    // The API calls are boxed: most reconciles make none, and need no room for them.
    match Box::pin(write(ctx, &desired, &uid)).await {
        Ok(resource_version) => {
            state.binding = Some(BindingWritten {
                name: name.clone(),
                content,
                resource_version,
            });
            if let Some(old) = previous.filter(|old| old.name != name)
                && let Err(error) = Box::pin(remove_owned(ctx, &namespace, &old.name, &uid)).await
            {
                debug!(%error, secret = %old.name, "cannot delete the previous binding Secret");
            }
            Some(written(&name, &desired))
        }
        Err(problem) => {
            state.binding = None;
            let (reason, message) = problem.describe(&name);
            Some(BindingFacts {
                // What was written before stays reported (and in place for the applications)
                // until the new name is written; under this very name only while it is ours.
                status: previous.filter(|old| old.name != name || reason != "BindingConflict"),
                condition: Change::Set(Desired::new(BINDING_READY, Status::False, reason, message)),
            })
        }
    }
}

fn written(name: &str, desired: &k8s_openapi::api::core::v1::Secret) -> BindingFacts {
    let type_ = desired.type_.as_deref().unwrap_or_default();
    BindingFacts {
        status: Some(BindingStatus {
            name: name.to_owned(),
        }),
        condition: Change::Set(Desired::new(
            BINDING_READY,
            Status::True,
            "BindingWritten",
            format!("Secret {name:?} ({type_}) holds the verified connection for applications."),
        )),
    }
}

/// Why the binding Secret could not be written.
enum Problem {
    /// A Secret of that name exists and is not ours.
    Conflict(String),
    Api(kube::Error),
}

impl Problem {
    fn describe(&self, name: &str) -> (&'static str, String) {
        match self {
            Problem::Conflict(owner) => (
                "BindingConflict",
                format!(
                    "Secret {name:?} already exists and is not this DatabaseConnection's ({owner}); it is left untouched. Delete or rename that Secret, or set spec.binding.secretName to a free name."
                ),
            ),
            Problem::Api(kube::Error::Api(status)) if status.code == 403 => (
                "BindingFailed",
                format!(
                    "the operator may not write Secrets in this namespace ({}); grant it create and patch on secrets (Helm value binding.enabled=true), or remove spec.binding",
                    status.message
                ),
            ),
            Problem::Api(kube::Error::Api(status)) if status.code == 422 => (
                "BindingFailed",
                format!(
                    "the apiserver refused the binding Secret {name:?}: {}; change spec.binding.secretName or the Secret in the way",
                    status.message
                ),
            ),
            Problem::Api(error) => (
                "BindingFailed",
                format!(
                    "cannot write the binding Secret {name:?}: {error}; retried at the next health check"
                ),
            ),
        }
    }
}

/// Creates the Secret, or brings ours up to date; returns its resourceVersion.
async fn write(
    ctx: &Context,
    desired: &k8s_openapi::api::core::v1::Secret,
    uid: &str,
) -> Result<String, Problem> {
    let namespace = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    // Read, not the watch's store: ownership is judged on the Secret as it is now.
    let stored = match binding::get(&ctx.client, &namespace, &name)
        .await
        .map_err(Problem::Api)?
    {
        Some(stored) => stored,
        None => match binding::create(&ctx.client, desired).await {
            Ok(created) => return Ok(created.resource_version().unwrap_or_default()),
            // Someone created one in between: judge that one.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                binding::get(&ctx.client, &namespace, &name)
                    .await
                    .map_err(Problem::Api)?
                    .ok_or_else(|| Problem::Api(kube::Error::Api(status)))?
            }
            Err(error) => return Err(Problem::Api(error)),
        },
    };
    if !binding::owned_by(&stored.metadata, uid) {
        return Err(Problem::Conflict(binding::owner_of(&stored.metadata)));
    }
    let version = stored.resource_version().unwrap_or_default();
    if binding::up_to_date(&stored, desired) {
        return Ok(version);
    }
    let updated = binding::update(&ctx.client, desired, &version)
        .await
        .map_err(Problem::Api)?;
    Ok(updated.resource_version().unwrap_or_default())
}

/// Deletes a binding Secret this connection wrote; any other Secret of that name stays.
async fn remove_owned(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::Error> {
    match binding::get(&ctx.client, namespace, name).await? {
        Some(stored) if binding::owned_by(&stored.metadata, uid) => {
            let secret_uid = stored.uid().unwrap_or_default();
            binding::delete(&ctx.client, namespace, name, &secret_uid).await
        }
        _ => Ok(()),
    }
}
