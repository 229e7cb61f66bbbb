//! PostgreSQL streaming-replication pairs a test owns (`testenv.sh pg-pair`), for failover
//! tests: a primary and a standby on loopback ports of their own, removed when dropped.

use std::process::{Command, Output};

/// This checkout's script, as in cluster.rs: the environment's TESTENV_SCRIPT may be another
/// clone's, from before `pg-pair`. Both find the state dir the same way (DBCONN_TESTENV_STATE).
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testenv/testenv.sh");

/// One server of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    Primary,
    Standby,
}

impl Member {
    fn arg(self) -> &'static str {
        match self {
            Member::Primary => "primary",
            Member::Standby => "standby",
        }
    }
}

/// A primary and its streaming standby, with a login role (not a superuser) that owns the
/// database and its `lag_probe(id bigserial primary key, payload text)` table.
pub struct PgPair {
    pub name: String,
    pub primary_port: u16,
    pub standby_port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl PgPair {
    /// `testenv.sh pg-pair up NAME`: a fresh pair (one of that name is removed first), returned
    /// once the standby streams. Panics with the script's stderr if it fails.
    pub fn up(name: &str) -> PgPair {
        let out = run(&["up", name]);
        let pair = if out.status.success() {
            parse(name, &String::from_utf8_lossy(&out.stdout))
        } else {
            Err(format!(
                "failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        };
        // A pair that came up only halfway would keep its servers running: nothing drops it.
        pair.unwrap_or_else(|e| {
            let _ = run(&["down", name]);
            panic!("testenv.sh pg-pair up {name}: {e}")
        })
    }

    /// Crashes one member (`pg_ctl stop -m immediate`).
    pub fn stop(&self, which: Member) {
        self.ok(&["stop", &self.name, which.arg()]);
    }

    /// Starts one member again; a crashed one runs crash recovery first.
    pub fn start(&self, which: Member) {
        self.ok(&["start", &self.name, which.arg()]);
    }

    /// Promotes the standby; returns once it accepts writes.
    pub fn promote(&self) {
        self.ok(&["promote", &self.name]);
    }

    /// Runs `sql` as the pair's superuser in its database; the rows as `psql -At` prints them
    /// (`|` between columns, a line each), without the last newline. The statement is not in
    /// the panic message: it may hold a password.
    pub fn sql(&self, which: Member, sql: &str) -> String {
        let out = self.ok(&["sql", &self.name, which.arg(), sql]);
        out.strip_suffix('\n').unwrap_or(&out).to_owned()
    }

    /// Both members, primary first, as a multi-host URI (no credentials).
    pub fn uri(&self) -> String {
        format!(
            "postgres://127.0.0.1:{},127.0.0.1:{}/{}",
            self.primary_port, self.standby_port, self.database
        )
    }

    /// Runs `testenv.sh pg-pair ARGS`; panics with its stderr if it fails, else returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = run(args);
        assert!(
            out.status.success(),
            "testenv.sh pg-pair {} {} failed ({}): {}",
            args[0],
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8(out.stdout).expect("pg-pair output is UTF-8")
    }
}

impl Drop for PgPair {
    fn drop(&mut self) {
        let _ = run(&["down", &self.name]);
    }
}

/// `testenv.sh pg-pair ARGS`, its output captured; its log lines are passed on to the test's
/// stderr (shown when the test fails).
fn run(args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(SCRIPT)
        .arg("pg-pair")
        .args(args)
        .output()
        .expect("run testenv.sh pg-pair");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The KEY=VALUE lines `pg-pair up` prints.
fn parse(name: &str, stdout: &str) -> Result<PgPair, String> {
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
            .ok_or_else(|| format!("it printed no {key}"))
    };
    let port = |key: &str| {
        value(key)?
            .parse::<u16>()
            .map_err(|e| format!("{key} is not a port: {e}"))
    };
    Ok(PgPair {
        name: name.to_owned(),
        primary_port: port("PRIMARY_PORT")?,
        standby_port: port("STANDBY_PORT")?,
        user: value("USER")?,
        password: value("PASSWORD")?,
        database: value("DATABASE")?,
    })
}
