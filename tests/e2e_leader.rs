//! Two operator replicas against the real apiserver: only the Lease holder reconciles, and the
//! standby takes over when the leader dies.

mod common;

use std::time::{Duration, Instant};

use common::{Operator, TestEnv, TestNamespace, apply, neo4j_connection_yaml, secret_yaml};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("dbconn-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn only_the_leader_reconciles_and_the_standby_takes_over_when_it_dies() {
    common::install_crd();
    let client = common::client().await;
    let ns = TestNamespace::create(&client, "leader").await.name;
    let flags = |id: &'static str| {
        [
            "--leader-election",
            "true",
            "--lease-namespace",
            ns.as_str(),
            "--lease-duration",
            "4s",
            "--identity",
            id,
        ]
    };
    let mut a = Operator::start_with(&ns, "-a", &flags("replica-a"));
    let b_flags = flags("replica-b");
    let mut b = Operator::start_with(&ns, "-b", &b_flags);
    let env = TestEnv::get();
    apply(
        &ns,
        &secret_yaml("login", env.var("NEO4J_USER"), env.neo4j_password()),
    );
    apply(
        &ns,
        &neo4j_connection_yaml("graph", env.neo4j_uri(), "login"),
    );

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
