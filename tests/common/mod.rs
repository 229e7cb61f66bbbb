//! Shared harness for the integration and end-to-end tests: the real test environment started
//! by `tests/testenv/testenv.sh up`, a namespace per test, and the operator as a real process.
#![allow(dead_code)] // each test binary uses its own part of the harness

#[cfg(feature = "incluster")]
pub mod cluster;
pub mod fault;
pub mod fuzz;
pub mod http;
pub mod mariadb;
pub mod measure;
pub mod mtls;
pub mod neo4j;
pub mod pgpair;
pub mod postgres;
pub mod proxy;
pub mod report;
pub mod tls;

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use dbconn_operator::{
    api::DatabaseConnection,
    latency::{LatencyTracker, parse_figure},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::Value;

/// Where the environment's values come from: the process environment first, then the file that
/// `testenv.sh up` writes.
pub struct TestEnv {
    values: HashMap<String, String>,
}

impl TestEnv {
    pub fn get() -> &'static TestEnv {
        static ENV: OnceLock<TestEnv> = OnceLock::new();
        ENV.get_or_init(TestEnv::load)
    }

    fn load() -> TestEnv {
        let state =
            std::env::var("DBCONN_TESTENV_STATE").unwrap_or_else(|_| "/tmp/dbconn-testenv".into());
        let file = Path::new(&state).join("env");
        let mut values: HashMap<String, String> = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for key in REQUIRED {
            if let Ok(value) = std::env::var(key) {
                values.insert(key.to_string(), value);
            }
        }
        let missing: Vec<_> = REQUIRED
            .iter()
            .filter(|k| !values.contains_key(**k))
            .collect();
        assert!(
            missing.is_empty(),
            "the test environment is not running (missing {missing:?}, and no {}): start it with \
             `tests/testenv/testenv.sh up`, or run the whole suite with `make test`",
            file.display()
        );
        TestEnv { values }
    }

    pub fn var(&self, key: &str) -> &str {
        self.values
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{key} is not set"))
    }

    pub fn kubeconfig(&self) -> &str {
        self.var("KUBECONFIG")
    }

    /// The test apiserver's port, from the kubeconfig.
    pub fn apiserver_port(&self) -> u16 {
        std::fs::read_to_string(self.kubeconfig())
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix(APISERVER_URL)?.parse().ok())
            .expect("an apiserver URL in the kubeconfig")
    }

    /// Writes a kubeconfig like the test environment's, with the apiserver at
    /// 127.0.0.1:`port` (a proxy, or another apiserver on the same etcd).
    pub fn kubeconfig_via(&self, port: u16, path: &Path) {
        let original = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let from = format!("{APISERVER_URL}{}", self.apiserver_port());
        std::fs::write(
            path,
            original.replace(&from, &format!("{APISERVER_URL}{port}")),
        )
        .unwrap();
    }

    pub fn neo4j_uri(&self) -> &str {
        self.var("NEO4J_URI")
    }

    pub fn neo4j_password(&self) -> &str {
        self.var("NEO4J_PASSWORD")
    }

    pub fn neo4j_port(&self) -> u16 {
        self.neo4j_uri()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("NEO4J_URI has a port")
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        Path::new(self.var("TESTENV_BIN_DIR")).join(name)
    }

    /// Runs `testenv.sh ARGS` (e.g. `stop neo4j`), for fault tests.
    pub fn testenv(&self, args: &[&str]) {
        let status = Command::new("bash")
            .arg(self.var("TESTENV_SCRIPT"))
            .args(args)
            .status()
            .expect("run testenv.sh");
        assert!(status.success(), "testenv.sh {args:?} failed");
    }
}

const REQUIRED: [&str; 8] = [
    "KUBECONFIG",
    "NEO4J_URI",
    "NEO4J_USER",
    "NEO4J_PASSWORD",
    "POSTGRES_URI",
    "POSTGRES_PASSWORD",
    "TESTENV_BIN_DIR",
    "TESTENV_SCRIPT",
];

pub async fn client() -> Client {
    let env = TestEnv::get();
    let kubeconfig = Kubeconfig::read_from(env.kubeconfig()).expect("read the test kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the test kubeconfig is valid");
    Client::try_from(config).expect("build a client")
}

