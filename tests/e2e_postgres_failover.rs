//! A PostgreSQL URI listing a primary and its streaming standby (a pair this test owns): status
//! shows both members with their roles and the standby's lag, `Degraded` tells a lagging or
//! lost member, and a failover (primary crashed, standby promoted) is followed onto the new
//! primary with an Event naming it.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Harness, condition_message, condition_reason, condition_status, events, eventually, kubectl_ok,
    pgpair::{Member, PgPair},
    secret_yaml,
};
use dbconn_operator::api::{DatabaseConnection, MemberStatus};
use kube::Api;

fn manifest(name: &str, uri: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: postgres\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: pair-login\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n    maxReplicationLag: 3s\n  retry:\n    initialDelay: 1s\n    maxDelay: 4s\n"
    )
}

fn members(obj: &DatabaseConnection) -> Vec<MemberStatus> {
    obj.status
        .as_ref()
        .map(|s| s.members.clone())
        .unwrap_or_default()
}

/// One series of a member metric from /metrics, if present.
async fn member_metric(h: &Harness, name: &str, member: &str) -> Option<f64> {
    let (_, text) = h.operator.http_get("/metrics").await;
    let needle = format!("member=\"{member}\"");
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn members_lag_and_a_failover_are_reported_and_followed() {
    let pair = Arc::new(PgPair::up("e2e-failover"));
    let h = Harness::start("pg-failover").await;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let primary = format!("127.0.0.1:{}", pair.primary_port);
    let standby = format!("127.0.0.1:{}", pair.standby_port);
    h.apply(&secret_yaml("pair-login", &pair.user, &pair.password));
    let uri = format!("{}?target_session_attrs=read-write", pair.uri());
    h.apply(&manifest("orders", &uri));

    // Both members, in the order listed, with their roles; sessions on the primary.
    let ready = h
        .wait("orders", "Degraded", "False", Some("AllMembersHealthy"))
        .await;
    assert_eq!(condition_status(&ready, "Ready"), "True");
    let found = members(&ready);
    assert_eq!(
        found
            .iter()
            .map(|m| (m.address.as_str(), m.role.as_str(), m.reachable, m.serving))
            .collect::<Vec<_>>(),
        [
            (primary.as_str(), "primary", true, true),
            (standby.as_str(), "standby", true, false)
        ]
    );
    assert_eq!(found[1].replication_lag.as_deref(), Some("0s"));
    assert!(condition_message(&ready, "Ready").contains(&primary));
    println!(
        "kubectl get dbconn -o yaml (status.members):\n{}",
        kubectl_ok(
            &[
                "get",
                "dbconn",
                "orders",
                "-n",
                &h.ns,
                "-o",
                "jsonpath={.status.members}"
            ],
            None
        )
    );
    assert_eq!(
        member_metric(&h, "dbconn_member_primary", &primary).await,
        Some(1.0)
    );
    assert_eq!(
        member_metric(&h, "dbconn_member_primary", &standby).await,
        Some(0.0)
    );

    // Lag: the standby stops replaying while a writer keeps the primary busy. It first replays
    // one transaction: lag in seconds counts from the last one replayed.
    pair.sql(
        Member::Primary,
        "INSERT INTO lag_probe (payload) VALUES ('first')",
    );
    eventually("the standby to replay a first row", async || {
        pair.sql(Member::Standby, "SELECT count(*) FROM lag_probe") != "0"
    })
    .await;
    pair.sql(Member::Standby, "SELECT pg_wal_replay_pause()");
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, pair) = (writing.clone(), pair.clone());
        tokio::task::spawn_blocking(move || {
            let mut rows = 0;
            while writing.load(Ordering::Relaxed) {
                pair.sql(
                    Member::Primary,
                    "INSERT INTO lag_probe (payload) SELECT repeat('x', 1000) FROM generate_series(1, 100)",
                );
                rows += 100;
                std::thread::sleep(Duration::from_millis(200));
            }
            rows
        })
    };
    let lagging = h
        .wait("orders", "Degraded", "True", Some("ReplicationLagging"))
        .await;
    let behind = members(&lagging)[1].clone();
    let message = condition_message(&lagging, "Degraded");
    println!("lagging: {behind:?}\n  Degraded: {message}");
    assert!(message.contains(&standby), "{message}");
    assert!(behind.replication_lag_bytes.unwrap_or(0) > 0, "{behind:?}");
    assert_eq!(
        condition_status(&lagging, "Ready"),
        "True",
        "a lagging standby takes no sessions"
    );
    let lag_bytes = member_metric(&h, "dbconn_member_replication_lag_bytes", &standby)
        .await
        .unwrap_or(0.0);
    assert!(lag_bytes > 0.0, "lag bytes metric {lag_bytes}");
    pair.sql(Member::Standby, "SELECT pg_wal_replay_resume()");
    writing.store(false, Ordering::Relaxed);
    let rows = writer.await.unwrap();
    let caught_up = h
        .wait("orders", "Degraded", "False", Some("AllMembersHealthy"))
        .await;
    println!(
        "replay resumed after {rows} rows written: standby lag {:?}",
        members(&caught_up)[1].replication_lag
    );

    // Failover: the primary crashes; read-write sessions have nowhere to go until the standby
    // is promoted; then they follow it.
    pair.stop(Member::Primary);
    let stopped = Instant::now();
    let lost = h
        .wait("orders", "Ready", "False", Some("NoSuitableMember"))
        .await;
    let message = condition_message(&lost, "Ready");
    assert!(
        message.contains(&format!("{standby} is standby")),
        "{message}"
    );
    assert_eq!(condition_reason(&lost, "Degraded"), "MemberUnreachable");
    assert_eq!(condition_status(&lost, "Reachable"), "True");
    println!(
        "primary stopped: Ready=False NoSuitableMember after {:?}\n  {message}",
        stopped.elapsed()
    );
    assert_eq!(
        member_metric(&h, "dbconn_member_up", &primary).await,
        Some(0.0)
    );

    pair.promote();
    let promoted = Instant::now();
    let followed = eventually("Ready on the promoted standby", async || {
        let obj = api.get("orders").await.unwrap();
        condition_status(&obj, "Ready") == "True"
            && members(&obj)
                .iter()
                .any(|m| m.address == standby && m.serving && m.role == "primary")
    })
    .await;
    println!(
        "standby promoted: Ready on it {followed:?} later, {:?} after the primary stopped (interval 5s, retry 1s..4s)",
        promoted.duration_since(stopped) + followed
    );
    let obj = api.get("orders").await.unwrap();
    assert_eq!(condition_reason(&obj, "Degraded"), "MemberUnreachable");
    assert!(condition_message(&obj, "Ready").contains(&standby));
    let moved = eventually("an Event naming the new primary", async || {
        events(&h.client, &h.ns, "ServingMemberChanged")
            .await
            .iter()
            .any(|e| e.note.as_deref().is_some_and(|n| n.contains(&standby)))
    })
    .await;
    println!("ServingMemberChanged Event after {moved:?} more");
    h.assert_secret_never_exposed(&pair.password);
}
