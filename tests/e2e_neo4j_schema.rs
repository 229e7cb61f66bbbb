//! Declarative schema against the real Neo4j: constraints and indexes created, drift repaired,
//! pruning limited to what the operator created, data violations named, hostile names refused.
//! Every test uses names of its own, since all share the one database.

mod common;

use common::{
    Harness, TestEnv, kubectl, kubectl_ok,
    neo4j::{run, schema_names},
    secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;

/// A connection declaring `constraints` and `indexes` (YAML list bodies), probed every 2 s.
fn manifest(name: &str, constraints: &str, indexes: &str, prune: bool) -> String {
    let env = TestEnv::get();
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: neo4j\n  uri: {}\n  credentials:\n    secretRef:\n      name: login\n  healthCheck:\n    interval: 2s\n  schema:\n    prune: {prune}\n    constraints: [{constraints}]\n    indexes: [{indexes}]\n",
        env.neo4j_uri()
    )
}

fn unique(name: &str, label: &str) -> String {
    format!("{{name: {name}, label: {label}, properties: [id], type: unique}}")
}

fn range(name: &str, label: &str) -> String {
    format!("{{name: {name}, label: {label}, properties: [city], type: range}}")
}

fn problems(obj: &DatabaseConnection) -> Vec<(String, String)> {
    obj.status
        .as_ref()
        .and_then(|s| s.schema.as_ref())
        .map(|s| {
            s.problems
                .iter()
                .map(|p| (p.name.clone(), p.reason.clone()))
                .collect()
        })
        .unwrap_or_default()
}

async fn start() -> (Harness, String) {
    let h = Harness::start("schema").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    let tag = h.ns.rsplit('-').next().unwrap().to_owned();
    (h, tag)
}

