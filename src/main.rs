use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use dbconn_operator::{
    controller::{self, Partition, Scope},
    http::{self, Readiness},
    leader::{LeaderElector, LeaseConfig},
    metrics::Metrics,
    shards,
    telemetry::{self, LogFormat},
    validate::OutputFormat,
};
use futures::FutureExt;
use tracing::{error, info};

/// Kubernetes operator that keeps DatabaseConnections checked and reports their health.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Run only while holding a Lease, so several replicas can run with one active.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "dbconn-operator")]
    lease_name: String,
    /// Namespace of the Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the Lease stays valid without renewal: the longest a failover takes.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconcile only DatabaseConnections with these labels (a label selector, as kubectl's
    /// -l): replicas given disjoint selectors split the connections between them.
    #[arg(long, env = "DBCONN_SELECTOR")]
    selector: Option<String>,
    /// Split the connections into this many shards, claimed by the running replicas through
    /// one Lease each (named after --lease-name); 0 to reconcile them all. Not with
    /// --leader-election.
    #[arg(long, env = "DBCONN_SHARDS", default_value_t = 0)]
    shards: u32,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Check DatabaseConnection manifests offline (no cluster, no network) against the CRD's
    /// schema and rules and the operator's own checks; exits 1 on any problem.
    Validate {
        /// A manifest file, a directory (searched recursively), or - for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        inputs: Vec<String>,
        /// text: `file:line: name: field: message` per problem; json: for tools.
        #[arg(short, long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
}

/// Runs `validate`: 0 when every manifest is fine, 1 on any problem, 2 when an input cannot be read.
fn validate(inputs: &[String], output: OutputFormat) -> std::process::ExitCode {
    match dbconn_operator::validate::run(inputs) {
        Ok(report) => {
            print!("{}", report.render(output));
            eprintln!("{}", report.summary());
            std::process::ExitCode::from(u8::from(!report.problems.is_empty()))
        }
        Err(error) => {
            eprintln!("validate: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    dbconn_operator::duration::parse(text).map_err(|e| e.to_string())
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    if let Some(Command::Validate { inputs, output }) = &args.command {
        return Ok(validate(inputs, *output));
    }
    run_operator(args)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The operator runs as a task on the runtime's workers, not on the main thread that
/// `block_on` parks: polled there, the controller woke a worker (and was woken by one) through
/// the kernel for every reconcile it handed over: 28 % of its CPU at 70 reconciles a second.
#[tokio::main]
async fn run_operator(args: Args) -> anyhow::Result<()> {
    tokio::spawn(operate(args))
        .await
        .context("the operator's task panicked")?
}

async fn operate(args: Args) -> anyhow::Result<()> {
    let telemetry = telemetry::init(args.log_format);
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
    let scope = match args.namespace.as_str() {
        "" => Scope::All,
        ns => Scope::Namespace(ns.to_owned()),
    };
    info!(
        ?scope,
        selector = args.selector.as_deref().unwrap_or(""),
        shards = args.shards,
        concurrency = args.concurrency,
        leader_election = args.leader_election,
        "starting dbconn-operator"
    );
    // Checked here, not by clap: the chart sets both variables, one of them to its "off".
    if args.leader_election && args.shards > 0 {
        anyhow::bail!(
            "--leader-election and --shards are alternatives: sharded replicas are all active, each on its own shards"
        );
    }
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("dbconn-operator-{:08x}", rand::random::<u32>()));
    let lease = LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        identity,
        duration: args.lease_duration,
    };
    let mut partition = Partition {
        scope,
        selector: args.selector.clone(),
        sharding: None,
    };
    let keeper = (args.shards > 0).then(|| {
        let (sharding, keeper) = shards::start(client.clone(), lease.clone(), args.shards);
        partition.sharding = Some(sharding);
        keeper
    });

    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::default());
    let server = http::serve(args.http_addr, metrics.clone(), readiness.clone());
    tokio::spawn(async move {
        if let Err(error) = server.await {
            error!(%error, "the HTTP server stopped; /metrics and probes are unavailable");
        }
    });
    let shutdown = shutdown_signal().shared();
    let controller = |stop| {
        controller::run(
            client.clone(),
            metrics.clone(),
            readiness.clone(),
            partition.clone(),
            args.concurrency,
            stop,
        )
    };

    if !args.leader_election {
        controller(shutdown.clone()).await;
        if let Some(keeper) = keeper {
            keeper.stop();
            shards::release(client, &lease).await;
        }
        info!("stopped; pools closed");
        telemetry.shutdown();
        return Ok(());
    }

    let mut elector = LeaderElector::new(client.clone(), lease.clone());
    // A standby is ready: it serves /metrics and waits for the lease.
    readiness.set(true);
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown.clone() => {
            info!("stopped while standing by");
            return Ok(());
        }
    }
    readiness.set(false);
    let (mut lost, renewer) = elector.keep_renewing();
    let leadership_lost = async move {
        let _ = lost.wait_for(|lost| *lost).await;
    };
    tokio::select! {
        () = controller(shutdown.clone()) => {}
        () = leadership_lost => {
            // At once, not after in-flight reconciles finish: another replica may lead soon.
            // The Deployment restarts this one as a standby, with fresh state.
            error!("leadership lost; exiting");
            std::process::exit(1);
        }
    }
    renewer.abort();
    LeaderElector::release(client, &lease).await;
    info!("stopped; pools closed, lease released");
    telemetry.shutdown();
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
