//! Benchmarks of the operator against the real test environment (`tests/testenv/testenv.sh up`).
//!
//! `cargo bench --bench operator -- [apply|rotation|scale [COUNT [WINDOWS [ENGINE]]]|probe|all]`
//! (default `all`; scale's COUNT defaults to 1000 connections, WINDOWS to 5 steady minutes,
//! ENGINE to neo4j, or postgres through the test environment's PgBouncer) prints one
//! table per section; `all` takes about 7 minutes, most of it the scale section's windows. The
//! operator under test is the binary of this profile (optimized). Figures are wall-clock times on
//! whatever else the machine is doing: each section prints the load average and the number of
//! other dbconn-operator processes at its start and end. A section that starts an operator first
//! checks that no other operator reconciles the apiserver's objects, and refuses to run if one
//! does. Percentiles are nearest-rank.
//!
//! - apply: `kubectl apply` of a DatabaseConnection until its Ready condition is True.
//! - rotation: a Secret update (after the password changed in Neo4j) until status reports the
//!   Secret's new resourceVersion and Ready=True/Connected.
//! - scale: COUNT connections created before the operator starts; time until all are Ready, the
//!   operator's memory, and per minute afterwards: status writes, probes, object changes, the
//!   operator's CPU time per probe and the requests the apiserver served; then the floor: the
//!   CPU time per query of the bare driver in the bench's own process.
//! - probe: the engine's `ping` (as the reconciler calls it) against a bare neo4rs query.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Display,
    time::{Duration, Instant},
};

use common::{
    Operator, TestEnv, TestNamespace, apply, client, install_crd,
    measure::{Memory, refuse_if_another_operator_reconciles},
    metric_sum,
    neo4j::{admin, create_user, set_password, unique_user},
    neo4j_connection_yaml, secret_yaml,
};
use dbconn_operator::{
    api::DatabaseConnection,
    conditions::{self, READY},
    credentials::Credentials,
    engine::Pool,
    settings::ConnectionSettings,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event, watcher},
    },
};
use neo4rs::{Graph, query};
use serde_json::Value;

const SECTIONS: [&str; 4] = ["apply", "rotation", "scale", "probe"];

const APPLY_RUNS: usize = 20;
const ROTATIONS: usize = 20;
const SCALE_COUNT: usize = 1000;
/// Creates in flight at once while filling the scale namespace.
const CREATE_CONCURRENCY: usize = 32;
/// Consecutive one-minute windows measured after all connections are Ready: the first ones
/// still see the start-up latency figures being replaced, the last one is steady state.
const STEADY_WINDOWS: usize = 5;
const STEADY_WINDOW: Duration = Duration::from_secs(60);
const PROBES: usize = 500;
const PROBE_WARMUP: usize = 50;

