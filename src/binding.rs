//! The service binding Secret (servicebinding.io layout): what an application mounts to reach
//! the database. Written only from credentials the operator has just verified, so a rotation
//! to a wrong password never reaches the applications.
//!
//! It is a child of its DatabaseConnection: a Secret counts as the operator's only when it
//! carries a controller ownerReference to that connection's uid and the managed-by label. Any
//! other Secret of that name belongs to someone else and is never adopted, changed or deleted.

use std::{
    collections::{BTreeMap, hash_map::RandomState},
    hash::BuildHasher,
    sync::LazyLock,
};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions},
};

use crate::{
    FIELD_MANAGER, api::DatabaseConnection, credentials::Credentials, deadline,
    settings::ConnectionSettings,
};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const CONNECTION: &str = "dbconn.dev/connection";

/// True when `meta` shows a Secret this operator wrote for the connection with `uid`.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY))
        .is_some_and(|by| by == FIELD_MANAGER);
    let owned = meta.owner_references.iter().flatten().any(|owner| {
        owner.uid == uid && owner.controller == Some(true) && owner.kind == "DatabaseConnection"
    });
    labelled && owned
}

/// Who a Secret belongs to, in words for a conflict message.
pub fn owner_of(meta: &ObjectMeta) -> String {
    match meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        Some(owner) => format!("it is controlled by {} {:?}", owner.kind, owner.name),
        None => "it was not created by this DatabaseConnection".into(),
    }
}

/// The binding Secret for `obj`, owned by it so that it is garbage collected with it.
pub fn desired(
    obj: &DatabaseConnection,
    name: &str,
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Secret {
    // With several hosts listed, the first; `uri` lists them all for clients that fail over.
    let (host, port) = (settings.host.as_str(), settings.port.to_string());
    let engine = obj.spec.engine.as_str();
    let mut entries = vec![
        ("type", engine.to_owned()),
        ("provider", FIELD_MANAGER.to_owned()),
        ("host", host.to_owned()),
        ("port", port),
        ("uri", settings.uri.clone()),
    ];
    if let Some(login) = &credentials.login {
        if !login.username.is_empty() {
            entries.push(("username", login.username.clone()));
        }
        // A login proved by a client certificate has no password.
        if !login.password.expose().is_empty() {
            entries.push(("password", login.password.expose().to_owned()));
        }
    }
    if let Some(database) = &settings.database {
        entries.push(("database", database.clone()));
    }
    let data: BTreeMap<String, ByteString> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: obj.namespace(),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
                (CONNECTION.to_owned(), obj.name_any()),
            ])),
            owner_references: obj.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(format!("servicebinding.io/{engine}")),
        data: Some(data),
        ..Default::default()
    }
}

/// A process-local fingerprint of the Secret as it would be written, to tell whether it changed
/// without keeping anything derived from the password: the hash key is random per process.
pub fn fingerprint(secret: &Secret) -> u64 {
    static KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);
    KEY.hash_one(serde_json::to_vec(secret).expect("a Secret serializes"))
}

/// True when `stored` already holds everything `desired` says: type, data, our labels and our
/// ownerReference. Other labels or annotations someone added are left alone.
pub fn up_to_date(stored: &Secret, desired: &Secret) -> bool {
    let labels_kept = desired
        .labels()
        .iter()
        .all(|(k, v)| stored.labels().get(k) == Some(v));
    let owners_kept = desired
        .owner_references()
        .iter()
        .all(|o| stored.owner_references().contains(o));
    stored.type_ == desired.type_ && stored.data == desired.data && labels_kept && owners_kept
}

fn api(client: &Client, namespace: &str) -> Api<Secret> {
    Api::namespaced(client.clone(), namespace)
}

/// Reads the Secret of that name, if there is one.
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, kube::Error> {
    let what = format!("reading Secret {name:?}");
    deadline::api(&what, api(client, namespace).get_opt(name)).await
}

/// Creates the Secret; fails with 409 if a Secret of that name appeared meanwhile.
pub async fn create(client: &Client, secret: &Secret) -> Result<Secret, kube::Error> {
    let what = format!("creating Secret {:?}", secret.name_any());
    let api = api(client, &secret.namespace().unwrap_or_default());
    deadline::api(&what, api.create(&PostParams::default(), secret)).await
}

