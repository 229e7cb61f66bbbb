//! Crashes the real PostgreSQL (immediate shutdown: every server process gets SIGQUIT, no
//! checkpoint, crash recovery on the next start) under a Ready connection, starts it again, and
//! checks that the connection comes back on a fresh session with the same operator process. In
//! a test binary of its own: no other test sees the crash.

mod common;

use std::time::Instant;

use common::{
    Harness, condition_reason, eventually,
    fault::Outage,
    postgres::{self, connection_yaml, create_role, sessions_of, unique_role, uri},
    report, secret_yaml,
};

#[tokio::test]
async fn postgres_crash_and_restart_is_survived_without_operator_restart() {
    let mut h = Harness::start("fault-pg").await;
    let role = unique_role("fault");
    let password = "fault-pg-pw-1";
    create_role(&role, password).await;
    h.apply(&secret_yaml("login", &role, password));
    // interval 5s, timeout 3s, failureThreshold 1
    h.apply(&connection_yaml("orders", &uri("dbconn"), "login"));
    let before = h.wait("orders", "Ready", "True", Some("Connected")).await;
    eventually(
        "the operator's session to show in pg_stat_activity",
        async || sessions_of(&role).await >= 1,
    )
    .await;

    // The test cluster trades durability for speed (synchronous_commit = off): a crash may drop
    // the last commits, here the role itself. A crash test of the operator assumes a server that
    // kept what it committed, so the role is written out before the crash.
    postgres::admin()
        .await
        .batch_execute("CHECKPOINT")
        .await
        .expect("CHECKPOINT");
    let outage = Outage::kill("postgres");
    let killed = Instant::now();
    let down = h.wait("orders", "Ready", "False", None).await;
    let noticed = killed.elapsed();
    let reason = condition_reason(&down, "Ready");
    assert!(
        matches!(reason.as_str(), "Unreachable" | "Timeout"),
        "reason {reason}"
    );
    let failures = down.status.as_ref().unwrap().probe.as_ref().unwrap();
    assert!(failures.consecutive_failures >= 1);

    outage.end();
    let answered = Instant::now();
    let up = h.wait("orders", "Ready", "True", Some("Connected")).await;
    let back = answered.elapsed();
    let status = up.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, up.metadata.generation);
    assert_eq!(
        status.probe.as_ref().map_or(0, |p| p.consecutive_failures),
        0,
        "the failure count is reset"
    );
    assert_eq!(status.server, before.status.as_ref().unwrap().server);
    assert_eq!(condition_reason(&up, "Reachable"), "Connected");
    // The restarted server has no session from before the crash: this one is new.
    eventually("a session on the restarted server", async || {
        sessions_of(&role).await >= 1
    })
    .await;
    assert!(
        h.operator.is_running(),
        "the operator recovered without a restart"
    );
    h.assert_secret_never_exposed(password);
    println!(
        "Ready=False/{reason} {noticed:?} after the crash; Ready again {back:?} after PostgreSQL answered"
    );

    report::record(
        "fault",
        "PostgreSQL crashed (immediate shutdown) and restarted",
        "survived",
        &format!(
            "Ready=False/{reason} {:.1} s after the crash; Ready=True on a new session {:.1} s after PostgreSQL answered; same operator process",
            noticed.as_secs_f64(),
            back.as_secs_f64()
        ),
    );
}
