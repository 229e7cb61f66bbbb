//! Other writers fight the operator over a connection's status: one replaces it (PUT with the
//! resourceVersion it read, retrying its own conflicts), one server-side-applies a false Ready
//! under another field manager, both about every 50 ms while the password is
//! rotated and the spec edited. The operator's writes meet resourceVersion conflicts too and must
//! retry them. Afterwards, and after forgeries of single fields by a third field manager, the
//! operator must restore the truth: no write of its own lost, nothing false left standing.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{
    Harness, TestEnv, condition_reason, eventually,
    fault::Partition,
    neo4j::{create_user, set_password, unique_user},
    neo4j_connection_yaml, report, secret_yaml,
};
use dbconn_operator::api::DatabaseConnection;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

const STORM: Duration = Duration::from_secs(20);

/// A Ready=False condition no probe ever produced; numbered, so that every forgery changes the
/// object (the apiserver drops writes that change nothing, without a new resourceVersion).
fn forged_ready(n: usize) -> serde_json::Value {
    json!({
        "type": "Ready",
        "status": "False",
        "reason": "Foreign",
        "message": format!("forgery {n}"),
        "lastTransitionTime": "2020-01-01T00:00:00Z",
    })
}

/// Replaces the status with one whose Ready is forged, from a fresh read; on a conflict (the
/// object changed since the read) reads again and retries. Returns the conflicts met.
async fn replace_with_forgery(api: &Api<DatabaseConnection>, name: &str, n: usize) -> usize {
    let mut conflicts = 0;
    loop {
        let mut obj = api.get(name).await.unwrap();
        let mut status = serde_json::to_value(obj.status.take().unwrap_or_default()).unwrap();
        let conditions = status["conditions"].as_array_mut().unwrap();
        conditions.retain(|c| c["type"] != "Ready");
        conditions.push(forged_ready(n));
        obj.status = Some(serde_json::from_value(status).unwrap());
        let params = PostParams {
            field_manager: Some("foreign-replace".into()),
            ..Default::default()
        };
        match api.replace_status(name, &params, &obj).await {
            Ok(_) => return conflicts,
            Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
            Err(e) => panic!("foreign replace: {e}"),
        }
    }
}

async fn apply_forgery(api: &Api<DatabaseConnection>, name: &str, n: usize) {
    let patch = json!({
        "apiVersion": "dbconn.dev/v1alpha1",
        "kind": "DatabaseConnection",
        "status": {"conditions": [forged_ready(n)]},
    });
    api.patch_status(
        name,
        &PatchParams::apply("foreign-apply").force(),
        &Patch::Apply(&patch),
    )
    .await
    .expect("foreign apply");
}

/// Merges `patch` into the status under another field manager.
async fn merge_forgery(api: &Api<DatabaseConnection>, name: &str, patch: serde_json::Value) {
    let params = PatchParams {
        field_manager: Some("foreign-merge".into()),
        ..Default::default()
    };
    api.patch_status(name, &params, &Patch::Merge(json!({ "status": patch })))
        .await
        .expect("foreign merge patch");
}

/// True when status is the operator's truth for the current generation and Secret version.
fn truthful(obj: &DatabaseConnection, secret_version: &str) -> bool {
    let Some(status) = &obj.status else {
        return false;
    };
    condition_reason(obj, "Ready") == "Connected"
        && status.observed_generation == obj.metadata.generation
        && status
            .credentials
            .as_ref()
            .is_some_and(|c| c.secret_resource_version == secret_version)
        && status
            .conditions
            .iter()
            .all(|c| c.reason != "Foreign" && c.observed_generation == obj.metadata.generation)
        && !status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" || c.type_ == "Reconciling")
        && status.server.as_ref().is_some_and(|s| s.version != "0.0.0")
        && status
            .probe
            .as_ref()
            .is_some_and(|p| p.consecutive_failures == 0 && p.latency.as_deref() != Some("9m"))
}