/// Brings an existing, owned Secret up to date with server-side apply. `resource_version` (the
/// one that was checked for ownership) is a precondition: a Secret replaced meanwhile fails
/// with 409 and is looked at again, never overwritten blind.
pub async fn update(
    client: &Client,
    secret: &Secret,
    resource_version: &str,
) -> Result<Secret, kube::Error> {
    let name = secret.name_any();
    let mut body = serde_json::to_value(secret).expect("a Secret serializes");
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    body["metadata"]["resourceVersion"] = resource_version.into();
    let what = format!("updating Secret {name:?}");
    let api = api(client, &secret.namespace().unwrap_or_default());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    deadline::api(&what, api.patch(&name, &params, &Patch::Apply(&body))).await
}

/// Deletes the Secret with this uid (a Secret of the same name created since is not touched).
pub async fn delete(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let what = format!("deleting Secret {name:?}");
    match deadline::api(&what, api(client, namespace).delete(name, &params)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::{api::BindingSpec, fixtures};

    fn connection() -> DatabaseConnection {
        let mut obj = DatabaseConnection::new("graph", fixtures::neo4j_spec("login"));
        obj.metadata.namespace = Some("apps".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.spec.binding = Some(BindingSpec::default());
        obj
    }

    fn credentials() -> Credentials {
        Credentials::login("neo4j", "pw", "login", "1")
    }

    fn binding() -> Secret {
        let obj = connection();
        desired(
            &obj,
            "graph-binding",
            &fixtures::neo4j_settings(),
            &credentials(),
        )
    }

    #[test]
    fn the_binding_holds_the_servicebinding_keys_and_is_owned_by_the_connection() {
        let obj = connection();
        let name = obj.binding_secret_name().unwrap();
        assert_eq!(name, "graph-binding");
        let secret = desired(&obj, &name, &fixtures::neo4j_settings(), &credentials());
        let data = secret.data.clone().unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(text("type"), "neo4j");
        assert_eq!(
            (text("host").as_str(), text("port").as_str()),
            ("127.0.0.1", "7687")
        );
        assert_eq!(text("password"), "pw");
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/neo4j"));
        let owner = &secret.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("DatabaseConnection", "uid-1", Some(true))
        );
        assert!(owned_by(&secret.metadata, "uid-1"));
    }

    #[test]
    fn with_several_hosts_the_binding_names_the_first_and_the_uri_all() {
        let obj = connection();
        let mut spec = fixtures::postgres_spec("creds");
        spec.uri = "postgres://pg-0:5433,pg-1:5434/app?target_session_attrs=read-write".into();
        let settings = crate::settings::ConnectionSettings::from_spec(&spec).unwrap();
        let secret = desired(&obj, "b", &settings, &credentials());
        let data = secret.data.unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!((text("host"), text("port")), ("pg-0".into(), "5433".into()));
        assert_eq!(text("uri"), spec.uri);
    }

    #[test]
    fn only_our_label_and_our_controller_reference_make_a_secret_ours() {
        let ours = binding();
        assert!(
            !owned_by(&ours.metadata, "uid-2"),
            "another connection's (same name, new uid)"
        );
        let mut unlabelled = ours.clone();
        unlabelled.metadata.labels = None;
        assert!(
            !owned_by(&unlabelled.metadata, "uid-1"),
            "an ownerReference alone is not proof"
        );
        let mut foreign = ours.clone();
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Deployment".into(),
            name: "app".into(),
            uid: "uid-9".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(!owned_by(&foreign.metadata, "uid-1"));
        assert!(owner_of(&foreign.metadata).contains("Deployment \"app\""));
        assert!(owner_of(&Secret::default().metadata).contains("not created by"));
    }

    #[test]
    fn a_hand_edit_of_data_or_ownership_is_not_up_to_date_but_extra_labels_are() {
        let wanted = binding();
        assert!(up_to_date(&wanted, &wanted));
        let mut labelled = wanted.clone();
        labelled.labels_mut().insert("team".into(), "a".into());
        assert!(up_to_date(&labelled, &wanted));
        let mut edited = wanted.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"x".to_vec()));
        assert!(!up_to_date(&edited, &wanted));
        let mut orphaned = wanted.clone();
        orphaned.metadata.owner_references = None;
        assert!(!up_to_date(&orphaned, &wanted));
    }
}
