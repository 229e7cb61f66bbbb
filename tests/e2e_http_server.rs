//! The `http` engine against the shared nginx while the tests change it: its password rotated,
//! its process stopped and started, its connections counted. In a test binary of its own:
//! cargo runs test binaries one after another, so no other test sees the changes; the tests
//! here run one at a time (a lock) and put the server back as they found it.

mod common;

use std::time::{Duration, Instant};

use common::{
    Harness, TestEnv, condition_reason,
    fault::Outage,
    http::{connection_yaml, counters, set_password, uri},
    secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;
use tokio::sync::Mutex;

static SERVER: Mutex<()> = Mutex::const_new(());

/// Puts the environment's basic-auth password back, also when an assertion fails: later test
/// binaries and the examples log in with it.
struct Restore<'a>(&'a str, &'a str);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        set_password(self.0, self.1);
    }
}

#[tokio::test]
async fn a_rotated_password_takes_effect_live() {
    let _server = SERVER.lock().await;
    let h = Harness::start("http-rotate").await;
    let env = TestEnv::get();
    let (user, old, new) = (
        env.var("HTTP_USER"),
        env.var("HTTP_PASSWORD"),
        "http-rotated-pw-2",
    );
    h.apply(&secret_yaml("login", user, old));
    h.apply(&connection_yaml(
        "graph",
        &uri("/basic/healthcheck"),
        Some("login"),
        "",
    ));
    let before = h.wait("graph", "Ready", "True", None).await;
    let version = |obj: &DatabaseConnection| {
        obj.status
            .as_ref()
            .and_then(|s| s.credentials.as_ref())
            .map(|c| c.secret_resource_version.clone())
            .unwrap_or_default()
    };
    let old_version = version(&before);

    // The way a password is rotated: the server first, then the Secret.
    let _restore = Restore(user, old);
    set_password(user, new);
    let rotated = Instant::now();
    h.apply(&secret_yaml("login", user, new));
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    common::eventually("the new Secret version in use and Ready", async || {
        let obj = api.get("graph").await.unwrap();
        version(&obj) != old_version && condition_reason(&obj, "Ready") == "Connected"
    })
    .await;
    println!(
        "rotation in effect {:?} after the Secret update",
        rotated.elapsed()
    );
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn probes_reuse_one_connection() {
    let _server = SERVER.lock().await;
    let h = Harness::start("http-keepalive").await;
    let fast = connection_yaml("graph", &uri("/healthcheck"), None, "")
        .replace("interval: 5s", "interval: 1s");
    h.apply(&fast);
    h.wait("graph", "Ready", "True", None).await;
    let (accepts_before, requests_before) = counters().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (accepts_after, requests_after) = counters().await;
    // Each reading is a connection and a request of its own.
    let probes = requests_after - requests_before - 1;
    let connections = accepts_after - accepts_before - 1;
    println!("{probes} probes over {connections} new connections in 8 s");
    assert!(probes >= 4, "about one probe a second: {probes}");
    assert!(
        connections <= 1,
        "keep-alive: {probes} probes opened {connections} connections"
    );
}

#[tokio::test]
async fn nginx_outage_turns_unreachable_and_recovers_without_operator_restart() {
    let _server = SERVER.lock().await;
    let mut h = Harness::start("http-outage").await;
    h.apply(&connection_yaml("graph", &uri("/healthcheck"), None, ""));
    h.wait("graph", "Ready", "True", None).await;

    let outage = Outage::stop("nginx");
    let stopped = Instant::now();
    let down = h.wait("graph", "Ready", "False", Some("Unreachable")).await;
    println!("nginx stopped -> Unreachable in {:?}", stopped.elapsed());
    assert_eq!(condition_reason(&down, "Reachable"), "Unreachable");

    outage.end();
    let started = Instant::now();
    h.wait("graph", "Ready", "True", None).await;
    println!("nginx started -> Ready in {:?}", started.elapsed());
    assert!(h.operator.is_running(), "no operator restart");
}
