//! The optional OpenTelemetry export (`--features otel`): the operator's reconcile spans reach
//! an OTLP/HTTP endpoint. The endpoint here is a minimal collector on loopback that records
//! what it is sent; the operator, apiserver and Neo4j are the real ones.
#![cfg(feature = "otel")]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::Harness;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// Records (path, body) of every HTTP request and answers 200.
async fn collector() -> (u16, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).await.unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).await.unwrap();
                    record.lock().unwrap().push((path, body));
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    reader.get_mut().write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn reconcile_spans_are_exported_over_otlp_http() {
    let (port, seen) = collector().await;
    // SAFETY: set before the operator process starts; it inherits the variable.
    unsafe {
        std::env::set_var(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
    };
    let h = Harness::start("otel").await;
    h.ready_neo4j("graph", "login").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let exported = seen.lock().unwrap().iter().any(|(path, body)| {
            path == "/v1/traces"
                && contains(body, b"reconcile")
                && contains(body, b"dbconn-operator")
        });
        if exported {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no reconcile span reached the collector: {:?}",
            seen.lock()
                .unwrap()
                .iter()
                .map(|(p, b)| (p.clone(), b.len()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
