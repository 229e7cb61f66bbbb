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

use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::OnceLock,
    thread::sleep,
    time::{Duration, Instant},
};

use common::TestEnv;

const RELEASE: &str = "dbconn";
const NAMESPACE: &str = "dbconn-system";
const TIMEOUT: Duration = Duration::from_secs(120);

/// The cluster's values (`testenv.sh cluster-env`) and the chart installed once per binary.
struct Cluster {
    env: HashMap<String, String>,
}

impl Cluster {
    fn get() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            // This checkout's script (the environment's TESTENV_SCRIPT may be another clone's).
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testenv/testenv.sh");
            let out = run(Command::new("bash").arg(script).arg("cluster-env"));
            let env = out
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let cluster = Cluster { env };
            cluster.install();
            cluster
        })
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("cluster-env has no {key}"))
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(PathBuf::from(self.var("TESTENV_BIN_DIR")).join(name));
        cmd.env("KUBECONFIG", self.var("KUBECONFIG"));
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> String {
        run(self.tool("kubectl").args(args))
    }

    fn apply(&self, namespace: &str, yaml: &str) {
        let mut child = self
            .tool("kubectl")
            .args(["apply", "-n", namespace, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        check(child.wait_with_output().unwrap(), "kubectl apply");
    }

    /// The chart, installed the way a user installs it, into a namespace that enforces the
    /// restricted Pod Security level (an admission failure would leave no Pod at all).
    fn install(&self) {
        let image = std::env::var("DBCONN_IMAGE").expect(
            "DBCONN_IMAGE is not set: build and import the image with `bash scripts/image.sh` \
             (it prints DBCONN_IMAGE=...) after `tests/testenv/testenv.sh cluster-up`",
        );
        let (repository, tag) = image.rsplit_once(':').expect("DBCONN_IMAGE is repo:tag");
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    \
             pod-security.kubernetes.io/enforce-version: latest\n"
        );
        self.apply(NAMESPACE, &manifest);
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator");
        run(self.tool("helm").args([
            "upgrade",
            "--install",
            RELEASE,
            chart,
            "--namespace",
            NAMESPACE,
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "120s",
        ]));
    }

    fn operator_pod(&self) -> String {
        self.kubectl(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=dbconn-operator",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
    }

    /// A namespace of its own for one test, deleted when the test ends (the real
    /// namespace controller runs here).
    fn namespace(&self, prefix: &str) -> Ns {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        self.kubectl(&["create", "namespace", &name]);
        Ns { name }
    }

    /// A PostgreSQL connection (and its Secret) at the plain environment's database, by the
    /// bridge address the cluster forwards from.
    fn postgres_connection(&self, ns: &str, name: &str, extra_spec: &str) {
        let env = TestEnv::get();
        let yaml = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-credentials\nstringData:\n  \
             username: {user}\n  password: {password}\n---\n\
             apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\n\
             spec:\n  engine: postgres\n  uri: postgres://{addr}:{port}/{db}?sslmode=disable\n  \
             credentials:\n    secretRef:\n      name: {name}-credentials\n{extra_spec}",
            user = env.var("POSTGRES_USER"),
            password = env.var("POSTGRES_PASSWORD"),
            addr = self.var("CLUSTER_ADDR"),
            port = env.var("POSTGRES_PORT"),
            db = env.var("POSTGRES_DB"),
        );
        self.apply(ns, &yaml);
    }

    fn wait_ready(&self, ns: &str, name: &str) {
        self.kubectl(&[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            "--timeout=120s",
            &format!("dbconn/{name}"),
        ]);
    }
}

struct Ns {
    name: String,
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Cluster::get()
            .tool("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    check(cmd.output().expect("start command"), &what)
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < TIMEOUT, "{what} within {TIMEOUT:?}");
        sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The container's process as the kernel sees it: the pid containerd reports for it.
fn container_pid(cluster: &Cluster, pod: &str) -> u32 {
    let id = cluster.kubectl(&[
        "get",
        "pod",
        "-n",
        NAMESPACE,
        pod,
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    let id = id.trim_start_matches("containerd://");
    let sock = format!("{}/containerd/containerd.sock", state_dir(cluster));
    let tasks = run(Command::new("ctr").args(["--address", &sock, "-n", "k8s.io", "tasks", "ls"]));
    tasks
        .lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no task for container {id} in:\n{tasks}"))
}

fn state_dir(cluster: &Cluster) -> String {
    cluster
        .var("KUBECONFIG")
        .trim_end_matches("/kubeconfig")
        .to_owned()
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
        "app.kubernetes.io/name=dbconn-operator",
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
