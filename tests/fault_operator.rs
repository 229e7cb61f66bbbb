//! SIGKILLs the operator while it is bringing up 50 connections, edits one while no operator
//! runs, and starts a fresh process: it must rebuild everything from the apiserver alone. The
//! Ready ones keep their Ready transition time, every connection ends Ready for its current
//! generation, and failing connections continue their failure count instead of starting over.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    Harness, Operator, TestEnv, TestNamespace, fault::Partition, free_port, install_crd,
    neo4j_connection_yaml, report, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::{Api, api::ListParams};

const HEALTHY: usize = 50;
const DEAD: usize = 5;

fn is_ready(obj: &DatabaseConnection) -> bool {
    common::condition_reason(obj, "Ready") == "Connected"
}

fn failures(obj: &DatabaseConnection) -> u32 {
    obj.status
        .as_ref()
        .and_then(|s| s.probe.as_ref())
        .map_or(0, |p| p.consecutive_failures)
}

fn ready_since(obj: &DatabaseConnection) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{:?}", c.last_transition_time))
        .unwrap_or_default()
}

async fn list(api: &Api<DatabaseConnection>, prefix: &str) -> Vec<DatabaseConnection> {
    api.list(&ListParams::default())
        .await
        .expect("list DatabaseConnections")
        .items
        .into_iter()
        .filter(|o| o.metadata.name.as_deref().unwrap_or("").starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn operator_killed_mid_reconcile_rebuilds_its_state_from_the_apiserver() {
    install_crd();
    let client = common::client().await;
    let ns = TestNamespace::create(&client, "fault-operator").await.name;
    // One worker, and every answer from Neo4j held back a little (through a slow proxy), so the
    // kill lands while most connections are still being brought up.
    let operator = Operator::start_with(&ns, "-first", &["--concurrency", "1"]);
    let mut h = Harness {
        client,
        ns,
        operator,
    };
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));

    // Failing connections first, until each has a few failures on record.
    let dead_uri = format!("bolt://127.0.0.1:{}", free_port());
    let dead: Vec<String> = (0..DEAD)
        .map(|i| neo4j_connection_yaml(&format!("dead-{i}"), &dead_uri, "login"))
        .collect();
    h.apply(&dead.join("---\n"));
    let deadline = Instant::now() + common::CONDITION_TIMEOUT;
    let recorded: BTreeMap<String, u32> = loop {
        let objs = list(&api, "dead-").await;
        if objs.len() == DEAD && objs.iter().all(|o| failures(o) >= 3) {
            break objs
                .iter()
                .map(|o| (o.metadata.name.clone().unwrap(), failures(o)))
                .collect();
        }
        assert!(Instant::now() < deadline, "dead connections: {objs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let slow = Partition::slow(env.neo4j_port(), Duration::from_millis(100)).await;
    let slow_uri = format!("bolt://127.0.0.1:{}", slow.port);
    let healthy: Vec<String> = (0..HEALTHY)
        .map(|i| neo4j_connection_yaml(&format!("conn-{i:02}"), &slow_uri, "login"))
        .collect();
    h.apply(&healthy.join("---\n"));
    let deadline = Instant::now() + common::CONDITION_TIMEOUT;
    let ready_at_kill = loop {
        let objs = list(&api, "conn-").await;
        let ready: BTreeMap<String, String> = objs
            .iter()
            .filter(|o| is_ready(o))
            .map(|o| (o.metadata.name.clone().unwrap(), ready_since(o)))
            .collect();
        if !ready.is_empty() {
            h.operator.kill();
            break ready;
        }
        assert!(Instant::now() < deadline, "no connection became Ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The kill races the operator's writes: read what actually reached the apiserver.
    let ready_at_kill: BTreeMap<String, String> = list(&api, "conn-")
        .await
        .iter()
        .filter(|o| is_ready(o))
        .map(|o| (o.metadata.name.clone().unwrap(), ready_since(o)))
        .chain(ready_at_kill)
        .collect();
    assert!(
        ready_at_kill.len() < HEALTHY,
        "all {HEALTHY} were Ready before the kill; nothing was interrupted"
    );
    let recorded: BTreeMap<String, u32> = list(&api, "dead-")
        .await
        .iter()
        .map(|o| (o.metadata.name.clone().unwrap(), failures(o)))
        .inspect(|(name, n)| assert!(*n >= recorded[name]))
        .collect();

    // An edit while no operator runs.
    h.apply(&healthy[HEALTHY - 1].replace("interval: 5s", "interval: 6s"));

    h.operator = Operator::start_with(&h.ns, "-second", &[]);
    let restarted = Instant::now();
    let mut lowest_after: BTreeMap<String, u32> = BTreeMap::new();
    let deadline = restarted + common::CONDITION_TIMEOUT;
    loop {
        for obj in list(&api, "dead-").await {
            let name = obj.metadata.name.clone().unwrap();
            let n = failures(&obj);
            lowest_after
                .entry(name)
                .and_modify(|low| *low = (*low).min(n))
                .or_insert(n);
        }
        let objs = list(&api, "conn-").await;
        let current = objs.iter().all(|o| {
            is_ready(o) && o.status.as_ref().unwrap().observed_generation == o.metadata.generation
        });
        let dead_moved = list(&api, "dead-")
            .await
            .iter()
            .all(|o| failures(o) > recorded[o.metadata.name.as_deref().unwrap()]);
        if objs.len() == HEALTHY && current && dead_moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all caught up after the restart: {} of {HEALTHY} Ready for their generation",
            objs.iter().filter(|o| is_ready(o)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_ready = restarted.elapsed();

    let after = list(&api, "conn-").await;
    let edited = after
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some(&format!("conn-{:02}", HEALTHY - 1)))
        .unwrap();
    assert_eq!(edited.status.as_ref().unwrap().observed_generation, Some(2));
    for obj in &after {
        let name = obj.metadata.name.as_deref().unwrap();
        if let Some(since) = ready_at_kill.get(name) {
            assert_eq!(
                &ready_since(obj),
                since,
                "{name} was Ready before the kill and kept its Ready transition time"
            );
        }
    }
    for (name, before) in &recorded {
        assert!(
            lowest_after[name] >= *before,
            "{name}: {before} failures on record before the kill, {} after it: the count started over",
            lowest_after[name]
        );
    }
    assert!(h.operator.is_running());
    h.assert_secret_never_exposed(env.neo4j_password());
    println!(
        "killed with {} of {HEALTHY} Ready; fresh operator: all Ready for their generation in {all_ready:?}; failure counts on record {recorded:?}, lowest seen after restart {lowest_after:?}",
        ready_at_kill.len()
    );
    report::record(
        "fault",
        "operator SIGKILLed while bringing up 50 connections; one edited while down",
        "survived",
        &format!(
            "killed with {}/{HEALTHY} Ready; fresh process had all {HEALTHY} Ready for their generation in {:.1} s; Ready transition times kept; {DEAD} failing connections continued their counts ({} -> >= {}); 0 lost",
            ready_at_kill.len(),
            all_ready.as_secs_f64(),
            recorded.values().min().unwrap(),
            lowest_after.values().min().unwrap()
        ),
    );
}