/// Runs the test environment's kubectl; returns its output whatever the exit code.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let env = TestEnv::get();
    let mut child = Command::new(env.bin("kubectl"))
        .env("KUBECONFIG", env.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl from the test environment");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes())
            .expect("write kubectl stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("kubectl finished")
}

/// Runs kubectl and panics with its stderr if it fails; returns stdout.
pub fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Installs the CRD from `crds/` once per test binary and waits until it is served.
pub fn install_crd() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        kubectl_ok(
            &["apply", "--server-side", "--force-conflicts", "-f", crds],
            None,
        );
        kubectl_ok(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/databaseconnections.dbconn.dev",
            ],
            None,
        );
    });
}

/// A namespace of its own for one test. It is not deleted: without a controller-manager a
/// deleted namespace stays Terminating, and the per-test operator has stopped by then anyway.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }
}

/// The operator binary running against the test apiserver, watching one namespace.
/// Its output goes to a file so tests can search it; it is killed on drop.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    /// Port of its /metrics, /healthz and /readyz server on 127.0.0.1.
    pub http_port: u16,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, "", &[])
    }

    /// Starts one more operator on `namespace` with extra flags; `tag` keeps its log apart.
    pub fn start_with(namespace: &str, tag: &str, extra_args: &[&str]) -> Self {
        Self::start_on(namespace, tag, extra_args, TestEnv::get().kubeconfig())
    }

    /// As [`Operator::start_with`], reaching the apiserver through `kubeconfig`.
    pub fn start_on(namespace: &str, tag: &str, extra_args: &[&str], kubeconfig: &str) -> Self {
        let debug = "info,neo4rs=warn,dbconn_operator=debug";
        Self::spawn(namespace, tag, extra_args, kubeconfig, Some(debug))
    }

    /// Starts the operator logging as the chart's defaults do (JSON lines, its default levels)
    /// rather than at the tests' debug level: for benchmarks, whose figures should be what a
    /// deployment spends.
    pub fn start_as_deployed(namespace: &str) -> Self {
        let json = ["--log-format", "json"];
        Self::spawn(namespace, "", &json, TestEnv::get().kubeconfig(), None)
    }

    fn spawn(
        namespace: &str,
        tag: &str,
        extra_args: &[&str],
        kubeconfig: &str,
        log_filter: Option<&str>,
    ) -> Self {
        let dir = std::env::temp_dir().join("dbconn-e2e-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("operator-{namespace}{tag}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let http_port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dbconn-operator"));
        match log_filter {
            Some(filter) => command.env("RUST_LOG", filter),
            None => command.env_remove("RUST_LOG"),
        };
        let child = command
            .args(["--namespace", namespace])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(extra_args)
            .env("KUBECONFIG", kubeconfig)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the operator binary");
        Self {
            child,
            log,
            http_port,
        }
    }

    /// The operator process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// GETs a path from the operator's HTTP server; returns the status code and body.
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.http_port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the operator's HTTP port {} does not answer: {e}",
                    self.http_port
                )
            });
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks the process to stop (SIGTERM), as Kubernetes does when it deletes a Pod, and waits
    /// until it has exited.
    pub fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {}", self.pid());
        let _ = self.child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A counter or gauge from /metrics, summed over its series (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.http_get("/metrics").await.1, name)
    }

    /// True while the process has not exited (it is never restarted by the harness).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The sum of a metric's series in a /metrics text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for Operator {
    fn drop(&mut self) {
        // Its last /metrics next to its log, for scripts/secret-scan.sh.
        if self.is_running()
            && let Some(metrics) = scrape_metrics(self.http_port)
        {
            let _ = std::fs::write(self.log.with_extension("metrics"), metrics);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /metrics with blocking I/O (a `Drop` cannot await); `None` if there is no answer soon.
fn scrape_metrics(port: u16) -> Option<String> {
    use std::io::Read;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

const APISERVER_URL: &str = "server: https://127.0.0.1:";

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Applies YAML with kubectl in a namespace, as a user would.
pub fn apply(namespace: &str, yaml: &str) {
    kubectl_ok(&["apply", "-n", namespace, "-f", "-"], Some(yaml));
}

/// A login Secret. Its password is also appended to `dbconn-e2e-logs/passwords.txt`, so that
/// scripts/secret-scan.sh searches the whole run's logs, Events, status and metrics for it.
pub fn secret_yaml(name: &str, username: &str, password: &str) -> String {
    record_password(password);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n  username: {username}\n  password: {password}\n"
    )
}

/// Adds `password` to the list scripts/secret-scan.sh searches everything the operator
/// published for.
pub fn record_password(password: &str) {
    let dir = std::env::temp_dir().join("dbconn-e2e-logs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("passwords.txt"))
        // One write per line: tests run in parallel, and `writeln!` may split a line into
        // several writes that interleave with another test's.
        .and_then(|mut file| file.write_all(format!("{password}\n").as_bytes()))
        .expect("record the test password for scripts/secret-scan.sh");
}

/// A Neo4j DatabaseConnection with fast health checks, for tests.
pub fn neo4j_connection_yaml(name: &str, uri: &str, secret: &str) -> String {
    format!(
        "apiVersion: dbconn.dev/v1alpha1\nkind: DatabaseConnection\nmetadata:\n  name: {name}\nspec:\n  engine: neo4j\n  uri: {uri}\n  credentials:\n    secretRef:\n      name: {secret}\n  healthCheck:\n    interval: 5s\n    timeout: 3s\n    failureThreshold: 1\n"
    )
}

/// One end-to-end test's world: a client, a namespace of its own and an operator watching it.
pub struct Harness {
    pub client: Client,
    pub ns: String,
    pub operator: Operator,
}

/// How long a test waits for a condition before it fails.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` every 200 ms until it holds; panics with `what` after [`CONDITION_TIMEOUT`].
/// Returns how long it took.
pub async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) -> Duration {
    let started = Instant::now();
    while started.elapsed() < CONDITION_TIMEOUT {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} did not happen within {CONDITION_TIMEOUT:?}");
}

impl Harness {
    pub async fn start(prefix: &str) -> Self {
        Self::start_via(prefix, Path::new(TestEnv::get().kubeconfig())).await
    }

    /// As [`Harness::start`], with the operator reaching the apiserver through `kubeconfig`
    /// (a proxy the test can cut, another apiserver); the test reaches it directly.
    pub async fn start_via(prefix: &str, kubeconfig: &Path) -> Self {
        install_crd();
        let client = client().await;
        let ns = TestNamespace::create(&client, prefix).await.name;
        let operator = Operator::start_on(&ns, "", &[], kubeconfig.to_str().unwrap());
        Self {
            client,
            ns,
            operator,
        }
    }

    /// Applies an example from examples/, waits with `kubectl wait` until `name` is Ready, and
    /// returns what `kubectl get dbconn -o wide` shows then.
    pub fn apply_example(&self, file: &str, name: &str) -> String {
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        kubectl_ok(
            &["apply", "-n", &self.ns, "-f", example.to_str().unwrap()],
            None,
        );
        let waited = kubectl(
            &[
                "wait",
                "-n",
                &self.ns,
                "--for=condition=Ready",
                &format!("dbconn/{name}"),
                "--timeout=60s",
            ],
            None,
        );
        assert!(
            waited.status.success(),
            "kubectl wait failed: {}\noperator log:\n{}",
            String::from_utf8_lossy(&waited.stderr),
            self.operator.logs()
        );
        let table = kubectl_ok(&["get", "dbconn", "-n", &self.ns, "-o", "wide"], None);
        println!("{table}");
        table
    }

    pub fn apply(&self, yaml: &str) {
        apply(&self.ns, yaml);
    }

    /// A Secret with the test environment's Neo4j login and a connection `name` using it
    /// (see [`neo4j_connection_yaml`]), once the connection is Ready.
    pub async fn ready_neo4j(&self, name: &str, secret: &str) -> DatabaseConnection {
        self.neo4j_login(secret);
        let uri = TestEnv::get().neo4j_uri();
        self.apply(&neo4j_connection_yaml(name, uri, secret));
        self.wait(name, "Ready", "True", None).await
    }

    /// Secret `name` with the test environment's Neo4j login.
    pub fn neo4j_login(&self, name: &str) {
        let env = TestEnv::get();
        self.apply(&secret_yaml(
            name,
            env.var("NEO4J_USER"),
            env.neo4j_password(),
        ));
    }

    /// The resourceVersion of Secret `name` in this namespace.
    pub async fn secret_version(&self, name: &str) -> String {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.client.clone(), &self.ns);
        secrets
            .get(name)
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap()
    }

    /// Polls until condition `type_` has `status` (and `reason`, when given) in a status
    /// written for the object's current generation, as `kubectl wait` and kstatus count it (a
    /// condition from before the last spec edit does not count); panics with the object's
    /// status and the operator's log tail after [`CONDITION_TIMEOUT`].
    pub async fn wait(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
    ) -> DatabaseConnection {
        let api: Api<DatabaseConnection> = Api::namespaced(self.client.clone(), &self.ns);
        let deadline = Instant::now() + CONDITION_TIMEOUT;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(obj) = api
                .get_opt(name)
                .await
                .expect("read the DatabaseConnection")
            {
                let matched = obj.status.as_ref().is_some_and(|s| {
                    s.observed_generation.is_some()
                        && s.observed_generation == obj.metadata.generation
                        && s.conditions
                            .iter()
                            .find(|c| c.type_ == type_)
                            .is_some_and(|c| {
                                c.status == status && reason.is_none_or(|r| c.reason == r)
                            })
                });
                if matched {
                    return obj;
                }
                last = Some(obj);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let logs = self.operator.logs();
        let tail: Vec<_> = logs
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "{}/{name}: condition {type_}={status} (reason {reason:?}) not reached in {CONDITION_TIMEOUT:?}\nlast status: {}\noperator log tail:\n{}",
            self.ns,
            serde_json::to_string_pretty(&last.and_then(|o| o.status)).unwrap(),
            tail.join("\n")
        );
    }

    /// Fails if `secret` appears in the operator's log, the namespace's Events, or any
    /// DatabaseConnection's status in it.
    pub fn assert_secret_never_exposed(&self, secret: &str) {
        let events = kubectl_ok(&["get", "events", "-n", &self.ns, "-o", "yaml"], None);
        let connections = kubectl_ok(
            &["get", "databaseconnections", "-n", &self.ns, "-o", "yaml"],
            None,
        );
        let logs = self.operator.logs();
        assert!(
            logs.contains("starting dbconn-operator"),
            "the operator log is empty: is logging wired?"
        );
        for (what, text) in [
            ("operator log", logs),
            ("events", events),
            ("status", connections),
        ] {
            assert!(
                !text.contains(secret),
                "the password appears in the {what} of namespace {}",
                self.ns
            );
        }
    }
}

/// Applies each `(what, manifest, expected message)` with kubectl and fails unless the
/// apiserver rejects it with that message.
pub fn assert_rejected(namespace: &str, cases: &[(&str, String, &str)]) {
    for (what, manifest, expected) in cases {
        let out = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(manifest));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the apiserver accepted it");
        assert!(
            stderr.contains(expected),
            "{what}: expected {expected:?} in: {stderr}"
        );
    }
}

