//! The operator loses the apiserver and gets it back, twice, and misses nothing:
//!
//! 1. Partition: the operator reaches the apiserver through a proxy that the test cuts. While
//!    the operator is cut off, the test rotates a password (Neo4j first, then the Secret), edits
//!    a spec, creates a connection and deletes the Secret another one logs in with, all through
//!    the real apiserver. After the cut heals, every one of those changes must take effect. This is the honest form of "rotated while the
//!    apiserver was down": a Secret cannot be written while the apiserver itself is down, but
//!    here it is written while the operator cannot see it.
//! 2. Restart: the real kube-apiserver is stopped and started (etcd stays up). While it is down
//!    the password changes in Neo4j; the Secret is updated the moment the apiserver answers
//!    again, while the operator's watches are still backing off (the log shows their errors),
//!    and the operator must end on the new credentials.
//!
//! 3. A refused login while the operator is cut off from the apiserver: the status write that
//!    follows fails, and the retries after it must re-send that report without logging in
//!    again before the account's retry time (no authentication storm during an outage); once
//!    the apiserver is back, status must say AuthenticationFailed without waiting for that time.
//!
//! The first two end with Ready=True on the Secret's new resourceVersion, the same operator process, and
//! /healthz and /readyz answering 200 throughout (an apiserver outage is not the operator's
//! fault: restarting it would not help, so it stays ready and keeps probing its databases).
//! In a test binary of its own: the restart would disturb every other test.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{
    Harness, Operator, TestEnv, condition_reason, eventually,
    fault::{Outage, Partition},
    kubectl_ok,
    neo4j::{create_user, set_password, unique_user},
    neo4j_connection_yaml,
    proxy::CountingProxy,
    report, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;

/// Ready=True/Connected on the Secret's resourceVersion `version`, for this generation.
async fn wait_on_credentials(h: &Harness, name: &str, version: &str) -> Duration {
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    eventually(
        &format!("{name} to be Ready on Secret resourceVersion {version}"),
        async || {
            let obj = api.get(name).await.unwrap();
            let status = obj.status.as_ref();
            let used = status
                .and_then(|s| s.credentials.as_ref())
                .map(|c| c.secret_resource_version.as_str());
            used == Some(version)
                && condition_reason(&obj, "Ready") == "Connected"
                && status.and_then(|s| s.observed_generation) == obj.metadata.generation
        },
    )
    .await
}

/// The operator answers /healthz and /readyz with 200 and has not exited.
async fn assert_alive_and_ready(operator: &mut Operator, when: &str) {
    assert!(operator.is_running(), "the operator exited {when}");
    assert_eq!(
        operator.http_get("/healthz").await.0,
        200,
        "/healthz {when}"
    );
    assert_eq!(operator.http_get("/readyz").await.0, 200, "/readyz {when}");
}

fn watch_errors(operator: &Operator) -> usize {
    operator
        .logs()
        .lines()
        .filter(|l| l.contains("controller error"))
        .count()
}

#[tokio::test]
async fn apiserver_partition_and_restart_lose_no_change() {
    partition().await;
    restart().await;
    refused_login_while_cut_off().await;
}

/// A namespace and an operator that reaches the apiserver only through a proxy the test can cut;
/// the kubeconfig that points the operator at the proxy is for the caller to remove.
async fn cut_off_harness(prefix: &str) -> (Harness, Partition, PathBuf) {
    let proxy = Partition::start(TestEnv::get().apiserver_port()).await;
    let kubeconfig =
        std::env::temp_dir().join(format!("dbconn-kubeconfig-{prefix}-{}", proxy.port));
    TestEnv::get().kubeconfig_via(proxy.port, &kubeconfig);
    let h = Harness::start_via(prefix, &kubeconfig).await;
    (h, proxy, kubeconfig)
}

