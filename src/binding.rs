//! The service binding Secret (servicebinding.io layout): what an application mounts to reach
//! the database. Written only from credentials the operator has just verified, so a rotation
//! to a wrong password never reaches the applications.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams},
};

use crate::{
    api::DatabaseConnection, controller::FIELD_MANAGER, credentials::Credentials,
    settings::ConnectionSettings,
};

/// The Secret's name: `spec.binding.secretName`, or `<connection>-binding`.
pub fn secret_name(obj: &DatabaseConnection) -> Option<String> {
    let binding = obj.spec.binding.as_ref()?;
    Some(
        binding
            .secret_name
            .clone()
            .unwrap_or_else(|| format!("{}-binding", obj.name_any())),
    )
}

/// The binding Secret for `obj`, owned by it so that it is garbage collected with it.
pub fn desired(
    obj: &DatabaseConnection,
    name: &str,
    settings: &ConnectionSettings,
    credentials: &Credentials,
) -> Secret {
    let (host, port) = settings
        .endpoint
        .rsplit_once(':')
        .unwrap_or((&settings.endpoint, ""));
    let engine = obj.spec.engine.as_str();
    let mut entries = vec![
        ("type", engine.to_owned()),
        ("provider", FIELD_MANAGER.to_owned()),
        ("host", host.to_owned()),
        ("port", port.to_owned()),
        ("uri", settings.uri.clone()),
        ("username", credentials.username.clone()),
        ("password", credentials.password.expose().to_owned()),
    ];
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
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    FIELD_MANAGER.to_owned(),
                ),
                ("dbconn.dev/connection".to_owned(), obj.name_any()),
            ])),
            owner_references: obj.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(format!("servicebinding.io/{engine}")),
        data: Some(data),
        ..Default::default()
    }
}

/// Writes the binding Secret with server-side apply.
pub async fn write(client: &Client, secret: &Secret) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &secret.namespace().unwrap_or_default());
    let mut body = serde_json::to_value(secret).expect("a Secret serializes");
    body["apiVersion"] = "v1".into();
    body["kind"] = "Secret".into();
    api.patch(
        &secret.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

/// Deletes a binding Secret the operator wrote, once `spec.binding` is removed.
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::BindingSpec, credentials::SecretString, fixtures};

    fn connection() -> DatabaseConnection {
        let mut obj = DatabaseConnection::new("graph", fixtures::neo4j_spec("login"));
        obj.metadata.namespace = Some("apps".into());
        obj.metadata.uid = Some("uid-1".into());
        obj.spec.binding = Some(BindingSpec::default());
        obj
    }

    #[test]
    fn the_binding_holds_the_servicebinding_keys_and_is_owned_by_the_connection() {
        let obj = connection();
        let credentials = Credentials {
            username: "neo4j".into(),
            password: SecretString::new("pw"),
            secret_name: "login".into(),
            secret_resource_version: "1".into(),
            ca_pem: None,
        };
        let name = secret_name(&obj).unwrap();
        assert_eq!(name, "graph-binding");
        let secret = desired(&obj, &name, &fixtures::neo4j_settings(), &credentials);
        let data = secret.data.unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(text("type"), "neo4j");
        assert_eq!(
            (text("host").as_str(), text("port").as_str()),
            ("127.0.0.1", "7687")
        );
        assert_eq!(text("password"), "pw");
        assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/neo4j"));
        let owner = &secret.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("DatabaseConnection", "uid-1", Some(true))
        );
    }
}
