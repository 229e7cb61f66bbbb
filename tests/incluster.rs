//! The operator as users run it: the image built here (scripts/image.sh), installed with
//! `helm upgrade --install` of charts/dbconn-operator into the single-node cluster of
//! `testenv.sh cluster-up`, reconciling from a Pod under the restricted Pod Security level.
//! The databases are the plain environment's, reached from Pods through the cluster's forwards
//! on the bridge address.
//!
//! Needs: `testenv.sh up` (databases), `testenv.sh cluster-up`, and DBCONN_IMAGE set to the
//! reference scripts/image.sh printed (it imports the image into the cluster), and
//! DBCONN_IMAGE_ARCHIVE for the check against the Dockerfile. Compiled with
//! `--features incluster` only, so a plain `cargo test` does not need the cluster.
#![cfg(feature = "incluster")]

mod common;

use std::process::Command;

use common::{
    cluster::{Cluster, NAMESPACE, OPERATOR_SELECTOR, container_pid, eventually, run},
    tls::{self, TlsEndpoint},
};

#[test]
fn the_cluster_has_one_ready_node() {
    let nodes = Cluster::get().kubectl(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
    ]);
    let nodes: Vec<&str> = nodes.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert!(
        nodes[0].ends_with("=True"),
        "the node is not Ready: {nodes:?}"
    );
}

#[test]
fn operator_pod_is_restricted_uid_65532_read_only_root() {
    let cluster = Cluster::get();
    let labels = cluster.kubectl(&[
        "get",
        "namespace",
        NAMESPACE,
        "-o",
        "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}",
    ]);
    assert_eq!(labels, "restricted");
    let pod = cluster.operator_pod();
    assert!(!pod.is_empty(), "no Running operator Pod in {NAMESPACE}");
    let pid = container_pid(cluster, &pod);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65532"; 4],
        "{uid}"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace().nth(5).unwrap().starts_with("ro"),
        "root filesystem is not read-only: {root}"
    );
}

/// Every manifest in examples/, as `make demo` applies it (the loopback address the examples
/// name becomes the bridge address the cluster forwards the databases from), becomes Ready.
#[test]
fn the_examples_become_ready() {
    let cluster = Cluster::get();
    let ns = cluster.namespace("incluster-examples");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples).unwrap() {
        let yaml = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let yaml = yaml.replace(
            "://127.0.0.1:",
            &format!("://{}:", cluster.var("CLUSTER_ADDR")),
        );
        cluster.apply(&ns.name, &yaml);
        names.extend(connection_names(&yaml));
    }
    assert!(
        names.len() >= 4,
        "examples/ holds fewer connections than expected: {names:?}"
    );
    for name in &names {
        cluster.wait_ready(&ns.name, name);
    }
}

/// The `metadata.name` of each DatabaseConnection in a multi-document manifest.
fn connection_names(yaml: &str) -> Vec<String> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|doc| doc["kind"] == "DatabaseConnection")
        .map(|doc| doc["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn connection_becomes_ready_and_the_pod_logs_it() {
    let cluster = Cluster::get();
    let ns = cluster.namespace("incluster-ready");
    cluster.postgres_connection(&ns.name, "orders", "");
    cluster.wait_ready(&ns.name, "orders");
    let pod = cluster.operator_pod();
    let marker = format!("\"namespace\":\"{}\"", ns.name);
    eventually("the operator Pod logs the connection", || {
        let logs = cluster.kubectl(&["logs", "-n", NAMESPACE, &pod]);
        logs.lines()
            .any(|l| l.contains(&marker) && l.contains("\"condition changed\""))
    });
}

/// The operator hands neo4rs the CA from spec.tls.caSecretRef as a file, which it writes under
/// /tmp: the Pod's only writable place, an emptyDir beside the read-only root.
#[test]
fn a_custom_ca_is_used_from_the_read_only_pod() {
    let cluster = Cluster::get();
    let ns = cluster.namespace("incluster-ca");
    let addr = cluster.var("CLUSTER_ADDR");
    // A certificate for the bridge address, which Pods dial (the committed one names 127.0.0.1).
    let (ca, cert, key) = tls::issue_for(addr);
    let endpoint = TlsEndpoint::start_with(addr, &cert, &key, false);
    let ca = ca.trim_end().replace('\n', "\n    ");
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: login\nstringData:\n  username: app\n  password: incluster-ca-pw-1\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: ca\nstringData:\n  ca.crt: |\n    {ca}\n---\n\
         apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: tls\n\
         spec:\n  engine: neo4j\n  uri: bolt+s://{addr}:{port}\n  credentials:\n    secretRef:\n      name: login\n\
         \x20 tls:\n    caSecretRef:\n      name: ca\n",
        port = endpoint.port,
    );
    cluster.apply(&ns.name, &yaml);
    // The endpoint speaks no Bolt: a completed handshake is the proof that the CA was used.
    let took = eventually(
        "a TLS handshake verified with the CA from the Secret",
        || endpoint.handshakes() > 0,
    );
    eventually("a probe past TLS (any reason but TLSError)", || {
        let reason = cluster.kubectl(&[
            "get",
            "dbconn",
            "tls",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
        ]);
        !reason.is_empty() && reason != "TLSError"
    });
    println!(
        "custom CA from a Secret, read-only root: handshake seen {took:?} after the apply returned"
    );
}

