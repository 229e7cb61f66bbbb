//! Client certificates (`spec.tls.clientCertSecretRef`) against servers that log clients in by
//! them: the PostgreSQL of services/postgres_mtls.sh (`hostssl … cert`, the CN names the role)
//! and MariaDB's `REQUIRE X509` user. A rotated certificate is in use at once (the server's own
//! view of the session says which); a wrong one is `AuthenticationFailed` with a hint; the key
//! appears nowhere the operator writes; neo4j refuses the field at apply.

mod common;

use std::process::Command;

use common::{
    Harness, TestEnv, assert_rejected, condition_message, condition_reason, events, eventually,
    mtls::client_cert, neo4j_connection_yaml, record_password, testenv_ca_secret_yaml,
};

/// A `kubernetes.io/tls` Secret, as cert-manager writes one.
fn tls_secret_yaml(name: &str, cert: &str, key: &str) -> String {
    let indent = |pem: &str| pem.trim_end().replace('\n', "\n    ");
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n    {}\n  tls.key: |\n    {}\n",
        indent(cert),
        indent(key)
    )
}

/// A login Secret with a username alone: the certificate proves who logs in.
fn username_secret_yaml(name: &str, username: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  username: {username}\n"
    )
}

fn connection_yaml(name: &str, engine: &str, uri: &str, login: &str, cert: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: {engine}\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: {login}\n  tls:\n    caSecretRef:\n      name: testenv-ca\n    clientCertSecretRef:\n      name: {cert}\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n"
    )
}

/// The key's middle line: what a leak of the key would show. Recorded for the secret scan.
fn key_fingerprint(key: &str) -> String {
    let line = key.lines().nth(1).expect("a PEM key body").to_owned();
    record_password(&line);
    line
}

