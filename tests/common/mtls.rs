//! Client certificates for the servers that verify them (`testenv.sh client-cert`): the
//! PostgreSQL cluster of tests/testenv/services/postgres_mtls.sh (POSTGRES_MTLS_*: the CN must
//! name the role) and MariaDB's REQUIRE X509 user (MARIADB_X509_*: any CN, plus its password).

use std::process::Command;

/// This checkout's script, as in pgpair.rs: the environment's TESTENV_SCRIPT may be another
/// clone's, from before `client-cert`. Both find the state dir (and the CA) the same way.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testenv/testenv.sh");

/// A new certificate for subject `CN=cn` (clientAuth, valid 30 days) and its key, as PEM:
/// `(certificate, key)`, the key PKCS#8 (`BEGIN PRIVATE KEY`, EC P-256). Signed by the test CA
/// (TESTENV_CA), or with `rogue` by a CA that no server trusts. Every call makes a new key and
/// serial, so a test can rotate. Panics with the script's stderr if it fails.
pub fn client_cert(cn: &str, rogue: bool) -> (String, String) {
    let dir = std::env::temp_dir().join(format!(
        "dbconn-client-cert-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut command = Command::new("bash");
    command.arg(SCRIPT).arg("client-cert").arg(cn).arg(&dir);
    if rogue {
        command.arg("--rogue");
    }
    let out = command.output();
    let result = match out {
        Err(e) => Err(format!("run {SCRIPT}: {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => std::fs::read_to_string(dir.join("tls.crt"))
            .and_then(|cert| Ok((cert, std::fs::read_to_string(dir.join("tls.key"))?)))
            .map_err(|e| format!("read the files it wrote in {}: {e}", dir.display())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap_or_else(|e| {
        let rogue = if rogue { " --rogue" } else { "" };
        panic!("testenv.sh client-cert {cn} DIR{rogue}: {e}")
    })
}
