//! Replicas split the connections (issue 19). With `--shards`, each replica holds some of the
//! shard Leases and reconciles (and probes) only the connections of its shards; a replica that
//! crashes or stops has its shards taken over by the others, and a new one gets its share.
//! With `--selector`, replicas split by label. "Who probes a connection" is read from each
//! replica's /metrics: a connection has series only in the replica that probes it.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::{
    Operator, TestEnv, TestNamespace, apply, client, eventually, install_crd,
    neo4j_connection_yaml, secret_yaml,
};
use dbconn_operator::{api::DatabaseConnection, conditions};
use kube::{Api, api::ListParams};

const CONNECTIONS: usize = 24;
const SHARDS: &str = "6";
const LEASE_DURATION: Duration = Duration::from_secs(6);

/// How many successful probes each connection had, by name, as one replica's /metrics says.
async fn probes_by_name(operator: &Operator, ns: &str) -> BTreeMap<String, f64> {
    let (_, text) = operator.http_get("/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("dbconn_probe_duration_seconds_count{"))
        .filter(|l| l.contains(&format!("namespace=\"{ns}\"")))
        .filter_map(|l| {
            let name = l.split("name=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// Which replicas (by index) have series for each connection.
async fn owners(replicas: &[Option<Operator>], ns: &str) -> BTreeMap<String, Vec<usize>> {
    let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, replica) in replicas.iter().enumerate() {
        let Some(replica) = replica else { continue };
        for name in probes_by_name(replica, ns).await.into_keys() {
            owners.entry(name).or_default().push(i);
        }
    }
    owners
}

/// True when the running replicas probe every connection, each by exactly one of them.
async fn split_exactly(replicas: &[Option<Operator>], ns: &str) -> bool {
    let owners = owners(replicas, ns).await;
    owners.len() == CONNECTIONS && owners.values().all(|o| o.len() == 1)
}

/// As [`split_exactly`], with every running replica probing some.
async fn split_among_all(replicas: &[Option<Operator>], ns: &str) -> bool {
    let owners = owners(replicas, ns).await;
    let busy = |i: usize| owners.values().any(|o| o == &[i]);
    split_exactly(replicas, ns).await
        && replicas
            .iter()
            .enumerate()
            .all(|(i, r)| r.is_none() || busy(i))
}

async fn not_ready(api: &Api<DatabaseConnection>) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .expect("list connections")
        .items
        .iter()
        .filter(|c| {
            let conditions = c.status.as_ref().map(|s| &s.conditions[..]).unwrap_or(&[]);
            conditions::find(conditions, conditions::READY).is_none_or(|r| r.status != "True")
        })
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn start_replica(ns: &str, identity: &str) -> Operator {
    let duration = format!("{}s", LEASE_DURATION.as_secs());
    Operator::start_with(
        ns,
        &format!("-{identity}"),
        &[
            "--shards",
            SHARDS,
            "--lease-name",
            "dbconn-shards",
            "--lease-namespace",
            ns,
            "--lease-duration",
            &duration,
            "--identity",
            identity,
        ],
    )
}

async fn status_writes(replicas: &[Option<Operator>]) -> f64 {
    let mut writes = 0.0;
    for replica in replicas.iter().flatten() {
        writes += replica.metric("dbconn_status_writes_total").await;
    }
    writes
}

#[tokio::test]
async fn replicas_split_the_shards_and_take_over_those_of_a_replica_gone() {
    install_crd();
    let env = TestEnv::get();
    let client = client().await;
    let ns = TestNamespace::create(&client, "shards").await.name;
    apply(
        &ns,
        &secret_yaml("login", env.var("NEO4J_USER"), env.neo4j_password()),
    );
    let manifests: Vec<String> = (0..CONNECTIONS)
        .map(|i| neo4j_connection_yaml(&format!("c{i:02}"), env.neo4j_uri(), "login"))
        .collect();
    apply(&ns, &manifests.join("---\n"));
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), &ns);

    let mut replicas: Vec<Option<Operator>> = ["a", "b", "c"]
        .iter()
        .map(|id| Some(start_replica(&ns, id)))
        .collect();
    eventually("all connections Ready", async || {
        not_ready(&api).await.is_empty()
    })
    .await;
    let split = eventually(
        "each connection probed by exactly one replica",
        async || split_exactly(&replicas, &ns).await,
    )
    .await;
    let per_replica: Vec<usize> = {
        let owners = owners(&replicas, &ns).await;
        (0..3)
            .map(|i| owners.values().filter(|o| o.contains(&i)).count())
            .collect()
    };
    println!(
        "3 replicas: split after {split:?} more (once all were Ready), connections per replica {per_replica:?}"
    );

    // Steady state: over several probe intervals, no connection is probed by two replicas.
    let writes_before = status_writes(&replicas).await;
    let mut before = Vec::new();
    for replica in replicas.iter().flatten() {
        before.push(probes_by_name(replica, &ns).await);
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut probed_by: BTreeMap<String, usize> = BTreeMap::new();
    for (replica, before) in replicas.iter().flatten().zip(&before) {
        for (name, count) in probes_by_name(replica, &ns).await {
            if count > before.get(&name).copied().unwrap_or(0.0) {
                *probed_by.entry(name).or_default() += 1;
            }
        }
    }
    assert_eq!(probed_by.len(), CONNECTIONS, "every connection was probed");
    let twice: Vec<_> = probed_by.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "probed by two replicas: {twice:?}");
    let steady_writes = status_writes(&replicas).await - writes_before;
    // Writes here could only be latency figures that moved materially (on a loaded machine).
    println!(
        "steady state, 12 s: every connection probed by one replica, {steady_writes} status writes"
    );

    // A crash: its shards are taken over once their Leases expire.
    let crashed: BTreeSet<String> = owners(&replicas, &ns)
        .await
        .into_iter()
        .filter(|(_, o)| o == &[0])
        .map(|(name, _)| name)
        .collect();
    replicas[0].as_mut().unwrap().kill();
    replicas[0] = None;
    let mut flapped = BTreeSet::new();
    let took_over = eventually(
        "the crashed replica's connections probed by the others",
        async || {
            flapped.extend(not_ready(&api).await);
            split_exactly(&replicas, &ns).await
        },
    )
    .await;
    println!(
        "replica a killed (SIGKILL): its {} connections probed by b and c again after {took_over:?} (lease duration {LEASE_DURATION:?})",
        crashed.len()
    );
    assert!(flapped.is_empty(), "Ready went away meanwhile: {flapped:?}");

    // A graceful stop (a Pod deleted): its shards are handed back at once.
    replicas[1].as_mut().unwrap().terminate();
    replicas[1] = None;
    let took_over = eventually("replica c to probe every connection", async || {
        flapped.extend(not_ready(&api).await);
        split_exactly(&replicas, &ns).await
    })
    .await;
    println!("replica b stopped (SIGTERM): c probes all {CONNECTIONS} after {took_over:?}");
    assert!(flapped.is_empty(), "Ready went away meanwhile: {flapped:?}");

    // A new replica: c hands it a share.
    let joining = start_replica(&ns, "d");
    let port = joining.http_port;
    eventually("replica d to serve /metrics", async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    replicas.push(Some(joining));
    let rebalanced = eventually("replica d to take a share from c", async || {
        split_among_all(&replicas, &ns).await
    })
    .await;
    let owners = owners(&replicas, &ns).await;
    let of_d = owners.values().filter(|o| o == &&[3]).count();
    println!("replica d started: it probes {of_d} of {CONNECTIONS} after {rebalanced:?}");
    assert!(not_ready(&api).await.is_empty(), "all still Ready");
}

#[tokio::test]
async fn replicas_given_disjoint_selectors_split_by_label() {
    install_crd();
    let env = TestEnv::get();
    let client = client().await;
    let ns = TestNamespace::create(&client, "selector").await.name;
    apply(
        &ns,
        &secret_yaml("login", env.var("NEO4J_USER"), env.neo4j_password()),
    );
    for (name, team) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("none", "")] {
        let mut yaml = neo4j_connection_yaml(name, env.neo4j_uri(), "login");
        if !team.is_empty() {
            yaml = yaml.replacen(
                &format!("  name: {name}\n"),
                &format!("  name: {name}\n  labels:\n    team: {team}\n"),
                1,
            );
        }
        apply(&ns, &yaml);
    }
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), &ns);
    let team_a = Operator::start_with(&ns, "-team-a", &["--selector", "team=a"]);
    let others = Operator::start_with(&ns, "-others", &["--selector", "team!=a"]);
    eventually("all four Ready", async || not_ready(&api).await.is_empty()).await;
    let replicas = [Some(team_a), Some(others)];
    let owners = owners(&replicas, &ns).await;
    let expected: BTreeMap<String, Vec<usize>> = [("a1", 0), ("a2", 0), ("b1", 1), ("none", 1)]
        .into_iter()
        .map(|(name, i)| (name.to_owned(), vec![i]))
        .collect();
    assert_eq!(
        owners, expected,
        "each replica probes only its label's connections"
    );
}
