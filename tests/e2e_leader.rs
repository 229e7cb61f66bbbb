//! Two operator replicas against the real apiserver: only the Lease holder reconciles, the
//! standby takes over when the leader dies, and a leader cut off by a silent network stops
//! before the standby takes over.

mod common;

use std::time::{Duration, Instant};

use common::{
    Operator, TestEnv, TestNamespace, apply, eventually, fault::apiserver_partition,
    neo4j_connection_yaml, secret_yaml,
};
use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::Api;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("dbconn-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// The flags of replica `id`, electing a leader through a Lease in `ns` lasting `lease`.
fn replica<'a>(ns: &'a str, id: &'a str, lease: &'a str) -> [&'a str; 8] {
    [
        "--leader-election",
        "true",
        "--lease-namespace",
        ns,
        "--lease-duration",
        lease,
        "--identity",
        id,
    ]
}

/// A connection `graph` in `ns`, on the test Neo4j login, for the leader to reconcile.
fn graph(ns: &str) {
    let env = TestEnv::get();
    let login = secret_yaml("login", env.var("NEO4J_USER"), env.neo4j_password());
    apply(ns, &login);
    apply(
        ns,
        &neo4j_connection_yaml("graph", env.neo4j_uri(), "login"),
    );
}

#[tokio::test]
async fn only_the_leader_reconciles_and_the_standby_takes_over_when_it_dies() {
    common::install_crd();
    let client = common::client().await;
    let ns = TestNamespace::create(&client, "leader").await.name;
    let mut a = Operator::start_with(&ns, "-a", &replica(&ns, "replica-a", "4s"));
    let mut b = Operator::start_with(&ns, "-b", &replica(&ns, "replica-b", "4s"));
    graph(&ns);

    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader_id = loop {
        if let Some(id) = holder(&leases).await {
            break id;
        }
        assert!(Instant::now() < deadline, "no replica took the lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (leader, standby) = if leader_id == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while leader.metric("dbconn_status_writes_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the leader wrote no status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        standby.metric("dbconn_reconciles_total").await,
        0.0,
        "the standby reconciled"
    );
    assert_eq!(
        standby.http_get("/readyz").await.0,
        200,
        "a standby is ready"
    );

    leader.kill();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(60);
    while standby.metric("dbconn_reconciles_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the standby never took over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "failover: leader killed -> standby reconciling in {:?} (lease duration 4s)",
        killed.elapsed()
    );
    let new_holder = holder(&leases).await.unwrap_or_default();
    assert_ne!(new_holder, leader_id, "the lease moved to the standby");
    assert!(standby.is_running());
}

/// The lease as it stands: its holder and when that holder acquired it.
async fn lease_record(leases: &Api<Lease>) -> Option<(String, Timestamp)> {
    let spec = leases.get_opt("dbconn-operator").await.ok()??.spec?;
    Some((spec.holder_identity?, spec.acquire_time?.0))
}

/// Leadership ends before the lease does. The leader's apiserver traffic is held: connections
/// stay open, nothing passes, no error arrives, as on a network that drops packets silently. The
/// leader must notice that it has not renewed within the renew deadline (2/3 of the lease) and
/// exit before the standby, which waits for the lease record to stand still for a whole lease
/// duration, takes over. Timestamps on one clock: the exit as the test first saw it (no earlier
/// than the exit itself) against the standby's own `acquireTime` (taken before its write).
#[tokio::test]
async fn a_leader_on_a_silent_network_exits_before_the_standby_takes_over() {
    common::install_crd();
    let client = common::client().await;
    let ns = TestNamespace::create(&client, "leader-hold").await.name;
    let kubeconfig = std::env::temp_dir().join(format!("dbconn-kubeconfig-{ns}"));
    let apiserver = apiserver_partition(&kubeconfig).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let mut leader = Operator::start_on(
        &ns,
        "-a",
        &replica(&ns, "replica-a", "6s"),
        kubeconfig.to_str().unwrap(),
    );
    eventually("replica-a to take the lease", async || {
        holder(&leases).await.as_deref() == Some("replica-a")
    })
    .await;
    let standby = Operator::start_with(&ns, "-b", &replica(&ns, "replica-b", "6s"));
    graph(&ns);
    eventually("the leader to write status", async || {
        leader.metric("dbconn_status_writes_total").await >= 1.0
    })
    .await;
    eventually("the standby to stand by", async || {
        standby.logs().contains("standing by")
    })
    .await;

    apiserver.hold();
    let held = Timestamp::now();
    let mut exited = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken = loop {
        assert!(
            Instant::now() < deadline,
            "no takeover within 60 s (leader exited at {exited:?})"
        );
        if exited.is_none() && !leader.is_running() {
            exited = Some(Timestamp::now());
        }
        if let Some((id, acquired)) = lease_record(&leases).await
            && id == "replica-b"
        {
            break acquired;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Seen exiting only now, it may still have exited first: its exit is no later than now.
    let exited = exited
        .or_else(|| (!leader.is_running()).then(Timestamp::now))
        .unwrap_or_else(|| {
            panic!("the standby took the lease at {taken}; the old leader still runs")
        });
    let seconds = |t: Timestamp| t.duration_since(held).as_secs_f64();
    println!(
        "leader traffic held at 0 s: leader exited by {:.2} s, standby acquired the lease at {:.2} s (lease 6 s, renew deadline 4 s)",
        seconds(exited),
        seconds(taken)
    );
    assert!(
        exited < taken,
        "the standby took the lease at {taken} while the old leader was still running (seen exiting at {exited})"
    );
    let logs = leader.logs();
    assert!(
        logs.contains("stepping down") && logs.contains("leadership lost; exiting"),
        "the leader's log says why it went:\n{logs}"
    );
    eventually("the standby to reconcile", async || {
        standby.metric("dbconn_reconciles_total").await >= 1.0
    })
    .await;
    let _ = std::fs::remove_file(&kubeconfig);
}