/// Polling period for one object's status.
const POLL: Duration = Duration::from_millis(25);
/// Memory sampling period in the scale section.
const SCALE_POLL: Duration = Duration::from_millis(500);
/// How long one object may take to reach the awaited status before the bench fails.
const TIMEOUT: Duration = Duration::from_secs(60);
const SCALE_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() {
    // `cargo bench` adds `--bench`; the first other argument names the section.
    let positional: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let chosen = positional.first().cloned().unwrap_or_else(|| "all".into());
    let number = |i: usize, default: usize| {
        positional.get(i).map_or(default, |n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{n:?} is not a number: scale [COUNT [WINDOWS]]"))
        })
    };
    let scale = Scale {
        count: number(1, SCALE_COUNT),
        windows: number(2, STEADY_WINDOWS),
        engine: ScaleEngine::parse(positional.get(3).map_or("neo4j", String::as_str)),
    };
    let sections = match chosen.as_str() {
        "all" => SECTIONS.to_vec(),
        one if SECTIONS.contains(&one) => vec![one],
        other => panic!("unknown section {other:?}: choose one of {SECTIONS:?} or all"),
    };
    for section in sections {
        match section {
            "apply" => bench_apply().await,
            "rotation" => bench_rotation().await,
            "scale" => bench_scale(&scale).await,
            "probe" => bench_probe().await,
            _ => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. apply -> Ready

async fn bench_apply() {
    let machine = machine_state();
    let client = require_kube().await;
    require_neo4j().await;
    let env = TestEnv::get();
    let ns = TestNamespace::create(&client, "bench-apply").await.name;
    refuse_if_another_operator_reconciles(&client, &ns).await;
    apply(
        &ns,
        &secret_yaml("login", env.var("NEO4J_USER"), env.neo4j_password()),
    );
    let operator = Operator::start(&ns);
    let synced = wait_until_synced(&operator).await;
    let api: Api<DatabaseConnection> = Api::namespaced(client, &ns);

    let (mut returned, mut ready, mut after_apply) = (Vec::new(), Vec::new(), Vec::new());
    // Run 0 is a warm-up (first kubectl discovery, first pool in the process) and not counted.
    for run in 0..=APPLY_RUNS {
        let name = format!("apply-{run:02}");
        let started = Instant::now();
        apply(&ns, &neo4j_connection_yaml(&name, env.neo4j_uri(), "login"));
        let applied = started.elapsed();
        let took = poll_until(&api, &name, started, is_ready).await;
        api.delete(&name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {ns}/{name}: {e}"));
        if run > 0 {
            returned.push(applied);
            ready.push(took);
            after_apply.push(took.saturating_sub(applied));
        }
    }

    section(
        &format!(
            "apply -> Ready ({APPLY_RUNS} connections, one at a time, after 1 warm-up; namespace {ns})"
        ),
        &machine,
    );
    value_row("operator start -> /readyz 200", ms(synced));
    stats_header();
    stats_row("kubectl apply returned", &returned);
    stats_row("apply -> Ready=True (poll 25 ms)", &ready);
    stats_row("  of which after kubectl returned", &after_apply);
}

// ---------------------------------------------------------------------------------------------
// 2. Secret rotation -> Ready on the new credentials

async fn bench_rotation() {
    let machine = machine_state();
    let client = require_kube().await;
    require_neo4j().await;
    let env = TestEnv::get();
    let ns = TestNamespace::create(&client, "bench-rotation").await.name;
    refuse_if_another_operator_reconciles(&client, &ns).await;
    let user = unique_user("bench_rotation");
    let mut password = new_password(0);
    create_user(&user, &password).await;
    apply(&ns, &secret_yaml("login", &user, &password));
    let _operator = Operator::start(&ns);
    apply(
        &ns,
        &neo4j_connection_yaml("rotating", env.neo4j_uri(), "login"),
    );
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), &ns);
    poll_until(&api, "rotating", Instant::now(), is_connected).await;

    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    let mut samples = Vec::new();
    for rotation in 1..=ROTATIONS {
        // The way a password is rotated: the server first, then the Secret.
        password = new_password(rotation);
        set_password(&user, &password).await;
        let started = Instant::now();
        let version = update_password(&secrets, "login", &password).await;
        let took = poll_until(&api, "rotating", started, |obj| {
            credentials_version(obj) == version && is_connected(obj)
        })
        .await;
        samples.push(took);
    }
    api.delete("rotating", &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {ns}/rotating: {e}"));

    section(
        &format!(
            "Secret rotation -> Ready on the new credentials ({ROTATIONS} rotations; namespace {ns})"
        ),
        &machine,
    );
    stats_header();
    stats_row("Secret update -> new version, Connected", &samples);
}

fn new_password(rotation: usize) -> String {
    format!("bench-rotation-{rotation}-{:08x}", rand::random::<u32>())
}

/// Sets the Secret's password; returns the Secret's new resourceVersion.
async fn update_password(secrets: &Api<Secret>, name: &str, password: &str) -> String {
    let patch = serde_json::json!({ "stringData": { "password": password } });
    secrets
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("update Secret {name}: {e}"))
        .metadata
        .resource_version
        .expect("an updated Secret has a resourceVersion")
}

fn credentials_version(obj: &DatabaseConnection) -> &str {
    obj.status
        .as_ref()
        .and_then(|s| s.credentials.as_ref())
        .map_or("", |c| c.secret_resource_version.as_str())
}

// ---------------------------------------------------------------------------------------------
// 3. Scale: 1000 connections, one operator

/// The scale section's size: connections, and steady one-minute windows after all are Ready.
struct Scale {
    count: usize,
    windows: usize,
    engine: ScaleEngine,
}

/// What the scale section's connections reach.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ScaleEngine {
    Neo4j,
    /// PostgreSQL through the test environment's PgBouncer, which absorbs thousands of clients
    /// as it does for real platforms.
    Postgres,
}