#[tokio::test]
async fn declared_schema_is_created_and_drift_is_repaired() {
    let (h, t) = start().await;
    let label = format!("Poi_{t}");
    let (c1, c2, i1, i2) = (
        format!("c1_{t}"),
        format!("c2_{t}"),
        format!("i1_{t}"),
        format!("i2_{t}"),
    );
    let constraints = format!(
        "{}, {{name: {c2}, relationshipType: ROUTE_{t}, properties: [id], type: unique}}",
        unique(&c1, &label)
    );
    let indexes = format!(
        "{}, {{name: {i2}, label: {label}, properties: [name, description], type: fulltext}}",
        range(&i1, &label)
    );
    h.apply(&manifest("graph", &constraints, &indexes, false));
    let obj = h
        .wait("graph", "SchemaReady", "True", Some("SchemaApplied"))
        .await;
    let names = schema_names().await;
    for name in [&c1, &c2, &i1, &i2] {
        assert!(
            names.contains(name),
            "{name} missing from SHOW CONSTRAINTS/INDEXES: {names:?}"
        );
    }
    assert_eq!(obj.status.unwrap().schema.unwrap().managed.len(), 4);

    run(&format!("DROP INDEX {i1}")).await;
    let deadline = std::time::Instant::now() + common::CONDITION_TIMEOUT;
    loop {
        let events = kubectl_ok(
            &[
                "get",
                "events",
                "-n",
                &h.ns,
                "--field-selector",
                "reason=SchemaDrift",
                "-o",
                "jsonpath={.items[*].message}",
            ],
            None,
        );
        if events.contains(&i1) && schema_names().await.contains(&i1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped index was not reported and recreated; events: {events}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    h.wait("graph", "SchemaReady", "True", Some("SchemaApplied"))
        .await;
    for name in [c1, c2] {
        run(&format!("DROP CONSTRAINT {name} IF EXISTS")).await;
    }
    for name in [i1, i2] {
        run(&format!("DROP INDEX {name} IF EXISTS")).await;
    }
}

#[tokio::test]
async fn removed_items_are_kept_without_prune_dropped_with_it_and_hand_made_ones_never() {
    let (h, t) = start().await;
    let label = format!("Poi_{t}");
    let (keep, gone, by_hand) = (
        format!("keep_{t}"),
        format!("gone_{t}"),
        format!("by_hand_{t}"),
    );
    run(&format!(
        "CREATE INDEX {by_hand} IF NOT EXISTS FOR (n:{label}) ON (n.zip)"
    ))
    .await;
    h.apply(&manifest(
        "graph",
        &unique(&keep, &label),
        &range(&gone, &label),
        false,
    ));
    h.wait("graph", "SchemaReady", "True", None).await;

    h.apply(&manifest("graph", &unique(&keep, &label), "", false));
    let obj = h
        .wait("graph", "SchemaReady", "False", Some("SchemaDrift"))
        .await;
    assert_eq!(problems(&obj), [(gone.clone(), "Extra".to_string())]);
    assert!(
        schema_names().await.contains(&gone),
        "kept while prune is false"
    );

    h.apply(&manifest("graph", &unique(&keep, &label), "", true));
    h.wait("graph", "SchemaReady", "True", None).await;
    let names = schema_names().await;
    assert!(!names.contains(&gone), "dropped with prune");
    assert!(
        names.contains(&by_hand),
        "an index made by hand is never dropped"
    );
    assert!(names.contains(&keep));
    run(&format!("DROP CONSTRAINT {keep} IF EXISTS")).await;
    run(&format!("DROP INDEX {by_hand} IF EXISTS")).await;
}

#[tokio::test]
async fn data_that_violates_a_constraint_is_named_and_the_rest_still_applies() {
    let (h, t) = start().await;
    let label = format!("Dup_{t}");
    run(&format!(
        "CREATE (:{label} {{id: 1}}), (:{label} {{id: 1}})"
    ))
    .await;
    let (bad, ok, idx) = (format!("dup_id_{t}"), format!("ok_{t}"), format!("idx_{t}"));
    let constraints = format!(
        "{}, {}",
        unique(&bad, &label),
        unique(&ok, &format!("Other_{t}"))
    );
    h.apply(&manifest(
        "graph",
        &constraints,
        &range(&idx, &label),
        false,
    ));
    let obj = h
        .wait(
            "graph",
            "SchemaReady",
            "False",
            Some("ConstraintViolatedByData"),
        )
        .await;
    let message = obj
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "SchemaReady")
        .unwrap()
        .message
        .clone();
    assert!(
        message.contains(&bad),
        "the message names the constraint: {message}"
    );
    let names = schema_names().await;
    assert!(
        names.contains(&ok) && names.contains(&idx),
        "the other items were applied: {names:?}"
    );
    assert!(!names.contains(&bad));
    // Ready is about the connection, which is fine.
    assert_eq!(common::condition_reason(&obj, "Ready"), "Connected");
    run(&format!("MATCH (n:{label}) DELETE n")).await;
    run(&format!("DROP CONSTRAINT {ok} IF EXISTS")).await;
    run(&format!("DROP INDEX {idx} IF EXISTS")).await;
}

#[tokio::test]
async fn enterprise_only_constraints_get_their_own_reason_on_community() {
    let (h, t) = start().await;
    let key = format!("{{name: key_{t}, label: Poi_{t}, properties: [id], type: nodeKey}}");
    h.apply(&manifest("graph", &key, "", false));
    let obj = h
        .wait("graph", "SchemaReady", "False", Some("EnterpriseRequired"))
        .await;
    assert_eq!(common::condition_reason(&obj, "Ready"), "Connected");
}

#[tokio::test]
async fn hostile_identifiers_are_rejected_by_the_apiserver() {
    let (h, _) = start().await;
    let hostile = [
        "\"a`b\"",
        "\"x}) DETACH DELETE n //\"",
        "\"name\\nMATCH (n) DELETE n\"",
        "\"ünïcode\"",
        "\"1abc\"",
    ];
    for bad in hostile {
        for manifest in [
            manifest("bad", &unique(bad, "Poi"), "", false),
            manifest("bad", &unique("ok", bad), "", false),
            manifest(
                "bad",
                "",
                &format!("{{name: ok, label: Poi, properties: [{bad}], type: range}}"),
                false,
            ),
        ] {
            let out = kubectl(&["apply", "-n", &h.ns, "-f", "-"], Some(&manifest));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{bad} was accepted");
            assert!(
                stderr.contains("should match '^[A-Za-z_][A-Za-z0-9_]*$'"),
                "{bad}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn schema_example_applies() {
    let (h, _) = start().await;
    for example in ["neo4j.yaml", "neo4j-schema.yaml"] {
        let path = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
        kubectl_ok(&["apply", "-n", &h.ns, "-f", &path], None);
    }
    // Other runs (or the demo) may have created the same names already; in place is in place.
    h.wait(
        "graph-with-schema",
        "SchemaReady",
        "True",
        Some("SchemaApplied"),
    )
    .await;
    let names = schema_names().await;
    for name in [
        "poi_id_unique",
        "route_id_unique",
        "poi_city",
        "poi_name_search",
    ] {
        assert!(
            names.contains(&name.to_string()),
            "{name} missing: {names:?}"
        );
    }
}
