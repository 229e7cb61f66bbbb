//! Stops the real Neo4j under a Ready connection and starts it again. In a test binary of its
//! own: cargo runs test binaries one after another, so no other test sees the outage.

mod common;

use std::time::Instant;

use common::{Harness, TestEnv, condition_reason, fault::Outage};

#[tokio::test]
async fn neo4j_outage_turns_unreachable_and_recovers_without_operator_restart() {
    let mut h = Harness::start("outage").await;
    let env = TestEnv::get();
    // interval 5s, timeout 3s, failureThreshold 1 (see neo4j_connection_yaml)
    h.ready_neo4j("graph", "login").await;

    // Started again by `end`, or on drop if an assertion fails first.
    let outage = Outage::stop("neo4j");
    let stopped = Instant::now();
    let down = h.wait("graph", "Ready", "False", None).await;
    println!(
        "Neo4j stopped -> Ready=False in {:?} (interval 5s + timeout 3s)",
        stopped.elapsed()
    );
    let reason = condition_reason(&down, "Ready");
    assert!(
        matches!(reason.as_str(), "Unreachable" | "Timeout"),
        "reason {reason}"
    );
    assert_eq!(condition_reason(&down, "Reachable"), reason);

    outage.end();
    let started = Instant::now();
    h.wait("graph", "Ready", "True", None).await;
    println!("Neo4j started -> Ready=True in {:?}", started.elapsed());
    assert!(
        h.operator.is_running(),
        "the operator recovered without a restart"
    );
    h.assert_secret_never_exposed(env.neo4j_password());
}
