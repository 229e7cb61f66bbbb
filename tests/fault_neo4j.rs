//! Crashes the real Neo4j (SIGKILL) under a Ready connection and under a schema apply in
//! progress, starts it again, and checks that every connection returns to its true state with
//! the same operator process. In a test binary of its own: no other test sees the crash.

mod common;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use common::{
    Harness, TestEnv, condition_reason,
    fault::Outage,
    neo4j::{admin, run, schema_on},
    report,
};
use neo4rs::query;

/// Starts the label and the names of every schema item this test declares.
const PREFIX: &str = "Fault_";
const CONSTRAINTS: usize = 12;
const INDEXES: usize = 12;
/// Nodes under the declared label, so that each constraint has data to check and each index
/// has data to populate: the apply takes long enough to be interrupted.
const NODES: usize = 20_000;

fn schema_manifest(label: &str) -> String {
    let env = TestEnv::get();
    let constraints: Vec<_> = (0..CONSTRAINTS)
        .map(|i| {
            format!("{{name: {label}_u{i}, label: {label}, properties: [u{i}], type: unique}}")
        })
        .collect();
    let indexes: Vec<_> = (0..INDEXES)
        .map(|i| format!("{{name: {label}_r{i}, label: {label}, properties: [r{i}], type: range}}"))
        .collect();
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: schema\nspec:\n  engine: neo4j\n  uri: {}\n  credentials:\n    secretRef:\n      name: login\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n  schema:\n    constraints: [{}]\n    indexes: [{}]\n",
        env.neo4j_uri(),
        constraints.join(", "),
        indexes.join(", ")
    )
}