#[test]
fn binding_secret_is_garbage_collected_with_its_connection() {
    let cluster = Cluster::get();
    let ns = cluster.namespace("incluster-gc");
    cluster.postgres_connection(&ns.name, "app", "  binding:\n    secretName: app-binding\n");
    cluster.wait_ready(&ns.name, "app");
    let owner = cluster.kubectl(&[
        "get",
        "-n",
        &ns.name,
        "dbconn/app",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let secret_owner = || {
        cluster
            .tool("kubectl")
            .args([
                "get",
                "-n",
                &ns.name,
                "secret/app-binding",
                "--ignore-not-found",
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    eventually(
        "the binding Secret is written, owned by its connection",
        || secret_owner() == owner,
    );
    cluster.kubectl(&["delete", "-n", &ns.name, "dbconn/app", "--wait=true"]);
    let gc = eventually("the garbage collector deletes the binding Secret", || {
        secret_owner().is_empty()
    });
    println!("binding Secret collected {gc:?} after its connection was gone");
}

#[test]
fn metrics_answer_through_the_metrics_service() {
    let cluster = Cluster::get();
    let ip = cluster.kubectl(&[
        "get",
        "service",
        "-n",
        NAMESPACE,
        "-l",
        OPERATOR_SELECTOR,
        "-o",
        "jsonpath={.items[0].spec.clusterIP}:{.items[0].spec.ports[0].port}",
    ]);
    // From the host, through kube-proxy's rules for the Service's cluster IP.
    let body = run(Command::new("curl").args([
        "-fsS",
        "--max-time",
        "5",
        &format!("http://{ip}/metrics"),
    ]));
    assert!(
        body.contains("dbconn_"),
        "no dbconn_ metrics at {ip}: {body}"
    );
}

/// `tar -xOf ARCHIVE MEMBER`: one file of the OCI archive.
fn archive_member(archive: &str, member: &str) -> serde_json::Value {
    let out = run(Command::new("tar").args(["-xOf", archive, member]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{member} of {archive}: {e}"))
}

fn blob(archive: &str, digest: &serde_json::Value) -> serde_json::Value {
    let digest = digest.as_str().expect("digest").replace(':', "/");
    archive_member(archive, &format!("blobs/{digest}"))
}

#[test]
fn image_built_here_agrees_with_the_dockerfile() {
    let archive = std::env::var("DBCONN_IMAGE_ARCHIVE")
        .expect("DBCONN_IMAGE_ARCHIVE is not set (scripts/image.sh prints it)");
    let index = archive_member(&archive, "index.json");
    let manifest = blob(&archive, &index["manifests"][0]["digest"]);
    let config = blob(&archive, &manifest["config"]["digest"])["config"].clone();

    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let stage = &lines[last_from..];
    let arg = |instruction: &str| {
        stage
            .iter()
            .filter_map(|l| l.strip_prefix(instruction))
            .next_back()
            .unwrap_or_else(|| panic!("no {instruction}in the final stage"))
            .trim()
            .to_owned()
    };
    assert_eq!(config["User"], arg("USER "));
    let entrypoint: serde_json::Value = serde_json::from_str(&arg("ENTRYPOINT ")).unwrap();
    assert_eq!(config["Entrypoint"], entrypoint);
    let mut exposed: Vec<String> = config["ExposedPorts"]
        .as_object()
        .map(|ports| ports.keys().cloned().collect())
        .unwrap_or_default();
    exposed.sort();
    let mut declared: Vec<String> = arg("EXPOSE ")
        .split_whitespace()
        .map(|p| {
            if p.contains('/') {
                p.to_owned()
            } else {
                format!("{p}/tcp")
            }
        })
        .collect();
    declared.sort();
    assert_eq!(exposed, declared);
}
