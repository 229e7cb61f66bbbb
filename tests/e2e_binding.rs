//! The service binding Secret against the real apiserver and Neo4j: written from verified
//! credentials, rewritten on rotation, owned by the DatabaseConnection.

mod common;

use std::time::{Duration, Instant};

use common::{
    Harness, TestEnv, kubectl_ok,
    neo4j::{create_user, set_password, unique_user},
    secret_yaml,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

fn value(secret: &Secret, key: &str) -> String {
    let data = secret.data.as_ref().expect("binding has data");
    String::from_utf8(
        data.get(key)
            .unwrap_or_else(|| panic!("binding lacks {key}"))
            .0
            .clone(),
    )
    .unwrap()
}

async fn binding_with_password(secrets: &Api<Secret>, name: &str, password: &str) -> Secret {
    let deadline = Instant::now() + common::CONDITION_TIMEOUT;
    loop {
        if let Some(secret) = secrets.get_opt(name).await.unwrap()
            && value(&secret, "password") == password
        {
            return secret;
        }
        assert!(
            Instant::now() < deadline,
            "binding {name} never carried the expected password"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn example_binding_is_written_owned_and_follows_rotation() {
    let h = Harness::start("binding").await;
    for example in ["neo4j.yaml", "neo4j-binding.yaml"] {
        let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
        kubectl_ok(&["apply", "-n", &h.ns, "-f", &path], None);
    }
    let obj = h.wait("graph-app", "Ready", "True", None).await;
    assert_eq!(
        obj.status.as_ref().unwrap().binding.as_ref().unwrap().name,
        "graph-app-binding"
    );
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let env = TestEnv::get();
    let binding = binding_with_password(&secrets, "graph-app-binding", env.neo4j_password()).await;
    assert_eq!(binding.type_.as_deref(), Some("servicebinding.io/neo4j"));
    for (key, expected) in [
        ("type", "neo4j"),
        ("provider", "dbconn-operator"),
        ("host", "127.0.0.1"),
        ("username", "neo4j"),
    ] {
        assert_eq!(value(&binding, key), expected, "{key}");
    }
    assert_eq!(value(&binding, "uri"), env.neo4j_uri());
    let owner = &binding.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("DatabaseConnection", obj.metadata.uid.as_deref().unwrap())
    );

    // Rotation, with a login of its own so the shared admin password stays put.
    let user = unique_user("binding");
    create_user(&user, "binding-old-1").await;
    h.apply(&secret_yaml("app-login", &user, "binding-old-1"));
    h.apply(&format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: rotating\nspec:\n  engine: neo4j\n  uri: {}\n  credentials:\n    secretRef:\n      name: app-login\n  binding: {{}}\n",
        env.neo4j_uri()
    ));
    binding_with_password(&secrets, "rotating-binding", "binding-old-1").await;
    set_password(&user, "binding-new-2").await;
    h.apply(&secret_yaml("app-login", &user, "binding-new-2"));
    binding_with_password(&secrets, "rotating-binding", "binding-new-2").await;

    // A rotation to a wrong password never reaches the application.
    h.apply(&secret_yaml("app-login", &user, "binding-typo-3"));
    h.wait(
        "rotating",
        "CredentialsValid",
        "False",
        Some("AuthenticationFailed"),
    )
    .await;
    let still = secrets.get("rotating-binding").await.unwrap();
    assert_eq!(value(&still, "password"), "binding-new-2");
    for password in ["binding-old-1", "binding-new-2", "binding-typo-3"] {
        h.assert_secret_never_exposed(password);
    }
}
