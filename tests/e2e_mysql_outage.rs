//! Stops the real MariaDB under a Ready `mysql` connection and starts it again. In a test binary
//! of its own: cargo runs test binaries one after another, so no other test sees the outage.

mod common;

use std::time::Instant;

use common::{
    Harness, TestEnv, condition_reason,
    fault::Outage,
    mariadb::{connection_yaml, uri},
    secret_yaml,
};

#[tokio::test]
async fn mariadb_outage_turns_unreachable_and_recovers_without_operator_restart() {
    let mut h = Harness::start("my-outage").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("MARIADB_USER"),
        env.var("MARIADB_PASSWORD"),
    ));
    // interval 5s, timeout 3s, failureThreshold 1 (see mariadb::connection_yaml)
    h.apply(&connection_yaml("inventory", &uri("dbconn"), "login"));
    h.wait("inventory", "Ready", "True", None).await;

    // Started again by `end`, or on drop if an assertion fails first.
    let outage = Outage::stop("mariadb");
    let stopped = Instant::now();
    let down = h
        .wait("inventory", "Ready", "False", Some("Unreachable"))
        .await;
    println!(
        "MariaDB stopped -> Ready=False/Unreachable in {:?} (interval 5s + timeout 3s)",
        stopped.elapsed()
    );
    assert_eq!(condition_reason(&down, "Reachable"), "Unreachable");

    outage.end();
    let started = Instant::now();
    let up = h.wait("inventory", "Ready", "True", None).await;
    println!("MariaDB started -> Ready=True in {:?}", started.elapsed());
    assert_eq!(condition_reason(&up, "Ready"), "Connected");
    assert!(
        h.operator.is_running(),
        "the operator recovered without a restart"
    );
    h.assert_secret_never_exposed(env.var("MARIADB_PASSWORD"));
}
