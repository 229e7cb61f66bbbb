//! End to end against the real apiserver and the real PostgreSQL: the operator runs as a process,
//! manifests go in with kubectl, and the tests read what a user would read.

mod common;

use common::{
    Harness, TestEnv, condition_reason, condition_status, eventually, kubectl_ok,
    postgres::{
        self, connection_yaml, create_role, server_version, sessions_of, set_password, unique_role,
        uri,
    },
    secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;

#[tokio::test]
async fn example_manifest_becomes_ready_and_shows_the_server_version() {
    let h = Harness::start("pg-example").await;

    // The user's way to wait, verbatim: `kubectl wait --for=condition=Ready`.
    let table = h.apply_example("postgres.yaml", "orders");
    // `15.18 (Debian 15.18-0+deb12u1)` on the server; the VERSION column shows `15.18`.
    let reported = server_version().await;
    let version = reported.split_whitespace().next().unwrap().to_owned();
    let row = table.lines().nth(1).expect("one connection listed");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..5],
        ["orders", "postgres", "True", "Connected", version.as_str()],
        "{table}"
    );

    let obj = h.wait("orders", "Ready", "True", None).await;
    let status = obj.status.unwrap();
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let server = status.server.unwrap();
    assert_eq!(server.agent, "PostgreSQL");
    assert_eq!(server.version, version);
    assert!(
        reported.contains(&server.edition),
        "edition {:?} not in {reported:?}",
        server.edition
    );
    assert_eq!(
        status.credentials.unwrap().secret_name,
        "orders-credentials"
    );
    h.assert_secret_never_exposed(TestEnv::get().var("POSTGRES_PASSWORD"));
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_then_fixed_by_a_secret_update() {
    let h = Harness::start("pg-authfail").await;
    let role = unique_role("authfail");
    let (good, wrong) = ("pg-right-password-1", "pg-wrong-password-1");
    create_role(&role, good).await;

    h.apply(&secret_yaml("login", &role, wrong));
    h.apply(&connection_yaml("app", &uri("dbconn"), "login"));
    let failed = h
        .wait("app", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    assert_eq!(
        condition_reason(&failed, "CredentialsValid"),
        "AuthenticationFailed"
    );
    assert_eq!(condition_reason(&failed, "Stalled"), "AuthenticationFailed");
    // The server answered, with SQLSTATE 28P01.
    assert_eq!(condition_status(&failed, "Reachable"), "True");
    let message = &failed
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.contains("28P01"), "{message}");
    assert!(
        message.contains("Secret"),
        "should say what to fix: {message}"
    );

    h.apply(&secret_yaml("login", &role, good));
    h.wait("app", "Ready", "True", None).await;
    for password in [good, wrong] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn unknown_database_and_tls_refused_get_their_own_reasons() {
    let h = Harness::start("pg-nodb").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("POSTGRES_USER"),
        env.var("POSTGRES_PASSWORD"),
    ));

    h.apply(&connection_yaml("nodb", &uri("no_such_database"), "login"));
    let obj = h
        .wait("nodb", "Ready", "False", Some("DatabaseNotFound"))
        .await;
    assert_eq!(condition_reason(&obj, "Stalled"), "DatabaseNotFound");
    assert_eq!(condition_status(&obj, "Reachable"), "True");

    // The test server speaks plain TCP only: sslmode=require must fail, not fall back.
    let require = uri("dbconn").replace("sslmode=disable", "sslmode=require");
    h.apply(&connection_yaml("tls", &require, "login"));
    let obj = h.wait("tls", "Ready", "False", Some("TLSError")).await;
    assert_eq!(condition_reason(&obj, "TLSVerified"), "InsecureSkipVerify");

    h.assert_secret_never_exposed(env.var("POSTGRES_PASSWORD"));
}

