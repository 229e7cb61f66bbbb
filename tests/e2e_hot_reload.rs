//! Hot reload against the real apiserver and Neo4j: rotated Secrets and edited specs take
//! effect in the running operator, old logins are not kept, and a healthy connection costs no
//! status writes.

mod common;

use std::time::Duration;

use common::{
    Harness, TestEnv, condition_reason, condition_status, eventually, kubectl_ok,
    neo4j::{create_user, set_password, unique_user},
    neo4j_connection_yaml, only_latency_moved_materially,
    proxy::CountingProxy,
    secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};

fn credentials_version(obj: &DatabaseConnection) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.credentials.as_ref())
        .map(|c| c.secret_resource_version.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn rotated_password_is_used_live_and_the_old_pool_is_closed() {
    let mut h = Harness::start("rotate").await;
    let user = unique_user("rotate");
    let (old, new) = ("rotation-old-1", "rotation-new-2");
    create_user(&user, old).await;
    let proxy = CountingProxy::start(TestEnv::get().neo4j_port()).await;
    h.apply(&secret_yaml("login", &user, old));
    h.apply(&neo4j_connection_yaml(
        "app",
        &format!("bolt://127.0.0.1:{}", proxy.port),
        "login",
    ));
    h.wait("app", "Ready", "True", None).await;

    // The way a password is rotated: the server first, then the Secret.
    set_password(&user, new).await;
    h.apply(&secret_yaml("login", &user, new));
    let version = h.secret_version("login").await;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    eventually("status to report the new Secret version", async || {
        let obj = api.get("app").await.unwrap();
        credentials_version(&obj) == version && condition_reason(&obj, "Ready") == "Connected"
    })
    .await;
    eventually("the old pool's connection to close", async || {
        proxy.open_connections() == 1
    })
    .await;
    let events = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &h.ns,
            "--field-selector",
            "reason=CredentialsReloaded",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        events.lines().count(),
        1,
        "one CredentialsReloaded event: {events}"
    );
    assert!(h.operator.is_running(), "no operator restart");
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn rotation_to_a_wrong_password_says_so_and_keeps_no_old_login() {
    let h = Harness::start("badrotate").await;
    let user = unique_user("badrotate");
    create_user(&user, "rotation-good-1").await;
    let proxy = CountingProxy::start(TestEnv::get().neo4j_port()).await;
    h.apply(&secret_yaml("login", &user, "rotation-good-1"));
    h.apply(&neo4j_connection_yaml(
        "app",
        &format!("bolt://127.0.0.1:{}", proxy.port),
        "login",
    ));
    h.wait("app", "Ready", "True", None).await;

    h.apply(&secret_yaml("login", &user, "rotation-typo-1"));
    let obj = h
        .wait(
            "app",
            "CredentialsValid",
            "False",
            Some("AuthenticationFailed"),
        )
        .await;
    assert_eq!(condition_reason(&obj, "Ready"), "AuthenticationFailed");
    // The pool with the old, working login was dropped, not kept in reserve.
    eventually("every connection to close", async || {
        proxy.open_connections() == 0
    })
    .await;
    h.assert_secret_never_exposed("rotation-good-1");
    h.assert_secret_never_exposed("rotation-typo-1");
}

#[tokio::test]
async fn uri_edits_take_effect_and_metrics_follow_until_deletion() {
    let h = Harness::start("edit").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    let manifest = neo4j_connection_yaml("graph", env.neo4j_uri(), "login");
    h.apply(&manifest);
    h.wait("graph", "Ready", "True", None).await;
    let up = |value: u8| {
        format!(
            "dbconn_connection_up{{namespace=\"{}\",name=\"graph\",engine=\"neo4j\"}} {value}",
            h.ns
        )
    };
    let (status, metrics) = h.operator.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains(&up(1)), "{metrics}");
    assert_eq!(h.operator.http_get("/readyz").await.0, 200);
    assert_eq!(h.operator.http_get("/healthz").await.0, 200);

    h.apply(&manifest.replace(env.neo4j_uri(), "bolt://127.0.0.1:1"));
    let down = h.wait("graph", "Ready", "False", Some("Unreachable")).await;
    assert_eq!(
        down.status.as_ref().unwrap().observed_generation,
        down.metadata.generation
    );
    let (_, metrics) = h.operator.http_get("/metrics").await;
    assert!(metrics.contains(&up(0)), "{metrics}");
    let failures = format!(
        "dbconn_probe_failures_total{{namespace=\"{}\",name=\"graph\",engine=\"neo4j\",reason=\"Unreachable\"}}",
        h.ns
    );
    assert!(metrics.contains(&failures), "{metrics}");

    h.apply(&manifest);
    h.wait("graph", "Ready", "True", None).await;

    kubectl_ok(&["delete", "dbconn", "graph", "-n", &h.ns], None);
    eventually("the deleted connection's series to disappear", async || {
        !h.operator
            .http_get("/metrics")
            .await
            .1
            .contains("name=\"graph\"")
    })
    .await;
}

