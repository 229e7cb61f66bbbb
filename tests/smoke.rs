//! Proves each part of the test environment is the real thing: kube-apiserver with etcd,
//! Neo4j 5 over Bolt, PostgreSQL over TCP with a password.

mod common;

use common::TestEnv;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, api::PostParams};

#[tokio::test]
async fn apiserver_answers_with_v1_34_and_stores_secrets() {
    let client = common::client().await;
    let version = client
        .apiserver_version()
        .await
        .expect("GET /version from the test apiserver");
    println!("kube-apiserver {}", version.git_version);
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "34"),
        "{version:?}"
    );

    let ns = common::TestNamespace::create(&client, "smoke").await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe"},
        "stringData": {"key": "value"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create a Secret");
    let read = secrets.get("probe").await.expect("read the Secret back");
    assert_eq!(read.data.unwrap()["key"].0, b"value");
}

#[tokio::test]
async fn neo4j_answers_with_a_5_x_version() {
    let env = TestEnv::get();
    let graph = neo4rs::Graph::new(env.neo4j_uri(), env.var("NEO4J_USER"), env.neo4j_password())
        .expect("configure neo4rs");
    let mut rows = graph
        .execute(neo4rs::query("CALL dbms.components() YIELD name, versions, edition RETURN name, versions[0] AS version, edition"))
        .await
        .unwrap_or_else(|e| panic!("Neo4j at {} did not answer: {e}", env.neo4j_uri()));
    let row = rows
        .next()
        .await
        .unwrap()
        .expect("dbms.components() returns a row");
    let version: String = row.get("version").unwrap();
    let edition: String = row.get("edition").unwrap();
    println!("Neo4j {version} ({edition})");
    assert!(
        version.starts_with("5."),
        "expected Neo4j 5.x, got {version}"
    );
}

#[tokio::test]
async fn postgres_answers_a_password_login_over_tcp() {
    let env = TestEnv::get();
    let (client, connection) =
        tokio_postgres::connect(env.var("POSTGRES_URI"), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {}:{} refused: {e}",
                    env.var("POSTGRES_HOST"),
                    env.var("POSTGRES_PORT")
                )
            });
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT version()", &[])
        .await
        .expect("SELECT version()");
    let version: String = row.get(0);
    println!("{version}");
    assert!(version.starts_with("PostgreSQL "), "{version}");
}
