//! Schema ownership against the real Neo4j when more than one party declares an item: of two
//! connections declaring the same constraint exactly one claims it (the one whose CREATE made
//! it); pruning it waits until no connection on the database declares it any more; and a
//! constraint made by hand is never claimed, so never pruned. Every test uses a label and names
//! of its own, since all share the one database.

mod common;

use common::{
    Harness, TestEnv, events, eventually,
    neo4j::{run, schema_names},
    neo4j_connection_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;

/// Connection `name` on the test Neo4j, probed every 2 s, declaring `constraints` (YAML list
/// body) with `prune` on.
fn declaring(name: &str, constraints: &str) -> String {
    let env = TestEnv::get();
    let connection = neo4j_connection_yaml(name, env.neo4j_uri(), "login")
        .replace("interval: 5s", "interval: 2s");
    format!("{connection}  schema:\n    prune: true\n    constraints: [{constraints}]\n")
}

fn unique(name: &str, label: &str) -> String {
    format!("{{name: {name}, label: {label}, properties: [id], type: unique}}")
}

/// A harness with the Neo4j login in Secret `login`, and a tag unique to this run.
async fn start(prefix: &str) -> (Harness, String) {
    let h = Harness::start(prefix).await;
    h.neo4j_login("login");
    let tag = h.ns.rsplit('-').next().unwrap().to_owned();
    (h, tag)
}

fn managed(obj: &DatabaseConnection) -> Vec<String> {
    obj.status
        .as_ref()
        .and_then(|s| s.schema.as_ref())
        .map(|s| s.managed.clone())
        .unwrap_or_default()
}

/// Waits until connection `name` has acted on its current spec: status is for its generation
/// and `SchemaReady` is True.
async fn settled(h: &Harness, name: &str) -> DatabaseConnection {
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let mut last = None;
    eventually(&format!("{name} to apply its current schema"), async || {
        let obj = api.get(name).await.unwrap();
        let current = obj.status.as_ref().and_then(|s| s.observed_generation)
            == obj.metadata.generation
            && common::condition_status(&obj, "SchemaReady") == "True";
        last = Some(obj);
        current
    })
    .await;
    last.unwrap()
}

/// Successful probes of connection `name` so far, from the operator's metrics.
async fn probes_of(h: &Harness, name: &str) -> f64 {
    let (_, text) = h.operator.http_get("/metrics").await;
    let series = format!("name=\"{name}\"");
    text.lines()
        .filter(|l| l.starts_with("dbconn_probe_duration_seconds_count{") && l.contains(&series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for `count` more probes of `name`, checking between them that `item` stays on the
/// server; returns how many times it was checked.
async fn stays_through_probes(h: &Harness, name: &str, count: f64, item: &str) -> usize {
    let target = probes_of(h, name).await + count;
    let mut checks = 0;
    eventually(&format!("{count} more probes of {name}"), async || {
        let names = schema_names().await;
        assert!(
            names.iter().any(|n| n == item),
            "{item} was dropped while another connection still declares it (after {checks} checks)"
        );
        checks += 1;
        probes_of(h, name).await >= target
    })
    .await;
    checks
}

/// The `SchemaPruned` Events on connection `name` that name `item`.
async fn pruned_events(h: &Harness, name: &str, item: &str) -> usize {
    events(&h.client, &h.ns, "SchemaPruned")
        .await
        .iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.note.as_deref().is_some_and(|n| n.contains(item))
        })
        .count()
}

#[tokio::test]
async fn a_shared_constraint_is_claimed_once_and_pruned_only_when_nobody_declares_it() {
    let (h, t) = start("schema-shared").await;
    let label = format!("Shared_{t}");
    let item = format!("shared_id_{t}");
    h.apply(&declaring("left", &unique(&item, &label)));
    h.apply(&declaring("right", &unique(&item, &label)));
    let left = settled(&h, "left").await;
    let right = settled(&h, "right").await;
    let claims: Vec<_> = [&left, &right]
        .into_iter()
        .filter(|obj| managed(obj).contains(&item))
        .map(|obj| obj.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        claims.len(),
        1,
        "exactly one connection's CREATE made {item}; claimed by {claims:?}"
    );
    let owner = claims[0].clone();
    let other = if owner == "left" { "right" } else { "left" };
    let other_status = [&left, &right]
        .into_iter()
        .find(|obj| obj.metadata.name.as_deref() == Some(other))
        .and_then(|obj| obj.status.clone())
        .and_then(|s| s.schema)
        .unwrap();
    assert_eq!(other_status.in_place, 1, "{other} found it in place");
    println!("{item}: claimed by {owner}, in place for {other}");

    // The owner stops declaring it; the other still does: it stays, and stays claimed.
    h.apply(&declaring(&owner, ""));
    let after = settled(&h, &owner).await;
    assert!(
        managed(&after).contains(&item),
        "still the owner's, to drop once nobody declares it: {:?}",
        managed(&after)
    );
    let checks = stays_through_probes(&h, &owner, 3.0, &item).await;
    println!("{item}: present through 3 of {owner}'s probes ({checks} SHOW CONSTRAINTS checks)");
    assert_eq!(pruned_events(&h, &owner, &item).await, 0);

    // Nobody declares it any more: the owner drops it.
    h.apply(&declaring(other, ""));
    let dropped = eventually(&format!("{owner} to drop {item}"), async || {
        !schema_names().await.contains(&item)
    })
    .await;
    println!("{item}: dropped {dropped:?} after the last declaration went");
    eventually("a SchemaPruned Event naming it", async || {
        pruned_events(&h, &owner, &item).await == 1
    })
    .await;
    let after = settled(&h, &owner).await;
    assert!(!managed(&after).contains(&item), "{:?}", managed(&after));
    assert_eq!(
        pruned_events(&h, other, &item).await,
        0,
        "{other} never owned it"
    );
}

#[tokio::test]
async fn a_constraint_made_by_hand_is_never_claimed_nor_pruned() {
    let (h, t) = start("schema-hand").await;
    let label = format!("Hand_{t}");
    let item = format!("by_hand_id_{t}");
    run(&format!(
        "CREATE CONSTRAINT {item} FOR (n:{label}) REQUIRE n.id IS UNIQUE"
    ))
    .await;
    h.apply(&declaring("graph", &unique(&item, &label)));
    let obj = settled(&h, "graph").await;
    assert!(
        !managed(&obj).contains(&item),
        "a constraint made by hand is claimed: {:?}",
        managed(&obj)
    );
    assert_eq!(obj.status.unwrap().schema.unwrap().in_place, 1);

    h.apply(&declaring("graph", ""));
    settled(&h, "graph").await;
    stays_through_probes(&h, "graph", 3.0, &item).await;
    assert_eq!(pruned_events(&h, "graph", &item).await, 0);
    run(&format!("DROP CONSTRAINT {item} IF EXISTS")).await;
}