impl ScaleEngine {
    fn parse(name: &str) -> Self {
        match name {
            "neo4j" => Self::Neo4j,
            "postgres" => Self::Postgres,
            other => panic!("{other:?} is not an engine: scale [COUNT [WINDOWS [neo4j|postgres]]]"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Neo4j => "neo4j",
            Self::Postgres => "postgres",
        }
    }

    /// The URI and login the connections use.
    fn target(self, env: &TestEnv) -> (String, String, String) {
        match self {
            Self::Neo4j => (
                env.neo4j_uri().to_owned(),
                env.var("NEO4J_USER").to_owned(),
                env.neo4j_password().to_owned(),
            ),
            Self::Postgres => (
                format!(
                    "postgres://{}:{}/{}?sslmode=disable",
                    env.var("PGBOUNCER_HOST"),
                    env.var("PGBOUNCER_PORT"),
                    env.var("POSTGRES_DB")
                ),
                env.var("POSTGRES_USER").to_owned(),
                env.var("POSTGRES_PASSWORD").to_owned(),
            ),
        }
    }
}

async fn bench_scale(scale: &Scale) {
    let machine = machine_state();
    let client = require_kube().await;
    if scale.engine == ScaleEngine::Neo4j {
        require_neo4j().await;
    }
    let env = TestEnv::get();
    let (uri, user, password) = scale.engine.target(env);
    let ns = TestNamespace::create(&client, "bench-scale").await.name;
    refuse_if_another_operator_reconciles(&client, &ns).await;
    apply(&ns, &secret_yaml("shared", &user, &password));
    let api: Api<DatabaseConnection> = Api::namespaced(client.clone(), &ns);
    let created = create_connections(&api, scale.engine, &uri, scale.count).await;

    let started = Instant::now();
    let operator = Operator::start_as_deployed(&ns);
    let mut memory = Memory::of(operator.pid());
    let ramp = ramp_up(&api, &operator, started, &mut memory, scale.count).await;
    let ramp_peak = memory.peak_rss_kib;

    let mut windows = Vec::new();
    for _ in 0..scale.windows {
        windows.push(steady_window(&operator, &api, &client, &mut memory).await);
    }
    memory.sample();
    let (rss_end, hwm_end) = (memory.read("VmRSS:"), memory.read("VmHWM:"));
    let [reconcile_errors] = counters(&operator, ["dbconn_reconcile_errors_total"]).await;
    let reconcile_errors = reconcile_errors as u64;
    drop(operator);
    let floor = driver_floor(scale.engine, &uri, &user, &password).await;
    section(
        &format!(
            "scale: {} {} connections ({uri}), one Secret, interval 30s, operator started after creation (namespace {ns})",
            scale.count,
            scale.engine.name()
        ),
        &machine,
    );
    value_row(
        &format!(
            "create {} objects ({CREATE_CONCURRENCY} in flight)",
            scale.count
        ),
        ms(created),
    );
    value_row("operator start -> first Ready", ms(ramp.first));
    value_row("operator start -> half Ready", ms(ramp.half));
    value_row("operator start -> all Ready (watch)", ms(ramp.all));
    value_row("  operator CPU until then (user+system)", ms(ramp.cpu));
    value_row("  status writes until then", ramp.status_writes);
    value_row("  reconciles until then", ramp.reconciles);
    value_row("  probe failures until then", ramp.probe_failures);
    value_row("reconcile errors (whole run)", reconcile_errors);
    value_row("peak VmRSS sampled during ramp-up", mib(ramp_peak));
    value_row("peak VmRSS sampled, whole run", mib(memory.peak_rss_kib));
    value_row("VmRSS at end", mib(rss_end));
    value_row("VmHWM at end", mib(hwm_end));
    print_windows(&windows);
    println!(
        "floor, the driver alone in this process: CPU ms per query {:.3} ({}, {FLOOR_QUERIES} queries over {FLOOR_CLIENTS} clients)",
        floor.cpu_ms_per_query, floor.what
    );
    delete_all(&api, &ns).await;
}

/// Deletes the scale namespace's connections (the test apiserver has no namespace controller to
/// do it), after the table is printed: a run of many minutes is not lost to its cleanup. A few
/// attempts, as the first request after the floor's busy seconds has met a pooled connection
/// the apiserver had already closed (`SendRequest`).
async fn delete_all(api: &Api<DatabaseConnection>, ns: &str) {
    let mut attempt = 1;
    while let Err(e) = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
    {
        assert!(attempt < 3, "delete the DatabaseConnections of {ns}: {e}");
        eprintln!("deleting the DatabaseConnections of {ns} (attempt {attempt}): {e}; again");
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

const FLOOR_QUERIES: usize = 20_000;
const FLOOR_CLIENTS: usize = 50;

/// The driver's CPU per query without the operator: the least a probe can cost.
struct Floor {
    cpu_ms_per_query: f64,
    what: &'static str,
}

/// Runs [`FLOOR_QUERIES`] trivial queries over [`FLOOR_CLIENTS`] connections in this process
/// and divides the process's CPU time by them.
async fn driver_floor(engine: ScaleEngine, uri: &str, user: &str, password: &str) -> Floor {
    let per_client = FLOOR_QUERIES / FLOOR_CLIENTS;
    match engine {
        ScaleEngine::Postgres => {
            let config = format!("{uri}&user={user}&password={password}");
            let mut clients = Vec::new();
            for _ in 0..FLOOR_CLIENTS {
                let (client, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {uri} for the floor: {e}"));
                tokio::spawn(connection);
                clients.push(client);
            }
            let before = own_cpu();
            stream::iter(&clients)
                .for_each_concurrent(None, |client| async move {
                    for _ in 0..per_client {
                        client.simple_query("SELECT 1").await.expect("SELECT 1");
                    }
                })
                .await;
            Floor {
                cpu_ms_per_query: (own_cpu() - before).as_secs_f64() * 1e3 / FLOOR_QUERIES as f64,
                what: "tokio-postgres simple_query(\"SELECT 1\")",
            }
        }
        ScaleEngine::Neo4j => {
            let config = neo4rs::ConfigBuilder::default()
                .uri(uri)
                .user(user)
                .password(password)
                .max_connections(FLOOR_CLIENTS)
                .build()
                .expect("a neo4rs config");
            let graph = Graph::connect(config).expect("a neo4rs graph");
            let before = own_cpu();
            stream::iter(0..FLOOR_CLIENTS)
                .for_each_concurrent(None, |_| async {
                    for _ in 0..per_client {
                        graph.run(query("RETURN 1")).await.expect("RETURN 1");
                    }
                })
                .await;
            Floor {
                cpu_ms_per_query: (own_cpu() - before).as_secs_f64() * 1e3 / FLOOR_QUERIES as f64,
                what: "neo4rs Graph::run(\"RETURN 1\"), auto-commit",
            }
        }
    }
}

/// This process's user + system CPU time so far.
fn own_cpu() -> Duration {
    Memory::of(std::process::id()).cpu()
}

/// Creates the connections concurrently; returns how long it took.
async fn create_connections(
    api: &Api<DatabaseConnection>,
    engine: ScaleEngine,
    uri: &str,
    count: usize,
) -> Duration {
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| async move {
            let obj = connection(&format!("conn-{i:05}"), engine.name(), uri, "shared");
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("create conn-{i:05}: {e}"));
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect::<()>()
        .await;
    started.elapsed()
}

/// From the operator's start until every connection is Ready.
struct Ramp {
    first: Duration,
    half: Duration,
    all: Duration,
    status_writes: u64,
    reconciles: u64,
    probe_failures: u64,
    /// The operator's CPU time (user + system) until then.
    cpu: Duration,
}

/// Follows the connections with a watch (one list, then their changes) until all are Ready,
/// sampling memory every 500 ms. A list of every object every 500 ms, as before, loaded the
/// apiserver the ramp waits on (10,000 objects: about 30 MB a list) and rounded the times up
/// to the next poll.
async fn ramp_up(
    api: &Api<DatabaseConnection>,
    operator: &Operator,
    started: Instant,
    memory: &mut Memory,
    count: usize,
) -> Ramp {
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut ticker = tokio::time::interval(SCALE_POLL);
    let timeout = tokio::time::sleep_until((started + SCALE_TIMEOUT).into());
    tokio::pin!(timeout);
    let mut readiness = Readiness::default();
    let (mut first, mut half) = (None, None);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                memory.sample();
                continue;
            }
            () = &mut timeout => panic!(
                "only {} of {count} connections Ready after {SCALE_TIMEOUT:?}; Ready by status/reason: {:?}",
                readiness.ready, readiness.by_reason()
            ),
            event = events.next() => match event {
                Some(Ok(Event::Apply(obj) | Event::InitApply(obj))) => readiness.saw(&obj),
                Some(Ok(_)) => continue,
                // The watcher lists and watches again by itself.
                Some(Err(e)) => {
                    eprintln!("watching DatabaseConnections: {e}; the watcher starts over");
                    continue;
                }
                None => panic!("the watch of DatabaseConnections ended"),
            },
        }
        let elapsed = started.elapsed();
        if readiness.ready > 0 {
            first.get_or_insert(elapsed);
        }
        if readiness.ready * 2 >= count {
            half.get_or_insert(elapsed);
        }
        if readiness.ready == count {
            // CPU first: the scrape below is the bench's, not the ramp's.
            let cpu = memory.cpu();
            let [status_writes, reconciles, probe_failures] = counters(
                operator,
                [
                    "dbconn_status_writes_total",
                    "dbconn_reconciles_total",
                    "dbconn_probe_failures_total",
                ],
            )
            .await;
            return Ramp {
                first: first.unwrap_or(elapsed),
                half: half.unwrap_or(elapsed),
                all: elapsed,
                status_writes: status_writes as u64,
                reconciles: reconciles as u64,
                probe_failures: probe_failures as u64,
                cpu,
            };
        }
    }
}

/// Each connection's Ready condition as `status/reason` (e.g. `True/Connected`), as last seen,
/// and how many are Ready.
#[derive(Default)]
struct Readiness {
    by_name: HashMap<String, String>,
    ready: usize,
}

impl Readiness {
    const READY: &str = "True/Connected";