#[tokio::test]
async fn foreign_status_writes_are_overwritten_and_no_operator_write_is_lost() {
    let h = Harness::start("fault-conflict").await;
    let env = TestEnv::get();
    let user = unique_user("conflict");
    let (old, new) = ("conflict-old-1", "conflict-new-2");
    create_user(&user, old).await;
    h.apply(&secret_yaml("login", &user, old));
    // Each probe's answer is held back, so foreign writes land between the operator's read of
    // the object and its status write: its writes meet real resourceVersion conflicts.
    let slow = Partition::slow(env.neo4j_port(), Duration::from_millis(300)).await;
    let manifest =
        neo4j_connection_yaml("app", &format!("bolt://127.0.0.1:{}", slow.port), "login")
            .replace("interval: 5s", "interval: 2s");
    h.apply(&manifest);
    h.wait("app", "Ready", "True", None).await;
    let api: Api<DatabaseConnection> = Api::namespaced(h.client.clone(), &h.ns);
    let writes_before = h.operator.metric("dbconn_status_writes_total").await;

    // The storm: two foreign writers, while the operator has real news to write.
    let stop = Arc::new(AtomicBool::new(false));
    let forged = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let replacer = tokio::spawn({
        let (api, stop, forged, conflicts) =
            (api.clone(), stop.clone(), forged.clone(), conflicts.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let n = forged.fetch_add(1, Ordering::SeqCst);
                let met = replace_with_forgery(&api, "app", n).await;
                conflicts.fetch_add(met, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
    });
    let applier = tokio::spawn({
        let (api, stop, forged) = (api.clone(), stop.clone(), forged.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let n = forged.fetch_add(1, Ordering::SeqCst);
                apply_forgery(&api, "app", n).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    tokio::time::sleep(STORM / 3).await;
    set_password(&user, new).await;
    h.apply(&secret_yaml("login", &user, new));
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), &h.ns);
    let version = secrets
        .get("login")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    tokio::time::sleep(STORM / 3).await;
    h.apply(&manifest.replace("interval: 2s", "interval: 3s"));
    tokio::time::sleep(STORM / 3).await;
    stop.store(true, Ordering::SeqCst);
    replacer.await.unwrap();
    applier.await.unwrap();

    let restored = eventually("the truth after the storm", async || {
        truthful(&api.get("app").await.unwrap(), &version)
    })
    .await;
    let operator_writes = h.operator.metric("dbconn_status_writes_total").await - writes_before;
    let after = api.get("app").await.unwrap();
    assert_eq!(after.metadata.generation, Some(2));
    println!(
        "storm: {} forged writes ({} conflicts met and retried by the foreign writer); operator wrote status {operator_writes} times; truth restored {restored:?} after the storm",
        forged.load(Ordering::SeqCst),
        conflicts.load(Ordering::SeqCst)
    );

    // Single-field forgeries the operator's own comparison could overlook.
    let forgeries = [
        (
            "a Stalled condition added",
            json!({"conditions": [{"type": "Stalled", "status": "True", "reason": "Foreign", "message": "forged", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}),
        ),
        ("the latency only", json!({"probe": {"latency": "9m"}})),
        (
            "the failure count only",
            json!({"probe": {"consecutiveFailures": 42}}),
        ),
        (
            "the server version",
            json!({"server": {"version": "0.0.0"}}),
        ),
    ];
    let mut single = Vec::new();
    for (what, patch) in forgeries {
        let patch = if what.starts_with("a Stalled") {
            // A merge patch replaces the whole list: keep the true conditions next to it.
            let mut conditions =
                serde_json::to_value(&api.get("app").await.unwrap().status.unwrap().conditions)
                    .unwrap();
            conditions
                .as_array_mut()
                .unwrap()
                .extend(patch["conditions"].as_array().unwrap().iter().cloned());
            json!({ "conditions": conditions })
        } else {
            patch
        };
        merge_forgery(&api, "app", patch).await;
        let took = eventually(&format!("the truth after forging {what}"), async || {
            truthful(&api.get("app").await.unwrap(), &version)
        })
        .await;
        single.push(format!("{what}: {:.1} s", took.as_secs_f64()));
    }
    println!("single-field forgeries corrected: {single:?}");
    // The operator's own conflicts: each one is retried at once from a fresh read (its debug
    // log says so); a write that meets conflicts on every attempt fails the reconcile, which is
    // retried later. Either way the final status above carries every change.
    let logs = h.operator.logs();
    let count = |text: &str| logs.lines().filter(|l| l.contains(text)).count();
    let retried = count("status changed since it was read");
    let failed_writes = count("cannot write status");
    println!(
        "operator: {retried} conflicts retried at once, {failed_writes} writes left to the error policy"
    );
    assert!(
        retried > 0,
        "the operator's writes met no conflict: the storm did not exercise the retry"
    );
    for password in [old, new] {
        h.assert_secret_never_exposed(password);
    }
    report::record(
        "fault",
        "conflicting status writes: two foreign writers forging Ready=False every ~50 ms for 20 s during a rotation and a spec edit",
        "survived",
        &format!(
            "{} forged writes ({} conflicts retried by the foreign writer); the operator met {retried} resourceVersion conflicts, retried each at once ({failed_writes} writes gave up after {} attempts and were retried later); truth (new credentials, generation 2) restored {:.1} s after the storm; 0 lost",
            forged.load(Ordering::SeqCst),
            conflicts.load(Ordering::SeqCst),
            dbconn_operator::status_write::ATTEMPTS,
            restored.as_secs_f64(),
        ),
    );
    report::record(
        "fault",
        "single-field status forgeries (extra Stalled condition, latency, failure count, server version)",
        "survived",
        &format!("each corrected: {}", single.join("; ")),
    );
}