/// A Ready connection rides out a few failed probes (`failureThreshold`, 3 here), but only
/// under the spec that earned it: an edit that points it at no server must never show Ready=True
/// with the new generation observed, or `kubectl wait` and kstatus would pass a broken spec.
/// A watch sees every status written in between (found by the soak, issue 19).
#[tokio::test]
async fn an_edit_to_a_dead_uri_is_never_ready_under_the_new_generation() {
    let h = Harness::start("edit-dead").await;
    let env = TestEnv::get();
    h.neo4j_login("login");
    let manifest = neo4j_connection_yaml("graph", env.neo4j_uri(), "login")
        .replace("failureThreshold: 1", "failureThreshold: 3");
    h.apply(&manifest);
    let ready = h.wait("graph", "Ready", "True", None).await;
    let edited = ready.metadata.generation.unwrap() + 1;

    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let watch = tokio::spawn(async move {
        let mut versions = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(obj)) = versions.next().await {
            sink.lock().unwrap().push(obj);
        }
    });
    h.apply(&manifest.replace(env.neo4j_uri(), "bolt://127.0.0.1:1"));
    h.wait("graph", "Ready", "False", Some("Unreachable")).await;
    // The watch delivers in order: once it has the not-Ready status, it has all before it.
    eventually("the watch to see the not-Ready status", async || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|o| condition_status(o, "Ready") == "False")
    })
    .await;
    watch.abort();
    let seen = seen.lock().unwrap();
    let false_ready: Vec<_> = seen
        .iter()
        .filter(|o| o.status.as_ref().and_then(|s| s.observed_generation) == Some(edited))
        .filter(|o| condition_status(o, "Ready") == "True")
        .map(|o| serde_json::to_string(&o.status).unwrap())
        .collect();
    assert!(
        false_ready.is_empty(),
        "Ready=True with generation {edited} (a URI with no server) observed: {false_ready:?}"
    );
}

#[tokio::test]
async fn a_healthy_connection_is_probed_without_status_writes() {
    let h = Harness::start("steady").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    let manifest = neo4j_connection_yaml("graph", env.neo4j_uri(), "login")
        .replace("interval: 5s", "interval: 1s");
    h.apply(&manifest);
    h.wait("graph", "Ready", "True", None).await;
    // Steady state: wait until the status has stood for longer than a latency window (5
    // probes, 1 s apart): a freshly started Neo4j's latency moves as its JIT warms up, and
    // that move is worth its write. Then watch.
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let mut before = api.get("graph").await.unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let now = api.get("graph").await.unwrap();
        if now.metadata.resource_version == before.metadata.resource_version {
            break;
        }
        before = now;
    }
    let probes_before = h
        .operator
        .metric("dbconn_probe_duration_seconds_count")
        .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = api.get("graph").await.unwrap();
    let probes_after = h
        .operator
        .metric("dbconn_probe_duration_seconds_count")
        .await;
    println!("probes in the window: {}", probes_after - probes_before);
    assert!(
        probes_after - probes_before >= 3.0,
        "the connection was probed ({probes_before} -> {probes_after})"
    );
    let ready = |o: &DatabaseConnection| {
        o.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
    };
    assert_eq!(
        ready(&before),
        ready(&after),
        "Ready kept its lastTransitionTime"
    );
    // Only a latency that really tripled (a loaded machine) may be written, and nothing else.
    let (old, new) = (
        serde_json::to_value(&before.status).unwrap(),
        serde_json::to_value(&after.status).unwrap(),
    );
    let written = before.metadata.resource_version != after.metadata.resource_version;
    assert!(
        !written || only_latency_moved_materially(&old, &new),
        "no status write while nothing changed:\nbefore: {old}\nafter: {new}"
    );
    if written {
        println!(
            "the latency moved: {} -> {}",
            old["probe"]["latency"], new["probe"]["latency"]
        );
    }
}
