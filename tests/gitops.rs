//! What the chart gives monitoring and GitOps tools, checked against the operator itself:
//!
//! - the Grafana dashboard and the Prometheus alerting rules name only metrics that
//!   `src/metrics.rs` registers (read from its source, so a renamed metric fails here), render
//!   from the chart, and the rules pass `promtool check rules` and the unit tests in
//!   `tests/fixtures/` (`promtool test rules`, promtool from the test environment);
//! - the Argo CD health check (`charts/dbconn-operator/argocd/health.lua`) runs in a real Lua
//!   interpreter over DatabaseConnections that the real operator wrote, and so does a Rust
//!   transcription of kstatus, the library Flux uses to decide whether a resource is healthy.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::OnceLock,
};

use common::{
    Harness, TestEnv, kubectl, kubectl_ok,
    neo4j::{create_user, unique_user},
    neo4j_connection_yaml, secret_yaml,
};
use serde_json::{Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dbconn-operator");
const METRICS_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics.rs");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/dbconn-operator/dashboards/dbconn-operator.json"
);
const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/dbconn-operator/prometheus/dbconn-operator.rules.yaml"
);
const RULE_TESTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/dbconn-operator.rules.test.yaml"
);
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const HEALTH_LUA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/dbconn-operator/argocd/health.lua"
);
const ARGOCD_KEY: &str = "resource.customizations.health.dbconn.dev_DatabaseConnection";

/// Namespace of the server-side dry runs; fixed, so repeated runs do not pile up namespaces.
const DRY_RUN_NS: &str = "dbconn-gitops";

// ---------------------------------------------------------------------------------------------
// The metric names the operator exports, read from src/metrics.rs.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Families as registered (prefixed name without suffixes, and type).
struct Exported {
    families: BTreeMap<String, MetricType>,
}

impl Exported {
    /// The series names PromQL can select: counters end in `_total`, histograms are
    /// `_bucket`/`_sum`/`_count` (the OpenMetrics names prometheus-client exposes).
    fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (family, type_) in &self.families {
            match type_ {
                MetricType::Counter => {
                    names.insert(format!("{family}_total"));
                }
                MetricType::Gauge => {
                    names.insert(family.clone());
                }
                MetricType::Histogram => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{family}{suffix}"));
                    }
                }
            }
        }
        names
    }
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let source = std::fs::read_to_string(METRICS_RS).expect("read src/metrics.rs");
        parse_metrics_source(&source)
    })
}

/// Reads `Registry::with_prefix(..)`, the `Metrics` struct's field types and every
/// `registry.register(NAME, HELP, metrics.FIELD.clone())` call.
fn parse_metrics_source(source: &str) -> Exported {
    let code = source.split("#[cfg(test)]").next().unwrap();
    for unsupported in ["register_with_unit(", "sub_registry"] {
        assert!(
            !code.contains(unsupported),
            "src/metrics.rs uses {unsupported}: teach tests/gitops.rs how it names metrics"
        );
    }
    let prefix = code
        .split_once("Registry::with_prefix(")
        .map(|(_, rest)| string_literal(rest).0)
        .unwrap_or_default();

    let body = code
        .split_once("pub struct Metrics {")
        .expect("src/metrics.rs defines `pub struct Metrics`")
        .1;
    let body = &body[..body.find("\n}").expect("end of struct Metrics")];
    let mut fields = BTreeMap::new();
    for field in split_top_level(body) {
        if let Some((name, type_)) = field.split_once(':') {
            let name = name.trim().trim_start_matches("pub ").trim();
            fields.insert(name.to_owned(), type_.trim().to_owned());
        }
    }

    let mut families = BTreeMap::new();
    let mut rest = code;
    while let Some(at) = rest.find(".register(") {
        let args = &rest[at + ".register(".len()..];
        let (name, after_name) = string_literal(args);
        let after_comma = after_name
            .trim_start()
            .strip_prefix(',')
            .expect("register(NAME, ...)");
        let (_help, after_help) = string_literal(after_comma);
        let metric = after_help
            .trim_start()
            .strip_prefix(',')
            .expect("register(NAME, HELP, METRIC)")
            .trim_start();
        let field: String = metric
            .strip_prefix("metrics.")
            .unwrap_or_else(|| panic!("register({name:?}, ..): metric is not `metrics.FIELD`"))
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let type_ = fields
            .get(&field)
            .unwrap_or_else(|| panic!("no field {field} in struct Metrics"));
        let metric_type = if type_.contains("Histogram") {
            MetricType::Histogram
        } else if type_.contains("Counter") {
            MetricType::Counter
        } else if type_.contains("Gauge") {
            MetricType::Gauge
        } else {
            panic!("metric {name}: unknown type {type_}")
        };
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}_{name}")
        };
        families.insert(full, metric_type);
        rest = after_help;
    }
    assert!(
        !families.is_empty(),
        "no registry.register(..) call found in src/metrics.rs"
    );
    Exported { families }
}