#[tokio::test]
async fn rotated_password_is_used_live_and_the_old_sessions_close() {
    let mut h = Harness::start("pg-rotate").await;
    let role = unique_role("rotate");
    let (old, new) = ("pg-rotation-old-1", "pg-rotation-new-2");
    create_role(&role, old).await;
    h.apply(&secret_yaml("login", &role, old));
    h.apply(&connection_yaml("app", &uri("dbconn"), "login"));
    let before = h.wait("app", "Ready", "True", None).await;
    let old_version = before
        .status
        .unwrap()
        .credentials
        .unwrap()
        .secret_resource_version;

    // The way a password is rotated: the server first, then the Secret.
    set_password(&role, new).await;
    h.apply(&secret_yaml("login", &role, new));
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    eventually("status to report the new Secret version", async || {
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
    // The old pool was dropped: one session left, the new pool's.
    eventually("the old pool's session to close", async || {
        sessions_of(&role).await == 1
    })
    .await;
    let events = kubectl_ok(
        &[
            "get",
            "events",
            "-n",
            &h.ns,
            "--field-selector",
            "reason=CredentialsReloaded",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        events.lines().count(),
        1,
        "one CredentialsReloaded event: {events}"
    );
    assert!(h.operator.is_running(), "no operator restart");
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
}

#[tokio::test]
async fn malformed_postgres_manifests_are_rejected_by_the_apiserver() {
    common::install_crd();
    let client = common::client().await;
    let ns = common::TestNamespace::create(&client, "pg-invalid").await;
    let base = connection_yaml("bad", "postgres://127.0.0.1:5432/app", "login");
    let cases = [
        (
            "credentials in uri",
            base.replace("postgres://127.0.0.1", "postgres://app:pw@127.0.0.1"),
            "for engine postgres, uri must look like postgres://host:5432/database",
        ),
        (
            "other query parameter",
            base.replace("/app", "/app?password=x"),
            "the only query parameters allowed are sslmode",
        ),
        (
            "prefer",
            base.replace("/app", "/app?sslmode=prefer"),
            "the only query parameters allowed are sslmode",
        ),
        (
            "tls without a verifying sslmode",
            format!("{base}  tls:\n    caSecretRef:\n      name: pg-ca\n"),
            "spec.tls applies only with sslmode=verify-ca or sslmode=verify-full",
        ),
    ];
    common::assert_rejected(&ns.name, &cases);
    let good = base.replace("/app", "/app?sslmode=verify-full")
        + "  tls:\n    caSecretRef:\n      name: pg-ca\n";
    kubectl_ok(&["apply", "-n", &ns.name, "-f", "-"], Some(&good));
}

#[tokio::test]
async fn declared_extensions_are_installed_and_unavailable_ones_named() {
    let h = Harness::start("pgext").await;
    let env = TestEnv::get();
    // A database of its own, owned by the test role, so no earlier run's extensions are there.
    let database = format!("ext_{}", h.ns.rsplit('-').next().unwrap());
    postgres::admin()
        .await
        .batch_execute(&format!(
            "CREATE DATABASE {database} OWNER {}",
            env.var("POSTGRES_USER")
        ))
        .await
        .expect("create a database for the test");
    h.apply(&secret_yaml(
        "login",
        env.var("POSTGRES_USER"),
        env.var("POSTGRES_PASSWORD"),
    ));
    let manifest = postgres::connection_yaml("app", &postgres::uri(&database), "login");
    h.apply(&format!("{manifest}  schema:\n    extensions: [citext]\n"));
    let obj = h
        .wait("app", "SchemaReady", "True", Some("SchemaApplied"))
        .await;
    assert_eq!(obj.status.unwrap().schema.unwrap().managed, ["citext"]);
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "{}/{database}",
            env.var("POSTGRES_URI").rsplit_once('/').unwrap().0
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let installed = client
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'citext'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(installed.get::<_, i64>(0), 1);

    h.apply(&format!(
        "{manifest}  schema:\n    extensions: [citext, no_such_extension]\n"
    ));
    let obj = h
        .wait("app", "SchemaReady", "False", Some("ExtensionUnavailable"))
        .await;
    let message = obj
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "SchemaReady")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("\"no_such_extension\""), "{message}");
    assert_eq!(
        condition_status(&obj, "Ready"),
        "True",
        "the connection itself is fine"
    );
}

#[tokio::test]
async fn pool_usage_is_exported_as_metrics() {
    let h = Harness::start("pgpool").await;
    let env = TestEnv::get();
    h.apply(&secret_yaml(
        "login",
        env.var("POSTGRES_USER"),
        env.var("POSTGRES_PASSWORD"),
    ));
    h.apply(&connection_yaml(
        "app",
        &uri(env.var("POSTGRES_DB")),
        "login",
    ));
    h.wait("app", "Ready", "True", None).await;
    let (_, metrics) = h.operator.http_get("/metrics").await;
    let open = format!(
        "dbconn_pool_connections{{namespace=\"{}\",name=\"app\",engine=\"postgres\",state=\"open\"}} 1",
        h.ns
    );
    assert!(metrics.contains(&open), "{metrics}");
}
