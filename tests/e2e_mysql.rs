//! End to end against the real apiserver and the real MariaDB (engine `mysql`): the operator runs
//! as a process, manifests go in with kubectl, and the tests read what a user would read.

mod common;

use std::time::Instant;

use common::{
    Harness, TestEnv, condition_message, condition_reason, condition_status,
    mariadb::{
        self, connection_yaml, create_user, server_version, sessions_of, set_password, unique_user,
        uri,
    },
    secret_yaml, testenv_ca_secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;

#[tokio::test]
async fn example_manifest_becomes_ready_and_shows_the_server_version() {
    let h = Harness::start("my-example").await;
    let table = h.apply_example("mysql.yaml", "inventory");

    // `10.11.19-MariaDB-0+deb12u1` on the server; the VERSION column shows `10.11.19`.
    let reported = server_version();
    let version = reported.split('-').next().unwrap().to_owned();
    let row = table.lines().nth(1).expect("one connection listed");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..5],
        ["inventory", "mysql", "True", "Connected", version.as_str()],
        "{table}"
    );
    let obj = h.wait("inventory", "Ready", "True", None).await;
    let server = obj.status.unwrap().server.unwrap();
    assert_eq!(server.agent, "MariaDB", "MariaDB told from MySQL");
    assert_eq!(server.version, version);
    h.assert_secret_never_exposed(TestEnv::get().var("MARIADB_PASSWORD"));
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_then_fixed_by_a_secret_update() {
    let h = Harness::start("my-authfail").await;
    let user = unique_user("authfail");
    let (good, wrong) = ("my-right-password-1", "my-wrong-password-1");
    create_user(&user, good);
    h.apply(&secret_yaml("login", &user, wrong));
    h.apply(&connection_yaml("app", &uri("dbconn"), "login"));
    let failed = h
        .wait("app", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    assert_eq!(
        condition_reason(&failed, "CredentialsValid"),
        "AuthenticationFailed"
    );
    // The server answered, with error 1045.
    assert_eq!(condition_status(&failed, "Reachable"), "True");
    let message = condition_message(&failed, "Ready");
    assert!(message.contains("1045"), "{message}");
    assert!(message.contains("Secret"), "says what to fix: {message}");

    h.apply(&secret_yaml("login", &user, good));
    h.wait("app", "Ready", "True", None).await;
    for password in [good, wrong] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn unknown_database_tls_and_access_get_their_own_reasons() {
    let h = Harness::start("my-reasons").await;
    let user = unique_user("reasons");
    let password = "my-reasons-password-1";
    create_user(&user, password);
    h.apply(&secret_yaml("login", &user, password));

    // MariaDB answers 1044 (access denied) for a database the user has no rights on, whether
    // it exists or not; with a global privilege it says 1049 (unknown database).
    h.apply(&connection_yaml(
        "noaccess",
        &uri("no_such_database"),
        "login",
    ));
    let obj = h
        .wait("noaccess", "Ready", "False", Some("PermissionDenied"))
        .await;
    assert!(condition_message(&obj, "Ready").contains("1044"), "{obj:?}");
    mariadb::sql(&format!("GRANT SELECT ON *.* TO '{user}'@'127.0.0.1'"));
    h.apply(&connection_yaml("nodb", &uri("no_such_database"), "login"));
    let obj = h
        .wait("nodb", "Ready", "False", Some("DatabaseNotFound"))
        .await;
    assert_eq!(condition_status(&obj, "Reachable"), "True");

    // The test server's certificate comes from the test CA: verify-full needs that CA, and
    // without it fails the handshake rather than falling back to plain TCP.
    let verify = |name: &str, ca: Option<&str>| {
        let mut yaml = connection_yaml(name, &uri("dbconn"), "login")
            .replace("/dbconn\n", "/dbconn?sslmode=verify-full\n");
        if let Some(ca) = ca {
            yaml.push_str(&format!("  tls:\n    caSecretRef:\n      name: {ca}\n"));
        }
        yaml
    };
    h.apply(&verify("untrusted", None));
    let obj = h
        .wait("untrusted", "Ready", "False", Some("TLSError"))
        .await;
    println!(
        "verify-full without the CA: {}",
        condition_message(&obj, "Ready")
    );
    h.apply(&testenv_ca_secret_yaml("testenv-ca"));
    h.apply(&verify("verified", Some("testenv-ca")));
    let obj = h.wait("verified", "Ready", "True", None).await;
    let conditions = &obj.status.unwrap().conditions;
    assert!(
        conditions.iter().all(|c| c.type_ != "TLSVerified"),
        "a verified connection carries no TLS warning: {conditions:?}"
    );
    // sslmode=require encrypts without checking: Ready, with the warning.
    let require = connection_yaml("require", &uri("dbconn"), "login")
        .replace("/dbconn\n", "/dbconn?sslmode=require\n");
    h.apply(&require);
    let obj = h
        .wait(
            "require",
            "TLSVerified",
            "False",
            Some("InsecureSkipVerify"),
        )
        .await;
    assert_eq!(condition_status(&obj, "Ready"), "True");
    h.assert_secret_never_exposed(password);
}

#[tokio::test]
async fn rotated_password_is_used_live_and_the_old_sessions_close() {
    let mut h = Harness::start("my-rotate").await;
    let user = unique_user("rotate");
    let (old, new) = ("my-rotation-old-1", "my-rotation-new-2");
    create_user(&user, old);
    h.apply(&secret_yaml("login", &user, old));
    h.apply(&connection_yaml("app", &uri("dbconn"), "login"));
    let before = h.wait("app", "Ready", "True", None).await;
    let old_version = before
        .status
        .unwrap()
        .credentials
        .unwrap()
        .secret_resource_version;

    // The way a password is rotated: the server first, then the Secret.
    set_password(&user, new);
    let rotated = Instant::now();
    h.apply(&secret_yaml("login", &user, new));
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    common::eventually("status to report the new Secret version", async || {
        let obj = api.get("app").await.unwrap();
        let version = obj
            .status
            .as_ref()
            .and_then(|s| s.credentials.as_ref())
            .map(|c| c.secret_resource_version.clone())
            .unwrap_or_default();
        version != old_version && condition_reason(&obj, "Ready") == "Connected"
    })
    .await;
    println!(
        "rotation in effect {:?} after the Secret update",
        rotated.elapsed()
    );
    // The old pool was closed: one session left, the new pool's.
    common::eventually("the old pool's session to close", async || {
        sessions_of(&user) == 1
    })
    .await;
    assert!(h.operator.is_running(), "no operator restart");
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn malformed_mysql_manifests_are_rejected_by_the_apiserver() {
    // The apiserver alone answers: no operator needed.
    common::install_crd();
    let ns = common::TestNamespace::create(&common::client().await, "my-reject").await;
    let base = connection_yaml("bad", &uri("app"), "login");
    let cases = [
        (
            "credentials in the uri",
            base.replace("mysql://", "mysql://root:hunter2@"),
            "for engine mysql, uri must look like mysql://host:3306/database",
        ),
        (
            "the driver's own TLS parameter",
            base.replace("/app", "/app?ssl-mode=REQUIRED"),
            "the only query parameter allowed is sslmode",
        ),
        (
            "a fallback sslmode",
            base.replace("/app", "/app?sslmode=prefer"),
            "the only query parameter allowed is sslmode",
        ),
        (
            "tls without a verifying sslmode",
            format!("{base}  tls:\n    insecureSkipVerify: true\n"),
            "for engine mysql, spec.tls applies only with sslmode=verify-ca or sslmode=verify-full",
        ),
        (
            "extensions are PostgreSQL's",
            format!("{base}  schema:\n    extensions: [pg_trgm]\n"),
            "spec.schema.extensions is only for engine postgres",
        ),
    ];
    common::assert_rejected(&ns.name, &cases);
}
