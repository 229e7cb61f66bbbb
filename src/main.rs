use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use dbconn_operator::{
    controller::{self, Context, Scope},
    http::{self, Readiness},
    metrics::Metrics,
    telemetry::{self, LogFormat},
};
use tracing::{error, info};

/// Kubernetes operator that keeps DatabaseConnections checked and reports their health.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Watch only this namespace; all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    namespace: String,
    /// Most connections reconciled (and probed) at the same time.
    #[arg(long, env = "DBCONN_CONCURRENCY", default_value_t = 64)]
    concurrency: u16,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let scope = match args.namespace.as_str() {
        "" => Scope::All,
        ns => Scope::Namespace(ns.to_owned()),
    };
    info!(
        ?scope,
        concurrency = args.concurrency,
        "starting dbconn-operator"
    );
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let server = http::serve(args.http_addr, metrics.clone(), readiness.clone());
    tokio::spawn(async move {
        if let Err(error) = server.await {
            error!(%error, "the HTTP server stopped; /metrics and probes are unavailable");
        }
    });
    let ctx = Arc::new(Context::new(client, metrics, readiness));
    controller::run(ctx, scope, args.concurrency, shutdown_signal()).await;
    info!("stopped; pools closed");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