/// The Rust string literal at the start of `text` (after whitespace), and the text after it.
fn string_literal(text: &str) -> (String, &str) {
    let text = text.trim_start();
    let inner = text.strip_prefix('"').unwrap_or_else(|| {
        panic!(
            "expected a string literal at: {}",
            &text[..text.len().min(40)]
        )
    });
    let mut value = String::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &inner[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            _ => value.push(c),
        }
    }
    panic!("unterminated string literal")
}

/// Splits on commas outside `<...>`, `(...)`, `[...]`.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

// ---------------------------------------------------------------------------------------------
// The metric names a PromQL expression selects.

/// Words that are never metric names: aggregations, set and binary operators, modifiers.
const PROMQL_KEYWORDS: [&str; 20] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
];

/// Modifiers followed by a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Every metric name `expr` selects: identifiers outside strings, label matchers (`{..}`), ranges
/// (`[..]`) and label lists (`by (..)`), that are not keywords and not called as functions.
/// Grafana variables (`$name`, `${name}`) are skipped.
fn promql_metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '{' {
            i = skip_group(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                i = skip_group(&chars, i, '{', '}');
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if PROMQL_KEYWORDS.contains(&lower.as_str())
                || ["inf", "nan"].contains(&lower.as_str())
                || chars.get(next) == Some(&'(')
            {
                // an aggregation, operator or function: its arguments are scanned on
            } else {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Index after the string literal starting at `start`.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    panic!(
        "unterminated string in PromQL: {}",
        chars.iter().collect::<String>()
    )
}

/// Index after the group opened at `start`, skipping strings inside it.
fn skip_group(chars: &[char], start: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    panic!(
        "unbalanced {open}{close} in PromQL: {}",
        chars.iter().collect::<String>()
    )
}

/// The metric names in `expr` that the operator does not export; fails when `expr` names none.
fn unknown_metrics(what: &str, expr: &str) -> Vec<String> {
    let mut known = exported().names();
    // Prometheus' own per-target series, which the absent-operator alert reads.
    known.insert("up".into());
    unknown_metrics_in(&known, what, expr)
}

fn unknown_metrics_in(known: &BTreeSet<String>, what: &str, expr: &str) -> Vec<String> {
    let names = promql_metric_names(expr);
    assert!(!names.is_empty(), "{what}: no metric in {expr:?}");
    names
        .into_iter()
        .filter(|n| !known.contains(n))
        .map(|n| format!("{what}: {n} (in {expr:?})"))
        .collect()
}

#[test]
fn metric_names_are_read_from_the_operator_source() {
    let families = &exported().families;
    // The names the dashboard and the alerts are built on; if one is renamed in src/metrics.rs,
    // this says which, and the dashboard and rule checks below say where it is used.
    for (name, type_) in [
        ("dbconn_connection_up", MetricType::Gauge),
        ("dbconn_probe_duration_seconds", MetricType::Histogram),
        ("dbconn_probe_failures", MetricType::Counter),
        ("dbconn_credential_reloads", MetricType::Counter),
        ("dbconn_reconciles", MetricType::Counter),
        ("dbconn_reconcile_errors", MetricType::Counter),
        ("dbconn_reconcile_duration_seconds", MetricType::Histogram),
        ("dbconn_status_writes", MetricType::Counter),
        ("dbconn_open_pools", MetricType::Gauge),
    ] {
        assert_eq!(
            families.get(name),
            Some(&type_),
            "src/metrics.rs no longer registers {name} as a {}: update the dashboard and rules in charts/dbconn-operator",
            type_.as_str()
        );
    }
    let names = exported().names();
    assert!(names.contains("dbconn_probe_failures_total"));
    assert!(names.contains("dbconn_probe_duration_seconds_bucket"));
    assert!(!names.contains("dbconn_probe_duration_seconds"));
}

/// The checks below read src/metrics.rs as it is; this shows they would catch a rename there.
#[test]
fn a_metric_renamed_in_the_source_is_caught() {
    let source = std::fs::read_to_string(METRICS_RS).unwrap();
    assert!(source.contains("\"connection_up\""));
    let renamed = parse_metrics_source(&source.replace("\"connection_up\"", "\"connection_ok\""));
    let known = renamed.names();
    assert!(known.contains("dbconn_connection_ok"));
    let rules = rules_file();
    let down = alerts(&rules)
        .into_iter()
        .find(|a| a["alert"] == "DbconnConnectionDown")
        .unwrap();
    let unknown = unknown_metrics_in(&known, "rule", down["expr"].as_str().unwrap());
    assert_eq!(
        unknown,
        [
            "rule: dbconn_connection_up (in \"max by (namespace, name, engine) (dbconn_connection_up) == 0\")"
        ]
    );
}

#[test]
fn promql_metric_names_are_found_and_nothing_else() {
    let cases: [(&str, &[&str]); 6] = [
        (
            r#"histogram_quantile(0.95, sum by (le, namespace) (rate(a_bucket{namespace=~"$namespace", x="}"}[$__rate_interval])))"#,
            &["a_bucket"],
        ),
        (
            "sum without (instance) (rate(b_total[5m] offset 1h)) / on(job) group_left(name) c > bool 0.5",
            &["b_total", "c"],
        ),
        ("count(up == 0) or vector(0)", &["up"]),
        (
            "max by (namespace, name, engine) (dbconn_connection_up) == 0",
            &["dbconn_connection_up"],
        ),
        (
            "label_replace(d, \"dst\", \"$1\", \"src\", \"(.*)\") and e unless f",
            &["d", "e", "f"],
        ),
        ("sum(rate(g[1m])) * 60 + 1e3 - ${var} + Inf", &["g"]),
    ];
    for (expr, expected) in cases {
        assert_eq!(promql_metric_names(expr), expected, "{expr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Helm.

fn helm(args: &[&str]) -> std::process::Output {
    Command::new(TestEnv::get().bin("helm"))
        .args(args)
        .output()
        .expect("run helm from the test environment")
}

fn render(set: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "dbconn", CHART, "--namespace", DRY_RUN_NS];
    for s in set {
        args.extend(["--set", s]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&yaml)
        .expect("helm renders valid YAML")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// `kubectl apply --dry-run=server` in [`DRY_RUN_NS`]; warnings fail too.
fn server_dry_run(docs: &[&Value]) {
    static NAMESPACE: OnceLock<()> = OnceLock::new();
    NAMESPACE.get_or_init(|| {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DRY_RUN_NS}});
        kubectl_ok(
            &["apply", "--server-side", "-f", "-"],
            Some(&ns.to_string()),
        );
    });
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string();
    let out = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&list));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the apiserver rejected: {stderr}");
    assert!(
        !stderr.contains("Warning"),
        "the apiserver warned: {stderr}"
    );
}

#[test]
fn monitoring_is_off_by_default() {
    let docs = render(&[]);
    assert!(of_kind(&docs, "ConfigMap").is_empty());
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
}

// ---------------------------------------------------------------------------------------------
// The Grafana dashboard.

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("dashboard.panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

#[test]
fn dashboard_panels_query_only_metrics_the_operator_exports() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "dbconn-operator");
    let mut unknown = Vec::new();
    let mut used = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_i64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{title}: use the dashboard's datasource variable"
        );
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("{title}: no query")) {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: a target without expr"));
            unknown.extend(unknown_metrics(title, expr));
            used.extend(promql_metric_names(expr));
            assert_filters(title, expr);
        }
    }
    // The variables' queries, label_values(SELECTOR, LABEL).
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"].as_str().expect("variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .unwrap_or_else(|| {
                panic!("variable query is not label_values(SELECTOR, LABEL): {query}")
            })
            .0;
        unknown.extend(unknown_metrics(
            &format!("variable {}", variable["name"]),
            inner,
        ));
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics src/metrics.rs does not register:\n{}",
        unknown.join("\n")
    );
    for needed in [
        "dbconn_connection_up",
        "dbconn_probe_duration_seconds_bucket",
        "dbconn_probe_failures_total",
        "dbconn_credential_reloads_total",
        "dbconn_reconciles_total",
        "dbconn_reconcile_errors_total",
        "dbconn_reconcile_duration_seconds_bucket",
        "dbconn_status_writes_total",
        "dbconn_open_pools",
    ] {
        assert!(used.contains(needed), "no dashboard panel shows {needed}");
    }
}

