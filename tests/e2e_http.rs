//! End to end against the real apiserver and a real HTTP server (Debian's nginx, serving
//! Graphiti-shaped health endpoints): the operator runs as a process, manifests go in with
//! kubectl, and the tests read what a user would read. Tests that change the shared server
//! (its password, its running state) are in e2e_http_server.rs.

mod common;

use common::{
    Harness, TestEnv, condition_message, condition_reason, condition_status,
    http::{connection_yaml, https_uri, token_secret_yaml, uri},
    secret_yaml, testenv_ca_secret_yaml,
};

const HEALTHY_JSON: &str = "  http:\n    expectJson:\n      field: status\n      equals: healthy\n";

#[tokio::test]
async fn example_manifest_becomes_ready_and_shows_the_server_version() {
    let h = Harness::start("http-example").await;
    let table = h.apply_example("http.yaml", "knowledge-graph");
    // nginx says `Server: nginx/1.22.1`; the VERSION column shows `1.22.1`.
    let row = table.lines().nth(1).expect("one connection listed");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns[..4],
        ["knowledge-graph", "http", "True", "Connected"],
        "{table}"
    );
    let obj = h.wait("knowledge-graph", "Ready", "True", None).await;
    let server = obj.status.unwrap().server.unwrap();
    assert_eq!(server.agent, "nginx");
    assert!(
        server.version.starts_with("1.") && columns[4] == server.version,
        "{server:?} in {table}"
    );
    h.assert_secret_never_exposed(TestEnv::get().var("HTTP_PASSWORD"));
}