    fn saw(&mut self, obj: &DatabaseConnection) {
        let reason = obj
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, READY))
            .map_or("none".into(), |c| format!("{}/{}", c.status, c.reason));
        let is_ready = reason == Self::READY;
        let was_ready = self
            .by_name
            .insert(obj.metadata.name.clone().unwrap_or_default(), reason)
            .is_some_and(|old| old == Self::READY);
        match (was_ready, is_ready) {
            (false, true) => self.ready += 1,
            (true, false) => self.ready -= 1,
            _ => {}
        }
    }

    /// How many connections have each status/reason.
    fn by_reason(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for reason in self.by_name.values() {
            *counts.entry(reason.as_str()).or_insert(0) += 1;
        }
        counts
    }
}

/// What changed during one window, from the operator's counters and from the apiserver.
struct Window {
    elapsed: Duration,
    status_writes: f64,
    probes: f64,
    reconciles: f64,
    objects_changed: usize,
    modified_events: usize,
    /// How many objects changed each status field, e.g. `probe.latency`.
    fields_changed: BTreeMap<String, usize>,
    /// The operator's resident memory at the end of the window.
    rss_kib: u64,
    /// The operator's CPU time (user + system) in the window.
    cpu: Duration,
    /// Requests the apiserver served in the window, from its `apiserver_request_total`, less
    /// the bench's own (two lists and a watch).
    apiserver_requests: f64,
}

