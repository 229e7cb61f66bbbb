//! Security behaviour end to end, against the real apiserver and Neo4j: turning certificate
//! verification off is shown as `TLSVerified=False` and announced once by a Warning Event.

mod common;

use std::time::{Duration, Instant};

use common::{CONDITION_TIMEOUT, Harness, TestEnv, kubectl_ok, neo4j_connection_yaml, report};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;
use serde_json::Value;

/// The events.k8s.io Events of the namespace with this reason.
fn events(ns: &str, reason: &str) -> Vec<Value> {
    let list: Value = serde_json::from_str(&kubectl_ok(
        &["get", "events.events.k8s.io", "-n", ns, "-o", "json"],
        None,
    ))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason)
        .cloned()
        .collect()
}

#[tokio::test]
async fn insecure_tls_is_a_false_condition_and_one_warning_event() {
    let h = Harness::start("insecure-tls").await;
    let env = TestEnv::get();
    h.apply(&common::secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    // The test Neo4j speaks plain Bolt, so the TLS handshake itself fails; what matters here is
    // what the operator reports about a spec that turns verification off.
    let insecure = neo4j_connection_yaml(
        "graph",
        &format!("bolt+ssc://127.0.0.1:{}", env.neo4j_port()),
        "login",
    );
    h.apply(&insecure);
    let obj = h
        .wait("graph", "TLSVerified", "False", Some("InsecureSkipVerify"))
        .await;
    let status = obj.status.unwrap();
    let condition = status.conditions.iter().find(|c| c.type_ == "TLSVerified");
    let message = &condition.unwrap().message;
    assert!(message.contains("spec.tls.caSecretRef"), "{message}");

    // Several probes later, still one Event: it marks the start, not every probe.
    h.wait("graph", "Ready", "False", None).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let announced = events(&h.ns, "InsecureTLS");
    assert_eq!(announced.len(), 1, "{announced:#?}");
    let event = &announced[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "graph");
    assert!(
        event["series"].is_null(),
        "announced more than once: {event:#}"
    );
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("spec.tls.caSecretRef"),
        "{event:#}"
    );

    // Verification back on (here: plain Bolt, no TLS at all): the condition goes.
    h.apply(&insecure.replace("bolt+ssc://", "bolt://"));
    h.wait("graph", "Ready", "True", None).await;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    loop {
        let status = api.get("graph").await.unwrap().status.unwrap();
        if status.conditions.iter().all(|c| c.type_ != "TLSVerified") {
            break;
        }
        assert!(Instant::now() < deadline, "TLSVerified stayed: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(events(&h.ns, "InsecureTLS").len(), 1);
    h.assert_secret_never_exposed(env.neo4j_password());
    report::record(
        "security",
        "insecureSkipVerify end to end (bolt+ssc://)",
        "reported",
        "TLSVerified=False with the fix in its message, one InsecureTLS Warning Event; removed once verification is back",
    );
}
