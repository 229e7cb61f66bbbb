//! An operator restart costs nothing: the new process finds 51 healthy connections with status
//! already true, probes them, and writes no status for them (no resourceVersion moves), unless
//! their latency really moved (a loaded machine), and then only that figure.
//! After that it tells a Secret whose metadata alone changed (no reload) from a real rotation
//! (one `CredentialsReloaded`).

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{
    Harness, Operator, TestEnv, condition_reason, events, eventually, kubectl_ok,
    neo4j::{create_user, set_password, unique_user},
    neo4j_connection_yaml, only_latency_moved_materially, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use kube::Api;
use serde_json::Value;

/// Connections sharing Secret `login`, plus `rotating` on a login of its own.
const SHARED: usize = 50;
const WINDOW: Duration = Duration::from_secs(60);
/// Probes per connection before A is stopped: more than the latency window of 5.
const SETTLED_PROBES: usize = 7;

/// Each connection's resourceVersion and the Secret resourceVersion its status shows.
async fn versions(api: &Api<DatabaseConnection>) -> BTreeMap<String, (String, String)> {
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|obj| {
            let used = obj
                .status
                .as_ref()
                .and_then(|s| s.credentials.as_ref())
                .map(|c| c.secret_resource_version.clone())
                .unwrap_or_default();
            let version = obj.metadata.resource_version.clone().unwrap_or_default();
            (obj.metadata.name.unwrap(), (version, used))
        })
        .collect()
}

/// Each connection's status, as JSON.
async fn statuses(api: &Api<DatabaseConnection>) -> BTreeMap<String, Value> {
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .into_iter()
        .map(|obj| {
            (
                obj.metadata.name.unwrap(),
                serde_json::to_value(obj.status).unwrap(),
            )
        })
        .collect()
}

async fn ready_count(api: &Api<DatabaseConnection>) -> usize {
    let list = api.list(&Default::default()).await.unwrap();
    list.items
        .iter()
        .filter(|obj| condition_reason(obj, "Ready") == "Connected")
        .count()
}

/// /readyz answers 200 (the port may not be open yet).
async fn is_ready(operator: &Operator) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", operator.http_port))
        .await
        .is_ok()
        && operator.http_get("/readyz").await.0 == 200
}

async fn reloads(h: &Harness, name: &str) -> usize {
    events(&h.client, &h.ns, "CredentialsReloaded")
        .await
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .count()
}

#[tokio::test]
async fn a_restarted_operator_writes_no_status_for_healthy_connections() {
    let mut h = Harness::start("restart").await;
    let env = TestEnv::get();
    let user = unique_user("restart");
    create_user(&user, "restart-old-1").await;
    h.neo4j_login("login");
    h.apply(&secret_yaml("rotating-login", &user, "restart-old-1"));
    let manifests: Vec<String> = (0..SHARED)
        .map(|i| neo4j_connection_yaml(&format!("graph-{i:02}"), env.neo4j_uri(), "login"))
        .chain([neo4j_connection_yaml(
            "rotating",
            env.neo4j_uri(),
            "rotating-login",
        )])
        .collect();
    h.apply(&manifests.join("---\n"));
    let total = SHARED + 1;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let all_ready = eventually(&format!("{total} connections Ready under A"), async || {
        ready_count(&api).await == total
    })
    .await;
    println!("operator A: {total} connections Ready in {all_ready:?}");
    // A restart meets connections that have been running, not ones just opened: let A settle
    // (status shows the typical latency of its warm probes, not the first, cold one).
    let settled = eventually(
        &format!("A to probe each connection {SETTLED_PROBES} times"),
        async || {
            h.operator
                .metric("dbconn_probe_duration_seconds_count")
                .await
                >= (SETTLED_PROBES * total) as f64
        },
    )
    .await;
    println!("operator A: settled after {settled:?} more");

    h.operator.kill();
    let before = versions(&api).await;
    let statuses_before = statuses(&api).await;
    h.operator = Operator::start_with(&h.ns, "-b", &[]);
    let started = Instant::now();
    eventually("operator B to be ready", async || {
        is_ready(&h.operator).await
    })
    .await;
    let ready_after = started.elapsed();
    eventually(&format!("B to probe all {total} connections"), async || {
        h.operator.metric("dbconn_connection_up").await == total as f64
    })
    .await;
    let probed_after = started.elapsed();
    // The first minute of B: every connection probed several times (every 5 s). B may write only
    // what really changed: on a loaded machine its warm probes can be materially slower than A's.
    tokio::time::sleep(WINDOW.saturating_sub(started.elapsed())).await;
    let writes = h.operator.metric("dbconn_status_writes_total").await;
    let after = versions(&api).await;
    let moved: Vec<_> = before
        .iter()
        .filter(|(name, version)| after.get(*name) != Some(version))
        .map(|(name, _)| name)
        .collect();
    println!(
        "operator B: ready after {ready_after:?}, all {total} probed after {probed_after:?}; in its first {WINDOW:?}: {} reconciles, {} probes, {writes} status writes, {} of {total} resourceVersions moved",
        h.operator.metric("dbconn_reconciles_total").await,
        h.operator
            .metric("dbconn_probe_duration_seconds_count")
            .await,
        moved.len()
    );
    for name in &moved {
        let (old, new) = (&statuses_before[*name], &statuses(&api).await[*name]);
        assert!(
            only_latency_moved_materially(old, new),
            "B rewrote the status of {name} with nothing material changed:\n{old}\n{new}"
        );
        println!(
            "  {name}: latency {} -> {}",
            old["probe"]["latency"], new["probe"]["latency"]
        );
    }
    assert_eq!(
        writes,
        moved.len() as f64,
        "a status write per moved object"
    );
    assert_eq!(after.len(), total);

    // A label on the shared Secret: a new resourceVersion, the same login.
    kubectl_ok(
        &["label", "secret", "login", "-n", &h.ns, "e2e/touched=yes"],
        None,
    );
    let labelled = h.secret_version("login").await;
    let shown = eventually("every status to show the labelled Secret", async || {
        let now = versions(&api).await;
        now.iter()
            .filter(|(name, _)| name.starts_with("graph-"))
            .all(|(_, (_, used))| *used == labelled)
    })
    .await;
    assert_eq!(
        h.operator.metric("dbconn_credential_reloads_total").await,
        0.0
    );
    assert!(
        events(&h.client, &h.ns, "CredentialsReloaded")
            .await
            .is_empty(),
        "a label is not a new login"
    );
    println!(
        "label on the shared Secret: status shows it after {shown:?}, {} status writes so far, 0 reloads",
        h.operator.metric("dbconn_status_writes_total").await
    );

    // A real rotation, of the connection with a login of its own.
    set_password(&user, "restart-new-2").await;
    h.apply(&secret_yaml("rotating-login", &user, "restart-new-2"));
    let rotated = h.secret_version("rotating-login").await;
    eventually("rotating to be Ready on the new login", async || {
        versions(&api).await.get("rotating").map(|(_, used)| used) == Some(&rotated)
            && reloads(&h, "rotating").await == 1
    })
    .await;
    assert_eq!(
        h.operator.metric("dbconn_credential_reloads_total").await,
        1.0
    );
    assert_eq!(reloads(&h, "rotating").await, 1);
    let obj = api.get("rotating").await.unwrap();
    assert_eq!(condition_reason(&obj, "Ready"), "Connected");
    for password in ["restart-old-1", "restart-new-2"] {
        h.assert_secret_never_exposed(password);
    }
}