/// Counters, and every object's resourceVersion and status, at one moment.
struct Snapshot {
    status_writes: f64,
    probes: f64,
    reconciles: f64,
    list_version: String,
    objects: BTreeMap<String, (String, Value)>,
}

async fn snapshot(operator: &Operator, api: &Api<DatabaseConnection>) -> Snapshot {
    // Each window pays for two scrapes, as under the chart's ServiceMonitor (every 30 s).
    let [status_writes, probes, reconciles] = counters(
        operator,
        [
            "dbconn_status_writes_total",
            "dbconn_probe_duration_seconds_count",
            "dbconn_reconciles_total",
        ],
    )
    .await;
    let list = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list DatabaseConnections: {e}"));
    let objects = list
        .items
        .iter()
        .map(|o| {
            let name = o.metadata.name.clone().unwrap_or_default();
            let version = o.metadata.resource_version.clone().unwrap_or_default();
            let status = serde_json::to_value(&o.status).expect("status serializes");
            (name, (version, status))
        })
        .collect();
    Snapshot {
        status_writes,
        probes,
        reconciles,
        list_version: list.metadata.resource_version.unwrap_or_default(),
        objects,
    }
}

/// One window of [`STEADY_WINDOW`]: counters and a list before and after, and a watch from the
/// first list's version counting every write the apiserver accepted in between.
async fn steady_window(
    operator: &Operator,
    api: &Api<DatabaseConnection>,
    client: &Client,
    memory: &mut Memory,
) -> Window {
    let started = Instant::now();
    let (requests_before, cpu_before) = (apiserver_requests(client).await, memory.cpu());
    let before = snapshot(operator, api).await;
    let until = started + STEADY_WINDOW;
    let (modified_events, ()) = tokio::join!(
        count_modified(api, &before.list_version, until),
        sample_until(memory, until)
    );
    let after = snapshot(operator, api).await;
    let (requests_after, cpu_after) = (apiserver_requests(client).await, memory.cpu());
    let mut objects_changed = 0;
    let mut fields_changed = BTreeMap::new();
    for (name, (version, status)) in &before.objects {
        let Some((new_version, new_status)) = after.objects.get(name) else {
            continue;
        };
        if new_version != version {
            objects_changed += 1;
        }
        for field in changed_fields(status, new_status) {
            *fields_changed.entry(field).or_insert(0) += 1;
        }
    }
    Window {
        elapsed: started.elapsed(),
        status_writes: after.status_writes - before.status_writes,
        probes: after.probes - before.probes,
        reconciles: after.reconciles - before.reconciles,
        objects_changed,
        modified_events,
        fields_changed,
        rss_kib: memory.read("VmRSS:"),
        cpu: cpu_after - cpu_before,
        // The bench's own: the two lists and the watch (the /metrics reads are not counted).
        apiserver_requests: requests_after - requests_before - 3.0,
    }
}

