//! 1,000 connections on one operator, 10 % of them failing: 50 on a port nobody listens on, 50
//! with a wrong password (through a counting proxy, so every login attempt is counted). After
//! all have settled, one observation window checks, by counting rather than timing, that the
//! healthy ones stay Ready and keep being probed (at least half the probes their interval
//! schedules), that dead ports are retried no more often than their maximum backoff allows, and
//! that wrong passwords cause no login storm. The figures are printed and recorded.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    Harness, TestEnv, free_port,
    neo4j::{create_user, unique_user},
    proxy::CountingProxy,
    report, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use futures::{StreamExt, stream};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};

const HEALTHY: usize = 900;
const DEAD: usize = 50;
const WRONG: usize = 50;
const INTERVAL: Duration = Duration::from_secs(5);
/// Backoff for the dead ports (also the defaults): 1 s doubling up to 16 s, minus up to 20 %.
const MAX_DELAY: Duration = Duration::from_secs(16);
/// Consecutive failures after which every further delay is the maximum one (1 s x 2^4).
const AT_MAX_DELAY: u32 = 5;
const WINDOW: Duration = Duration::from_secs(45);
/// How long the connections may take to settle after the last one was created.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(150);

fn connection(name: &str, uri: &str, secret: &str) -> DatabaseConnection {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "dbconn.dev/v1alpha1",
        "kind": "DatabaseConnection",
        "metadata": { "name": name },
        "spec": {
            "engine": "neo4j",
            "uri": uri,
            "credentials": { "secretRef": { "name": secret } },
            "healthCheck": { "interval": format!("{}s", INTERVAL.as_secs()) },
            "retry": { "initialDelay": "1s", "maxDelay": "16s" },
        },
    }))
    .expect("a valid DatabaseConnection")
}

/// What status shows of one connection: `Ready` as `status/reason`, when `Ready` last
/// changed, and the consecutive failures.
#[derive(Debug, PartialEq)]
struct Shown {
    ready: String,
    since: String,
    failures: u32,
}

async fn shown_by_name(api: &Api<DatabaseConnection>) -> BTreeMap<String, Shown> {
    api.list(&ListParams::default())
        .await
        .expect("list DatabaseConnections")
        .items
        .into_iter()
        .map(|o| {
            let status = o.status.unwrap_or_default();
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
            let shown = Shown {
                ready: ready.map_or(String::new(), |c| format!("{}/{}", c.status, c.reason)),
                since: ready.map_or(String::new(), |c| format!("{:?}", c.last_transition_time)),
                failures: status.probe.map_or(0, |p| p.consecutive_failures),
            };
            (o.metadata.name.unwrap_or_default(), shown)
        })
        .collect()
}

/// One counter per connection from the operator's /metrics text: `name` -> value, for the
/// series of `family` whose labels contain `filter`.
fn per_connection(metrics: &str, family: &str, filter: &str) -> BTreeMap<String, f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter(|l| l.contains(filter))
        .filter_map(|l| {
            let name = l.split("name=\"").nth(1)?.split('"').next()?.to_owned();
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((name, value))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, prefix: &str) -> Vec<f64> {
    after
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, v)| v - before.get(name).copied().unwrap_or(0.0))
        .collect()
}

fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

