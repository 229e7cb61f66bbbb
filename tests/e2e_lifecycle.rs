//! The sequences users and GitOps tools create, against the real apiserver and databases: every
//! change to what a connection references takes effect on the next reconcile, a recreated
//! object inherits nothing from its namesake, and a delete in any state leaves nothing behind.
//! Each test prints how long the operator took to show the truth.

mod common;

use std::time::Instant;

use common::{
    Harness, TestEnv, condition_reason, eventually, kubectl_ok,
    neo4j::{create_user, unique_user},
    postgres, report, secret_yaml,
    tls::{CA, TlsEndpoint},
};
use dbconn_operator::api::DatabaseConnection;
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

fn status_secret(obj: &DatabaseConnection) -> String {
    obj.status
        .as_ref()
        .and_then(|s| s.credentials.as_ref())
        .map(|c| c.secret_name.clone())
        .unwrap_or_default()
}

fn connection(name: &str, engine: &str, uri: &str, secret: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: {engine}\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: {secret}\n  healthCheck:\n    interval: 30s\n    timeout: 3s\n"
    )
}

/// What kustomize's secretGenerator does on every rotation: a new Secret name in `secretRef`.
/// Wrong password in the new Secret: not Ready; then a right one: Ready. Status names the
/// Secret in use each time.
async fn secret_ref_renamed(h: &Harness, engine: &str, uri: &str, user: &str, password: &str) {
    h.apply(&secret_yaml("login-a", user, password));
    h.apply(&secret_yaml("login-b", user, "not-the-password-9"));
    h.apply(&secret_yaml("login-c", user, password));
    h.apply(&connection("app", engine, uri, "login-a"));
    let obj = h.wait("app", "Ready", "True", None).await;
    assert_eq!(status_secret(&obj), "login-a");

    let started = Instant::now();
    h.apply(&connection("app", engine, uri, "login-b"));
    let obj = h
        .wait("app", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    let to_wrong = started.elapsed();
    assert_eq!(status_secret(&obj), "login-b");

    let started = Instant::now();
    h.apply(&connection("app", engine, uri, "login-c"));
    let obj = h.wait("app", "Ready", "True", Some("Connected")).await;
    let to_right = started.elapsed();
    assert_eq!(status_secret(&obj), "login-c");
    let detail = format!(
        "to a wrong login: AuthenticationFailed after {to_wrong:.1?}; to a right one: Ready after {to_right:.1?}; status.credentials named each"
    );
    println!("{engine}: secretRef renamed {detail}");
    report::record(
        "lifecycle",
        &format!("{engine}: spec.credentials.secretRef renamed both ways"),
        "followed",
        &detail,
    );
}

#[tokio::test]
async fn neo4j_follows_a_renamed_secret_ref_both_ways() {
    let h = Harness::start("rename-neo4j").await;
    let user = unique_user("rename");
    create_user(&user, "rename-right-1").await;
    let uri = TestEnv::get().neo4j_uri().to_owned();
    secret_ref_renamed(&h, "neo4j", &uri, &user, "rename-right-1").await;
}

#[tokio::test]
async fn postgres_follows_a_renamed_secret_ref_both_ways() {
    let h = Harness::start("rename-pg").await;
    let role = postgres::unique_role("rename");
    postgres::create_role(&role, "rename-right-1").await;
    secret_ref_renamed(
        &h,
        "postgres",
        &postgres::uri("postgres"),
        &role,
        "rename-right-1",
    )
    .await;
}

/// A CA bundle from the system store: a real CA, but not the one that signed the endpoint.
fn other_ca() -> String {
    let bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .expect("the system CA bundle (Debian package ca-certificates)");
    let end = "-----END CERTIFICATE-----";
    let first = bundle.find(end).expect("a certificate in the bundle") + end.len();
    bundle[..first].trim_start().to_owned() + "\n"
}

#[tokio::test]
async fn a_changed_ca_secret_ref_takes_effect() {
    let h = Harness::start("ca-ref").await;
    let endpoint = TlsEndpoint::start(false);
    h.apply(&secret_yaml("login", "app", "ca-ref-password-1"));
    h.apply(&common::ca_secret_yaml("ca-other", &other_ca()));
    h.apply(&common::ca_secret_yaml("ca-right", CA));
    let manifest = |ca: &str| {
        format!(
            "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: tls\nspec:\n  engine: neo4j\n  uri: bolt+s://127.0.0.1:{}\n  credentials:\n    secretRef:\n      name: login\n  tls:\n    caSecretRef:\n      name: {ca}\n  healthCheck:\n    interval: 30s\n    timeout: 3s\n",
            endpoint.port
        )
    };
    h.apply(&manifest("ca-other"));
    h.wait("tls", "Ready", "False", Some("TLSError")).await;
    assert_eq!(
        endpoint.handshakes(),
        0,
        "the wrong CA let a handshake through"
    );

    let started = Instant::now();
    h.apply(&manifest("ca-right"));
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    eventually(
        "the probe to get past TLS with the referenced CA",
        async || {
            let obj = api.get("tls").await.unwrap();
            endpoint.handshakes() > 0 && condition_reason(&obj, "Ready") != "TLSError"
        },
    )
    .await;
    let detail = format!(
        "TLSError with another CA; handshake completed {:.1?} after the reference changed",
        started.elapsed()
    );
    println!("caSecretRef changed: {detail}");
    report::record(
        "lifecycle",
        "spec.tls.caSecretRef changed",
        "followed",
        &detail,
    );
}

/// Every status a connection of this name shows, as the watch delivers them, until `done`.
async fn statuses_until(
    api: &Api<DatabaseConnection>,
    name: &str,
    done: impl Fn(&DatabaseConnection) -> bool,
) -> Vec<DatabaseConnection> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api.clone(), config).applied_objects().boxed();
    let mut seen = Vec::new();
    let deadline = tokio::time::sleep(common::CONDITION_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = stream.try_next() => {
                let obj = next.expect("watch DatabaseConnections").expect("the watch goes on");
                let finished = done(&obj);
                seen.push(obj);
                if finished {
                    return seen;
                }
            }
            () = &mut deadline => panic!("{name}: not settled within {:?}", common::CONDITION_TIMEOUT),
        }
    }
}