/// Operator-wide series: no connection labels, so no connection `namespace` to filter by.
const OPERATOR_SERIES: [&str; 5] = [
    "dbconn_reconciles_total",
    "dbconn_reconcile_errors_total",
    "dbconn_reconcile_duration_seconds_bucket",
    "dbconn_status_writes_total",
    "dbconn_open_pools",
];

/// Every series a panel reads is filtered by the `job` variable, and per-connection series by
/// the `namespace` variable as well.
fn assert_filters(title: &str, expr: &str) {
    for name in promql_metric_names(expr) {
        for (at, _) in expr.match_indices(name.as_str()) {
            let selector = &expr[at + name.len()..];
            let wanted = if OPERATOR_SERIES.contains(&name.as_str()) {
                r#"{job=~"$job""#
            } else {
                r#"{job=~"$job", namespace=~"$namespace""#
            };
            assert!(
                selector.starts_with(wanted),
                "{title}: {name} is not filtered by {wanted}: {expr}"
            );
        }
    }
}

#[test]
fn dashboard_has_job_and_namespace_variables() {
    let dashboard = dashboard();
    let names: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["datasource", "job", "namespace", "name"]);
}

#[test]
fn dashboard_panels_do_not_overlap() {
    let dashboard = dashboard();
    let boxes: Vec<(&str, [i64; 4])> = panels(&dashboard)
        .into_iter()
        .map(|p| {
            let g = &p["gridPos"];
            let n = |k: &str| {
                g[k].as_i64()
                    .unwrap_or_else(|| panic!("{}: gridPos.{k}", p["title"]))
            };
            (
                p["title"].as_str().unwrap(),
                [n("x"), n("y"), n("w"), n("h")],
            )
        })
        .collect();
    for (i, (a, [ax, ay, aw, ah])) in boxes.iter().enumerate() {
        assert!(ax + aw <= 24, "{a} is wider than the grid");
        for (b, [bx, by, bw, bh]) in &boxes[i + 1..] {
            let overlap = ax < &(bx + bw) && bx < &(ax + aw) && ay < &(by + bh) && by < &(ay + ah);
            assert!(!overlap, "panels {a:?} and {b:?} overlap");
        }
    }
}

