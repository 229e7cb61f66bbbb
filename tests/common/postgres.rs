//! Admin actions on the test PostgreSQL server, for tests that need a role of their own, and the
//! manifests those tests apply.

use tokio_postgres::{Client, NoTls};

use super::TestEnv;

/// A superuser session on the test server's `postgres` database.
pub async fn admin() -> Client {
    let env = TestEnv::get();
    let mut config = tokio_postgres::Config::new();
    config
        .host(env.var("POSTGRES_HOST"))
        .port(port())
        .user(env.var("POSTGRES_ADMIN_USER"))
        .password(env.var("POSTGRES_ADMIN_PASSWORD"))
        .dbname("postgres");
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("admin login to the test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

pub fn port() -> u16 {
    TestEnv::get()
        .var("POSTGRES_PORT")
        .parse()
        .expect("POSTGRES_PORT is a number")
}

/// `postgres://HOST:PORT/DATABASE?sslmode=disable` on the test server.
pub fn uri(database: &str) -> String {
    let env = TestEnv::get();
    format!(
        "postgres://{}:{}/{database}?sslmode=disable",
        env.var("POSTGRES_HOST"),
        port()
    )
}

/// A login role only this test uses, so its failed attempts and rotations touch nobody else.
pub async fn create_role(name: &str, password: &str) {
    admin()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {} LOGIN PASSWORD {}",
            identifier(name),
            literal(password)
        ))
        .await
        .unwrap_or_else(|e| panic!("create PostgreSQL role {name}: {e}"));
}

/// Changes a role's password on the server.
pub async fn set_password(name: &str, password: &str) {
    admin()
        .await
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD {}",
            identifier(name),
            literal(password)
        ))
        .await
        .unwrap_or_else(|e| panic!("change the password of PostgreSQL role {name}: {e}"));
}

/// Drops a role a test created, ending its sessions first.
pub async fn drop_role(name: &str) -> Result<(), String> {
    admin()
        .await
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}; \
             DROP ROLE IF EXISTS {}",
            literal(name),
            identifier(name)
        ))
        .await
        .map_err(|e| e.to_string())
}

/// Open sessions of `role` on the server, as pg_stat_activity shows them.
pub async fn sessions_of(role: &str) -> i64 {
    admin()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .expect("read pg_stat_activity")
        .get(0)
}

/// The server's `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
pub async fn server_version() -> String {
    admin()
        .await
        .query_one("SHOW server_version", &[])
        .await
        .expect("SHOW server_version")
        .get(0)
}

/// A role name unique to one test run (lower case, so it needs no quoting in psql either).
pub fn unique_role(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// A PostgreSQL DatabaseConnection with fast health checks, for tests.
pub fn connection_yaml(name: &str, uri: &str, secret: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: postgres\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: {secret}\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n"
    )
}

fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
