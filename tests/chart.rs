//! The Helm chart in charts/dbconn-operator, checked with the test environment's helm and
//! against its real kube-apiserver: lint, server-side dry runs (schemas, field validation, the
//! "restricted" Pod Security admission), the RBAC it grants as the apiserver's authorizer sees
//! it, the pod's hardening, and the CRD copy the chart ships.

mod common;

use std::{path::Path, process::Command, sync::OnceLock};

use common::{TestEnv, report};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator");
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
const CHART_CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator/crds");

/// Release namespace and watched namespace of the dry runs. Fixed names, so repeated runs do
/// not pile up namespaces (the test apiserver has no controller to delete them); dry runs
/// leave nothing else behind.
const RELEASE_NS: &str = "dbconn-chart-system";
const WATCH_NS: &str = "dbconn-chart-apps";

/// The highly available variant: two replicas, a ServiceMonitor; each test adds a watchNamespace.
const HA: &str = "replicaCount=2,serviceMonitor.enabled=true";

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(TestEnv::get().bin("helm"))
        .args(args)
        .output()
        .expect("run helm from the test environment")
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `helm template` for release `release` in `namespace`, parsed into its documents.
fn render(release: &str, namespace: &str, set: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    for s in set {
        args.extend(["--set", s]);
    }
    let yaml = helm_ok(&args);
    serde_saphyr::from_multiple::<Value>(&yaml)
        .expect("helm renders valid YAML")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The kinds rendered, sorted (helm's own order is an implementation detail).
fn kinds(docs: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    kinds.sort();
    kinds
}

fn as_list(docs: &[&Value]) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()
}

/// The CRD served, and the two namespaces labelled so the Pod Security admission enforces
/// (and warns about) the "restricted" standard.
fn dry_run_namespaces() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        common::install_crd();
        let namespaces: Vec<Value> = [RELEASE_NS, WATCH_NS]
            .iter()
            .map(|name| {
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                }}})
            })
            .collect();
        common::kubectl_ok(
            &["apply", "--server-side", "-f", "-"],
            Some(&as_list(&namespaces.iter().collect::<Vec<_>>())),
        );
    });
}

/// `kubectl apply --dry-run=server`: the apiserver runs defaulting, schema and strict field
/// validation and admission (Pod Security included) and stores nothing. Warnings fail too.
fn server_dry_run(docs: &[&Value]) {
    let out = common::kubectl(
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&as_list(docs)),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the apiserver rejected the chart: {stderr}"
    );
    assert!(
        !stderr.contains("Warning"),
        "the apiserver warned about the chart: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("(server dry run)").count(),
        docs.len(),
        "{stdout}"
    );
}

#[test]
fn helm_lint_passes_for_the_default_and_the_ha_namespaced_values() {
    helm_ok(&["lint", "--strict", CHART]);
    helm_ok(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        &format!("{HA},watchNamespace=apps"),
    ]);
}

#[test]
fn default_render_is_accepted_by_the_apiserver() {
    dry_run_namespaces();
    let docs = render("dbconn", RELEASE_NS, &[]);
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ServiceAccount",
        ],
        "one replica watching all namespaces: no Lease Role, no PodDisruptionBudget"
    );
    server_dry_run(&docs.iter().collect::<Vec<_>>());
}

#[test]
fn ha_namespaced_render_is_accepted_by_the_apiserver() {
    dry_run_namespaces();
    let docs = render(
        "dbconn",
        RELEASE_NS,
        &[HA, &format!("watchNamespace={WATCH_NS}")],
    );
    assert_eq!(
        kinds(&docs),
        [
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ],
        "namespaced: a Role for the watched namespace and one for the Lease, nothing cluster-wide"
    );
    // The test apiserver has no Prometheus Operator CRDs, so the ServiceMonitor is left out of
    // the dry run. A stub CRD (preserve-unknown-fields) would accept any spec and so prove
    // nothing, and it would stay in the shared apiserver; instead the ServiceMonitor is checked
    // below against the Service it must select, which is what breaks in practice.
    let (monitors, rest): (Vec<&Value>, Vec<&Value>) =
        docs.iter().partition(|d| d["kind"] == "ServiceMonitor");
    server_dry_run(&rest);

    let monitor = monitors[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], RELEASE_NS);
    let service = of_kind(&docs, "Service")[0];
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("the ServiceMonitor selects by labels");
    for (key, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selector {key}={value} does not match the metrics Service"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
}

