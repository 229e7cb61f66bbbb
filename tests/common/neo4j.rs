//! Admin actions on the test Neo4j server, for tests that need a user of their own.

use neo4rs::{Graph, query};

use super::TestEnv;

pub fn admin() -> Graph {
    let env = TestEnv::get();
    Graph::new(env.neo4j_uri(), env.var("NEO4J_USER"), env.neo4j_password())
        .expect("configure neo4rs")
}

/// Creates a login that only this test uses, so failed attempts lock nobody else out.
pub async fn create_user(name: &str, password: &str) {
    admin()
        .run_on(
            "system",
            query(
                "CREATE OR REPLACE USER $name SET PLAINTEXT PASSWORD $password CHANGE NOT REQUIRED",
            )
            .param("name", name)
            .param("password", password),
        )
        .await
        .unwrap_or_else(|e| panic!("create Neo4j user {name}: {e}"));
}

/// Changes a user's password on the server.
pub async fn set_password(name: &str, password: &str) {
    admin()
        .run_on(
            "system",
            query("ALTER USER $name SET PLAINTEXT PASSWORD $password CHANGE NOT REQUIRED")
                .param("name", name)
                .param("password", password),
        )
        .await
        .unwrap_or_else(|e| panic!("change the password of Neo4j user {name}: {e}"));
}

/// Drops a user a test created.
pub async fn drop_user(name: &str) -> Result<(), String> {
    admin()
        .run_on(
            "system",
            query("DROP USER $name IF EXISTS").param("name", name),
        )
        .await
        .map_err(|e| e.to_string())
}

/// A user name unique to one test run.
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// Runs one admin statement on the default database.
pub async fn run(statement: &str) {
    admin()
        .run(query(statement))
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Names of every constraint and index on the default database.
pub async fn schema_names() -> Vec<String> {
    let graph = admin();
    let mut names = Vec::new();
    for statement in ["SHOW CONSTRAINTS YIELD name", "SHOW INDEXES YIELD name"] {
        let mut rows = graph
            .execute(query(statement))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        while let Some(row) = rows.next().await.unwrap() {
            names.push(row.get::<String>("name").unwrap());
        }
    }
    names
}

/// One constraint, or one index that no constraint owns, as `SHOW CONSTRAINTS` / `SHOW INDEXES`
/// list it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaItem {
    pub name: String,
    /// `UNIQUENESS`, `RANGE`, `FULLTEXT`, ...
    pub type_: String,
    pub labels_or_types: Vec<String>,
    pub properties: Vec<String>,
    /// `ONLINE`, `POPULATING`, ...; constraints are always `ONLINE`.
    pub state: String,
}

/// The constraints and indexes on `label` (or relationship type), read through `graph`.
pub async fn schema_on(graph: &Graph, label: &str) -> Vec<SchemaItem> {
    let mut items = Vec::new();
    for statement in [
        "SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties \
         WHERE $label IN labelsOrTypes RETURN name, type, labelsOrTypes, properties, 'ONLINE' AS state",
        "SHOW INDEXES YIELD name, type, labelsOrTypes, properties, state, owningConstraint \
         WHERE owningConstraint IS NULL AND $label IN labelsOrTypes \
         RETURN name, type, labelsOrTypes, properties, state",
    ] {
        let mut rows = graph
            .execute(query(statement).param("label", label))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        while let Some(row) = rows.next().await.unwrap() {
            items.push(SchemaItem {
                name: row.get("name").unwrap(),
                type_: row.get("type").unwrap(),
                labels_or_types: row.get("labelsOrTypes").unwrap(),
                properties: row.get("properties").unwrap(),
                state: row.get("state").unwrap(),
            });
        }
    }
    items.sort();
    items
}
