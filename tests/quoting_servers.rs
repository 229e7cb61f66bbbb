//! Identifier quoting against the real parsers: Neo4j 5 for `schema::quote` (Cypher) and
//! PostgreSQL for `engine::postgres::quote_identifier` (SQL). For generated hostile names, a
//! quoted name used as a column alias must come back as one column named exactly that. This is
//! the ground truth for the lexers tests/fuzz_parsing.rs models the servers with.

mod common;

use common::fuzz::{check, hostile_identifier};
use dbconn_operator::{engine::postgres::quote_identifier, schema::quote};
use neo4rs::query;
use proptest::prelude::*;
use tokio::runtime::Runtime;

/// Names a server can hold at all: not empty, and for PostgreSQL without NUL (the protocol
/// sends statements as C strings) and within its 63-byte limit (longer ones are truncated).
fn storable(name: String, postgres: bool) -> String {
    let mut name = name;
    if postgres {
        name.retain(|c| c != '\0');
        while name.len() > 63 {
            name.pop();
        }
    }
    if name.is_empty() { "x".into() } else { name }
}

#[test]
fn cypher_quoting_holds_in_neo4j() {
    let runtime = Runtime::new().unwrap();
    let graph = runtime.block_on(async { common::neo4j::admin() });
    let names = hostile_identifier().prop_map(|n| storable(n, false));
    check("cypher quoting on Neo4j 5", file!(), names, |name| {
        let statement = format!("RETURN 1 AS {}", quote(&name));
        let columns = runtime.block_on(async {
            let mut rows = graph.execute(query(&statement)).await?;
            let row = rows.next().await?.expect("RETURN yields one row");
            Ok::<_, neo4rs::Error>(
                row.keys()
                    .into_iter()
                    .map(|k| k.value.clone())
                    .collect::<Vec<_>>(),
            )
        });
        let columns = columns.map_err(|e| TestCaseError::fail(format!("{statement:?}: {e}")))?;
        prop_assert_eq!(columns, vec![name], "{}", statement);
        Ok(())
    });
}

#[test]
fn sql_quoting_holds_in_postgres() {
    let runtime = Runtime::new().unwrap();
    let client = runtime.block_on(common::postgres::admin());
    let names = hostile_identifier().prop_map(|n| storable(n, true));
    check("sql quoting on PostgreSQL", file!(), names, |name| {
        // Prepared, not run: the server parses the statement and describes its columns.
        let statement = format!("SELECT 1 AS {}", quote_identifier(&name));
        let prepared = runtime
            .block_on(client.prepare(&statement))
            .map_err(|e| TestCaseError::fail(format!("{statement:?}: {e}")))?;
        let columns: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
        prop_assert_eq!(columns, vec![name.as_str()], "{}", statement);
        Ok(())
    });
}