/// Requests the apiserver has served, summed over `apiserver_request_total`.
async fn apiserver_requests(client: &Client) -> f64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a GET request");
    let text = client
        .request_text(request)
        .await
        .unwrap_or_else(|e| panic!("read the apiserver's /metrics: {e}"));
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Paths of the status fields that differ, one level into objects (`probe.latency`);
/// lists such as `conditions` count as one field.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return if before == after {
            vec![]
        } else {
            vec!["status".into()]
        };
    };
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut changed = Vec::new();
    for key in keys {
        let (old, new) = (before.get(key), after.get(key));
        match (
            old.and_then(Value::as_object),
            new.and_then(Value::as_object),
        ) {
            (Some(old), Some(new)) => {
                let subkeys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
                changed.extend(
                    subkeys
                        .into_iter()
                        .filter(|sub| old.get(*sub) != new.get(*sub))
                        .map(|sub| format!("{key}.{sub}")),
                );
            }
            _ if old != new => changed.push(key.clone()),
            _ => {}
        }
    }
    changed
}

/// Counts MODIFIED events of a watch started at `version`, until `until`.
async fn count_modified(api: &Api<DatabaseConnection>, version: &str, until: Instant) -> usize {
    let server_timeout = (STEADY_WINDOW.as_secs() + 60) as u32;
    let events = api
        .watch(&WatchParams::default().timeout(server_timeout), version)
        .await
        .unwrap_or_else(|e| panic!("watch DatabaseConnections from {version}: {e}"));
    let mut events = std::pin::pin!(events.take_until(tokio::time::sleep_until(until.into())));
    let mut modified = 0;
    while let Some(event) = events.next().await {
        match event.unwrap_or_else(|e| panic!("watch DatabaseConnections: {e}")) {
            WatchEvent::Modified(_) => modified += 1,
            WatchEvent::Error(e) => panic!("the watch failed: {e}"),
            _ => {}
        }
    }
    modified
}

/// A table row: its label and how to compute it from one window.
type Row<'a> = (&'a str, &'a dyn Fn(&Window) -> f64);