#[test]
fn deployment_is_hardened_and_wired_to_the_operator_flags() {
    let docs = render("dbconn", RELEASE_NS, &[]);
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
               "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/dbconn/dbconn-operator:{}",
            chart_yaml()["appVersion"].as_str().unwrap()
        )
    );

    // The only writable path is an emptyDir at /tmp.
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}])
    );
    assert!(
        pod["volumes"][0]["emptyDir"].is_object(),
        "{}",
        pod["volumes"]
    );

    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} is not set"
            );
        }
    }

    assert_eq!(
        container["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    let service = of_kind(&docs, "Service")[0];
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}])
    );

    let env = |name| env_var(container, name);
    assert_eq!(env("WATCH_NAMESPACE")["value"], "");
    assert_eq!(env("LOG_FORMAT")["value"], "json");
    assert_eq!(env("HTTP_ADDR")["value"], "0.0.0.0:8080");
    assert_eq!(env("DBCONN_CONCURRENCY")["value"], "64");
    assert_eq!(env("LEADER_ELECTION")["value"], "false");
    assert_eq!(
        env("POD_NAME")["valueFrom"],
        json!({"fieldRef": {"fieldPath": "metadata.name"}})
    );
    assert_eq!(
        env("POD_NAMESPACE")["valueFrom"],
        json!({"fieldRef": {"fieldPath": "metadata.namespace"}})
    );

    // The HA variant elects a leader and watches the one namespace it was given.
    let docs = render("dbconn", RELEASE_NS, &[HA, "watchNamespace=apps"]);
    let container = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_var(container, "WATCH_NAMESPACE")["value"], "apps");
    assert_eq!(env_var(container, "LEADER_ELECTION")["value"], "true");
}

/// The container's env entry `name`.
fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("env {name} is not set"))
}

fn chart_yaml() -> Value {
    let text = std::fs::read_to_string(Path::new(CHART).join("Chart.yaml")).unwrap();
    serde_saphyr::from_str(&text).expect("Chart.yaml is YAML")
}