#[tokio::test]
async fn neo4j_killed_under_ready_connections_and_a_schema_apply_recovers_everything() {
    let mut h = Harness::start("fault-neo4j").await;
    let env = TestEnv::get();
    h.ready_neo4j("graph", "login").await;

    clear(PREFIX).await;
    let label = format!("{PREFIX}{}", h.ns.rsplit('-').next().unwrap());
    let properties: Vec<_> = (0..CONSTRAINTS)
        .map(|i| format!("u{i}: i"))
        .chain((0..INDEXES).map(|i| format!("r{i}: i % 100")))
        .collect();
    run(&format!(
        "UNWIND range(1, {NODES}) AS i CREATE (:{label} {{{}}})",
        properties.join(", ")
    ))
    .await;
    let declared: BTreeSet<String> = (0..CONSTRAINTS)
        .map(|i| format!("{label}_u{i}"))
        .chain((0..INDEXES).map(|i| format!("{label}_r{i}")))
        .collect();

    // Apply the schema and crash Neo4j once some, but not all, items exist.
    let watcher = admin();
    h.apply(&schema_manifest(&label));
    let applying = Instant::now();
    let created_before_kill = loop {
        let created = schema_on(&watcher, &label).await.len();
        if created > 0 {
            break created;
        }
        assert!(
            applying.elapsed() < Duration::from_secs(60),
            "the operator did not start applying the schema"
        );
    };
    let outage = Outage::kill("neo4j");
    let killed = Instant::now();
    drop(watcher);
    assert!(
        created_before_kill < declared.len(),
        "the whole schema ({} items) was applied before the kill; nothing was interrupted",
        declared.len()
    );
    println!(
        "Neo4j killed {:?} after the schema manifest was applied, with {created_before_kill} of {} items (or a remnant) on the server",
        killed.duration_since(applying),
        declared.len()
    );

    let down = h.wait("graph", "Ready", "False", None).await;
    let noticed = killed.elapsed();
    let reason = condition_reason(&down, "Ready");
    assert!(
        matches!(reason.as_str(), "Unreachable" | "Timeout"),
        "reason {reason}"
    );
    h.wait("schema", "Ready", "False", None).await;

    let restarting = Instant::now();
    outage.end();
    let answered = Instant::now();
    println!("Neo4j restarted in {:?}", answered - restarting);
    h.wait("graph", "Ready", "True", Some("Connected")).await;
    let graph_back = answered.elapsed();
    let outage = killed.elapsed();
    let obj = h
        .wait("schema", "SchemaReady", "True", Some("SchemaApplied"))
        .await;
    let schema_back = answered.elapsed();
    assert_eq!(condition_reason(&obj, "Ready"), "Connected");
    let status = obj.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let schema = status.schema.as_ref().expect("status.schema");
    assert_eq!(schema.in_place as usize, declared.len(), "{schema:?}");
    assert!(schema.problems.is_empty(), "{schema:?}");
    // The operator may not know it created an item whose CREATE was cut off before its reply
    // (it then treats the item as made by hand), but it never claims one it did not declare.
    let managed: BTreeSet<String> = schema.managed.iter().cloned().collect();
    assert_eq!(
        managed.len(),
        schema.managed.len(),
        "managed repeats a name"
    );
    assert!(managed.is_subset(&declared), "{managed:?}");

    let items = schema_on(&admin(), &label).await;
    let names: BTreeSet<String> = items.iter().map(|i| i.name.clone()).collect();
    assert_eq!(names, declared, "the server has exactly the declared items");
    let shapes: BTreeSet<_> = items
        .iter()
        .map(|i| (&i.type_, &i.labels_or_types, &i.properties))
        .collect();
    assert_eq!(shapes.len(), items.len(), "duplicated items: {items:#?}");
    assert!(
        items.iter().all(|i| i.state == "ONLINE"),
        "not all online: {items:#?}"
    );
    assert!(
        h.operator.is_running(),
        "the operator recovered without a restart"
    );
    h.assert_secret_never_exposed(env.neo4j_password());
    let remnant = if h
        .operator
        .logs()
        .contains("left by an interrupted creation")
    {
        " (a constraint cut off mid-creation: its remnant index was replaced)"
    } else {
        ""
    };
    println!(
        "Ready=False/{reason} {noticed:?} after the kill; Ready again {graph_back:?} and SchemaApplied {schema_back:?} after Neo4j answered; managed {}/{}",
        managed.len(),
        declared.len()
    );

    report::record(
        "fault",
        "Neo4j killed (SIGKILL) and restarted under a Ready connection",
        "survived",
        &format!(
            "Ready=False/{reason} {:.1} s after the kill; Ready=True again {:.1} s after the kill, {:.1} s after the restarted Neo4j answered; same operator process",
            noticed.as_secs_f64(),
            outage.as_secs_f64(),
            graph_back.as_secs_f64()
        ),
    );
    report::record(
        "fault",
        "Neo4j killed during a schema apply",
        "survived",
        &format!(
            "killed with {created_before_kill}/{} items on the server{remnant}; SchemaApplied {:.1} s after restart; all {} in place, 0 duplicated, 0 lost",
            declared.len(),
            schema_back.as_secs_f64(),
            declared.len()
        ),
    );

    clear(PREFIX).await;
}

/// Drops the schema items and nodes of this test, also those a failed run left behind.
async fn clear(prefix: &str) {
    let graph = admin();
    for (show, drop) in [
        ("SHOW CONSTRAINTS YIELD name", "CONSTRAINT"),
        (
            "SHOW INDEXES YIELD name, owningConstraint WHERE owningConstraint IS NULL",
            "INDEX",
        ),
    ] {
        let mut rows = graph
            .execute(query(&format!("{show} RETURN name")))
            .await
            .unwrap();
        let mut names = Vec::new();
        while let Some(row) = rows.next().await.unwrap() {
            names.push(row.get::<String>("name").unwrap());
        }
        for name in names.iter().filter(|n| n.starts_with(prefix)) {
            run(&format!("DROP {drop} {name} IF EXISTS")).await;
        }
    }
    run(&format!(
        "MATCH (n) WHERE any(l IN labels(n) WHERE l STARTS WITH '{prefix}') DELETE n"
    ))
    .await;
}
