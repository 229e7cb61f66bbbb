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