fn print_windows(windows: &[Window]) {
    let per_minute = |count: f64, w: &Window| count * 60.0 / w.elapsed.as_secs_f64();
    let rows: [Row<'_>; 9] = [
        ("status writes/min (operator counter)", &|w| {
            per_minute(w.status_writes, w)
        }),
        ("probes/min (probe_duration count)", &|w| {
            per_minute(w.probes, w)
        }),
        ("reconciles/min", &|w| per_minute(w.reconciles, w)),
        ("objects with a new resourceVersion", &|w| {
            w.objects_changed as f64
        }),
        ("MODIFIED watch events (apiserver)/min", &|w| {
            per_minute(w.modified_events as f64, w)
        }),
        ("operator VmRSS at window end (MiB)", &|w| {
            w.rss_kib as f64 / 1024.0
        }),
        ("operator CPU s/min", &|w| {
            per_minute(w.cpu.as_secs_f64(), w)
        }),
        ("operator CPU ms per probe", &|w| {
            w.cpu.as_secs_f64() * 1000.0 / w.probes.max(1.0)
        }),
        ("apiserver requests/min (less the bench's)", &|w| {
            per_minute(w.apiserver_requests, w)
        }),
    ];
    print!("\n{:<46}", "after all Ready, per 60 s window");
    for i in 1..=windows.len() {
        print!(" {:>10}", format!("window {i}"));
    }
    println!();
    for (label, value) in rows {
        print!("{label:<46}");
        for window in windows {
            print!(" {:>10.3}", value(window));
        }
        println!();
    }
    for (i, window) in windows.iter().enumerate() {
        let fields: Vec<String> = window
            .fields_changed
            .iter()
            .map(|(field, count)| format!("{field} x{count}"))
            .collect();
        println!(
            "  window {}: status fields changed: {}",
            i + 1,
            if fields.is_empty() {
                "none".into()
            } else {
                fields.join(", ")
            }
        );
    }
}

/// Counters from one /metrics scrape, each summed over its series. At 10,000 connections a
/// scrape costs the operator 0.1-0.16 CPU-s: one per counter was a quarter of a quiet
/// window's CPU.
async fn counters<const N: usize>(operator: &Operator, names: [&str; N]) -> [f64; N] {
    let (_, text) = operator.http_get("/metrics").await;
    names.map(|name| metric_sum(&text, name))
}

/// Sleeps until `until`, sampling memory every 500 ms.
async fn sample_until(memory: &mut Memory, until: Instant) {
    let mut ticker = tokio::time::interval(SCALE_POLL);
    while Instant::now() < until {
        ticker.tick().await;
        memory.sample();
    }
}

/// dbconn-operator processes this bench did not start (another run, a test, a demo): they
/// share the apiserver, Neo4j and the CPUs, so the figures print their count.
fn foreign_operators() -> usize {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|(pid, args)| {
            args.first()
                .is_some_and(|a| a.ends_with("/dbconn-operator"))
                && parent_of(*pid) != Some(me)
        })
        .count()
}

/// Every process's id and arguments, from /proc.
fn processes() -> Vec<(u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// 4. Probe cost, in process

async fn bench_probe() {
    let machine = machine_state();
    require_neo4j().await;
    let env = TestEnv::get();
    let spec = connection("probe", "neo4j", env.neo4j_uri(), "unused").spec;
    let settings = ConnectionSettings::from_spec(&spec).expect("the bench spec is valid");
    let credentials =
        Credentials::login(env.var("NEO4J_USER"), env.neo4j_password(), "unused", "0");
    let pool = (settings.engine.open)(&settings, &credentials).expect("open a Neo4j pool");
    pool.identify()
        .await
        .expect("identify the server, as a new pool's first probe does");
    let graph = admin();
    for _ in 0..PROBE_WARMUP {
        operator_probe(&*pool, settings.health.timeout).await;
        bare_query(&graph).await;
    }
    // Interleaved, so both see the same background load.
    let (mut probes, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..PROBES {
        probes.push(operator_probe(&*pool, settings.health.timeout).await);
        bare.push(bare_query(&graph).await);
    }

    section(
        &format!(
            "probe cost, in process, warm connections ({PROBES} each, interleaved, after {PROBE_WARMUP} warm-up)"
        ),
        &machine,
    );
    stats_header();
    stats_row("Pool::ping under timeout (reconciler)", &probes);
    stats_row("neo4rs execute(RETURN 1) + drain", &bare);
    value_row(
        "ratio of medians (ping / bare)",
        format!(
            "{:.2}",
            percentile(&probes, 50.0).as_secs_f64() / percentile(&bare, 50.0).as_secs_f64()
        ),
    );
}

/// One probe exactly as `Reconciliation::probe` runs it on a pool that has identified.
async fn operator_probe(pool: &dyn Pool, timeout: Duration) -> Duration {
    let started = Instant::now();
    tokio::time::timeout(timeout, pool.ping())
        .await
        .unwrap_or_else(|_| panic!("ping timed out after {timeout:?}"))
        .unwrap_or_else(|e| panic!("ping failed: {e}"));
    started.elapsed()
}

async fn bare_query(graph: &Graph) -> Duration {
    let started = Instant::now();
    let mut rows = graph
        .execute(query("RETURN 1"))
        .await
        .unwrap_or_else(|e| panic!("RETURN 1 failed: {e}"));
    while rows
        .next()
        .await
        .unwrap_or_else(|e| panic!("reading RETURN 1 failed: {e}"))
        .is_some()
    {}
    started.elapsed()
}

// ---------------------------------------------------------------------------------------------
// The environment

/// A client for the test apiserver, with the CRD installed; panics unless it answers.
async fn require_kube() -> Client {
    let client = client().await;
    client.apiserver_version().await.unwrap_or_else(|e| {
        panic!(
            "the test apiserver does not answer ({e}): start it with `bash tests/testenv/testenv.sh up`"
        )
    });
    install_crd();
    client
}

/// Panics unless the test Neo4j answers.
async fn require_neo4j() {
    let env = TestEnv::get();
    admin().run(query("RETURN 1")).await.unwrap_or_else(|e| {
        panic!(
            "the test Neo4j at {} does not answer ({e}): start it with `bash tests/testenv/testenv.sh up`",
            env.neo4j_uri()
        )
    });
}

/// Waits until the operator's HTTP server answers /readyz with 200 (its watches have synced).
async fn wait_until_synced(operator: &Operator) -> Duration {
    let started = Instant::now();
    loop {
        let listening = tokio::net::TcpStream::connect(("127.0.0.1", operator.http_port))
            .await
            .is_ok();
        if listening && operator.http_get("/readyz").await.0 == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < TIMEOUT,
            "the operator was not ready within {TIMEOUT:?}; see {}",
            operator.log.display()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A DatabaseConnection with every default (health check every 30 s).
fn connection(name: &str, engine: &str, uri: &str, secret: &str) -> DatabaseConnection {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "dbconn.dev/v1alpha1",
        "kind": "DatabaseConnection",
        "metadata": { "name": name },
        "spec": {
            "engine": engine,
            "uri": uri,
            "credentials": { "secretRef": { "name": secret } },
        },
    }))
    .expect("a valid DatabaseConnection")
}

fn is_ready(obj: &DatabaseConnection) -> bool {
    obj.status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, READY))
}

