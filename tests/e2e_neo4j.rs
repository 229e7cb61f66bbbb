//! End to end against the real apiserver and the real Neo4j: the operator runs as a process,
//! manifests go in with kubectl, and the tests read what a user would read.

mod common;

use std::time::Duration;

use common::{
    Harness, TestEnv, condition_reason, kubectl_ok,
    neo4j::{create_user, unique_user},
    neo4j_connection_yaml,
    proxy::CountingProxy,
    secret_yaml,
};

#[tokio::test]
async fn example_manifest_becomes_ready_and_shows_the_server_version() {
    let h = Harness::start("example").await;

    // The user's way to wait, verbatim: `kubectl wait --for=condition=Ready`.
    let table = h.apply_example("neo4j.yaml", "graph");
    let header = table.lines().next().unwrap();
    for column in [
        "NAME", "ENGINE", "READY", "REASON", "VERSION", "LATENCY", "AGE",
    ] {
        assert!(header.contains(column), "missing column {column}: {header}");
    }
    let row = table.lines().nth(1).expect("one connection listed");
    assert!(
        row.contains("neo4j") && row.contains("True") && row.contains("Connected"),
        "{row}"
    );
    assert!(row.contains(" 5."), "no Neo4j 5 version in: {row}");

    let obj = h.wait("graph", "Ready", "True", None).await;
    let status = obj.status.unwrap();
    assert_eq!(status.observed_generation, obj.metadata.generation);
    assert_eq!(status.server.as_ref().unwrap().edition, "community");
    assert_eq!(
        status.credentials.as_ref().unwrap().secret_name,
        "graph-credentials"
    );
    let events = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &h.ns,
            "--field-selector",
            "reason=Connected",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        events.lines().count(),
        1,
        "one Connected event expected, got: {events}"
    );

    h.assert_secret_never_exposed(TestEnv::get().neo4j_password());
}

#[tokio::test]
async fn wrong_password_is_reported_and_not_hammered_then_fixed_by_a_secret_update() {
    let h = Harness::start("authfail").await;
    let user = unique_user("authfail");
    let (good, wrong) = ("right-password-1", "wrong-password-1");
    create_user(&user, good).await;
    let proxy = CountingProxy::start(TestEnv::get().neo4j_port()).await;

    h.apply(&secret_yaml("login", &user, wrong));
    h.apply(&neo4j_connection_yaml(
        "app",
        &format!("bolt://127.0.0.1:{}", proxy.port),
        "login",
    ));
    let failed = h
        .wait("app", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    assert_eq!(
        condition_reason(&failed, "CredentialsValid"),
        "AuthenticationFailed"
    );
    assert_eq!(condition_reason(&failed, "Stalled"), "AuthenticationFailed");
    let message = &failed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        message.contains("Secret"),
        "the message should say what to fix: {message}"
    );

    // The health check interval is 5 s; a hammering operator would log in a dozen times here.
    let after_failure = proxy.connections();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let attempts = proxy.connections() - after_failure;
    println!(
        "login attempts in the 20 s after the failure: {attempts} (connections so far: {})",
        proxy.connections()
    );
    assert!(
        attempts <= 1,
        "{attempts} login attempts in 20 s after an authentication failure"
    );

    h.apply(&secret_yaml("login", &user, good));
    h.wait("app", "Ready", "True", None).await;

    for password in [good, wrong] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn missing_secret_is_reported_then_picked_up_when_created() {
    let h = Harness::start("nosecret").await;
    let env = TestEnv::get();

    h.apply(&neo4j_connection_yaml(
        "late",
        env.neo4j_uri(),
        "late-login",
    ));
    let waiting = h
        .wait("late", "Ready", "False", Some("SecretNotFound"))
        .await;
    assert_eq!(condition_reason(&waiting, "Reconciling"), "SecretNotFound");

    h.apply(&secret_yaml(
        "late-login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.wait("late", "Ready", "True", None).await;
    h.assert_secret_never_exposed(env.neo4j_password());
}

#[tokio::test]
async fn missing_key_and_bad_uri_get_their_own_reasons() {
    let h = Harness::start("badinput").await;
    let env = TestEnv::get();

    h.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: nopass\nstringData:\n  username: neo4j\n",
    );
    h.apply(&neo4j_connection_yaml("nokey", env.neo4j_uri(), "nopass"));
    let obj = h
        .wait("nokey", "Ready", "False", Some("SecretKeyMissing"))
        .await;
    assert_eq!(condition_reason(&obj, "Stalled"), "SecretKeyMissing");

    // A port nobody listens on: refused at once.
    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&neo4j_connection_yaml(
        "deadport",
        "bolt://127.0.0.1:1",
        "login",
    ));
    let obj = h
        .wait("deadport", "Ready", "False", Some("Unreachable"))
        .await;
    assert_eq!(condition_reason(&obj, "Reachable"), "Unreachable");
    assert_eq!(condition_reason(&obj, "Reconciling"), "Unreachable");
}

#[tokio::test]
async fn malformed_manifests_are_rejected_by_the_apiserver_with_readable_messages() {
    common::install_crd();
    let client = common::client().await;
    let ns = common::TestNamespace::create(&client, "invalid").await;
    let base = neo4j_connection_yaml("bad", "bolt://127.0.0.1:7687", "login");
    let cases = [
        (
            "bad scheme",
            base.replace("bolt://127.0.0.1:7687", "http://127.0.0.1:7687"),
            "uri must look like bolt://host:7687",
        ),
        (
            "credentials in uri",
            base.replace("bolt://127.0.0.1", "bolt://neo4j:pw@127.0.0.1"),
            "with no credentials",
        ),
        (
            "unknown engine",
            base.replace("engine: neo4j", "engine: oracle"),
            "Unsupported value: \"oracle\"",
        ),
        (
            "negative pool size",
            format!("{base}  pool:\n    maxSize: -1\n"),
            "should be greater than or equal to 1",
        ),
        (
            "zero interval",
            base.replace("interval: 5s", "interval: 0s"),
            "healthCheck.interval must be at least 1s",
        ),
        (
            "malformed duration",
            base.replace("timeout: 3s", "timeout: soon"),
            "spec.healthCheck.timeout",
        ),
        (
            "inverted retry bounds",
            format!("{base}  retry:\n    initialDelay: 30s\n    maxDelay: 1s\n"),
            "retry.maxDelay must not be shorter",
        ),
    ];
    common::assert_rejected(&ns.name, &cases);
}
