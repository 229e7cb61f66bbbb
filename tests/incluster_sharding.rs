//! Sharded replicas in the cluster (see tests/incluster.rs for what it needs): the chart with
//! three replicas and `sharding.shards`, connections through PgBouncer, each probed by exactly
//! one Pod; one Pod deleted, its connections probed by the others within the lease duration and
//! no Ready lost; the Deployment's new Pod given a share. Set DBCONN_SHARDED_CONNECTIONS for
//! more connections than the 60 `make test` uses. One test: it changes the one release.
#![cfg(feature = "incluster")]

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::{
    TestEnv,
    cluster::{Cluster, NAMESPACE, ReadyWatch, eventually_every},
};

const SHARDS: u32 = 6;
/// The operator's default `--lease-duration`, which the chart keeps.
const LEASE_DURATION: &str = "15s";
/// How often the Pods' /metrics are read while a takeover is timed: each read renders every
/// connection's series, which at thousands competes with the takeover for the CPU.
const LOOK_EVERY: Duration = Duration::from_millis(250);

fn count() -> usize {
    std::env::var("DBCONN_SHARDED_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(60)
}

/// The connections of `ns` that the operator in `pod` probes (has an up series for).
fn probed_by(cluster: &Cluster, pod: &str, ns: &str) -> Vec<String> {
    let prefix = format!("dbconn_connection_up{{namespace=\"{ns}\",name=\"");
    cluster
        .metrics_of(pod)
        .lines()
        .filter_map(|l| {
            l.strip_prefix(&prefix)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// Which Pods probe each connection.
fn owners(cluster: &Cluster, ns: &str) -> BTreeMap<String, Vec<String>> {
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in cluster.operator_pods() {
        for name in probed_by(cluster, &pod, ns) {
            owners.entry(name).or_default().push(pod.clone());
        }
    }
    owners
}

/// Every connection probed by exactly one Pod, and `replicas` Pods probing some.
fn split(cluster: &Cluster, ns: &str, replicas: usize) -> bool {
    let owners = owners(cluster, ns);
    let pods: BTreeSet<&String> = owners.values().flatten().collect();
    owners.len() == count() && owners.values().all(|o| o.len() == 1) && pods.len() == replicas
}

/// Connections whose Ready is not True.
fn not_ready(cluster: &Cluster, ns: &str) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "dbconn",
            "-n",
            ns,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])
        .lines()
        .filter(|l| !l.ends_with("=True"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn sharded_replicas_share_the_connections_and_take_over_a_deleted_pods() {
    let cluster = Cluster::get();
    let image = std::env::var("DBCONN_IMAGE").unwrap();
    let shards = format!("sharding.shards={SHARDS}");
    cluster.helm_upgrade(&image, &["replicaCount=3", &shards]);
    let ns = cluster.namespace("incluster-shards");
    let env = TestEnv::get();
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: login\nstringData:\n  username: {}\n  password: {}\n",
        env.var("POSTGRES_USER"),
        env.var("POSTGRES_PASSWORD")
    );
    for i in 0..count() {
        yaml.push_str(&format!(
            "---\napiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: c{i:04}\n\
             spec:\n  engine: postgres\n  uri: postgres://{}:{}/{}?sslmode=disable\n  \
             credentials:\n    secretRef:\n      name: login\n  healthCheck:\n    interval: 10s\n",
            cluster.var("CLUSTER_ADDR"),
            env.var("PGBOUNCER_PORT"),
            env.var("POSTGRES_DB"),
        ));
    }
    cluster.apply(&ns.name, &yaml);
    let ready = eventually_every(LOOK_EVERY, "every connection Ready", || {
        not_ready(cluster, &ns.name).is_empty()
    });
    let split_after = eventually_every(
        LOOK_EVERY,
        "each connection probed by exactly one of 3 Pods",
        || split(cluster, &ns.name, 3),
    );
    let per_pod: Vec<usize> = {
        let owners = owners(cluster, &ns.name);
        cluster
            .operator_pods()
            .iter()
            .map(|p| owners.values().filter(|o| o.contains(p)).count())
            .collect()
    };
    println!(
        "{} connections Ready after {ready:?}; split over 3 Pods {split_after:?} later: {per_pod:?}",
        count()
    );

    // A Pod deleted (gracefully, as a drain or a rollout does): it hands its shards back.
    let victim = cluster.operator_pods()[0].clone();
    let of_victim = owners(cluster, &ns.name)
        .values()
        .filter(|o| o.contains(&victim))
        .count();
    let watch = ReadyWatch::start(cluster, &ns.name, "c0000");
    cluster.kubectl(&["delete", "pod", "-n", NAMESPACE, &victim, "--wait=false"]);
    let taken_over = eventually_every(
        LOOK_EVERY,
        "the deleted Pod's connections probed by the others",
        || {
            let owners = owners(cluster, &ns.name);
            owners.len() == count() && owners.values().all(|o| o.len() == 1 && o[0] != victim)
        },
    );
    println!(
        "Pod {victim} deleted: its {of_victim} connections probed by the others {taken_over:?} later (lease duration {LEASE_DURATION})"
    );
    // The Deployment's replacement joins and is handed a share.
    let rebalanced = eventually_every(
        LOOK_EVERY,
        "three Pods sharing the connections again",
        || split(cluster, &ns.name, 3),
    );
    println!("a new Pod took a share {rebalanced:?} after that");
    let flapped = watch.stop();
    assert!(flapped.is_empty(), "Ready was lost meanwhile: {flapped:?}");

    // Back to the chart's defaults for the other in-cluster tests: first no replicas, so the
    // Pods hand their Leases back while their Role still allows it (the defaults take no
    // Lease, so no Lease Role). Leases left held would make the next sharded replicas wait a
    // lease duration before they count them as gone.
    cluster.scale_to_zero();
    cluster.helm_upgrade(&image, &[]);
}