#[test]
fn dashboard_configmap_renders_for_the_grafana_sidecar_and_is_accepted() {
    let docs = render(&[
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.annotations.grafana_folder=Databases",
    ]);
    let maps = of_kind(&docs, "ConfigMap");
    assert_eq!(maps.len(), 1, "one dashboard ConfigMap");
    let map = maps[0];
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"],
        "Databases"
    );
    assert_eq!(map["metadata"]["namespace"], DRY_RUN_NS);
    let shipped = map["data"]["dbconn-operator.json"]
        .as_str()
        .expect("data.dbconn-operator.json");
    assert_eq!(
        shipped,
        std::fs::read_to_string(DASHBOARD).unwrap().trim_end(),
        "the ConfigMap carries the dashboard file unchanged"
    );
    server_dry_run(&[map]);

    // Another namespace for the sidecar, and its label overridden.
    let docs = render(&[
        "grafanaDashboard.enabled=true,grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.labels.grafana_dashboard=dbconn",
    ]);
    let map = of_kind(&docs, "ConfigMap")[0];
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "dbconn");
}

// ---------------------------------------------------------------------------------------------
// The Prometheus alerting rules.

fn rules_file() -> Value {
    let text = std::fs::read_to_string(RULES).expect("read the rules file");
    serde_saphyr::from_str(&text).expect("the rules file is YAML")
}

fn alerts(groups: &Value) -> Vec<&Value> {
    groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect()
}

#[test]
fn alert_rules_query_only_metrics_the_operator_exports_and_say_what_to_do() {
    let rules = rules_file();
    let alerts = alerts(&rules);
    let names: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        "DbconnOperatorAbsent",
        "DbconnConnectionDown",
        "DbconnAuthenticationFailing",
        "DbconnReconcileErrors",
    ];
    // Schema drift can only be alerted on while the operator exports a metric for it.
    if exported().names().contains("dbconn_schema_drift") {
        expected.push("DbconnSchemaDrift");
    }
    assert_eq!(names, expected);

    let mut unknown = Vec::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap();
        unknown.extend(unknown_metrics(name, alert["expr"].as_str().expect("expr")));
        for annotation in ["summary", "description"] {
            let text = alert["annotations"][annotation]
                .as_str()
                .unwrap_or_default();
            assert!(text.len() > 20, "{name}: no useful {annotation}");
        }
        assert!(
            alert["labels"]["severity"].is_string(),
            "{name}: no severity"
        );
    }
    assert!(
        unknown.is_empty(),
        "the alerts query metrics src/metrics.rs does not register:\n{}",
        unknown.join("\n")
    );
    assert_eq!(
        alerts[0]["expr"],
        r#"absent(up{job="dbconn-operator-metrics"} == 1)"#
    );
    let down = alerts[1];
    assert_eq!(down["for"], "5m");
    assert!(
        down["expr"]
            .as_str()
            .unwrap()
            .contains("dbconn_connection_up")
    );
    assert!(
        alerts[2]["expr"]
            .as_str()
            .unwrap()
            .contains(r#"reason="AuthenticationFailed""#)
    );
}