fn condition<'a>(
    obj: &'a DatabaseConnection,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    obj.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// True when two statuses differ in the probe latency alone, by a move the operator is meant
/// to record (`LatencyTracker` decides), and in nothing else: on a loaded machine a typical
/// latency really can triple, and then its write is the one expected.
pub fn only_latency_moved_materially(old: &Value, new: &Value) -> bool {
    let figure = |status: &Value| {
        let text = status["probe"]["latency"].as_str().unwrap_or_default();
        parse_figure(text).unwrap_or_else(|| panic!("probe.latency {text:?} is not a figure"))
    };
    let mut tracker = LatencyTracker::default();
    tracker.shown(old["probe"]["latency"].as_str());
    let without_latency = |status: &Value| {
        let mut status = status.clone();
        status["probe"]["latency"] = Value::Null;
        status
    };
    without_latency(old) == without_latency(new)
        && figure(old) != figure(new)
        && tracker.worth_recording(figure(new))
}

/// The message of condition `type_`, or "" when it is absent.
pub fn condition_message(obj: &DatabaseConnection, type_: &str) -> String {
    condition(obj, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// A Secret holding `pem` under `ca.crt`, as `spec.tls.caSecretRef` reads it.
pub fn ca_secret_yaml(name: &str, pem: &str) -> String {
    let indented = pem.trim_end().replace('\n', "\n    ");
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  ca.crt: |\n    {indented}\n"
    )
}

/// The test environment's CA (it signed the MariaDB and nginx certificates) as such a Secret.
pub fn testenv_ca_secret_yaml(name: &str) -> String {
    let pem = std::fs::read_to_string(TestEnv::get().var("TESTENV_CA"))
        .expect("the test CA (testenv.sh up writes it)");
    ca_secret_yaml(name, &pem)
}

/// The reason of condition `type_`, or "" when it is absent.
pub fn condition_reason(obj: &DatabaseConnection, type_: &str) -> String {
    condition(obj, type_)
        .map(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The status (True/False/Unknown) of condition `type_`, or "" when it is absent.
pub fn condition_status(obj: &DatabaseConnection, type_: &str) -> String {
    condition(obj, type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// The events.k8s.io Events in `namespace` with `reason`, as `kubectl get events` lists them.
pub async fn events(
    client: &Client,
    namespace: &str,
    reason: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .collect()
}
