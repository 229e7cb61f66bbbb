//! Admin actions on the test MariaDB server (tests/testenv/services/mariadb.sh), for tests that
//! need a user of their own. Admin SQL goes through `testenv.sh mariadb-sql` over the server's
//! socket, so this needs no MySQL driver.

use std::{path::Path, process::Command};

use super::TestEnv;

pub fn port() -> u16 {
    var("MARIADB_PORT")
        .parse()
        .expect("MARIADB_PORT is a number")
}

/// `mysql://HOST:PORT/DATABASE` on the test server.
pub fn uri(database: &str) -> String {
    format!("mysql://{}:{}/{database}", var("MARIADB_HOST"), port())
}

/// Runs admin SQL on the test server; returns the result rows, tab-separated, without a header.
/// Panics with the server's error.
pub fn sql(statement: &str) -> String {
    run(statement).unwrap_or_else(|e| panic!("MariaDB admin SQL: {e}"))
}

/// A login (from 127.0.0.1) only this test uses, with every privilege on the test database, so
/// its failed attempts and rotations touch nobody else. Idempotent: an existing user gets the
/// password.
pub fn create_user(name: &str, password: &str) {
    let user = account(name);
    let pw = literal(password);
    let database = identifier(&var("MARIADB_DB"));
    run(&format!(
        "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {pw}; \
         ALTER USER {user} IDENTIFIED BY {pw}; \
         GRANT ALL ON {database}.* TO {user}"
    ))
    .unwrap_or_else(|e| panic!("create MariaDB user {name}: {e}"));
}

/// Changes a user's password on the server.
pub fn set_password(name: &str, password: &str) {
    run(&format!(
        "ALTER USER {} IDENTIFIED BY {}",
        account(name),
        literal(password)
    ))
    .unwrap_or_else(|e| panic!("change the password of MariaDB user {name}: {e}"));
}

/// Open sessions of `user` on the server, as information_schema.PROCESSLIST shows them.
pub fn sessions_of(user: &str) -> i64 {
    sql(&format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = {}",
        literal(user)
    ))
    .trim()
    .parse()
    .expect("a count from PROCESSLIST")
}

/// The server's `VERSION()`, e.g. `10.11.19-MariaDB-0+deb12u1`.
pub fn server_version() -> String {
    sql("SELECT VERSION()").trim().to_owned()
}

/// A user name unique to one test run (lower case, so it needs no quoting in the client either).
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

/// The environment's value of `key`: the process environment, then the file `testenv.sh up`
/// writes. Not `TestEnv::var`: an environment started before MariaDB joined it lacks these
/// keys, and the panic should say what to do.
fn var(key: &str) -> String {
    if let Ok(value) = std::env::var(key) {
        return value;
    }
    let state =
        std::env::var("DBCONN_TESTENV_STATE").unwrap_or_else(|_| "/tmp/dbconn-testenv".into());
    let file = Path::new(&state).join("env");
    std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
        .unwrap_or_else(|| {
            panic!(
                "{key} is not set and not in {}: the test environment has no MariaDB; start it \
                 with `tests/testenv/testenv.sh up`",
                file.display()
            )
        })
}

/// `testenv.sh mariadb-sql STATEMENT`; Err carries its stderr. The statement is not in the
/// error: it may hold a password.
fn run(statement: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg(TestEnv::get().var("TESTENV_SCRIPT"))
        .args(["mariadb-sql", statement])
        .output()
        .map_err(|e| format!("run testenv.sh mariadb-sql: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "testenv.sh mariadb-sql failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("mariadb-sql output is not UTF-8: {e}"))
}

/// `'name'@'127.0.0.1'`: the test users log in over TCP from the loopback address only.
fn account(name: &str) -> String {
    format!("{}@'127.0.0.1'", literal(name))
}

fn identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal; MariaDB reads backslash escapes inside quotes, so those are doubled too.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A MySQL-engine DatabaseConnection with fast health checks, for tests.
pub fn connection_yaml(name: &str, uri: &str, secret: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: mysql\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: {secret}\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n"
    )
}