/// `promtool ARGS` from the test environment; a missing promtool fails, it never skips.
fn promtool(args: &[&str]) {
    let bin = TestEnv::get().bin("promtool");
    assert!(
        bin.exists(),
        "{} is missing: run `bash tests/testenv/testenv.sh up`, which builds it",
        bin.display()
    );
    let out = Command::new(&bin)
        .args(args)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_rules_and_runs_their_unit_tests() {
    promtool(&["check", "rules", RULES]);
    promtool(&["test", "rules", RULE_TESTS]);
    // Every alert has a unit test that fires it and one where it stays quiet.
    let tests: Value = serde_saphyr::from_str(&std::fs::read_to_string(RULE_TESTS).unwrap())
        .expect("the rule tests are YAML");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert_rule_test"))
        .collect();
    for alert in alerts(&rules_file()) {
        let name = alert["alert"].as_str().unwrap();
        let of_alert = cases.iter().filter(|c| c["alertname"] == name);
        let fired: Vec<bool> = of_alert
            .map(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()))
            .collect();
        assert!(fired.contains(&true), "{RULE_TESTS}: nothing fires {name}");
        assert!(
            fired.contains(&false),
            "{RULE_TESTS}: {name} never stays quiet"
        );
    }
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_waits_has_a_severity_and_a_runbook_in_the_readme() {
    let readme = std::fs::read_to_string(README).unwrap();
    let anchors: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| {
            l.strip_prefix("#")
                .map(|h| anchor(h.trim_start_matches('#')))
        })
        .collect();
    let rules = rules_file();
    let mut critical = Vec::new();
    for alert in alerts(&rules) {
        let name = alert["alert"].as_str().unwrap();
        assert!(alert["for"].is_string(), "{name}: no `for:`");
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        if severity == "critical" {
            critical.push(name);
        }
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let section = url
            .split_once("/README.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not a README section"))
            .1;
        assert!(
            anchors.contains(section),
            "{name}: README.md has no section #{section}"
        );
    }
    // The operator being gone or failing is critical; a database being down is not.
    assert_eq!(critical, ["DbconnOperatorAbsent", "DbconnReconcileErrors"]);
}

#[test]
fn prometheus_rule_renders_the_rules_file_with_extra_alert_labels() {
    let docs = render(&[
        "prometheusRule.enabled=true,serviceMonitor.enabled=true",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "prometheusRule.alertLabels.team=databases",
    ]);
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], DRY_RUN_NS);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );

    // The same rules as the file, with this release's metrics job in the absent-operator alert
    // (the Service's name, the job the ServiceMonitor gives) and team=databases on each alert.
    let service = of_kind(&docs, "Service")[0]["metadata"]["name"]
        .as_str()
        .unwrap();
    let text = std::fs::read_to_string(RULES).unwrap();
    let mut expected: Value =
        serde_saphyr::from_str(&text.replace("dbconn-operator-metrics", service)).unwrap();
    for group in expected["groups"].as_array_mut().unwrap() {
        for alert in group["rules"].as_array_mut().unwrap() {
            alert["labels"]["team"] = json!("databases");
        }
    }
    assert_eq!(rule["spec"], expected);

    // The connection metrics' own namespace label must survive the scrape.
    let monitor = of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
}

// ---------------------------------------------------------------------------------------------
// The Argo CD health check, run by a real Lua interpreter.

/// A JSON value as a Lua table constructor (null becomes nil, as in Argo CD).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Lua interpreter: DBCONN_LUA, else Debian's `lua5.4`.
fn lua_interpreter() -> String {
    std::env::var("DBCONN_LUA").unwrap_or_else(|_| "lua5.4".into())
}

/// Runs health.lua as Argo CD does (the object in the global `obj`, the script's return value
/// is the health) and returns (status, message).
fn argocd_health(obj: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua_literal(obj),
        lua_string(HEALTH_LUA)
    );
    let lua = lua_interpreter();
    let mut child = match Command::new(&lua)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run the Lua interpreter {lua:?} ({e}). The Argo CD health check is tested with a \
             real Lua: install it with `apt-get install -y lua5.4` (tests/testenv/testenv.sh up \
             does), or set DBCONN_LUA to a Lua 5.1+ interpreter"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health.lua failed on {obj}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').expect("status and message");
    assert_ne!(message, "nil", "health.lua returned no message for {obj}");
    (status.to_owned(), message.to_owned())
}

#[test]
fn health_lua_is_plain_lua_5_1_as_argo_cd_runs_it() {
    // Argo CD runs gopher-lua (Lua 5.1): none of the later additions.
    let script = std::fs::read_to_string(HEALTH_LUA).unwrap();
    let code: String = script
        .lines()
        .map(|l| l.split("--").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for later in [
        "goto",
        "//",
        "<const>",
        "<close>",
        "utf8.",
        "table.unpack",
        "math.type",
        "&",
        "|",
        ">>",
        "<<",
        "require",
    ] {
        assert!(
            !code.contains(later),
            "health.lua uses {later:?}, which Argo CD's Lua 5.1 lacks"
        );
    }
    assert!(code.trim_end().ends_with("return hs"));
}

/// A DatabaseConnection at generation `generation` with status `status`.
fn object(generation: i64, suspend: bool, status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "dbconn.dev/v1alpha1",
        "kind": "DatabaseConnection",
        "metadata": {"name": "x", "namespace": "apps", "generation": generation},
        "spec": {"engine": "neo4j", "uri": "bolt://db:7687", "suspend": suspend,
                 "credentials": {"secretRef": {"name": "login"}}},
    });
    if !status.is_null() {
        obj["status"] = status;
    }
    obj
}

fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"})
}

/// An object at generation `generation` whose status was written for generation 1, with
/// conditions (type, status, message).
fn written(generation: i64, suspend: bool, conditions: &[(&str, &str, &str)]) -> Value {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(type_, status, message)| cond(type_, status, "Reason", message))
        .collect();
    let status = json!({"observedGeneration": 1, "conditions": conditions});
    object(generation, suspend, status)
}

/// The rules, one case each, on hand-written objects; the end-to-end test below runs the same
/// script over what the operator writes.
#[test]
fn health_lua_follows_the_documented_rules() {
    let ready = ("Ready", "True", "Connected to X.");
    let refused = ("Ready", "False", "Login refused. Fix the Secret.");
    let unreachable = ("Ready", "False", "db:7687 refused the connection.");
    let retrying = ("Reconciling", "True", "Probe failed 2 time(s); retrying.");
    let cases = [
        (
            "no status",
            object(1, false, Value::Null),
            "Progressing",
            "Waiting for the operator",
        ),
        (
            "no conditions",
            object(1, false, json!({"conditions": []})),
            "Progressing",
            "Waiting for the operator",
        ),
        (
            "old generation",
            written(2, false, &[ready]),
            "Progressing",
            "observe generation 2",
        ),
        (
            "ready",
            written(1, false, &[ready]),
            "Healthy",
            "Connected to X.",
        ),
        (
            "stalled",
            written(
                1,
                false,
                &[refused, ("Stalled", "True", "Stalled's own message")],
            ),
            "Degraded",
            "Login refused. Fix the Secret.",
        ),
        (
            "reconciling",
            written(1, false, &[unreachable, retrying]),
            "Progressing",
            "db:7687 refused the connection. Probe failed 2 time(s); retrying.",
        ),
        (
            "ready while retrying below the failure threshold",
            written(1, false, &[ready, retrying]),
            "Healthy",
            "Connected to X.",
        ),
        (
            "suspended",
            written(1, true, &[("Ready", "False", "Suspended by spec.suspend.")]),
            "Suspended",
            "Suspended by spec.suspend.",
        ),
        (
            "not ready otherwise",
            written(1, false, &[refused]),
            "Degraded",
            "Login refused.",
        ),
        (
            "ready unknown",
            written(1, false, &[("Ready", "Unknown", "Probing.")]),
            "Progressing",
            "Probing.",
        ),
    ];
    for (what, obj, status, message) in cases {
        let (got_status, got_message) = argocd_health(&obj);
        assert_eq!(got_status, status, "{what}: {got_message}");
        assert!(
            got_message.contains(message),
            "{what}: {got_message:?} lacks {message:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), as Flux computes it for a custom resource.

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// kstatus' generic rules, the only ones it applies to a custom resource: deletion, then
/// `status.observedGeneration != metadata.generation`, then the first of `Reconciling=True`
/// (InProgress) or `Stalled=True` (Failed) in condition order, else Current. kstatus does not
/// read `Ready`.
fn kstatus(obj: &Value) -> (KStatus, String) {
    if obj["metadata"]["deletionTimestamp"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return (
            KStatus::Terminating,
            "Resource scheduled for deletion".into(),
        );
    }
    if let (Some(generation), Some(observed)) = (
        obj["metadata"]["generation"].as_i64(),
        obj["status"]["observedGeneration"].as_i64(),
    ) && generation != observed
    {
        return (
            KStatus::InProgress,
            format!(
                "{} generation is {generation}, but latest observed generation is {observed}",
                obj["kind"].as_str().unwrap_or_default()
            ),
        );
    }
    for c in obj["status"]["conditions"].as_array().into_iter().flatten() {
        let message = c["message"].as_str().unwrap_or_default().to_owned();
        if c["status"] == "True" {
            if c["type"] == "Reconciling" {
                return (KStatus::InProgress, message);
            }
            if c["type"] == "Stalled" {
                return (KStatus::Failed, message);
            }
        }
    }
    (KStatus::Current, "Resource is current".into())
}

#[test]
fn kstatus_transcription_follows_its_rules() {
    let stalled = json!({"observedGeneration": 1, "conditions": [
        cond("Ready", "False", "InvalidSpec", "bad"), cond("Stalled", "True", "InvalidSpec", "fix it")]});
    assert_eq!(
        kstatus(&object(1, false, stalled.clone())),
        (KStatus::Failed, "fix it".into())
    );
    assert_eq!(
        kstatus(&object(2, false, stalled)).0,
        KStatus::InProgress,
        "an unobserved generation comes first"
    );
    let mut deleting = object(1, false, Value::Null);
    deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    assert_eq!(kstatus(&deleting).0, KStatus::Terminating);
    assert_eq!(kstatus(&object(1, false, Value::Null)).0, KStatus::Current);
}

// ---------------------------------------------------------------------------------------------
// Both, over objects the real operator wrote.

fn get_json(ns: &str, name: &str) -> Value {
    let text = kubectl_ok(&["get", "dbconn", name, "-n", ns, "-o", "json"], None);
    serde_json::from_str(&text).expect("kubectl prints JSON")
}

fn condition_field(obj: &Value, type_: &str, field: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c[field].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn ready_message(obj: &Value) -> String {
    condition_field(obj, "Ready", "message")
}

fn condition_status(obj: &Value, type_: &str) -> String {
    condition_field(obj, type_, "status")
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_real_status_as_documented() {
    let mut h = Harness::start("gitops").await;
    let env = TestEnv::get();
    let user = unique_user("gitops");
    create_user(&user, "right-password-1").await;

    h.apply(&secret_yaml(
        "login",
        env.var("NEO4J_USER"),
        env.neo4j_password(),
    ));
    h.apply(&secret_yaml("bad-login", &user, "wrong-password-1"));
    h.apply(&neo4j_connection_yaml("ready", env.neo4j_uri(), "login"));
    h.apply(&neo4j_connection_yaml(
        "authfail",
        env.neo4j_uri(),
        "bad-login",
    ));
    h.apply(&neo4j_connection_yaml(
        "nosecret",
        env.neo4j_uri(),
        "not-created-yet",
    ));
    h.apply(&format!(
        "{}  suspend: true\n",
        neo4j_connection_yaml("suspended", env.neo4j_uri(), "login")
    ));
    h.wait("ready", "Ready", "True", Some("Connected")).await;
    h.wait("authfail", "Stalled", "True", Some("AuthenticationFailed"))
        .await;
    h.wait("nosecret", "Reconciling", "True", Some("SecretNotFound"))
        .await;
    h.wait("suspended", "Ready", "False", Some("Suspended"))
        .await;

    // (name, Argo CD health, text in its message, kstatus)
    let expected = [
        ("ready", "Healthy", "Connected to Neo4j", KStatus::Current),
        ("authfail", "Degraded", "Secret", KStatus::Failed),
        (
            "nosecret",
            "Progressing",
            "not-created-yet",
            KStatus::InProgress,
        ),
        ("suspended", "Suspended", "spec.suspend", KStatus::Current),
    ];
    let mut report = Vec::new();
    for (name, health, text, flux) in expected {
        let obj = get_json(&h.ns, name);
        let (status, message) = argocd_health(&obj);
        let (k, k_message) = kstatus(&obj);
        report.push(format!(
            "{name}: argo {status} ({message}); kstatus {k:?} ({k_message})"
        ));
        assert_eq!(status, health, "{name}: Argo CD health of\n{obj:#}");
        assert!(message.contains(text), "{name}: {message:?} lacks {text:?}");
        assert_eq!(k, flux, "{name}: kstatus of\n{obj:#}");
        if matches!(status.as_str(), "Degraded" | "Healthy" | "Suspended") {
            assert_eq!(
                message,
                ready_message(&obj),
                "{name}: the Ready message is shown"
            );
        }
        if k != KStatus::Current {
            assert!(!k_message.is_empty(), "{name}: kstatus has no message");
        }
        // Flux reads only Reconciling/Stalled: a connection that is not Ready and not suspended
        // must carry one of them, or Flux would call it Current.
        let ready = condition_status(&obj, "Ready");
        if ready != "True" && obj["spec"]["suspend"] != true {
            assert_ne!(
                k,
                KStatus::Current,
                "{name}: not Ready, yet Current for Flux"
            );
        }
    }
    let authfail = get_json(&h.ns, "authfail");
    assert_eq!(
        kstatus(&authfail).1,
        condition_field(&authfail, "Stalled", "message")
    );

    check_real_metrics(&h).await;

    // With the operator stopped, a spec change stays unobserved and a new object gets no status.
    h.operator.kill();
    kubectl_ok(
        &[
            "patch",
            "dbconn",
            "ready",
            "-n",
            &h.ns,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"healthCheck":{"interval":"6s"}}}"#,
        ],
        None,
    );
    h.apply(&neo4j_connection_yaml("fresh", env.neo4j_uri(), "login"));
    let changed = get_json(&h.ns, "ready");
    assert_eq!(changed["metadata"]["generation"], 2);
    let (status, message) = argocd_health(&changed);
    assert_eq!(status, "Progressing", "{message}");
    assert!(message.contains("generation 2"), "{message}");
    assert_eq!(
        kstatus(&changed),
        (
            KStatus::InProgress,
            "DatabaseConnection generation is 2, but latest observed generation is 1".into()
        )
    );
    let fresh = get_json(&h.ns, "fresh");
    assert!(fresh["status"].is_null(), "{fresh:#}");
    assert_eq!(argocd_health(&fresh).0, "Progressing");
    // kstatus has nothing to go on without status: Flux counts a new connection as Current until
    // the operator writes its first status (see the chart README).
    assert_eq!(kstatus(&fresh).0, KStatus::Current);
    report.push("fresh (no status): argo Progressing; kstatus Current".into());
    println!("{}", report.join("\n"));
}

/// The operator's real /metrics: the families the source parser found, with the labels the
/// dashboard and the alerts group by.
async fn check_real_metrics(h: &Harness) {
    let (code, text) = h.operator.http_get("/metrics").await;
    assert_eq!(code, 200);
    let mut families = BTreeMap::new();
    let mut samples = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, type_) = rest.split_once(' ').unwrap();
            families.insert(name.to_owned(), type_.to_owned());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    // Families without series yet are not printed; every printed one must be a registered one.
    for (name, type_) in &families {
        assert_eq!(
            exported().families.get(name).map(|t| t.as_str()),
            Some(type_.as_str()),
            "/metrics has {name} ({type_}), which src/metrics.rs was not read as registering"
        );
    }
    for name in [
        "dbconn_connection_up",
        "dbconn_probe_duration_seconds",
        "dbconn_probe_failures",
        "dbconn_reconciles",
        "dbconn_status_writes",
    ] {
        assert!(
            families.contains_key(name),
            "/metrics lacks {name}:\n{text}"
        );
    }
    let names = exported().names();
    let unknown: Vec<_> = samples.iter().filter(|s| !names.contains(*s)).collect();
    assert!(
        unknown.is_empty(),
        "series not derived from src/metrics.rs: {unknown:?}"
    );

    let ns = &h.ns;
    let has = |prefix: &str, labels: &[String]| {
        text.lines()
            .any(|l| l.starts_with(prefix) && labels.iter().all(|label| l.contains(label.as_str())))
    };
    let connection = |name: &str| {
        vec![
            format!("namespace=\"{ns}\""),
            format!("name=\"{name}\""),
            "engine=\"neo4j\"".to_owned(),
        ]
    };
    assert!(has("dbconn_connection_up{", &connection("ready")), "{text}");
    assert!(
        has(
            "dbconn_probe_duration_seconds_bucket{",
            &connection("ready")
        ),
        "{text}"
    );
    let mut failure = connection("authfail");
    failure.push("reason=\"AuthenticationFailed\"".into());
    assert!(has("dbconn_probe_failures_total{", &failure), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Installing the health check into argocd-cm, the way the chart README says.

#[test]
fn readme_install_command_adds_the_health_check_to_an_existing_argocd_cm() {
    let readme = std::fs::read_to_string(Path::new(CHART).join("README.md")).unwrap();
    assert!(readme.contains(ARGOCD_KEY) && readme.contains("argocd/health.lua"));

    // An argocd-cm as an Argo CD install leaves it: other keys, its label, client-side applied.
    let ns = format!("gitops-argocd-{:08x}", rand::random::<u32>());
    kubectl_ok(&["create", "namespace", &ns], None);
    kubectl_ok(
        &["apply", "-n", &ns, "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  labels:\n    app.kubernetes.io/part-of: argocd\ndata:\n  url: https://argocd.example.com\n",
        ),
    );

    // The README's command, verbatim, with -n argocd pointing at this test's namespace.
    let command = readme
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("patch configmap argocd-cm"))
        .expect("the README shows the argocd-cm patch command")
        .replace("-n argocd", &format!("-n {ns}"));
    let env = TestEnv::get();
    let path = format!(
        "{}:{}",
        env.var("TESTENV_BIN_DIR"),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &command])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PATH", path)
        .env("KUBECONFIG", env.kubeconfig())
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "the README command failed:\n{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cm: Value = serde_json::from_str(&kubectl_ok(
        &["-n", &ns, "get", "configmap", "argocd-cm", "-o", "json"],
        None,
    ))
    .unwrap();
    assert_eq!(
        cm["data"][ARGOCD_KEY].as_str().unwrap(),
        std::fs::read_to_string(HEALTH_LUA).unwrap()
    );
    assert_eq!(
        cm["data"]["url"], "https://argocd.example.com",
        "other keys are kept"
    );
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "argocd"
    );
}