/// Applies the chart's ServiceAccount and RBAC for real, in namespaces of their own, and asks
/// the apiserver's authorizer what the operator's ServiceAccount may do: exactly the calls the
/// operator makes (src/: list/watch connections, patch their status, get/list/watch
/// Secrets, create/patch/delete binding Secrets, create/patch events.k8s.io Events, the Lease),
/// in the right namespaces, bound to the right subject, and none of the dangerous verbs.
#[test]
fn rbac_grants_what_the_operator_needs_and_no_more() {
    common::install_crd();
    let id = format!("{:08x}", rand::random::<u32>());
    let release_ns = format!("chart-rbac-{id}");
    let watch_ns = format!("chart-rbac-apps-{id}");
    common::kubectl_ok(&["create", "namespace", &release_ns], None);
    common::kubectl_ok(&["create", "namespace", &watch_ns], None);

    // Namespaced, two replicas, binding off.
    let docs = render(
        "ns",
        &release_ns,
        &[&format!(
            "watchNamespace={watch_ns},replicaCount=2,binding.enabled=false"
        )],
    );
    apply_rbac(&docs);
    let sa = format!("system:serviceaccount:{release_ns}:ns-dbconn-operator");
    let (r, w) = (release_ns.as_str(), watch_ns.as_str());
    let dbconn = "databaseconnections.dbconn.dev";
    let lease = "leases.coordination.k8s.io/dbconn-operator";
    let mut wrong = check(
        &sa,
        &[
            (true, &["list", dbconn, "-n", w]),
            (true, &["watch", dbconn, "-n", w]),
            (true, &["patch", dbconn, "--subresource=status", "-n", w]),
            (true, &["get", "secrets", "-n", w]),
            (true, &["list", "secrets", "-n", w]),
            (true, &["watch", "secrets", "-n", w]),
            (true, &["create", "events.events.k8s.io", "-n", w]),
            (true, &["patch", "events.events.k8s.io", "-n", w]),
            (true, &["create", "leases.coordination.k8s.io", "-n", r]),
            (true, &["get", lease, "-n", r]),
            (true, &["update", lease, "-n", r]),
            (false, &["create", "secrets", "-n", w]),
            (false, &["patch", "secrets", "-n", w]),
            (false, &["delete", "secrets", "-n", w]),
            (false, &["list", dbconn, "-n", r]),
            (false, &["list", "secrets", "-n", r]),
            (false, &["list", dbconn, "--all-namespaces"]),
            (false, &["list", "secrets", "--all-namespaces"]),
            (false, &["delete", "secrets", "--all-namespaces"]),
            (false, &["get", "leases.coordination.k8s.io/other", "-n", r]),
            (false, &["delete", lease, "-n", r]),
            (false, &["create", "leases.coordination.k8s.io", "-n", w]),
        ],
    );
    wrong.extend(check(&sa, &as_args(&never(w))));

    // All namespaces, one replica (no leader election), binding on. Its ClusterRole and
    // ClusterRoleBinding are deleted when the test ends, even on failure.
    let release = format!("all{id}");
    let docs = render(&release, &release_ns, &[]);
    let _cleanup = ClusterScoped(format!("{release}-dbconn-operator"));
    apply_rbac(&docs);
    let sa = format!("system:serviceaccount:{release_ns}:{release}-dbconn-operator");
    wrong.extend(check(
        &sa,
        &[
            (true, &["list", dbconn, "--all-namespaces"]),
            (true, &["watch", dbconn, "--all-namespaces"]),
            (true, &["patch", dbconn, "--subresource=status", "-n", w]),
            (true, &["watch", "secrets", "--all-namespaces"]),
            (true, &["create", "secrets", "-n", w]),
            (true, &["patch", "secrets", "-n", w]),
            (true, &["delete", "secrets", "-n", w]),
            (true, &["create", "events.events.k8s.io", "-n", w]),
            (false, &["create", "leases.coordination.k8s.io", "-n", r]),
            (false, &["get", lease, "-n", r]),
            (false, &["list", "configmaps", "--all-namespaces"]),
        ],
    ));
    wrong.extend(check(&sa, &as_args(&never(w))));

    // All namespaces, binding off: read-only on Secrets everywhere.
    let release = format!("ro{id}");
    let docs = render(&release, &release_ns, &["binding.enabled=false"]);
    let _cleanup_read_only = ClusterScoped(format!("{release}-dbconn-operator"));
    apply_rbac(&docs);
    let sa = format!("system:serviceaccount:{release_ns}:{release}-dbconn-operator");
    wrong.extend(check(
        &sa,
        &[
            (true, &["watch", "secrets", "--all-namespaces"]),
            (false, &["create", "secrets", "-n", w]),
            (false, &["patch", "secrets", "--all-namespaces"]),
            (false, &["delete", "secrets", "--all-namespaces"]),
        ],
    ));
    assert!(wrong.is_empty(), "RBAC differs:\n{}", wrong.join("\n"));
    report::record(
        "security",
        "RBAC: only the calls the operator makes",
        "passed",
        "kubectl auth can-i on namespaced, cluster-wide and read-only renders",
    );
}