/// The false Ready this operator must never show: a connection deleted while Ready and
/// recreated under the same name with a wrong password.
#[tokio::test]
async fn a_recreated_connection_inherits_nothing_from_its_namesake() {
    let h = Harness::start("recreate").await;
    let first = h.ready_neo4j("app", "login").await;
    kubectl_ok(&["delete", "-n", &h.ns, "databaseconnection", "app"], None);
    h.apply(&secret_yaml(
        "wrong",
        TestEnv::get().var("NEO4J_USER"),
        "recreate-wrong-7",
    ));
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let watching = statuses_until(&api, "app", |obj| {
        condition_reason(obj, "Ready") == "AuthenticationFailed"
    });
    let started = Instant::now();
    h.apply(&common::neo4j_connection_yaml(
        "app",
        TestEnv::get().neo4j_uri(),
        "wrong",
    ));
    let seen = watching.await;
    let settled = started.elapsed();
    let new_uid = seen.last().unwrap().uid();
    assert_ne!(new_uid, first.uid(), "a new object");
    for obj in &seen {
        assert_ne!(
            common::condition_status(obj, "Ready"),
            "True",
            "the recreated connection showed Ready=True: {:?}",
            obj.status
        );
    }
    let detail = format!(
        "{} status versions watched, none Ready=True; AuthenticationFailed after {settled:.1?}",
        seen.len()
    );
    println!("deleted and recreated with a wrong password: {detail}");
    report::record(
        "lifecycle",
        "deleted while Ready, recreated under the same name with a wrong password",
        "no false Ready",
        &detail,
    );
}

/// Series of `name` in a /metrics scrape.
fn series_of(metrics: &str, name: &str) -> usize {
    let label = format!("name=\"{name}\"");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .count()
}

#[tokio::test]
async fn a_delete_in_any_state_closes_the_pool_and_removes_the_series() {
    let h = Harness::start("deletes").await;
    let env = TestEnv::get();
    let uri = env.neo4j_uri();
    h.ready_neo4j("ready", "login").await;
    h.apply(&secret_yaml(
        "wrong",
        env.var("NEO4J_USER"),
        "deletes-wrong-3",
    ));
    h.apply(&common::neo4j_connection_yaml("refused", uri, "wrong"));
    h.apply(&common::neo4j_connection_yaml(
        "waiting",
        uri,
        "no-such-secret",
    ));
    h.apply(&common::neo4j_connection_yaml(
        "unreachable",
        "bolt://127.0.0.1:1",
        "login",
    ));
    // Past the apiserver's checks but refused by the operator: the default binding name is the
    // CA Secret it reads.
    h.apply(
        &(common::neo4j_connection_yaml("invalid", "bolt+s://127.0.0.1:1", "login")
            + "  binding: {}\n  tls:\n    caSecretRef:\n      name: invalid-binding\n"),
    );
    h.apply(
        &common::neo4j_connection_yaml("suspended", uri, "login")
            .replace("spec:\n", "spec:\n  suspend: true\n"),
    );
    let states = [
        ("ready", "True", "Connected"),
        ("refused", "False", "AuthenticationFailed"),
        ("waiting", "False", "SecretNotFound"),
        ("unreachable", "False", "Unreachable"),
        ("invalid", "False", "InvalidSpec"),
        ("suspended", "Unknown", "Suspended"),
    ];
    let mut gone = Vec::new();
    for (name, status, reason) in states {
        // A suspended connection has no Ready condition (see README, GitOps health).
        let condition = if name == "suspended" {
            "Reachable"
        } else {
            "Ready"
        };
        h.wait(name, condition, status, Some(reason)).await;
    }
    let (_, before) = h.operator.http_get("/metrics").await;
    for (name, _, _) in &states[..5] {
        assert!(
            series_of(&before, name) > 0,
            "{name} has series before its delete"
        );
    }
    assert_eq!(
        series_of(&before, "suspended"),
        0,
        "a suspended connection has none"
    );

    for (name, _, reason) in states {
        kubectl_ok(
            &[
                "delete",
                "-n",
                &h.ns,
                "databaseconnection",
                name,
                "--wait=false",
            ],
            None,
        );
        let took = eventually(&format!("the series of {name} to go"), async || {
            let (_, metrics) = h.operator.http_get("/metrics").await;
            series_of(&metrics, name) == 0
        })
        .await;
        println!("deleted while {reason}: series gone after {took:.1?}");
        gone.push(format!("{reason} {took:.1?}"));
    }
    eventually("every pool to close", async || {
        h.operator.metric("dbconn_open_pools").await == 0.0
    })
    .await;
    let logs = h.operator.logs();
    for (name, _, _) in states {
        assert!(
            logs.contains(&format!("name={name} ")) || logs.contains(&format!("name={name}\n")),
            "the delete of {name} is logged by name"
        );
    }
    report::record(
        "lifecycle",
        "deleted in every state",
        "cleaned up",
        &format!("series gone after: {}; no pool left open", gone.join(", ")),
    );
}