/// The serial numbers of the certificates the operator's sessions presented, as the
/// PostgreSQL server saw them (`pg_stat_ssl`).
fn serials_in_use() -> Vec<String> {
    let env = TestEnv::get();
    let out = Command::new("psql")
        .env("PGPASSWORD", env.var("POSTGRES_MTLS_ADMIN_PASSWORD"))
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            env.var("POSTGRES_MTLS_PORT"),
            "-U",
            env.var("POSTGRES_MTLS_ADMIN_USER"),
            "-d",
            "postgres",
            "-c",
            "SELECT s.client_serial FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'dbconn-operator' AND s.client_serial IS NOT NULL \
             ORDER BY 1",
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The serial number of a PEM certificate, in decimal as `pg_stat_ssl` shows it.
fn serial_of(cert: &str) -> String {
    let mut openssl = Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run openssl");
    use std::io::Write;
    openssl
        .stdin
        .take()
        .unwrap()
        .write_all(cert.as_bytes())
        .unwrap();
    let out = openssl.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned();
    // pg_stat_ssl prints the serial as a decimal number; it can exceed u128, so convert by hand.
    let mut digits = vec![0u32];
    for nibble in hex.chars().map(|c| c.to_digit(16).expect("hex serial")) {
        let mut carry = nibble;
        for digit in digits.iter_mut() {
            let value = *digit * 16 + carry;
            *digit = value % 10;
            carry = value / 10;
        }
        while carry > 0 {
            digits.push(carry % 10);
            carry /= 10;
        }
    }
    digits.iter().rev().map(|d| d.to_string()).collect()
}

#[tokio::test]
async fn postgres_logs_in_by_certificate_and_follows_its_rotation() {
    let h = Harness::start("mtls-pg").await;
    let env = TestEnv::get();
    let user = env.var("POSTGRES_MTLS_USER");
    let uri = format!(
        "postgres://127.0.0.1:{}/{}?sslmode=verify-full",
        env.var("POSTGRES_MTLS_PORT"),
        env.var("POSTGRES_MTLS_DB")
    );
    let (cert, key) = client_cert(user, false);
    let first_key = key_fingerprint(&key);
    h.apply(&testenv_ca_secret_yaml("testenv-ca"));
    h.apply(&username_secret_yaml("pg-login", user));
    h.apply(&tls_secret_yaml("pg-client", &cert, &key));
    h.apply(&connection_yaml(
        "ledger",
        "postgres",
        &uri,
        "pg-login",
        "pg-client",
    ));
    let ready = h.wait("ledger", "Ready", "True", Some("Connected")).await;
    assert_eq!(
        condition_message(&ready, "CredentialsValid"),
        format!("Logged in as {user:?}.")
    );
    assert_eq!(serials_in_use(), [serial_of(&cert)]);

    // Rotation, as cert-manager renews: same Secret, new certificate and key.
    let (renewed, renewed_key) = client_cert(user, false);
    let second_key = key_fingerprint(&renewed_key);
    h.apply(&tls_secret_yaml("pg-client", &renewed, &renewed_key));
    let started = std::time::Instant::now();
    let in_use = eventually(
        "the renewed certificate to be the only one in use",
        async || serials_in_use() == [serial_of(&renewed)],
    )
    .await;
    let reloaded = events(&h.client, &h.ns, "CredentialsReloaded").await;
    let note = reloaded
        .iter()
        .filter_map(|e| e.note.as_deref())
        .find(|n| n.contains("client certificate from Secret \"pg-client\""))
        .unwrap_or_else(|| panic!("no CredentialsReloaded naming pg-client: {reloaded:?}"));
    println!(
        "rotated client certificate in use after {in_use:?} ({:?} since the apply): {note}",
        started.elapsed()
    );
    let obj = h.wait("ledger", "Ready", "True", Some("Connected")).await;
    assert_eq!(condition_reason(&obj, "CredentialsValid"), "Authenticated");

    // A certificate for another name: the server refuses the login (28000), and says why.
    let (other, other_key) = client_cert("someone_else", false);
    let third_key = key_fingerprint(&other_key);
    h.apply(&tls_secret_yaml("pg-client", &other, &other_key));
    let refused = h
        .wait("ledger", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    let message = condition_message(&refused, "Ready");
    println!("certificate for another CN: {message}");
    assert!(
        message.contains("28000") && message.contains("certificate authentication failed"),
        "{message}"
    );
    assert!(
        message.contains("clientCertSecretRef"),
        "the hint names the field: {message}"
    );

    // A certificate from a CA the server does not trust: refused in the handshake.
    let (rogue, rogue_key) = client_cert(user, true);
    let fourth_key = key_fingerprint(&rogue_key);
    h.apply(&tls_secret_yaml("pg-client", &rogue, &rogue_key));
    let api: kube::Api<dbconn_operator::api::DatabaseConnection> =
        kube::Api::namespaced(h.client.clone(), &h.ns);
    let before = message;
    eventually("the untrusted certificate to be tried", async || {
        condition_message(&api.get("ledger").await.unwrap(), "Ready") != before
    })
    .await;
    let untrusted = api.get("ledger").await.unwrap();
    let message = condition_message(&untrusted, "Ready");
    println!("certificate from an untrusted CA: {message}");
    assert_eq!(
        condition_reason(&untrusted, "Ready"),
        "AuthenticationFailed"
    );
    assert!(message.contains("TLS alert UnknownCA"), "{message}");

    // Back to a good one.
    let (good, good_key) = client_cert(user, false);
    let fifth_key = key_fingerprint(&good_key);
    h.apply(&tls_secret_yaml("pg-client", &good, &good_key));
    h.wait("ledger", "Ready", "True", Some("Connected")).await;
    for key in [first_key, second_key, third_key, fourth_key, fifth_key] {
        h.assert_secret_never_exposed(&key);
    }
}

#[tokio::test]
async fn mariadb_require_x509_needs_the_certificate() {
    let h = Harness::start("mtls-mysql").await;
    let env = TestEnv::get();
    let (user, password) = (
        env.var("MARIADB_X509_USER"),
        env.var("MARIADB_X509_PASSWORD"),
    );
    let uri = format!(
        "mysql://127.0.0.1:{}/dbconn?sslmode=verify-full",
        common::mariadb::port()
    );
    let (cert, key) = client_cert("inventory", false);
    let key_line = key_fingerprint(&key);
    h.apply(&testenv_ca_secret_yaml("testenv-ca"));
    h.apply(&common::secret_yaml("x509-login", user, password));
    h.apply(&tls_secret_yaml("x509-client", &cert, &key));
    h.apply(&connection_yaml(
        "inventory",
        "mysql",
        &uri,
        "x509-login",
        "x509-client",
    ));
    h.wait("inventory", "Ready", "True", Some("Connected"))
        .await;

    // The same login without the certificate: 1045.
    let without = connection_yaml("inventory", "mysql", &uri, "x509-login", "x509-client")
        .replace("    clientCertSecretRef:\n      name: x509-client\n", "");
    h.apply(&without);
    let refused = h
        .wait("inventory", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    let message = condition_message(&refused, "Ready");
    println!("REQUIRE X509 without a certificate: {message}");
    assert!(message.contains("1045"), "{message}");
    h.assert_secret_never_exposed(&key_line);
    h.assert_secret_never_exposed(password);
}

#[tokio::test]
async fn neo4j_refuses_a_client_certificate_at_apply() {
    let h = Harness::start("mtls-neo4j").await;
    let env = TestEnv::get();
    let manifest = neo4j_connection_yaml("graph", env.neo4j_uri(), "login").replace(
        "spec:\n",
        "spec:\n  tls:\n    clientCertSecretRef:\n      name: client\n",
    );
    assert_rejected(
        &h.ns,
        &[(
            "client certificate on neo4j",
            manifest,
            "spec.tls.clientCertSecretRef is only for engine postgres, mysql or http",
        )],
    );
}
