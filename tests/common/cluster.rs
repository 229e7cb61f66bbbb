//! The single-node cluster of `testenv.sh cluster-up` with the chart installed, for the
//! in-cluster tests (`--features incluster`): tests/incluster.rs, tests/incluster_rollout.rs.
use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::OnceLock,
    thread::sleep,
    time::{Duration, Instant},
};

use super::TestEnv;

pub const RELEASE: &str = "dbconn";
pub const NAMESPACE: &str = "dbconn-system";
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The cluster's values (`testenv.sh cluster-env`) and the chart installed once per binary.
pub struct Cluster {
    env: HashMap<String, String>,
}

impl Cluster {
    pub fn get() -> &'static Cluster {
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

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("cluster-env has no {key}"))
    }

    pub fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(PathBuf::from(self.var("TESTENV_BIN_DIR")).join(name));
        cmd.env("KUBECONFIG", self.var("KUBECONFIG"));
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        run(self.tool("kubectl").args(args))
    }

    /// A field of a Pod in the operator's namespace, by JSONPath.
    pub fn pod_field(&self, pod: &str, jsonpath: &str) -> String {
        let output = format!("jsonpath={jsonpath}");
        self.kubectl(&["get", "pod", "-n", NAMESPACE, pod, "-o", &output])
    }

    pub fn apply(&self, namespace: &str, yaml: &str) {
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
    pub fn install(&self) {
        let image = std::env::var("DBCONN_IMAGE").expect(
            "DBCONN_IMAGE is not set: build and import the image with `bash scripts/image.sh` \
             (it prints DBCONN_IMAGE=...) after `tests/testenv/testenv.sh cluster-up`",
        );
        let manifest = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    \
             pod-security.kubernetes.io/enforce-version: latest\n"
        );
        self.apply(NAMESPACE, &manifest);
        self.helm_upgrade(&image, &[]);
    }

    /// `helm upgrade --install` of the chart with IMAGE (repo:tag, present in the node's
    /// containerd) and extra `--set` values; waits for the rollout. Values not given return to
    /// the chart's defaults.
    pub fn helm_upgrade(&self, image: &str, set: &[&str]) {
        let (repository, tag) = image.rsplit_once(':').expect("image is repo:tag");
        let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator");
        let mut values = vec![
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".to_owned(),
        ];
        values.extend(set.iter().map(|v| v.to_string()));
        let mut cmd = self.tool("helm");
        cmd.args([
            "upgrade",
            "--install",
            RELEASE,
            chart,
            "--namespace",
            NAMESPACE,
        ]);
        for v in &values {
            cmd.args(["--set", v]);
        }
        run(cmd.args(["--wait", "--timeout", "120s"]));
    }

    pub fn operator_pod(&self) -> String {
        self.operator_pods().into_iter().next().unwrap_or_default()
    }

    /// The running operator Pods, by name.
    pub fn operator_pods(&self) -> Vec<String> {
        self.kubectl(&[
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=dbconn-operator",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    }

    /// The operator's /metrics in `pod`, by the Pod's IP; empty when it does not answer.
    pub fn metrics_of(&self, pod: &str) -> String {
        let ip = self.pod_field(pod, "{.status.podIP}");
        Command::new("curl")
            .args([
                "-fsS",
                "--max-time",
                "5",
                &format!("http://{ip}:8080/metrics"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// A namespace of its own for one test, deleted when the test ends (the real
    /// namespace controller runs here).
    pub fn namespace(&self, prefix: &str) -> Ns {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        self.kubectl(&["create", "namespace", &name]);
        Ns { name }
    }

    /// A PostgreSQL connection (and its Secret) at the plain environment's database, by the
    /// bridge address the cluster forwards from.
    pub fn postgres_connection(&self, ns: &str, name: &str, extra_spec: &str) {
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

    pub fn wait_ready(&self, ns: &str, name: &str) {
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

pub struct Ns {
    pub name: String,
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Cluster::get()
            .tool("kubectl")
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .output();
    }
}

pub fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn run(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    check(cmd.output().expect("start command"), &what)
}

pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < TIMEOUT, "{what} within {TIMEOUT:?}");
        sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The container's process as the kernel sees it: the pid containerd reports for it.
pub fn container_pid(cluster: &Cluster, pod: &str) -> u32 {
    let id = cluster.pod_field(pod, "{.status.containerStatuses[0].containerID}");
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

pub fn state_dir(cluster: &Cluster) -> String {
    cluster
        .var("KUBECONFIG")
        .trim_end_matches("/kubeconfig")
        .to_owned()
}
