//! The single-node cluster of `testenv.sh cluster-up` with the chart installed, for the
//! in-cluster tests (`--features incluster`): tests/incluster.rs, tests/incluster_rollout.rs.
use std::{
    collections::HashMap,
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex, OnceLock},
    thread::{self, sleep},
    time::{Duration, Instant},
};

use super::TestEnv;

pub const RELEASE: &str = "dbconn";
pub const NAMESPACE: &str = "dbconn-system";
/// The chart's label on the operator's Pods, Deployment and Services.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=dbconn-operator";
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The cluster's values (`testenv.sh cluster-env`) and the chart installed once per binary.
pub struct Cluster {
    env: HashMap<String, String>,
    /// Pod IPs by Pod name: fixed for a Pod's life, so asked for once.
    pod_ips: Mutex<HashMap<String, String>>,
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
            let cluster = Cluster {
                env,
                pod_ips: Mutex::default(),
            };
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

    /// Scales the release to no replicas and waits until its Pods are gone: they hand back
    /// what they hold (sharding's Leases) while their Role still allows it.
    pub fn scale_to_zero(&self) {
        let scope = ["-n", NAMESPACE, "-l", OPERATOR_SELECTOR];
        self.kubectl(&[&["scale", "deployment", "--replicas=0"][..], &scope].concat());
        self.kubectl(
            &[
                &["wait", "--for=delete", "pod", "--timeout=120s"][..],
                &scope,
            ]
            .concat(),
        );
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
            OPERATOR_SELECTOR,
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    }

    fn pod_ip(&self, pod: &str) -> String {
        let mut ips = self.pod_ips.lock().unwrap();
        if let Some(ip) = ips.get(pod) {
            return ip.clone();
        }
        let ip = self.pod_field(pod, "{.status.podIP}");
        if !ip.is_empty() {
            ips.insert(pod.to_owned(), ip.clone());
        }
        ip
    }

    /// The operator's /metrics in `pod`, by the Pod's IP; empty when it does not answer.
    pub fn metrics_of(&self, pod: &str) -> String {
        let ip = self.pod_ip(pod);
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

pub fn eventually(what: &str, ok: impl FnMut() -> bool) -> Duration {
    eventually_every(Duration::from_millis(50), what, ok)
}

/// As [`eventually`], looking every `every`: for checks that load the machine themselves.
pub fn eventually_every(every: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < TIMEOUT, "{what} within {TIMEOUT:?}");
        sleep(every);
    }
    start.elapsed()
}

/// Every change of the connections' Ready in a namespace, as a watch delivers them (a poll
/// could miss a flap between two looks, and listing thousands of objects loads the machine).
pub struct ReadyWatch {
    child: std::process::Child,
    reader: thread::JoinHandle<()>,
    /// Each change seen, as `name=status`.
    seen: Arc<Mutex<Vec<String>>>,
}

impl ReadyWatch {
    /// Starts watching, and proves the watch reports: it annotates connection `canary` and
    /// waits for that change to come through. Only changes from now on are seen.
    pub fn start(cluster: &Cluster, ns: &str, canary: &str) -> ReadyWatch {
        let mut child = cluster
            .tool("kubectl")
            .args([
                "get",
                "dbconn",
                "-n",
                ns,
                "--watch-only",
                "-o",
                "jsonpath={.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kubectl get --watch-only");
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let reader = thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                record.lock().unwrap().push(line);
            }
        });
        let watch = ReadyWatch {
            child,
            reader,
            seen,
        };
        let prefix = format!("{canary}=");
        let mut attempt = 0;
        eventually_every(
            Duration::from_secs(1),
            "the Ready watch reports a change",
            || {
                attempt += 1;
                let mark = format!("dbconn.dev/watch-check={attempt}");
                cluster.kubectl(&["annotate", "-n", ns, "--overwrite", "dbconn", canary, &mark]);
                sleep(Duration::from_millis(500));
                watch
                    .seen
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.starts_with(&prefix))
            },
        );
        watch
    }

    /// Stops watching: the connections seen with Ready not True, each once.
    pub fn stop(mut self) -> Vec<String> {
        let alive = self.child.try_wait().ok().flatten().is_none();
        assert!(alive, "the Ready watch (kubectl) ended early");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.reader.join();
        let mut not_ready: Vec<String> = self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.ends_with("=True"))
            .cloned()
            .collect();
        not_ready.sort();
        not_ready.dedup();
        not_ready
    }
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
