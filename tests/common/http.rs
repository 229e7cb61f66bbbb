//! The test nginx (tests/testenv/services/nginx.sh): Graphiti-shaped health endpoints over HTTP
//! and HTTPS, with basic auth and a bearer token, for the `http` engine's tests.

use super::TestEnv;

/// `http://127.0.0.1:HTTP_PORT{path}`.
pub fn uri(path: &str) -> String {
    let env = TestEnv::get();
    format!(
        "http://{}:{}{path}",
        env.var("HTTP_HOST"),
        env.var("HTTP_PORT")
    )
}

/// `https://127.0.0.1:HTTPS_PORT{path}`, with a certificate from the test CA.
pub fn https_uri(path: &str) -> String {
    let env = TestEnv::get();
    format!(
        "https://{}:{}{path}",
        env.var("HTTP_HOST"),
        env.var("HTTPS_PORT")
    )
}

/// An `http` DatabaseConnection with fast health checks; `secret` names its login, if any, and
/// `extra` is appended under `spec` (two-space indented lines).
pub fn connection_yaml(name: &str, uri: &str, secret: Option<&str>, extra: &str) -> String {
    let credentials = secret
        .map(|s| format!("  credentials:\n    secretRef:\n      name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: http\n  uri: {uri}\n{credentials}  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n{extra}"
    )
}

/// A Secret holding only a token (under `password`), as a bearer login needs.
pub fn token_secret_yaml(name: &str, token: &str) -> String {
    super::record_password(token);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  password: {token}\n"
    )
}

/// Replaces the basic-auth users with `user`:`password` (nginx rereads the file per request).
pub fn set_password(user: &str, password: &str) {
    TestEnv::get().testenv(&["http-password", user, password]);
}

/// nginx's connection counters: (connections accepted, requests served), read over a
/// connection of its own (which the counts include).
pub async fn counters() -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::get();
    let address = format!("{}:{}", env.var("HTTP_HOST"), env.var("HTTP_PORT"));
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("nginx answers");
    stream
        .write_all(b"GET /nginx_status HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    // "server accepts handled requests\n 3 3 3 \n"
    let numbers: Vec<u64> = text
        .lines()
        .skip_while(|l| !l.starts_with("server accepts"))
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "nginx_status: {text}");
    (numbers[0], numbers[2])
}
