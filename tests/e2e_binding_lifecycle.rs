//! The binding Secret as an owned child, against the real apiserver and Neo4j: a Secret of that
//! name that is not the connection's is reported and never touched (not written, adopted or
//! deleted, not even when the connection goes); once it is gone the operator writes its own; its
//! own is put back at once when deleted or edited by hand; a binding name that is the login
//! Secret's is an invalid spec.

mod common;

use std::{collections::BTreeMap, time::Instant};

use common::{
    Harness, TestEnv, condition_message, condition_reason, events, eventually, kubectl_ok,
    neo4j_connection_yaml, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};

/// The test Neo4j login in Secret `login`, and connection `name` (probed every 5 s) publishing
/// its binding under the default name `<name>-binding`.
fn bound(h: &Harness, name: &str) {
    h.neo4j_login("login");
    let connection = neo4j_connection_yaml(name, TestEnv::get().neo4j_uri(), "login");
    h.apply(&format!("{connection}  binding: {{}}\n"));
}

fn secrets(h: &Harness) -> Api<Secret> {
    Api::namespaced(h.client.clone(), &h.ns)
}

fn text(secret: &Secret, key: &str) -> String {
    let value = secret.data.as_ref().and_then(|data| data.get(key));
    String::from_utf8(value.map(|v| v.0.clone()).unwrap_or_default()).unwrap()
}

/// Successful probes so far, summed over the operator's connections.
async fn probes(h: &Harness) -> f64 {
    h.operator
        .metric("dbconn_probe_duration_seconds_count")
        .await
}

/// Waits until the operator has probed `count` more times than now.
async fn wait_for_probes(h: &Harness, count: f64) {
    let target = probes(h).await + count;
    eventually(&format!("{count} more probes"), async || {
        probes(h).await >= target
    })
    .await;
}

/// Fails unless the Secret is exactly as it was: same resourceVersion, so no write at all, and
/// the same type, data, labels and owners.
async fn assert_untouched(h: &Harness, before: &Secret, when: &str) {
    let now = secrets(h)
        .get(before.metadata.name.as_deref().unwrap())
        .await
        .unwrap_or_else(|e| panic!("the foreign Secret is gone {when}: {e}"));
    assert_eq!(
        now.metadata.resource_version, before.metadata.resource_version,
        "the foreign Secret was written {when}"
    );
    assert_eq!(
        serde_json::to_value(&now).unwrap(),
        serde_json::to_value(before).unwrap(),
        "the foreign Secret changed {when}"
    );
}

/// The conflict, seen the way a user sees it: Ready, `BindingReady=False/BindingConflict` naming
/// the Secret, no binding in status, and a Warning Event.
async fn assert_conflict(h: &Harness, name: &str, secret: &str, owner_words: &str) {
    let obj = h
        .wait(name, "BindingReady", "False", Some("BindingConflict"))
        .await;
    assert_eq!(condition_reason(&obj, "Ready"), "Connected");
    let message = condition_message(&obj, "BindingReady");
    assert!(
        message.contains(&format!("{secret:?}")) && message.contains(owner_words),
        "the message names the Secret and whose it is: {message}"
    );
    let status = obj.status.as_ref().unwrap();
    assert!(
        status.binding.is_none(),
        "status claims {:?}",
        status.binding
    );
    let uid = obj.metadata.uid.clone();
    eventually(
        "a Warning Event BindingConflict on the connection",
        async || {
            events(&h.client, &h.ns, "BindingConflict")
                .await
                .iter()
                .any(|e| {
                    e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().and_then(|r| r.uid.clone()) == uid
                        && e.note.as_deref().is_some_and(|n| n.contains(secret))
                })
        },
    )
    .await;
}