fn is_connected(obj: &DatabaseConnection) -> bool {
    obj.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, READY))
        .is_some_and(|c| c.status == "True" && c.reason == "Connected")
}

/// Reads `name` every 25 ms until `done` holds; returns the time since `started`. Panics with
/// the last status after [`TIMEOUT`].
async fn poll_until(
    api: &Api<DatabaseConnection>,
    name: &str,
    started: Instant,
    done: impl Fn(&DatabaseConnection) -> bool,
) -> Duration {
    let mut last = None;
    while started.elapsed() < TIMEOUT {
        let obj = api
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("read DatabaseConnection {name}: {e}"));
        if let Some(obj) = obj {
            if done(&obj) {
                return started.elapsed();
            }
            last = obj.status;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!(
        "{name} did not reach the awaited status within {TIMEOUT:?}; last status: {}",
        serde_json::to_string_pretty(&last).unwrap_or_default()
    );
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Nearest-rank percentile (`p` in 0..=100) of unsorted samples.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    assert!(!samples.is_empty(), "no samples");
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The load average, and how many operators run that this bench did not start.
fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "load average {}, {} other dbconn-operator processes",
        load.join(" "),
        foreign_operators()
    )
}

fn section(title: &str, machine_at_start: &str) {
    println!("\n== {title}");
    println!("   at start: {machine_at_start}");
    println!("   at end:   {}", machine_state());
}

fn stats_header() {
    println!(
        "{:<46} {:>4} {:>10} {:>10} {:>10} {:>10}",
        "", "n", "median", "p95", "min", "max"
    );
}

fn stats_row(label: &str, samples: &[Duration]) {
    println!(
        "{label:<46} {:>4} {:>10} {:>10} {:>10} {:>10}",
        samples.len(),
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 95.0)),
        ms(percentile(samples, 0.0)),
        ms(percentile(samples, 100.0)),
    );
}

fn value_row(label: &str, value: impl Display) {
    println!("{label:<46} {value:>15}");
}

fn ms(duration: Duration) -> String {
    let millis = duration.as_secs_f64() * 1000.0;
    if millis < 10.0 {
        format!("{millis:.2} ms")
    } else {
        format!("{millis:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
