//! TLS certificate verification is on by default, through the real drivers: each engine's pool
//! connects to a local TLS endpoint whose certificate comes from a test CA that no system store
//! trusts. `bolt+s://` without `spec.tls`, and PostgreSQL's `sslmode=verify-full` and
//! `verify-ca`, must refuse it before the handshake completes; only an explicit opt-out
//! (`insecureSkipVerify`, `+ssc`, `sslmode=require`) or that CA in `spec.tls.caSecretRef` gets
//! through. Opting out shows as `TLSVerified=False` with a message that says what to do.
//! No test environment needed: the endpoint is in this process.

mod common;

use std::time::Duration;

use common::{
    report,
    tls::{CA, TlsEndpoint},
};
use dbconn_operator::{
    api::{DatabaseConnectionStatus, ServerInfo},
    conditions::{TLS_VERIFIED, find},
    credentials::Credentials,
    engine::EngineError,
    settings::{ConnectionSettings, TlsMode},
    status::{self, Facts, Outcome},
};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

/// Settings as `from_spec` makes them from a manifest.
fn settings(engine: &str, uri: &str, tls: serde_json::Value) -> ConnectionSettings {
    let spec = serde_json::from_value(json!({
        "engine": engine,
        "uri": uri,
        "credentials": {"secretRef": {"name": "login"}},
        "tls": tls,
        "pool": {"connectionTimeout": "5s"},
    }))
    .expect("the spec deserializes");
    ConnectionSettings::from_spec(&spec).expect("the spec is valid")
}

/// Opens a pool through the engine, as the reconciler does, and probes it once.
async fn probe(settings: &ConnectionSettings, ca: Option<&str>) -> EngineError {
    let credentials = Credentials {
        ca_pem: ca.map(|pem| pem.as_bytes().to_vec()),
        ca_resource_version: ca.map(|_| "1".into()),
        ..Credentials::login("app", "tls-test-password", "login", "1")
    };
    let pool = (settings.engine.open)(settings, &credentials).expect("opening a pool does no I/O");
    let probe = tokio::time::timeout(Duration::from_secs(30), pool.identify()).await;
    match probe.expect("the probe ends") {
        Ok(server) => panic!("a server that speaks no database protocol answered: {server:?}"),
        Err(error) => error,
    }
}

/// The probe failed on the certificate, and no handshake completed.
fn refused(endpoint: &TlsEndpoint, error: &EngineError) {
    assert_eq!(error.reason(), "TLSError", "{error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "not a certificate failure: {error}"
    );
    assert_eq!(endpoint.handshakes(), 0, "a handshake completed: {error}");
}

/// The handshake completed (the certificate was accepted), and only then did the probe fail.
fn accepted(endpoint: &TlsEndpoint, error: &EngineError) {
    assert_ne!(error.reason(), "TLSError", "{error}");
    assert!(endpoint.handshakes() > 0, "no handshake completed: {error}");
}

#[tokio::test]
async fn neo4j_verifies_certificates_unless_told_not_to() {
    let endpoint = TlsEndpoint::start(false);
    let uri = |scheme: &str| format!("{scheme}://127.0.0.1:{}", endpoint.port);

    let default = settings("neo4j", &uri("bolt+s"), json!(null));
    assert_eq!(default.tls, TlsMode::Verified(None));
    refused(&endpoint, &probe(&default, None).await);
    report::record(
        "security",
        "TLS verified by default: neo4j bolt+s://",
        "refused",
        "a certificate from an untrusted CA fails with TLSError before the handshake completes",
    );

    let with_ca = settings(
        "neo4j",
        &uri("bolt+s"),
        json!({"caSecretRef": {"name": "ca"}}),
    );
    accepted(&endpoint, &probe(&with_ca, Some(CA)).await);
    let handshakes = endpoint.handshakes();
    let skip = settings("neo4j", &uri("bolt+s"), json!({"insecureSkipVerify": true}));
    assert_eq!(skip.tls, TlsMode::InsecureSkipVerify);
    accepted(&endpoint, &probe(&skip, None).await);
    assert!(endpoint.handshakes() > handshakes);
    report::record(
        "security",
        "TLS opt-outs: neo4j caSecretRef, insecureSkipVerify",
        "accepted",
        "only the CA from spec.tls or an explicit insecureSkipVerify gets past the certificate",
    );
}

#[tokio::test]
async fn postgres_verifies_certificates_unless_told_not_to() {
    let endpoint = TlsEndpoint::start(true);
    let uri = |mode: &str| format!("postgres://127.0.0.1:{}/app?sslmode={mode}", endpoint.port);

    for mode in ["verify-full", "verify-ca"] {
        let verifying = settings("postgres", &uri(mode), json!(null));
        assert_eq!(verifying.tls, TlsMode::Verified(None), "{mode}");
        refused(&endpoint, &probe(&verifying, None).await);
    }
    report::record(
        "security",
        "TLS verified: postgres sslmode=verify-full, verify-ca",
        "refused",
        "a certificate from an untrusted CA fails with TLSError before the handshake completes",
    );

    let with_ca = settings(
        "postgres",
        &uri("verify-full"),
        json!({"caSecretRef": {"name": "ca"}}),
    );
    accepted(&endpoint, &probe(&with_ca, Some(CA)).await);
    let handshakes = endpoint.handshakes();
    let require = settings("postgres", &uri("require"), json!(null));
    assert_eq!(require.tls, TlsMode::InsecureSkipVerify);
    accepted(&endpoint, &probe(&require, None).await);
    assert!(endpoint.handshakes() > handshakes);
    report::record(
        "security",
        "TLS opt-outs: postgres caSecretRef, sslmode=require",
        "accepted",
        "only the CA from spec.tls or an explicit sslmode=require gets past the certificate",
    );
}

#[test]
fn skipping_verification_is_a_false_tls_verified_condition_that_says_what_to_do() {
    let server = ServerInfo::default();
    let connected = Outcome::Connected {
        server: &server,
        endpoint: "db:7687",
        user: Some("app"),
    };
    let status = |insecure| {
        let facts = Facts {
            insecure_tls: Some(insecure),
            ..Facts::default()
        };
        let previous = DatabaseConnectionStatus::default();
        status::desired(&previous, &connected, &facts, Some(1), Timestamp::now())
    };
    let insecure = status(true);
    let condition = find(&insecure.conditions, TLS_VERIFIED).expect("TLSVerified is set");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "InsecureSkipVerify")
    );
    for advice in [
        "not authenticated",
        "spec.tls.caSecretRef",
        "sslmode=verify-full",
    ] {
        assert!(condition.message.contains(advice), "{}", condition.message);
    }
    assert!(find(&status(false).conditions, TLS_VERIFIED).is_none());
    report::record(
        "security",
        "insecureSkipVerify surfaced",
        "reported",
        "TLSVerified=False, reason InsecureSkipVerify, the message names the fix",
    );
}