async fn partition() {
    let (mut h, proxy, kubeconfig) = cut_off_harness("fault-partition").await;
    let env = TestEnv::get();
    let user = unique_user("partition");
    let (old, new) = ("partition-old-1", "partition-new-2");
    create_user(&user, old).await;
    h.apply(&secret_yaml("login", &user, old));
    h.apply(&secret_yaml(
        "admin",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&secret_yaml(
        "doomed",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&neo4j_connection_yaml("rotated", env.neo4j_uri(), "login"));
    let edited = neo4j_connection_yaml("edited", env.neo4j_uri(), "admin");
    h.apply(&edited);
    h.apply(&neo4j_connection_yaml(
        "orphaned",
        env.neo4j_uri(),
        "doomed",
    ));
    for name in ["rotated", "edited", "orphaned"] {
        h.wait(name, "Ready", "True", None).await;
    }
    let errors_before = watch_errors(&h.operator);

    proxy.cut();
    let cut = Instant::now();
    eventually(
        "the operator to notice the cut (watch errors in its log)",
        async || watch_errors(&h.operator) > errors_before,
    )
    .await;
    set_password(&user, new).await;
    h.apply(&secret_yaml("login", &user, new));
    let version = h.secret_version("login").await;
    h.apply(&edited.replace("interval: 5s", "interval: 4s"));
    h.apply(&neo4j_connection_yaml("late", env.neo4j_uri(), "admin"));
    // A delete the broken watch cannot deliver: only the re-list (or a direct read) shows it.
    kubectl_ok(&["delete", "secret", "-n", &h.ns, "doomed"], None);
    // Long enough for the watches to back off between reconnection attempts.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_alive_and_ready(&mut h.operator, "while cut off from the apiserver").await;
    let cut_for = cut.elapsed();

    proxy.heal().await;
    let healed = Instant::now();
    let rotated = wait_on_credentials(&h, "rotated", &version).await;
    h.wait("late", "Ready", "True", Some("Connected")).await;
    h.wait("orphaned", "Ready", "False", Some("SecretNotFound"))
        .await;
    let edited = h.wait("edited", "Ready", "True", Some("Connected")).await;
    assert_eq!(edited.metadata.generation, Some(2));
    assert_eq!(
        edited.status.as_ref().unwrap().observed_generation,
        Some(2),
        "the spec edit made while cut off was seen"
    );
    let caught_up = healed.elapsed();
    assert_alive_and_ready(&mut h.operator, "after the partition").await;
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
    let _ = std::fs::remove_file(&kubeconfig);
    println!(
        "partition: cut for {cut_for:?}; after healing, rotation in effect in {rotated:?}, all four changes in {caught_up:?}"
    );
    report::record(
        "fault",
        "operator cut off from the apiserver (partition); Secret rotated, spec edited, connection created, Secret deleted meanwhile",
        "survived",
        &format!(
            "cut for {:.1} s; all 4 changes in effect {:.1} s after healing; 0 missed; same operator process",
            cut_for.as_secs_f64(),
            caught_up.as_secs_f64()
        ),
    );
}

async fn restart() {
    let mut h = Harness::start("fault-apiserver").await;
    let env = TestEnv::get();
    let user = unique_user("apirestart");
    let (old, new) = ("apiserver-old-1", "apiserver-new-2");
    create_user(&user, old).await;
    h.apply(&secret_yaml("login", &user, old));
    h.apply(&neo4j_connection_yaml("rotated", env.neo4j_uri(), "login"));
    h.wait("rotated", "Ready", "True", None).await;
    let errors_before = watch_errors(&h.operator);

    let outage = Outage::stop("apiserver");
    let stopped = Instant::now();
    set_password(&user, new).await;
    eventually(
        "the operator to notice the outage (watch errors in its log)",
        async || watch_errors(&h.operator) > errors_before,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_alive_and_ready(&mut h.operator, "while the apiserver is down").await;
    outage.end();
    let down_for = stopped.elapsed();
    // At once, before the operator's watches are back.
    h.apply(&secret_yaml("login", &user, new));
    let updated = Instant::now();
    let version = h.secret_version("login").await;
    let errors_at_update = watch_errors(&h.operator);

    wait_on_credentials(&h, "rotated", &version).await;
    let in_effect = updated.elapsed();
    assert_alive_and_ready(&mut h.operator, "after the apiserver restart").await;
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
    println!(
        "apiserver down for {down_for:?} (stop + start); watch errors logged: {} by the Secret update; rotation in effect {in_effect:?} after it",
        errors_at_update - errors_before
    );
    report::record(
        "fault",
        "kube-apiserver restarted; password rotated in Neo4j meanwhile, Secret updated as it came back",
        "survived",
        &format!(
            "down {:.1} s; new credentials in effect {:.1} s after the Secret update (read directly while the Secret watch listed afresh); 0 missed; same operator process, /readyz 200 throughout",
            down_for.as_secs_f64(),
            in_effect.as_secs_f64()
        ),
    );
}

async fn refused_login_while_cut_off() {
    let (h, apiserver, kubeconfig) = cut_off_harness("fault-login").await;
    let env = TestEnv::get();
    // Operator -> counting proxy (each Bolt login is a new connection) -> cuttable proxy -> Neo4j.
    let neo4j = Partition::start(env.neo4j_port()).await;
    let logins = CountingProxy::start(neo4j.port).await;
    neo4j.cut();
    let wrong = "cut-off-wrong-password";
    h.apply(&secret_yaml("login", env.var("NEO4J_USER"), wrong));
    let uri = format!("bolt://127.0.0.1:{}", logins.port);
    h.apply(&neo4j_connection_yaml("refused", &uri, "login"));
    h.wait("refused", "Ready", "False", Some("Unreachable"))
        .await;

    apiserver.cut();
    neo4j.heal().await;
    let before = logins.connections();
    let window = Duration::from_secs(30);
    tokio::time::sleep(window).await;
    let attempts = logins.connections() - before;
    apiserver.heal().await;
    let healed = Instant::now();
    h.wait("refused", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    let reported = healed.elapsed();
    assert!(
        attempts >= 1,
        "no login was attempted in {window:?}: the scenario did not happen"
    );
    assert_eq!(
        attempts, 1,
        "{attempts} logins in {window:?} while status could not be written: each failed status write led to another login"
    );
    h.assert_secret_never_exposed(wrong);
    let _ = std::fs::remove_file(&kubeconfig);
    println!(
        "refused login while cut off: {attempts} login in {window:?}; AuthenticationFailed shown {reported:?} after the apiserver came back"
    );
    report::record(
        "fault",
        "refused login while the operator is cut off from the apiserver (status write fails)",
        "survived",
        &format!(
            "{attempts} login attempt in {} s (no storm); AuthenticationFailed in status {:.1} s after the cut healed",
            window.as_secs(),
            reported.as_secs_f64()
        ),
    );
}
