//! The Helm chart in charts/dbconn-operator, checked with the test environment's helm and
//! against its real kube-apiserver: lint, server-side dry runs (schemas, field validation, the
//! "restricted" Pod Security admission), the RBAC it grants as the apiserver's authorizer sees
//! it, the pod's hardening, the labels, the CRD template, and `helm upgrade` from the previous
//! chart release.

mod common;

use std::{path::Path, process::Command, sync::OnceLock};

use common::{TestEnv, report};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator");
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
/// The previous chart release (0.2.0, the CRD in crds/), packaged as users have it; a packaged
/// copy rather than `git archive` of history, which a shallow clone would not have.
const PREVIOUS_CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/dbconn-operator-0.2.0.tgz"
);
const CRD: &str = "crd/databaseconnections.dbconn.dev";

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
    let mut options = Vec::new();
    for s in set {
        options.extend(["--set", s]);
    }
    template(release, namespace, &options)
}

/// `helm template` with any further `options` (`--set`, `-f`), parsed into its documents.
fn template(release: &str, namespace: &str, options: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", release, CHART, "--namespace", namespace];
    args.extend(options);
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

/// `kubectl apply --server-side --dry-run=server`: the apiserver runs defaulting, schema and
/// strict field validation and admission (Pod Security included) and stores nothing. Warnings
/// fail too. Server-side, because the CRD already exists, applied server-side by the tests.
fn server_dry_run(docs: &[&Value]) {
    let out = common::kubectl(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
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
            "CustomResourceDefinition",
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
            "CustomResourceDefinition",
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

/// The pod-level values users set for placement and their own tooling reach the pod as given,
/// and `podLabels` add to the chart's labels without replacing the ones the selector needs.
#[test]
fn pod_values_reach_the_pod_and_keep_the_selector_labels() {
    let values = std::env::temp_dir().join(format!(
        "dbconn-chart-pod-values-{}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &values,
        r#"
podAnnotations: {example.com/owner: platform}
podLabels: {team: databases, app.kubernetes.io/name: not-the-chart}
extraEnv: [{name: EXTRA_SETTING, value: "on"}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: databases, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]}]
priorityClassName: platform-critical
"#,
    )
    .unwrap();
    let docs = template("dbconn", RELEASE_NS, &["-f", values.to_str().unwrap()]);
    let _ = std::fs::remove_file(&values);
    let deployment = of_kind(&docs, "Deployment")[0];
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(
        template["metadata"]["annotations"],
        json!({"example.com/owner": "platform"})
    );
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["team"], "databases");
    for (key, value) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &labels[key], value,
            "pod label {key} must match the selector"
        );
    }
    assert_eq!(
        env_var(&pod["containers"][0], "EXTRA_SETTING")["value"],
        "on"
    );
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "databases", "effect": "NoSchedule"}])
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "kubernetes.io/arch"
    );
    assert_eq!(pod["priorityClassName"], "platform-critical");
    dry_run_namespaces();
    server_dry_run(&[deployment]);
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
    // The Lease is named after the release (leaderElection.leaseName defaults to the full name).
    let lease = "leases.coordination.k8s.io/ns-dbconn-operator";
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
    let deployment = of_kind(&docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let lease_name = env_var(container, "LEASE_NAME")["value"]
        .as_str()
        .unwrap()
        .to_owned();
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
            "--lease-name",
            &lease_name,
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
        &["get", "lease", &lease_name, "-n", &release_ns, "-o", "json"],
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

/// With `sharding.shards`, every replica is active on its own shards: no leader election, the
/// shard count and selector in the environment, and Leases it may list and delete (their names
/// follow the Pods'). Election and sharding together are refused.
#[test]
fn sharded_replicas_are_all_active_and_may_manage_their_leases() {
    let docs = render(
        "dbconn",
        RELEASE_NS,
        &["replicaCount=3,sharding.shards=6,selector=team=a"],
    );
    let deployment = of_kind(&docs, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(env_var(container, "LEADER_ELECTION")["value"], "false");
    assert_eq!(env_var(container, "DBCONN_SHARDS")["value"], "6");
    assert_eq!(env_var(container, "DBCONN_SELECTOR")["value"], "team=a");
    let roles = of_kind(&docs, "Role");
    let lease_rules: Vec<&Value> = roles
        .iter()
        .flat_map(|r| r["rules"].as_array().unwrap())
        .filter(|rule| rule["resources"][0] == "leases")
        .collect();
    let verbs: Vec<&str> = lease_rules
        .iter()
        .flat_map(|rule| rule["verbs"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    for verb in ["create", "list", "get", "update", "delete"] {
        assert!(verbs.contains(&verb), "{verb} on leases: {verbs:?}");
    }
    let out = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "replicaCount=3,sharding.shards=6,leaderElection.enabled=true",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("choose one"));
    server_dry_run(&[deployment]);
}

/// The chart's CRD template is `crds/` (one source: `make crds` writes the template) plus the
/// chart's labels and `helm.sh/resource-policy: keep`; `crds.create=false` leaves it out.
#[test]
fn chart_crd_is_the_generated_crd_kept_on_uninstall() {
    let docs = render("dbconn", RELEASE_NS, &[]);
    let mut crd = of_kind(&docs, "CustomResourceDefinition")[0].clone();
    let metadata = crd["metadata"].as_object_mut().unwrap();
    let annotations = metadata.remove("annotations").expect("annotations");
    assert_eq!(annotations, json!({"helm.sh/resource-policy": "keep"}));
    let labels = metadata.remove("labels").expect("labels");
    assert_eq!(labels["app.kubernetes.io/component"], "crd");
    let file = Path::new(CRDS).join("databaseconnections.dbconn.dev.yaml");
    let generated: Value = serde_saphyr::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(
        crd == generated,
        "templates/crds.yaml differs from crds/: run `make crds` (or `bash scripts/chart-crds.sh`)"
    );

    let docs = render("dbconn", RELEASE_NS, &["crds.create=false"]);
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
}

/// Every object, and the pod template, carries the recommended labels.
#[test]
fn every_object_has_the_recommended_labels() {
    let all = "replicaCount=2,serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true";
    let docs = render("dbconn", RELEASE_NS, &[all]);
    let version = chart_yaml()["version"].as_str().unwrap().to_owned();
    let mut checked = 0;
    for doc in &docs {
        let mut objects = vec![(doc["kind"].as_str().unwrap(), &doc["metadata"]["labels"])];
        if doc["kind"] == "Deployment" {
            objects.push((
                "pod template",
                &doc["spec"]["template"]["metadata"]["labels"],
            ));
        }
        for (what, labels) in objects {
            for (key, value) in [
                ("app.kubernetes.io/name", "dbconn-operator"),
                ("app.kubernetes.io/instance", "dbconn"),
                ("app.kubernetes.io/version", env!("CARGO_PKG_VERSION")),
                ("app.kubernetes.io/part-of", "dbconn-operator"),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("helm.sh/chart", &format!("dbconn-operator-{version}")),
            ] {
                assert_eq!(labels[key], value, "{what}: label {key}");
            }
            assert!(
                labels["app.kubernetes.io/component"].is_string(),
                "{what}: no component label"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, docs.len() + 1);
}

/// Two releases in one namespace take different Leases; the value overrides the name.
#[test]
fn the_lease_is_named_after_the_release() {
    let lease = |release: &str, set: &[&str]| {
        let docs = render(release, RELEASE_NS, set);
        let container =
            &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        let name = env_var(container, "LEASE_NAME")["value"].clone();
        let role = of_kind(&docs, "Role")
            .into_iter()
            .find(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with("-leader-election")
            })
            .expect("the Lease Role");
        assert_eq!(role["rules"][1]["resourceNames"], json!([name]));
        name
    };
    assert_eq!(lease("a", &[HA]), "a-dbconn-operator");
    assert_eq!(lease("b", &[HA]), "b-dbconn-operator");
    assert_eq!(lease("dbconn-operator", &[HA]), "dbconn-operator");
    assert_eq!(
        lease("a", &[HA, "leaderElection.leaseName=shared"]),
        "shared"
    );
}

/// `helm upgrade` from the previous chart against the real apiserver: the CRD, which 0.2.0
/// installed from crds/ outside the release, is taken over (`--take-ownership`, as the chart
/// README says), a connection survives the upgrade, and both survive `helm uninstall`. No
/// `--wait`: the test apiserver has no kubelet to run the pods.
#[test]
fn upgrade_from_the_previous_chart_takes_over_the_crd_and_uninstall_keeps_it() {
    common::install_crd();
    let id = format!("{:08x}", rand::random::<u32>());
    let (release, ns) = (format!("up{id}"), format!("chart-upgrade-{id}"));
    common::kubectl_ok(&["create", "namespace", &ns], None);
    let _release = Release(release.clone(), ns.clone());
    let _crd = ReleaseCrd;
    helm_ok(&["install", &release, PREVIOUS_CHART, "-n", &ns]);
    let connection = common::neo4j_connection_yaml("kept", "bolt://db:7687", "login");
    common::kubectl_ok(&["apply", "-n", &ns, "-f", "-"], Some(&connection));

    // Helm refuses to adopt an object it did not create unless told to.
    let out = helm(&["upgrade", &release, CHART, "-n", &ns]);
    assert!(!out.status.success(), "a plain upgrade adopted the CRD");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid ownership metadata"));
    helm_ok(&["upgrade", &release, CHART, "-n", &ns, "--take-ownership"]);

    let crd: Value =
        serde_json::from_str(&common::kubectl_ok(&["get", CRD, "-o", "json"], None)).unwrap();
    let annotations = &crd["metadata"]["annotations"];
    assert_eq!(annotations["meta.helm.sh/release-name"], release.as_str());
    assert_eq!(annotations["meta.helm.sh/release-namespace"], ns.as_str());
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    let chart = format!(
        "dbconn-operator-{}",
        chart_yaml()["version"].as_str().unwrap()
    );
    assert_eq!(crd["metadata"]["labels"]["helm.sh/chart"], chart.as_str());
    let manifest = helm_ok(&["get", "manifest", &release, "-n", &ns]);
    assert!(manifest.contains("kind: CustomResourceDefinition"));
    common::kubectl_ok(&["get", "dbconn", "kept", "-n", &ns], None);

    helm_ok(&["uninstall", &release, "-n", &ns]);
    let deployment = format!("deployment/{release}-dbconn-operator");
    let out = common::kubectl(&["get", &deployment, "-n", &ns], None);
    assert!(!out.status.success(), "uninstall left the Deployment");
    common::kubectl_ok(&["get", CRD], None);
    common::kubectl_ok(&["get", "dbconn", "kept", "-n", &ns], None);
}

/// Uninstalls the release if the test failed before it did.
struct Release(String, String);

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", &self.0, "-n", &self.1]);
    }
}

/// Hands the shared apiserver's CRD back unowned, as `common::install_crd` left it, so the next
/// install of the chart (here or elsewhere) is not refused for another release's ownership.
struct ReleaseCrd;

impl Drop for ReleaseCrd {
    fn drop(&mut self) {
        let annotations = [
            "meta.helm.sh/release-name-",
            "meta.helm.sh/release-namespace-",
        ];
        let _ = common::kubectl(&[&["annotate", CRD][..], &annotations].concat(), None);
        let _ = common::kubectl(
            &[
                "label",
                CRD,
                "app.kubernetes.io/managed-by-",
                "app.kubernetes.io/instance-",
            ],
            None,
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
