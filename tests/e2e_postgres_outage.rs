//! Stops the real PostgreSQL under a Ready connection and starts it again. In a test binary of
//! its own: cargo runs test binaries one after another, so no other test sees the outage.

mod common;

use std::time::Instant;

use common::{
    Harness, TestEnv, condition_reason,
    fault::Outage,
    postgres::{connection_yaml, uri},
    secret_yaml,
};

#[tokio::test]
async fn postgres_outage_turns_unreachable_and_recovers_without_operator_restart() {
    let mut h = Harness::start("pg-outage").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("POSTGRES_USER"),
        env.var("POSTGRES_PASSWORD"),
    ));
    // interval 5s, timeout 3s, failureThreshold 1 (see postgres::connection_yaml)
    h.apply(&connection_yaml("orders", &uri("dbconn"), "login"));
    h.wait("orders", "Ready", "True", None).await;

    // Started again by `end`, or on drop if an assertion fails first.
    let outage = Outage::stop("postgres");
    let stopped = Instant::now();
    // A probe that lands while the server shuts down may first see 57P03 (TransientError);
    // once it is down, the connection is refused.
    let down = h
        .wait("orders", "Ready", "False", Some("Unreachable"))
        .await;
    println!(
        "PostgreSQL stopped -> Ready=False/Unreachable in {:?} (interval 5s + timeout 3s)",
        stopped.elapsed()
    );
    assert_eq!(condition_reason(&down, "Reachable"), "Unreachable");
    assert_eq!(condition_reason(&down, "Reconciling"), "Unreachable");

    outage.end();
    let started = Instant::now();
    let up = h.wait("orders", "Ready", "True", None).await;
    println!(
        "PostgreSQL started -> Ready=True in {:?}",
        started.elapsed()
    );
    assert_eq!(condition_reason(&up, "Ready"), "Connected");
    assert!(
        h.operator.is_running(),
        "the operator recovered without a restart"
    );
    h.assert_secret_never_exposed(env.var("POSTGRES_PASSWORD"));
}