/// A Secret someone else put under the binding name is reported and never touched; when the
/// connection is deleted it stays; when it is deleted, the operator writes its own.
async fn a_foreign_secret_is_left_alone(prefix: &str, foreign: Secret, owner_words: &str) {
    let h = Harness::start(prefix).await;
    let before = secrets(&h)
        .create(&PostParams::default(), &foreign)
        .await
        .expect("create the foreign Secret");
    let name = "graph";
    let secret = "graph-binding";
    bound(&h, name);
    assert_conflict(&h, name, secret, owner_words).await;
    // A few probes later (the binding is checked again on every reconcile), nothing written.
    wait_for_probes(&h, 3.0).await;
    assert_untouched(&h, &before, "while the connection ran").await;

    kubectl_ok(
        &["delete", "-n", &h.ns, "databaseconnection", name, "--wait"],
        None,
    );
    eventually("the operator to see the delete", async || {
        h.operator.logs().contains("connection deleted")
    })
    .await;
    assert_untouched(&h, &before, "after the connection was deleted").await;

    // A new object of the same name is not the old one: the Secret is still not its.
    bound(&h, name);
    assert_conflict(&h, name, secret, owner_words).await;
    assert_untouched(&h, &before, "after the connection came back").await;

    secrets(&h)
        .delete(secret, &Default::default())
        .await
        .expect("delete the foreign Secret");
    let deleted = Instant::now();
    let obj = h
        .wait(name, "BindingReady", "True", Some("BindingWritten"))
        .await;
    println!(
        "{prefix}: foreign Secret deleted -> BindingReady=True in {:?} (probe interval 5s)",
        deleted.elapsed()
    );
    let ours = secrets(&h).get(secret).await.unwrap();
    assert_ne!(ours.metadata.uid, before.metadata.uid);
    assert_owned(&ours, &obj);
    assert_eq!(
        obj.status.unwrap().binding.map(|b| b.name).as_deref(),
        Some(secret)
    );
}

/// `secret` is the connection's binding: its controller reference, its label, its login.
fn assert_owned(secret: &Secret, obj: &DatabaseConnection) {
    let owners = secret.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners.iter().any(|o| o.kind == "DatabaseConnection"
            && Some(&o.uid) == obj.metadata.uid.as_ref()
            && o.controller == Some(true)),
        "not controlled by the connection: {owners:?}"
    );
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("dbconn-operator")
    );
    assert_eq!(secret.type_.as_deref(), Some("servicebinding.io/neo4j"));
    assert_eq!(text(secret, "password"), TestEnv::get().neo4j_password());
}

