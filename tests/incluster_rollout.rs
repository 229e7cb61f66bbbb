//! Rollouts of the chart in the cluster (see tests/incluster.rs for what it needs): two
//! replicas with leader election, the leader Pod deleted and the other taking the Lease over
//! (the gap is measured) and probing the connection, then `helm upgrade` to a rebuilt image,
//! which rolls the Deployment; through both, no Ready transition on a healthy connection. One test: it changes the one release.
#![cfg(feature = "incluster")]

mod common;

use std::{
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::sleep,
    time::Duration,
};

use common::cluster::{Cluster, NAMESPACE, eventually, run, state_dir};

fn output(cluster: &Cluster, args: &[&str]) -> String {
    cluster
        .tool("kubectl")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The Lease the chart told the operator to take (its LEASE_NAME).
fn lease_name(cluster: &Cluster) -> String {
    output(
        cluster,
        &[
            "get",
            "deployment",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[0].spec.template.spec.containers[0].env[?(@.name==\"LEASE_NAME\")].value}",
        ],
    )
}

fn lease_holder(cluster: &Cluster) -> String {
    output(
        cluster,
        &[
            "get",
            "lease",
            "-n",
            NAMESPACE,
            &lease_name(cluster),
            "--ignore-not-found",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
}

/// "STATUS LAST-TRANSITION-TIME" of the Ready condition.
fn ready(cluster: &Cluster, ns: &str, name: &str) -> String {
    output(
        cluster,
        &[
            "get",
            "-n",
            ns,
            &format!("dbconn/{name}"),
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} \
             {.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        ],
    )
}

/// The `dbconn_connection_up` series of `ns/name`, as the operator in `pod` exports it.
fn connection_up(cluster: &Cluster, pod: &str, ns: &str, name: &str) -> Option<String> {
    let series =
        format!(r#"dbconn_connection_up{{namespace="{ns}",name="{name}",engine="postgres"}} "#);
    cluster
        .metrics_of(pod)
        .lines()
        .find_map(|line| line.strip_prefix(&series).map(str::to_owned))
}

/// Records every distinct Ready "STATUS LAST-TRANSITION-TIME" of `ns/name` until stopped.
struct ReadyWatcher {
    seen: Arc<Mutex<Vec<String>>>,
    reads: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ReadyWatcher {
    fn start(ns: &str, name: &'static str, first: String) -> Self {
        let seen = Arc::new(Mutex::new(vec![first]));
        let reads = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop, reads, ns) =
                (seen.clone(), stop.clone(), reads.clone(), ns.to_owned());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = ready(Cluster::get(), &ns, name);
                    if !now.is_empty() {
                        reads.fetch_add(1, Ordering::Relaxed);
                        let mut seen = seen.lock().unwrap();
                        if seen.last() != Some(&now) {
                            seen.push(now);
                        }
                    }
                    sleep(Duration::from_millis(100));
                }
            })
        };
        Self {
            seen,
            reads,
            stop,
            thread,
        }
    }

    /// Stops and returns what was seen, after checking that there were reads to speak of.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        assert!(
            self.reads.load(Ordering::Relaxed) > 20,
            "too few reads of the status"
        );
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn leader_failover_and_upgrade_keep_connections_ready() {
    let cluster = Cluster::get();
    let image = std::env::var("DBCONN_IMAGE").unwrap();
    cluster.helm_upgrade(&image, &["replicaCount=2"]);
    let ns = cluster.namespace("incluster-rollout");
    cluster.postgres_connection(&ns.name, "orders", "");
    cluster.wait_ready(&ns.name, "orders");
    let before = ready(cluster, &ns.name, "orders");
    assert!(before.starts_with("True "), "{before}");
    let watcher = ReadyWatcher::start(&ns.name, "orders", before.clone());

    // The leader Pod deleted: it releases the Lease on its way out, the standby takes it.
    let mut leader = String::new();
    eventually("a replica holds the Lease", || {
        leader = lease_holder(cluster);
        !leader.is_empty()
    });
    cluster.kubectl(&["delete", "pod", "-n", NAMESPACE, &leader, "--wait=false"]);
    let mut successor = String::new();
    let gap = eventually("the other replica takes the Lease over", || {
        successor = lease_holder(cluster);
        !successor.is_empty() && successor != leader
    });
    // No connection is left unprobed: the new leader probes it and exports it as up (a
    // standby exports no series for connections it does not reconcile).
    let probed = eventually("the new leader to probe the connection", || {
        connection_up(cluster, &successor, &ns.name, "orders").as_deref() == Some("1")
    });
    println!(
        "leader {leader} deleted; the Lease changed hands {gap:?} later; {successor} had probed the connection {probed:?} after that"
    );

    // A rebuilt image: the same binary under a new reference, so the Deployment rolls.
    let rebuilt = format!("{image}-rebuilt");
    let sock = format!("{}/containerd/containerd.sock", state_dir(cluster));
    run(Command::new("ctr").args([
        "--address",
        &sock,
        "-n",
        "k8s.io",
        "images",
        "tag",
        "--force",
        &image,
        &rebuilt,
    ]));
    cluster.helm_upgrade(&rebuilt, &["replicaCount=2"]);
    // The new leader's first reconcile probes at once; give it time to write what it found.
    sleep(Duration::from_secs(10));
    assert_eq!(
        watcher.finish(),
        vec![before],
        "Ready changed during the failover or the upgrade"
    );

    // Back to the chart's defaults for the other in-cluster tests.
    cluster.helm_upgrade(&image, &[]);
}