/// What the operator's ServiceAccount must never be able to do, whatever the values: the
/// wildcard, running code in pods, granting itself more (RBAC escalate/bind, impersonation,
/// tokens, webhooks, CRDs), verbs on connections besides reading them and writing status, the
/// core Events API, and Secret verbs the binding does not use.
fn never(w: &str) -> Vec<Vec<&str>> {
    let dbconn = "databaseconnections.dbconn.dev";
    let mut checks: Vec<Vec<&str>> = vec![
        vec!["*", "*", "--all-namespaces"],
        vec!["*", "*", "-n", w],
        vec!["create", "pods", "-n", w],
        vec!["create", "pods/exec", "-n", w],
        vec!["get", "nodes/proxy"],
        vec!["escalate", "clusterroles.rbac.authorization.k8s.io"],
        vec!["bind", "clusterroles.rbac.authorization.k8s.io"],
        vec!["escalate", "roles.rbac.authorization.k8s.io", "-n", w],
        vec!["bind", "roles.rbac.authorization.k8s.io", "-n", w],
        vec!["create", "rolebindings.rbac.authorization.k8s.io", "-n", w],
        vec!["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        vec!["impersonate", "users"],
        vec!["impersonate", "serviceaccounts", "-n", w],
        vec!["create", "serviceaccounts/token", "-n", w],
        vec![
            "create",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
        ],
        vec![
            "create",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        ],
        vec!["patch", "customresourcedefinitions.apiextensions.k8s.io"],
        vec!["get", dbconn, "-n", w],
        vec!["update", "secrets", "-n", w],
        vec!["deletecollection", "secrets", "-n", w],
        vec!["create", "events", "-n", w],
        vec!["get", "configmaps", "-n", w],
    ];
    for verb in ["create", "update", "patch", "delete"] {
        checks.push(vec![verb, dbconn, "-n", w]);
    }
    checks.push(vec!["update", dbconn, "--subresource=status", "-n", w]);
    checks
}

fn as_args<'a>(checks: &'a [Vec<&'a str>]) -> Vec<(bool, &'a [&'a str])> {
    checks.iter().map(|c| (false, c.as_slice())).collect()
}

/// The operator itself, run as the chart's ServiceAccount (kubeconfig impersonation) with its
/// RBAC alone: namespaced, leader election on, binding on. Everything it does must still work:
/// reading the Secret, status, the binding Secret written and deleted, Events, the Lease. A
/// missing grant would show as `Forbidden` in its log and a condition that is never reached.
#[tokio::test]
async fn the_operator_runs_on_the_charts_rbac_alone() {
    common::install_crd();
    let client = common::client().await;
    let watch_ns = common::TestNamespace::create(&client, "chart-run")
        .await
        .name;
    let release_ns = format!("{watch_ns}-system");
    common::kubectl_ok(&["create", "namespace", &release_ns], None);
    let docs = render(
        "run",
        &release_ns,
        &[&format!("watchNamespace={watch_ns},replicaCount=2")],
    );
    apply_rbac(&docs);
    let env = TestEnv::get();
    let kubeconfig = std::env::temp_dir().join(format!("dbconn-{release_ns}.kubeconfig"));
    let admin = std::fs::read_to_string(env.kubeconfig()).unwrap();
    let impersonating = admin.replacen(
        "  user:\n",
        &format!("  user:\n    as: system:serviceaccount:{release_ns}:run-dbconn-operator\n"),
        1,
    );
    assert_ne!(
        admin, impersonating,
        "the test kubeconfig has no user entry"
    );
    std::fs::write(&kubeconfig, impersonating).unwrap();
    let operator = common::Operator::start_on(
        &watch_ns,
        "",
        &[
            "--leader-election",
            "true",
            "--lease-namespace",
            &release_ns,
            "--identity",
            "chart-rbac",
        ],
        kubeconfig.to_str().unwrap(),
    );
    let h = common::Harness {
        client,
        ns: watch_ns.clone(),
        operator,
    };

    h.apply(&common::secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    let connection = common::neo4j_connection_yaml("graph", env.neo4j_uri(), "login");
    h.apply(&format!("{connection}  binding: {{}}\n"));
    h.wait("graph", "Ready", "True", Some("Connected")).await;
    let ns = watch_ns.as_str();
    common::kubectl_ok(&["get", "secret", "graph-binding", "-n", ns], None);
    let lease = common::kubectl_ok(
        &[
            "get",
            "lease",
            "dbconn-operator",
            "-n",
            &release_ns,
            "-o",
            "json",
        ],
        None,
    );
    assert!(lease.contains("\"chart-rbac\""), "{lease}");
    let events = common::kubectl_ok(
        &["get", "events.events.k8s.io", "-n", ns, "-o", "json"],
        None,
    );
    assert!(events.contains("\"Connected\""), "{events}");

    // Without spec.binding the operator deletes the binding Secret.
    h.apply(&connection);
    let deadline = std::time::Instant::now() + common::CONDITION_TIMEOUT;
    while common::kubectl(&["get", "secret", "graph-binding", "-n", ns], None)
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the binding Secret was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let logs = h.operator.logs();
    assert!(!logs.to_lowercase().contains("forbidden"), "{logs}");
    h.assert_secret_never_exposed(env.neo4j_password());
    let _ = std::fs::remove_file(&kubeconfig);
    report::record(
        "security",
        "operator runs on the chart's RBAC alone",
        "passed",
        "as its ServiceAccount: Ready, binding written and deleted, Events, Lease; no Forbidden",
    );
}

/// Applies the ServiceAccount and RBAC documents of a render for real.
fn apply_rbac(docs: &[Value]) {
    let rbac: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            d["kind"] == "ServiceAccount" || d["apiVersion"] == "rbac.authorization.k8s.io/v1"
        })
        .collect();
    common::kubectl_ok(&["apply", "-f", "-"], Some(&as_list(&rbac)));
}

/// `kubectl auth can-i ARGS --as SA` for each check; returns the ones that came out wrong.
fn check(sa: &str, checks: &[(bool, &[&str])]) -> Vec<String> {
    checks
        .iter()
        .filter_map(|(expected, args)| {
            let mut all = vec!["auth", "can-i"];
            all.extend(*args);
            all.extend(["--as", sa]);
            let out = common::kubectl(&all, None);
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let allowed = match answer.as_str() {
                "yes" => true,
                "no" => false,
                _ => panic!(
                    "kubectl {all:?}: {answer} {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            };
            (allowed != *expected)
                .then(|| format!("  {sa} {args:?}: {answer}, expected {expected}"))
        })
        .collect()
}

/// Deletes a release's ClusterRole and ClusterRoleBinding on drop.
struct ClusterScoped(String);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let _ = common::kubectl(
            &[
                "delete",
                "--ignore-not-found",
                &format!("clusterrole/{}", self.0),
                &format!("clusterrolebinding/{}", self.0),
            ],
            None,
        );
    }
}

#[test]
fn values_that_would_misconfigure_the_operator_are_refused() {
    // A misspelt key would otherwise silently leave the operator watching every namespace.
    let out = helm(&["template", "x", CHART, "--set", "watchNamespaces=apps"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("watchNamespaces"));
    // Two replicas that do not elect a leader would both reconcile every connection.
    let out = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "replicaCount=2,leaderElection.enabled=false",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaderElection.enabled=false"));
}

/// Helm installs CRDs only from the chart's own crds/, so the chart carries a copy of the
/// generated files. This keeps the copy exact and complete.
#[test]
fn chart_crds_are_a_copy_of_the_generated_crds() {
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let fix = "after `make crds`, run `cp crds/*.yaml charts/dbconn-operator/crds/`";
    assert_eq!(names(CRDS), names(CHART_CRDS), "{fix}");
    for name in names(CRDS) {
        let generated = std::fs::read(Path::new(CRDS).join(&name)).unwrap();
        let copy = std::fs::read(Path::new(CHART_CRDS).join(&name)).unwrap();
        assert!(
            generated == copy,
            "charts/dbconn-operator/crds/{name} differs from crds/{name}: {fix}"
        );
    }
}

#[test]
fn chart_app_version_is_the_crate_version() {
    assert_eq!(
        chart_yaml()["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "bump appVersion in charts/dbconn-operator/Chart.yaml with the crate version"
    );
}