fn foreign_secret(type_: &str, labels: &[(&str, &str)], owner: Option<OwnerReference>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some("graph-binding".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(BTreeMap::from([
            ("uri".into(), ByteString(b"bolt://elsewhere:7687".to_vec())),
            ("password".into(), ByteString(b"not-ours-at-all".to_vec())),
        ])),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_foreign_opaque_secret_is_reported_and_never_touched() {
    let foreign = foreign_secret("Opaque", &[("team", "payments")], None);
    a_foreign_secret_is_left_alone(
        "binding-opaque",
        foreign,
        "it was not created by this DatabaseConnection",
    )
    .await;
}

/// The most deceptive case: our type, our label and a controller reference to a connection of
/// the same name, but of another uid (as a deleted connection's binding would be, before the
/// garbage collector got to it).
#[tokio::test]
async fn a_foreign_servicebinding_secret_with_our_label_is_reported_and_never_touched() {
    let owner = OwnerReference {
        api_version: "dbconn.dev/v1alpha1".into(),
        kind: "DatabaseConnection".into(),
        name: "graph".into(),
        uid: "00000000-0000-0000-0000-000000000001".into(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let foreign = foreign_secret(
        "servicebinding.io/neo4j",
        &[("app.kubernetes.io/managed-by", "dbconn-operator")],
        Some(owner),
    );
    a_foreign_secret_is_left_alone(
        "binding-sb",
        foreign,
        "it is controlled by DatabaseConnection \"graph\"",
    )
    .await;
}

#[tokio::test]
async fn our_binding_deleted_or_edited_by_hand_is_put_back_at_once() {
    let h = Harness::start("binding-repair").await;
    bound(&h, "graph");
    let obj = h
        .wait("graph", "BindingReady", "True", Some("BindingWritten"))
        .await;
    let api = secrets(&h);
    let first = api.get("graph-binding").await.unwrap();
    assert_owned(&first, &obj);

    api.delete("graph-binding", &Default::default())
        .await
        .unwrap();
    let recreated = eventually(
        "the deleted binding Secret to be written again",
        async || {
            let now = api.get_opt("graph-binding").await.unwrap();
            now.is_some_and(|s| s.metadata.uid != first.metadata.uid)
        },
    )
    .await;
    let second = api.get("graph-binding").await.unwrap();
    assert_owned(&second, &obj);

    let patch = serde_json::json!({"stringData": {"password": "edited-by-hand"}});
    let edited = api
        .patch(
            "graph-binding",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(text(&edited, "password"), "edited-by-hand");
    let restored = eventually("the edited binding Secret to be put back", async || {
        let now = api.get("graph-binding").await.unwrap();
        text(&now, "password") == TestEnv::get().neo4j_password()
    })
    .await;
    let third = api.get("graph-binding").await.unwrap();
    assert_owned(&third, &obj);
    assert_eq!(third.metadata.uid, second.metadata.uid, "repaired in place");
    println!(
        "binding repair: deleted -> recreated in {recreated:?}, edited -> restored in {restored:?} (probe interval 5s)"
    );
    let obj = h
        .wait("graph", "BindingReady", "True", Some("BindingWritten"))
        .await;
    assert_eq!(condition_reason(&obj, "Ready"), "Connected");
}

#[tokio::test]
async fn a_default_binding_name_that_is_the_login_secret_is_an_invalid_spec() {
    let h = Harness::start("binding-name").await;
    let env = TestEnv::get();
    // The login lives in "app-binding", the name the binding of "app" would take by default.
    h.apply(&secret_yaml(
        "app-binding",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    let login = secrets(&h).get("app-binding").await.unwrap();
    let connection = neo4j_connection_yaml("app", env.neo4j_uri(), "app-binding");
    h.apply(&format!("{connection}  binding: {{}}\n"));
    let obj = h.wait("app", "Ready", "False", Some("InvalidSpec")).await;
    let message = condition_message(&obj, "Ready");
    assert!(
        message.contains("spec.binding.secretName") && message.contains("\"app-binding\""),
        "the message names the field and the Secret: {message}"
    );
    assert_eq!(condition_reason(&obj, "Stalled"), "InvalidSpec");
    let now = secrets(&h).get("app-binding").await.unwrap();
    assert_eq!(
        now.metadata.resource_version, login.metadata.resource_version,
        "the login Secret was written"
    );
}

/// `spec.binding.secretName` renamed, then renamed to a name someone else holds, then
/// `spec.binding` removed: the operator deletes only Secrets it wrote, and the applications keep
/// the last binding that was written until a new one is.
#[tokio::test]
async fn renaming_and_removing_the_binding_deletes_only_our_secrets() {
    let h = Harness::start("binding-rename").await;
    let connection = neo4j_connection_yaml("app", TestEnv::get().neo4j_uri(), "login");
    let with_binding = |binding: &str| format!("{connection}  binding: {binding}\n");
    h.neo4j_login("login");
    h.apply(&with_binding("{}"));
    h.wait("app", "BindingReady", "True", Some("BindingWritten"))
        .await;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let status_names = async |expected: &str| {
        let obj = api.get("app").await.unwrap();
        obj.status
            .and_then(|s| s.binding)
            .map(|b| b.name)
            .as_deref()
            == Some(expected)
    };

    // Renamed: the new Secret is written and the old one, ours, deleted.
    h.apply(&with_binding("{secretName: app-renamed}"));
    let took = eventually("the binding to move to app-renamed", async || {
        secrets(&h).get_opt("app-binding").await.unwrap().is_none()
            && secrets(&h).get_opt("app-renamed").await.unwrap().is_some()
            && status_names("app-renamed").await
    })
    .await;
    let obj = api.get("app").await.unwrap();
    assert_owned(&secrets(&h).get("app-renamed").await.unwrap(), &obj);
    println!("binding renamed: new written and old deleted after {took:?}");

    // Renamed to a name someone else holds: a conflict; theirs untouched, ours kept meanwhile.
    let mut foreign = foreign_secret("Opaque", &[("team", "payments")], None);
    foreign.metadata.name = Some("taken".into());
    let theirs = secrets(&h)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    h.apply(&with_binding("{secretName: taken}"));
    assert_conflict_named(&h, "taken").await;
    assert!(
        status_names("app-renamed").await,
        "the written binding stays reported"
    );
    assert!(secrets(&h).get_opt("app-renamed").await.unwrap().is_some());
    assert_untouched(&h, &theirs, "after the rename onto it").await;

    // spec.binding removed: ours deleted, theirs left, the condition gone.
    h.apply(&connection);
    eventually("our binding Secret to be deleted", async || {
        secrets(&h).get_opt("app-renamed").await.unwrap().is_none()
    })
    .await;
    eventually("status to drop the binding and BindingReady", async || {
        let obj = api.get("app").await.unwrap();
        let status = obj.status.unwrap_or_default();
        status.binding.is_none() && !status.conditions.iter().any(|c| c.type_ == "BindingReady")
    })
    .await;
    assert_untouched(&h, &theirs, "after spec.binding was removed").await;
}

/// `BindingReady=False/BindingConflict` naming `secret`.
async fn assert_conflict_named(h: &Harness, secret: &str) {
    let obj = h
        .wait("app", "BindingReady", "False", Some("BindingConflict"))
        .await;
    let message = condition_message(&obj, "BindingReady");
    assert!(message.contains(&format!("{secret:?}")), "{message}");
}