#[tokio::test]
async fn no_login_a_wrong_one_and_a_bearer_token_each_get_their_answer() {
    let h = Harness::start("http-auth").await;
    let env = TestEnv::get();
    // No credentials on an open endpoint: Ready, and the condition says no login was needed.
    h.apply(&connection_yaml(
        "open",
        &uri("/healthcheck"),
        None,
        HEALTHY_JSON,
    ));
    let open = h.wait("open", "Ready", "True", None).await;
    assert_eq!(condition_reason(&open, "CredentialsValid"), "NoLoginNeeded");
    assert!(open.status.unwrap().credentials.is_none());

    // No credentials where a login is asked for.
    h.apply(&connection_yaml(
        "anonymous",
        &uri("/basic/healthcheck"),
        None,
        "",
    ));
    let anonymous = h
        .wait("anonymous", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    assert!(
        condition_message(&anonymous, "Ready").contains("spec.credentials names none"),
        "{}",
        condition_message(&anonymous, "Ready")
    );

    // A wrong password: 401, then right once the Secret is fixed.
    let wrong = "http-wrong-password-1";
    h.apply(&secret_yaml("login", env.var("HTTP_USER"), wrong));
    h.apply(&connection_yaml(
        "basic",
        &uri("/basic/healthcheck"),
        Some("login"),
        "",
    ));
    let refused = h
        .wait("basic", "Ready", "False", Some("AuthenticationFailed"))
        .await;
    let message = condition_message(&refused, "Ready");
    assert!(message.contains("401"), "{message}");
    assert!(message.contains("Secret"), "says what to fix: {message}");
    assert_eq!(condition_status(&refused, "Reachable"), "True");
    h.apply(&secret_yaml(
        "login",
        env.var("HTTP_USER"),
        env.var("HTTP_PASSWORD"),
    ));
    let with_login = h.wait("basic", "Ready", "True", None).await;
    assert!(with_login.status.unwrap().credentials.is_some());

    // The login taken out of the spec (the endpoint changed to an open one): status names no
    // Secret any more.
    h.apply(&connection_yaml("basic", &uri("/healthcheck"), None, ""));
    let dropped = h
        .wait("basic", "CredentialsValid", "True", Some("NoLoginNeeded"))
        .await;
    assert!(dropped.status.unwrap().credentials.is_none());

    // A bearer token from a Secret without a username.
    h.apply(&token_secret_yaml("token", env.var("HTTP_TOKEN")));
    h.apply(&connection_yaml(
        "bearer",
        &uri("/bearer/healthcheck"),
        Some("token"),
        "  http:\n    auth: bearer\n",
    ));
    let bearer = h.wait("bearer", "Ready", "True", None).await;
    assert_eq!(
        condition_reason(&bearer, "CredentialsValid"),
        "Authenticated"
    );
    for secret in [wrong, env.var("HTTP_PASSWORD"), env.var("HTTP_TOKEN")] {
        h.assert_secret_never_exposed(secret);
    }
}

#[tokio::test]
async fn a_wrong_status_or_answer_gets_its_own_reason() {
    let h = Harness::start("http-judge").await;
    h.apply(&connection_yaml("down", &uri("/status/503"), None, ""));
    let down = h
        .wait("down", "Ready", "False", Some("UnexpectedStatus"))
        .await;
    let message = condition_message(&down, "Ready");
    assert!(
        message.contains("503") && message.contains("any 2xx"),
        "{message}"
    );
    assert_eq!(condition_status(&down, "Reachable"), "True");

    // A status the spec expects is healthy, whatever its class.
    h.apply(&connection_yaml(
        "expected",
        &uri("/status/404"),
        None,
        "  http:\n    expectStatus: [404]\n",
    ));
    h.wait("expected", "Ready", "True", None).await;

    h.apply(&connection_yaml(
        "unhealthy",
        &uri("/unhealthy"),
        None,
        HEALTHY_JSON,
    ));
    let unhealthy = h
        .wait("unhealthy", "Ready", "False", Some("UnexpectedResponse"))
        .await;
    let message = condition_message(&unhealthy, "Ready");
    assert!(
        message.contains(r#"is "unhealthy", expected "healthy""#),
        "{message}"
    );
}

#[tokio::test]
async fn https_verifies_the_certificate_against_the_ca_given() {
    let h = Harness::start("http-tls").await;
    let path = "/healthcheck";
    h.apply(&connection_yaml("untrusted", &https_uri(path), None, ""));
    let untrusted = h
        .wait("untrusted", "Ready", "False", Some("TLSError"))
        .await;
    println!(
        "https without the CA: {}",
        condition_message(&untrusted, "Ready")
    );

    h.apply(&testenv_ca_secret_yaml("testenv-ca"));
    h.apply(&connection_yaml(
        "verified",
        &https_uri(path),
        None,
        "  tls:\n    caSecretRef:\n      name: testenv-ca\n",
    ));
    let verified = h.wait("verified", "Ready", "True", None).await;
    assert!(
        verified
            .status
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != "TLSVerified")
    );
    h.apply(&connection_yaml(
        "skip",
        &https_uri(path),
        None,
        "  tls:\n    insecureSkipVerify: true\n",
    ));
    let skip = h
        .wait("skip", "TLSVerified", "False", Some("InsecureSkipVerify"))
        .await;
    assert_eq!(condition_status(&skip, "Ready"), "True");
}

#[tokio::test]
async fn malformed_http_manifests_are_rejected_by_the_apiserver() {
    // The apiserver alone answers: no operator needed.
    common::install_crd();
    let ns = common::TestNamespace::create(&common::client().await, "http-reject").await;
    let base = connection_yaml("bad", &uri("/healthcheck"), None, "");
    let neo4j = common::neo4j_connection_yaml("bad", "bolt://127.0.0.1:7687", "login");
    let cases = [
        (
            "a login in the uri",
            base.replace("http://", "http://graph:hunter2@"),
            "for engine http, uri must look like http://host:8000/healthcheck",
        ),
        (
            "a fragment",
            base.replace("/healthcheck", "/healthcheck#top"),
            "for engine http, uri must look like",
        ),
        (
            "tls on http://",
            format!("{base}  tls:\n    insecureSkipVerify: true\n"),
            "for engine http, spec.tls applies only to https:// URIs",
        ),
        (
            "auth without credentials",
            format!("{base}  http:\n    auth: bearer\n"),
            "spec.http.auth sends the login from spec.credentials",
        ),
        (
            "a status code that does not exist",
            format!("{base}  http:\n    expectStatus: [700]\n"),
            "spec.http.expectStatus[0]",
        ),
        (
            "spec.http on another engine",
            format!("{neo4j}  http:\n    expectStatus: [200]\n"),
            "spec.http is only for engine http",
        ),
        (
            "a database on http",
            format!("{base}  database: app\n"),
            "spec.database is only for engine neo4j, postgres or mysql",
        ),
    ];
    common::assert_rejected(&ns.name, &cases);
}
