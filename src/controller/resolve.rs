//! Step 1: the Secrets the connection references, as they are now. The credentials read last
//! time are reused only while the spec names the same Secrets and keys and the Secret watch
//! shows the same resourceVersions; anything else (a renamed `secretRef`, a rotated or
//! recreated Secret, a new CA or client certificate) reads them again. While the Secret watch is catching up after
//! an error its store may be behind, so they are read directly; if the apiserver cannot be
//! read then, the login in use stays (an apiserver outage is no reason to stop probing).

use crate::{
    api::{CaSecretRef, DatabaseConnection, SecretKeysRef},
    credentials::{self, CredentialsError, SecretInputs, Username},
    engine::{Descriptor, descriptor::Login},
    state::ReadCredentials,
};

use super::Context;

pub async fn credentials(
    ctx: &Context,
    obj: &DatabaseConnection,
    engine: &Descriptor,
    namespace: &str,
    cached: Option<ReadCredentials>,
) -> Result<ReadCredentials, CredentialsError> {
    // An engine that may be reached without a login takes a Secret without a username too.
    let username = match engine.login {
        Login::Optional => Username::Optional,
        Login::Required => Username::Required,
    };
    let login = obj.spec.credentials.as_ref().map(|c| &c.secret_ref);
    let tls = obj.spec.tls.as_ref();
    let ca = tls.and_then(|tls| tls.ca_secret_ref.as_ref());
    let cert = obj.spec.client_cert_secret();
    let Some(cached) = cached else {
        return read(ctx, namespace, login, username, ca, cert).await;
    };
    if !ctx.secrets_fresh.is_fresh() {
        return match read(ctx, namespace, login, username, ca, cert).await {
            Err(CredentialsError::Api { .. }) if cached.inputs.same_references(login, ca, cert) => {
                Ok(cached)
            }
            read => read,
        };
    }
    let version = |name: &str| {
        ctx.secret(namespace, name)?
            .metadata
            .resource_version
            .clone()
    };
    // `None` when a Secret the spec names is not in the store.
    let now_of = |reference: Option<&str>| match reference {
        None => Some(None),
        Some(name) => version(name).map(Some),
    };
    let now = now_of(login.map(|l| l.name.as_str())).and_then(|login_version| {
        let ca_version = now_of(ca.map(|c| c.name.as_str()))?;
        let cert_version = now_of(cert)?;
        Some(SecretInputs::new(
            login.zip(login_version.as_deref()),
            ca.zip(ca_version.as_deref()),
            cert.zip(cert_version.as_deref()),
        ))
    });
    // A Secret missing from the watch's store is read directly: it may be newer than
    // the store, and only a read can say it is really gone.
    if now.as_ref() == Some(&cached.inputs) {
        return Ok(cached);
    }
    read(ctx, namespace, login, username, ca, cert).await
}

async fn read(
    ctx: &Context,
    namespace: &str,
    login: Option<&SecretKeysRef>,
    username: Username,
    ca: Option<&CaSecretRef>,
    cert: Option<&str>,
) -> Result<ReadCredentials, CredentialsError> {
    // Boxed: a read is rare (the Secrets changed), its room in every reconcile is not.
    let credentials = Box::pin(credentials::load(
        &ctx.client,
        namespace,
        login,
        username,
        ca,
        cert,
    ))
    .await?;
    let inputs = SecretInputs::of(login, ca, &credentials);
    Ok(ReadCredentials {
        credentials,
        inputs,
    })
}