#[tokio::test]
async fn a_thousand_connections_with_ten_percent_failing() {
    let mut h = Harness::start("load").await;
    let env = TestEnv::get();
    let user = unique_user("load");
    create_user(&user, "load-right-password-1").await;
    let proxy = CountingProxy::start(env.neo4j_port()).await;
    h.apply(&secret_yaml(
        "admin",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&secret_yaml("wrong", &user, "load-wrong-password-1"));
    let dead_uri = format!("bolt://127.0.0.1:{}", free_port());
    let wrong_uri = format!("bolt://127.0.0.1:{}", proxy.port);
    let objects: Vec<_> = (0..HEALTHY)
        .map(|i| connection(&format!("ok-{i:03}"), env.neo4j_uri(), "admin"))
        .chain((0..DEAD).map(|i| connection(&format!("dead-{i:02}"), &dead_uri, "admin")))
        .chain((0..WRONG).map(|i| connection(&format!("wrong-{i:02}"), &wrong_uri, "wrong")))
        .collect();

    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let started = Instant::now();
    stream::iter(objects)
        .map(|obj| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &obj)
                    .await
                    .unwrap_or_else(|e| panic!("create {:?}: {e}", obj.metadata.name));
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
    let created = started.elapsed();

    // Settled: every connection shows the Ready its case calls for, and the dead ports have
    // failed often enough that their backoff has reached its maximum delay.
    let settled_as = |name: &str, shown: &Shown| match name.split('-').next() {
        Some("ok") => shown.ready == "True/Connected",
        Some("dead") => shown.ready == "False/Unreachable" && shown.failures >= AT_MAX_DELAY,
        _ => shown.ready == "False/AuthenticationFailed",
    };
    let before = loop {
        let shown = shown_by_name(&api).await;
        let wrong: Vec<_> = shown
            .iter()
            .filter(|(name, shown)| !settled_as(name, shown))
            .collect();
        if shown.len() == HEALTHY + DEAD + WRONG && wrong.is_empty() {
            break shown;
        }
        assert!(
            started.elapsed() < created + SETTLE_TIMEOUT,
            "{} connections not in their expected state, e.g. {:?}",
            wrong.len(),
            wrong.iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let settled = started.elapsed();
    let logins_to_settle = proxy.connections();

    // The window: counters before and after, nothing touched in between.
    let window_started = Instant::now();
    let logins_before = proxy.connections();
    let (_, metrics_before) = h.operator.http_get("/metrics").await;
    tokio::time::sleep(WINDOW).await;
    let (_, metrics_after) = h.operator.http_get("/metrics").await;
    let logins_in_window = proxy.connections() - logins_before;
    let window = window_started.elapsed();
    let after = shown_by_name(&api).await;

    // Healthy: still Ready, with the same transition time (no flap), and probed on schedule.
    let flapped: Vec<_> = before
        .iter()
        .filter(|(name, _)| name.starts_with("ok-"))
        .filter(|(name, state)| after.get(*name) != Some(state))
        .collect();
    assert!(
        flapped.is_empty(),
        "healthy connections changed Ready: {flapped:?}"
    );
    let probes = "dbconn_probe_duration_seconds_count";
    let mut probed = delta(
        &per_connection(&metrics_before, probes, ""),
        &per_connection(&metrics_after, probes, ""),
        "ok-",
    );
    assert_eq!(probed.len(), HEALTHY);
    let total_probes: f64 = probed.iter().sum();
    let (least, median, most) = spread(&mut probed);
    let scheduled = (window.as_secs_f64() / INTERVAL.as_secs_f64()).floor();
    assert!(
        least >= (scheduled / 2.0).floor(),
        "a healthy connection was probed {least} times in {window:?}, about {scheduled} were due"
    );
    let mean_interval = window.as_secs_f64() * HEALTHY as f64 / total_probes;

    // Dead ports: retried, with backoff: at most one attempt per (jittered) maximum delay.
    let failures = "dbconn_probe_failures_total";
    let mut dead_failures = delta(
        &per_connection(&metrics_before, failures, "reason=\"Unreachable\""),
        &per_connection(&metrics_after, failures, "reason=\"Unreachable\""),
        "dead-",
    );
    assert_eq!(dead_failures.len(), DEAD);
    let (dead_least, _, dead_most) = spread(&mut dead_failures);
    // Attempts at least 0.8 x the maximum delay apart fit this many times in the window.
    let allowed = (window.as_secs_f64() / (MAX_DELAY.as_secs_f64() * 0.8)).floor() + 1.0;
    assert!(
        dead_least >= 1.0,
        "a dead port was not retried in {window:?}"
    );
    assert!(
        dead_most <= allowed,
        "a dead port was tried {dead_most} times in {window:?}; backoff allows {allowed}"
    );

    // Wrong passwords: one login each to find out, then none until the Secret changes or five
    // minutes pass.
    assert!(
        logins_to_settle <= 2 * WRONG,
        "{logins_to_settle} login attempts for {WRONG} wrong-password connections"
    );
    assert_eq!(
        logins_in_window, 0,
        "wrong-password connections retried within {window:?}"
    );
    assert!(h.operator.is_running());
    h.assert_secret_never_exposed("load-wrong-password-1");
    h.assert_secret_never_exposed(env.neo4j_password());

    let status_writes = h.operator.metric("dbconn_status_writes_total").await;
    println!(
        "created {} connections in {created:?}, all settled {settled:?} after the first create; \
         window {window:?}: healthy probed {least}/{median}/{most} times (min/median/max), mean interval {mean_interval:.2} s (configured 5 s, jitter -0..10 %); \
         dead ports retried {dead_least}..{dead_most} times (backoff allows {allowed}); \
         wrong-password logins: {logins_to_settle} to settle, {logins_in_window} in the window; status writes in all: {status_writes}",
        HEALTHY + DEAD + WRONG
    );
    report::record(
        "load",
        "1,000 connections, 10 % failing (50 dead ports, 50 wrong passwords), interval 5 s",
        "passed",
        &format!(
            "all settled {:.0} s after the first create; in a {:.0} s window: 900/900 healthy stayed Ready, each probed {least}-{most} times (median {median}), mean interval {mean_interval:.2} s for 5 s configured; dead ports retried {dead_least}-{dead_most} times (backoff allows {allowed}); wrong passwords: {logins_to_settle} login attempts for 50 connections, {logins_in_window} in the window",
            settled.as_secs_f64(),
            window.as_secs_f64()
        ),
    );
    // A thousand leftovers would weigh on anything that later watches every namespace.
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete the load test's connections");
}
